"""Keras → ONNX with tf2onnx, through a ``tf.function`` with an explicit uint8 signature.

Why not the obvious entry points (verified with TF 2.21, Keras 3.15, tf2onnx 1.17):
``tf2onnx.convert.from_keras`` fails on ``keras.Sequential`` models under Keras 3
(``KeyError 'keras_tensor_N'``), and Keras's own ``model.export(format="onnx")`` produced a
second, stray graph input for a model with preprocessing inside. Tracing our own
``tf.function`` works for Sequential and functional models alike, and lets the graph start
with the contract's uint8 input: the function casts to float32 and calls the model with
``training=False``, so dropout and batch-norm statistics updates are not in the graph.
"""

from __future__ import annotations

from typing import Any

from cifarkit.errors import ExportError, UsageError

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
BATCH_DIM = "batch"
DEFAULT_OPSET = 17
#: Per-channel QDQ quantization needs opset 13 (axis on QuantizeLinear/DequantizeLinear);
#: older opsets also lack the standard ops other edge runtimes expect.
MIN_OPSET = 13


def require(module: str, package: str, why: str) -> Any:
    """Import ``module`` or raise ``ExportError`` naming the package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExportError(
            f"{package} is needed {why} but cannot be imported ({exc}). Install it with "
            f"`pip install {package}` (it is one of cifarkit's dependencies: "
            "`pip install -e .` installs them all)"
        ) from None


def max_opset() -> int:
    """The newest opset both tf2onnx and the installed onnx support."""
    onnx = require("onnx", "onnx", "to build and check ONNX models")
    constants = require("tf2onnx.constants", "tf2onnx", "to convert Keras models to ONNX")
    return min(max(constants.OPSET_TO_IR_VERSION), onnx.defs.onnx_opset_version())


def check_opset(opset: int) -> int:
    """Validate ``--opset``: ``MIN_OPSET`` ≤ opset ≤ :func:`max_opset`."""
    def refuse(top: int | str) -> UsageError:
        return UsageError(
            f"unsupported opset {opset!r}: use {MIN_OPSET}–{top} (default {DEFAULT_OPSET}). "
            f"Below {MIN_OPSET} per-channel int8 and standard edge runtimes are not supported; "
            f"above {top} the installed tf2onnx/onnx cannot write it"
        )

    # The lower bound first: it needs no import (tf2onnx imports TensorFlow, seconds).
    if not isinstance(opset, int) or isinstance(opset, bool) or opset < MIN_OPSET:
        raise refuse("the newest tf2onnx supports")
    top = max_opset()
    if opset > top:
        raise refuse(top)
    return opset


def _erfc_handler(ctx: Any, node: Any, name: str, args: Any) -> None:
    """TF ``Erfc`` as ONNX ``1 - Erf(x)``.

    Keras 3's exact GELU (``activation="gelu"``) lowers to ``tf.math.erfc`` on TensorFlow,
    which tf2onnx 1.17 cannot convert; ONNX has ``Erf`` (opset 9) but no ``Erfc``.
    """
    import numpy as np
    from tf2onnx import utils

    node.type = "Erf"
    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype))
    ctx.insert_new_node_on_output("Sub", node.output[0], name=utils.make_name(f"{node.name}_erfc"),
                                  inputs=[one.output[0], node.output[0]])


def keras_to_onnx(model: Any, opset: int = DEFAULT_OPSET) -> Any:
    """Convert a Keras model (raw RGB 0–255 float input) to an ``onnx.ModelProto``.

    The result has exactly one input ``images`` uint8 ``[batch, S, S, 3]`` (S: the model's
    input size) and one output ``probabilities`` float32 ``[batch, n_classes]``, ``batch`` a
    symbolic dimension.
    """
    check_opset(opset)
    tf = require("tensorflow", "tensorflow", "to trace the Keras model for conversion")
    tf2onnx = require("tf2onnx", "tf2onnx", "to convert Keras models to ONNX")

    size = int(model.inputs[0].shape[1])
    spec = tf.TensorSpec([None, size, size, 3], tf.uint8, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(images: Any) -> Any:
        # The dict key names the output tensor; tf2onnx keeps it as the graph output name.
        return {OUTPUT_NAME: model(tf.cast(images, tf.float32), training=False)}

    try:
        proto, _ = tf2onnx.convert.from_function(
            serve, input_signature=[spec], opset=opset,
            custom_op_handlers={"Erfc": (_erfc_handler, ())})
    except Exception as exc:  # tf2onnx raises plain Exceptions/KeyErrors on unsupported ops
        raise ExportError(
            f"tf2onnx could not convert the model at opset {opset} "
            f"({type(exc).__name__}: {exc}). Try another --opset, or report the layer types "
            "the model uses"
        ) from None
    return normalize_io(proto)


def normalize_io(proto: Any) -> Any:
    """Name the single input/output per the contract and call the batch dimension ``batch``."""
    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ExportError(
            f"the converted graph has {len(inputs)} inputs and {len(graph.output)} outputs; "
            "the contract needs exactly one of each"
        )
    _rename(graph, inputs[0].name, INPUT_NAME)
    _rename(graph, graph.output[0].name, OUTPUT_NAME)
    for value in (inputs[0], graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = BATCH_DIM
    return proto


def _rename(graph: Any, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new
