"""Finding a model: ``--model NAME|PATH`` and the default shipped model.

Shipped models live in ``exported/<name>/`` (``model.fp32.onnx``, ``model.int8.onnx``,
``model.fp16.onnx``, ``card.json``). A model reference is one of:

- a path to an ``.onnx`` file;
- a path to a folder holding ``model.fp32.onnx`` (or exactly one ``.onnx`` file);
- ``NAME`` or ``NAME:PRECISION`` (``cnn-batchnorm``, ``cnn-batchnorm:int8``): the file
  ``exported/NAME/model.PRECISION.onnx``; the precision defaults to ``fp32``
  (``parse_spec`` reads this form, for every command that takes one);
- ``NAME:auto``: the precision the model's card recommends for the execution provider
  (``recommended_precision``): int8 on CPU providers (``cpu``, ``openvino``) when the card
  shows its int8 file meets issue 21's bar, fp32 otherwise (CUDA/TensorRT always fp32: int8
  QDQ graphs are a CPU format for onnxruntime here).

The bar, from the card's own figures on the real, full test split: int8 top-1 at most 0.3
points under fp32, and int8 images/s at batch 32 at least 2.5× fp32 when measured on a CPU
with VNNI (the card's ``quantization.cpu_vnni``), 1.6× without.

The default model (``--model`` left out) is named by the one-line text file
``exported/default``, which holds a model reference as above (e.g. ``fastnet-relu:auto``:
int8 on CPUs when its card says int8 pays, ``fastnet:fp32``: fp32 everywhere; a relative
path is relative to ``exported/``). Whoever ships a model writes that file; with
no such file, commands that need a model ask for ``--model``.

``exported/`` is ``$CIFARKIT_EXPORTED`` when set, else ``./exported`` when the current folder
has one, else the ``exported/`` folder of the source checkout cifarkit runs from.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cifarkit.errors import ModelError

DEFAULT_FILE = "default"
PRECISIONS = ("fp32", "int8", "fp16")
AUTO = "auto"
#: Providers whose int8 kernels are onnxruntime's CPU (MLAS) ones.
CPU_PROVIDERS = frozenset({"cpu", "openvino"})
#: Issue 21's bar for int8 to be the CPU default: points of top-1 lost at most, and the batch-32
#: speed ratio over fp32 at least, by whether the card's measuring CPU had VNNI.
INT8_MAX_LOSS_POINTS = 0.3
INT8_MIN_SPEEDUP = {True: 2.5, False: 1.6}


@dataclass(frozen=True)
class ModelSpec:
    """A model named in ``exported/``: ``NAME`` or ``NAME:PRECISION`` (``auto`` included)."""

    name: str
    precision: str | None = None  # None: not given (one file: fp32; bench: every precision)

    def __str__(self) -> str:
        return self.name if self.precision is None else f"{self.name}:{self.precision}"


def parse_spec(text: str | os.PathLike[str]) -> ModelSpec | None:
    """The ``NAME[:PRECISION]`` a model reference names, or None when it reads as a path (it
    ends in ``.onnx`` or its name holds a path separator). An unknown precision raises
    ``ModelError`` naming the choices."""
    text = os.fspath(text)
    name, _, precision = text.partition(":")
    seps = [s for s in (os.sep, os.altsep) if s]
    if not name or text.endswith(".onnx") or any(s in name for s in seps):
        return None
    if precision and precision not in (*PRECISIONS, AUTO):
        raise ModelError(
            f"unknown precision {precision!r} in {text!r}; choose {', '.join((*PRECISIONS, AUTO))}"
        )
    return ModelSpec(name, precision or None)


@dataclass(frozen=True)
class ModelChoice:
    """The file a model reference resolved to, and why (for the user: which file runs)."""

    path: Path
    #: How it was chosen, e.g. "exported/default fastnet-relu:auto → int8 on cpu (…)"; empty
    #: when the reference named the file outright.
    reason: str = ""


def exported_dir() -> Path:
    if env := os.environ.get("CIFARKIT_EXPORTED"):
        return Path(env)
    here = Path.cwd() / "exported"
    if here.is_dir():
        return here
    # toolkit/cifarkit/backends/catalog.py → the checkout's root
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


def describe_exported(root: Path) -> str:
    """What ``root`` holds, for error messages: ``shipped models: a (fp32/int8), …``."""
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


def recommended_precision(folder: Path, provider: str = "cpu") -> tuple[str, str]:
    """(precision, why) for ``NAME:auto`` in ``folder`` on ``provider`` (module docstring).

    ``auto`` (the provider) counts as CUDA when CUDA looks usable here, as ``auto`` tries it
    first; otherwise it ends on a CPU provider."""
    if provider == "auto":
        from cifarkit.backends.providers import provider_problem

        provider = "cuda" if provider_problem("cuda") is None else "cpu"
    if provider not in CPU_PROVIDERS:
        return "fp32", f"fp32 on {provider}"
    card_path = folder / "card.json"
    if not (folder / "model.int8.onnx").is_file():
        return "fp32", f"fp32 on {provider}: {folder.name} has no model.int8.onnx"
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return "fp32", f"fp32 on {provider}: no readable {card_path} ({type(exc).__name__})"
    files = {f.get("precision"): f for f in card.get("files", [])}
    int8, fp32 = files.get("int8", {}), files.get("fp32", {})
    evaluation = card.get("evaluation") or {}
    bench = card.get("benchmark") or {}
    vnni = bool((card.get("quantization") or {}).get("cpu_vnni"))
    acc8, acc32 = int8.get("accuracy"), fp32.get("accuracy")
    ratio = (bench.get("ratio_vs_fp32") or {}).get("int8")
    if (acc8 is None or acc32 is None or evaluation.get("synthetic")
            or evaluation.get("limit") is not None or ratio is None):
        return "fp32", (f"fp32 on {provider}: the card has no full-test-split int8 accuracy "
                        "and speed ratio")
    loss = 100 * (acc32 - acc8)
    need = INT8_MIN_SPEEDUP[vnni]
    figures = (f"card: int8 {100 * acc8:.2f} % vs fp32 {100 * acc32:.2f} %, "
               f"{ratio:.2f}× fp32 at batch {bench.get('batch', '?')} on "
               f"{'a VNNI' if vnni else 'a non-VNNI'} CPU")
    if loss <= INT8_MAX_LOSS_POINTS + 1e-9 and ratio >= need:
        return "int8", f"int8 on {provider} ({figures})"
    return "fp32", (f"fp32 on {provider}: int8 misses the bar of ≤ {INT8_MAX_LOSS_POINTS} "
                    f"points lost and ≥ {need}× ({figures})")


def resolve_model(spec: str | os.PathLike[str] | None = None, provider: str = "cpu") -> Path:
    """The ``.onnx`` file a model reference names (see the module docstring)."""
    return choose_model(spec, provider).path


def choose_model(spec: str | os.PathLike[str] | None = None, provider: str = "cpu",
                 root: Path | None = None) -> ModelChoice:
    """``resolve_model`` with the reason for the choice. ``provider``: the cifarkit provider
    name the model will run on (only ``NAME:auto`` depends on it); ``root``: ``exported/``."""
    root = root or exported_dir()
    if spec is None:
        pointer = root / DEFAULT_FILE
        if not pointer.is_file():
            raise ModelError(
                f"no default model: {pointer} does not exist ({describe_exported(root)}). "
                "Pass --model PATH.onnx or --model NAME[:fp32|int8|fp16|auto]"
            )
        text = pointer.read_text(encoding="utf-8").strip()
        if not text:
            raise ModelError(f"{pointer} is empty; it should name a model, e.g. cnn-batchnorm")
        target = Path(text)
        if not target.is_absolute() and (root / target).exists():
            text = os.fspath(root / target)
        try:
            chosen = choose_model(text, provider, root)
        except ModelError as exc:
            raise ModelError(f"the default model ({pointer}: {text!r}) is missing: {exc}") from None
        why = f": {chosen.reason}" if chosen.reason else ""
        return ModelChoice(chosen.path, f"the default model ({pointer.name}: {text}){why}")

    path = Path(spec)
    if path.is_file():
        return ModelChoice(path)
    if path.is_dir():
        return ModelChoice(_from_folder(path))
    named = parse_spec(spec)
    if named is None:
        raise ModelError(f"model file {path} does not exist")
    return _choose_named(named, provider, root)


def _choose_named(spec: ModelSpec, provider: str, root: Path) -> ModelChoice:
    precision, reason = spec.precision or "fp32", ""
    if precision == AUTO:
        if not (root / spec.name).is_dir():
            raise ModelError(f"no model {str(spec)!r}: {root / spec.name} does not exist "
                             f"({describe_exported(root)})")
        precision, reason = recommended_precision(root / spec.name, provider)
    candidate = root / spec.name / f"model.{precision}.onnx"
    if candidate.is_file():
        return ModelChoice(candidate, reason)
    raise ModelError(
        f"no model {str(spec)!r}: {candidate} does not exist ({describe_exported(root)})"
    )
