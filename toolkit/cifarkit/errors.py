"""The errors cifarkit raises. The CLI turns them into a message and an exit code."""

from __future__ import annotations

import re


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
    """One image file could not be decoded (predict reports it and carries on).

    ``reason`` is the cause's category, for rows and summaries (``data.causes.REASONS``):
    ``unreadable``, ``not-an-image``, ``corrupt``, ``unsupported``, ``missing-codec``,
    ``too-large`` or ``wrong-size``.
    """

    def __init__(self, message: str, reason: str = "corrupt") -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # keeps ``reason`` across processes
        return (type(self), (str(self), self.reason))


class ModelError(CifarkitError):
    """A model file or registry entry is missing, unsafe or breaks the model contract."""

    exit_code = 4


class ExportError(CifarkitError):
    """Conversion, checking or quantization of a model failed."""

    exit_code = 5


class ProviderError(CifarkitError):
    """A requested onnxruntime execution provider is not really active."""

    exit_code = 6


class RuntimeUnavailableError(ProviderError):
    """A requested backend's package is not installed or does not import (exit code 6, as
    an inactive execution provider)."""


class RuntimeModelError(ModelError):
    """A backend cannot load or run a model file; the message carries the backend's own
    reason in one line (exit code 4)."""


class ClusterError(CifarkitError):
    """The Ray cluster cannot be reached or the distributed job failed."""

    exit_code = 7


def one_line(text: str, limit: int = 400) -> str:
    """A runtime's error message in one line: no backtraces, ANSI colours or blank lines."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text))
    text = text.split("Stack backtrace:")[0]  # tract (Rust anyhow) appends one
    parts = []
    for line in text.splitlines():
        line = line.strip().lstrip(">").strip()
        if line and line not in parts and not line.startswith("Caused by"):
            parts.append(line)
    out = re.sub(r"\s+", " ", "; ".join(parts)).strip()
    return out if len(out) <= limit else out[: limit - 1] + "…"
