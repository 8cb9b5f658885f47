"""The model contract: the one place that says what a cifarkit model takes and returns.

An exported model has one input ``images``, uint8 ``[batch, S, S, 3]``, RGB, raw pixels
0–255 (all preprocessing inside the graph), and one output ``probabilities``, float32
``[batch, n_classes]``, rows summing to 1. Its metadata names the classes (``class_names``,
a JSON list, index = output column), the image size S (``image_size``) and how a file becomes
S×S (``preprocess``). Two optional JSON keys make the confidence column mean something:
``calibration`` (the temperature export folded into the graph before the Softmax, and on what
it was fitted) and ``unknown`` (the "none of my classes" rule: a score, higher = more like the
training classes, and the threshold under which ``predict --reject auto`` answers
``unknown``). Backends, export's checks, predict and bench all ask here, so they
cannot disagree about a model. Models made elsewhere may also take float input scaled to 0–1
(or 0–255 where the metadata says so), and need no metadata when they have 10 outputs.

A model may have a second output ``score`` (``SCORE_OUTPUT``), float32 ``[batch]``, one
number per image, higher = more like the training classes, which an ``unknown`` rule may
name. Runtimes fetch both outputs by name (``ModelInfo.output``, ``ModelInfo.has_score``);
``check_score_output`` and ``check_scores`` say what a score output must be.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.errors import ModelError, UsageError, one_line

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
DEFAULT_IMAGE_SIZE = 32
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 512
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
#: How a file becomes S×S when the metadata does not say (see ``cifarkit.data.images``).
DEFAULT_PREPROCESS = "center-crop+resize-lanczos"


#: Scores an ``unknown`` rule may name. ``msp``: the top probability (of the calibrated
#: output). ``score``: the model's second output of that name, ``[batch]`` float32.
UNKNOWN_SCORES = ("msp", "score")
SCORE_OUTPUT = "score"
SCORE_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))  # float16 is returned as float32


def prune_dead(graph: Any) -> None:
    """Drop, in place, the nodes and initializers of an ONNX ``GraphProto`` that no graph
    output needs."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def probabilities_only(graph: Any) -> None:
    """Reduce an ONNX ``GraphProto``, in place, to its ``probabilities`` output and the nodes
    that make it: a ``score`` output (export's unknown score) and its branch go."""
    if len(graph.output) > 1:
        keep = [o for o in graph.output if o.name == OUTPUT_NAME]
        del graph.output[:]
        graph.output.extend(keep)
        prune_dead(graph)


@dataclass(frozen=True)
class UnknownRule:
    """Rows whose ``score`` is under ``threshold`` are "none of my classes"; the threshold
    accepts ``acceptance`` of held-out in-distribution images (``fitted_on`` says which)."""

    score: str
    threshold: float
    acceptance: float = 0.95
    fitted_on: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about itself, checked against the contract."""

    classes: tuple[str, ...]
    image_size: int = DEFAULT_IMAGE_SIZE
    preprocess: str = DEFAULT_PREPROCESS
    input_kind: str = "uint8"  # or "float01" / "float255": scaled by the backend
    metadata: dict[str, str] = field(default_factory=dict, compare=False)
    temperature: float | None = None  # folded into the graph at export (None: not calibrated)
    unknown: UnknownRule | None = None
    output: str = OUTPUT_NAME  # the probabilities output's name (the only output may differ)
    has_score: bool = False  # the file has the output ``SCORE_OUTPUT``, checked
    outputs: tuple[str, ...] = ()  # every output's name, in the file's order (when read)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def check_image_size(size: int, what: str = "--image-size") -> int:
    if not MIN_IMAGE_SIZE <= int(size) <= MAX_IMAGE_SIZE:
        raise UsageError(f"{what} must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE}, "
                         f"got {size}")
    return int(size)


def check_class_names(names: Sequence[Any], where: str = "classes") -> tuple[str, ...]:
    """At least two distinct non-empty names (``ModelError`` otherwise)."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(c, str) and c for c in names):
        raise ModelError(f"{where}: class names must be a list of non-empty strings")
    if len(names) < 2:
        raise ModelError(f"{where}: a classifier needs at least two classes, got {list(names)}")
    if dupes := sorted({c for c in names if names.count(c) > 1}):
        raise ModelError(f"{where}: class names must be unique; repeated: {dupes}")
    return tuple(names)


