"""``cifarkit train``: fit a registry architecture with a recipe and write the run folder.

Run folder (every file written atomically):
    model.keras        the trained model (best validation epoch with ``restore_best``)
    history.json/.csv  per-epoch metrics
    curves.png         accuracy and loss, train vs validation
    run.json           recipe, hyper-parameters, seed, data, versions, device, per-epoch
                       seconds, and the test accuracy/loss measured once at the end
    .backup/           Keras ``BackupAndRestore`` state while a run is unfinished (resume)

The test split is only evaluated once, after training; selection uses validation only.
Only ``keras.*`` APIs are used, so ``KERAS_BACKEND=jax cifarkit train …`` works too.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
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
from cifarkit.train.recipes import Recipe, get_recipe

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
    warmup = int(round(recipe.warmup_epochs * steps_per_epoch))
    if recipe.schedule == "constant":
        return recipe.lr
    if recipe.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else recipe.lr,
            decay_steps=max(1, total - warmup),
            alpha=0.0,
            warmup_target=recipe.lr if warmup else None,
            warmup_steps=warmup,
        )
    if recipe.schedule == "triangle":
        from cifarkit.train.schedules import Triangle

        return Triangle(recipe.lr, total, warmup, recipe.lr_start_factor, recipe.lr_end_factor)
    raise UsageError(f"unknown schedule {recipe.schedule!r}")


def _optimizer(recipe: Recipe, steps_per_epoch: int) -> Any:
    import keras

    opt = keras.optimizers.SGD(
        learning_rate=_schedule(recipe, steps_per_epoch),
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay or None,
    )
    if recipe.weight_decay:
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
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
    mixed_precision: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    weights: str | None = None,
    progress: TrainProgress | None = None,
    data_progress: Callable[[int, int, str], None] | None = None,
) -> TrainResult:
    """Train ``arch`` with ``recipe``; write and return the run. Ctrl-C leaves a resumable run.

    ``recipe=None`` takes the architecture's own (``fast`` for fastnet, else ``default``).
    """
    from cifarkit.models import create_model, get_model_info

    info = get_model_info(arch)  # fails early, with close matches, on a bad name
    if arch == "vgg16-finetune":
        # Refuse rather than silently train only the frozen head under the fine-tune name.
        raise UsageError(
            "training vgg16-finetune (head, then block5 unfrozen at a low learning rate) is not "
            "implemented yet; train vgg16-transfer for the frozen-base model"
        )
    if recipe is None:
        recipe = str(info.train_defaults.get("recipe", "default"))
    rec = get_recipe(recipe, epochs=epochs, batch_size=batch_size, lr=lr, val_split=val_split,
                     weight_decay=weight_decay, label_smoothing=label_smoothing)
    run_dir = Path(out) if out is not None else Path("runs") / arch
    backup = run_dir / ".backup"
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {run_dir} exists and is not a folder")
    if resume:
        if not (backup / "run-config.json").is_file():
            raise UsageError(f"{run_dir}: nothing to resume (no interrupted run in {backup})")
        saved = json.loads((backup / "run-config.json").read_text())
        if saved["arch"] != arch or saved["recipe"] != rec.to_dict():
            raise UsageError(
                f"{run_dir}: the interrupted run used {saved['arch']} with recipe "
                f"{saved['recipe']['name']} {saved['recipe']}; resume with the same options"
            )
    elif backup.exists():
        if not overwrite:
            raise UsageError(
                f"{run_dir} holds an interrupted run; pass --resume to continue it or "
                "--overwrite to start again"
            )
        shutil.rmtree(backup)
    emit = progress or (lambda event, info: None)

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
            kwargs["weights"] = weights if weights is not None else info.pretrained
        elif weights is not None:
            raise UsageError(f"{arch} has no pretrained weights; --weights is for VGG16 models")
        model = create_model(arch, **kwargs)
    finally:
        keras.config.set_dtype_policy(policy)

    if info.data_init is not None and not resume:
        info.data_init(model, x_tr)  # e.g. fastnet's patch-whitening stem
    steps = int(np.ceil(len(x_tr) / rec.batch_size))
    model.compile(
        optimizer=_optimizer(rec, steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=rec.label_smoothing),
        metrics=["accuracy"],
    )
    device = describe_device()
    run_dir.mkdir(parents=True, exist_ok=True)
    backup.mkdir(exist_ok=True)
    write_json(backup / "run-config.json", {"arch": arch, "recipe": rec.to_dict(), "seed": seed})

    history: dict[str, list[float]] = {}
    epoch_seconds: list[float] = []
    if resume and (backup / "history.json").is_file():
        saved_hist = json.loads((backup / "history.json").read_text())
        history, epoch_seconds = saved_hist["history"], saved_hist["epoch_seconds"]

    callbacks: list[Any] = [
        keras.callbacks.BackupAndRestore(os.fspath(backup / "keras"), save_freq="epoch",
                                         delete_checkpoint=False),
        _history_callback(run_dir, history, epoch_seconds),
    ]
    has_val = len(x_val) > 0
    best_path = backup / "best.weights.h5"
    if rec.restore_best and has_val:
        callbacks.append(keras.callbacks.ModelCheckpoint(
            os.fspath(best_path), monitor="val_accuracy", mode="max",
            save_best_only=True, save_weights_only=True, verbose=0,
            # On resume, only a better epoch than the ones already run replaces the best.
            initial_value_threshold=max(history.get("val_accuracy", [None]) or [None],
                                        key=lambda v: -1 if v is None else v)))
    if rec.lookahead:
        from cifarkit.train.schedules import lookahead_callback

        callbacks.append(lookahead_callback(rec.epochs * steps))
    callbacks.append(_ProgressCallback(emit, rec.epochs, steps))

    if rec.flip or rec.translate:
        from cifarkit.train.augment import AugmentedBatches

        train_data: Any = AugmentedBatches(x_tr, _one_hot(y_tr), rec.batch_size,
                                           flip=rec.flip, translate=rec.translate, seed=seed)
        fit_kwargs: dict[str, Any] = {}
    else:
        train_data = x_tr.astype(np.float32)
        fit_kwargs = {"y": _one_hot(y_tr), "batch_size": rec.batch_size, "shuffle": True}
    emit("start", {"arch": arch, "recipe": rec.to_dict(), "device": device, "steps": steps,
                   "resumed_epochs": len(epoch_seconds)})
    model.build((None, 32, 32, 3))
    interrupted = False
    try:
        model.fit(
            train_data,
            epochs=rec.epochs,
            validation_data=(x_val.astype(np.float32), _one_hot(y_val)) if has_val else None,
            validation_batch_size=500,
            callbacks=callbacks,
            verbose=0,
            **fit_kwargs,
        )
    except KeyboardInterrupt:
        interrupted = True
    if interrupted:
        done = len(epoch_seconds)
        write_json(run_dir / "run.json", {
            "arch": arch, "recipe": rec.name, "status": "interrupted",
            "epochs_completed": done, "hyperparameters": rec.to_dict(), "seed": seed,
            "resume": f"cifarkit train {arch} --recipe {rec.name} --out {run_dir} --resume",
        })
        return TrainResult(run_dir, arch, rec, history, epoch_seconds, None, None,
                           float("nan"), float("nan"), device, interrupted=True)

    best_epoch = None
    val_acc = None
    if has_val and "val_accuracy" in history:
        vals = history["val_accuracy"]
        if rec.restore_best and best_path.is_file():
            best_epoch = int(np.argmax(vals)) + 1
            model.load_weights(os.fspath(best_path))
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
    write_json(run_dir / "run.json", {
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
        "command": " ".join(["cifarkit", *sys.argv[1:]]) if sys.argv else "",
    })
    shutil.rmtree(backup, ignore_errors=True)
    emit("done", {"test_accuracy": test_acc})
    return TrainResult(run_dir, arch, rec, history, epoch_seconds, best_epoch, val_acc,
                       test_acc, test_loss, device)


def _history_csv(history: dict[str, list[float]], seconds: list[float]) -> str:
    keys = list(history)
    lines = [",".join(["epoch", *keys, "seconds"])]
    for i, s in enumerate(seconds):
        row = [str(i + 1)] + [f"{history[k][i]:.6g}" if i < len(history[k]) else "" for k in keys]
        lines.append(",".join([*row, f"{s:.3f}"]))
    return "\n".join(lines) + "\n"


__all__ = ["TrainResult", "describe_device", "train"]
