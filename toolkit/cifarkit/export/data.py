"""The images an export runs on, all drawn here from one ``Dataset``.

``resolve_data`` finds the dataset (``cifarkit.data.load_dataset``: CIFAR-10 or any
image-folder tree, so a user's data slots in; synthetic pixels when there is none);
``export_images`` takes from it the held-out images accuracy, speed and the "runs in" table
are measured on, the parity images (a stratified subset of those) and the int8 calibration
images (stratified *training* images), checked against the model's image size and classes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifarkit.contract import CIFAR10_CLASSES
from cifarkit.data import Dataset, load_dataset, stratified_subset
from cifarkit.errors import DataError

SYNTHETIC_KIND = "synthetic"


def synthetic_dataset(n_train: int = 1000, n_test: int = 1000, seed: int = 0, *,
                      image_size: int = 32,
                      classes: Sequence[str] = CIFAR10_CLASSES) -> Dataset:
    """Random uint8 pixels with random labels: exports can be checked without real data.

    Accuracy on it means nothing, so the pipeline does not report any; parity still holds.
    """
    rng = np.random.default_rng(seed)
    shape = (image_size, image_size, 3)
    return Dataset(
        x_train=rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        y_train=rng.integers(0, len(classes), n_train).astype(np.int64),
        x_test=rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        y_test=rng.integers(0, len(classes), n_test).astype(np.int64),
        source="synthetic (random uint8 pixels; no CIFAR-10 data found)",
        kind=SYNTHETIC_KIND, classes=tuple(classes), image_size=image_size,
    )


def resolve_data(
    data: Dataset | str | os.PathLike[str] | None = None,
    *,
    progress: Callable[[int, int, str], None] | None = None,
    image_size: int = 32,
) -> Dataset:
    """The data an export is measured on.

    A ``Dataset`` is used as is; a path is loaded at the model's ``image_size`` (errors are
    errors); ``None`` looks for
    ``$CIFARKIT_DATA`` and Keras's cache (never downloads) and falls back to synthetic pixels.
    """
    if isinstance(data, Dataset):
        return data
    if data is not None or os.environ.get("CIFARKIT_DATA"):
        return load_dataset(data, progress=progress, image_size=image_size)
    try:
        return load_dataset(None, download=False, progress=progress, image_size=image_size)
    except DataError:
        return synthetic_dataset()


def subset(y: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Indices of a stratified subset of ``n`` labels (all of them when ``n`` is None or
    at least their number)."""
    if n is None or n >= len(y):
        return np.arange(len(y))
    return stratified_subset(y, n, seed)


@dataclass(frozen=True)
class ExportImages:
    """What one export runs on. ``x_parity`` is None when parity is not checked."""

    source: str
    synthetic: bool
    x_test: np.ndarray
    y_test: np.ndarray
    x_parity: np.ndarray | None
    x_calibration: np.ndarray
    #: The data's folder, when the images came from one (for the reproduce command).
    path: str | None

    @property
    def labelled(self) -> bool:
        """True when accuracy means something (real images with their labels)."""
        return not self.synthetic


def export_images(
    ds: Dataset, classes: Sequence[str], image_size: int, *, limit: int | None,
    parity_images: int | None, calibration_images: int, seed: int,
) -> ExportImages:
    """The test, parity and calibration images of ``ds`` for a model that takes
    ``image_size``² images and names ``classes`` (``DataError`` when the data does not fit).

    Synthetic data is redrawn at the model's size and class count, so any model can be
    checked without data."""
    synthetic = ds.kind == SYNTHETIC_KIND
    if synthetic and (ds.x_test.shape[1:3] != (image_size, image_size)
                      or len(ds.classes) != len(classes)):
        ds = synthetic_dataset(len(ds.y_train), len(ds.y_test), image_size=image_size,
                               classes=classes)
    _check_fits(ds, classes, image_size)
    _, x_held, y_held = ds.held_out()
    test = subset(y_held, limit, seed)
    x_test, y_test = x_held[test], y_held[test]
    parity = None if parity_images is None else x_test[subset(y_test, parity_images, seed)]
    calibration = ds.x_train[subset(ds.y_train, calibration_images, seed)]
    path = None if synthetic or not Path(ds.source).exists() else ds.source
    return ExportImages(ds.source, synthetic, x_test, y_test, parity, calibration, path)


def _check_fits(ds: Dataset, classes: Sequence[str], image_size: int) -> None:
    _, x_held, y_held = ds.held_out()
    size = x_held.shape[1] if x_held.ndim == 4 else None
    if size != image_size:
        raise DataError(f"{ds.source}: the images are {size}×{size} but the model takes "
                        f"{image_size}×{image_size}; export needs data at the model's size")
    if len(y_held) == 0:
        raise DataError(f"{ds.source}: no test (or validation) images to measure the export "
                        "on")
    if ds.kind != SYNTHETIC_KIND and int(y_held.max()) >= len(classes):
        raise DataError(f"{ds.source}: labels go up to {int(y_held.max())} but the model has "
                        f"{len(classes)} classes ({', '.join(classes)})")