def class_names(metadata: dict[str, str], n_out: int | None, where: str) -> tuple[str, ...]:
    """The classes of a model with ``n_out`` outputs (``None``: unknown yet)."""
    raw = metadata.get("class_names")
    if raw is None:
        if n_out in (None, len(CIFAR10_CLASSES)):
            return CIFAR10_CLASSES
        raise ModelError(f"{where}: {n_out} outputs and no class_names metadata; add "
                         "class_names (a JSON list) to the model's metadata_props")
    try:
        names = json.loads(raw)
    except json.JSONDecodeError:
        raise ModelError(f"{where}: metadata class_names must be a JSON list of names, "
                         f"got {raw[:80]!r}") from None
    classes = check_class_names(names, f"{where}: metadata class_names")
    if n_out is not None and n_out != len(classes):
        raise ModelError(f"{where}: the model outputs {n_out} scores but class_names lists "
                         f"{len(classes)} classes")
    return classes


def image_size(dims: Sequence[int | None], metadata: dict[str, str], where: str) -> int:
    """S of an NHWC ``[batch, S, S, 3]`` input; a dynamic S takes the metadata's size."""
    if len(dims) != 4:
        raise ModelError(f"{where}: input has shape {list(dims)}; expected [batch, S, S, 3]")
    if dims[1] == 3 and dims[3] != 3:
        raise ModelError(f"{where}: input is channels-first {list(dims)}; cifarkit models take "
                         "channels-last images [batch, S, S, 3] (NHWC, as Keras exports them)")
    h, w, c = dims[1:]
    declared = metadata.get("image_size")
    size = h or w or (int(declared) if declared and declared.isdigit() else None)
    if c not in (None, 3) or (h and w and h != w) or size is None:
        raise ModelError(f"{where}: input has shape {list(dims)}; expected square RGB "
                         "images [batch, S, S, 3]")
    if declared and declared.isdigit() and int(declared) != size:
        raise ModelError(f"{where}: metadata image_size {declared} but the input is "
                         f"{size}×{size}")
    return int(size)


def input_kind(uint8: bool, metadata: dict[str, str]) -> str:
    """How a backend feeds uint8 pixels: as they are, or as floats scaled to 0–1 / 0–255."""
    if uint8:
        return "uint8"
    described = " ".join(metadata.get(k, "") for k in ("input_range", "input_description"))
    if re.search(r"0\s*(-|–|\.\.|to)\s*255", described) and not re.search(
        r"0\s*(-|–|\.\.|to)\s*1(\.0)?\b", described
    ):
        return "float255"
    return "float01"


def _json_entry(metadata: dict[str, str], key: str, where: str) -> dict[str, Any] | None:
    raw = metadata.get(key)
    if raw is None:
        return None
    try:
        entry = json.loads(raw)
    except json.JSONDecodeError:
        entry = None
    if not isinstance(entry, dict):
        raise ModelError(f"{where}: metadata {key} must be a JSON object, got {raw[:80]!r}")
    return entry


def temperature(metadata: dict[str, str], where: str) -> float | None:
    """The temperature the ``calibration`` entry says is folded into the graph."""
    entry = _json_entry(metadata, "calibration", where)
    if entry is None:
        return None
    t = entry.get("temperature")
    if not isinstance(t, (int, float)) or not t > 0:
        raise ModelError(f"{where}: metadata calibration.temperature must be a number > 0, "
                         f"got {t!r}")
    return float(t)


