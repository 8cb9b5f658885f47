"""LiteRT (TensorFlow Lite): ``model.fp32.tflite`` and a full-integer ``model.int8.tflite``.

Made from the final, portable fp32 ONNX graph (the file that passed the parity gate) through
onnx2tf, then ``tf.lite.TFLiteConverter``. Why this route and not TensorFlow's converter
from the Keras model: both were tried on fastnet and cnn-batchnorm (docs/edge-export.md):
same parity (fp32 max |Δp| 2–3e-8 on real test images for both, int8 files of the same
size and outputs), but only the ONNX route exists for the shipped models (their Keras runs
are not in the repository) and for every ONNX source, and it converts exactly the graph the
ONNX files were checked on, so one code path serves every export.

Before onnx2tf the graph's erf-based GELU subgraphs become ONNX ``Gelu`` ops (checked
numerically): onnx2tf would otherwise emit ``tf.math.erf``, which LiteRT has only as a Flex
(TensorFlow) op, while ``tf.nn.gelu`` becomes LiteRT's builtin ``GELU``.

fp32 keeps the ONNX contract's uint8 ``[batch, S, S, 3]`` input (cast inside). int8 is
full-integer quantization (int8 weights and activations, builtin int8 kernels only)
calibrated on training images, with ``inference_input_type=uint8``: the calibrated input
range is the raw pixel range 0–255, which gives the input scale 1 / zero point 0 (checked),
so the int8 file takes the same raw pixels as every other file. The output stays float32
probabilities (the contract). Dynamic batch: LiteRT's shape signature keeps ``-1``; callers
resize the input tensor.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from cifarkit.contract import probabilities_only, prune_dead
from cifarkit.errors import ExportError
from cifarkit.export.convert import INPUT_NAME, OUTPUT_NAME, require


def tflite_filename(precision: str) -> str:
    return f"model.{precision}.tflite"


# --- the TensorFlow function to convert -------------------------------------------------------


def float_input_copy(proto: Any) -> Any:
    """The contract graph with its ``Cast(uint8 → float)`` removed: float32 0–255 input."""
    import onnx

    out = onnx.ModelProto.FromString(proto.SerializeToString())
    graph = out.graph
    casts = [n for n in graph.node if n.op_type == "Cast" and list(n.input) == [INPUT_NAME]]
    if len(casts) != 1 or len([n for n in graph.node if INPUT_NAME in n.input]) != 1:
        raise ExportError("tflite: expected the graph to start with one Cast of the uint8 "
                          "input to float")
    cast = casts[0]
    for node in graph.node:
        node.input[:] = [INPUT_NAME if i == cast.output[0] else i for i in node.input]
    graph.node.remove(cast)
    graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return out


_ELEMENTWISE = ("Mul", "Div", "Neg", "Add", "Sub")


def gelu_to_op(proto: Any) -> int:
    """Replace erf-based GELU subgraphs by one ONNX ``Gelu`` (in place); return how many.

    A candidate is the Mul that ends a chain ``… Erf … → Mul`` whose only non-constant leaf
    is one tensor ``x``; it is replaced only if it computes ``x·Φ(x)`` to 1e-6 on
    ``[-8, 8]``, whatever the exact spelling (tf2onnx writes ``0.5x·(1 − erf(−x/√2))``).
    """
    import math

    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    inferred = onnx.shape_inference.infer_shapes(proto).graph
    ranks = {v.name: len(v.type.tensor_type.shape.dim)
             for v in (*inferred.value_info, *inferred.input)}
    producer = {o: n for n in graph.node for o in n.output}
    erf = np.vectorize(math.erf)
    t = np.linspace(-8, 8, 321)
    want = 0.5 * t * (1 + erf(t / math.sqrt(2)))
    readers: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    # Each Erf's GELU input x: back from the Erf through x/√2-style steps (Mul/Div by a
    # constant, Neg) to the first tensor read more than once (x feeds both GELU branches).
    inputs_of_erf = set()
    for e in (n for n in graph.node if n.op_type == "Erf"):
        name = e.input[0]
        while readers.get(name, 0) == 1 and (p := producer.get(name)) is not None and (
                p.op_type == "Neg" or (p.op_type in ("Mul", "Div")
                                       and any(i in consts for i in p.input))):
            name = next(i for i in p.input if i not in consts)
        inputs_of_erf.add(name)
    replaced = 0
    for root in [n for n in graph.node if n.op_type == "Mul"]:
        nodes: dict[str, Any] = {}
        leaves: set[str] = set()

        def walk(name: str, depth: int, nodes: dict = nodes, leaves: set = leaves) -> None:
            if name in consts:
                return
            if name in inputs_of_erf:
                leaves.add(name)
                return
            node = producer.get(name)
            if node is None or depth > 6 or node.op_type not in (*_ELEMENTWISE, "Erf"):
                leaves.add(name)
                return
            nodes[node.output[0]] = node
            for i in node.input:
                walk(i, depth + 1)

        nodes[root.output[0]] = root
        for i in root.input:
            walk(i, 1)
        # Stop at the GELU's input: a leaf is whatever is not elementwise; a chain that
        # reaches back through other elementwise ops (e.g. batch norm) has several leaves
        # or fails the numeric check.
        if len(leaves) != 1 or sum(n.op_type == "Erf" for n in nodes.values()) != 1:
            continue
        x_name = next(iter(leaves))
        used = [consts[i] for n in nodes.values() for i in n.input if i in consts]
        # GELU's constants are scalars; one of higher rank than x would change the shape.
        if any(c.size != 1 or c.ndim > ranks.get(x_name, 0) for c in used):
            continue

        def value(name: str, x_name: str = x_name, nodes: dict = nodes) -> np.ndarray:
            if name == x_name:
                return t
            if name in consts:
                return consts[name].astype(np.float64)
            n = nodes[name]
            a = [value(i) for i in n.input]
            return {"Mul": lambda: a[0] * a[1], "Div": lambda: a[0] / a[1],
                    "Add": lambda: a[0] + a[1], "Sub": lambda: a[0] - a[1],
                    "Neg": lambda: -a[0], "Erf": lambda: erf(a[0])}[n.op_type]()

        try:
            got = value(root.output[0]).reshape(t.shape)
        except (KeyError, ValueError):
            continue
        if np.abs(got - want).max() > 1e-6:
            continue
        index = list(graph.node).index(root)
        graph.node.remove(root)
        graph.node.insert(index, helper.make_node("Gelu", [x_name], [root.output[0]],
                                                  name=f"{root.name or root.output[0]}_gelu"))
        producer[root.output[0]] = graph.node[index]
        replaced += 1
    if replaced:
        prune_dead(graph)
        for opset in proto.opset_import:
            if opset.domain in ("", "ai.onnx"):
                opset.version = max(opset.version, 20)  # Gelu is an opset-20 op
    return replaced


def _float_fn_from_onnx(proto: Any, workdir: str) -> Any:
    """onnx2tf: the portable fp32 ONNX graph (float input) → a TensorFlow function."""
    import onnx

    require("onnx2tf", "onnx2tf", "for --format tflite from an ONNX source")
    import onnx2tf

    tf = require("tensorflow", "tensorflow", "for --format tflite")
    graph = float_input_copy(proto)
    # LiteRT files carry probabilities only: full-integer int8 would quantize the score's
    # distances too coarsely for the ONNX file's threshold.
    probabilities_only(graph.graph)
    gelu_to_op(graph)
    src = os.path.join(workdir, "float.onnx")
    onnx.save(graph, src)
    saved = os.path.join(workdir, "saved_model")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            onnx2tf.convert(input_onnx_file_path=src, output_folder_path=saved,
                            keep_shape_absolutely_input_names=[INPUT_NAME],
                            output_signaturedefs=True, non_verbose=True,
                            copy_onnx_input_output_names_to_tflite=True)
    except Exception as exc:
        raise ExportError(f"tflite: onnx2tf could not convert the graph: "
                          f"{type(exc).__name__}: {exc}") from None
    loaded = tf.saved_model.load(saved)
    serving = loaded.signatures["serving_default"]
    out_key = next(iter(serving.structured_outputs))

    size = _image_size(proto)

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32,
                                                 name=INPUT_NAME)])
    def fn(images: Any) -> Any:
        return {OUTPUT_NAME: serving(**{INPUT_NAME: images})[out_key]}

    fn._cifarkit_keep = loaded  # type: ignore[attr-defined]  # the variables must outlive us
    fn._cifarkit_size = size  # type: ignore[attr-defined]
    return fn


def _image_size(proto: Any) -> int:
    """S of the contract graph's ``images`` input ``[batch, S, S, 3]``."""
    image = next(i for i in proto.graph.input if i.name == INPUT_NAME)
    return int(image.type.tensor_type.shape.dim[1].dim_value)


