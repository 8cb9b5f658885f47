"""Structural checks every exported file passes before it is written.

1. ``onnx.checker`` with ``full_check`` (includes strict shape inference) and
   ``onnx.shape_inference`` with type checking;
2. the contract: one input ``images`` uint8 ``[batch,32,32,3]``, one output
   ``probabilities`` float32 ``[batch,10]``, ``batch`` symbolic, standard ops only;
3. onnxruntime loads it at every graph optimization level and runs a batch of 1 and of 3
   there, returning float32 ``[n,10]`` rows of probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cifarkit.errors import ExportError

#: Ops that make a graph non-deterministic or training-only; none may be in an export.
TRAINING_OPS = frozenset({"Dropout", "RandomUniform", "RandomUniformLike", "RandomNormal",
                          "RandomNormalLike", "Bernoulli", "Multinomial"})
#: Standard domains: the default ONNX domain ("" or "ai.onnx"); no contrib/custom ops.
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})


def ort_levels() -> dict[str, Any]:
    import onnxruntime as ort

    g = ort.GraphOptimizationLevel
    return {
        "disable_all": g.ORT_DISABLE_ALL,
        "basic": g.ORT_ENABLE_BASIC,
        "extended": g.ORT_ENABLE_EXTENDED,
        "all": g.ORT_ENABLE_ALL,
    }


def cpu_session(model: bytes, level: Any = None, threads: int = 0) -> Any:
    """An onnxruntime CPU session for serialized model bytes."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if level is not None:
        opts.graph_optimization_level = level
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def _dims(value: Any) -> list[Any]:
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value")
            else None) for d in value.type.tensor_type.shape.dim]


def check_contract(proto: Any, where: str = "model") -> None:
    """Raise ``ExportError`` unless the graph's interface is exactly the cifarkit contract."""
    from onnx import TensorProto

    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    problems = []
    if [i.name for i in inputs] != ["images"]:
        problems.append(f"inputs are {[i.name for i in inputs]}, expected ['images']")
    if [o.name for o in graph.output] != ["probabilities"]:
        problems.append(f"outputs are {[o.name for o in graph.output]}, expected ['probabilities']")
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
        if len(in_dims) != 4 or in_dims[1:] != [32, 32, 3] or not isinstance(in_dims[0], str):
            problems.append(f"input shape is {in_dims}, expected ['batch', 32, 32, 3]")
        if len(out_dims) != 2 or out_dims[1] != 10 or not isinstance(out_dims[0], str):
            problems.append(f"output shape is {out_dims}, expected ['batch', 10]")
    ops = {(n.domain, n.op_type) for n in graph.node}
    if bad := sorted(op for dom, op in ops if op in TRAINING_OPS):
        problems.append(f"training-only/random ops in the graph: {bad}")
    if bad := sorted(f"{dom}:{op}" for dom, op in ops if dom not in STANDARD_DOMAINS):
        problems.append(f"non-standard ops in the graph: {bad}")
    if problems:
        raise ExportError(f"{where} breaks the ONNX contract: " + "; ".join(problems))


def check_onnx(proto: Any, where: str = "model") -> None:
    """onnx.checker (full) + shape inference + the contract."""
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{where} fails onnx.checker / shape inference: {exc}") from None
    check_contract(proto, where)


def check_runtime(model: bytes, where: str = "model") -> list[str]:
    """Load in onnxruntime at every optimization level; run batches of 1 and 3 at each.

    Returns the level names checked.
    """
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    checked = []
    for name, level in ort_levels().items():
        try:
            sess = cpu_session(model, level)
            outs = [sess.run(["probabilities"], {"images": x[:n]})[0] for n in (1, 3)]
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ExportError(
                f"{where}: onnxruntime fails at optimization level {name!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        for n, out in zip((1, 3), outs, strict=True):
            if out.dtype != np.float32 or out.shape != (n, 10):
                raise ExportError(
                    f"{where}: at level {name!r} a batch of {n} gave {out.dtype} {out.shape}, "
                    f"expected float32 ({n}, 10)"
                )
            sums = out.sum(axis=1)
            if not np.all(np.isfinite(out)) or np.abs(sums - 1).max() > 1e-2 or out.min() < 0:
                raise ExportError(
                    f"{where}: at level {name!r} the outputs are not probabilities "
                    f"(row sums {sums.round(4).tolist()}, min {float(out.min()):.3g})"
                )
        checked.append(name)
    return checked
