"""VGG16's training (:func:`fit_frozen_base`, called by ``train``): the head phase on the
frozen base's cached features (``vgg16-transfer``), then ``vgg16-finetune``'s block5 phase.

With VGG16's conv base frozen, every epoch through the full model repeats the same forward
pass through the base on the same images (about 0.3 GFLOP per 32×32 image, nearly all of
the work) while only the head (Flatten → Dense 512 → 10) learns. So the base's outputs are
computed once and the head trains on them: an epoch becomes a pass over a few hundred
numbers per image. The feature model and the head model are built from the full model's own
layers, so training the head trains the full model's head: ``model.keras`` stays the complete
end-to-end model (raw RGB 0–255 in, probabilities out).

Augmentation: a random horizontal flip of an image is a random choice between two cached
feature sets (the images' and their mirror images'), so flips are kept exactly, at twice the
one-off cost. Translations would need one feature set per offset (81 for ±4 px), so the
cached phase does without them; ``train(..., feature_cache=False)`` trains through the frozen
base with the recipe's full augmentation instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import keras
import numpy as np

from cifarkit._io import atomic_path, write_json
from cifarkit.errors import ModelError, UsageError
from cifarkit.train.augment import EpochBatches
from cifarkit.train.fit import Fitter, dtype_policy, load_weights

#: Above this many bytes of cached features, ``train`` goes through the base instead
#: (e.g. 45,000 images at --image-size 224 would need 4.5 GB, twice that with flips).
FEATURE_CACHE_LIMIT = 4 * 1024**3


def split_at(model: Any, layer_name: str = "vgg16") -> tuple[Any, Any]:
    """``(features, head)``: the layers up to and including ``layer_name``, and those after it.

    Both are new ``keras.Model`` s over the full model's own layers (shared weights), so
    ``head(features(x)) == model(x)`` and fitting ``head`` updates ``model``. The full model
    must be a chain of single-input layers, as the VGG builders make it.
    """
    names = [layer.name for layer in model.layers]
    if layer_name not in names:
        raise ModelError(f"{model.name} has no layer {layer_name!r} to split at")
    if not isinstance(model.layers[0], keras.layers.InputLayer):
        raise ModelError(f"{model.name} is not a functional model with one input")
    cut = names.index(layer_name)
    with dtype_policy(model.dtype_policy):  # a mixed-precision head gets loss scaling too
        images = keras.Input(model.input_shape[1:], name="images")
        x = images
        for layer in model.layers[1 : cut + 1]:
            x = layer(x)
        features = keras.Model(images, x, name=f"{model.name}-features")
        inputs = keras.Input(tuple(x.shape[1:]), name="features")
        y = inputs
        for layer in model.layers[cut + 1 :]:
            y = layer(y)
        head = keras.Model(inputs, y, name=f"{model.name}-head")
    if head.output_shape != model.output_shape:
        raise ModelError(f"{model.name} is not a chain of layers after {layer_name!r}")
    return features, head


def features_per_image(features: Any) -> int:
    """Numbers per image in the cached features (e.g. 512 for VGG16 at 32×32)."""
    return int(np.prod(features.output_shape[1:]))


def compute_features(features: Any, x: np.ndarray, *, batch_size: int, flip: bool = False,
                     progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """``features`` applied to the images ``x`` (NHWC, 0–255) or, with ``flip``, to their
    mirror images; float32, computed ``batch_size`` images at a time."""
    out = np.empty((len(x), *features.output_shape[1:]), np.float32)
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        if flip:
            xb = xb[:, :, ::-1]
        out[start : start + len(xb)] = np.asarray(
            features.predict_on_batch(xb.astype(np.float32)), dtype=np.float32
        )
        if progress is not None:
            progress(start + len(xb), len(x))
    return out


def feature_batch_size(image_size: int) -> int:
    """Images per forward pass when caching: ~256 at 32×32, fewer as activations grow."""
    # block1's activations (size² × 64 floats per image) dominate memory; keep them ~1 GB.
    return max(8, int(256 * (32 / image_size) ** 2))


class CachedFeatureBatches(EpochBatches):
    """Shuffled batches of ``(features, one_hot)``; with ``mirrored``, each example's mirror
    image features are used with probability 1/2: a random horizontal flip, from the cache.
    Each epoch's draws depend on ``(seed, epoch)`` only (``augment.EpochBatches``)."""

    def __init__(self, features: np.ndarray, mirrored: np.ndarray | None, y_onehot: np.ndarray,
                 batch_size: int, *, seed: int, start_epoch: int = 0) -> None:
        super().__init__(len(features), batch_size, seed=seed, start_epoch=start_epoch)
        self.features, self.mirrored, self.y = features, mirrored, y_onehot

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.indices(index)
        xb = self.features[idx]
        if self.mirrored is not None:
            flip = self.rng.random(len(idx)) < 0.5
            xb[flip] = self.mirrored[idx[flip]]  # xb is a copy (fancy indexing)
        return xb, self.y[idx]


