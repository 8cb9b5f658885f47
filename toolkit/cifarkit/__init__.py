"""cifarkit: train Keras CIFAR-10 classifiers, export them to ONNX, run and benchmark them.

Importing the package is cheap: TensorFlow/Keras load only inside training and export.
"""

from cifarkit.errors import (
    CifarkitError,
    DataError,
    ExportError,
    ImageError,
    ModelError,
    ProviderError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "CifarkitError",
    "DataError",
    "ExportError",
    "ImageError",
    "ModelError",
    "ProviderError",
    "UsageError",
    "__version__",
]
