"""The block score: "none of my classes" from the stem block and the logits, in the graph.

``cifarkit export --unknown-score blocks`` appends to each precision's graph a second output,
``score`` (``contract.SCORE_OUTPUT``, float32 ``[batch]``, higher = more like the training
classes), and records the rule ``{"score": "score", "threshold": …}`` that ``predict --reject
auto`` and ``bench --ood`` apply (measured in ``docs/confidence.md``).

The score is the sum of two parts, each standardised (mean and deviation on the held-out
images):

- the stem: Mahalanobis distance (Lee et al. 2018; class means and one shared covariance
  fitted on training images the model learnt from, ``measure.ood.Mahalanobis``) of the first
  ReLU block's channel means over space, averaged over the graph's test-time-augmentation
  views (flip TTA stacks ``[images; mirrors]`` on the batch axis) and L2-normalised (as in
  Müller & Hein 2025), negated;
- the energy (Liu et al. 2020): ``logsumexp`` of the output Softmax's input.

Why these two and not every block (``benchmarks/ood_layers.py``): they are the features an
int8 graph gives without touching its quantized convolutions. A second reader of any block
inside the int8 conv chain stops onnxruntime fusing the convolutions on either side into
``QLinearConv`` (measured on ``fastnet-relu``: batch-32 int8 latency 41 → 212 ms with every
block read). So an int8 graph recomputes the stem in float32 from the input (a copy of the
fp32 graph's nodes up to it: one small convolution), and its probabilities are untouched.
On the default model the two parts measured as well as all ten blocks (docs/confidence.md).

Each precision's energy and stem statistics are fitted on its own outputs; the fit runs
after the temperature fold, on the calibrated graph. In the graph the Mahalanobis distance is
``‖fL‖² − 2·fL·(μL)ᵀ + ‖μL‖²`` with ``L Lᵀ`` the precision matrix. Every graph is checked
against the numpy score of the same features, and its probabilities against the graph
without the score, before it is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cifarkit.contract import INPUT_NAME, OUTPUT_NAME, SCORE_OUTPUT
from cifarkit.errors import ExportError
from cifarkit.export.calibrate import HeldOut

LEARNT_IMAGES = 5000  # training images the class means and covariances are fitted on
#: |graph score − numpy score| allowed, relative to (1 + |score|): both are float32 sums of
#: the same features, in a different order. fp16: the features numpy reads are the block
#: tensors rounded to float16, while onnxruntime (which runs fp16 convolutions in float32 on
#: CPUs) may hand the score its float32 values when the tensor is not an output; the
#: whitening magnifies that rounding (measured 1.3e-2 on the tests' random-weight model).
TOLERANCE = {"fp16": 5e-2}
TOLERANCE_DEFAULT = 1e-3
METHOD = ("Mahalanobis distance to the nearest class mean on the stem block's L2-normalised "
          "channel means, plus the energy (logsumexp of the output Softmax's input), each "
          "standardised on the held-out images, summed")
#: The score may not move the probabilities: it only reads tensors the graph computes anyway.
PROBABILITY_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Block:
    """One block as a tensor of one graph: where to read it and how to average it."""

    name: str  # the fp32 graph's tensor (what the card names)
    tensor: str  # the tensor read in this precision's graph
    spatial: tuple[int, int]  # axes to average over (NCHW: (2, 3))
    channels: int
    views: int  # TTA views stacked on the batch axis


@dataclass(frozen=True)
class BlockFit:
    """One block's constants: ``factor`` L (``L Lᵀ`` = precision), ``means`` μL, the squared
    norms of μL, and the held-out mean and deviation of the block's score."""

    factor: np.ndarray  # [D, r]
    means: np.ndarray  # [K, r]
    mean_norms: np.ndarray  # [K]
    loc: float
    scale: float

    def score(self, features: np.ndarray) -> np.ndarray:
        """The standardised block score of raw channel means ``[N, D]`` (the graph's maths)."""
        f = _unit(features.astype(np.float64))
        fl = f @ self.factor
        d2 = (fl * fl).sum(axis=1)[:, None] - 2 * fl @ self.means.T + self.mean_norms[None]
        return (-d2.min(axis=1) - self.loc) / self.scale


# --- the blocks and their features ------------------------------------------------------------


