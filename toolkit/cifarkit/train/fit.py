"""``cifarkit train``: fit a registry architecture with a recipe and write the run folder.

Run folder (every file written atomically):
    model.keras        the trained model (best validation epoch with ``restore_best``)
    history.json/.csv  per-epoch metrics
    curves.png         accuracy and loss, train vs validation
    run.json           recipe, hyper-parameters, seed, data, versions, device, per-epoch
                       seconds, and the test accuracy/loss measured once at the end; VGG16
                       runs add the image size, the feature cache and the training phases
    .backup/           Keras ``BackupAndRestore`` state while a run is unfinished (resume);
                       per phase for VGG16, plus the weights after vgg16-finetune's phase 1

A run is a few steps over one :class:`TrainOptions`: settle the options (on ``resume``, the
interrupted run's), load and split the data, build the model, fit (one phase here; VGG16's
frozen-base phases are in :mod:`cifarkit.train.transfer`), evaluate on the test split once
(selection uses validation only), write the run folder.
Only ``keras.*`` APIs are used, so ``KERAS_BACKEND=jax cifarkit train …`` works too.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit._io import atomic_path, write_json, write_text
from cifarkit.contract import check_image_size
from cifarkit.data import Dataset, load_dataset, stratified_split
from cifarkit.data.images import PREPROCESS
from cifarkit.errors import DataError, UsageError
from cifarkit.train.keras_parts import (  # noqa: F401 - _schedule: the tests' entry
    _evaluate,
    _keep_best,
    _optimizer,
    _schedule,
    _versions,
    describe_device,
    dtype_policy,
    load_weights,
)
from cifarkit.train.recipes import RECIPES, Recipe, get_recipe, recipe_from_dict

#: ``progress(event, info)``; events: "data", "start", "phase", "features", "features_done",
#: "epoch_begin", "batch", "epoch_end", "evaluate", "done". The CLI draws progress from them.
TrainProgress = Callable[[str, dict[str, Any]], None]

#: Options that override the recipe's field of the same name.
RECIPE_FLAGS = ("epochs", "batch_size", "lr", "val_split", "weight_decay", "label_smoothing",
                "cutout")
#: The architecture's own options (VGG16's today): checked by the architecture's trainer and
#: recorded as run.json's "options"; those the model builder takes are passed to it.
ARCH_FLAGS = ("weights", "image_size", "feature_cache", "finetune_epochs", "finetune_lr")
#: ``--init``: the peak learning rate is the recipe's times this (fine-tuning, not training
#: from scratch: large steps would wash out the features it starts from).
INIT_LR_SCALE = 0.2
#: Held out from class folders alone when the recipe holds out nothing (the fast recipes).
FALLBACK_VAL_SPLIT = 0.1
BUILDER_ARGS = ("weights", "image_size")
BEST = "best.weights.h5"  # in .backup/: the best validation epoch's weights


@dataclass
class TrainOptions:
    """Everything a training run takes, named as ``cifarkit train``'s flags. ``None``: the
    default (the recipe's, the registry's) or, on ``resume``, the interrupted run's.
    Fields are in the order of the flags in the command that run.json records."""

    arch: str
    recipe: str | None = None  # None: the architecture's own (fast for fastnet, else default)
    _: KW_ONLY
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    val_split: float | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    cutout: int | None = None
    seed: int | None = None  # None: 0
    data: str | os.PathLike[str] | None = None
    limit: int | None = None
    image_size: int | None = None  # None: 32 (the model's input S×S; data decoded to it)
    init: str | None = None  # start from a trained model (cifarkit.train.init)
    strict: bool = False  # fail on an image file that cannot be decoded (default: skip it)
    mixed_precision: bool = False
    weights: str | None = None  # VGG16 only from here to finetune_lr (cifarkit.train.transfer)
    feature_cache: bool | None = None
    finetune_epochs: int | None = None
    finetune_lr: float | None = None
    out: str | os.PathLike[str] | None = None  # None: runs/<arch>
    resume: bool = False
    overwrite: bool = False

    def command(self) -> str:
        """The ``cifarkit train`` command line that passes these options (``None`` left out)."""
        parts = ["cifarkit", "train", self.arch]
        for f in fields(self)[1:]:
            value, flag = getattr(self, f.name), "--" + f.name.replace("_", "-")
            if value is None or (value is False and f.default is False):
                continue
            if isinstance(value, bool):
                parts.append(flag if value else f"--no-{flag[2:]}")
            elif isinstance(value, float) and float(f"{value:g}") == value:
                parts += [flag, f"{value:g}"]  # 1e-05, not 1.0000000000000001e-05
            else:
                parts += [flag, str(value)]
        return shlex.join(parts)


@dataclass
class TrainResult:
    run_dir: Path
    arch: str
    recipe: Recipe
    history: dict[str, list[float]]
    epoch_seconds: list[float]
    best_epoch: int | None
    val_accuracy: float | None
    test_accuracy: float
    test_loss: float
    device: str
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)


def train(arch: str | TrainOptions, recipe: str | None = None, *,
          progress: TrainProgress | None = None,
          data_progress: Callable[[int, int, str], None] | None = None,
          **options: Any) -> TrainResult:
    """Train ``arch`` with ``recipe``; write and return the run. Ctrl-C leaves a resumable run.

    Takes a :class:`TrainOptions`, or its fields as arguments. On ``resume``, the recipe and
    options are the interrupted run's; any given again must match them. The VGG16 models'
    options and phases: :mod:`cifarkit.train.transfer`.
    """
    given = arch if isinstance(arch, TrainOptions) else TrainOptions(arch, recipe, **options)
    if given is arch and (recipe is not None or options):
        raise TypeError("train(TrainOptions) takes no other options")
    plan = _settle(given, progress or (lambda event, info: None))
    data = _load_data(plan, data_progress)
    fitter = _start(plan, data, _build_model(plan, data))
    try:
        facts = _fit_phases(fitter)
    except Interrupted:
        return _interrupted(fitter)
    result = _evaluate_once(fitter, notes=facts.get("notes", []))
    _write_run(fitter, result, facts)
    return result


@dataclass
class _Plan:
    """The options settled: the recipe, seed and limit this run uses, and the architecture's
    own options as run.json records them (on resume, all the interrupted run's)."""

    given: TrainOptions
    info: Any  # the registry's ModelInfo
    recipe: Recipe
    seed: int
    limit: int | None
    options: dict[str, Any]
    run_dir: Path
    emit: TrainProgress
    image_size: int = 32
    init_report: Any = None  # cifarkit.train.init.InitReport, with --init

    @property
    def backup(self) -> Path:
        return self.run_dir / ".backup"


def _settle(given: TrainOptions, emit: TrainProgress) -> _Plan:
    """Check ``given``, fill in its defaults; a fresh start discards an interrupted run only
    with ``overwrite``."""
    from cifarkit.models import get_model_info
    from cifarkit.train.transfer import frozen_base_options

    info = get_model_info(given.arch)  # fails early, with close matches, on a bad name
    run_dir = Path(given.out) if given.out is not None else Path("runs") / given.arch
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {run_dir} exists and is not a folder")
    arch_options = {k: getattr(given, k) for k in ARCH_FLAGS}
    if given.resume:
        rec, seed, limit, saved = _resumed(given, run_dir)
        saved_options = saved.get("options", {})
        arch_options = {k: saved_options.get(k) if v is None else v
                        for k, v in arch_options.items()}
    else:
        name = given.recipe
        if name is None:
            name = str(info.train_defaults.get("recipe", "default"))
        rec = get_recipe(name, **{k: getattr(given, k) for k in RECIPE_FLAGS})
        if given.init is not None and given.lr is None:
            rec = replace(rec, lr=rec.lr * INIT_LR_SCALE)
        seed, limit = 0 if given.seed is None else given.seed, given.limit
    image_size = check_image_size(arch_options.get("image_size") or 32)
    if info.family != "vgg":  # every architecture takes any size; VGG16 checks its own range
        arch_options["image_size"] = None
    options = frozen_base_options(given.arch, info, **arch_options)
    if info.family != "vgg" and image_size != 32:
        options["image_size"] = image_size
    if given.resume:
        if saved_options != options:
            raise UsageError(
                f"{run_dir}: the interrupted run used options {saved.get('options')}, not "
                f"{options}; resume with the same options, or leave them out")
    elif (run_dir / ".backup").exists():
        if not given.overwrite:
            raise UsageError(f"{run_dir} holds an interrupted run; pass --resume to continue it "
                             "or --overwrite to start again")
        shutil.rmtree(run_dir / ".backup")
    return _Plan(given, info, rec, seed, limit, options, run_dir, emit, image_size)


def _resumed(given: TrainOptions, run_dir: Path) -> tuple[Recipe, int, int | None, dict]:
    """The interrupted run's recipe, seed, limit and record, so ``--resume`` alone continues
    it; anything given again must agree with it."""
    config = run_dir / ".backup" / "run-config.json"
    if not config.is_file():
        raise UsageError(f"{run_dir}: nothing to resume (no interrupted run in {config.parent})")
    saved = json.loads(config.read_text())
    rec = recipe_from_dict(saved["recipe"])
    seed, limit = saved.get("seed", 0), saved.get("limit", given.limit)  # older records: no limit
    recorded = {**{k: getattr(rec, k) for k in RECIPE_FLAGS}, "seed": seed, "limit": limit}
    differ = [f"--{k.replace('_', '-')} {v!r} (given {again!r})" for k, v in recorded.items()
              if (again := getattr(given, k)) is not None and again != v]
    if given.recipe is not None and given.recipe != rec.name:
        differ.insert(0, f"--recipe {rec.name} (given {given.recipe})")
    if saved["arch"] != given.arch:
        differ.insert(0, f"architecture {saved['arch']} (given {given.arch})")
    if differ:
        raise UsageError(f"{run_dir}: the interrupted run used {', '.join(differ)}; resume "
                         "with the same options, or leave them out")
    return rec, seed, limit, saved


def _reproducing(plan: _Plan, ds: Dataset) -> TrainOptions:
    """The fewest options that repeat this run: the recipe flags given and, on a resume where
    they were left out, those where the run's recipe differs from the named one."""
    rec, base = plan.recipe, RECIPES.get(plan.recipe.name)
    flags = {k: getattr(plan.given, k) for k in RECIPE_FLAGS}
    for key, value in flags.items():
        if value is None and base is not None and getattr(rec, key) != getattr(base, key):
            flags[key] = getattr(rec, key)
    if plan.given.init is not None and plan.given.lr is None:
        flags["lr"] = None  # --init scales the recipe's rate itself
    arch_options = {k: None if k == "feature_cache" and v else v  # on: the default
                    for k, v in plan.options.items()}
    return TrainOptions(plan.given.arch, rec.name, **flags, **arch_options, seed=plan.seed or None,
                        data=None if ds.kind.startswith("keras") else ds.source,
                        limit=plan.limit or None, mixed_precision=plan.given.mixed_precision,
                        init=plan.given.init, strict=plan.given.strict, out=plan.run_dir)


@dataclass
class _Data:
    """The data set; its training images split into train and validation, stratified."""

    ds: Dataset
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    val_from: str = ""


def _load_data(plan: _Plan, progress: Callable[[int, int, str], None] | None) -> _Data:
    import keras

    keras.utils.set_random_seed(plan.seed)  # before anything draws: model init, augmentation
    ds = load_dataset(plan.given.data, limit=plan.limit, seed=plan.seed, progress=progress,
                      image_size=plan.image_size, strict=plan.given.strict,
                      splits=("train", "val", "test"))
    if not len(ds.y_train):
        raise DataError(f"{ds.source}: no training images (expected train/<class>/ or "
                        "<class>/ folders)")
    if ds.has_val:  # the dataset's own val/ folder: used as it is
        data = _Data(ds, ds.x_train, ds.y_train, ds.x_val, ds.y_val, "the dataset's val split")
    else:
        frac = plan.recipe.val_split
        if not frac and not len(ds.y_test):  # nothing else to measure the model on
            frac = FALLBACK_VAL_SPLIT
            ds.notes.append(f"no val/ or test/ split and the recipe holds out nothing: "
                            f"{frac:g} of each class held out (--val-split to choose)")
        keep, held = stratified_split(ds.y_train, frac, seed=plan.seed)
        data = _Data(ds, ds.x_train[keep], ds.y_train[keep], ds.x_train[held],
                     ds.y_train[held], f"{frac:g} of each training class, seed {plan.seed}")
    if plan.recipe.batch_size * 4 > len(data.x_train):  # a small dataset, a large-batch recipe
        ds.notes.append(f"batch size {plan.recipe.batch_size} for {len(data.x_train)} training "
                        f"images: {-(-len(data.x_train) // plan.recipe.batch_size)} step(s) an "
                        "epoch; a smaller --batch-size (and --lr) trains better on so few")
    plan.emit("data", {"source": ds.source, "kind": ds.kind, "train": len(data.x_train),
                       "val": len(data.x_val), "test": len(ds.x_test), "notes": ds.notes,
                       "classes": len(ds.classes), "image_size": ds.image_size,
                       "skipped": len(ds.skipped)})
    return data


def _build_model(plan: _Plan, data: _Data) -> Any:
    """The architecture under the run's dtype policy, initialised from the training images
    where the registry says so (a resumed run's weights come from the backup instead)."""
    from cifarkit.models import create_model

    with dtype_policy("mixed_float16" if plan.given.mixed_precision else None):
        model = create_model(plan.given.arch, num_classes=len(data.ds.classes),
                             input_size=plan.image_size, **{
                                 k: v for k, v in plan.options.items()
                                 if k in BUILDER_ARGS and plan.info.family == "vgg"})
    if plan.given.init is not None and not plan.given.resume:
        from cifarkit.train.init import load_init

        plan.init_report = load_init(model, plan.given.init)
        plan.emit("init", {"source": plan.init_report.source,
                           "loaded": len(plan.init_report.loaded),
                           "skipped": plan.init_report.skipped})
    elif plan.info.data_init is not None and not plan.given.resume:
        plan.info.data_init(model, data.x_train)  # e.g. fastnet's patch-whitening stem
    return model


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped a fit; the callbacks' backup stays for ``resume``."""


@dataclass
class Fitter:
    """What the fit phases share: the run, the full model, the data, and the per-epoch record
    that a resume restores. A phase fits the model (or a part of it) with :meth:`fit`."""

    plan: _Plan
    model: Any
    data: _Data
    steps: int  # per epoch
    device: str
    history: dict[str, list[float]] = field(default_factory=dict)
    epoch_seconds: list[float] = field(default_factory=list)
    recalibrate: Any = None  # BatchNorm recalibration before each validation
    validation: tuple[np.ndarray, np.ndarray] | None = None  # the full model's

    def one_hot(self, y: np.ndarray) -> np.ndarray:
        return np.eye(len(self.data.ds.classes), dtype=np.float32)[y]

    def compile(self, model: Any, rec: Recipe) -> None:
        import keras

        model.compile(optimizer=_optimizer(rec, self.steps), metrics=["accuracy"],
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=rec.label_smoothing))

    def images(self, rec: Recipe, seed: int) -> tuple[Any, dict[str, Any]]:
        """``fit``'s training images: augmented batches, or plain arrays. A resumed run draws
        the batches the uninterrupted one would have (they depend on the epoch)."""
        x, y = self.data.x_train, self.one_hot(self.data.y_train)
        if rec.flip or rec.translate or rec.cutout:
            from cifarkit.train.augment import AugmentedBatches

            return AugmentedBatches(x, y, rec.batch_size, flip=rec.flip, translate=rec.translate,
                                    seed=seed, alternate_flip=rec.alternate_flip,
                                    cutout=rec.cutout, start_epoch=len(self.epoch_seconds)), {}
        return x.astype(np.float32), {"y": y, "batch_size": rec.batch_size, "shuffle": True}

    def fit(self, fitted: Any, batches: tuple[Any, dict[str, Any]], rec: Recipe,
            validation: Any, state: str) -> None:
        """``fitted.fit`` on ``batches`` (from :meth:`images`, say) for ``rec.epochs``, its
        backup in ``.backup/<state>``; raises :class:`Interrupted` on Ctrl-C."""
        import keras

        plan = self.plan
        callbacks: list[Any] = [keras.callbacks.BackupAndRestore(
            os.fspath(plan.backup / state), save_freq="epoch", delete_checkpoint=False),
            _record_callback(self, rec.epochs)]
        if plan.recipe.restore_best and self.validation is not None:
            # The full model's weights, whichever model is fitted; on resume (or in a later
            # phase) only a better epoch than the ones already run replaces the best.
            vals = self.history.get("val_accuracy") or []
            callbacks.append(_keep_best(self.model, plan.backup / BEST, max(vals, default=None)))
        if self.recalibrate is not None:
            callbacks.append(self.recalibrate)
        if rec.lookahead:
            from cifarkit.train.schedules import lookahead_callback

            callbacks.append(lookahead_callback(rec.epochs * self.steps))
        try:
            fitted.fit(batches[0], epochs=rec.epochs, validation_data=validation,
                       validation_batch_size=500, callbacks=callbacks, verbose=0, **batches[1])
        except KeyboardInterrupt:
            raise Interrupted from None


