"""cifarkit: train Keras CIFAR-10 classifiers, export them to ONNX, run and benchmark them.

The public API, one name per stage::

    from cifarkit import load_data, create_model, train, export_model, Classifier, run_bench

Importing the package is cheap: stage modules load on first use (PEP 562), and
TensorFlow/Keras load only inside training and export.
"""

from __future__ import annotations

from cifarkit._lazy import lazy_getattr
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

_LAZY = {
    "CLASSES": "cifarkit.data",
    "load_data": "cifarkit.data",
    "load_dataset": "cifarkit.data",
    "load_image": "cifarkit.data",
    "create_model": "cifarkit.models",
    "list_models": "cifarkit.models",
    "train": "cifarkit.train",
    "export_model": "cifarkit.export",
    "Classifier": "cifarkit.backends",
    "predict_files": "cifarkit.engines",
    "resolve_model": "cifarkit.backends",
    "BenchConfig": "cifarkit.bench",
    "run_bench": "cifarkit.bench",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


__all__ = [
    "CifarkitError",
    "DataError",
    "ExportError",
    "ImageError",
    "ModelError",
    "ProviderError",
    "UsageError",
    "__version__",
    *_LAZY,
]
