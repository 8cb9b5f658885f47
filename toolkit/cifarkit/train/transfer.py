"""Frozen-base training on cached features: ``vgg16-transfer``, and phase 1 of fine-tuning.

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

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from cifarkit.errors import ModelError
from cifarkit.train.augment import epoch_rng

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


def compute_features(
    features: Any,
    x: np.ndarray,
    *,
    batch_size: int,
    flip: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
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


class CachedFeatureBatches(keras.utils.PyDataset):
    """Shuffled batches of ``(features, one_hot)``; with ``mirrored``, each example's mirror
    image features are used with probability 1/2: a random horizontal flip, from the cache.
    Each epoch's draws depend on ``(seed, epoch)`` only, so a resumed run (``start_epoch``)
    continues the uninterrupted run's stream (see ``cifarkit.train.augment.epoch_rng``)."""

    def __init__(
        self,
        features: np.ndarray,
        mirrored: np.ndarray | None,
        y_onehot: np.ndarray,
        batch_size: int,
        *,
        seed: int,
        start_epoch: int = 0,
    ) -> None:
        super().__init__()
        self.features, self.mirrored, self.y = features, mirrored, y_onehot
        self.batch_size = batch_size
        self.seed = seed
        self._start(start_epoch)

    def _start(self, epoch: int) -> None:
        self.epoch = epoch
        self.rng = epoch_rng(self.seed, epoch)
        self.order = self.rng.permutation(len(self.features))

    def __len__(self) -> int:
        return math.ceil(len(self.features) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        xb = self.features[idx]
        if self.mirrored is not None:
            flip = self.rng.random(len(idx)) < 0.5
            xb[flip] = self.mirrored[idx[flip]]  # xb is a copy (fancy indexing)
        return xb, self.y[idx]

    def on_epoch_end(self) -> None:
        self._start(self.epoch + 1)


__all__ = [
    "FEATURE_CACHE_LIMIT",
    "CachedFeatureBatches",
    "compute_features",
    "feature_batch_size",
    "features_per_image",
    "split_at",
]
