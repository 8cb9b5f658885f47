"""Batches with CIFAR augmentation, in numpy, as a ``keras.utils.PyDataset``.

Numpy rather than tf.image or Keras preprocessing layers: the same code feeds every Keras
backend (TensorFlow, JAX, PyTorch), and augmentation stays out of the exported graph.
"""

from __future__ import annotations

import math

import keras
import numpy as np


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The random stream of one training epoch, a function of ``(seed, epoch)`` only.

    A run resumed after epoch k therefore draws exactly the batches and augmentations the
    uninterrupted run would have: one generator carried across epochs would restart at
    epoch 1's draws on resume and replay batches the model has just trained on.
    """
    return np.random.default_rng([seed, epoch])


def flip_translate(
    x: np.ndarray, rng: np.random.Generator, flip: bool, translate: int,
    flip_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Horizontal flips (random, or of the images ``flip_mask`` selects) and random
    translations up to ``translate`` px (reflection padding)."""
    out = x
    if flip:
        mask = rng.random(len(x)) < 0.5 if flip_mask is None else flip_mask
        out = out.copy()
        out[mask] = out[mask, :, ::-1]
    if translate:
        t = translate
        padded = np.pad(out, ((0, 0), (t, t), (t, t), (0, 0)), mode="reflect")
        dy = rng.integers(0, 2 * t + 1, len(x))
        dx = rng.integers(0, 2 * t + 1, len(x))
        h, w = x.shape[1:3]
        # One fancy-indexing gather for the whole batch: rows and columns per image.
        rows = (dy[:, None] + np.arange(h)[None, :])[:, :, None]
        cols = (dx[:, None] + np.arange(w)[None, :])[:, None, :]
        out = padded[np.arange(len(x))[:, None, None], rows, cols]
    return out


def cutout(x: np.ndarray, rng: np.random.Generator, size: int, fill: np.ndarray) -> np.ndarray:
    """Cutout (DeVries & Taylor 2017, as airbench96 uses it): one ``size``×``size`` square
    per image, placed uniformly so it lies wholly inside, set to ``fill`` (the per-channel
    mean pixel: about zero after the models' normalisation)."""
    n, h, w = x.shape[:3]
    y0 = rng.integers(0, h - size + 1, n)
    x0 = rng.integers(0, w - size + 1, n)
    rows = np.arange(h)[None, :, None]
    cols = np.arange(w)[None, None, :]
    inside = ((rows >= y0[:, None, None]) & (rows < (y0 + size)[:, None, None])
              & (cols >= x0[:, None, None]) & (cols < (x0 + size)[:, None, None]))
    return np.where(inside[..., None], fill.astype(x.dtype), x)


class EpochBatches(keras.utils.PyDataset):
    """Mini-batches of ``n`` examples in an order reshuffled each epoch: the order and the
    epoch's draws (``self.rng``) depend on ``(seed, epoch)`` only (:func:`epoch_rng`), so a
    run resumed after ``start_epoch`` epochs continues the uninterrupted run's stream.
    Subclasses build batch ``index`` from ``self.indices(index)``."""

    def __init__(self, n: int, batch_size: int, *, seed: int, start_epoch: int = 0) -> None:
        super().__init__()
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._start(start_epoch)

    def _start(self, epoch: int) -> None:
        self.epoch = epoch
        self.rng = epoch_rng(self.seed, epoch)
        self.order = self.rng.permutation(self.n)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def indices(self, index: int) -> np.ndarray:
        return self.order[index * self.batch_size : (index + 1) * self.batch_size]

    def on_epoch_end(self) -> None:
        self._start(self.epoch + 1)


class AugmentedBatches(EpochBatches):
    """Shuffled mini-batches of ``(images, one_hot)``, reshuffled and re-augmented each epoch.

    ``alternate_flip`` (airbench): a fixed random half of the images is flipped in even
    epochs and the other half in odd ones, so any two consecutive epochs show every image
    both ways, where independent coin flips show half of them one way only.
    ``cutout``: the side of the square :func:`cutout` fills in each image (0: off).
    ``start_epoch``: epochs already trained (a resumed run); see :func:`epoch_rng`.
    """

    def __init__(
        self,
        x: np.ndarray,
        y_onehot: np.ndarray,
        batch_size: int,
        *,
        flip: bool,
        translate: int,
        seed: int,
        alternate_flip: bool = False,
        cutout: int = 0,
        start_epoch: int = 0,
    ) -> None:
        super().__init__(len(x), batch_size, seed=seed, start_epoch=start_epoch)
        self.x, self.y = x, y_onehot
        self.flip, self.translate = flip, translate
        self.cutout = cutout
        # Rounded to the images' dtype, so uint8 batches stay uint8 until the final cast.
        self.fill = (np.round(x.mean(axis=(0, 1, 2))).astype(x.dtype) if cutout
                     else np.zeros(x.shape[-1], x.dtype))
        # The half flipped in even epochs: fixed for the run, so from the seed alone.
        self.flip_mask = (np.random.default_rng(seed).random(len(x)) < 0.5
                          if flip and alternate_flip else None)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.indices(index)
        mask = None
        if self.flip_mask is not None:
            mask = self.flip_mask[idx] ^ bool(self.epoch % 2)
        xb = flip_translate(self.x[idx], self.rng, self.flip, self.translate, flip_mask=mask)
        if self.cutout:
            xb = cutout(xb, self.rng, self.cutout, self.fill)
        return xb.astype(np.float32), self.y[idx]
