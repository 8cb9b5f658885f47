"""Calibrated probabilities in every exported file, and the "unknown" rule that goes with them.

Temperature scaling (Guo et al. 2017; ``cifarkit.measure.calibration``) is fitted, one scalar
per precision, on *held-out* in-distribution images — images the training never saw, and
never the test split, which stays for measuring — on that precision's own output (int8 moves
the logits, fp16 rounds them), after the graph's own test-time augmentation. It is folded into
the graph as a ``Mul`` by ``1/T`` on the input of the Softmax that makes ``probabilities``, so
every runtime, and the LiteRT and ORT files made from the graph, give calibrated
probabilities; the top-1 class cannot change. Every fold is checked:
the folded file's probabilities equal ``apply_temperature(uncalibrated, T)``.

The held-out images (``--held-out``):

- ``auto``: the data's own ``val/`` split when it has one (a run trained on such data
  validated on it), else the training's stratified validation split redrawn from ``--data``
  with the seed and fraction the training recorded (``run.json``, or an ONNX source's
  ``training`` metadata) — checked against the recorded image counts and data kind, so a
  different data set is refused rather than fitted on images the model learnt from; else no
  calibration, with a note.
- ``training-split`` / ``val``: one of the two above, an error when it is not available.
- a folder of class folders (``<class>/<images>``) the user says the model never saw.
- ``none``: no calibration.

The "unknown" rule is the calibrated top probability (MSP) with the threshold that accepts
``acceptance`` (default 95 %) of the same held-out images.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.contract import OUTPUT_NAME
from cifarkit.data import Dataset, load_dataset, stratified_split, stratified_subset
from cifarkit.errors import DataError, ExportError, UsageError
from cifarkit.measure import calibration as cal
from cifarkit.measure.ood import ACCEPTANCE, msp_score, threshold_for

HELD_OUT_CHOICES = ("auto", "training-split", "val", "none")
#: |folded - apply_temperature(uncalibrated, T)| allowed per probability. fp16 graphs compute
#: the Softmax in float16 (about 3 significant digits), the others in float32.
FOLD_TOLERANCE = {"fp16": 5e-3}
FOLD_TOLERANCE_DEFAULT = 1e-4
#: The name ending of the folded ``1/T`` constant.
INV_TEMPERATURE = "/inv_temperature"


@dataclass(frozen=True)
class HeldOut:
    """Labelled in-distribution images the model did not learn from, and what they are."""

    x: np.ndarray
    y: np.ndarray
    description: str
    #: The training's validation accuracy, when these are its validation images (a check).
    recorded_accuracy: float | None = None
    #: Labelled training images the model learnt from (``learnt_images``; the block score's fit).
    learnt: tuple[np.ndarray, np.ndarray] | None = None
    #: Which of the data's training images the model learnt from (None: all of them).
    learnt_index: np.ndarray | None = None


# --- which images -------------------------------------------------------------------------


def check_held_out_choice(value: Any) -> str | os.PathLike[str]:
    """``--held-out``: one of ``HELD_OUT_CHOICES`` or an existing folder (``UsageError``)."""
    if isinstance(value, str) and value in HELD_OUT_CHOICES:
        return value
    if not Path(value).is_dir():
        raise UsageError(f"--held-out: {value!s} is neither one of {', '.join(HELD_OUT_CHOICES)}"
                         " nor a folder of class folders")
    return value


def held_out_images(choice: str | os.PathLike[str], ds: Dataset, classes: tuple[str, ...],
                    image_size: int, training: dict[str, Any] | None,
                    notes: list[str], learnt_images: int = 0, seed: int = 0) -> HeldOut | None:
    """The images ``choice`` names (see the module docstring); None, with a note, when
    ``auto`` finds none or ``none`` was asked for. ``learnt_images``: also up to that many
    stratified training images of ``ds`` the model learnt from (outside the held-out split)."""
    held = _held_out(choice, ds, classes, image_size, training, notes)
    if held is None or not learnt_images:
        return held
    idx = held.learnt_index if held.learnt_index is not None else np.arange(len(ds.y_train))
    if tuple(classes) != tuple(ds.classes):
        raise DataError(f"the training images of {ds.source} have classes {list(ds.classes)}, "
                        f"the model {list(classes)}: they cannot fit its unknown score")
    pick = idx[stratified_subset(ds.y_train[idx], min(learnt_images, len(idx)), seed)]
    return replace(held, learnt=(ds.x_train[pick], ds.y_train[pick]))


def _held_out(choice: str | os.PathLike[str], ds: Dataset, classes: tuple[str, ...],
              image_size: int, training: dict[str, Any] | None,
              notes: list[str]) -> HeldOut | None:
    from cifarkit.export.data import SYNTHETIC_KIND

    if choice == "none":
        notes.append("not calibrated (--held-out none): probabilities are the model's own and "
                     "there is no unknown threshold")
        return None
    if not isinstance(choice, str) or choice not in HELD_OUT_CHOICES:
        return _from_folder(Path(choice), classes, image_size)
    if choice == "val":
        return _data_val(ds)
    if choice == "training-split":
        try:
            return _training_split(ds, training)
        except DataError as exc:
            raise DataError(f"--held-out training-split: {exc}; name a folder of class folders "
                            "the model never saw (--held-out DIR), or --held-out none") from None
    if ds.kind == SYNTHETIC_KIND:
        notes.append("not calibrated: no real images to fit a temperature on (--data)")
        return None
    if ds.has_val:
        return _data_val(ds)
    try:
        return _training_split(ds, training)
    except DataError as exc:
        notes.append(f"not calibrated: no held-out images ({exc}); pass --held-out with a "
                     "folder of class folders the model never saw")
        return None


def _data_val(ds: Dataset) -> HeldOut:
    if not ds.has_val:
        raise UsageError(f"--held-out val: {ds.source} has no val/ split")
    return HeldOut(ds.x_val, ds.y_val, f"the val/ split of {ds.source} "
                   f"({len(ds.y_val):,} images)")


def _training_split(ds: Dataset, training: dict[str, Any] | None) -> HeldOut:
    """The training's validation split, redrawn exactly as ``train.fit`` drew it."""
    record = training or {}
    data = record.get("data") or {}
    frac, seed = data.get("val_split", record.get("val_split")), record.get("seed")
    if not frac or seed is None:
        raise DataError("the training record names no validation split (val_split and seed)")
    if data.get("kind") and data["kind"] != ds.kind:
        raise DataError(f"the training read {data['kind']} data, --data is {ds.kind} "
                        f"({ds.source}): its images may be in another order")
    idx = np.arange(len(ds.y_train))
    if data.get("limit"):
        idx = stratified_subset(ds.y_train, int(data["limit"]), int(seed))
    keep, held = stratified_split(ds.y_train[idx], float(frac), seed=int(seed))
    counts, recorded = (len(keep), len(held)), (data.get("train"), data.get("val"))
    if counts != recorded:
        raise DataError(f"the training used {recorded[0]} train / {recorded[1]} validation "
                        f"images, the training split of {ds.source} gives {counts[0]} / "
                        f"{counts[1]}: not the data it was trained on")
    held = idx[held]
    accuracy = record.get("val_accuracy")
    return HeldOut(ds.x_train[held], ds.y_train[held],
                   f"the training's validation split: {float(frac):g} of each class of the "
                   f"training images of {ds.source}, seed {seed} ({len(held):,} images)",
                   float(accuracy) if isinstance(accuracy, (int, float)) else None,
                   learnt_index=idx[keep])


