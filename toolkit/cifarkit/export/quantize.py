"""FP16 (onnxconverter-common) and INT8 (onnxruntime static quantization) from the fp32 graph.

INT8 follows onnxruntime's quantization guide: QDQ format, S8S8 (int8 activations and
weights), per-channel weights (needs opset ≥ 13), calibrated on *training* images only.
``reduce_range`` (7-bit weights) is for x86 CPUs without VNNI, where the U8S8/S8S8 integer
kernels use ``vpmaddubsw`` and can saturate; with VNNI the full range is safe. The model is
pre-processed first (``quant_pre_process``: shape inference + graph optimisation) as the guide
recommends. The final Softmax is kept in float so ``probabilities`` stay rows summing to 1.
Batch norm placed after a ReLU is folded into the neighbouring Conv/Gemm first (``fold.py``,
exact algebra, checked numerically): left in place, its per-channel scales and the unequal
activation ranges in front of it cost a real-data cnn-batchnorm 1.3 accuracy points and 14 %
top-1 agreement in int8; folded, +0.5 points, 96 % agreement and a pure QLinearConv chain.

Why these settings (issue 21; ``benchmarks/int8_choices.py``, results in
``benchmarks/results/int8-choices-*.json``; AMD EPYC, 2 cores, AVX-512 VNNI, shared with a
training run, so speeds are int8/fp32 ratios measured interleaved in one run, 1 thread):

- The activation decides the speed, not the quantizer flags. A ReLU after Conv(+folded BN)
  is absorbed into the Conv's output range, so each block becomes DQ → Conv → Q, which
  onnxruntime fuses into one ``QLinearConv`` (and MaxPool runs on int8). GELU (``Erf``) stays
  float, the Conv feeding it keeps float output and runs as a float ``Conv`` on dequantized
  inputs: in fastnet's int8 file 4 of 7 convolutions, 62 % of the time at batch 32
  (``benchmarks/results/int8-profile-cpu.json``). fastnet-relu's int8 file is 87 %
  QLinearConv; trained (90.35 % fp32) it runs 3.54× fp32 at batch 32 and 3.49× at batch 1,
  losing 0.00–0.01 points; GELU fastnet 1.23× / 1.34×.
- On the fastnet-relu probe, batch 32 (batch 1), every QDQ variant is within noise of the
  defaults (3.37×, 3.39×): U8S8 3.26× (3.20×), per-tensor 3.50× (3.14×), reduce_range
  3.39× (3.18×), percentile / entropy calibration 3.45× / 3.55× (3.24× / 3.37×). Quantizing
  only the conv chain (pre-processing, flip TTA and head left float) is slower: 3.06×
  (3.08×); the head left float 3.47× (3.33×). QOperator with S8S8 runs at 0.13× (refused
  below), QOperator U8S8 3.46× (3.10×): no gain over QDQ.
- Accuracy (points vs fp32, full test split): per-tensor weights cost 0.43 (cnn-batchnorm)
  and 1.31 (fastnet); only the convs and head quantized (pre-processing, flip float) 0.59
  (cnn-batchnorm); U8S8 and entropy calibration equal the defaults; percentile −0.11 / −0.09 / −0.02
  (cnn-batchnorm / fastnet / fastnet-relu); reduce_range −0.03 / −0.14 / −0.01 against
  the full range. So the
  defaults stay: QDQ, S8S8, per-channel, min-max, every op type (GELU graphs: the compute
  ops only, ``GELU_OP_TYPES``). A file meant for CPUs without VNNI too (the shipped default)
  should be exported with ``--reduce-range``: it costs ≤ 0.14 points here and no speed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cifarkit.backends.matrix import agreement
from cifarkit.backends.onnxruntime import cpu_session, session_proba
from cifarkit.errors import ExportError, UsageError
from cifarkit.export.convert import INPUT_NAME, OUTPUT_NAME, require
from cifarkit.export.fold import fold_post_activation_affine
from cifarkit.measure.machine import cpu_has_vnni

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIBRATION_IMAGES = 500
CALIBRATION_BATCH = 50


# --- FP16 ----------------------------------------------------------------------------------


def to_float16(proto: Any) -> Any:
    """FP16 weights and compute, fp32 graph I/O (``keep_io_types``); uint8 input unchanged."""
    import onnx

    float16 = require("onnxconverter_common.float16", "onnxconverter-common",
                      "for --precision fp16")
    import warnings

    with warnings.catch_warnings():
        # "the float32 number 1e-08 will be truncated to 1e-07": expected for tiny weights.
        warnings.simplefilter("ignore", UserWarning)
        try:
            half = float16.convert_float_to_float16(onnx.ModelProto.FromString(
                proto.SerializeToString()), keep_io_types=True)
        except Exception as exc:
            raise ExportError(
                f"fp16 conversion failed ({type(exc).__name__}: {exc})"
            ) from None
    _fix_input_cast(half)
    return half


def _fix_input_cast(proto: Any) -> None:
    """Make ``Cast(images → float)`` cast to float16 where its output became float16.

    onnxconverter-common rewrites every float value_info to float16 but leaves a ``Cast``
    node's ``to`` attribute alone; for our uint8 input the first node is
    ``Cast(uint8 → float)``, which then disagrees with its (now float16) output and fails
    the checker. Casting uint8 straight to float16 is exact for 0–255.
    """
    from onnx import TensorProto

    value_types = {v.name: v.type.tensor_type.elem_type for v in proto.graph.value_info}
    for node in proto.graph.node:
        if node.op_type != "Cast" or value_types.get(node.output[0]) != TensorProto.FLOAT16:
            continue
        for attr in node.attribute:
            if attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16


# --- INT8 ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantizationInfo:
    format: str
    activation_type: str
    weight_type: str
    per_channel: bool
    reduce_range: bool
    cpu_vnni: bool
    calibration_method: str
    calibration_images: int
    calibration_data: str
    excluded_nodes: tuple[str, ...]
    #: Post-ReLU batch-norm Mul/Add nodes folded into the neighbouring Conv/Gemm first.
    folded_affine: int = 0
    #: Op types quantized; ``None``: every type onnxruntime's QDQ quantizer supports.
    op_types: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["excluded_nodes"] = list(self.excluded_nodes)
        d["op_types"] = None if self.op_types is None else list(self.op_types)
        return d


#: For graphs with GELU (``Erf``): quantize the compute ops only. onnxruntime's default also
#: quantizes GELU's Mul/Add, putting Q/DQ pairs around each elementwise step; on fastnet-s
#: (2-core EPYC, no VNNI, batch 32, one thread) that gave 0.88× fp32 speed, these types
#: 0.98× at the same accuracy (87.93 % vs 87.89 %; fp32 87.96 %).
GELU_OP_TYPES = ("Conv", "Gemm", "MatMul", "MaxPool")


QUANT_TYPES = ("QInt8", "QUInt8")
QUANT_FORMATS = ("QDQ", "QOperator")


def _auto_op_types(graph: Any) -> tuple[str, ...] | None:
    if any(n.op_type == "Erf" for n in graph.graph.node):
        return GELU_OP_TYPES
    return None


def _calibration_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    try:
        return methods[name]
    except KeyError:
        raise UsageError(
            f"unknown calibration method {name!r}; use one of {', '.join(CALIBRATION_METHODS)}"
        ) from None


def _reader(images: np.ndarray, batch: int, progress: Callable[[int, int], None] | None) -> Any:
    quantization = require("onnxruntime.quantization", "onnxruntime",
                           "for --precision int8")

    class _Reader(quantization.CalibrationDataReader):  # type: ignore[misc, name-defined]
        """Feeds the calibration images in batches under the graph's input name."""

        def __init__(self) -> None:
            self._batches: Iterator[np.ndarray] = (
                images[s:s + batch] for s in range(0, len(images), batch)
            )
            self._done = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self._batches, None)
            if chunk is None:
                return None
            self._done += len(chunk)
            if progress:
                progress(self._done, len(images))
            return {INPUT_NAME: chunk}

    return _Reader()


