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

The test split is only evaluated once, after training; selection uses validation only.
Only ``keras.*`` APIs are used, so ``KERAS_BACKEND=jax cifarkit train …`` works too.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit._io import atomic_path, write_json, write_text
from cifarkit.data import load_dataset, stratified_split
from cifarkit.errors import UsageError
from cifarkit.train.recipes import RECIPES, Recipe, get_recipe, recipe_from_dict

#: ``progress(event, info)``; events: "data", "start", "epoch_begin", "batch", "epoch_end",
#: "evaluate", "done". The CLI draws rich progress from these.
TrainProgress = Callable[[str, dict[str, Any]], None]


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


def describe_device() -> str:
    """The accelerator Keras's backend will use, e.g. ``tensorflow: GPU:0`` or ``jax: cpu``."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                names = []
                for g in gpus:
                    details = tf.config.experimental.get_device_details(g)
                    names.append(details.get("device_name", g.name))
                return f"tensorflow: GPU ({', '.join(names)})"
            return f"tensorflow: CPU ({os.cpu_count()} cores)"
        if backend == "jax":
            import jax

            devs = jax.devices()
            return f"jax: {devs[0].platform} ({', '.join(str(d.device_kind) for d in devs)})"
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return f"torch: cuda ({torch.cuda.get_device_name(0)})"
            return "torch: cpu"
    except Exception as exc:  # device discovery must never stop training
        return f"{backend}: unknown ({exc})"
    return backend


def _versions() -> dict[str, str]:
    import keras

    import cifarkit

    out = {"python": platform.python_version(), "cifarkit": cifarkit.__version__,
           "keras": keras.__version__, "numpy": np.__version__,
           "backend": keras.backend.backend()}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        out["tensorflow"] = tf.__version__
    return out


def _schedule(recipe: Recipe, steps_per_epoch: int) -> Any:
    import keras

    total = recipe.epochs * steps_per_epoch
    warmup, reached = recipe.warmup(steps_per_epoch)
    peak = recipe.lr * reached  # below recipe.lr only when a short run caps the warm-up
    if recipe.schedule == "constant":
        return recipe.lr
    if recipe.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else peak,
            decay_steps=max(1, total - warmup),
            alpha=0.0,
            warmup_target=peak if warmup else None,
            warmup_steps=warmup,
        )
    if recipe.schedule == "triangle":
        from cifarkit.train.schedules import Triangle

        # A capped warm-up ends at `reached` of the peak: the triangle's apex is scaled, its
        # start (lr_start_factor · lr) and end stay where the full schedule has them.
        start = recipe.lr_start_factor / reached
        end = recipe.lr_end_factor / reached
        return Triangle(peak, total, warmup, start, end)
    raise UsageError(f"unknown schedule {recipe.schedule!r}")


def _optimizer(recipe: Recipe, steps_per_epoch: int) -> Any:
    import keras

    kwargs = {"learning_rate": _schedule(recipe, steps_per_epoch), "momentum": recipe.momentum,
              "nesterov": recipe.nesterov, "weight_decay": recipe.weight_decay or None}
    if recipe.norm_bias_lr_scale != 1.0:
        from cifarkit.train.schedules import BiasScaledSGD

        opt = BiasScaledSGD(bias_lr_scale=recipe.norm_bias_lr_scale, **kwargs)
    else:
        opt = keras.optimizers.SGD(**kwargs)
    if recipe.weight_decay and not recipe.decay_biases:
        # Decay kernels only: biases and BatchNorm's scale/offset are not regularised.
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return opt


class _ProgressCallback:
    """Adapter from Keras callbacks to the library's ``progress(event, info)``."""

    def __new__(cls, progress: TrainProgress, epochs: int, steps: int) -> Any:
        import keras

        class _CB(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self._t0 = time.perf_counter()
                progress("epoch_begin", {"epoch": epoch + 1, "epochs": epochs, "steps": steps})

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                logs = logs or {}
                progress("batch", {"step": batch + 1, "steps": steps,
                                   "loss": float(logs.get("loss", np.nan)),
                                   "accuracy": float(logs.get("accuracy", np.nan))})

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                progress("epoch_end", {"epoch": epoch + 1, "epochs": epochs,
                                       "seconds": time.perf_counter() - self._t0,
                                       "logs": {k: float(v) for k, v in (logs or {}).items()}})

        return _CB()


def _history_callback(run_dir: Path, history: dict[str, list[float]], seconds: list[float]) -> Any:
    """Append each epoch's logs and wall time, and persist them so a resume keeps them."""
    import keras

    class _History(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            for k, v in (logs or {}).items():
                history.setdefault(k, []).append(float(v))
            seconds.append(time.perf_counter() - self._t0)
            write_json(run_dir / ".backup" / "history.json",
                       {"history": history, "epoch_seconds": seconds})

    return _History()


def _evaluate(
    model: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 500
) -> tuple[float, float]:
    """Top-1 accuracy and (unsmoothed) cross-entropy on ``x``."""
    probs = np.asarray(model.predict(x.astype(np.float32), batch_size=batch_size, verbose=0),
                       dtype=np.float64)
    acc = float(np.mean(np.argmax(probs, axis=1) == y))
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None))))
    return acc, loss