def _unit(f: np.ndarray) -> np.ndarray:
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def _with_outputs(proto: Any, tensors: list[str]) -> Any:
    import onnx

    probe = onnx.ModelProto.FromString(proto.SerializeToString())
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=t) for t in tensors if t not in known)
    return probe


def stem_name(fp32: Any) -> str:
    """The fp32 graph's first rank-4 ReLU output: the stem block."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(fp32).graph.value_info
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in inferred}
    stems = [n.output[0] for n in fp32.graph.node
             if n.op_type == "Relu" and rank.get(n.output[0]) == 4]
    if not stems:
        raise ExportError("--unknown-score blocks: the graph has no ReLU block to score; use "
                          "--unknown-score msp")
    return stems[0]


def copy_stem(fp32: Any, proto: Any, stem: str) -> str:
    """The stem tensor in ``proto``: itself in a float graph; in a quantized one (whose
    tensor of that name is a quantized convolution's output, which a second reader would
    unfuse) a float32 copy of the fp32 graph's nodes from the input up to it, under the
    ``unknown_score/stem/`` prefix. Returns the tensor to read."""
    if not any(n.op_type == "QuantizeLinear" for n in proto.graph.node):
        return stem  # a float graph: read the block itself
    producers = {o: n for n in fp32.graph.node for o in n.output}
    inits = {t.name: t for t in fp32.graph.initializer}
    nodes, todo, seen = [], [stem], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in producers:
            continue
        seen.add(name)
        node = producers[name]
        nodes.append(node)
        todo += [i for i in node.input if i]
    prefix = "unknown_score/stem/"

    def rename(t: str) -> str:
        return t if t in ("", INPUT_NAME) else prefix + t

    order = {id(n): i for i, n in enumerate(fp32.graph.node)}
    copied: set[str] = set()
    for node in sorted({id(n): n for n in nodes}.values(), key=lambda n: order[id(n)]):
        copy = proto.graph.node.add()
        copy.CopyFrom(node)
        copy.name = prefix + (node.name or node.output[0])
        copy.input[:] = [rename(i) for i in node.input]
        copy.output[:] = [rename(o) for o in node.output]
        for i in node.input:
            if i in inits and i not in copied:
                copied.add(i)
                t = proto.graph.initializer.add()
                t.CopyFrom(inits[i])
                t.name = rename(i)
    return rename(stem)


def logits_name(proto: Any) -> str:
    """The input of the Softmax that makes ``probabilities`` (after any folded 1/T)."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    softmax = producers[OUTPUT_NAME]
    while softmax.op_type == "Cast":  # an fp16 graph's output cast
        softmax = producers[softmax.input[0]]
    if softmax.op_type != "Softmax":
        raise ExportError("--unknown-score blocks: the graph's probabilities are not made by "
                          "a Softmax; use --unknown-score msp")
    return softmax.input[0]


