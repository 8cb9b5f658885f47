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
from cifarkit.contract import SCORE_OUTPUT, read_onnx


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
        # tract returns the outputs as a list in the file's order, and names them after their
        # nodes, not their tensors: place each output by its name in the file, once.
        names = list(info.outputs)
        model.at = {n: names.index(n) for n in (info.output, SCORE_OUTPUT) if n in names}
        return model


class TractModel(RuntimeModel):
    runnable: Any
    at: dict[str, int]  # output name → its place in what ``run`` returns

    def _run(self, batch: np.ndarray, score: bool) -> tuple[Any, Any]:
        outs = self.runnable.run([batch])
        probs = outs[self.at[self.output_name]].to_numpy()
        return probs, outs[self.at[SCORE_OUTPUT]].to_numpy() if score else None

    def close(self) -> None:
        self.runnable = None
