"""The errors cifarkit raises. The CLI turns them into a message and an exit code."""

from __future__ import annotations


class CifarkitError(Exception):
    """Base class: something the user can act on. ``exit_code`` is what the CLI returns."""

    exit_code = 1


class UsageError(CifarkitError):
    """Bad arguments or options (an unknown name, a bad value)."""

    exit_code = 2


class DataError(CifarkitError):
    """A data source is missing, unreadable, corrupt or not CIFAR-10 shaped."""

    exit_code = 3


class ImageError(DataError):
    """One image file could not be decoded (predict reports it and carries on)."""


class ModelError(CifarkitError):
    """A model file or registry entry is missing, unsafe or breaks the model contract."""

    exit_code = 4


class ExportError(CifarkitError):
    """Conversion, checking or quantization of a model failed."""

    exit_code = 5


class ProviderError(CifarkitError):
    """A requested onnxruntime execution provider is not really active."""

    exit_code = 6