def _one_hot(y: np.ndarray, n: int = 10) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[y]


def _keep_best(target: Any, path: Path, best: float | None) -> Any:
    """Save ``target``'s weights, atomically, whenever validation accuracy beats ``best``.

    Unlike ``ModelCheckpoint`` it can save a model other than the one being fitted: while the
    head trains on cached features, the full model's weights are the ones kept.
    """
    import keras

    class _KeepBest(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best = best

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            value = (logs or {}).get("val_accuracy")
            if value is None or (self.best is not None and not value > self.best):
                return
            self.best = float(value)
            with atomic_path(path, suffix=".weights.h5") as tmp:
                target.save_weights(tmp)

    return _KeepBest()


def _load_weights(model: Any, path: Path) -> None:
    """Load saved model weights; the optimizer state in the file is not wanted."""
    import warnings

    with warnings.catch_warnings():
        # A best epoch saved in another phase carries that phase's optimizer; Keras skips it
        # with a warning, which is exactly what should happen.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(os.fspath(path))


def _compile(model: Any, rec: Recipe, steps: int) -> None:
    import keras

    model.compile(
        optimizer=_optimizer(rec, steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=rec.label_smoothing),
        metrics=["accuracy"],
    )


def _image_batches(
    rec: Recipe, x: np.ndarray, y: np.ndarray, seed: int, start_epoch: int
) -> tuple[Any, dict[str, Any]]:
    """``fit``'s training data for images: augmented batches, or plain arrays.

    ``start_epoch``: epochs the run has already trained, so that a resumed run draws the
    batches the uninterrupted one would have.
    """
    if rec.flip or rec.translate or rec.cutout:
        from cifarkit.train.augment import AugmentedBatches

        return AugmentedBatches(x, _one_hot(y), rec.batch_size, flip=rec.flip,
                                translate=rec.translate, seed=seed,
                                alternate_flip=rec.alternate_flip, cutout=rec.cutout,
                                start_epoch=start_epoch), {}
    return x.astype(np.float32), {"y": _one_hot(y), "batch_size": rec.batch_size,
                                  "shuffle": True}


def _fit(model: Any, data: Any, fit_kwargs: dict[str, Any], epochs: int,
         validation: Any, callbacks: list[Any]) -> bool:
    """``model.fit``; True when Ctrl-C interrupted it (the callbacks' backup stays)."""
    try:
        model.fit(data, epochs=epochs, validation_data=validation, validation_batch_size=500,
                  callbacks=callbacks, verbose=0, **fit_kwargs)
    except KeyboardInterrupt:
        return True
    return False


def _equivalent_command(arch: str, recipe: str, run_dir: Path, *, seed: int, data: str | None,
                        limit: int | None, mixed_precision: bool, options: dict[str, Any],
                        overrides: dict[str, Any]) -> str:
    """The ``cifarkit train`` command line that repeats this run."""
    import shlex

    parts = ["cifarkit", "train", arch, "--recipe", recipe]
    for flag, value in overrides.items():
        if value is not None:
            parts += [f"--{flag}", f"{value:g}" if isinstance(value, float) else str(value)]
    if seed:
        parts += ["--seed", str(seed)]
    if data:
        parts += ["--data", data]
    if limit:
        parts += ["--limit", str(limit)]
    if mixed_precision:
        parts.append("--mixed-precision")
    for key, value in options.items():
        if key == "feature_cache":
            if not value:
                parts.append("--no-feature-cache")
        elif value is not None:
            parts += [f"--{key.replace('_', '-')}", str(value)]
    parts += ["--out", os.fspath(run_dir)]
    return shlex.join(parts)


def _recipe_overrides(rec: Recipe, given: dict[str, Any]) -> dict[str, Any]:
    """The flags that make ``rec`` from its named recipe: those given, and on a resume
    where they were left out, the values that differ from the named recipe's."""
    base = RECIPES.get(rec.name)
    out = {}
    for key, value in given.items():
        if value is None and base is not None and getattr(rec, key) != getattr(base, key):
            value = getattr(rec, key)
        out[key.replace("_", "-")] = value
    return out


def _trainable_params(model: Any) -> int:
    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))