def _from_folder(path: Path, classes: tuple[str, ...], image_size: int) -> HeldOut:
    """Every image of a folder of class folders, labelled by the model's class names."""
    ds = load_dataset(path, image_size=image_size, splits=("train",))
    if ds.layout != "flat":
        raise UsageError(f"--held-out {path}: expected class folders (<class>/<images>), "
                         "not train/val/test splits; name the split's folder itself")
    index = {c: i for i, c in enumerate(classes)}
    if strangers := [c for c in ds.classes if c not in index]:
        raise DataError(f"--held-out {path}: folders {strangers} are not classes of the model "
                        f"({', '.join(classes)})")
    remap = np.array([index[c] for c in ds.classes], dtype=np.int64)
    return HeldOut(ds.x_train, remap[ds.y_train],
                   f"{path} ({len(ds.y_train):,} images the user held out)")


# --- folding ------------------------------------------------------------------------------


def _output_softmax(graph: Any) -> Any:
    """The Softmax whose result is ``probabilities`` (through Casts, as fp16 graphs have)."""
    producers = {o: n for n in graph.node for o in n.output}
    node = producers.get(OUTPUT_NAME)
    while node is not None and node.op_type in ("Cast", "Identity"):
        node = producers.get(node.input[0])
    if node is None or node.op_type != "Softmax":
        found = "nothing" if node is None else f"a {node.op_type}"
        raise ExportError(f"cannot fold a temperature: {OUTPUT_NAME!r} is made by {found}, not "
                          "a Softmax; export with --held-out none")
    return node