def _start(plan: _Plan, data: _Data, model: Any) -> Fitter:
    """Compile; record the run's configuration for a resume, and restore the epochs an
    interrupted run completed."""
    rec, backup = plan.recipe, plan.backup
    fitter = Fitter(plan, model, data, int(np.ceil(len(data.x_train) / rec.batch_size)),
                    describe_device())
    fitter.compile(model, rec)
    if len(data.x_val):
        fitter.validation = (data.x_val.astype(np.float32), fitter.one_hot(data.y_val))
    backup.mkdir(parents=True, exist_ok=True)
    write_json(backup / "run-config.json", {"arch": plan.given.arch, "recipe": rec.to_dict(),
               "seed": plan.seed, "limit": plan.limit, "options": plan.options})
    if plan.given.resume and (backup / "history.json").is_file():
        saved = json.loads((backup / "history.json").read_text())
        fitter.history, fitter.epoch_seconds = saved["history"], saved["epoch_seconds"]
    if rec.bn_recalibration:
        from cifarkit.train.recalibrate import batchnorm_layers, recalibration_callback

        if batchnorm_layers(model):  # none in VGG16, the one model fitted as a separate head
            x = data.x_train
            pick = np.random.default_rng(plan.seed).permutation(len(x))[:rec.bn_recalibration]
            fitter.recalibrate = recalibration_callback(model, x[np.sort(pick)],
                                                        validates=len(data.x_val) > 0)
    plan.emit("start", {"arch": plan.given.arch, "recipe": rec.to_dict(),
                        "device": fitter.device, "steps": fitter.steps,
                        "resumed_epochs": len(fitter.epoch_seconds), "options": plan.options})
    model.build((None, *data.x_train.shape[1:]))
    return fitter