# --- conversion -------------------------------------------------------------------------------


def _convert(tf: Any, fn: Any, model: Any, int8: bool, calibration: np.ndarray | None) -> bytes:
    if int8:
        concrete = fn.get_concrete_function()
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        assert calibration is not None

        def representative() -> Any:
            for i in range(len(calibration)):
                yield [calibration[i:i + 1].astype(np.float32)]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.float32
    else:
        size = fn._cifarkit_size

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8,
                                                     name=INPUT_NAME)])
        def uint8_fn(images: Any) -> Any:
            return fn(tf.cast(images, tf.float32))

        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [uint8_fn.get_concrete_function()], model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        return bytes(converter.convert())
    except Exception as exc:
        raise ExportError(f"{tflite_filename('int8' if int8 else 'fp32')}: the LiteRT converter "
                          f"failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None


def to_tflite(
    onnx_proto: Any,
    calibration_images: np.ndarray | None = None,
    precisions: tuple[str, ...] = ("fp32", "int8"),
) -> tuple[dict[str, bytes], str]:
    """``{"fp32": bytes, "int8": bytes}`` of a portable fp32 contract graph, and the front
    end used (``"onnx2tf <version>"``)."""
    from importlib.metadata import version

    tf = require("tensorflow", "tensorflow", "for --format tflite")
    with tempfile.TemporaryDirectory(prefix="cifarkit-tflite-") as tmp:
        fn = _float_fn_from_onnx(onnx_proto, tmp)
        out = {}
        for p in precisions:
            if p == "int8" and (calibration_images is None or not len(calibration_images)):
                raise ExportError("tflite int8 needs calibration images")
            out[p] = _convert(tf, fn, fn._cifarkit_keep, p == "int8", calibration_images)
    if "int8" in out:
        check_uint8_input(out["int8"])
    return out, f"onnx2tf {version('onnx2tf')}"


# --- running ----------------------------------------------------------------------------------


def interpreter(blob: bytes, threads: int | None = None) -> Any:
    litert = require("ai_edge_litert.interpreter", "ai-edge-litert", "to run .tflite files")
    try:
        return litert.Interpreter(model_content=blob, num_threads=threads)
    except Exception as exc:
        raise ExportError(f"LiteRT cannot load the file: {type(exc).__name__}: {exc}") from None


def check_uint8_input(blob: bytes) -> None:
    """The int8 file takes raw uint8 pixels as they are: input scale 1, zero point 0."""
    inp = interpreter(blob).get_input_details()[0]
    scale, zero = inp["quantization"]
    if inp["dtype"] != np.uint8 or abs(scale - 1.0) > 1e-6 or zero != 0:
        raise ExportError(
            f"model.int8.tflite: input is {np.dtype(inp['dtype']).name} with scale {scale} and "
            f"zero point {zero}; the contract needs uint8 raw pixels (scale 1, zero point 0). "
            "Calibrate on images that span 0–255"
        )


def predict_tflite(blob: bytes, x: np.ndarray, batch_size: int = 250,
                   progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Probabilities from .tflite bytes for uint8 images, run by ``cifarkit.backends``' litert
    runtime as every other model is. A bare file names no classes: 10 outputs are taken as
    CIFAR-10's (export runs its files beside their ONNX siblings, which name them)."""
    from cifarkit.backends import get_runtime

    with tempfile.TemporaryDirectory(prefix="cifarkit-tflite-") as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(blob)
        with get_runtime("litert").open(path) as model:
            out = np.empty((len(x), model.n_classes), np.float32)
            for s in range(0, len(x), batch_size):
                out[s:s + batch_size] = model.predict_proba(x[s:s + batch_size])
                if progress:
                    progress(min(s + batch_size, len(x)), len(x))
    return out
