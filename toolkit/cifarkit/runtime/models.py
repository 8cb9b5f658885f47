"""Finding a model: ``--model NAME|PATH`` and the default shipped model.

Shipped models live in ``exported/<name>/`` (``model.fp32.onnx``, ``model.int8.onnx``,
``model.fp16.onnx``, ``card.json``). A model reference is one of:

- a path to an ``.onnx`` file;
- a path to a folder holding ``model.fp32.onnx`` (or exactly one ``.onnx`` file);
- ``NAME`` or ``NAME:PRECISION`` (``cnn-batchnorm``, ``cnn-batchnorm:int8``): the file
  ``exported/NAME/model.PRECISION.onnx``; the precision defaults to ``fp32``.

The default model (``--model`` left out) is named by the one-line text file
``exported/default``, which holds a model reference as above (e.g. ``cnn-batchnorm:int8``;
a relative path is relative to ``exported/``). Whoever ships a model writes that file; with
no such file, commands that need a model ask for ``--model``.

``exported/`` is ``$CIFARKIT_EXPORTED`` when set, else ``./exported`` when the current folder
has one, else the ``exported/`` folder of the source checkout cifarkit runs from.
"""

from __future__ import annotations

import os
from pathlib import Path

from cifarkit.errors import ModelError

DEFAULT_FILE = "default"
PRECISIONS = ("fp32", "int8", "fp16")


def exported_dir() -> Path:
    if env := os.environ.get("CIFARKIT_EXPORTED"):
        return Path(env)
    here = Path.cwd() / "exported"
    if here.is_dir():
        return here
    # toolkit/cifarkit/runtime/models.py → the checkout's root
    return Path(__file__).resolve().parents[3] / "exported"


def list_exported(root: Path | None = None) -> dict[str, list[str]]:
    """``{name: [precisions]}`` of the models under ``exported/``."""
    root = root or exported_dir()
    found: dict[str, list[str]] = {}
    if not root.is_dir():
        return found
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        precisions = [p for p in PRECISIONS if (folder / f"model.{p}.onnx").is_file()]
        if precisions:
            found[folder.name] = precisions
    return found


def _describe_available(root: Path) -> str:
    models = list_exported(root)
    if not models:
        return f"no models are shipped in {root} yet"
    return "shipped models: " + ", ".join(
        f"{name} ({'/'.join(precisions)})" for name, precisions in models.items()
    )


def _from_folder(folder: Path) -> Path:
    if (folder / "model.fp32.onnx").is_file():
        return folder / "model.fp32.onnx"
    candidates = sorted(folder.glob("*.onnx"))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ModelError(f"{folder}: no .onnx file in this folder")
    names = ", ".join(p.name for p in candidates)
    raise ModelError(f"{folder}: several models ({names}); pass one file with --model")


def resolve_model(spec: str | os.PathLike[str] | None = None) -> Path:
    """The ``.onnx`` file a model reference names (see the module docstring)."""
    root = exported_dir()
    if spec is None:
        pointer = root / DEFAULT_FILE
        if not pointer.is_file():
            raise ModelError(
                f"no default model: {pointer} does not exist ({_describe_available(root)}). "
                "Pass --model PATH.onnx or --model NAME[:fp32|int8|fp16]"
            )
        text = pointer.read_text(encoding="utf-8").strip()
        if not text:
            raise ModelError(f"{pointer} is empty; it should name a model, e.g. cnn-batchnorm")
        target = Path(text)
        if not target.is_absolute() and (root / target).exists():
            text = os.fspath(root / target)
        try:
            return resolve_model(text)
        except ModelError as exc:
            raise ModelError(f"the default model ({pointer}: {text!r}) is missing: {exc}") from None

    path = Path(spec)
    if path.is_file():
        return path
    if path.is_dir():
        return _from_folder(path)
    text = os.fspath(spec)
    name, _, precision = text.partition(":")
    looks_like_path = text.endswith(".onnx") or os.sep in name or (
        os.altsep is not None and os.altsep in name
    )
    if not looks_like_path and name:
        precision = precision or "fp32"
        if precision not in PRECISIONS:
            raise ModelError(
                f"unknown precision {precision!r} in {text!r}; choose {', '.join(PRECISIONS)}"
            )
        candidate = root / name / f"model.{precision}.onnx"
        if candidate.is_file():
            return candidate
        raise ModelError(
            f"no model {text!r}: {candidate} does not exist ({_describe_available(root)})"
        )
    raise ModelError(f"model file {path} does not exist")
