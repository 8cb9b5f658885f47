"""A dataset from wherever it is: any image-folder tree, or CIFAR-10 in any of its forms.

Order of precedence (first match wins):
1. ``data=`` / ``--data PATH`` or ``$CIFARKIT_DATA``: an image-folder tree with any classes
   (``train/<class>/``, ``val/<class>/``, ``test/<class>/``, or ``<class>/`` alone: see
   :mod:`cifarkit.data.folders`), a ``cifar-10-batches-py`` folder (or a folder holding one),
   or the ``cifar-10-python.tar.gz`` archive;
2. Keras's cache, ``~/.keras/datasets/cifar-10-batches-py`` (``$KERAS_HOME`` respected);
3. Keras's own download (``keras.utils.get_file``), read through the same safe loader.
Every source gives S×S images (``image_size``; CIFAR-10's 32×32 arrays are resized by the
same policy as files).
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cifarkit.contract import CIFAR10_CLASSES, check_image_size
from cifarkit.data.folders import FolderData, LoadOptions, load_folders, split_folders
from cifarkit.data.images import resize_images
from cifarkit.data.safe_pickle import load_batch
from cifarkit.data.splits import stratified_subset
from cifarkit.errors import DataError

CLASSES: tuple[str, ...] = CIFAR10_CLASSES
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
SPLITS = ("train", "test")
ALL_SPLITS = ("train", "val", "test")

#: ``progress(done, total, what)``: called from long loads; the CLI draws a bar from it.
Progress = Callable[[int, int, str], None]


def _empty(size: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, size, size, 3), np.uint8), np.zeros(0, np.int64)


@dataclass
class Dataset:
    """uint8 NHWC images and int64 labels per split (a split absent from the source is
    empty: CIFAR-10 has no val split, class folders alone have no test split)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    kind: str  # "batches", "archive", "folders", "keras-cache", "keras-download"
    classes: tuple[str, ...] = CLASSES
    notes: list[str] = field(default_factory=list)
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    image_size: int = 32
    layout: str = "cifar-10"  # or the folder layout: "splits" / "flat"
    skipped: list[str] = field(default_factory=list)  # "path: reason" of undecodable files
    folders: FolderData | None = None  # file listing and hashes of an image-folder source

    def __post_init__(self) -> None:
        if self.x_val is None or self.y_val is None:
            self.x_val, self.y_val = _empty(self.image_size)

    @property
    def has_val(self) -> bool:
        return len(self.y_val) > 0

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = {"train": (self.x_train, self.y_train), "val": (self.x_val, self.y_val),
                "test": (self.x_test, self.y_test)}[name]
        return x, y

    def held_out(self) -> tuple[str, np.ndarray, np.ndarray]:
        """The split to measure a model on: test, else val (class folders alone)."""
        name = "test" if len(self.y_test) else "val"
        return (name, *self.split(name))

    def as_tuple(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        return (self.x_train, self.y_train), (self.x_test, self.y_test)


def cache_dir() -> Path:
    """Where decoded image folders are cached: ``$CIFARKIT_CACHE`` or the user cache."""
    if env := os.environ.get("CIFARKIT_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cifarkit"


def keras_cache_path() -> Path:
    home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(home) / "datasets" / "cifar-10-batches-py"


# --- pickled batches -------------------------------------------------------------------


def _batches_dir(path: Path) -> Path | None:
    for candidate in (path, path / "cifar-10-batches-py"):
        if (candidate / TEST_BATCH).is_file() or (candidate / TRAIN_BATCHES[0]).is_file():
            return candidate
    return None


def _stack(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _load_batches_dir(folder: Path) -> tuple[np.ndarray, ...]:
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder}: incomplete cifar-10-batches-py folder, missing {missing}")
    parts = []
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        with open(folder / name, "rb") as f:
            parts.append(load_batch(f, str(folder / name)))
    return (*_stack(parts[:5]), *parts[5])


def _load_archive(path: Path) -> tuple[np.ndarray, ...]:
    # Members are read in memory, never extracted, so archive paths cannot escape anywhere.
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if n not in members]
            if missing:
                raise DataError(f"{path}: not a CIFAR-10 python archive (missing {missing})")
            parts = []
            for name in (*TRAIN_BATCHES, TEST_BATCH):
                f = tar.extractfile(members[name])
                assert f is not None
                parts.append(load_batch(f, f"{path}:{name}"))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{path}: cannot read archive: {exc}") from None
    return (*_stack(parts[:5]), *parts[5])


# --- entry points ----------------------------------------------------------------------


@dataclass
class _Request:
    limit: int | None
    seed: int
    progress: Progress | None
    use_cache: bool
    splits: tuple[str, ...]
    image_size: int
    strict: bool


def _load_folders(path: Path, req: _Request) -> Dataset:
    opts = LoadOptions(size=req.image_size, limit=req.limit, seed=req.seed, strict=req.strict,
                       use_cache=req.use_cache, progress=req.progress, cache_root=cache_dir())
    folders = load_folders(path, opts, req.splits)
    arrays = folders.arrays
    if "train" in req.splits and "train" not in arrays and "test" not in req.splits:
        raise DataError(f"{path}: no train/ folder (expected train/<class>/<images>)")
    if not arrays:
        wanted = " or ".join(f"{s}/" for s in req.splits)
        have = ", ".join(sorted(split_folders(path))) or "none"
        raise DataError(f"{path}: no {wanted} split to read (it has: {have}; choose one with "
                        "--split)")
    empty = _empty(req.image_size)
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (arrays.get(s, empty) for s in ALL_SPLITS)
    return Dataset(x_tr, y_tr, x_te, y_te, source=str(path), kind="folders",
                   classes=folders.classes, notes=folders.notes, x_val=x_va, y_val=y_va,
                   image_size=req.image_size, layout=folders.layout, skipped=folders.skipped,
                   folders=folders)


def _load_path(path: Path, req: _Request) -> Dataset:
    if not path.exists():
        raise DataError(f"data path {path} does not exist")
    if path.is_file():
        return _finish(_load_archive(path), str(path), "archive", req)
    if (folder := _batches_dir(path)) is not None:
        return _finish(_load_batches_dir(folder), str(path), "batches", req)
    if path.is_dir():
        return _load_folders(path, req)
    raise DataError(f"{path}: not a data source. Expected a folder of class folders "
                    "(<class>/ or train/<class>/ …), a cifar-10-batches-py folder or the "
                    "cifar-10-python.tar.gz archive")


def _finish(arrays: tuple[np.ndarray, ...], source: str, kind: str, req: _Request) -> Dataset:
    x_train, y_train, x_test, y_test = arrays
    for split, x in (("train", x_train), ("test", x_test)):
        if split in req.splits and len(x) == 0:
            raise DataError(f"{source}: the {split} split is empty")
    if req.limit:
        tr = stratified_subset(y_train, req.limit, req.seed) if len(y_train) else slice(None)
        te = stratified_subset(y_test, req.limit, req.seed) if len(y_test) else slice(None)
        x_train, y_train, x_test, y_test = x_train[tr], y_train[tr], x_test[te], y_test[te]
    notes = []
    if req.image_size != 32:
        x_train, x_test = (resize_images(x, req.image_size) for x in (x_train, x_test))
        notes.append(f"CIFAR-10's 32×32 images resized to {req.image_size}×{req.image_size}")
    return Dataset(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64),
                   source=source, kind=kind, notes=notes, image_size=req.image_size)