def unknown_rule(metadata: dict[str, str], where: str) -> UnknownRule | None:
    """The ``unknown`` entry checked: a known score and a finite threshold."""
    entry = _json_entry(metadata, "unknown", where)
    if entry is None:
        return None
    score, threshold = entry.get("score"), entry.get("threshold")
    if score not in UNKNOWN_SCORES:
        raise ModelError(f"{where}: metadata unknown.score must be one of {UNKNOWN_SCORES}, "
                         f"got {score!r}")
    if not isinstance(threshold, (int, float)) or not np.isfinite(threshold):
        raise ModelError(f"{where}: metadata unknown.threshold must be a number, "
                         f"got {threshold!r}")
    acceptance = entry.get("acceptance", 0.95)
    if not isinstance(acceptance, (int, float)) or not 0 < acceptance <= 1:
        raise ModelError(f"{where}: metadata unknown.acceptance must be in (0, 1], "
                         f"got {acceptance!r}")
    return UnknownRule(score, float(threshold), float(acceptance),
                       str(entry.get("fitted_on", "")))


def check_score_output(dtype: Any, dims: Sequence[int | None], where: str, *,
                       column: bool = False) -> None:
    """``ModelError`` unless a ``score`` output is float32 or float16 ``[batch]`` (``column``:
    also ``[batch, 1]``, as LiteRT may give it). ``dtype``: anything ``np.dtype`` reads, else
    the runtime's own type name."""
    try:
        dt: np.dtype | None = np.dtype(dtype)
    except TypeError:
        dt = None
    rank_ok = len(dims) == 1 or (column and len(dims) == 2 and dims[1] in (1, None))
    if dt not in SCORE_DTYPES or not rank_ok:
        kind = dt.name if dt is not None else str(dtype).removeprefix("tensor(").rstrip(")")
        shape = ", ".join("?" if d is None else str(d) for d in dims)
        raise ModelError(f"{where}: output {SCORE_OUTPUT!r} is {kind} [{shape}]; the "
                         "contract's score is float32 [batch], one number per image")


def check_scores(score: Any, n: int, where: str) -> np.ndarray:
    """A batch's ``score`` output as float32 ``[n]``; ``ModelError`` unless it is ``n``
    finite numbers."""
    s = np.asarray(score, dtype=np.float32)
    if s.shape != (n,):
        raise ModelError(f"{where}: output {SCORE_OUTPUT!r} has shape {list(s.shape)}; "
                         f"expected [{n}], one score per image")
    if not np.all(np.isfinite(s)):
        raise ModelError(f"{where}: output {SCORE_OUTPUT!r} has NaN or infinite values")
    return s


def describe(metadata: dict[str, str], in_dims: Sequence[int | None], n_out: int | None,
             uint8: bool, where: str, *, output: str = OUTPUT_NAME,
             has_score: bool = False, outputs: Sequence[str] = ()) -> ModelInfo:
    """Check an input shape and output width against the metadata: the model's ``ModelInfo``
    (``output``, ``has_score``, ``outputs``: what the caller found, see ``ModelInfo``)."""
    return ModelInfo(
        classes=class_names(metadata, n_out, where),
        image_size=image_size(in_dims, metadata, where),
        preprocess=metadata.get("preprocess", DEFAULT_PREPROCESS),
        input_kind=input_kind(uint8, metadata),
        metadata=dict(metadata),
        temperature=temperature(metadata, where),
        unknown=unknown_rule(metadata, where),
        output=output,
        has_score=has_score,
        outputs=tuple(outputs),
    )


def _dims_of(value_info: Any) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None
            for d in value_info.type.tensor_type.shape.dim]