def find_blocks(names: list[str], tensors: list[str], proto: Any) -> list[Block]:
    """Blocks (``names`` in the fp32 graph, read as ``tensors`` of ``proto``) with their
    layout and TTA views, read from one run on two images."""
    from cifarkit.backends.onnxruntime import cpu_session

    size = _image_size(proto)
    session = cpu_session(_with_outputs(proto, tensors).SerializeToString())
    x = np.zeros((2, size, size, 3), np.uint8)
    blocks = []
    for name, tensor, out in zip(names, tensors, session.run(tensors, {INPUT_NAME: x}),
                                 strict=True):
        spatial = _spatial_axes(out.shape)
        if spatial is None or out.shape[0] % 2:
            raise ExportError(f"--unknown-score blocks: {name} is not an image-like block "
                              f"(shape {list(out.shape)}); use --unknown-score msp")
        channels = out.shape[1] if spatial == (2, 3) else out.shape[3]
        blocks.append(Block(name, tensor, spatial, int(channels), out.shape[0] // 2))
    return blocks


def _image_size(proto: Any) -> int:
    inp = next(i for i in proto.graph.input if i.name == INPUT_NAME)
    return int(inp.type.tensor_type.shape.dim[1].dim_value)


def _spatial_axes(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """NCHW (tf2onnx's layout for conv outputs) or NHWC, from square feature maps."""
    if shape[2] == shape[3] and shape[2] > 1:
        return (2, 3)
    if shape[1] == shape[2] and shape[1] > 1:
        return (1, 2)
    return None


def run_tensors(proto: Any, tensors: list[str], x: np.ndarray, batch: int = 250,
                reduce: Callable[[int, np.ndarray, int], np.ndarray] | None = None,
                ) -> list[np.ndarray]:
    """``tensors`` of ``proto`` (made outputs) for uint8 images ``x``, ``batch`` at a time;
    ``reduce(i, output, n)`` shrinks tensor i's output for a batch of n images first."""
    from cifarkit.backends.onnxruntime import cpu_session

    session = cpu_session(_with_outputs(proto, tensors).SerializeToString())
    parts: list[list[np.ndarray]] = [[] for _ in tensors]
    for s in range(0, len(x), batch):
        xb = x[s:s + batch]
        for i, out in enumerate(session.run(tensors, {INPUT_NAME: xb})):
            parts[i].append(out if reduce is None else reduce(i, out, len(xb)))
    return [np.concatenate(p) for p in parts]


def block_features(proto: Any, blocks: list[Block], x: np.ndarray, batch: int = 250,
                   extra: tuple[str, ...] = ()) -> list[np.ndarray]:
    """Each block's channel means ``[N, D]`` for uint8 images ``x``, views averaged (per
    batch: TTA stacks each batch's ``[images; mirrors]``), then each ``extra`` tensor as is,
    all from one pass."""
    def reduce(i: int, out: np.ndarray, n: int) -> np.ndarray:
        if i >= len(blocks):
            return out
        b = blocks[i]
        return out.astype(np.float32).mean(axis=b.spatial).reshape(b.views, n, -1).mean(axis=0)

    return run_tensors(proto, [*(b.tensor for b in blocks), *extra], x, batch, reduce)


# --- the fit -----------------------------------------------------------------------------------


def fit_blocks(learnt: list[np.ndarray], y: np.ndarray, held: list[np.ndarray],
               n_classes: int) -> list[BlockFit]:
    """Per block: Mahalanobis on ``learnt`` features (labels ``y``), standardised on ``held``."""
    from cifarkit.measure.ood import Mahalanobis

    fits = []
    for f_learnt, f_held in zip(learnt, held, strict=True):
        m = Mahalanobis.fit(f_learnt, y, n_classes=n_classes, normalize=True)
        vals, vecs = np.linalg.eigh(m.precision)
        keep = vals > 1e-12 * max(vals.max(), 0.0)
        factor = vecs[:, keep] * np.sqrt(vals[keep])
        means = m.means @ factor
        raw = BlockFit(factor, means, (means * means).sum(axis=1), 0.0, 1.0).score(f_held)
        fits.append(BlockFit(factor, means, (means * means).sum(axis=1), *standardise(raw)))
    return fits


def standardise(values: np.ndarray) -> tuple[float, float]:
    """(mean, deviation) of held-out values; ``ExportError`` when they do not vary."""
    scale = float(values.std())
    if not scale > 0:
        raise ExportError("--unknown-score blocks: a part of the score does not vary on the "
                          "held-out images; use --unknown-score msp")
    return float(values.mean()), scale


def numpy_score(fits: list[BlockFit], features: list[np.ndarray], energy: np.ndarray,
                energy_fit: tuple[float, float]) -> np.ndarray:
    """The score the graph computes, from the same features and energies."""
    blocks = np.sum([f.score(a) for f, a in zip(fits, features, strict=True)], axis=0)
    return blocks + (energy - energy_fit[0]) / energy_fit[1]


# --- the graph -------------------------------------------------------------------------------


class _Builder:
    """Appends nodes and float32 constants under one name prefix."""

    def __init__(self, proto: Any, prefix: str) -> None:
        self.graph, self.prefix = proto.graph, prefix
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                          17)

    def const(self, name: str, value: Any, dtype: Any = np.float32) -> str:
        from onnx import numpy_helper

        full = f"{self.prefix}/{name}"
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype), full))
        return full

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        from onnx import helper

        out = f"{self.prefix}/{name}"
        self.graph.node.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def reduce(self, op: str, x: str, axes: list[int], name: str, keepdims: int) -> str:
        """Reduce ops took ``axes`` as an attribute before opset 18 (ReduceSum: 13)."""
        if self.opset >= (13 if op == "ReduceSum" else 18):
            return self.node(op, [x, self.const(f"{name}_axes", axes, np.int64)], name,
                             keepdims=keepdims)
        return self.node(op, [x], name, axes=axes, keepdims=keepdims)