def _fit_phases(fitter: Fitter) -> dict[str, Any]:
    """Fit; return the phases' facts for run.json. VGG16: its frozen-base phases; the other
    models: one phase, the whole model on (augmented) images."""
    if fitter.plan.info.family == "vgg":
        from cifarkit.train.transfer import fit_frozen_base

        return fit_frozen_base(fitter)
    rec = fitter.plan.recipe
    fitter.fit(fitter.model, fitter.images(rec, fitter.plan.seed), rec, fitter.validation, "keras")
    return {}


def _evaluate_once(fitter: Fitter, notes: list[str]) -> TrainResult:
    """The best validation epoch's weights (with ``restore_best``), then the test split."""
    plan, history, ds = fitter.plan, fitter.history, fitter.data.ds
    best_epoch = val_acc = None
    if fitter.validation is not None and "val_accuracy" in history:
        vals = history["val_accuracy"]
        if plan.recipe.restore_best and (plan.backup / BEST).is_file():
            best_epoch = int(np.argmax(vals)) + 1
            load_weights(fitter.model, plan.backup / BEST)
        else:
            best_epoch = len(vals)
        val_acc = float(vals[best_epoch - 1])
    split, x_eval, y_eval = "test", ds.x_test, ds.y_test
    if not len(y_eval):  # class folders alone: the held-out validation images
        split, x_eval, y_eval = "val", fitter.data.x_val, fitter.data.y_val
    if split != "test":
        notes = [*notes, f"no test split: the final accuracy is on the {split} split"]
    plan.emit("evaluate", {"test": len(y_eval), "split": split})
    test_acc, test_loss = _evaluate(fitter.model, x_eval, y_eval)
    return TrainResult(plan.run_dir, plan.given.arch, plan.recipe, history, fitter.epoch_seconds,
                       best_epoch, val_acc, test_acc, test_loss, fitter.device, notes=list(notes))