def _frozen_base_options(
    arch: str,
    info: Any,
    weights: str | None,
    image_size: int | None,
    feature_cache: bool | None,
    finetune_epochs: int | None,
    finetune_lr: float | None,
) -> dict[str, Any]:
    """The VGG16-only options, checked and with their defaults; ``{}`` for other models."""
    finetune_flags = [f for f, v in (("--finetune-epochs", finetune_epochs),
                                     ("--finetune-lr", finetune_lr)) if v is not None]
    if info.family != "vgg":
        used = [f for f, v in (("--image-size", image_size),
                               ("--[no-]feature-cache", feature_cache)) if v is not None]
        if used or finetune_flags:
            raise UsageError(f"{', '.join(used + finetune_flags)}: only for the VGG16 models; "
                             f"{arch} trains end to end on 32×32 images")
        return {}
    size = 32 if image_size is None else int(image_size)
    if not 32 <= size <= 224:
        raise UsageError(f"--image-size must be in [32, 224], got {size}")
    # The weights too: a resumed head phase recomputes the base's features from them.
    options: dict[str, Any] = {"weights": weights or info.pretrained, "image_size": size,
                               "feature_cache": True if feature_cache is None else feature_cache}
    defaults = info.train_defaults
    if "finetune_epochs" not in defaults:
        if finetune_flags:
            raise UsageError(f"{', '.join(finetune_flags)}: only for vgg16-finetune; {arch} "
                             "keeps its conv base frozen")
        return options
    epochs = int(defaults["finetune_epochs"] if finetune_epochs is None else finetune_epochs)
    lr = float(defaults["finetune_lr"] if finetune_lr is None else finetune_lr)
    if epochs < 1:
        raise UsageError(f"--finetune-epochs must be at least 1, got {epochs}")
    if not lr > 0:
        raise UsageError(f"--finetune-lr must be positive, got {lr}")
    options.update(finetune_epochs=epochs, finetune_lr=lr)
    return options