def fold_temperature(proto: Any, temperature: float) -> float:
    """Scale the output Softmax's input by ``1/temperature`` (in that tensor's own float type),
    in place. Returns the temperature the graph now applies (fp16 rounds ``1/T``)."""
    import onnx
    from onnx import helper, numpy_helper

    softmax = _output_softmax(proto.graph)
    typed = onnx.shape_inference.infer_shapes(proto)
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*typed.graph.value_info, *typed.graph.input, *typed.graph.output)}
    elem = types.get(softmax.input[0], onnx.TensorProto.FLOAT)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
    scale = np.asarray(1.0 / temperature, dtype=dtype)
    name = f"{softmax.name or 'output_softmax'}{INV_TEMPERATURE}"
    proto.graph.initializer.append(numpy_helper.from_array(scale, name))
    mul = helper.make_node("Mul", [softmax.input[0], name], [f"{name}:0"], name=f"{name}/mul")
    softmax.input[0] = f"{name}:0"
    nodes = list(proto.graph.node)
    nodes.insert(nodes.index(softmax), mul)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return float(1.0 / float(scale))


def unfold_temperature(proto: Any) -> float | None:
    """Undo ``fold_temperature`` in place: the Softmax reads the logits again and the ``1/T``
    constant is gone. Returns the temperature removed (None when the graph had none), so that
    re-exporting a calibrated file fits a fresh temperature instead of stacking a second."""
    from onnx import numpy_helper

    softmax = _output_softmax(proto.graph)
    producers = {o: n for n in proto.graph.node for o in n.output}
    mul = producers.get(softmax.input[0])
    if mul is None or mul.op_type != "Mul" or not mul.input[1].endswith(INV_TEMPERATURE):
        return None
    consumers = [n for n in proto.graph.node if mul.output[0] in n.input]
    if consumers != [softmax]:
        raise ExportError(f"cannot remove the folded temperature: {mul.output[0]!r} feeds "
                          f"{len(consumers)} nodes, not only the output Softmax")
    const = next((t for t in proto.graph.initializer if t.name == mul.input[1]), None)
    if const is None:  # not the constant ``fold_temperature`` writes: not ours to remove
        return None
    temperature = float(1.0 / float(numpy_helper.to_array(const)))
    softmax.input[0] = mul.input[0]
    proto.graph.node.remove(mul)
    proto.graph.initializer.remove(const)
    return temperature


