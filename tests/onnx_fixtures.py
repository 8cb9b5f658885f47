"""Small ONNX models built with ``onnx.helper`` for runtime and predict tests (no TensorFlow).

``color_model``: a nearest-prototype colour classifier that honours the cifarkit ONNX
contract (uint8 ``images`` [batch,32,32,3] → float32 ``probabilities`` [batch,10]). Class k
"is" the colour ``PROTOTYPES[k]``: a solid image of that colour is predicted as class k with
high confidence, so tests can check real labels for every file format and pixel mode.
Mean RGB features f ∈ [0,1]³; logits_k = T·(2 f·c_k − |c_k|²) (the −|f|² term is the same for
every class), i.e. softmax over −T·|f − c_k|².

``cnn_model``: the topology of the registry's ``cnn-batchnorm`` (Conv32×2 → BN → pool →
Conv64×2 → BN → pool → Dense 512 → BN → Dense 10 → softmax, 890k parameters) with seeded
random weights, for throughput measurements before a trained export exists.

``scored_model``: the colour classifier with the contract's second output ``score``
(float32 ``[batch]``: the mean pixel value minus 128, ``expected_score``) and an ``unknown``
rule on it, for the runtimes, engines and bench that read it.

``broken_model``: models that break the contract in one way each.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

# One colour per class (RGB 0–255). Far apart, so mode conversions keep the nearest one.
PROTOTYPES: dict[str, tuple[int, int, int]] = {
    "airplane": (255, 0, 0),      # red
    "automobile": (0, 255, 0),    # green
    "bird": (0, 0, 255),          # blue
    "cat": (255, 255, 255),       # white
    "deer": (0, 0, 0),            # black
    "dog": (255, 255, 0),         # yellow
    "frog": (0, 255, 255),        # cyan
    "horse": (255, 0, 255),       # magenta
    "ship": (128, 128, 128),      # grey
    "truck": (255, 128, 0),       # orange
}
TEMPERATURE = 20.0


def expected_label(rgb: Sequence[float]) -> str:
    """The class the colour model predicts for a solid image of colour ``rgb`` (0–255)."""
    f = np.asarray(rgb, dtype=np.float64) / 255.0
    dists = [np.sum((f - np.asarray(PROTOTYPES[c]) / 255.0) ** 2) for c in CLASSES]
    return CLASSES[int(np.argmin(dists))]


def _metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def default_metadata(precision: str = "fp32", **extra: str) -> dict[str, str]:
    props = {
        "class_names": json.dumps(list(CLASSES)),
        "architecture": "color-prototype",
        "precision": precision,
        "input_description": "uint8 RGB images [batch, 32, 32, 3], raw pixels 0-255",
    }
    props.update(extra)
    return props


def _save(model: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    # onnx 1.23 writes IR version 14 by default; onnxruntime 1.31 reads up to 13. Opset 17
    # belongs to IR 8, what exporters such as tf2onnx write.
    model.ir_version = 8
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.checker.check_model(model)
    onnx.save(model, os.fspath(path))
    return path


def _opset() -> list[onnx.OperatorSetIdProto]:
    return [helper.make_opsetid("", 17)]


def color_model(
    path: str | os.PathLike[str],
    *,
    input_kind: str = "uint8",
    metadata: dict[str, str] | None = None,
    n_classes: int = 10,
    input_name: str = "images",
    output_name: str = "probabilities",
    softmax: bool = True,
    image_size: int = 32,
) -> Path:
    """Write the colour classifier. ``input_kind``: ``uint8`` (contract) or ``float01``;
    ``image_size``: S of its ``[batch, S, S, 3]`` input (it averages the pixels)."""
    protos = np.array([PROTOTYPES[c] for c in CLASSES], dtype=np.float32) / 255.0  # [10,3]
    protos = np.resize(protos, (n_classes, 3))
    weight = (2 * TEMPERATURE * protos.T).astype(np.float32)  # [3, n]
    bias = (-TEMPERATURE * np.sum(protos**2, axis=1)).astype(np.float32)  # [n]
    inits = [
        numpy_helper.from_array(weight, "W"),
        numpy_helper.from_array(bias, "B"),
    ]
    nodes = []
    if input_kind == "uint8":
        in_type = TensorProto.UINT8
        inits.append(numpy_helper.from_array(np.array(1 / 255, dtype=np.float32), "scale"))
        nodes += [
            helper.make_node("Cast", [input_name], ["x_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["x_f", "scale"], ["x01"]),
        ]
    elif input_kind == "float01":
        in_type = TensorProto.FLOAT
        nodes.append(helper.make_node("Identity", [input_name], ["x01"]))
    else:
        raise ValueError(input_kind)
    last = output_name if not softmax else "logits"
    nodes += [
        helper.make_node("ReduceMean", ["x01"], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["mean", "W"], ["mw"]),
        helper.make_node("Add", ["mw", "B"], [last]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], [output_name], axis=-1))
    graph = helper.make_graph(
        nodes, "color_model",
        [helper.make_tensor_value_info(input_name, in_type,
                                       ["batch", image_size, image_size, 3])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", n_classes])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=_opset(), producer_name="cifarkit-tests")
    if metadata is None:
        metadata = default_metadata()
        if input_kind == "float01":
            metadata["input_description"] = "float32 RGB images [batch, 32, 32, 3] scaled to 0-1"
    _metadata(model, metadata)
    return _save(model, path)


SCORE_OFFSET = 128.0  # scored_model's score: mean pixel value (0–255) minus this


def expected_score(images: np.ndarray) -> np.ndarray:
    """``scored_model``'s ``score`` of uint8 ``[N, S, S, 3]`` images, in float64."""
    return images.astype(np.float64).mean(axis=(1, 2, 3)) - SCORE_OFFSET


