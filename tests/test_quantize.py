"""int8 quantization of ReLU conv chains (issue 21): what the graph becomes, what is recorded.

Small hand-built graphs shaped like tf2onnx's fastnet-relu export (Cast → normalize →
Transpose → [Conv → Relu → MaxPool] × 2 → GlobalMaxPool → MatMul → Softmax), so these run in
seconds without TensorFlow.
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest

from cifarkit.errors import UsageError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from cifarkit.export.quantize import quantize_int8  # noqa: E402


def relu_chain(gelu: bool = False, seed: int = 0) -> onnx.ModelProto:
    """Conv → Relu (or GELU as tf2onnx writes it: x·½·(1+erf(x/√2))) → MaxPool, twice."""
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, arr) -> str:
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    def block(x: str, name: str, cin: int, cout: int) -> str:
        w = rng.normal(0, np.sqrt(2 / (9 * cin)), (cout, cin, 3, 3))
        nodes.append(helper.make_node(
            "Conv", [x, const(f"{name}_w", w), const(f"{name}_b", rng.normal(0, 0.1, cout))],
            [f"{name}_c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        if gelu:
            nodes.extend([
                helper.make_node("Mul", [f"{name}_c", const(f"{name}_r2", 2 ** -0.5)],
                                 [f"{name}_s"]),
                helper.make_node("Erf", [f"{name}_s"], [f"{name}_e"]),
                helper.make_node("Add", [f"{name}_e", const(f"{name}_one", 1.0)],
                                 [f"{name}_e1"]),
                helper.make_node("Mul", [f"{name}_c", f"{name}_e1"], [f"{name}_m"]),
                helper.make_node("Mul", [f"{name}_m", const(f"{name}_half", 0.5)],
                                 [f"{name}_a"]),
            ])
        else:
            nodes.append(helper.make_node("Relu", [f"{name}_c"], [f"{name}_a"]))
        nodes.append(helper.make_node("MaxPool", [f"{name}_a"], [name], kernel_shape=[2, 2],
                                      strides=[2, 2]))
        return name

    nodes += [
        helper.make_node("Cast", ["images"], ["x_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x_f", const("scale", 1 / 64)], ["x_s"]),
        helper.make_node("Add", ["x_s", const("shift", -2.0)], ["x_n"]),
        helper.make_node("Transpose", ["x_n"], ["nchw"], perm=[0, 3, 1, 2]),
    ]
    x = block("nchw", "b1", 3, 16)
    x = block(x, "b2", 16, 32)
    nodes += [
        helper.make_node("GlobalMaxPool", [x], ["gp"]),
        helper.make_node("Flatten", ["gp"], ["flat"]),
        helper.make_node("MatMul", ["flat", const("head", rng.normal(0, 0.2, (32, 10)))],
                         ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "relu_chain",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", 32, 32, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _calib(n: int = 20) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _optimized(proto: onnx.ModelProto, tmp_path) -> Counter:
    """Op types of the graph onnxruntime runs after its fusions (CPU, all optimizations)."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.optimized_model_filepath = os.fspath(tmp_path / "optimized.onnx")
    ort.InferenceSession(proto.SerializeToString(), sess_options=opts,
                         providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node)


def test_relu_conv_chain_becomes_fused_int8_convolutions(tmp_path):
    q, info = quantize_int8(relu_chain(), _calib())
    ops = Counter(n.op_type for n in q.graph.node)
    # The quantizer absorbs each Relu into its Conv's output range: no Relu left.
    assert ops["Relu"] == 0 and ops["Conv"] == 2
    producers = {o: n for n in q.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in q.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    for conv in (n for n in q.graph.node if n.op_type == "Conv"):
        # DQ → Conv → Q on both sides: what onnxruntime fuses into one QLinearConv.
        assert producers[conv.input[0]].op_type == "DequantizeLinear"
        assert producers[conv.input[1]].op_type == "DequantizeLinear"
        assert consumers[conv.output[0]] == ["QuantizeLinear"]
    # The probabilities come from a float Softmax.
    assert producers["probabilities"].op_type == "Softmax"
    run = _optimized(q, tmp_path)
    assert run["QLinearConv"] == 2 and run["Conv"] == 0 and run["Relu"] == 0
    assert (info.format, info.activation_type, info.weight_type, info.per_channel) == (
        "QDQ", "QInt8", "QInt8", True)
    assert info.op_types is None  # no GELU: every op type onnxruntime quantizes
    # Still the contract, and still the fp32 model's answers on most images.
    x = _calib(64)
    fp32 = ort.InferenceSession(relu_chain().SerializeToString(),
                                providers=["CPUExecutionProvider"])
    int8 = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"])
    a = fp32.run(["probabilities"], {"images": x})[0]
    b = int8.run(["probabilities"], {"images": x})[0]
    assert b.shape == (64, 10) and b.dtype == np.float32
    np.testing.assert_allclose(b.sum(axis=1), 1.0, atol=1e-3)
    assert np.mean(a.argmax(1) == b.argmax(1)) >= 0.8


def test_gelu_graph_keeps_quantizing_only_the_compute_ops(tmp_path):
    q, info = quantize_int8(relu_chain(gelu=True), _calib())
    assert info.op_types == ("Conv", "Gemm", "MatMul", "MaxPool")
    ops = Counter(n.op_type for n in q.graph.node)
    assert ops["Erf"] == 2
    producers = {o: n.op_type for n in q.graph.node for o in n.output}
    # GELU's elementwise steps read float from the Conv's DQ, not Q/DQ pairs of their own.
    erf_inputs = [producers[n.input[0]] for n in q.graph.node if n.op_type == "Erf"]
    assert erf_inputs == ["Mul", "Mul"]
    # The cost issue 21 is about: a Conv whose output feeds float GELU has no Q after it, so
    # onnxruntime runs it as a float Conv on dequantized inputs, not as a QLinearConv.
    run = _optimized(q, tmp_path)
    assert run["QLinearConv"] == 0 and run["Conv"] + run.get("FusedConv", 0) == 2


def test_activation_type_is_recorded_and_used():
    q, info = quantize_int8(relu_chain(), _calib(), activation_type="QUInt8")
    assert info.activation_type == "QUInt8" and info.to_dict()["activation_type"] == "QUInt8"
    inits = {t.name: t for t in q.graph.initializer}
    zero_points = {inits[n.input[2]].data_type for n in q.graph.node
                   if n.op_type == "QuantizeLinear"}
    assert zero_points == {TensorProto.UINT8}
    _, default = quantize_int8(relu_chain(), _calib())
    assert default.activation_type == "QInt8"


def test_settings_that_measured_slower_are_refused():
    # QOperator with int8 activations ran at 0.13x fp32 (benchmarks/results/int8-choices).
    with pytest.raises(UsageError, match="QOperator"):
        quantize_int8(relu_chain(), _calib(), quant_format="QOperator")
    with pytest.raises(UsageError, match="int8 types"):
        quantize_int8(relu_chain(), _calib(), activation_type="QInt4")
