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


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled mini-batches of ``(images, one_hot)``, reshuffled and re-augmented each epoch.

    ``alternate_flip`` (airbench): a fixed random half of the images is flipped in even
    epochs and the other half in odd ones, so any two consecutive epochs show every image
    both ways, where independent coin flips show half of them one way only.
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
        start_epoch: int = 0,
    ) -> None:
        super().__init__()
        self.x, self.y = x, y_onehot
        self.batch_size = batch_size
        self.flip, self.translate = flip, translate
        self.seed = seed
        # The half flipped in even epochs: fixed for the run, so from the seed alone.
        self.flip_mask = (np.random.default_rng(seed).random(len(x)) < 0.5
                          if flip and alternate_flip else None)
        self._start(start_epoch)

    def _start(self, epoch: int) -> None:
        self.epoch = epoch
        self.rng = epoch_rng(self.seed, epoch)
        self.order = self.rng.permutation(len(self.x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        mask = None
        if self.flip_mask is not None:
            mask = self.flip_mask[idx] ^ bool(self.epoch % 2)
        xb = flip_translate(self.x[idx], self.rng, self.flip, self.translate, flip_mask=mask)
        return xb.astype(np.float32), self.y[idx]

    def on_epoch_end(self) -> None:
        self._start(self.epoch + 1)
