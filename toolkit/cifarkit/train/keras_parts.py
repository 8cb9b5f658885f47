"""The Keras pieces ``train``'s steps use: device and versions, the learning-rate schedule
and optimizer, best-epoch keeping, dtype policy, weight loading, one evaluation pass."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit._io import atomic_path
from cifarkit.errors import UsageError
from cifarkit.train.recipes import Recipe


def describe_device() -> str:
    """The accelerator Keras's backend will use, e.g. ``tensorflow: GPU:0`` or ``jax: cpu``."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            if gpus := tf.config.list_physical_devices("GPU"):
                names = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
                         for g in gpus]
                return f"tensorflow: GPU ({', '.join(names)})"
            return f"tensorflow: CPU ({os.cpu_count()} cores)"
        if backend == "jax":
            import jax

            devs = jax.devices()
            return f"jax: {devs[0].platform} ({', '.join(str(d.device_kind) for d in devs)})"
        if backend == "torch":
            import torch

            cuda = torch.cuda.is_available()
            return f"torch: cuda ({torch.cuda.get_device_name(0)})" if cuda else "torch: cpu"
    except Exception as exc:  # device discovery must never stop training
        return f"{backend}: unknown ({exc})"
    return backend


def _versions() -> dict[str, str]:
    import keras

    import cifarkit

    out = {"python": platform.python_version(), "cifarkit": cifarkit.__version__,
           "keras": keras.__version__, "numpy": np.__version__, "backend": keras.backend.backend()}
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
            initial_learning_rate=0.0 if warmup else peak, decay_steps=max(1, total - warmup),
            alpha=0.0, warmup_target=peak if warmup else None, warmup_steps=warmup)
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


def _keep_best(target: Any, path: Path, best: float | None) -> Any:
    """Save ``target``'s weights, atomically, whenever validation accuracy beats ``best``.
    Unlike ``ModelCheckpoint`` it can save a model other than the one being fitted: while the
    head trains on cached features, the full model's weights are the ones kept."""
    import keras

    class _KeepBest(keras.callbacks.Callback):
        best_value = best  # per instance once an epoch beats it

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            value = (logs or {}).get("val_accuracy")
            if value is None or (self.best_value is not None and not value > self.best_value):
                return
            self.best_value = float(value)
            with atomic_path(path, suffix=".weights.h5") as tmp:
                target.save_weights(tmp)

    return _KeepBest()


@contextmanager
def dtype_policy(policy: Any) -> Iterator[None]:
    """Keras's global dtype policy set to ``policy`` (``None``: unchanged) while models are
    built in the block: they take it (mixed precision: float16 compute, loss scaling)."""
    import keras

    saved = keras.config.dtype_policy()
    keras.config.set_dtype_policy(saved if policy is None else policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(saved)


def load_weights(model: Any, path: Path) -> None:
    """Load saved model weights; the optimizer state in the file is not wanted."""
    import warnings

    with warnings.catch_warnings():
        # A best epoch saved in another phase carries that phase's optimizer; Keras skips it
        # with a warning, which is exactly what should happen.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(os.fspath(path))


def _evaluate(model: Any, x: np.ndarray, y: np.ndarray, batch: int = 500) -> tuple[float, float]:
    """Top-1 accuracy and (unsmoothed) cross-entropy on ``x``."""
    probs = np.asarray(model.predict(x.astype(np.float32), batch_size=batch, verbose=0),
                       dtype=np.float64)
    acc = float(np.mean(np.argmax(probs, axis=1) == y))
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None))))
    return acc, loss

