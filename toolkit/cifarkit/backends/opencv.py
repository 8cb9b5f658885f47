"""OpenCV DNN (``pip install opencv-python-headless``): ``cv2.dnn.readNetFromONNX``.

OpenCV 5's ONNX importer keeps the graph's own input layout and type, so the contract's
uint8 NHWC batch goes in as it is (no ``blobFromImage``, which would make a float NCHW blob
for a graph that expects uint8 NHWC); checked against onnxruntime on real images in the
tests. Threads: ``cv2.setNumThreads`` (process-wide, set at open). Refusals (unsupported
operations, shape inference errors) come at the first ``setInput``/``forward``, which
``Runtime.open`` runs; OpenCV also prints them on stderr, which is captured.

int8: OpenCV 5.1's engine refuses QDQ graphs (onnxruntime's static quantization, S8S8 or
U8S8, per channel or not, Conv only or all ops): "(-215:Assertion failed) bufidx >= 0 in
function 'argTensor'" or an int8 pooling-layer assertion. Such files fail with that reason."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit._capture import captured_output, clean_log
from cifarkit.backends._base import Runtime, RuntimeModel
from cifarkit.contract import SCORE_OUTPUT, read_onnx


class OpenCv(Runtime):
    name = "opencv"
    module = "cv2"
    package = "opencv-python-headless"

    def version(self) -> str | None:
        try:
            import cv2

            return str(cv2.__version__)
        except Exception:
            return None

    def _open(self, path: Path, threads: int) -> RuntimeModel:
        import cv2

        info = read_onnx(path)
        cv2.setNumThreads(threads)
        with captured_output() as log:
            try:
                # ENGINE_AUTO resolves to this today; named so a build with the ONNX Runtime
                # wrapper engine (ENGINE_ORT) never passes onnxruntime off as OpenCV.
                net = cv2.dnn.readNetFromONNX(os.fspath(path), engine=cv2.dnn.ENGINE_OPENCV)
            except Exception as exc:
                net, error = None, exc
        if net is None:
            raise self.refused(path, f"{error} {clean_log(log.getvalue())}")
        model = OpenCvModel(self, path, cv2.getNumThreads())
        model.net = net
        model.describe(info)
        return model


class OpenCvModel(RuntimeModel):
    net: Any

    def _run(self, batch: np.ndarray, score: bool) -> tuple[Any, Any]:
        names = [self.output_name, *([SCORE_OUTPUT] if score else [])]
        if not self._checked:  # the first run is where OpenCV refuses; keep its log
            with captured_output():
                outs = self._forward(batch, names)
        else:
            outs = self._forward(batch, names)
        return outs[0], outs[1] if score else None

    def _forward(self, batch: np.ndarray, names: list[str]) -> list[np.ndarray]:
        self.net.setInput(batch)
        return [np.array(a) for a in self.net.forward(names)]  # by name, in that order

    def close(self) -> None:
        self.net = None