def frozen_base_options(
    arch: str, info: Any, *, weights: str | None, image_size: int | None,
    feature_cache: bool | None, finetune_epochs: int | None, finetune_lr: float | None,
) -> dict[str, Any]:
    """The VGG16-only options, checked and with their defaults; ``{}`` for other models."""
    used = [f for f, v in (("--image-size", image_size), ("--[no-]feature-cache", feature_cache),
                           ("--finetune-epochs", finetune_epochs), ("--finetune-lr", finetune_lr))
            if v is not None]
    finetune_flags = [f for f in used if f.startswith("--finetune")]
    if info.family != "vgg":
        if used:
            raise UsageError(f"{', '.join(used)}: only for the VGG16 models; "
                             f"{arch} trains end to end on 32×32 images")
        if weights is not None:
            raise UsageError(f"{arch} has no pretrained weights; --weights is for VGG16 models")
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


def fit_frozen_base(fitter: Fitter) -> dict[str, Any]:
    """The head with the base frozen, then for ``vgg16-finetune`` block5 too; run.json's
    VGG16 facts. A run resumed after the head phase starts from its saved weights."""
    plan, model = fitter.plan, fitter.model
    finetune = "finetune_epochs" in plan.options
    phase1 = plan.backup / "phase1.weights.h5"
    if finetune and plan.given.resume and phase1.is_file():
        load_weights(model, phase1)
        facts = json.loads((plan.backup / "phase1.json").read_text())
    else:
        facts = _head_phase(fitter)
        if finetune:
            write_json(plan.backup / "phase1.json", facts)
            with atomic_path(phase1, suffix=".weights.h5") as tmp:
                model.save_weights(tmp)
    out = {"image_size": plan.options["image_size"],
           **{k: facts.get(k) for k in ("feature_cache", "phases", "notes")}}
    if finetune:
        _block5_phase(fitter, out)
    return out


def _head_phase(fitter: Fitter) -> dict[str, Any]:
    """Phase 1: the head on the base's cached features, or through the frozen base where the
    cache is off or would not fit in memory."""
    plan, rec, data = fitter.plan, fitter.plan.recipe, fitter.data
    facts: dict[str, Any] = {"phases": [], "notes": []}
    features = head = None
    images = len(data.x_train) * (2 if rec.flip else 1) + len(data.x_val)
    if plan.options["feature_cache"]:
        features, head = split_at(fitter.model, "vgg16")
        cache_bytes = images * features_per_image(features) * 4
        if cache_bytes > FEATURE_CACHE_LIMIT:
            features = None
            facts["notes"].append(
                f"features would take {cache_bytes / 1024**3:.1f} GiB (limit "
                f"{FEATURE_CACHE_LIMIT / 1024**3:.0f} GiB): the head trained through the "
                "frozen base instead")
    plan.emit("phase", {"phase": 1, "name": "head", "epochs": rec.epochs,
                        "cached": features is not None})
    if features is not None:
        batches, validation = _cache(fitter, features, images, facts)
        fitter.compile(head, rec)
        fitter.fit(head, batches, rec, validation, "keras-head")
    else:
        facts["feature_cache"] = {"used": False}
        fitter.fit(fitter.model, fitter.images(rec, plan.seed), rec, fitter.validation, "keras")
    facts["phases"].append({"name": "head", "epochs": rec.epochs,
                            "on": "cached features" if features is not None else "images",
                            "trainable_params": _trainable_params(fitter.model)})
    return facts


