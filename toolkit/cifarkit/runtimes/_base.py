"""The seam every runtime adapter implements: a model file in, uint8 images → probabilities.

An adapter module (``cifarkit/runtimes/<name>.py``) defines a ``Runtime`` subclass that says
what the runtime is called, which Python module it needs and which pip package provides it,
and opens a model file as a ``RuntimeModel``. Optional packages are imported inside the
adapter's methods only, so listing the registry imports none of them.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from cifarkit.data.sources import CLASSES as CIFAR10_CLASSES
from cifarkit.errors import ModelError, ProviderError, UsageError

IMAGE_SHAPE = (32, 32, 3)
CHUNK = 256  # images per call in predict_proba (accuracy passes; latency times run_batch)


class RuntimeUnavailableError(ProviderError):
    """A requested runtime's package is not installed or does not import (exit code 6, as
    an inactive execution provider)."""


class RuntimeModelError(ModelError):
    """A runtime cannot load or run a model file; the message carries the runtime's own
    reason in one line (exit code 4)."""


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


class Runtime(ABC):
    """One inference runtime. ``name`` is the registry (user-facing) name; ``module`` the
    Python module it imports; ``package`` the pip package that provides it."""

    name: str = ""
    title: str = ""  # how the runtime calls itself
    module: str = ""
    package: str = ""
    distribution: str = ""  # the installed distribution whose version is reported
    suffixes: tuple[str, ...] = (".onnx",)  # model files it opens

    @property
    def install_hint(self) -> str:
        return f"pip install {self.package}  (or: pip install 'cifarkit[runtimes]')"

    def problem(self) -> str | None:
        """Why this runtime cannot be used here (``None`` when it imports)."""
        try:
            importlib.import_module(self.module)
        except Exception as exc:  # ImportError, or a native library that fails to load
            why = one_line(f"{type(exc).__name__}: {exc}", 200)
            return f"{self.module} does not import ({why}); {self.install_hint}"
        return None

    @property
    def available(self) -> bool:
        return self.problem() is None

    def require(self) -> None:
        """Raise ``RuntimeUnavailableError`` unless the runtime imports."""
        why = self.problem()
        if why is not None:
            raise RuntimeUnavailableError(f"runtime {self.name}: unavailable: {why}")

    def version(self) -> str | None:
        """The installed package's version (``None`` when it is not installed)."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version(self.distribution or self.package)
        except PackageNotFoundError:
            return None

    def model_file(self, path: Path) -> Path:
        """The file this runtime opens for ``path`` (an ONNX file for most)."""
        return path

    def open(self, path: str | os.PathLike[str], *, threads: int | None = None) -> RuntimeModel:
        """Open ``path`` with ``threads`` CPU threads (default: the physical cores). Raises
        ``RuntimeUnavailableError`` (not installed) or ``RuntimeModelError`` (cannot run it)."""
        if threads is not None and threads < 1:
            raise UsageError(f"threads must be >= 1, got {threads}")
        self.require()
        path = Path(path)
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "does not exist"
            raise ModelError(f"model file {path} {what}")
        from cifarkit.runtime.providers import physical_cores

        model = self._open(self.model_file(path), threads or physical_cores())
        try:
            model.run_batch(np.zeros((1, *IMAGE_SHAPE), np.uint8))  # refusals surface here
        except BaseException:
            model.close()
            raise
        return model

    @abstractmethod
    def _open(self, path: Path, threads: int) -> RuntimeModel: ...

    def refused(self, path: Path, exc: BaseException | str) -> RuntimeModelError:
        return RuntimeModelError(
            f"{path.name}: {self.name} cannot run this model: {one_line(str(exc))}"
        )


class RuntimeModel(ABC):
    """A model file opened by one runtime. ``run_batch`` maps uint8 NHWC ``[n, 32, 32, 3]``
    to float32 probabilities ``[n, n_classes]`` in one call of the runtime (what latency
    times); ``predict_proba`` cuts any request into chunks."""

    def __init__(self, runtime: Runtime, path: Path, threads: int) -> None:
        self.runtime = runtime
        self.path = path
        self.threads = threads  # the threads the runtime really uses
        self.metadata: dict[str, str] = {}
        self.classes: tuple[str, ...] = CIFAR10_CLASSES
        self.input_kind = "uint8"
        self.prob_atol = 1e-2  # row-sum tolerance; quantized outputs widen it
        self._checked = False

    @property
    def name(self) -> str:
        return self.runtime.name

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray: ...

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        batch = check_images(batch)
        try:
            probs = self._run(batch)
        except (ModelError, UsageError):
            raise
        except Exception as exc:  # every runtime raises its own exception types
            raise self.runtime.refused(self.path, exc) from None
        probs = np.asarray(probs, dtype=np.float32)
        if not self._checked:
            self._check_probabilities(probs, len(batch))
        return probs

    def predict_proba(self, images: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
        images = check_images(images)
        out = np.empty((len(images), self.n_classes), np.float32)
        for start in range(0, len(images), chunk):
            part = images[start : start + chunk]
            out[start : start + len(part)] = self.run_batch(part)
        return out

    def _check_probabilities(self, probs: np.ndarray, n: int) -> None:
        if probs.shape != (n, self.n_classes):
            raise self.runtime.refused(
                self.path, f"output shape {list(probs.shape)}, expected [{n}, {self.n_classes}]"
            )
        sums = probs.sum(axis=1, dtype=np.float64)
        if not (np.all(np.isfinite(probs)) and probs.min() >= -1e-4
                and np.allclose(sums, 1, atol=self.prob_atol)):
            raise ModelError(
                f"{self.path.name}: {self.name}'s output is not probabilities (row sums "
                f"{sums.min():.3g}…{sums.max():.3g}); the contract wants softmax outputs"
            )
        self._checked = True

    def close(self) -> None:  # noqa: B027 - most runtimes free on garbage collection
        pass

    def __enter__(self) -> RuntimeModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise UsageError(
            f"expected uint8 images [N, 32, 32, 3] (RGB 0–255), got {images.dtype} "
            f"{list(images.shape)}"
        )
    return np.ascontiguousarray(images)


def onnx_contract(path: Path, runtime: Runtime) -> tuple[dict[str, str], tuple[str, ...]]:
    """(metadata, class names) of an ONNX file, after checking its input is the contract's
    uint8 ``[batch, 32, 32, 3]`` (other runtimes than onnxruntime get exactly that)."""
    import onnx

    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable ONNX file: {one_line(str(exc))}") from None
    metadata = {p.key: p.value for p in proto.metadata_props}
    inits = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelError(f"{path.name}: expected one input (images), found {len(inputs)}")
    t = inputs[0].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    if t.elem_type != onnx.TensorProto.UINT8 or len(dims) != 4 or dims[1:] != list(IMAGE_SHAPE):
        kind = onnx.TensorProto.DataType.Name(t.elem_type)
        raise ModelError(
            f"{path.name}: input {inputs[0].name!r} is {kind} {dims}; {runtime.name} runs "
            "models with the contract's uint8 [batch, 32, 32, 3] input (onnxruntime also "
            "takes float inputs)"
        )
    return metadata, class_names(metadata, path)


def class_names(metadata: dict[str, str], path: Path) -> tuple[str, ...]:
    raw = metadata.get("class_names")
    if not raw:
        return CIFAR10_CLASSES
    try:
        names = json.loads(raw)
    except json.JSONDecodeError:
        names = None
    if not isinstance(names, list) or not names or not all(isinstance(c, str) for c in names):
        raise ModelError(f"{path.name}: metadata class_names must be a JSON list of names")
    return tuple(names)
