"""What gets exported: a run folder, a bare ``.keras`` file or an fp32 ``.onnx`` file.

A run folder is what ``cifarkit train`` writes (``model.keras`` + ``run.json``); ``run.json``
is optional, so a bare ``.keras`` file exports too. The Keras model must honour the cifarkit
contract before it is converted: one input ``[batch, 32, 32, 3]`` taking raw RGB 0–255
pixels, one output ``[batch, 10]`` of probabilities.

An fp32 ONNX file that honours the ONNX contract is a source too (``kind == "onnx"``): the
shipped models exist only as ONNX (their Keras runs are not in the repository), and
re-exporting one applies today's passes (portability, fp16/int8, LiteRT, ORT) to the same
weights, with the parity gate run against the source file.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifarkit.contract import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from cifarkit.errors import ModelError, UsageError

MODEL_FILE = "model.keras"
RUN_FILE = "run.json"
#: Written last by every export; its mtime says when the export finished.
CARD_FILE = "card.json"


@dataclass
class ExportSource:
    """A resolved export input: where the ``.keras`` is, what the run says about it."""

    name: str
    model_path: Path
    run_dir: Path | None = None
    run_info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: "keras" (a run folder or .keras file) or "onnx" (an fp32 contract .onnx file).
    kind: str = "keras"

    @property
    def arch(self) -> str | None:
        arch = self.run_info.get("arch")
        return str(arch) if arch else None


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_run_info(run_dir: Path, notes: list[str]) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        notes.append(f"ignored unreadable {path}: {exc}")
        return {}
    if not isinstance(info, dict):
        notes.append(f"ignored {path}: not a JSON object")
        return {}
    return info


def resolve_source(path: str | os.PathLike[str]) -> ExportSource:
    """A run folder (``…/model.keras`` inside) or a ``.keras`` file → :class:`ExportSource`.

    The export name is the run folder's name (``runs/cnn-batchnorm`` → ``cnn-batchnorm``), or
    the file's stem for a ``.keras`` file outside a run folder.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(
            f"{path} does not exist: pass a run folder (runs/<arch>/), a .keras file or an "
            "fp32 .onnx file"
        )
    notes: list[str] = []
    if path.is_dir():
        model_path = path / MODEL_FILE
        if not model_path.is_file():
            raise ModelError(
                f"{path} has no {MODEL_FILE}: not a finished cifarkit run folder "
                f"(train one with `cifarkit train <arch> --out {path}`)"
            )
        run_dir = path
    elif path.suffix.lower() == ".onnx":
        # exported/fastnet/model.fp32.onnx → "fastnet"; elsewhere the file's stem.
        name = path.resolve().parent.name if path.name.startswith("model.") else path.stem
        return ExportSource(name, path, None, {}, notes, kind="onnx")
    else:
        model_path = path
        if path.suffix.lower() != ".keras":
            raise ModelError(
                f"{path} is not a Keras model file: expected a .keras file (Keras 3 format) "
                "or an fp32 .onnx file"
                + (". Re-save legacy .h5 models with model.save('model.keras')"
                   if path.suffix.lower() in (".h5", ".hdf5") else "")
            )
        # A model.keras inside a run folder still belongs to that run.
        run_dir = path.parent if (path.parent / RUN_FILE).is_file() else None
    run_info = _read_run_info(run_dir, notes) if run_dir is not None else {}
    if run_dir is not None:
        name = run_dir.resolve().name
    elif model_path.stem == "model":  # runs/x/model.keras without run.json: still "x"
        name = model_path.resolve().parent.name
    else:
        name = model_path.stem
    return ExportSource(name, model_path, run_dir, run_info, notes)