def train(
    arch: str,
    recipe: str | None = None,
    *,
    data: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    val_split: float | None = None,
    weight_decay: float | None = None,
    label_smoothing: float | None = None,
    cutout: int | None = None,
    seed: int | None = None,
    out: str | os.PathLike[str] | None = None,
    mixed_precision: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    weights: str | None = None,
    image_size: int | None = None,
    feature_cache: bool | None = None,
    finetune_epochs: int | None = None,
    finetune_lr: float | None = None,
    progress: TrainProgress | None = None,
    data_progress: Callable[[int, int, str], None] | None = None,
) -> TrainResult:
    """Train ``arch`` with ``recipe``; write and return the run. Ctrl-C leaves a resumable run.

    ``recipe=None`` takes the architecture's own (``fast`` for fastnet, else ``default``).

    VGG16 models only: ``image_size`` (32–224) upsamples inside the graph; the frozen base's
    features are computed once and the head trains on them (``feature_cache=False``: every
    epoch goes through the base, with the recipe's translations; see
    :mod:`cifarkit.train.transfer`). ``vgg16-finetune`` then unfreezes block5 and trains
    ``finetune_epochs`` more epochs end to end, from ``finetune_lr`` (registry defaults);
    ``epochs`` is the head phase's length. On ``resume``, the recipe and options are the
    interrupted run's; any given again must match them.
    """
    from cifarkit.models import create_model, get_model_info

    info = get_model_info(arch)  # fails early, with close matches, on a bad name
    overrides = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "val_split": val_split,
                 "weight_decay": weight_decay, "label_smoothing": label_smoothing, "cutout": cutout}
    run_dir = Path(out) if out is not None else Path("runs") / arch
    backup = run_dir / ".backup"
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {run_dir} exists and is not a folder")
    given = {"weights": weights, "image_size": image_size, "feature_cache": feature_cache,
             "finetune_epochs": finetune_epochs, "finetune_lr": finetune_lr}
    if resume:
        if not (backup / "run-config.json").is_file():
            raise UsageError(f"{run_dir}: nothing to resume (no interrupted run in {backup})")
        saved = json.loads((backup / "run-config.json").read_text())
        # The interrupted run's recipe, so `--resume` alone continues it; anything given
        # again must agree with it.
        rec = recipe_from_dict(saved["recipe"])
        differ = [f"--{k.replace('_', '-')} {getattr(rec, k)!r} (given {v!r})"
                  for k, v in overrides.items() if v is not None and getattr(rec, k) != v]
        saved_seed, saved_limit = saved.get("seed", 0), saved.get("limit", limit)
        if seed is not None and seed != saved_seed:
            differ.append(f"--seed {saved_seed} (given {seed})")
        if limit is not None and limit != saved_limit:
            differ.append(f"--limit {saved_limit} (given {limit})")
        seed, limit = saved_seed, saved_limit
        if recipe is not None and recipe != rec.name:
            differ.insert(0, f"--recipe {rec.name} (given {recipe})")
        if saved["arch"] != arch:
            differ.insert(0, f"architecture {saved['arch']} (given {arch})")
        if differ:
            raise UsageError(f"{run_dir}: the interrupted run used {', '.join(differ)}; resume "
                             "with the same options, or leave them out")
        for key, value in saved.get("options", {}).items():
            if given.get(key) is None:
                given[key] = value
    else:
        if recipe is None:
            recipe = str(info.train_defaults.get("recipe", "default"))
        rec = get_recipe(recipe, **overrides)
        seed = 0 if seed is None else seed
    options = _frozen_base_options(arch, info, **given)
    if resume:
        if saved.get("options", {}) != options:
            raise UsageError(
                f"{run_dir}: the interrupted run used options {saved.get('options')}, not "
                f"{options}; resume with the same options, or leave them out"
            )
    elif backup.exists():
        if not overwrite:
            raise UsageError(
                f"{run_dir} holds an interrupted run; pass --resume to continue it or "
                "--overwrite to start again"
            )
        shutil.rmtree(backup)
    emit = progress or (lambda event, info: None)
    frozen_base = bool(options)
    finetune = "finetune_epochs" in options

    import keras

    keras.utils.set_random_seed(seed)
    ds = load_dataset(data, limit=limit, seed=seed, progress=data_progress)
    keep, held = stratified_split(ds.y_train, rec.val_split, seed=seed)
    x_tr, y_tr = ds.x_train[keep], ds.y_train[keep]
    x_val, y_val = ds.x_train[held], ds.y_train[held]
    emit("data", {"source": ds.source, "kind": ds.kind, "train": len(x_tr), "val": len(x_val),
                  "test": len(ds.x_test), "notes": ds.notes})

    policy = keras.config.dtype_policy()
    if mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    try:
        kwargs: dict[str, Any] = {}
        if info.pretrained:
            kwargs["weights"] = options.get("weights", weights or info.pretrained)
        elif weights is not None:
            raise UsageError(f"{arch} has no pretrained weights; --weights is for VGG16 models")
        if frozen_base:
            kwargs["image_size"] = options["image_size"]
        model = create_model(arch, **kwargs)
        features_model = head = None
        if frozen_base and options["feature_cache"]:
            from cifarkit.train.transfer import split_at

            # Under the model's dtype policy, so a mixed-precision head gets loss scaling too.
            features_model, head = split_at(model, "vgg16")
    finally:
        keras.config.set_dtype_policy(policy)

    if info.data_init is not None and not resume:
        info.data_init(model, x_tr)  # e.g. fastnet's patch-whitening stem
    steps = int(np.ceil(len(x_tr) / rec.batch_size))
    _compile(model, rec, steps)
    device = describe_device()
    run_dir.mkdir(parents=True, exist_ok=True)
    backup.mkdir(exist_ok=True)
    write_json(backup / "run-config.json", {"arch": arch, "recipe": rec.to_dict(), "seed": seed,
                                            "limit": limit,
                                            "options": options})

    history: dict[str, list[float]] = {}
    epoch_seconds: list[float] = []
    if resume and (backup / "history.json").is_file():
        saved_hist = json.loads((backup / "history.json").read_text())
        history, epoch_seconds = saved_hist["history"], saved_hist["epoch_seconds"]

    has_val = len(x_val) > 0
    best_path = backup / "best.weights.h5"
    validation = (x_val.astype(np.float32), _one_hot(y_val)) if has_val else None

    recalibrate = None
    if rec.bn_recalibration:
        from cifarkit.train.recalibrate import batchnorm_layers, recalibration_callback

        if batchnorm_layers(model):  # none in VGG16, the one model fitted as a separate head
            pick = np.random.default_rng(seed).permutation(len(x_tr))[:rec.bn_recalibration]
            recalibrate = recalibration_callback(model, x_tr[np.sort(pick)], validates=has_val)

    def callbacks(state: str, phase_epochs: int, phase_rec: Recipe) -> list[Any]:
        cbs: list[Any] = [
            keras.callbacks.BackupAndRestore(os.fspath(backup / state), save_freq="epoch",
                                             delete_checkpoint=False),
            _history_callback(run_dir, history, epoch_seconds),
        ]
        if rec.restore_best and has_val:
            # The full model's weights, whichever model is fitted; on resume (or in a later
            # phase) only a better epoch than the ones already run replaces the best.
            vals = history.get("val_accuracy") or []
            cbs.append(_keep_best(model, best_path, max(vals) if vals else None))
        if recalibrate is not None:
            cbs.append(recalibrate)
        if phase_rec.lookahead:
            from cifarkit.train.schedules import lookahead_callback

            cbs.append(lookahead_callback(phase_rec.epochs * steps))
        cbs.append(_ProgressCallback(emit, phase_epochs, steps))
        return cbs

    def interrupted() -> TrainResult:
        write_json(run_dir / "run.json", {
            "arch": arch, "recipe": rec.name, "status": "interrupted",
            "epochs_completed": len(epoch_seconds), "hyperparameters": rec.to_dict(),
            "options": options, "seed": seed,
            "resume": f"cifarkit train {arch} --recipe {rec.name} --out {run_dir} --resume",
        })
        return TrainResult(run_dir, arch, rec, history, epoch_seconds, None, None,
                           float("nan"), float("nan"), device, interrupted=True)

    emit("start", {"arch": arch, "recipe": rec.to_dict(), "device": device, "steps": steps,
                   "resumed_epochs": len(epoch_seconds), "options": options})
    model.build((None, 32, 32, 3))
    # VGG16 run facts for run.json; phase1.json keeps them across a resume after phase 1.
    vgg: dict[str, Any] = {"phases": [], "notes": []}
    phase1_weights = backup / "phase1.weights.h5"
    if finetune and resume and phase1_weights.is_file():
        _load_weights(model, phase1_weights)
        vgg = json.loads((backup / "phase1.json").read_text())
    else:
        use_cache = features_model is not None
        if use_cache:
            from cifarkit.train.transfer import FEATURE_CACHE_LIMIT, features_per_image

            images = len(x_tr) * (2 if rec.flip else 1) + len(x_val)
            cache_bytes = images * features_per_image(features_model) * 4
            if cache_bytes > FEATURE_CACHE_LIMIT:
                use_cache = False
                vgg["notes"].append(
                    f"features would take {cache_bytes / 1024**3:.1f} GiB (limit "
                    f"{FEATURE_CACHE_LIMIT / 1024**3:.0f} GiB): the head trained through the "
                    "frozen base instead")
        if frozen_base:
            emit("phase", {"phase": 1, "name": "head", "epochs": rec.epochs,
                           "cached": use_cache})
        if use_cache:
            from cifarkit.train.transfer import (
                CachedFeatureBatches,
                compute_features,
                feature_batch_size,
            )

            chunk = feature_batch_size(options["image_size"])
            total, done = images, 0

            def extract(x: np.ndarray, flip: bool = False) -> np.ndarray:
                nonlocal done
                start = done
                f = compute_features(features_model, x, batch_size=chunk, flip=flip,
                                     progress=lambda n, _: emit("features", {
                                         "done": start + n, "total": total}))
                done += len(x)
                return f

            t0 = time.perf_counter()
            f_tr = extract(x_tr)
            f_mirror = extract(x_tr, flip=True) if rec.flip else None
            f_val = extract(x_val) if has_val else None
            feature_seconds = time.perf_counter() - t0
            emit("features_done", {"images": total, "seconds": feature_seconds})
            vgg["feature_cache"] = {
                "used": True, "seconds": round(feature_seconds, 3), "images": total,
                "mirrored": rec.flip, "shape": list(f_tr.shape[1:]),
                "megabytes": round((f_tr.nbytes + (0 if f_mirror is None else f_mirror.nbytes)
                                    + (0 if f_val is None else f_val.nbytes)) / 1e6, 1),
            }
            skipped = []
            if rec.translate:
                skipped.append(f"±{rec.translate} px translations")
            if rec.cutout:
                skipped.append(f"{rec.cutout} px cutout")
            if skipped:
                vgg["notes"].append(
                    f"head phase on cached features: random flips kept (mirror-image "
                    f"features), {' and '.join(skipped)} not applied (--no-feature-cache "
                    "applies them, at a full VGG16 pass per epoch)")
            if rec.flip:
                train_data: Any = CachedFeatureBatches(f_tr, f_mirror, _one_hot(y_tr),
                                                       rec.batch_size, seed=seed,
                                                       start_epoch=len(epoch_seconds))
                fit_kwargs: dict[str, Any] = {}
            else:
                train_data = f_tr
                fit_kwargs = {"y": _one_hot(y_tr), "batch_size": rec.batch_size,
                              "shuffle": True}
            fitted, state = head, "keras-head"
            phase_validation = (f_val, _one_hot(y_val)) if has_val else None
            _compile(head, rec, steps)
        else:
            if frozen_base:
                vgg["feature_cache"] = {"used": False}
            train_data, fit_kwargs = _image_batches(rec, x_tr, y_tr, seed, len(epoch_seconds))
            fitted, state, phase_validation = model, "keras", validation
        if _fit(fitted, train_data, fit_kwargs, rec.epochs, phase_validation,
                callbacks(state, rec.epochs, rec)):
            return interrupted()
        if frozen_base:
            vgg["phases"].append({"name": "head", "epochs": rec.epochs,
                                  "on": "cached features" if use_cache else "images",
                                  "trainable_params": _trainable_params(model)})
        if finetune:
            write_json(backup / "phase1.json", vgg)
            with atomic_path(phase1_weights, suffix=".weights.h5") as tmp:
                model.save_weights(tmp)

    finetune_rec = None
    if finetune:
        from dataclasses import replace

        from cifarkit.models.vgg import unfreeze_block5

        # Phase 2: the recipe's batch size, decay, smoothing and augmentation, but Nesterov
        # SGD from a low learning rate decaying to 0, so block5 is adjusted, not overwritten.
        finetune_rec = replace(rec, epochs=options["finetune_epochs"],
                               lr=options["finetune_lr"], momentum=0.9, nesterov=True,
                               warmup_epochs=0.0, schedule="cosine", lookahead=False)
        unfreeze_block5(model)
        _compile(model, finetune_rec, steps)  # trainability changes need a new compile
        emit("phase", {"phase": 2, "name": "block5", "epochs": finetune_rec.epochs,
                       "lr": finetune_rec.lr, "cached": False})
        train_data, fit_kwargs = _image_batches(finetune_rec, x_tr, y_tr, seed + 1,
                                                len(epoch_seconds))
        if _fit(model, train_data, fit_kwargs, finetune_rec.epochs, validation,
                callbacks("keras-block5", finetune_rec.epochs, finetune_rec)):
            return interrupted()
        vgg["phases"].append({
            "name": "block5", "epochs": finetune_rec.epochs, "on": "images",
            "trainable_params": _trainable_params(model),
            "trainable_layers": [layer.name for layer in model.get_layer("vgg16").layers
                                 if layer.trainable and layer.weights],
            "optimizer": "SGD (Nesterov, momentum 0.9), cosine decay to 0",
            "lr": finetune_rec.lr,
        })

    best_epoch = None
    val_acc = None
    if has_val and "val_accuracy" in history:
        vals = history["val_accuracy"]
        if rec.restore_best and best_path.is_file():
            best_epoch = int(np.argmax(vals)) + 1
            _load_weights(model, best_path)
        else:
            best_epoch = len(vals)
        val_acc = float(vals[best_epoch - 1])
    emit("evaluate", {"test": len(ds.x_test)})
    test_acc, test_loss = _evaluate(model, ds.x_test, ds.y_test)

    with atomic_path(run_dir / "model.keras") as tmp:
        model.save(tmp)
    write_json(run_dir / "history.json", history)
    write_text(run_dir / "history.csv", _history_csv(history, epoch_seconds))
    from cifarkit.plots import training_curves

    training_curves(history, run_dir / "curves.png",
                    title=f"{arch} · recipe {rec.name} · test accuracy {test_acc:.2%}")
    meta: dict[str, Any] = {
        "arch": arch,
        "recipe": rec.name,
        "status": "complete",
        "hyperparameters": rec.to_dict(),
        "epochs": len(epoch_seconds),
        "seed": seed,
        "mixed_precision": mixed_precision,
        "weights": kwargs.get("weights"),
        "params": int(model.count_params()),
        "data_source": ds.source,
        "data": {"kind": ds.kind, "train": len(x_tr), "val": len(x_val),
                 "test": len(ds.x_test), "limit": limit, "val_split": rec.val_split},
        "val_split": rec.val_split,
        "device": device,
        "versions": _versions(),
        "epoch_seconds": epoch_seconds,
        "train_seconds": float(sum(epoch_seconds)),
        "best_epoch": best_epoch,
        "val_accuracy": val_acc,
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # Rebuilt from the arguments, not sys.argv: train() is also called by scripts.
        "command": _equivalent_command(
            arch, rec.name, run_dir, seed=seed, limit=limit,
            data=None if ds.kind.startswith("keras") else ds.source,
            mixed_precision=mixed_precision, options=options,
            overrides=_recipe_overrides(rec, overrides)),
    }
    if frozen_base:
        # epoch_seconds/train_seconds are fit epochs only; feature_cache.seconds is the
        # one-off VGG16 pass that made the head's epochs cheap.
        meta.update(image_size=options["image_size"], feature_cache=vgg.get("feature_cache"),
                    phases=vgg["phases"], notes=vgg["notes"])
        if finetune_rec is not None:
            meta["finetune"] = finetune_rec.to_dict()
    write_json(run_dir / "run.json", meta)
    shutil.rmtree(backup, ignore_errors=True)
    emit("done", {"test_accuracy": test_acc})
    return TrainResult(run_dir, arch, rec, history, epoch_seconds, best_epoch, val_acc,
                       test_acc, test_loss, device, notes=list(vgg["notes"]))


def _history_csv(history: dict[str, list[float]], seconds: list[float]) -> str:
    keys = list(history)
    lines = [",".join(["epoch", *keys, "seconds"])]
    for i, s in enumerate(seconds):
        row = [str(i + 1)] + [f"{history[k][i]:.6g}" if i < len(history[k]) else "" for k in keys]
        lines.append(",".join([*row, f"{s:.3f}"]))
    return "\n".join(lines) + "\n"


__all__ = ["TrainResult", "describe_device", "train"]
