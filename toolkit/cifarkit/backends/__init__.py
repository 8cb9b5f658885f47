"""Backends: everything that runs a model file goes through here.

    from cifarkit.backends import Classifier, get_runtime, resolve_model
    with Classifier(resolve_model("fastnet-relu:int8"), provider="cpu") as clf:
        probs = clf.predict_proba(images)     # uint8 [N, S, S, 3] → float32 [N, n_classes]
    with get_runtime("openvino").open("exported/fastnet/model.fp32.onnx", threads=2) as m:
        probs = m.predict_proba(images)
        probs, score = m.run_outputs(images[:64])  # with the score output, if it has one
    rows = matrix("exported/fastnet/model.fp32.onnx", images, labels)   # the "runs in" table

One module per runtime behind one seam (``_base.Runtime`` opens a file as a
``RuntimeModel``: uint8 NHWC in, probabilities out, and the model's ``score`` output where
it has one: ``has_score``, ``run_outputs``, ``predict_scored``). Registry names are the user-facing
names: ``onnxruntime`` (the reference; ``Classifier``, with its execution providers),
``openvino``, ``opencv`` (OpenCV DNN), ``tract``, ``litert``. A backend (``--backend``) is a
runtime, with onnxruntime's execution provider after a colon: ``onnxruntime:cuda``,
``onnxruntime:openvino`` (``parse_backend``, ``open_backend``); plain ``onnxruntime`` is
``onnxruntime:cpu``.
Each imports its package only when a model is opened; a missing package is reported with
the pip command (``Runtime.problem``), never skipped silently (``pip install
'cifarkit[runtimes]'``). ``catalog`` turns model names (``fastnet-relu:auto``) into files.
``onnxruntime.cpu_session`` is the one bare onnxruntime CPU session (bytes or a file, ONNX or
ORT format), for export's checks of graphs still in memory.
"""

from __future__ import annotations

import importlib
import os

from cifarkit.backends._base import Runtime, RuntimeModel
from cifarkit.backends.catalog import (
    ModelSpec,
    exported_dir,
    list_exported,
    parse_spec,
    resolve_model,
)
from cifarkit.backends.matrix import (
    SCORE_RTOL,
    RunsIn,
    agreement,
    matrix,
    runs_in_markdown,
    score_agreement,
)
from cifarkit.backends.onnxruntime import PREFERRED_BATCH, Classifier
from cifarkit.backends.providers import (
    INSTALL_HINTS,
    PROVIDERS,
    available_providers,
    provider_options,
    provider_problem,
)
from cifarkit.errors import UsageError

# name → (module, class). Order = the order of reports.
REGISTRY: dict[str, tuple[str, str]] = {
    "onnxruntime": ("cifarkit.backends.onnxruntime", "OnnxRuntime"),
    "openvino": ("cifarkit.backends.openvino", "OpenVino"),
    "opencv": ("cifarkit.backends.opencv", "OpenCv"),
    "tract": ("cifarkit.backends.tract", "Tract"),
    "litert": ("cifarkit.backends.litert", "LiteRt"),
}
RUNTIMES = tuple(REGISTRY)
REFERENCE = "onnxruntime"
#: Every backend name ``parse_backend`` takes: onnxruntime on each execution provider, then
#: the other runtimes (which run on the CPU).
BACKENDS = (REFERENCE, *(f"{REFERENCE}:{p}" for p in PROVIDERS),
            *(n for n in RUNTIMES if n != REFERENCE))


def get_runtime(name: str) -> Runtime:
    """The adapter registered as ``name`` (``UsageError`` for an unknown name)."""
    if name not in REGISTRY:
        raise UsageError(f"unknown runtime {name!r}; choose from {', '.join(RUNTIMES)} or all")
    module, cls = REGISTRY[name]
    return getattr(importlib.import_module(module), cls)()


def parse_backend(text: str) -> tuple[str, str | None]:
    """``"onnxruntime:cuda"`` → ``("onnxruntime", "cuda")``; ``"openvino"`` → ``("openvino",
    None)`` (no provider given). ``UsageError`` naming the choices for anything else: only
    onnxruntime takes an execution provider."""
    name, sep, provider = text.strip().partition(":")
    if name in REGISTRY and not sep:
        return name, None
    if name == REFERENCE and provider in PROVIDERS:
        return name, provider
    if name == REFERENCE:
        why = f"unknown provider {provider!r} for onnxruntime"
    elif name in REGISTRY:
        why = f"{name} takes no execution provider (only onnxruntime does)"
    else:
        why = "unknown backend"
    raise UsageError(f"{text!r}: {why}; choose from {', '.join(BACKENDS)}")


def open_backend(backend: str, path: str | os.PathLike[str], *, threads: int | None = None,
                 io_binding: bool = False) -> RuntimeModel:
    """``path`` opened on ``backend`` (``NAME[:PROVIDER]``, see ``parse_backend``). The
    provider asked for is really active, or ``ProviderError`` says why (no fallback);
    ``io_binding`` is onnxruntime's (its ``Classifier`` stays reachable as ``.classifier``)."""
    name, provider = parse_backend(backend)
    runtime = get_runtime(name)
    if name == REFERENCE:
        return runtime.open(path, threads=threads, provider=provider or "cpu",
                            io_binding=io_binding)
    if io_binding:
        raise UsageError(f"I/O binding is onnxruntime's; {name} has none")
    return runtime.open(path, threads=threads)


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
    "BACKENDS",
    "INSTALL_HINTS",
    "PREFERRED_BATCH",
    "PROVIDERS",
    "Classifier",
    "available_providers",
    "exported_dir",
    "ModelSpec",
    "list_exported",
    "open_backend",
    "parse_backend",
    "parse_spec",
    "provider_options",
    "provider_problem",
    "resolve_model",
    "REFERENCE",
    "REGISTRY",
    "RUNTIMES",
    "RunsIn",
    "Runtime",
    "RuntimeModel",
    "agreement",
    "get_runtime",
    "matrix",
    "resolve_runtimes",
    "runs_in_markdown",
    "SCORE_RTOL",
    "score_agreement",
]