def _onnx_outputs(outputs: Sequence[Any], where: str) -> tuple[Any, bool]:
    """The probabilities output (the only one, else the one named ``OUTPUT_NAME``) and
    whether a checked ``score`` output is there too."""
    import onnx

    if len(outputs) == 1:
        return outputs[0], False
    named = [o for o in outputs if o.name == OUTPUT_NAME]
    if not named:
        listed = ", ".join(f"{o.name} {_dims_of(o)}" for o in outputs)
        raise ModelError(f"{where}: {len(outputs)} outputs and none is called "
                         f"{OUTPUT_NAME!r} ({listed}); expected one output probabilities "
                         "[batch, n_classes]")
    score = [o for o in outputs if o.name == SCORE_OUTPUT]
    if score:
        elem = score[0].type.tensor_type.elem_type
        try:
            dtype: Any = onnx.helper.tensor_dtype_to_np_dtype(elem)
        except Exception:  # a type numpy has no dtype for (string, bfloat16, ...)
            dtype = onnx.TensorProto.DataType.Name(elem)
        check_score_output(dtype, _dims_of(score[0]), where)
    return named[0], bool(score)


def _onnx_interface(path: Path) -> tuple[Any, dict[str, str], list[int | None], int | None,
                                         str, bool, list[str]]:
    """(input tensor type, metadata, input dims, output width, probabilities output's name,
    has a score output, every output's name) of an ONNX file, unrun."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable ONNX file: {one_line(str(exc))}") from None
    metadata = {p.key: p.value for p in proto.metadata_props}
    inits = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelError(f"{path.name}: expected one input (images), found {len(inputs)}")
    t = inputs[0].type.tensor_type
    dims = _dims_of(inputs[0])
    if not proto.graph.output:
        raise ModelError(f"{path.name}: the graph has no output")
    out, has_score = _onnx_outputs(proto.graph.output, path.name)
    out_dims = _dims_of(out)
    n_out = out_dims[1] if len(out_dims) == 2 else None
    return t, metadata, dims, n_out, out.name, has_score, [o.name for o in proto.graph.output]


def read_onnx(path: Path, *, uint8_only: bool = True) -> ModelInfo:
    """The ``ModelInfo`` of an ONNX file whose input is the contract's uint8 NHWC (what
    backends other than onnxruntime take), read with ``onnx`` without running it.
    ``uint8_only=False`` also takes the float inputs onnxruntime's ``Classifier`` scales."""
    import onnx

    t, metadata, dims, n_out, output, has_score, outputs = _onnx_interface(path)
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    uint8 = t.elem_type == onnx.TensorProto.UINT8
    if not uint8 and (uint8_only or t.elem_type not in floats):
        kind = onnx.TensorProto.DataType.Name(t.elem_type)
        raise ModelError(f"{path.name}: input is {kind} {dims}; this backend runs models with "
                         "the contract's uint8 [batch, S, S, 3] input (onnxruntime also takes "
                         "float inputs)")
    return describe(metadata, dims, n_out, uint8, path.name, output=output,
                    has_score=has_score, outputs=outputs)


def onnx_image_size(path: Path) -> int:
    """S of an ONNX model's ``[batch, S, S, 3]`` input, whatever its element type."""
    _, metadata, dims, *_ = _onnx_interface(path)
    return image_size(dims, metadata, path.name)


def check_images(images: Any, size: int) -> np.ndarray:
    """uint8 ``[N, size, size, 3]`` (a single image gets a batch axis), contiguous."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise UsageError(f"expected uint8 images [N, {size}, {size}, 3] (RGB 0–255), got "
                         f"{images.dtype} {list(images.shape)}")
    return np.ascontiguousarray(images)


def check_probabilities(probs: np.ndarray, n_classes: int, where: str,
                        output: str = OUTPUT_NAME, atol: float = 1e-2) -> None:
    """``ModelError`` unless ``probs`` is ``[N, n_classes]`` softmax rows."""
    if probs.ndim != 2 or probs.shape[1] != n_classes:
        raise ModelError(f"{where}: output has shape {probs.shape}; expected "
                         f"[batch, {n_classes}]")
    sums = probs.sum(axis=1, dtype=np.float64)
    finite = bool(np.all(np.isfinite(probs)))
    if not (finite and probs.min() >= -1e-4 and np.allclose(sums, 1, atol=atol)):
        raise ModelError(
            f"{where}: output {output!r} is not probabilities (row sums {sums.min():.3g}…"
            f"{sums.max():.3g}, min {probs.min():.3g}); the contract wants softmax outputs"
        )