def _block_nodes(b: _Builder, block: Block, fit: BlockFit, i: int, half: bool) -> str:
    """One block's standardised score ``[batch]`` (see ``BlockFit.score``); ``half``: the
    block tensor is float16."""
    from onnx import TensorProto

    x = block.tensor
    if half:
        x = b.node("Cast", [x], f"b{i}/cast", to=TensorProto.FLOAT)
    f = b.reduce("ReduceMean", x, list(block.spatial), f"b{i}/space", 0)  # [vN, D]
    f = b.node("Reshape", [f, b.const(f"b{i}/views", [block.views, -1, block.channels],
                                      np.int64)], f"b{i}/split_views")
    f = b.reduce("ReduceMean", f, [0], f"b{i}/mean_views", 0)  # [N, D]
    norm = b.reduce("ReduceL2", f, [1], f"b{i}/norm", 1)
    norm = b.node("Max", [norm, b.const(f"b{i}/eps", 1e-12)], f"b{i}/norm_floor")
    f = b.node("Div", [f, norm], f"b{i}/unit")
    fl = b.node("MatMul", [f, b.const(f"b{i}/factor", fit.factor)], f"b{i}/whiten")
    own = b.reduce("ReduceSumSquare", fl, [1], f"b{i}/own", 1)  # [N, 1]
    cross = b.node("MatMul", [fl, b.const(f"b{i}/means_t", -2 * fit.means.T)], f"b{i}/cross")
    d2 = b.node("Add", [b.node("Add", [own, cross], f"b{i}/own_cross"),
                        b.const(f"b{i}/mean_norms", fit.mean_norms)], f"b{i}/d2")
    nearest = b.reduce("ReduceMin", d2, [1], f"b{i}/nearest", 0)  # [N]
    # (-d2 - loc) / scale
    z = b.node("Mul", [nearest, b.const(f"b{i}/neg_inv_scale", -1 / fit.scale)], f"b{i}/scaled")
    return b.node("Add", [z, b.const(f"b{i}/shift", -fit.loc / fit.scale)], f"b{i}/z")


def _half_tensors(proto: Any) -> set[str]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto).graph.value_info
    return {v.name for v in inferred
            if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}


def append_score(proto: Any, blocks: list[Block], fits: list[BlockFit], logits: str,
                 energy_fit: tuple[float, float]) -> None:
    """Add the ``score`` output (float32 ``[batch]``) after ``probabilities``, in place."""
    import onnx

    if any(o.name == SCORE_OUTPUT for o in proto.graph.output):
        raise ExportError(f"the graph already has a {SCORE_OUTPUT!r} output")
    half = _half_tensors(proto)
    b = _Builder(proto, "unknown_score")
    zs = [_block_nodes(b, block, fit, i, block.tensor in half) for i, (block, fit) in
          enumerate(zip(blocks, fits, strict=True))]
    if logits in half:
        logits = b.node("Cast", [logits], "logits_float", to=onnx.TensorProto.FLOAT)
    # logsumexp spelled out: OpenVINO 2026.4 ignores ReduceLogSumExp's axes attribute
    # (opset 17) and reduces over the batch too.
    top = b.reduce("ReduceMax", logits, [1], "logits_max", 1)
    shifted = b.node("Exp", [b.node("Sub", [logits, top], "logits_shifted")], "logits_exp")
    lse = b.node("Log", [b.reduce("ReduceSum", shifted, [1], "exp_sum", 0)], "log_sum")
    lse = b.node("Add", [lse, b.reduce("ReduceMax", logits, [1], "logits_top", 0)], "energy")
    lse = b.node("Mul", [lse, b.const("energy_inv_scale", 1 / energy_fit[1])], "energy_scaled")
    zs.append(b.node("Add", [lse, b.const("energy_shift", -energy_fit[0] / energy_fit[1])],
                     "energy_z"))
    total = b.node("Sum", zs, "sum")
    b.graph.node.append(onnx.helper.make_node("Identity", [total], [SCORE_OUTPUT],
                                              name="unknown_score/out"))
    batch = _batch_dim(proto)
    proto.graph.output.append(
        onnx.helper.make_tensor_value_info(SCORE_OUTPUT, onnx.TensorProto.FLOAT, [batch]))


