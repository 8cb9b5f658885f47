"""The seed notebook's figures beside the toolkit's: ``--recipe seed`` and ``--recipe default``.

    python benchmarks/seed_study.py --data ../shared/data/cifar10 \\
        --runs runs/study --out benchmarks/SEED_STUDY.md

Three parts, every run a ``cifarkit train`` run folder under ``--runs``:

1. ``seed-<arch>``: each notebook architecture (dense, cnn, cnn-dropout, cnn-batchnorm,
   vgg16-transfer) with ``--recipe seed`` (plain SGD 0.01, batch 32, 10 epochs, 25 %
   validation). Goal: within ±2.5 points of the notebook (a reproduction).
2. ``default-<arch>``: the same architectures with ``--recipe default``. Goal: clearly above
   the notebook: cnn-batchnorm ≥ 82 %, cnn ≥ 78 %, dense ≥ 55 % test accuracy.
3. ``batch-<B>``: the notebook's batch-size experiment (§3.2): a fresh baseline ``cnn``, plain
   SGD at 0.01, 25 % validation, ONE epoch at batch 1, 32, 100 and 1000; validation accuracy
   and seconds per epoch. (The notebook's batch-32 figure is epoch 1 of its 10-epoch cnn run.)

Resumable: a finished run (``run.json`` status ``complete``) is reused, an interrupted one
(``.backup/`` left by Ctrl-C or a kill) is resumed with ``train(..., resume=True)``, anything
else is started. Ctrl-C stops the study after writing the document; run the same command
again to go on. ``--json`` doubles as the study's archive: each finished run's ``run.json``
summary and history go in it, and a later study (a fresh clone has no ``runs/``) reuses an
entry whose run folder is absent instead of training it again (``--rerun NAME`` trains it
anyway; ``--no-archive`` reads run folders only). A run folder holding a different
configuration (another ``--limit``, ``--epochs-default``, …) stops the study before any
training, naming the folder.

The document is rewritten after every run, so a partial study is still an honest document:
rows not measured yet say so. Each run's ``curves.png`` is copied to ``--figures``
(default ``figures/seed-study/`` beside ``--out``), with two summary figures.

VGG16 needs Keras's ImageNet weights (``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``
in ``$KERAS_HOME/models``, a download, or ``--vgg-weights PATH``); without them its rows say
"not measured" and the rest of the study goes on. ``--skip-vgg`` leaves them out.

Cost on the 2-core development VM (shared, so upper bounds): the seed cnn took 168 s/epoch,
the default cnn-batchnorm about 240 s/epoch; from those, the whole study at 30 default
epochs is an estimated 8–10 hours (the default runs are most of it), the batch-size part
roughly half an hour (batch 1, 37,500 steps, is the slow one). ``--only NAME,...``
(architectures, run names such as ``default-cnn-batchnorm``, and/or ``batch-size``) trains
a subset now; the document always lists every
row.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402

from cifarkit._io import atomic_path, write_bytes, write_json, write_text  # noqa: E402
from cifarkit.errors import CifarkitError, ModelError  # noqa: E402

SCHEMA = "cifarkit.seed-study/2"  # 2: each run carries its run.json summary and history
#: run.json fields a run's archive entry keeps: every figure the document shows.
ARCHIVED_META = ("arch", "status", "test_accuracy", "test_loss", "val_accuracy", "best_epoch",
                 "epochs", "epoch_seconds", "train_seconds", "finished_utc", "data_source",
                 "data", "hyperparameters", "versions", "device", "weights", "feature_cache",
                 "params", "provenance", "median_epoch_seconds")
ARCHS = ("dense", "cnn", "cnn-dropout", "cnn-batchnorm", "vgg16-transfer")
VGG = "vgg16-transfer"
BATCH_ARCH = "cnn"  # the notebook's batch-size runs rebuilt its baseline cnn_model each time
NOTEBOOK_BATCH_SIZES = (1, 32, 100, 1000)
TOLERANCE = 2.5  # points: a seed run within this of the notebook reproduces it
CLEARLY_ABOVE = 5.0  # points: the study's reading of "clearly above" where no goal is given


@dataclass(frozen=True)
class Notebook:
    """A figure the notebook printed: accuracy in %, which split, seconds per epoch."""

    accuracy: float
    metric: str  # "val" | "test"
    seconds: float | None = None  # median epoch seconds in its logs (MacBook Pro 2016)
    note: str = ""


# From the notebook's own outputs (Keras logs and ``evaluate``), not from its prose.
NOTEBOOK: dict[str, Notebook] = {
    "dense": Notebook(49.76, "test", 97, "all 50,000 training images, no validation"),
    "cnn": Notebook(63.61, "val", 128.5, "last epoch of 10"),
    "cnn-dropout": Notebook(62.07, "val", 151, "last epoch of 10"),
    "cnn-batchnorm": Notebook(63.47, "val", 225.5, "last epoch of 10"),
    "vgg16-transfer": Notebook(55.33, "val", 729.5, "last epoch of 10, frozen base"),
}
NOTEBOOK_BATCH: dict[int, Notebook] = {
    1: Notebook(49.22, "val", 354),
    32: Notebook(31.30, "val", 129, "epoch 1 of the 10-epoch cnn run"),
    100: Notebook(20.75, "val", 141),
    1000: Notebook(11.70, "val", 124),
}
#: ``--recipe default`` goals, test accuracy in %. Others: notebook + CLEARLY_ABOVE.
DEFAULT_GOALS = {"dense": 55.0, "cnn": 78.0, "cnn-batchnorm": 82.0}


@dataclass(frozen=True)
class Spec:
    """One run of the study: what to train and what the notebook said about it."""

    name: str  # run folder under --runs
    part: str  # "seed" | "default" | "batch"
    arch: str
    recipe: str
    notebook: Notebook | None
    epochs: int | None = None
    batch_size: int | None = None
    val_split: float | None = None
    goal: float | None = None  # default part: minimum test accuracy in %
    goal_note: str = ""

    @property
    def overrides(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "batch_size": self.batch_size, "val_split": self.val_split}


def build_specs(epochs_default: int | None, batch_sizes: list[int]) -> list[Spec]:
    specs = []
    for arch in ARCHS:
        nb = NOTEBOOK[arch]
        # The notebook fitted its dense model on all 50,000 images and reported test accuracy.
        specs.append(Spec(f"seed-{arch}", "seed", arch, "seed", nb,
                          val_split=0.0 if arch == "dense" else None))
    for arch in ARCHS:
        nb = NOTEBOOK[arch]
        if arch in DEFAULT_GOALS:
            goal, note = DEFAULT_GOALS[arch], "the requirement's goal"
        else:
            goal = nb.accuracy + CLEARLY_ABOVE
            note = f"no goal given: notebook + {CLEARLY_ABOVE:g} points"
        specs.append(Spec(f"default-{arch}", "default", arch, "default", nb,
                          epochs=epochs_default, goal=goal, goal_note=note))
    # The notebook's four batch sizes always have a row; extra ones are added beside them.
    for b in sorted({*NOTEBOOK_BATCH_SIZES, *batch_sizes}):
        specs.append(Spec(f"batch-{b}", "batch", BATCH_ARCH, "seed", NOTEBOOK_BATCH.get(b),
                          epochs=1, batch_size=b))
    return specs


def selected(spec: Spec, only: set[str] | None, skip_vgg: bool, batch_sizes: list[int]) -> bool:
    """Whether this invocation trains ``spec`` (the document lists every spec regardless)."""
    if skip_vgg and spec.arch == VGG:
        return False
    if spec.part == "batch" and spec.batch_size not in batch_sizes:
        return False
    if only is None:
        return True
    return spec.name in only or ("batch-size" if spec.part == "batch" else spec.arch) in only


# --- run folders -------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def expected_hyperparameters(spec: Spec) -> dict[str, Any]:
    from cifarkit.train import get_recipe

    return get_recipe(spec.recipe, **spec.overrides).to_dict()


def run_state(run_dir: Path) -> str:
    """``complete``, ``interrupted`` (resumable), or ``absent``."""
    meta = _read_json(run_dir / "run.json")
    if meta and meta.get("status") == "complete":
        return "complete"
    if (run_dir / ".backup" / "run-config.json").is_file():
        return "interrupted"
    return "absent"


def _differences(have: dict[str, Any] | None, want: dict[str, Any]) -> str:
    """Hyper-parameters that differ, as ``key have→want``; keys only one side has are ignored
    (a field added to ``Recipe`` later, at its neutral default, must not orphan old runs)."""
    have = have or {}
    return ", ".join(f"{k} {have[k]!r}→{v!r}" for k, v in want.items()
                     if k in have and have[k] != v)


def conflict(spec: Spec, run_dir: Path, limit: int | None, weights: str | None) -> str | None:
    """Why ``run_dir`` cannot be reused or resumed for ``spec`` (``None``: it can)."""
    state = run_state(run_dir)
    want = expected_hyperparameters(spec)
    if state == "complete":
        meta = _read_json(run_dir / "run.json") or {}
        have_limit = (meta.get("data") or {}).get("limit")
        if meta.get("arch") != spec.arch:
            return f"holds a {meta.get('arch')} run, not {spec.arch}"
        if diff := _differences(meta.get("hyperparameters"), want):
            return f"was trained with other hyper-parameters ({diff})"
        if have_limit != limit:
            return f"was trained with --limit {have_limit}, this study uses --limit {limit}"
        if spec.arch == VGG and weights is not None and meta.get("weights") != weights:
            return f"used VGG16 weights {meta.get('weights')}, not {weights}"
    elif state == "interrupted":
        saved = _read_json(run_dir / ".backup" / "run-config.json") or {}
        if saved.get("arch") != spec.arch:
            return f"holds an interrupted {saved.get('arch')} run, not {spec.arch}"
        from cifarkit.train import recipe_from_dict

        # train(resume=True) continues the saved recipe, fields added since at their
        # defaults: that is what the run will be, so that is what must match.
        try:
            resumed = recipe_from_dict(saved.get("recipe") or {}).to_dict()
        except CifarkitError as exc:
            return f"holds an interrupted run whose recipe cannot be read ({exc})"
        if diff := _differences(resumed, want):
            return f"holds an interrupted run with other hyper-parameters ({diff})"
        study = _read_json(run_dir / "study.json") or {}
        if "limit" in study and study["limit"] != limit:
            return (f"holds an interrupted run with --limit {study['limit']}, this study "
                    f"uses --limit {limit}")
    return None


def cli_command(spec: Spec, data: str | None, run_dir: Path, limit: int | None,
                weights: str | None) -> str:
    """The ``cifarkit train`` command equivalent to this run."""
    parts = ["cifarkit", "train", spec.arch, "--recipe", spec.recipe]
    for flag, value in (("--epochs", spec.epochs), ("--batch-size", spec.batch_size),
                        ("--val-split", spec.val_split)):
        if value is not None:
            parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if spec.arch == VGG and weights:
        parts += ["--weights", weights]
    if data:
        parts += ["--data", data]
    if limit:
        parts += ["--limit", str(limit)]
    parts += ["--out", os.fspath(run_dir)]
    return shlex.join(parts)


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def host() -> dict[str, Any]:
    from cifarkit.measure.machine import cpu_name

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def _utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_progress(name: str) -> Any:
    """``train``'s progress callback: a line per epoch on stderr."""

    def progress(event: str, info: dict[str, Any]) -> None:
        if event == "data":
            _log(f"[{name}] data {info['source']} ({info['kind']}): {info['train']} train, "
                 f"{info['val']} val, {info['test']} test")
        elif event == "start" and info.get("resumed_epochs"):
            _log(f"[{name}] resuming after epoch {info['resumed_epochs']}")
        elif event == "features_done":
            _log(f"[{name}] VGG16 features of {info['images']} images: {info['seconds']:.0f} s")
        elif event == "epoch_end":
            logs = info["logs"]
            val = f"  val_acc {logs['val_accuracy']:.4f}" if "val_accuracy" in logs else ""
            _log(f"[{name}] epoch {info['epoch']}/{info['epochs']}  loss {logs['loss']:.4f}"
                 f"  acc {logs['accuracy']:.4f}{val}  ({info['seconds']:.0f} s)")
        elif event == "done":
            _log(f"[{name}] test accuracy {info['test_accuracy']:.4f}")

    return progress


