"""tract (Sonos's Rust runtime for small devices; ``pip install tract``): the ONNX file is
loaded as an inference model (``tract.onnx().load``), typed with the input fact the file
declares (``batch,32,32,3,u8``: a symbolic batch, so one runnable takes every batch size),
then optimised (``into_model().into_runnable()``).

Threads: the Python bindings expose no thread pool (tract's multithreaded executor is not
reachable from them), so tract runs on one thread whatever is asked; ``threads`` says 1.
tract refuses graphs whose shapes it cannot type (a Reshape whose target shape is computed
from the batch at run time: "shape input is variable") or that use an operator it lacks
(``ReverseSequence``); the error names the node.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.backends._base import Runtime, RuntimeModel
from cifarkit.contract import read_onnx


class Tract(Runtime):
    name = "tract"
    module = "tract"
    package = "tract"

    def _open(self, path: Path, threads: int) -> RuntimeModel:
        import tract

        info = read_onnx(path)
        try:
            runnable = tract.onnx().load(os.fspath(path)).into_model().into_runnable()
        except Exception as exc:
            raise self.refused(path, exc) from None
        model = TractModel(self, path, 1)
        model.runnable = runnable
        model.describe(info)
        return model


class TractModel(RuntimeModel):
    runnable: Any

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.runnable.run([batch])[0].to_numpy()

    def close(self) -> None:
        self.runnable = None