def check_fold(before: np.ndarray, after: np.ndarray, temperature: float, precision: str,
               what: str) -> float:
    """``ExportError`` unless ``after == apply_temperature(before, T)`` with the same top-1
    (a row whose two best classes tie after rounding may swap); returns the max |Δ|.

    Checked in the sharpening direction (``after`` scaled by ``1/T`` against ``before`` when
    ``T > 1``): a probability that underflowed to 0 has no log, and flattening it back up
    would invent mass that the folded graph, which scales the real logits, rightly has."""
    if temperature >= 1:
        expected, got = before, cal.apply_temperature(after, 1 / temperature)
    else:
        expected, got = after, cal.apply_temperature(before, temperature)
    diff = float(np.abs(expected - got).max()) if len(after) else 0.0
    tol = FOLD_TOLERANCE.get(precision, FOLD_TOLERANCE_DEFAULT)
    top2 = np.sort(after, axis=1)[:, -2:]
    changed = (before.argmax(1) != after.argmax(1)) & (top2[:, 1] - top2[:, 0] > tol)
    if diff > tol or changed.any():
        raise ExportError(f"the {precision} graph with T={temperature:.4g} folded differs from "
                          f"temperature-scaled probabilities on {what} (max |Δ| {diff:.2e}, "
                          f"tolerance {tol:g}; top-1 changed on {int(changed.sum())} images)")
    return diff


# --- the record -----------------------------------------------------------------------------


@dataclass
class Calibration:
    """One precision's fitted and folded temperature, its figures and its unknown rule."""

    temperature: float  # as folded into the graph
    fitted_temperature: float
    at_bound: bool
    fitted_on: str
    images: int
    held_out: dict[str, float]  # accuracy, ECE and NLL before / after on the held-out images
    fold_max_abs_diff: float
    threshold: float  # MSP threshold accepting ``acceptance`` of the held-out images
    acceptance: float = ACCEPTANCE
    test: dict[str, float] | None = None  # ECE/NLL/Brier before/after, accepted share

    def metadata(self) -> dict[str, Any]:
        """The ``calibration`` metadata entry (``cifarkit.contract`` reads ``temperature``)."""
        return {"temperature": self.temperature, "fitted_on": self.fitted_on,
                "images": self.images, "folded": "Mul by 1/T on the output Softmax's input",
                "held_out": self.held_out, "test": self.test}

    def unknown(self) -> dict[str, Any]:
        """The ``unknown`` metadata entry: MSP of the calibrated probabilities."""
        return {"score": "msp", "threshold": self.threshold, "acceptance": self.acceptance,
                "fitted_on": self.fitted_on}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _figures(probs: np.ndarray, y: np.ndarray, suffix: str) -> dict[str, float]:
    return {f"ece_{suffix}": cal.ece(probs, y), f"nll_{suffix}": cal.nll(probs, y),
            f"brier_{suffix}": cal.brier(probs, y)}


def fit(before: np.ndarray, held: HeldOut) -> cal.TemperatureFit:
    """The temperature of one precision's uncalibrated held-out probabilities."""
    return cal.fit_temperature(cal.log_probs(before), held.y)


def record(before: np.ndarray, after: np.ndarray, temperature: float,
           fitted: cal.TemperatureFit, held: HeldOut, precision: str,
           acceptance: float) -> Calibration:
    """Check the fold on the held-out images and gather its figures."""
    diff = check_fold(before, after, temperature, precision, "the held-out images")
    held_figures = {"accuracy": float(np.mean(after.argmax(1) == held.y)),
                    **_figures(before, held.y, "before"), **_figures(after, held.y, "after")}
    return Calibration(temperature, fitted.temperature, fitted.at_bound, held.description,
                       len(held.y), held_figures, diff,
                       threshold_for(msp_score(after), acceptance), acceptance)


def add_test_figures(c: Calibration, before: np.ndarray, after: np.ndarray, y: np.ndarray,
                 precision: str) -> None:
    """The fold checked again, and ECE/NLL/Brier before → after, on the test images."""
    check_fold(before, after, c.temperature, precision, "the test images")
    c.test = {**_figures(before, y, "before"), **_figures(after, y, "after"),
              "accepted": float(np.mean(msp_score(after) >= c.threshold)),
              "images": int(len(y))}


def tflite_record(probs: np.ndarray, temperature: float, held: HeldOut,
                  acceptance: float) -> dict[str, Any]:
    """The LiteRT int8 file's temperature (fp32's), held-out figures and own MSP threshold."""
    return {"temperature": temperature, "fitted_on": held.description,
            **_figures(probs, held.y, "held_out"),
            "threshold": threshold_for(msp_score(probs), acceptance)}
