"""Portable graphs: only ops the common edge runtimes implement, constant shapes, simplified.

Why: tried on the shipped files, OpenCV DNN refused fastnet's ``ReverseSequence`` (tf2onnx's
lowering of ``tf.reverse``, the in-graph flip TTA) and tract refused it too, plus the
Flatten's ``Reshape`` whose target shape was computed at run time from the batch
(``Shape → Gather → Slice → Concat``). The passes here, on any contract graph:

1. ``ReverseSequence`` whose lengths are the full time axis (the whole axis reversed, which
   is what a flip is) → ``Slice`` with step −1 on that axis; a ``Transpose`` pair that only
   moved the axis for ReverseSequence's sake is folded into the Slice's axis;
2. a ``Reshape`` whose shape input is computed but does not depend on the batch except in
   dimension 0 → a constant ``[-1, …]``;
3. simplification and constant folding with onnxslim (drops the now-dead shape arithmetic);
4. constant ``Slice`` ops lose their no-op axes (tract refuses tf2onnx's huge ends on the
   dynamic batch axis).

Both rewrites are decided by *running* the graph (onnxruntime, batches of 1 and 3), not by
pattern-matching one converter's output, so they hold for graphs from tf2onnx or any other
exporter; the caller's parity gate then checks the final file against the reference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cifarkit.backends.onnxruntime import cpu_session
from cifarkit.errors import ExportError
from cifarkit.export.convert import INPUT_NAME, OUTPUT_NAME, require
from cifarkit.export.fold import node_attr

#: Ops refused by at least one of OpenCV DNN 5, tract 0.23 or LiteRT converters; a portable
#: graph has none of them.
NON_PORTABLE_OPS = frozenset({"ReverseSequence", "Loop", "If", "Scan", "SequenceConstruct",
                              "SplitToSequence", "ConcatFromSequence", "NonZero", "Unique"})
PROBE_BATCHES = (1, 3)
_INT64_MIN = np.iinfo(np.int64).min
#: An end (or a reversed start) at least this large is "to the end of the axis": tf2onnx
#: writes 1e9 for open slice bounds; no tensor here has an axis that long.
_OPEN_END = 1_000_000_000


@dataclass(frozen=True)
class PortabilityReport:
    reverse_sequence_to_slice: int
    transposes_folded: int
    constant_reshapes: int
    simplifier: str
    nodes_before: int
    nodes_after: int
    ops_after: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _copy(proto: Any) -> Any:
    import onnx

    return onnx.ModelProto.FromString(proto.SerializeToString())


def _probe(proto: Any, tensors: list[str]) -> dict[int, dict[str, np.ndarray]]:
    """The values of ``tensors`` for random uint8 batches of each ``PROBE_BATCHES`` size."""
    import onnx

    probe = _copy(proto)
    known = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in known:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    sess = cpu_session(probe.SerializeToString())
    size = sess.get_inputs()[0].shape[1]
    rng = np.random.default_rng(0)
    out = {}
    for n in PROBE_BATCHES:
        x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        values = sess.run(tensors, {INPUT_NAME: x})
        out[n] = dict(zip(tensors, values, strict=True))
    return out


def _const(graph: Any, name: str, value: np.ndarray) -> str:
    from onnx import numpy_helper

    taken = {t.name for t in graph.initializer}
    base, i = name, 0
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    graph.initializer.append(numpy_helper.from_array(value, name))
    return name


def _reverse_to_slice(proto: Any) -> tuple[int, int]:
    """ReverseSequence over the whole time axis → Slice(step −1); fold Transpose pairs."""
    from onnx import helper

    graph = proto.graph
    revs = [n for n in graph.node if n.op_type == "ReverseSequence"]
    if not revs:
        return 0, 0
    values = _probe(proto, [t for n in revs for t in (n.input[0], n.input[1])])
    converted = folded = 0
    for node in revs:
        t_axis = int(node_attr(node, "time_axis", 0))
        full = all(np.all(v[node.input[1]] == v[node.input[0]].shape[t_axis])
                   for v in values.values())
        if not full:  # a genuine per-row reversal: no standard op does that; left alone
            continue
        producers = {o: n for n in graph.node for o in n.output}
        readers = [n for n in graph.node if node.output[0] in n.input]
        src, axis, out, drop = node.input[0], t_axis, node.output[0], [node]
        before = producers.get(src)
        # Transpose(p) → reverse axis t → Transpose(p⁻¹) is the reverse of axis p[t].
        if (before is not None and before.op_type == "Transpose" and len(readers) == 1
                and readers[0].op_type == "Transpose" and OUTPUT_NAME not in node.output):
            p, q = list(node_attr(before, "perm")), list(node_attr(readers[0], "perm"))
            if len(p) == len(q) and [p[i] for i in q] == list(range(len(p))):
                src, axis, out = before.input[0], p[t_axis], readers[0].output[0]
                drop.append(readers[0])  # the first Transpose is dead now: simplify drops it
                folded += 1
        name = node.name or out
        starts = _const(graph, f"{name}_flip_starts", np.array([-1], np.int64))
        ends = _const(graph, f"{name}_flip_ends", np.array([_INT64_MIN], np.int64))
        axes = _const(graph, f"{name}_flip_axes", np.array([axis], np.int64))
        steps = _const(graph, f"{name}_flip_steps", np.array([-1], np.int64))
        index = list(graph.node).index(node)
        new = helper.make_node("Slice", [src, starts, ends, axes, steps], [out],
                               name=f"{name}_flip")
        for n in drop:
            graph.node.remove(n)
        graph.node.insert(min(index, len(graph.node)), new)
        converted += 1
    _toposort(graph)
    return converted, folded


def _constant_reshapes(proto: Any) -> int:
    """Computed Reshape shapes that vary with the batch only in dimension 0 → ``[-1, …]``."""
    graph = proto.graph
    inits = {t.name for t in graph.initializer}
    consts = {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    reshapes = [n for n in graph.node if n.op_type == "Reshape"
                and n.input[1] not in inits and n.input[1] not in consts]
    if not reshapes:
        return 0
    values = _probe(proto, [n.input[1] for n in reshapes])
    count = 0
    for node in reshapes:
        shapes = [v[node.input[1]].astype(np.int64) for v in values.values()]
        rest = {tuple(s[1:].tolist()) for s in shapes}
        if len(rest) != 1 or any(d in (0, -1) for d in next(iter(rest))):
            continue  # depends on the batch beyond dim 0, or relies on Reshape's 0/−1 rules
        same = len({tuple(s.tolist()) for s in shapes}) == 1
        target = shapes[0] if same else np.array([-1, *next(iter(rest))], np.int64)
        node.input[1] = _const(graph, f"{node.name or node.output[0]}_shape", target)
        count += 1
    return count


def _tidy_slices(proto: Any) -> int:
    """Drop the no-op axes of constant Slices (start 0, step 1, end past any size).

    tf2onnx writes ``x[:, :, ::-1, :]`` as one Slice over all four axes with bounds of
    ±1e9; tract refuses such an end on the (dynamic) batch axis ("Invalid range
    0..1000000000"), though ONNX clamps it. Keeping only the axes that slice, and writing a
    whole-axis reversal as start −1 / end INT64_MIN, is the same op.
    """
    from onnx import numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    tidied = 0
    for node in (n for n in graph.node if n.op_type == "Slice" and len(n.input) >= 3):
        names = list(node.input) + [""] * (5 - len(node.input))
        if any(name and name not in inits for name in names[1:]):
            continue
        starts = numpy_helper.to_array(inits[names[1]]).astype(np.int64)
        ends = numpy_helper.to_array(inits[names[2]]).astype(np.int64)
        axes = (numpy_helper.to_array(inits[names[3]]).astype(np.int64) if names[3]
                else np.arange(len(starts), dtype=np.int64))
        steps = (numpy_helper.to_array(inits[names[4]]).astype(np.int64) if names[4]
                 else np.ones(len(starts), np.int64))
        keep = ~((starts == 0) & (steps == 1) & (ends >= _OPEN_END))
        # A whole-axis reversal as the same Slice the ReverseSequence rewrite writes.
        whole = (steps == -1) & (starts >= _OPEN_END) & (ends <= -_OPEN_END)
        if not keep.any() or (keep.all() and not whole.any()):
            continue
        starts, ends = np.where(whole, -1, starts), np.where(whole, _INT64_MIN, ends)
        base = node.name or node.output[0]
        node.input[:] = [node.input[0],
                         _const(graph, f"{base}_starts", starts[keep]),
                         _const(graph, f"{base}_ends", ends[keep]),
                         _const(graph, f"{base}_axes", axes[keep]),
                         _const(graph, f"{base}_steps", steps[keep])]
        tidied += 1
    return tidied


def _toposort(graph: Any) -> None:
    """Order nodes so every input is produced before it is read (inserts may break that)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ExportError("portability pass: the graph has a cycle or a dangling input")
        for n in ready:
            ordered.append(n)
            available.update(n.output)
            pending.remove(n)
    del graph.node[:]
    graph.node.extend(ordered)


def simplify(proto: Any) -> Any:
    """onnxslim: constant folding, dead-code and redundant-op elimination.

    onnxslim over onnxsim (both tried on fastnet, fastnet-s and cnn-batchnorm after the
    rewrites above, py3.11, this VM): both are pure wheels, both gave the same op set;
    onnxslim is pure Python (onnxsim is a C++ extension whose wheels lag new Pythons and
    onnx releases), keeps ``metadata_props`` and the symbolic ``batch`` name, and was
    the faster of the two here (see docs/edge-export.md). Its fusions that emit
    non-standard domains (GELU/LayerNorm → com.microsoft) are skipped: the contract allows
    standard ops only.
    """
    onnxslim = require("onnxslim", "onnxslim", "to simplify exported graphs")
    try:
        slim = onnxslim.slim(_copy(proto))
    except Exception as exc:
        raise ExportError(f"onnxslim failed to simplify the graph: {type(exc).__name__}: "
                          f"{exc}") from None
    if slim is None:
        raise ExportError("onnxslim returned no model")
    slim.ir_version = proto.ir_version
    return slim


def make_portable(proto: Any) -> tuple[Any, PortabilityReport]:
    """A portable copy of a contract graph and what was changed (see the module docs)."""
    from collections import Counter

    from cifarkit.export.convert import normalize_io

    before = len(proto.graph.node)
    work = _copy(proto)
    reversed_, folded = _reverse_to_slice(work)
    reshapes = _constant_reshapes(work)
    slim = simplify(work)
    _tidy_slices(slim)  # after onnxslim, which may fold its own slices first
    out = normalize_io(slim)
    # onnxslim records every tensor's type in value_info; fp16 conversion retypes tensors
    # and then contradicts those entries. They are optional: shape inference re-derives them.
    del out.graph.value_info[:]
    del out.metadata_props[:]
    out.metadata_props.extend(proto.metadata_props)
    check_portable(out)
    version = getattr(require("onnxslim", "onnxslim", "to simplify exported graphs"),
                      "__version__", "?")
    return out, PortabilityReport(
        reverse_sequence_to_slice=reversed_, transposes_folded=folded,
        constant_reshapes=reshapes, simplifier=f"onnxslim {version}", nodes_before=before,
        nodes_after=len(out.graph.node),
        ops_after=dict(sorted(Counter(n.op_type for n in out.graph.node).items())),
    )


def check_portable(proto: Any, where: str = "model") -> None:
    """Raise ``ExportError`` if the graph has an op or a shape edge runtimes refuse."""
    graph = proto.graph
    problems = []
    if bad := sorted({n.op_type for n in graph.node if n.op_type in NON_PORTABLE_OPS}):
        problems.append(f"ops edge runtimes lack: {', '.join(bad)}")
    consts = {t.name for t in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output}
    if computed := [n.name or n.output[0] for n in graph.node
                    if n.op_type == "Reshape" and n.input[1] not in consts]:
        problems.append(f"Reshape with a shape computed at run time: {', '.join(computed)}")
    if problems:
        raise ExportError(f"{where} is not portable: " + "; ".join(problems))