def _write_run(fitter: Fitter, result: TrainResult, facts: dict[str, Any]) -> None:
    """The run folder; ``facts``, the phases' own (e.g. VGG16's), end run.json."""
    from cifarkit.plots import training_curves

    plan, ds, run_dir, rec = fitter.plan, fitter.data.ds, fitter.plan.run_dir, fitter.plan.recipe
    history, seconds = fitter.history, fitter.epoch_seconds
    with atomic_path(run_dir / "model.keras") as tmp:
        fitter.model.save(tmp)
    write_json(run_dir / "history.json", history)
    write_text(run_dir / "history.csv", _history_csv(history, seconds))
    training_curves(history, run_dir / "curves.png", title=f"{plan.given.arch} · recipe "
                    f"{rec.name} · test accuracy {result.test_accuracy:.2%}")
    write_json(run_dir / "run.json", {
        "arch": plan.given.arch, "recipe": rec.name, "status": "complete",
        "hyperparameters": rec.to_dict(), "epochs": len(seconds), "seed": plan.seed,
        "mixed_precision": plan.given.mixed_precision, "weights": plan.options.get("weights"),
        "params": int(fitter.model.count_params()), "data_source": ds.source,
        "data": {"kind": ds.kind, "train": len(fitter.data.x_train),
                 "val": len(fitter.data.x_val), "test": len(ds.x_test), "limit": plan.limit,
                 "val_split": rec.val_split, "val_from": fitter.data.val_from,
                 "layout": ds.layout, "skipped": ds.skipped[:100],
                 "evaluated_on": "test" if len(ds.y_test) else "val"},
        "classes": list(ds.classes), "image_size": plan.image_size,
        "preprocess": PREPROCESS,
        "init": None if plan.init_report is None else {
            "source": plan.init_report.source, "kind": plan.init_report.kind,
            "architecture": plan.init_report.architecture,
            "loaded": plan.init_report.loaded, "skipped": plan.init_report.skipped,
            "lr_scale": INIT_LR_SCALE if plan.given.lr is None else None},
        "val_split": rec.val_split, "device": fitter.device, "versions": _versions(),
        "epoch_seconds": seconds, "train_seconds": float(sum(seconds)),
        "best_epoch": result.best_epoch, "val_accuracy": result.val_accuracy,
        "test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # Rebuilt from the options, not sys.argv: train() is also called by scripts.
        "command": _reproducing(plan, ds).command(), **facts})
    shutil.rmtree(plan.backup, ignore_errors=True)
    plan.emit("done", {"test_accuracy": result.test_accuracy})


