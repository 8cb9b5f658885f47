"""LiteRT (TensorFlow Lite's runtime, on Android phones and microcontrollers; ``pip install
ai-edge-litert``): ``ai_edge_litert.interpreter.Interpreter(model_path, num_threads)``.

It runs ``.tflite`` files. Given an ONNX file ``model.<precision>.onnx`` it opens the sibling
``model.<precision>.tflite`` (written by ``cifarkit export --format tflite``), and says so
when there is none. The input tensor is resized to each batch. Inputs: ``uint8`` (the
contract) as is; ``int8`` quantized with the input's scale and zero point; ``float32`` as raw
0–255 pixels (cifarkit's Keras models take those; their scaling is a layer of the model).
Quantized outputs are dequantized with the output's scale and zero point.

Outputs are found by name (a .tflite file keeps the converter's names, with prefixes):
the probabilities are the output whose name contains ``probabilities`` (else the first that
is not the score), the score the one whose name contains ``score``, float32 or float16
``[batch]`` or ``[batch, 1]`` (returned as ``[batch]``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit import contract
from cifarkit.backends._base import Runtime, RuntimeModel
from cifarkit.errors import RuntimeModelError

_ONNX_RE = re.compile(r"^model\.(\w+)\.onnx$")


class LiteRt(Runtime):
    name = "litert"
    module = "ai_edge_litert.interpreter"
    package = "ai-edge-litert"

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
        model.interp, model.inp = interp, inputs[0]
        model.out, model.score_out = pick_outputs(outputs, path.name)
        shape = [int(d) for d in model.inp["shape"]]
        info = _metadata(path, len(shape) == 4 and shape[1] or None)
        if len(shape) != 4 or shape[1:] != [info.image_size, info.image_size, 3]:
            size = info.image_size
            raise self.refused(path, f"input shape {shape}; expected [batch, {size}, {size}, 3]")
        model.describe(info)
        model.has_score = model.score_out is not None  # this file's outputs, not the ONNX's
        model.input_kind = np.dtype(model.inp["dtype"]).name
        scale, _ = model.out["quantization"]
        if scale:
            model.prob_atol = max(model.prob_atol, model.n_classes * float(scale))
        return model


class LiteRtModel(RuntimeModel):
    interp: Any
    inp: dict[str, Any]
    out: dict[str, Any]
    score_out: dict[str, Any] | None
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

    def _run(self, batch: np.ndarray, score: bool) -> tuple[Any, Any]:
        n = len(batch)
        if n != self._batch:
            size = self.image_size
            self.interp.resize_tensor_input(self.inp["index"], [n, size, size, 3])
            self.interp.allocate_tensors()
            self._batch = n
        self.interp.set_tensor(self.inp["index"], self._prepare(batch))
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])
        scale, zero = self.out["quantization"]
        if np.issubdtype(y.dtype, np.integer):
            probs = (y.astype(np.float32) - zero) * np.float32(scale)
        else:
            probs = y.astype(np.float32, copy=False)
        if not score or self.score_out is None:
            return probs, None
        s = self.interp.get_tensor(self.score_out["index"]).astype(np.float32)
        return probs, s.reshape(len(s)) if s.ndim == 2 and s.shape[1] == 1 else s

    def close(self) -> None:
        self.interp = None


def pick_outputs(outputs: list[dict[str, Any]],
                 where: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The probabilities output and the score output (None: none) among an interpreter's
    ``get_output_details()``, by name; ``ModelError`` for a score that is not float32 or
    float16 ``[batch]`` / ``[batch, 1]``."""
    named = [o for o in outputs if "probabilities" in o["name"]]
    probs = named[0] if named else next(
        (o for o in outputs if "score" not in o["name"]), outputs[0])
    scores = [o for o in outputs if o is not probs and "score" in o["name"]]
    if not scores:
        return probs, None
    score = scores[0]
    contract.check_score_output(score["dtype"], list(score["shape"]), where, column=True)
    return probs, score


def _metadata(path: Path, size: int | None) -> contract.ModelInfo:
    """The contract info from the sibling ONNX file's metadata, else ``card.json``'s classes
    (a .tflite file carries no cifarkit metadata), else CIFAR-10's names."""
    onnx_file = path.with_suffix(".onnx")
    if onnx_file.is_file():
        return contract.read_onnx(onnx_file)
    meta: dict[str, str] = {}
    card = path.parent / "card.json"
    if card.is_file():
        try:
            classes = json.loads(card.read_text()).get("classes")
        except (OSError, ValueError):
            classes = None
        if isinstance(classes, list) and classes:
            meta["class_names"] = json.dumps(classes)
    return contract.describe(meta, [None, size, size, 3], None, True, path.name)