def _batch_dim(proto: Any) -> str:
    out = next(o for o in proto.graph.output if o.name == OUTPUT_NAME)
    return out.type.tensor_type.shape.dim[0].dim_param or "batch"


def record_test_acceptance(record: dict[str, Any], session: Any, x: np.ndarray,
                    batch: int = 250) -> np.ndarray:
    """Record the share of ``x`` (the test images) the file's rule accepts; returns the
    probabilities of the same pass."""
    runs = [session.run([OUTPUT_NAME, SCORE_OUTPUT], {INPUT_NAME: x[s:s + batch]})
            for s in range(0, len(x), batch)]
    probs = np.concatenate([r[0] for r in runs]).astype(np.float32)
    scores = np.concatenate([r[1] for r in runs])
    record["test_accepted"] = float(np.mean(scores >= record["threshold"]))
    return probs


def check_scores(graph: np.ndarray, reference: np.ndarray, where: str,
                 tolerance: float = TOLERANCE_DEFAULT) -> float:
    """The largest |graph − numpy| relative to (1 + |score|); ``ExportError`` over tolerance."""
    diff = float(np.max(np.abs(graph - reference) / (1 + np.abs(reference))))
    if not np.all(np.isfinite(graph)) or diff > tolerance:
        raise ExportError(f"{where}: the graph's score differs from the numpy score by "
                          f"{diff:.3g} (relative), more than {tolerance:g}")
    return diff


# --- one precision, end to end ------------------------------------------------------------------


def add_block_score(fp32: Any, proto: Any, held: HeldOut, n_classes: int,
                    acceptance: float, precision: str, where: str) -> dict[str, Any]:
    """Fit the score on ``held``'s learnt and held-out images, append it to ``proto`` (in
    place), check it against numpy and the probabilities against the graph without it, and
    set the threshold accepting ``acceptance`` of the held-out images. Returns the card's
    record of it."""
    from cifarkit.backends.onnxruntime import cpu_session, session_proba
    from cifarkit.measure.ood import energy_score, threshold_for

    assert held.learnt is not None
    x_learnt, y_learnt = held.learnt
    before = session_proba(cpu_session(proto.SerializeToString()), held.x)
    stem = stem_name(fp32)
    blocks = find_blocks([stem], [copy_stem(fp32, proto, stem)], proto)
    logits = logits_name(proto)
    *f_held, z_held = block_features(proto, blocks, held.x, extra=(logits,))
    e_held = energy_score(z_held)
    fits = fit_blocks(block_features(proto, blocks, x_learnt), y_learnt, f_held, n_classes)
    energy_fit = standardise(e_held)
    append_score(proto, blocks, fits, logits, energy_fit)
    after, scores = run_tensors(proto, [OUTPUT_NAME, SCORE_OUTPUT], held.x)
    diff = check_scores(scores, numpy_score(fits, f_held, e_held, energy_fit), where,
                        TOLERANCE.get(precision, TOLERANCE_DEFAULT))
    moved = float(np.abs(after - before).max())
    if moved > PROBABILITY_TOLERANCE:
        raise ExportError(f"{where}: adding the score changed the probabilities (max |Δ| "
                          f"{moved:.2e})")
    threshold = threshold_for(scores, acceptance)
    return {"score": SCORE_OUTPUT, "threshold": threshold, "acceptance": acceptance,
            "fitted_on": held.description, "method": METHOD,
            "learnt_images": int(len(y_learnt)), "blocks": [b.name for b in blocks],
            "constants": int(sum(f.factor.size + f.means.size + f.mean_norms.size
                                 for f in fits)),
            "graph_vs_numpy": diff, "probabilities_moved": moved,
            "held_out_accepted": float(np.mean(scores >= threshold))}


def rule(record: dict[str, Any]) -> dict[str, Any]:
    """The ``unknown`` metadata entry of a record (``contract.UnknownRule`` reads it)."""
    return {k: record[k] for k in ("score", "threshold", "acceptance", "fitted_on", "method")}