def _check_same(reference: Any, candidate: Any, images: np.ndarray) -> None:
    """The folded graph must compute what the original did (fp32 rounding aside)."""
    a, b = (session_proba(cpu_session(g.SerializeToString()), images)
            for g in (reference, candidate))
    _, diff = agreement(b, a)
    if diff > 1e-4:
        raise ExportError(
            f"int8: folding batch norm into the next layer changed the fp32 outputs by {diff:.2e}"
            " (expected only rounding); please report this model"
        )


def _name_nodes(proto: Any) -> int:
    """Give unnamed nodes unique names: the quantizer excludes nodes by name, and an excluded
    Softmax named "" would exclude every unnamed node (tf2onnx names all; hand-built graphs
    often don't)."""
    taken = {n.name for n in proto.graph.node}
    named = 0
    for i, node in enumerate(proto.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
            named += 1
    return named


def _output_softmax(proto: Any) -> list[str]:
    return [n.name for n in proto.graph.node
            if n.op_type == "Softmax" and OUTPUT_NAME in n.output]


def quantize_int8(
    proto: Any,
    calibration_images: np.ndarray,
    *,
    method: str = "minmax",
    reduce_range: bool | None = None,
    calibration_data: str = "",
    progress: Callable[[int, int], None] | None = None,
    activation_type: str = "QInt8",
    weight_type: str = "QInt8",
    per_channel: bool = True,
    quant_format: str = "QDQ",
    op_types: tuple[str, ...] | None | str = "auto",
    exclude_op_types: tuple[str, ...] = (),
) -> tuple[Any, QuantizationInfo]:
    """Static INT8 (QDQ, S8S8, per-channel) of an fp32 contract model.

    ``calibration_images``: uint8 ``[n, S, S, 3]`` *training* images. ``reduce_range``
    defaults to ``not cpu_has_vnni()``. The other settings default to the measured winners
    (module docstring) and exist so ``benchmarks/int8_choices.py`` measures the exporter's own
    code path: ``activation_type``/``weight_type`` ``QInt8``|``QUInt8``, ``quant_format``
    ``QDQ``|``QOperator``, ``op_types`` the op types to quantize (``"auto"``: all, or
    ``GELU_OP_TYPES`` for GELU graphs; ``None``: all), ``exclude_op_types`` op types left float.
    """
    import onnx

    require("onnxruntime", "onnxruntime", "for --precision int8")
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calib_method = _calibration_method(method)
    if activation_type not in QUANT_TYPES or weight_type not in QUANT_TYPES:
        raise UsageError(f"int8 types must be among {', '.join(QUANT_TYPES)}")
    if quant_format not in QUANT_FORMATS:
        raise UsageError(f"int8 format must be one of {', '.join(QUANT_FORMATS)}")
    if quant_format == "QOperator" and activation_type == "QInt8":
        # onnxruntime has no fast x86 QOperator kernels for int8 activations: measured 0.13x
        # fp32 (fastnet-relu, batch 32, 1 thread, EPYC with VNNI) against 3.4x for QDQ.
        raise UsageError("QOperator int8 needs QUInt8 activations (S8S8 QOperator runs at "
                         "about 0.13x fp32 on x86); use QDQ")
    image = next((i for i in proto.graph.input if i.name == INPUT_NAME), None)
    size = image.type.tensor_type.shape.dim[1].dim_value if image is not None else 0
    if calibration_images.ndim != 4 or calibration_images.shape[1:] != (size, size, 3):
        raise ExportError(f"calibration images must be [n, {size}, {size}, 3] (the model's "
                          f"input), got {list(calibration_images.shape)}")
    if len(calibration_images) == 0:
        raise UsageError("--calibration-images must be at least 1")
    calibration_images = np.ascontiguousarray(calibration_images, dtype=np.uint8)
    vnni = cpu_has_vnni()
    if reduce_range is None:
        reduce_range = not vnni
    with tempfile.TemporaryDirectory(prefix="cifarkit-int8-") as tmp:
        src, pre, out = (os.path.join(tmp, f) for f in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(proto, src)
        def pre_process(what: str) -> None:
            # Symbolic shape inference (needs sympy) is for dynamic-shape transformer graphs;
            # ours are static but for the batch dim, which onnx's own inference handles.
            try:
                quant_pre_process(src, pre, skip_symbolic_shape=True)
            except Exception as exc:
                raise ExportError(
                    f"int8 pre-processing of {what} (quant_pre_process) failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from None

        pre_process("the graph")
        pre_proto = onnx.load(pre)
        folded, n_folded = fold_post_activation_affine(pre_proto)
        if n_folded:
            _check_same(pre_proto, folded, calibration_images[:CALIBRATION_BATCH])
            onnx.save(folded, src)
            # Again, so a bias the fold gave a MatMul is fused into a Gemm.
            pre_process("the folded graph")
        pre_graph = onnx.load(pre) if n_folded else pre_proto  # pre.onnx was rewritten
        if _name_nodes(pre_graph):
            onnx.save(pre_graph, pre)
        excluded = _output_softmax(pre_graph) + [
            n.name for n in pre_graph.graph.node if n.op_type in exclude_op_types]
        if op_types == "auto":
            op_types = _auto_op_types(pre_graph)
        assert not isinstance(op_types, str)
        try:
            quantize_static(
                pre, out, _reader(calibration_images, CALIBRATION_BATCH, progress),
                quant_format=getattr(QuantFormat, quant_format),
                activation_type=getattr(QuantType, activation_type),
                weight_type=getattr(QuantType, weight_type),
                per_channel=per_channel,
                reduce_range=reduce_range,
                calibrate_method=calib_method,
                nodes_to_exclude=excluded,
                op_types_to_quantize=list(op_types) if op_types else None,
            )
        except Exception as exc:
            raise ExportError(
                f"int8 quantization failed ({method} calibration on "
                f"{len(calibration_images)} images): {type(exc).__name__}: {exc}"
            ) from None
        quantized = onnx.load(out)
    from cifarkit.export.convert import normalize_io

    info = QuantizationInfo(
        format=quant_format, activation_type=activation_type, weight_type=weight_type,
        per_channel=per_channel,
        reduce_range=bool(reduce_range), cpu_vnni=vnni, calibration_method=method,
        calibration_images=int(len(calibration_images)),
        calibration_data=calibration_data, excluded_nodes=tuple(excluded),
        folded_affine=n_folded, op_types=op_types,
    )
    return normalize_io(quantized), info