class Interrupted(Exception):
    pass


def run_one(spec: Spec, run_dir: Path, args: argparse.Namespace) -> str:
    """Train, resume or reuse ``spec``'s run; returns what happened (for the log)."""
    from cifarkit.train import train

    state = run_state(run_dir)
    if state == "complete":
        return "reused"
    resume = state == "interrupted"
    study_path = run_dir / "study.json"
    study = _read_json(study_path) if resume else None
    study = study or {"schema": SCHEMA, "name": spec.name, "part": spec.part, "arch": spec.arch,
                      "recipe": spec.recipe, "overrides": spec.overrides, "limit": args.limit,
                      "data": args.data, "sessions": []}
    session: dict[str, Any] = {"started_utc": _utc(), **host(), "load_before": _load_average(),
                               "resumed": resume}
    _log(f"[{spec.name}] {'resuming' if resume else 'training'}: "
         f"{cli_command(spec, args.data, run_dir, args.limit, args.vgg_weights)}")
    weights = args.vgg_weights if spec.arch == VGG else None
    try:
        result = train(spec.arch, spec.recipe, data=args.data, limit=args.limit,
                       seed=args.seed, out=run_dir, resume=resume, overwrite=not resume,
                       weights=weights, progress=make_progress(spec.name), **spec.overrides)
    except KeyboardInterrupt:
        # Outside model.fit (loading data, evaluating): the last finished epoch's backup stays.
        session.update(outcome="interrupted", finished_utc=_utc(), load_after=_load_average())
        if run_dir.is_dir():
            study["sessions"].append(session)
            write_json(study_path, study)
        raise Interrupted(spec.name) from None
    session.update(finished_utc=_utc(), load_after=_load_average(), device=result.device,
                   epochs_done=len(result.epoch_seconds),
                   outcome="interrupted" if result.interrupted else "complete")
    study["sessions"].append(session)
    write_json(study_path, study)
    if result.interrupted:
        raise Interrupted(spec.name)
    return "resumed" if resume else "trained"