def _interrupted(fitter: Fitter) -> TrainResult:
    plan, rec = fitter.plan, fitter.plan.recipe
    resume = TrainOptions(plan.given.arch, rec.name, out=plan.run_dir, resume=True)
    write_json(plan.run_dir / "run.json", {
        "arch": plan.given.arch, "recipe": rec.name, "status": "interrupted",
        "epochs_completed": len(fitter.epoch_seconds), "hyperparameters": rec.to_dict(),
        "options": plan.options, "seed": plan.seed, "resume": resume.command()})
    return TrainResult(plan.run_dir, plan.given.arch, rec, fitter.history, fitter.epoch_seconds,
                       None, None, float("nan"), float("nan"), fitter.device, interrupted=True)


def _history_csv(history: dict[str, list[float]], seconds: list[float]) -> str:
    keys = list(history)
    lines = [",".join(["epoch", *keys, "seconds"])]
    for i, s in enumerate(seconds):
        row = [str(i + 1)] + [f"{history[k][i]:.6g}" if i < len(history[k]) else "" for k in keys]
        lines.append(",".join([*row, f"{s:.3f}"]))
    return "\n".join(lines) + "\n"


def _record_callback(fitter: Fitter, epochs: int) -> Any:
    """Append each epoch's logs and wall time to the fitter's record, persisted so a resume
    keeps them, and report progress."""
    import keras

    emit, steps = fitter.plan.emit, fitter.steps

    class _Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._t0 = time.perf_counter()
            emit("epoch_begin", {"epoch": epoch + 1, "epochs": epochs, "steps": steps})

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            logs = logs or {}
            emit("batch", {"step": batch + 1, "steps": steps, "loss": float(
                logs.get("loss", np.nan)), "accuracy": float(logs.get("accuracy", np.nan))})

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            seconds = time.perf_counter() - self._t0
            logs = {k: float(v) for k, v in (logs or {}).items()}
            for k, v in logs.items():
                fitter.history.setdefault(k, []).append(v)
            fitter.epoch_seconds.append(seconds)
            write_json(fitter.plan.backup / "history.json",
                       {"history": fitter.history, "epoch_seconds": fitter.epoch_seconds})
            emit("epoch_end", {"epoch": epoch + 1, "epochs": epochs, "seconds": seconds,
                               "logs": logs})

    return _Record()


__all__ = ["Fitter", "Interrupted", "TrainOptions", "TrainResult", "describe_device", "train"]