def _cache(fitter: Fitter, features: Any, total: int,
           facts: dict[str, Any]) -> tuple[tuple[Any, dict[str, Any]], Any]:
    """The head phase's training data and validation from features computed once (and of
    the mirror images, for the recipe's flips); ``facts`` gets the cache's description."""
    plan, rec, data = fitter.plan, fitter.plan.recipe, fitter.data
    chunk, done = feature_batch_size(plan.options["image_size"]), 0

    def extract(x: np.ndarray, flip: bool = False) -> np.ndarray:
        nonlocal done
        start, done = done, done + len(x)
        return compute_features(features, x, batch_size=chunk, flip=flip, progress=lambda n, _:
                                plan.emit("features", {"done": start + n, "total": total}))

    t0 = time.perf_counter()
    f_tr = extract(data.x_train)
    f_mirror = extract(data.x_train, flip=True) if rec.flip else None
    f_val = extract(data.x_val) if len(data.x_val) else None
    seconds = time.perf_counter() - t0
    plan.emit("features_done", {"images": total, "seconds": seconds})
    cached = [f for f in (f_tr, f_mirror, f_val) if f is not None]
    facts["feature_cache"] = {
        "used": True, "seconds": round(seconds, 3), "images": total, "mirrored": rec.flip,
        "shape": list(f_tr.shape[1:]), "megabytes": round(sum(f.nbytes for f in cached) / 1e6, 1)}
    skipped = [s for s, on in ((f"±{rec.translate} px translations", rec.translate),
                               (f"{rec.cutout} px cutout", rec.cutout)) if on]
    if skipped:
        facts["notes"].append(
            f"head phase on cached features: random flips kept (mirror-image features), "
            f"{' and '.join(skipped)} not applied (--no-feature-cache applies them, at a full "
            "VGG16 pass per epoch)")
    y = fitter.one_hot(data.y_train)
    validation = (f_val, fitter.one_hot(data.y_val)) if f_val is not None else None
    if rec.flip:
        return (CachedFeatureBatches(f_tr, f_mirror, y, rec.batch_size, seed=plan.seed,
                                     start_epoch=len(fitter.epoch_seconds)), {}), validation
    return (f_tr, {"y": y, "batch_size": rec.batch_size, "shuffle": True}), validation


def _block5_phase(fitter: Fitter, out: dict[str, Any]) -> None:
    """Phase 2 of ``vgg16-finetune``: block5 unfrozen; its facts added to ``out``."""
    from cifarkit.models.vgg import unfreeze_block5

    plan, model = fitter.plan, fitter.model
    # The recipe's batch size, decay, smoothing and augmentation, but Nesterov SGD from a
    # low learning rate decaying to 0, so block5 is adjusted, not overwritten.
    rec = replace(plan.recipe, epochs=plan.options["finetune_epochs"],
                  lr=plan.options["finetune_lr"], momentum=0.9, nesterov=True,
                  warmup_epochs=0.0, schedule="cosine", lookahead=False)
    unfreeze_block5(model)
    fitter.compile(model, rec)  # trainability changes need a new compile
    plan.emit("phase", {"phase": 2, "name": "block5", "epochs": rec.epochs, "lr": rec.lr,
                        "cached": False})
    fitter.fit(model, fitter.images(rec, plan.seed + 1), rec, fitter.validation, "keras-block5")
    out["phases"].append({
        "name": "block5", "epochs": rec.epochs, "on": "images",
        "trainable_params": _trainable_params(model),
        "trainable_layers": [layer.name for layer in model.get_layer("vgg16").layers
                             if layer.trainable and layer.weights],
        "optimizer": "SGD (Nesterov, momentum 0.9), cosine decay to 0", "lr": rec.lr,
    })
    out["finetune"] = rec.to_dict()


def _trainable_params(model: Any) -> int:
    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))


__all__ = ["FEATURE_CACHE_LIMIT", "CachedFeatureBatches", "compute_features",
           "feature_batch_size", "features_per_image", "fit_frozen_base", "frozen_base_options",
           "split_at"]
