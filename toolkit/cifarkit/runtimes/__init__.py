"""Runtimes other than onnxruntime, behind one seam: open a model file, run uint8 images.

    from cifarkit.runtimes import get_runtime, matrix
    with get_runtime("openvino").open("exported/fastnet/model.fp32.onnx", threads=2) as m:
        probs = m.predict_proba(images)       # uint8 [N, 32, 32, 3] → float32 [N, 10]
    rows = matrix("exported/fastnet/model.fp32.onnx", images, labels)   # the "runs in" table

Registry names (the user-facing names, ``cifarkit bench --runtime``) → adapter modules:
``onnxruntime`` (the reference; its execution providers are ``--provider``), ``openvino``,
``opencv`` (OpenCV DNN), ``tract``, ``litert`` (TensorFlow Lite). Each adapter imports its
package only when a model is opened; a runtime whose package is missing is reported with
the pip command (``Runtime.problem``), never skipped silently. The packages are the
``runtimes`` extra: ``pip install 'cifarkit[runtimes]'``.
"""

from __future__ import annotations

import importlib

from cifarkit.errors import UsageError
from cifarkit.runtimes._base import (
    Runtime,
    RuntimeModel,
    RuntimeModelError,
    RuntimeUnavailableError,
    one_line,
)
from cifarkit.runtimes.matrix import RunsIn, agreement, matrix, runs_in_markdown

# name → (module, class). Order = the order of reports.
REGISTRY: dict[str, tuple[str, str]] = {
    "onnxruntime": ("cifarkit.runtimes.onnxruntime", "OnnxRuntime"),
    "openvino": ("cifarkit.runtimes.openvino", "OpenVino"),
    "opencv": ("cifarkit.runtimes.opencv", "OpenCv"),
    "tract": ("cifarkit.runtimes.tract", "Tract"),
    "litert": ("cifarkit.runtimes.litert", "LiteRt"),
}
RUNTIMES = tuple(REGISTRY)
REFERENCE = "onnxruntime"


def get_runtime(name: str) -> Runtime:
    """The adapter registered as ``name`` (``UsageError`` for an unknown name)."""
    if name not in REGISTRY:
        raise UsageError(f"unknown runtime {name!r}; choose from {', '.join(RUNTIMES)} or all")
    module, cls = REGISTRY[name]
    return getattr(importlib.import_module(module), cls)()


def resolve_runtimes(names: list[str] | tuple[str, ...] | None) -> list[str]:
    """``None`` → ``["onnxruntime"]``; ``["all"]`` → every registered runtime; else the
    names, checked and de-duplicated."""
    if not names:
        return [REFERENCE]
    if "all" in names:
        return list(RUNTIMES)
    for n in names:
        get_runtime(n)
    return list(dict.fromkeys(names))


__all__ = [
    "REFERENCE",
    "REGISTRY",
    "RUNTIMES",
    "RunsIn",
    "Runtime",
    "RuntimeModel",
    "RuntimeModelError",
    "RuntimeUnavailableError",
    "agreement",
    "get_runtime",
    "matrix",
    "one_line",
    "resolve_runtimes",
    "runs_in_markdown",
]
