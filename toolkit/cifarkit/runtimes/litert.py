"""LiteRT (TensorFlow Lite's runtime, on Android phones and microcontrollers; ``pip install
ai-edge-litert``): ``ai_edge_litert.interpreter.Interpreter(model_path, num_threads)``.

It runs ``.tflite`` files. Given an ONNX file ``model.<precision>.onnx`` it opens the sibling
``model.<precision>.tflite`` (written by ``cifarkit export --format tflite``), and says so
when there is none. The input tensor is resized to each batch. Inputs: ``uint8`` (the
contract) as is; ``int8`` quantized with the input's scale and zero point; ``float32`` as raw
0–255 pixels (cifarkit's Keras models take those; their scaling is a layer of the model).
Quantized outputs are dequantized with the output's scale and zero point.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.runtimes._base import (
    Runtime,
    RuntimeModel,
    RuntimeModelError,
    class_names,
)

_ONNX_RE = re.compile(r"^model\.(\w+)\.onnx$")


class LiteRt(Runtime):
    name = "litert"
    title = "LiteRT"
    module = "ai_edge_litert.interpreter"
    package = "ai-edge-litert"
    suffixes = (".tflite",)

    def model_file(self, path: Path) -> Path:
        if path.suffix == ".tflite":
            return path
        m = _ONNX_RE.match(path.name)
        sibling = path.with_name(f"model.{m.group(1)}.tflite" if m else f"{path.stem}.tflite")
        if not sibling.is_file():
            raise RuntimeModelError(
                f"{path.name}: litert runs .tflite files and there is no {sibling.name} beside "
                f"it in {path.parent}; write it with `cifarkit export --format tflite` "
                "(or pass a .tflite file)"
            )
        return sibling

    def _open(self, path: Path, threads: int) -> RuntimeModel:
        from ai_edge_litert.interpreter import Interpreter

        try:
            interp = Interpreter(model_path=os.fspath(path), num_threads=threads)
        except Exception as exc:
            raise self.refused(path, exc) from None
        inputs, outputs = interp.get_input_details(), interp.get_output_details()
        if len(inputs) != 1 or len(outputs) < 1:
            raise self.refused(path, f"{len(inputs)} inputs, {len(outputs)} outputs; expected "
                                     "one image input and a probabilities output")
        model = LiteRtModel(self, path, threads)
        model.interp, model.inp, model.out = interp, inputs[0], _probabilities(outputs)
        shape = list(model.inp["shape"])
        if len(shape) != 4 or shape[1:] != [32, 32, 3]:
            raise self.refused(path, f"input shape {shape}; expected [batch, 32, 32, 3]")
        model.input_kind = np.dtype(model.inp["dtype"]).name
        model.metadata, model.classes = _metadata(path)
        scale, _ = model.out["quantization"]
        if scale:
            model.prob_atol = max(model.prob_atol, model.n_classes * float(scale))
        return model


class LiteRtModel(RuntimeModel):
    interp: Any
    inp: dict[str, Any]
    out: dict[str, Any]
    _batch = 0

    def _prepare(self, batch: np.ndarray) -> np.ndarray:
        dtype = np.dtype(self.inp["dtype"])
        if dtype == np.uint8:
            return batch
        scale, zero = self.inp["quantization"]
        if dtype == np.int8:
            q = np.round(batch.astype(np.float32) / (scale or 1.0)) + zero
            return np.clip(q, -128, 127).astype(np.int8)
        return batch.astype(dtype)  # float: raw 0–255 pixels

    def _run(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        if n != self._batch:
            self.interp.resize_tensor_input(self.inp["index"], [n, 32, 32, 3])
            self.interp.allocate_tensors()
            self._batch = n
        self.interp.set_tensor(self.inp["index"], self._prepare(batch))
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])
        scale, zero = self.out["quantization"]
        if np.issubdtype(y.dtype, np.integer):
            return (y.astype(np.float32) - zero) * np.float32(scale)
        return y.astype(np.float32, copy=False)

    def close(self) -> None:
        self.interp = None


def _probabilities(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    named = [o for o in outputs if "probabilities" in o["name"]]
    return named[0] if named else outputs[0]


def _metadata(path: Path) -> tuple[dict[str, str], tuple[str, ...]]:
    """The class names: from the sibling ONNX file's metadata or ``card.json``; else the
    CIFAR-10 names (a .tflite file carries no cifarkit metadata)."""
    onnx_file = path.with_suffix(".onnx")
    if onnx_file.is_file():
        import onnx

        proto = onnx.load(os.fspath(onnx_file), load_external_data=False)
        meta = {p.key: p.value for p in proto.metadata_props}
        return meta, class_names(meta, onnx_file)
    card = path.parent / "card.json"
    if card.is_file():
        try:
            classes = json.loads(card.read_text()).get("classes")
        except (OSError, ValueError):
            classes = None
        if isinstance(classes, list) and classes:
            return {}, tuple(classes)
    return {}, class_names({}, path)