def scored_model(path: str | os.PathLike[str], threshold: float | None = 0.0, *,
                 score: bool = True, score_type: int = TensorProto.FLOAT,
                 score_rank: int = 1) -> Path:
    """``color_model`` plus an output ``score`` = ReduceMean of the pixels − 128
    (``expected_score``), and the metadata rule ``{"score": "score", "threshold":
    threshold}`` (None: no rule). ``score=False``: the rule without the output;
    ``score_type`` / ``score_rank``: a score output of another element type or rank (2:
    ``[batch, 1]``)."""
    path = color_model(path, metadata=default_metadata(**({} if threshold is None else {
        "unknown": json.dumps({"score": "score", "threshold": threshold, "acceptance": 0.9,
                               "fitted_on": "no images (a test rule)"})})))
    if not score:
        return path
    model = onnx.load(os.fspath(path))
    g = model.graph
    g.initializer.append(numpy_helper.from_array(np.array(SCORE_OFFSET, np.float32),
                                                 "score_offset"))
    last = "score" if score_type == TensorProto.FLOAT else "score_f"
    g.node.extend([
        helper.make_node("Cast", ["images"], ["px"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["px"], ["px_rgb"], axes=[1, 2], keepdims=0),
        helper.make_node("ReduceMean", ["px_rgb"], ["px_mean"], axes=[1],
                         keepdims=int(score_rank == 2)),
        helper.make_node("Sub", ["px_mean", "score_offset"], [last]),
    ])
    if last != "score":
        g.node.append(helper.make_node("Cast", [last], ["score"], to=score_type))
    dims = ["batch"] if score_rank == 1 else ["batch", 1]
    g.output.append(helper.make_tensor_value_info("score", score_type, dims))
    return _save(model, path)


def scored_tflite(path: str | os.PathLike[str], *, score_rank: int = 2,
                  score_type: str = "float32") -> Path:
    """``scored_model``'s two outputs as a .tflite file written by hand (LiteRT's own
    flatbuffer schema, no converter): CAST → MEAN over H, W → FULLY_CONNECTED → SOFTMAX,
    and MEAN over RGB − 128 as the score, ``[batch, 1]`` (``score_rank`` 1: ``[batch]``).
    The outputs carry converter-style names, the score first, so a runtime must pick them
    by name. ``score_type`` ``"int32"``: a score output of a type the contract refuses."""
    from ai_edge_litert import schema_py_generated as S
    from flatbuffers import Builder

    op, opt = S.BuiltinOperator, S.BuiltinOptions
    protos = np.array([PROTOTYPES[c] for c in CLASSES], np.float32) / 255.0
    model, graph = S.ModelT(), S.SubGraphT()
    model.version, model.buffers, model.operatorCodes = 3, [S.BufferT()], []
    graph.tensors, graph.operators = [], []

    def tensor(name: str, shape: list[int], kind: int = S.TensorType.FLOAT32,
               data: np.ndarray | None = None) -> int:
        t = S.TensorT()
        t.name, t.shape, t.type, t.buffer = name, shape, kind, 0
        t.shapeSignature = [-1, *shape[1:]] if data is None else shape
        if data is not None:
            buf = S.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            model.buffers.append(buf)
            t.buffer = len(model.buffers) - 1
        graph.tensors.append(t)
        return len(graph.tensors) - 1

    def node(code: int, ins: list[int], outs: list[int], kind: int, options: object) -> None:
        codes = [c.builtinCode for c in model.operatorCodes]
        if code not in codes:
            c = S.OperatorCodeT()
            c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), 1
            model.operatorCodes.append(c)
            codes.append(code)
        o = S.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = codes.index(code), ins, outs
        o.builtinOptionsType, o.builtinOptions = kind, options
        graph.operators.append(o)

    def options(cls: type, **values: object) -> object:
        o = cls()
        for k, v in values.items():
            setattr(o, k, v)
        return o

    rank2 = score_rank == 2
    images = tensor("serving_default_images:0", [1, 32, 32, 3], S.TensorType.UINT8)
    x = tensor("x_f", [1, 32, 32, 3])
    rgb = tensor("rgb", [1, 3])
    logits = tensor("logits", [1, 10])
    score_kind = S.TensorType.INT32 if score_type == "int32" else S.TensorType.FLOAT32
    probs = tensor("StatefulPartitionedCall:probabilities", [1, 10])
    mean = tensor("mean", [1, 1] if rank2 else [1])
    score = tensor("StatefulPartitionedCall:score", [1, 1] if rank2 else [1], score_kind)
    hw = tensor("axes_hw", [2], S.TensorType.INT32, np.array([1, 2], np.int32))
    ch = tensor("axes_c", [1], S.TensorType.INT32, np.array([1], np.int32))
    w = tensor("fc_w", [10, 3], data=(2 * TEMPERATURE * protos / 255).astype(np.float32))
    b = tensor("fc_b", [10], data=(-TEMPERATURE * np.sum(protos**2, 1)).astype(np.float32))
    offset = tensor("offset", [1], data=np.array([SCORE_OFFSET], np.float32))
    node(op.CAST, [images], [x], opt.CastOptions, options(
        S.CastOptionsT, inDataType=S.TensorType.UINT8, outDataType=S.TensorType.FLOAT32))
    node(op.MEAN, [x, hw], [rgb], opt.ReducerOptions, options(S.ReducerOptionsT))
    node(op.FULLY_CONNECTED, [rgb, w, b], [logits], opt.FullyConnectedOptions,
         options(S.FullyConnectedOptionsT))
    node(op.SOFTMAX, [logits], [probs], opt.SoftmaxOptions, options(S.SoftmaxOptionsT, beta=1.0))
    node(op.MEAN, [rgb, ch], [mean], opt.ReducerOptions,
         options(S.ReducerOptionsT, keepDims=rank2))
    last = score if score_kind == S.TensorType.FLOAT32 else tensor("score_f", graph.tensors[
        score].shape)
    node(op.SUB, [mean, offset], [last], opt.SubOptions, options(S.SubOptionsT))
    if last != score:
        node(op.CAST, [last], [score], opt.CastOptions, options(
            S.CastOptionsT, inDataType=S.TensorType.FLOAT32, outDataType=score_kind))
    graph.inputs, graph.outputs = [images], [score, probs]
    model.subgraphs = [graph]
    builder = Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(builder.Output()))
    return path