def load_dataset(
    data: str | os.PathLike[str] | None = None,
    *,
    limit: int | None = None,
    seed: int = 0,
    download: bool | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
    splits: tuple[str, ...] = ALL_SPLITS,
    image_size: int = 32,
    strict: bool = False,
) -> Dataset:
    """Load a dataset as uint8 NHWC ``image_size``² images and int64 labels, with where it
    came from.

    ``limit`` keeps a stratified subset of ``limit`` images per split (seeded).
    ``download`` defaults to true unless ``$CIFARKIT_NO_DOWNLOAD`` is set.
    ``splits``: e.g. ``("test",)`` skips decoding the other splits of an image-folder source
    (they are then empty); pickled sources always hold train and test.
    ``strict``: an image file that cannot be decoded fails the load (default: skipped and
    listed in ``Dataset.skipped``).
    """
    unknown = [s for s in splits if s not in ALL_SPLITS]
    if unknown or not splits:
        raise DataError(f"splits must be a non-empty subset of {ALL_SPLITS}, got {splits}")
    req = _Request(limit, seed, progress, use_cache, tuple(splits), check_image_size(image_size),
                   strict)
    if data is None and os.environ.get("CIFARKIT_DATA"):
        data = os.environ["CIFARKIT_DATA"]
    if data is not None:
        return _load_path(Path(data).expanduser(), req)
    cached = keras_cache_path()
    if _batches_dir(cached) is not None:
        return _finish(_load_batches_dir(cached), str(cached), "keras-cache", req)
    if download is None:
        download = not os.environ.get("CIFARKIT_NO_DOWNLOAD")
    tried = f"--data PATH / $CIFARKIT_DATA (not set), Keras's cache {cached} (not found)"
    if not download:
        raise DataError(
            f"no CIFAR-10 data found. Tried {tried}; downloading is disabled. Pass --data with "
            "a cifar-10-batches-py folder, cifar-10-python.tar.gz, or train/ and test/ image "
            "folders, or set CIFARKIT_DATA."
        )
    try:
        import keras

        archive = keras.utils.get_file(
            "cifar-10-python.tar.gz", origin=CIFAR_URL, file_hash=CIFAR_SHA256,
            cache_subdir="datasets",
        )
    except Exception as exc:  # offline: URLError, socket errors, hash mismatch …
        raise DataError(
            f"no CIFAR-10 data found and the download failed ({type(exc).__name__}: {exc}). "
            f"Tried {tried}. Pass --data with a cifar-10-batches-py folder, "
            "cifar-10-python.tar.gz, or train/ and test/ image folders, or set CIFARKIT_DATA."
        ) from None
    return _finish(_load_archive(Path(archive)), archive, "keras-download", req)


def load_data(
    data: str | os.PathLike[str] | None = None, **kwargs: object
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``(x_train, y_train), (x_test, y_test)`` like ``keras.datasets.cifar10.load_data``."""
    return load_dataset(data, **kwargs).as_tuple()  # type: ignore[arg-type]