def load_keras_model(path: str | os.PathLike[str]) -> Any:
    """Load a ``.keras`` file in Keras's safe mode (no arbitrary Lambda code), uncompiled."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path} does not exist")
    if not zipfile.is_zipfile(path):
        raise ModelError(
            f"{path} is not a Keras model: a .keras file is a zip archive with config.json "
            "and model.weights.h5 (save one with model.save('model.keras'))"
        )
    with zipfile.ZipFile(path) as zf:
        if "config.json" not in zf.namelist():
            raise ModelError(f"{path} is not a Keras model: the archive has no config.json")

    import keras

    # Registers cifarkit's serializable layers (ReverseChannels) before deserialising.
    import cifarkit.models.layers  # noqa: F401

    try:
        model = keras.saving.load_model(os.fspath(path), safe_mode=True, compile=False)
    except ValueError as exc:
        text = str(exc)
        if "safe_mode" in text or "Lambda" in text:
            raise ModelError(
                f"{path}: refused to load in safe mode: the model contains arbitrary Python "
                "code (a Lambda layer). Replace it with a registered serializable layer."
            ) from None
        raise ModelError(f"{path}: could not load the Keras model: {text}") from None
    except Exception as exc:  # corrupt archive, unknown custom layer, bad weights file …
        raise ModelError(
            f"{path}: could not load the Keras model ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"{path} holds a {type(model).__name__}, not a Keras model")
    return model


def _shape(t: Any) -> tuple[Any, ...]:
    return tuple(None if d is None else int(d) for d in t.shape)


def check_keras_contract(model: Any, where: str = "model") -> None:
    """Raise ``ModelError`` unless the model maps square RGB images ``[batch, S, S, 3]``
    (S in the contract's range) to ``[batch, n_classes]`` scores, n_classes ≥ 2."""
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError):
        inputs, outputs = [], []
    if not inputs or not outputs:
        raise ModelError(
            f"{where}: the model has no defined inputs/outputs (a subclassed model that was "
            "never built?); export needs a Sequential or functional model"
        )
    if len(inputs) != 1:
        raise ModelError(f"{where}: expected one input image tensor, the model has {len(inputs)}")
    if len(outputs) != 1:
        raise ModelError(f"{where}: expected one output, the model has {len(outputs)}")
    in_shape, out_shape = _shape(inputs[0]), _shape(outputs[0])
    square = len(in_shape) == 4 and in_shape[1] == in_shape[2] and in_shape[3] == 3
    if not square or not MIN_IMAGE_SIZE <= (in_shape[1] or 0) <= MAX_IMAGE_SIZE:
        raise ModelError(
            f"{where}: input shape is {list(in_shape)}; the contract needs "
            f"[batch, S, S, 3] (RGB, channels last, S {MIN_IMAGE_SIZE}–{MAX_IMAGE_SIZE})"
        )
    if len(out_shape) != 2 or (out_shape[1] or 0) < 2:
        raise ModelError(
            f"{where}: output shape is {list(out_shape)}; the contract needs "
            "[batch, n_classes] (one probability per class, at least 2)"
        )


def uses_reduced_precision(model: Any) -> list[str]:
    """Names of layers that compute in float16/bfloat16 (a mixed-precision training run)."""
    found = []
    for layer in _all_layers(model):
        policy = getattr(layer, "dtype_policy", None)
        compute = getattr(policy, "compute_dtype", None)
        if compute in ("float16", "bfloat16"):
            found.append(layer.name)
    return found


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


def as_float32(model: Any) -> Any:
    """A float32 copy of a mixed-precision model, same weights (export computes in fp32).

    The layer configs carry their dtype policy; rewriting them to ``float32`` and loading
    the same weights gives the model the ONNX graph should contain. FP16 is a separate,
    explicit ``--precision fp16`` output.
    """
    import keras

    def strip(obj: Any) -> Any:
        if isinstance(obj, dict):
            if obj.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
                return "float32"
            return {
                k: "float32" if k == "dtype" and v in ("mixed_float16", "mixed_bfloat16")
                else strip(v)
                for k, v in obj.items()
            }
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    config = keras.saving.serialize_keras_object(model)
    clone = keras.saving.deserialize_keras_object(strip(config), safe_mode=True)
    clone.set_weights(model.get_weights())
    return clone


def tta_card(model: Any) -> dict[str, Any] | None:
    """The card's record of in-graph test-time augmentation (None for models without it)."""
    from cifarkit.models.fastnet import tta_level
    from cifarkit.models.layers import TTA_WEIGHTS

    level = tta_level(model)
    if not level:
        return None
    what = {1: "the image and its mirror, averaged",
            2: "the image, its one-pixel translations up-left and down-right (reflection "
               "padded) and the mirrors of all three; weights 1/4 for the image and its "
               "mirror, 1/8 for each translated view"}
    return {"level": level, "views": len(TTA_WEIGHTS[level]), "description": what[level]}


def export_dir_for(name: str, exported_dir: str | os.PathLike[str] = "exported") -> Path:
    return Path(exported_dir) / name


def find_stale_runs(
    runs_dir: str | os.PathLike[str] = "runs", exported_dir: str | os.PathLike[str] = "exported"
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Run folders whose export is missing or older than their ``model.keras``.

    Returns ``(stale, skipped)``; ``skipped`` pairs a run folder with the reason (no model,
    an interrupted run, export up to date).
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise UsageError(
            f"no {runs_dir}/ folder here: train a model first (`cifarkit train cnn-batchnorm`) "
            "or pass a run folder or .keras file to export"
        )
    stale: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for run in sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        model = run / MODEL_FILE
        if not model.is_file():
            skipped.append((run, f"no {MODEL_FILE}"))
            continue
        info = _read_run_info(run, [])
        if info.get("status") == "interrupted":
            skipped.append((run, "interrupted run (finish it with cifarkit train --resume)"))
            continue
        card = export_dir_for(run.name, exported_dir) / CARD_FILE
        if card.is_file() and card.stat().st_mtime >= model.stat().st_mtime:
            skipped.append((run, f"up to date ({card})"))
            continue
        stale.append(run)
    return stale, skipped