def broken_model(path: str | os.PathLike[str], kind: str) -> Path:
    """A model that breaks the contract in one way: see ``BROKEN_KINDS``."""
    path = Path(path)
    if kind == "five_classes":  # outputs 5 scores, metadata still lists 10 class names
        return color_model(path, n_classes=5)
    if kind == "logits":  # scores that are not probabilities
        return color_model(path, softmax=False)
    if kind == "bad_class_names":
        return color_model(path, metadata=default_metadata(class_names="cat, dog"))
    x = "images"
    out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])
    inits = [numpy_helper.from_array(np.zeros((1, 10), np.float32), "zeros")]
    if kind == "nchw":  # channels-first input
        inputs = [helper.make_tensor_value_info(x, TensorProto.UINT8, ["batch", 3, 32, 32])]
    elif kind == "int64_input":
        inputs = [helper.make_tensor_value_info(x, TensorProto.INT64, ["batch", 32, 32, 3])]
    elif kind == "two_inputs":
        inputs = [
            helper.make_tensor_value_info(x, TensorProto.UINT8, ["batch", 32, 32, 3]),
            helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["batch", 1]),
        ]
    elif kind == "two_outputs":
        inputs = [helper.make_tensor_value_info(x, TensorProto.UINT8, ["batch", 32, 32, 3])]
    else:
        raise ValueError(kind)
    # Constant-ish graph: uniform probabilities shaped [batch, 10] from the input's batch dim.
    inits += [
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([10], dtype=np.int64), "ten"),
    ]
    nodes = [
        helper.make_node("Shape", [x], ["shape"]),
        helper.make_node("Gather", ["shape", "axis0"], ["n"], axis=0),
        helper.make_node("Concat", ["n", "ten"], ["target"], axis=0),
        helper.make_node("Expand", ["zeros", "target"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    outputs = [out]
    if kind == "two_outputs":  # neither output is called "probabilities": ambiguous
        nodes[-1] = helper.make_node("Softmax", ["logits"], ["scores"], axis=-1)
        nodes.append(helper.make_node("Identity", ["logits"], ["logits_out"]))
        outputs = [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 10])
            for name in ("scores", "logits_out")
        ]
    graph = helper.make_graph(nodes, f"broken_{kind}", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=_opset(), producer_name="cifarkit-tests")
    _metadata(model, default_metadata())
    return _save(model, path)


BROKEN_KINDS = (
    "five_classes", "logits", "bad_class_names", "nchw", "int64_input", "two_inputs",
    "two_outputs",
)


def cnn_model(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """``cnn-batchnorm``'s layers (NHWC in, as tf2onnx exports Keras) with random weights."""
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name))
        return name

    def conv(x: str, name: str, cin: int, cout: int) -> str:
        w = rng.normal(0, np.sqrt(2 / (9 * cin)), (cout, cin, 3, 3))
        nodes.append(helper.make_node(
            "Conv", [x, const(f"{name}_w", w), const(f"{name}_b", np.zeros(cout))], [f"{name}_c"],
            kernel_shape=[3, 3],
        ))
        nodes.append(helper.make_node("Relu", [f"{name}_c"], [name]))
        return name

    def bn(x: str, name: str, c: int) -> str:
        nodes.append(helper.make_node(
            "BatchNormalization",
            [x, const(f"{name}_s", 1 + 0.1 * rng.normal(size=c)),
             const(f"{name}_b", 0.1 * rng.normal(size=c)),
             const(f"{name}_m", 0.1 * rng.normal(size=c)), const(f"{name}_v", np.ones(c))],
            [name], epsilon=1e-3,
        ))
        return name

    def pool(x: str, name: str) -> str:
        nodes.append(helper.make_node("MaxPool", [x], [name], kernel_shape=[2, 2], strides=[2, 2]))
        return name

    def dense(x: str, name: str, cin: int, cout: int, relu: bool) -> str:
        w = rng.normal(0, np.sqrt(2 / cin), (cin, cout))
        out = f"{name}_g" if relu else name
        nodes.append(helper.make_node(
            "Gemm", [x, const(f"{name}_w", w), const(f"{name}_b", np.zeros(cout))], [out]
        ))
        if relu:
            nodes.append(helper.make_node("Relu", [out], [name]))
        return name

    inits.append(numpy_helper.from_array(np.array(1 / 255, dtype=np.float32), "scale"))
    inits.append(numpy_helper.from_array(np.array([-1, 1600], dtype=np.int64), "flat_shape"))
    nodes += [
        helper.make_node("Cast", ["images"], ["x_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x_f", "scale"], ["x01"]),
        helper.make_node("Transpose", ["x01"], ["nchw"], perm=[0, 3, 1, 2]),
    ]
    x = conv("nchw", "conv1_1", 3, 32)
    x = conv(x, "conv1_2", 32, 32)
    x = pool(bn(x, "bn_1", 32), "pool1")
    x = conv(x, "conv2_1", 32, 64)
    x = conv(x, "conv2_2", 64, 64)
    x = pool(bn(x, "bn_2", 64), "pool2")
    nodes.append(helper.make_node("Transpose", [x], ["nhwc"], perm=[0, 2, 3, 1]))
    nodes.append(helper.make_node("Reshape", ["nhwc", "flat_shape"], ["flat"]))
    x = dense("flat", "fc1", 1600, 512, relu=True)
    x = bn(x, "bn_fc", 512)
    x = dense(x, "predictions", 512, 10, relu=False)
    nodes.append(helper.make_node("Softmax", [x], ["probabilities"], axis=-1))
    graph = helper.make_graph(
        nodes, "cnn_batchnorm_random",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", 32, 32, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=_opset(), producer_name="cifarkit-tests")
    _metadata(model, default_metadata(architecture="cnn-batchnorm (random weights)"))
    return _save(model, path)


def crashing_decode(path: str) -> np.ndarray:
    """An image decoder that dies (as a crash inside Pillow would) on names containing
    ``crash``; importable, so decoder processes can run it."""
    if "crash" in os.path.basename(path):
        os._exit(1)
    from cifarkit.data.images import load_image

    return load_image(path)


def solid(rgb: Sequence[int], size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """A solid-colour RGB uint8 image (height, width, 3)."""
    return np.broadcast_to(np.asarray(rgb, np.uint8), (size[1], size[0], 3)).copy()


def linear_model(path: str | os.PathLike[str], weight: np.ndarray, bias: np.ndarray,
                 classes: Sequence[str], image_size: int,
                 metadata: dict[str, str] | None = None) -> Path:
    """A softmax regression on grey pixels under the contract: uint8 ``[batch, S, S, 3]`` →
    mean of the channels / 255, flattened to ``S·S`` → ``x @ weight + bias`` → softmax.
    ``weight`` ``[S·S, K]`` and ``bias`` ``[K]`` come from a real fit (e.g. scikit-learn's
    ``LogisticRegression.coef_.T`` and ``intercept_`` on those features: ``grey_features``)."""
    inits = [numpy_helper.from_array(weight.astype(np.float32), "W"),
             numpy_helper.from_array(bias.astype(np.float32), "B"),
             numpy_helper.from_array(np.array(1 / 255, dtype=np.float32), "scale"),
             numpy_helper.from_array(np.array([-1, image_size * image_size], np.int64), "flat")]
    nodes = [
        helper.make_node("Cast", ["images"], ["x_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x_f", "scale"], ["x01"]),
        helper.make_node("ReduceMean", ["x01"], ["grey"], axes=[3], keepdims=0),
        helper.make_node("Reshape", ["grey", "flat"], ["x"]),
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "linear_model",
        [helper.make_tensor_value_info("images", TensorProto.UINT8,
                                       ["batch", image_size, image_size, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                       ["batch", len(classes)])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=_opset(), producer_name="cifarkit-tests")
    _metadata(model, {"class_names": json.dumps(list(classes)),
                      "architecture": "softmax-regression", "image_size": str(image_size),
                      **(metadata or {})})
    return _save(model, path)


def grey_features(images: np.ndarray) -> np.ndarray:
    """``linear_model``'s features of uint8 ``[N, S, S, 3]`` images, in float64."""
    return (images.astype(np.float64) / 255).mean(axis=3).reshape(len(images), -1)