# --- the archive: finished runs kept in the committed JSON ---------------------------------


def archive_path(args: argparse.Namespace) -> Path | None:
    if args.no_archive:
        return None
    path = args.archive or args.json
    return Path(path) if path else None


def archived_mismatch(spec: Spec, entry: dict[str, Any]) -> str | None:
    """Why a complete archive entry cannot stand in for ``spec``'s run (``None``: it can)."""
    meta = entry.get("meta") or {}
    if not meta:
        return "no run.json summary (a schema-1 entry)"
    if (entry.get("arch"), entry.get("recipe")) != (spec.arch, spec.recipe):
        return f"is {entry.get('arch')} --recipe {entry.get('recipe')}"
    if entry.get("overrides") != spec.overrides:
        return f"has overrides {entry.get('overrides')}, this study {spec.overrides}"
    if diff := _differences(meta.get("hyperparameters"), expected_hyperparameters(spec)):
        return f"was trained with other hyper-parameters ({diff})"
    return None


def load_archive(args: argparse.Namespace, specs: list[Spec]) -> dict[str, dict[str, Any]]:
    """Finished runs recorded by an earlier study in ``--archive`` (default: ``--json``) whose
    run folders are not here: a fresh clone has no ``runs/``, and hours of CPU training are
    not redone to reprint their figures. ``--rerun NAME`` sets one aside to train it again.
    A run folder, finished or interrupted, always wins over its archived entry."""
    path = archive_path(args)
    doc = _read_json(path) if path is not None else None
    if not doc:
        return {}
    if doc.get("schema") != SCHEMA:
        _log(f"seed study: {path} is {doc.get('schema')!r}, not {SCHEMA}: not reused")
        return {}
    if (doc.get("limit"), doc.get("seed")) != (args.limit, args.seed):
        _log(f"seed study: {path} was written with --limit {doc.get('limit')} --seed "
             f"{doc.get('seed')}, this study uses --limit {args.limit} --seed {args.seed}: "
             "not reused")
        return {}
    by_name = {s.name: s for s in specs}
    out = {}
    for entry in doc.get("runs") or []:
        spec = by_name.get(entry.get("name", ""))
        if (spec is None or spec.name in args.rerun_set or entry.get("status") != "complete"
                or run_state(Path(args.runs) / spec.name) != "absent"):
            continue
        if why := archived_mismatch(spec, entry):
            _log(f"[{spec.name}] archived run in {path} not reused: {why}")
            continue
        out[spec.name] = entry
    return out


