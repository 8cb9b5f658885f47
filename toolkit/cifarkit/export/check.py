"""Structural checks every exported file passes before it is written.

1. ``onnx.checker`` with ``full_check`` (includes strict shape inference) and
   ``onnx.shape_inference`` with type checking;
2. the contract: one input ``images`` uint8 ``[batch, S, S, 3]``, one output
   ``probabilities`` float32 ``[batch, n_classes]`` (then optionally ``score`` float32
   ``[batch]``, ``export.blockscore``), ``batch`` symbolic, S and the classes
   as the metadata says (``cifarkit.contract``), standard ops only;
3. onnxruntime loads it at every graph optimization level and runs a batch of 1 and of 3
   there, returning float32 ``[n, n_classes]`` rows of probabilities.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from cifarkit import contract
from cifarkit.backends.onnxruntime import cpu_session, ort_levels
from cifarkit.errors import ExportError, ModelError

#: Ops that make a graph non-deterministic or training-only; none may be in an export.
TRAINING_OPS = frozenset({"Dropout", "RandomUniform", "RandomUniformLike", "RandomNormal",
                          "RandomNormalLike", "Bernoulli", "Multinomial"})
#: Standard domains: the default ONNX domain ("" or "ai.onnx"); no contrib/custom ops.
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})


def _dims(value: Any) -> list[Any]:
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value")
            else None) for d in value.type.tensor_type.shape.dim]


def _shape_problems(in_dims: list[Any], out_dims: list[Any]) -> list[str]:
    problems = []
    if len(in_dims) != 4 or in_dims[3] != 3 or not isinstance(in_dims[0], str) or not all(
            isinstance(d, int) and d > 0 for d in in_dims[1:3]):
        problems.append(f"input shape is {in_dims}, expected ['batch', S, S, 3]")
    elif not contract.MIN_IMAGE_SIZE <= in_dims[1] <= contract.MAX_IMAGE_SIZE:
        problems.append(f"input size {in_dims[1]} is outside {contract.MIN_IMAGE_SIZE}–"
                        f"{contract.MAX_IMAGE_SIZE}")
    if len(out_dims) != 2 or not isinstance(out_dims[0], str) or not (
            isinstance(out_dims[1], int) and out_dims[1] >= 2):
        problems.append(f"output shape is {out_dims}, expected ['batch', n_classes ≥ 2]")
    return problems


def _score_problems(score: Any, probs: Any) -> list[str]:
    """The optional ``score`` output: float32 ``[batch]``, the batch of ``probabilities``."""
    from onnx import TensorProto

    dims, batch = _dims(score), _dims(probs)[:1]
    if score.type.tensor_type.elem_type != TensorProto.FLOAT or dims != batch:
        return [f"output score is {TensorProto.DataType.Name(score.type.tensor_type.elem_type)} "
                f"{dims}, expected FLOAT {batch}"]
    return []


def check_contract(proto: Any, where: str = "model",
                   classes: Sequence[str] | None = None) -> contract.ModelInfo:
    """Raise ``ExportError`` unless the graph's interface is exactly the cifarkit contract;
    return what it says about itself (classes, image size, preprocessing).

    Any S and any number of classes ≥ 2, consistent with the metadata (``class_names``,
    ``image_size``); ``classes`` stands in for metadata the graph does not carry yet.
    """
    from onnx import TensorProto

    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    problems = []
    info = None
    if [i.name for i in inputs] != [contract.INPUT_NAME]:
        problems.append(f"inputs are {[i.name for i in inputs]}, expected ['images']")
    names = [o.name for o in graph.output]
    if names not in ([contract.OUTPUT_NAME], [contract.OUTPUT_NAME, contract.SCORE_OUTPUT]):
        problems.append(f"outputs are {names}, expected ['probabilities'] or "
                        "['probabilities', 'score']")
    elif len(names) == 2:
        problems += _score_problems(graph.output[1], graph.output[0])
    if not problems:
        inp, out = inputs[0], graph.output[0]
        if inp.type.tensor_type.elem_type != TensorProto.UINT8:
            problems.append(
                f"input dtype is {TensorProto.DataType.Name(inp.type.tensor_type.elem_type)}, "
                "expected UINT8"
            )
        if out.type.tensor_type.elem_type != TensorProto.FLOAT:
            problems.append(
                f"output dtype is {TensorProto.DataType.Name(out.type.tensor_type.elem_type)}, "
                "expected FLOAT"
            )
        in_dims, out_dims = _dims(inp), _dims(out)
        shape_problems = _shape_problems(in_dims, out_dims)
        problems += shape_problems
        if not shape_problems:
            metadata = {p.key: p.value for p in proto.metadata_props}
            if classes is not None:
                metadata["class_names"] = json.dumps(list(classes))
            try:
                info = contract.describe(metadata, [None, *in_dims[1:]], out_dims[1], True,
                                         where, has_score=len(names) == 2, outputs=names)
            except ModelError as exc:
                problems.append(str(exc).removeprefix(f"{where}: "))
    ops = {(n.domain, n.op_type) for n in graph.node}
    if bad := sorted(op for dom, op in ops if op in TRAINING_OPS):
        problems.append(f"training-only/random ops in the graph: {bad}")
    if bad := sorted(f"{dom}:{op}" for dom, op in ops if dom not in STANDARD_DOMAINS):
        problems.append(f"non-standard ops in the graph: {bad}")
    if problems or info is None:
        raise ExportError(f"{where} breaks the ONNX contract: " + "; ".join(problems))
    return info


def check_onnx(proto: Any, where: str = "model",
               classes: Sequence[str] | None = None) -> contract.ModelInfo:
    """onnx.checker (full) + shape inference + the contract (``check_contract``)."""
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{where} fails onnx.checker / shape inference: {exc}") from None
    return check_contract(proto, where, classes)


def check_runtime(model: bytes, where: str = "model") -> list[str]:
    """Load in onnxruntime at every optimization level; run batches of 1 and 3 at each.

    Returns the level names checked.
    """
    checked = []
    for name, level in ort_levels().items():
        try:
            sess = cpu_session(model, level)
            size, width = sess.get_inputs()[0].shape[1], sess.get_outputs()[0].shape[-1]
            x = np.random.default_rng(0).integers(0, 256, (3, size, size, 3), dtype=np.uint8)
            wanted = [o.name for o in sess.get_outputs()]
            runs = [sess.run(wanted, {contract.INPUT_NAME: x[:n]}) for n in (1, 3)]
            outs = [r[0] for r in runs]
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ExportError(
                f"{where}: onnxruntime fails at optimization level {name!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        for n, out, run in zip((1, 3), outs, runs, strict=True):
            if len(run) > 1 and (run[1].shape != (n,) or not np.all(np.isfinite(run[1]))):
                raise ExportError(f"{where}: at level {name!r} a batch of {n} gave a score of "
                                  f"shape {run[1].shape}, or not finite; expected ({n},)")
            if out.dtype != np.float32 or out.shape != (n, width):
                raise ExportError(
                    f"{where}: at level {name!r} a batch of {n} gave {out.dtype} {out.shape}, "
                    f"expected float32 ({n}, {width})"
                )
            sums = out.sum(axis=1)
            if not np.all(np.isfinite(out)) or np.abs(sums - 1).max() > 1e-2 or out.min() < 0:
                raise ExportError(
                    f"{where}: at level {name!r} the outputs are not probabilities "
                    f"(row sums {sums.round(4).tolist()}, min {float(out.min()):.3g})"
                )
        checked.append(name)
    return checked
