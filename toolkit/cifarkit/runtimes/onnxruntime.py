"""onnxruntime (the reference): ``cifarkit.runtime.Classifier``, with its execution providers
(an asked-for provider is active or it fails; no silent CPU fallback). Opens ``.onnx`` and
ORT-format ``.ort`` files (onnxruntime tells them apart by the suffix)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.runtimes._base import Runtime, RuntimeModel


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    title = "ONNX Runtime"
    module = "onnxruntime"
    package = "onnxruntime"  # onnxruntime-gpu provides the same module
    suffixes = (".onnx", ".ort")

    def version(self) -> str | None:
        try:
            import onnxruntime

            return str(onnxruntime.__version__)
        except Exception:
            return None

    def open(self, path: str | os.PathLike[str], *, threads: int | None = None,
             provider: str = "cpu", io_binding: bool = False) -> OrtModel:
        self.require()
        from cifarkit.runtime import Classifier

        clf = Classifier(path, provider, threads=threads, io_binding=io_binding)
        return OrtModel(self, clf)

    def _open(self, path: Path, threads: int) -> RuntimeModel:  # pragma: no cover - see open
        return self.open(path, threads=threads)


class OrtModel(RuntimeModel):
    """A ``Classifier`` behind the runtime seam (``classifier`` stays reachable: the bench
    reads its providers and tuned chunk size)."""

    def __init__(self, runtime: Runtime, clf: Any) -> None:
        super().__init__(runtime, clf.path, clf.threads)
        self.classifier = clf
        self.metadata = clf.metadata
        self.classes = tuple(clf.classes)
        self.input_kind = clf.input_kind
        self.provider = clf.provider
        self.active_providers = list(clf.active_providers)

    def _run(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - run_batch below
        return self.classifier.run_batch(batch)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        return self.classifier.run_batch(batch)  # checks the contract and raises ModelError

    def predict_proba(self, images: np.ndarray, chunk: int | None = None) -> np.ndarray:
        if chunk is not None:
            self.classifier.batch_size = chunk
        return self.classifier.predict_proba(images)  # its online-tuned chunk size

    def close(self) -> None:
        self.classifier.close()