# --- the document ------------------------------------------------------------------------


@dataclass
class Row:
    spec: Spec
    run_dir: Path
    command: str
    status: str  # complete | interrupted | not run yet | skipped | not measured
    detail: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    study: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    figure: Path | None = None
    archived: bool = False  # figures from the --archive JSON: the run folder is not here

    @property
    def done(self) -> bool:
        return self.status == "complete"

    def pct(self, key: str) -> float | None:
        v = self.meta.get(key)
        return None if v is None else 100.0 * float(v)

    @property
    def test(self) -> float | None:
        return self.pct("test_accuracy")

    @property
    def val(self) -> float | None:
        return self.pct("val_accuracy")

    @property
    def compared(self) -> float | None:
        """The measured figure on the notebook's split (seed and batch parts)."""
        nb = self.spec.notebook
        if nb is None:
            return None
        return self.test if nb.metric == "test" else self.val

    @property
    def median_seconds(self) -> float | None:
        s = self.meta.get("epoch_seconds") or []
        if s:
            return float(statistics.median(s))
        # Archive entries converted from schema 1 kept only the median.
        m = self.meta.get("median_epoch_seconds")
        return None if m is None else float(m)


def collect(spec: Spec, args: argparse.Namespace, failures: dict[str, str],
            archive: dict[str, dict[str, Any]]) -> Row:
    run_dir = Path(args.runs) / spec.name
    row = Row(spec, run_dir, cli_command(spec, args.data, run_dir, args.limit, args.vgg_weights),
              "not run yet")
    row.study = _read_json(run_dir / "study.json") or {}
    state = run_state(run_dir)
    if spec.name in archive:  # only runs whose folder is absent (load_archive)
        entry = archive[spec.name]
        row.status, row.archived = "complete", True
        row.meta, row.history = entry.get("meta") or {}, entry.get("history") or {}
        row.study = {"sessions": entry.get("sessions") or []}
    elif state == "complete":
        row.status = "complete"
        row.meta = _read_json(run_dir / "run.json") or {}
        row.history = _read_json(run_dir / "history.json") or {}
    elif state == "interrupted":
        saved = _read_json(run_dir / ".backup" / "history.json") or {}
        done = len(saved.get("epoch_seconds", []))
        total = (_read_json(run_dir / ".backup" / "run-config.json") or {}).get(
            "recipe", {}).get("epochs", "?")
        row.status = "interrupted"
        row.detail = f"interrupted after {done}/{total} epochs; rerun the study to resume"
    elif spec.name in failures:
        row.status, row.detail = "not measured", failures[spec.name]
    elif args.skip_vgg and spec.arch == VGG:
        row.status, row.detail = "skipped", "skipped (--skip-vgg)"
    return row


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f} %"


def _delta(v: float | None, ref: float | None) -> str:
    return "—" if v is None or ref is None else f"{v - ref:+.2f}"


def _secs(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}"


