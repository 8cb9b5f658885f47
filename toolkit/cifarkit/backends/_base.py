"""The seam every runtime adapter implements: a model file in, uint8 images → probabilities
(and the model's ``score`` output, when the file has one).

An adapter module (``cifarkit/runtimes/<name>.py``) defines a ``Runtime`` subclass that says
what the runtime is called, which Python module it needs and which pip package provides it,
and opens a model file as a ``RuntimeModel``. Optional packages are imported inside the
adapter's methods only, so listing the registry imports none of them.

An adapter's one inference method is ``RuntimeModel._run(batch, score)``: one call of its
runtime, returning ``(probabilities, score output or None)``, each fetched by its name
(``ModelInfo.output``, ``contract.SCORE_OUTPUT``); ``score`` is True only when the model
``has_score`` and the caller wants it. The base class checks both on the first batch.
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit import contract
from cifarkit.contract import CIFAR10_CLASSES, DEFAULT_IMAGE_SIZE, ModelInfo
from cifarkit.errors import (
    ModelError,
    RuntimeModelError,
    RuntimeUnavailableError,
    UsageError,
    one_line,
)

CHUNK = 256  # images per call in predict_proba (accuracy passes; latency times run_batch)
#: What one call of a runtime returns: probabilities [n, n_classes] and score [n] (or None).
Outputs = tuple[np.ndarray, np.ndarray | None]


class Runtime(ABC):
    """One inference runtime. ``name`` is the registry (user-facing) name; ``module`` the
    Python module it imports; ``package`` the pip package that provides it."""

    name: str = ""
    module: str = ""
    package: str = ""  # also the distribution whose version is reported

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
            return version(self.package)
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
        from cifarkit.measure.machine import physical_cores

        model = self._open(self.model_file(path), threads or physical_cores())
        try:
            size = model.image_size
            model.run_outputs(np.zeros((1, size, size, 3), np.uint8))  # refusals surface here
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
    times); ``predict_proba`` cuts any request into chunks. ``has_score``: the file has a
    ``score`` output; ``run_outputs`` / ``predict_scored`` return it beside the
    probabilities, from the same calls (float32 ``[n]``; None without one)."""

    def __init__(self, runtime: Runtime, path: Path, threads: int) -> None:
        self.runtime = runtime
        self.path = path
        self.threads = threads  # the threads the runtime really uses
        # Where it runs: the runtime's own CPU path (onnxruntime's adapter: its provider).
        self.provider = "cpu"
        self.active_providers = [runtime.name]
        self.metadata: dict[str, str] = {}
        self.classes: tuple[str, ...] = CIFAR10_CLASSES
        self.image_size = DEFAULT_IMAGE_SIZE
        self.input_kind = "uint8"
        self.prob_atol = 1e-2  # row-sum tolerance; quantized outputs widen it
        self.output_name = contract.OUTPUT_NAME  # the probabilities output, fetched by name
        self.has_score = False  # an output ``contract.SCORE_OUTPUT``, checked at open
        self._checked = False
        self._score_checked = False

    def describe(self, info: ModelInfo) -> None:
        """Take the metadata, classes, image size, input kind and outputs the contract read."""
        self.metadata, self.classes = info.metadata, info.classes
        self.image_size, self.input_kind = info.image_size, info.input_kind
        self.output_name, self.has_score = info.output, info.has_score

    @property
    def name(self) -> str:
        return self.runtime.name

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @abstractmethod
    def _run(self, batch: np.ndarray, score: bool) -> tuple[Any, Any]:
        """One call of the runtime: (probabilities, the ``score`` output if ``score`` else
        None), each fetched by name."""

    def _outputs(self, batch: np.ndarray, score: bool) -> Outputs:
        batch = contract.check_images(batch, self.image_size)
        try:
            probs, scores = self._run(batch, score)
        except (ModelError, UsageError):
            raise
        except Exception as exc:  # every runtime raises its own exception types
            raise self.runtime.refused(self.path, exc) from None
        probs = np.asarray(probs, dtype=np.float32)
        if not self._checked:
            self._check_probabilities(probs, len(batch))
        if not score:
            return probs, None
        if not self._score_checked:
            scores = contract.check_scores(scores, len(batch), f"{self.path.name}: {self.name}")
            self._score_checked = True
        return probs, np.asarray(scores, dtype=np.float32)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities of one call of the runtime (what latency times)."""
        return self._outputs(batch, False)[0]

    def run_outputs(self, batch: np.ndarray) -> Outputs:
        """Probabilities and score (None when the model has none) of one call."""
        return self._outputs(batch, self.has_score)

    def predict_proba(self, images: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
        return self._predict(images, chunk, False)[0]

    def predict_scored(self, images: np.ndarray, chunk: int = CHUNK) -> Outputs:
        """``run_outputs`` in chunks: probabilities ``[N, n_classes]``, score ``[N]`` or None."""
        return self._predict(images, chunk, self.has_score)

    def _predict(self, images: np.ndarray, chunk: int, score: bool) -> Outputs:
        images = contract.check_images(images, self.image_size)
        out = np.empty((len(images), self.n_classes), np.float32)
        scores = np.empty(len(images), np.float32) if score else None
        for start in range(0, len(images), chunk):
            part = images[start : start + chunk]
            probs, s = self._outputs(part, score)
            out[start : start + len(part)] = probs
            if scores is not None:
                scores[start : start + len(part)] = s
        return out, scores

    def _check_probabilities(self, probs: np.ndarray, n: int) -> None:
        if probs.shape != (n, self.n_classes):
            raise self.runtime.refused(
                self.path, f"output shape {list(probs.shape)}, expected [{n}, {self.n_classes}]"
            )
        contract.check_probabilities(probs, self.n_classes, f"{self.path.name}: {self.name}",
                                     atol=self.prob_atol)
        self._checked = True

    def close(self) -> None:  # noqa: B027 - most runtimes free on garbage collection
        pass

    def __enter__(self) -> RuntimeModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
