"""Which model files a bench run measures: ``cifarkit bench [MODEL...]`` resolved to files
(``NAME[:PRECISION]`` read by ``backends.catalog.parse_spec``, as ``predict`` reads it), and
the quick sweep's choice of the model that gets the whole sweep."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cifarkit.bench.config import PRECISION_ORDER, QUICK_IMAGES, ModelFile
from cifarkit.errors import ModelError, UsageError

_FILE_RE = re.compile(r"^model\.(fp32|fp16|int8)\.onnx$")


def _precision_of(path: Path) -> str:
    m = _FILE_RE.match(path.name)
    if m:
        return m.group(1)
    try:
        import onnx

        proto = onnx.load(os.fspath(path), load_external_data=False)
        for entry in proto.metadata_props:
            if entry.key == "precision" and entry.value:
                return entry.value
    except Exception:
        pass
    for p in PRECISION_ORDER:
        if p in path.stem.lower():
            return p
    return "unknown"


def _name_of(path: Path) -> str:
    return path.parent.name if _FILE_RE.match(path.name) and path.parent.name else path.stem


def _files_of(spec: str, root: Path, provider: str) -> list[Path]:
    """The files one reference names: a folder's models, a file, ``NAME`` (every precision
    in ``exported/NAME``), or what ``predict`` would run for ``default`` / ``NAME:PRECISION``
    / ``NAME:auto``."""
    from cifarkit.backends.catalog import choose_model, describe_exported, parse_spec

    path = Path(spec)
    if path.is_dir():
        hits = sorted(path.glob("model.*.onnx")) or sorted(path.glob("*.onnx"))
        if not hits:
            raise ModelError(f"{path}: no .onnx file in this folder")
        return hits
    if path.is_file():
        return [path]
    named = parse_spec(spec)
    if named is None:
        raise ModelError(f"model file {spec} does not exist")
    if spec == "default" or named.precision is not None:
        return [choose_model(None if spec == "default" else spec, provider, root).path]
    if not (root / named.name).is_dir():
        raise ModelError(f"no model {spec!r} in {root} ({describe_exported(root)})")
    hits = [root / named.name / f"model.{p}.onnx" for p in PRECISION_ORDER]
    hits = [h for h in hits if h.is_file()]
    if not hits:
        raise ModelError(f"{root / named.name}: no model.<precision>.onnx files")
    return hits


def resolve_models(
    specs: Sequence[str], precisions: Sequence[str] | None = None, root: Path | None = None,
    provider: str = "cpu",
) -> list[ModelFile]:
    """The model files to benchmark (see ``BenchConfig.models``), filtered by
    ``precisions`` when given. Raises ``ModelError`` when nothing is left. ``default`` and
    ``NAME:auto`` resolve as ``predict`` does, for ``provider``."""
    from cifarkit.backends.catalog import exported_dir, list_exported

    for p in precisions or ():
        if p not in PRECISION_ORDER:
            raise UsageError(f"unknown precision {p!r}; choose from {', '.join(PRECISION_ORDER)}")
    root = root or exported_dir()
    if specs:
        files = [f for spec in specs for f in _files_of(spec, root, provider)]
    else:
        found = list_exported(root)
        if not found:
            raise ModelError(
                f"no exported models in {root} (each is exported/<name>/model.<precision>.onnx, "
                "written by `cifarkit export`); pass MODEL as an .onnx file, a folder or "
                "NAME[:precision]"
            )
        files = [root / name / f"model.{p}.onnx" for name, ps in found.items() for p in ps]
    out: list[ModelFile] = []
    seen: set[Path] = set()
    for f in files:
        key = f.resolve()
        if key in seen:
            continue
        seen.add(key)
        mf = ModelFile(_name_of(f), _precision_of(f), f, size_bytes=f.stat().st_size)
        if not precisions or mf.precision in precisions:
            out.append(mf)
    if not out:
        wanted = ", ".join(precisions or ())
        raise ModelError(
            f"none of the models has the precision(s) asked for ({wanted}); found "
            + ", ".join(sorted({f"{_name_of(f)}:{_precision_of(f)}" for f in files}))
        )
    _unique_names(out)
    order = {p: i for i, p in enumerate(PRECISION_ORDER)}
    out.sort(key=lambda m: (m.name, order.get(m.precision, 99), os.fspath(m.path)))
    return out


def _unique_names(models: list[ModelFile]) -> None:
    """Every result row is keyed by ``name:precision``: two files that would share one (two
    copies of ``cnn-batchnorm`` in different folders) are named by their folder instead, as
    the user wrote it relative to here, so their rows cannot mix."""
    by_label: dict[str, list[ModelFile]] = {}
    for m in models:
        by_label.setdefault(m.label, []).append(m)
    for group in by_label.values():
        if len(group) > 1:
            for m in group:
                where = m.path.parent if _FILE_RE.match(m.path.name) else m.path.with_suffix("")
                m.name = os.path.relpath(where)


def quick_focus(models: list[ModelFile], exported: Path | None, notes: list[str]) -> str | None:
    """The name of the default model (named by ``exported/default``) among ``models``, or
    None: every model then gets the lighter sweep, and a note says why."""
    from cifarkit.backends.catalog import DEFAULT_FILE, exported_dir, parse_spec

    pointer = (exported or exported_dir()) / DEFAULT_FILE
    try:
        ref = pointer.read_text(encoding="utf-8").strip()
    except OSError:
        ref = ""
    if not ref:
        notes.append(f"quick: no default model ({pointer} is missing or empty); every model "
                     "got the lighter sweep")
        return None
    as_path = Path(ref) if Path(ref).is_absolute() else pointer.parent / ref
    try:
        named = parse_spec(ref)
    except ModelError as exc:
        raise ModelError(f"{pointer}: {exc}") from None
    for mf in models:
        if (as_path.exists() and mf.path.resolve() == as_path.resolve()) or (
                named is not None and mf.name == named.name):
            return mf.name
    notes.append(f"quick: the default model {ref!r} ({pointer}) is not among those "
                 "benchmarked; every model got the lighter sweep")
    return None


def stratified_light(labels: np.ndarray, seed: int) -> np.ndarray | None:
    """The quick sweep's image subset for the models other than the default (None: all)."""
    from cifarkit.data.splits import stratified_subset

    if len(labels) <= QUICK_IMAGES:
        return None
    return stratified_subset(labels, QUICK_IMAGES, seed=seed)