def _yes(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def _curves(row: Row, doc_dir: Path) -> str:
    if row.figure is None:
        return "—"
    return f"[curves]({Path(os.path.relpath(row.figure, doc_dir)).as_posix()})"


def _pending(row: Row) -> str:
    if row.status == "not measured":
        return "not measured (see below)"
    return {"not run yet": "not run yet", "skipped": "skipped (--skip-vgg)"}.get(
        row.status, row.detail or row.status)


def _not_measured(rows: list[Row]) -> list[str]:
    """The full reasons, below a table, for rows whose cell says "not measured"."""
    notes = [f"- `{r.spec.name}` {r.detail}" for r in rows if r.status == "not measured"]
    return ["", *notes] if notes else []


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


def seed_table(rows: list[Row], doc_dir: Path) -> list[str]:
    body = []
    for r in rows:
        nb = r.spec.notebook
        assert nb is not None
        head = [f"`{r.spec.arch}`", f"{nb.accuracy:.2f} % {nb.metric}"]
        if not r.done:
            body.append(head + [_pending(r)] + ["—"] * 6 + [f"`{r.command}`"])
            continue
        ok = abs(r.compared - nb.accuracy) <= TOLERANCE if r.compared is not None else None
        body.append(head + [_pct(r.test), _pct(r.val), _delta(r.compared, nb.accuracy),
                            _yes(ok), f"{_secs(r.median_seconds)} ({_secs(nb.seconds)})",
                            str(r.meta.get("epochs", "—")), _curves(r, doc_dir),
                            f"`{r.command}`"])
    return _table(["architecture", "notebook", "measured test", "measured val", "Δ (points)",
                   f"within ±{TOLERANCE:g}?", "s/epoch here (notebook)", "epochs", "curves",
                   "command"], body)


def default_table(rows: list[Row], doc_dir: Path) -> list[str]:
    body = []
    for r in rows:
        nb = r.spec.notebook
        assert nb is not None and r.spec.goal is not None
        head = [f"`{r.spec.arch}`", f"{nb.accuracy:.2f} % {nb.metric}",
                f"≥ {r.spec.goal:.2f} % test ({r.spec.goal_note})"]
        if not r.done:
            body.append(head + [_pending(r)] + ["—"] * 6 + [f"`{r.command}`"])
            continue
        ok = r.test >= r.spec.goal if r.test is not None else None
        best = r.meta.get("best_epoch")
        val = _pct(r.val) + (f" (epoch {best})" if best and r.val is not None else "")
        body.append(head + [_pct(r.test), val, _delta(r.test, nb.accuracy), _yes(ok),
                            _secs(r.median_seconds), str(r.meta.get("epochs", "—")),
                            _curves(r, doc_dir), f"`{r.command}`"])
    return _table(["architecture", "notebook", "goal", "measured test", "measured val (best)",
                   "Δ test vs notebook", "goal met?", "s/epoch here", "epochs", "curves",
                   "command"], body)


def batch_table(rows: list[Row], doc_dir: Path) -> list[str]:
    body = []
    for r in rows:
        nb = r.spec.notebook
        head = [str(r.spec.batch_size), _pct(nb.accuracy if nb else None),
                _secs(nb.seconds if nb else None)]
        if not r.done:
            body.append(head + [_pending(r)] + ["—"] * 6 + [f"`{r.command}`"])
            continue
        ok = (abs(r.val - nb.accuracy) <= TOLERANCE
              if nb is not None and r.val is not None else None)
        steps = (r.meta.get("data") or {}).get("train")
        steps_s = "—" if not steps else str(-(-int(steps) // int(r.spec.batch_size or 1)))
        body.append(head + [_pct(r.val), _pct(r.test),
                            _delta(r.val, nb.accuracy if nb else None), _yes(ok),
                            _secs(r.median_seconds), steps_s, _curves(r, doc_dir),
                            f"`{r.command}`"])
    return _table(["batch", "notebook val", "notebook s/epoch", "measured val", "measured test",
                   "Δ val (points)", f"within ±{TOLERANCE:g}?", "s/epoch here", "steps",
                   "curves", "command"], body)


def _data_difference(rows: list[Row]) -> list[str]:
    kinds = {(r.meta.get("data") or {}).get("kind") for r in rows if r.done}
    if "folders" not in kinds:
        return []
    return ["- Data: an image-folder tree, not the notebook's pickled batches (Keras's "
            "download). Re-encoded images change pixels: `../shared/data/cifar10` is JPEG "
            "quality 75, and its README expects accuracies to differ by about a point."]


# Before this time, ``--resume`` restarted a run's shuffle/augmentation stream (commit 1f1c38f
# made each epoch's draws a function of (seed, epoch)).
RESUME_STREAM_FIX_UTC = "2026-11-28T17:30:00+00:00"


def _resume_replays(rows: list[Row]) -> list[str]:
    """Runs resumed by a cifarkit that restarted the data stream: say so, they are not clean."""
    hit = []
    for r in rows:
        early = [s for s in r.study.get("sessions") or []
                 if s.get("resumed") and s.get("started_utc", "9") < RESUME_STREAM_FIX_UTC]
        if r.done and early:
            # No count: sessions ended by a kill were not recorded before SIGTERM was handled.
            hit.append(f"`{r.spec.name}`")
    if not hit:
        return []
    # Observed in this project's study (runs/study, 2026-11-28); said only when that run is in.
    seen = (" (default-cnn: epochs 28–30 repeat 25–27, visible as training accuracy 4 points "
            "above its trend; validation accuracy keeps its trend)"
            if "`default-cnn`" in hit else "")
    return ["- Resumed runs: " + ", ".join(hit) + (" was" if len(hit) == 1 else " were")
            + " resumed by a cifarkit from before "
            f"{RESUME_STREAM_FIX_UTC[:16].replace('T', ' ')} UTC, which restarted the shuffle "
            "and augmentation stream on resume: each resumed session's epochs drew the batches "
            "of epochs 1, 2, … again, so a run resumed twice repeats the batches of its "
            f"previous session's epochs{seen}. Resumed runs now continue the uninterrupted "
            "run's stream."]


def _runs_section(rows: list[Row]) -> list[str]:
    body = []
    for r in rows:
        if not (r.done or r.status == "interrupted"):
            continue
        sessions = r.study.get("sessions") or []
        where = "; ".join(
            f"{s.get('cpu')} ×{s.get('cores')}, {s.get('device', '?')}, load "
            f"{s.get('load_before')}→{s.get('load_after')}"
            + (" (resumed)" if s.get("resumed") else "")
            for s in sessions) or "not recorded (trained outside this script)"
        versions = r.meta.get("versions") or {}
        vers = ", ".join(f"{k} {v}" for k, v in versions.items() if k != "python") or "—"
        status = "complete (archived)" if r.archived else r.status
        body.append([f"`{r.spec.name}`", status, r.meta.get("finished_utc", "—"),
                     r.meta.get("data_source", "—"), _secs(r.meta.get("train_seconds")),
                     where, vers])
    if not body:
        return ["No run finished yet."]
    table = _table(["run", "status", "finished (UTC)", "data", "train s", "machine per session",
                    "versions"], body)
    # CPU names alike ("AMD EPYC") hide different VMs; their platform strings tell them apart.
    machines: dict[str, list[str]] = {}
    for r in rows:
        if r.done or r.status == "interrupted":
            for plat in dict.fromkeys(s.get("platform") for s in r.study.get("sessions") or []
                                      if s.get("platform")):
                machines.setdefault(plat, []).append(f"`{r.spec.name}`")
    if len(machines) > 1:
        table += ["", f"Sessions ran on {len(machines)} machines, told apart by platform: "
                  + "; ".join(f"`{p}`: {', '.join(names)}" for p, names in machines.items())
                  + ". Seconds per epoch compare only within one machine."]
    if any(r.archived for r in rows):
        table += ["", "*archived*: the run folder is not on the machine that wrote this document;"
                  " its figures are the ones the study recorded in its JSON when the run "
                  "finished (machine and sessions as listed)."]
    return table


def summary_figures(rows: list[Row], fig_dir: Path) -> dict[str, Path]:
    """Bars: notebook vs seed vs default per architecture; batch size vs val accuracy/time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out: dict[str, Path] = {}
    by = {r.spec.name: r for r in rows}
    archs = [a for a in ARCHS if f"seed-{a}" in by]
    if any(by[f"{p}-{a}"].done for a in archs for p in ("seed", "default")):
        fig, ax = plt.subplots(figsize=(9, 4))
        x = np.arange(len(archs))
        series = [("notebook", [NOTEBOOK[a].accuracy for a in archs]),
                  ("--recipe seed", [by[f"seed-{a}"].compared for a in archs]),
                  ("--recipe default (test)", [by[f"default-{a}"].test for a in archs])]
        for i, (label, vals) in enumerate(series):
            ax.bar(x + (i - 1) * 0.27, [np.nan if v is None else v for v in vals], 0.27,
                   label=label)
        ax.set_xticks(x, archs)
        ax.set_ylabel("accuracy (%)")
        ax.set_title("Notebook vs toolkit (seed: the notebook's split; default: test)")
        ax.grid(axis="y", alpha=0.3)
        ax.set_ylim(0, 100)
        ax.legend(loc="upper left", ncols=3)  # above the bars, clear of the VGG16 column
        path = fig_dir / "accuracy-by-architecture.png"
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        plt.close(fig)
        out["accuracy"] = path
    batch = [r for r in rows if r.spec.part == "batch"]
    if any(r.done for r in batch):
        fig, (ax_acc, ax_s) = plt.subplots(1, 2, figsize=(11, 4))
        labels = [str(r.spec.batch_size) for r in batch]
        x = np.arange(len(batch))
        nb = [r.spec.notebook.accuracy if r.spec.notebook else np.nan for r in batch]
        me = [np.nan if r.val is None else r.val for r in batch]
        ax_acc.bar(x - 0.2, nb, 0.4, label="notebook")
        ax_acc.bar(x + 0.2, me, 0.4, label="measured")
        ax_acc.set_title("validation accuracy after one epoch")
        ax_acc.set_ylabel("%")
        nbs = [r.spec.notebook.seconds if r.spec.notebook and r.spec.notebook.seconds
               else np.nan for r in batch]
        mes = [np.nan if r.median_seconds is None else r.median_seconds for r in batch]
        ax_s.bar(x - 0.2, nbs, 0.4, label="notebook (MacBook Pro 2016)")
        ax_s.bar(x + 0.2, mes, 0.4, label="measured (this study's machine)")
        ax_s.set_title("seconds per epoch")
        for ax in (ax_acc, ax_s):
            ax.set_xticks(x, labels)
            ax.set_xlabel("batch size")
            ax.grid(axis="y", alpha=0.3)
            ax.legend()
        path = fig_dir / "batch-size.png"
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
        plt.close(fig)
        out["batch"] = path
    return out


def render(rows: list[Row], args: argparse.Namespace, command: str, summary: dict[str, Path],
           doc_dir: Path) -> str:
    parts = {p: [r for r in rows if r.spec.part == p] for p in ("seed", "default", "batch")}
    done = sum(r.done for r in rows)
    me = host()
    figs = {k: Path(os.path.relpath(v, doc_dir)).as_posix() for k, v in summary.items()}
    L = ["# Seed study: the notebook's figures beside the toolkit's", ""]
    L += [
        "Every architecture of the seed notebook trained with `--recipe seed` (the notebook's "
        f"own training: a reproduction, goal ±{TOLERANCE:g} points) and with `--recipe default`"
        " (the toolkit's: goal clearly above the notebook), plus the notebook's batch-size "
        "experiment. Generated by `benchmarks/seed_study.py`; every number below is read from "
        "the run folders' `run.json` or, for runs finished on an earlier machine whose folder "
        "is not here (*archived* in [Runs](#runs)), from the summary of it the study kept in "
        "its JSON.",
        "",
        f"- **Command**: `{command}`",
        f"- **Written**: {_utc()} on {me['cpu']} ({me['cores']} logical cores), "
        f"{me['platform']}, Python {me['python']}; the machine each run trained on is in "
        "[Runs](#runs) (a resumed study may span machines).",
        f"- **Data**: `{args.data or '$CIFARKIT_DATA / Keras cache'}`"
        + (f", **`--limit {args.limit}` per split: a smoke run, not comparable to the "
           "notebook**" if args.limit else ", full CIFAR-10 (50,000 train / 10,000 test)")
        + f"; seed {args.seed}.",
        f"- **Progress**: {done} of {len(rows)} runs complete"
        + ("." if done == len(rows) else
           "; rows without numbers say why. Run the command again to continue."),
        "",
        "Seconds per epoch are medians over the run's epochs, measured on the machine named in "
        "[Runs](#runs) (load averages recorded: a shared machine inflates them); the notebook's "
        "are from its Keras logs on a MacBook Pro 2016. Not comparable across machines.",
        "",
        "## 1. Notebook recipe (`--recipe seed`): a reproduction",
        "",
        "Plain SGD, learning rate 0.01, batch 32, 10 epochs, categorical cross-entropy, pixels/255,"
        " no augmentation, 25 % validation. Δ is measured − notebook on the notebook's split "
        "(validation, last epoch; test for dense).",
        "",
        *seed_table(parts["seed"], doc_dir),
        *_not_measured(parts["seed"]),
        "",
        "## 2. Toolkit recipe (`--recipe default`)",
        "",
        "Nesterov SGD (momentum 0.9), batch 128, warm-up to 0.05 then cosine decay, decoupled "
        "weight decay, label smoothing 0.1, flips and 4-pixel translations, 10 % validation, "
        "best validation epoch kept, BatchNorm statistics recomputed on 5,000 clean training "
        "images before each validation (models with BatchNorm)"
        + (f", {args.epochs_default} epochs (`--epochs-default`)" if args.epochs_default
           else ", 30 epochs")
        + ". Goals are on test accuracy, measured once after training.",
        "",
        *default_table(parts["default"], doc_dir),
        *_not_measured(parts["default"]),
        "",
    ]
    if "accuracy" in figs:
        L += [f"![notebook vs seed vs default]({figs['accuracy']})", ""]
    L += [
        "## 3. Batch size after one epoch (notebook §3.2)",
        "",
        f"The notebook's setup: a freshly built baseline `{BATCH_ARCH}`, plain SGD at 0.01, "
        "25 % validation, one epoch per batch size; here `--recipe seed --epochs 1 "
        "--batch-size B`. The notebook's batch-32 figure is epoch 1 of its 10-epoch cnn run.",
        "",
        *batch_table(parts["batch"], doc_dir),
        "",
    ]
    if "batch" in figs:
        L += [f"![batch size: accuracy and time]({figs['batch']})", ""]
    L += [
        "## How the runs differ from the notebook",
        "",
        "- Validation: a stratified, seeded 25 % split; the notebook's `validation_split=0.25` "
        "took the last 12,500 training images unshuffled.",
        "- dense: trained on all 50,000 images without validation (`--val-split 0`), as the "
        "notebook did; its figure is test accuracy.",
        "- vgg16-transfer: the toolkit feeds the frozen ImageNet base what it was trained on "
        "(BGR, ImageNet mean subtracted from 0–255 pixels); the notebook fed 0–1 RGB pixels. "
        "The head trains on features computed once (same numbers, fewer seconds per epoch); "
        "the one-off feature pass is in `run.json` (`feature_cache.seconds`), not in s/epoch.",
        "- One seed per run: after a single epoch (part 3) accuracies move by several points "
        "between seeds, so a miss there is weaker evidence than a miss after 10 epochs.",
        "- Keras 3 defaults (Glorot-uniform kernels, zero biases) as in the notebook's Keras 2.",
        *_data_difference(rows),
        *_resume_replays(rows),
        "",
        "## Runs",
        "",
        f"Run folders under `{args.runs}`. Each `study.json` lists the sessions that trained it "
        "(CPU, cores, device, load average before → after).",
        "",
        *_runs_section(rows),
        "",
        "## Reproduce",
        "",
        "```",
        command,
        "```",
        "",
        "Interrupting (Ctrl-C, a kill) keeps the finished epochs; the same command resumes the "
        "interrupted run and reuses the finished ones. `--only dense,cnn,batch-size` trains a "
        "subset now; the document always lists every row.",
        "",
    ]
    return "\n".join(L)


def write_document(specs: list[Spec], args: argparse.Namespace, command: str,
                   failures: dict[str, str], archive: dict[str, dict[str, Any]]) -> list[Row]:
    out = Path(args.out)
    fig_dir = Path(args.figures) if args.figures else out.parent / "figures" / "seed-study"
    rows = [collect(s, args, failures, archive) for s in specs]
    for r in rows:
        curves = r.run_dir / "curves.png"
        if r.done and curves.is_file():
            r.figure = fig_dir / f"{r.spec.name}.png"
            write_bytes(r.figure, curves.read_bytes())
        elif r.archived and (fig_dir / f"{r.spec.name}.png").is_file():
            r.figure = fig_dir / f"{r.spec.name}.png"  # copied when the run finished
    summary = summary_figures(rows, fig_dir)
    write_text(out, render(rows, args, command, summary, out.parent))
    if args.json:
        write_json(args.json, {
            "schema": SCHEMA, "command": command, "written_utc": _utc(), "host": host(),
            "data": args.data, "limit": args.limit, "seed": args.seed,
            "runs": [{"name": r.spec.name, "part": r.spec.part, "arch": r.spec.arch,
                      "recipe": r.spec.recipe, "overrides": r.spec.overrides,
                      "status": r.status, "detail": r.detail,
                      "notebook": None if r.spec.notebook is None else vars(r.spec.notebook),
                      "goal_test_pct": r.spec.goal, "test_pct": r.test, "val_pct": r.val,
                      "median_epoch_seconds": r.median_seconds, "epochs": r.meta.get("epochs"),
                      "run_dir": os.fspath(r.run_dir), "command": r.command,
                      "sessions": r.study.get("sessions", []),
                      "meta": {k: r.meta[k] for k in ARCHIVED_META if k in r.meta},
                      "history": r.history} for r in rows],
        })
    return rows


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Train the notebook's architectures with the seed and default recipes and "
                    "write SEED_STUDY.md (resumable).")
    p.add_argument("--data", help="CIFAR-10 source (default: $CIFARKIT_DATA or Keras's cache)")
    p.add_argument("--runs", default="runs/study", help="run folders (default runs/study)")
    p.add_argument("--out", default="benchmarks/SEED_STUDY.md", help="the Markdown document")
    p.add_argument("--figures", help="where curves go (default: figures/seed-study/ beside --out)")
    p.add_argument("--json", help="also write the table as JSON here (with each finished "
                                  "run's summary: the archive a later study reuses)")
    p.add_argument("--archive", help="reuse finished runs recorded in this study JSON when "
                                     "their run folder is absent (default: the --json file)")
    p.add_argument("--no-archive", action="store_true",
                   help="reuse run folders only, not the --archive/--json records")
    p.add_argument("--rerun", default="",
                   help="run names to train again although archived (comma-separated; implies "
                        "training them now; a finished run folder is still reused)")
    p.add_argument("--only", help="train only these now: architectures, run names "
                                  "(seed-cnn, default-dense, batch-1000, ...) and/or "
                                  "'batch-size', comma-separated (the document lists every row)")
    p.add_argument("--limit", type=int, help="stratified subset of N images per split (smoke)")
    p.add_argument("--epochs-default", type=int,
                   help="epochs for the --recipe default runs (default: the recipe's 30)")
    p.add_argument("--batch-sizes", default=",".join(map(str, NOTEBOOK_BATCH_SIZES)),
                   help="batch sizes of part 3 to train now (default 1,32,100,1000, the "
                        "notebook's, which the document always lists; others are added)")
    p.add_argument("--vgg-weights", help="VGG16 ImageNet weights .h5 (default: Keras's cache)")
    p.add_argument("--skip-vgg", action="store_true", help="leave the VGG16 rows out")
    p.add_argument("--seed", type=int, default=0, help="seed for splits and initialisation")
    args = p.parse_args(argv)
    try:
        sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        p.error(f"--batch-sizes: comma-separated integers, got {args.batch_sizes!r}")
    if not sizes or min(sizes) < 1:
        p.error("--batch-sizes: at least one, each ≥ 1")
    args.batch_size_list = sizes
    names = {s.name for s in build_specs(None, sizes)}
    if args.only:
        args.only_set = {n.strip() for n in args.only.split(",") if n.strip()}
        unknown = args.only_set - {*ARCHS, "batch-size", *names}
        if unknown:
            p.error(f"--only: unknown {', '.join(sorted(unknown))}; choose from "
                    f"{', '.join([*ARCHS, 'batch-size'])} or a run name "
                    f"({', '.join(sorted(names))})")
    else:
        args.only_set = None
    args.rerun_set = {n.strip() for n in args.rerun.split(",") if n.strip()}
    if unknown := args.rerun_set - names:
        p.error(f"--rerun: unknown run {', '.join(sorted(unknown))}; run names are "
                f"{', '.join(sorted(names))}")
    if args.limit is not None and args.limit < 10:
        p.error("--limit must be at least 10 (one image per class)")
    if args.epochs_default is not None and args.epochs_default < 1:
        p.error("--epochs-default must be at least 1")
    if args.vgg_weights and not Path(args.vgg_weights).is_file():
        p.error(f"--vgg-weights {args.vgg_weights}: no such file")
    return args


def _without_only(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--only":
            skip = True
        elif not a.startswith("--only="):
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    # The document names the whole study's command: a study is run piecewise with --only,
    # and every piece writes the same document.
    command = shlex.join(["python", "benchmarks/seed_study.py", *_without_only(argv)])
    specs = build_specs(args.epochs_default, args.batch_size_list)
    runs = Path(args.runs)
    archive = load_archive(args, specs)
    todo = [s for s in specs
            if (selected(s, args.only_set, args.skip_vgg, args.batch_size_list)
                or s.name in args.rerun_set)]
    for s in todo:
        if s.name in archive:
            _log(f"[{s.name}] reused (archived in {archive_path(args)})")
    todo = [s for s in todo if s.name not in archive]

    # Refuse before training anything: hours in, a mismatch would be expensive to discover.
    problems = [f"{runs / s.name}: {why}" for s in todo
                if (why := conflict(s, runs / s.name, args.limit, args.vgg_weights))]
    if problems:
        _log("seed study: run folders that do not match this study (use another --runs, or "
             "delete them):\n  " + "\n  ".join(problems))
        return 2

    failures: dict[str, str] = {}
    write_document(specs, args, command, failures, archive)
    t0 = time.perf_counter()
    try:
        for spec in todo:
            try:
                what = run_one(spec, runs / spec.name, args)
            except ModelError as exc:
                if spec.arch != VGG:
                    raise
                # Typically the ImageNet weights: not in Keras's cache and not downloadable.
                failures[spec.name] = (f"not measured: {exc} (this script: --vgg-weights "
                                       "PATH, or --skip-vgg)")
                _log(f"[{spec.name}] not measured: {exc}")
                what = "not measured"
            _log(f"[{spec.name}] {what}")
            write_document(specs, args, command, failures, archive)
    except Interrupted as exc:
        write_document(specs, args, command, failures, archive)
        _log(f"seed study: interrupted in {exc}; finished epochs are kept. Run the same "
             f"command again to resume. Document: {args.out}")
        return 130
    except CifarkitError as exc:
        write_document(specs, args, command, failures, archive)
        _log(f"seed study: {type(exc).__name__}: {exc}")
        return int(getattr(exc, "exit_code", 1))
    rows = write_document(specs, args, command, failures, archive)
    done = sum(r.done for r in rows)
    _log(f"seed study: {done}/{len(rows)} runs complete ({time.perf_counter() - t0:.0f} s "
         f"this time); wrote {args.out}")
    return 0


if __name__ == "__main__":
    from cifarkit._signals import sigterm_as_interrupt

    sigterm_as_interrupt()  # `kill` stops the study like Ctrl-C: sessions recorded, resumable
    sys.exit(main())
