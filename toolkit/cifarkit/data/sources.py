"""CIFAR-10 from wherever it is: an explicit path, Keras's cache, or Keras's download.

Order of precedence (first match wins):
1. ``data=`` / ``--data PATH`` or ``$CIFARKIT_DATA``: a ``cifar-10-batches-py`` folder (or a
   folder holding one), the ``cifar-10-python.tar.gz`` archive, or an image-folder tree
   ``train/<class>/*`` + ``test/<class>/*``;
2. Keras's cache, ``~/.keras/datasets/cifar-10-batches-py`` (``$KERAS_HOME`` respected);
3. Keras's own download (``keras.utils.get_file``), read through the same safe loader.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import multiprocessing
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cifarkit.contract import CIFAR10_CLASSES
from cifarkit.data.images import is_image_path, load_image
from cifarkit.data.safe_pickle import load_batch
from cifarkit.data.splits import stratified_subset
from cifarkit.errors import DataError, ImageError

CLASSES: tuple[str, ...] = CIFAR10_CLASSES
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
SPLITS = ("train", "test")

#: ``progress(done, total, what)``: called from long loads; the CLI draws a bar from it.
Progress = Callable[[int, int, str], None]


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    kind: str  # "batches", "archive", "folders", "keras-cache", "keras-download"
    classes: tuple[str, ...] = CLASSES
    notes: list[str] = field(default_factory=list)

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


# --- image folders ---------------------------------------------------------------------


@dataclass
class _Listing:
    """One split's image files (sorted per class) with labels and a stat fingerprint."""

    paths: list[str]
    labels: np.ndarray
    fingerprint: list[str]

    def subset(self, idx: np.ndarray) -> _Listing:
        return _Listing([self.paths[i] for i in idx], self.labels[idx],
                        [self.fingerprint[i] for i in idx])


def _list_class(folder: Path, split: str, name: str) -> tuple[list[str], list[str]]:
    class_dir = os.path.join(folder, name)
    entries = sorted(
        (e for e in os.scandir(class_dir)
         if not e.name.startswith(".") and is_image_path(e.name) and e.is_file()),
        key=lambda e: e.name,
    )
    if not entries:
        raise DataError(f"{class_dir}: no images")
    prints = []
    for e in entries:
        st = e.stat()
        prints.append(f"{split}/{name}/{e.name}\0{st.st_size}\0{st.st_mtime_ns}")
    return [e.path for e in entries], prints


def _list_split(root: Path, split: str) -> _Listing:
    folder = root / split
    if not folder.is_dir():
        raise DataError(f"{root}: no '{split}/' folder (expected {split}/<class>/*.jpg)")
    found = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    unknown = sorted(set(found) - set(CLASSES))
    missing = [c for c in CLASSES if c not in found]
    if unknown:
        raise DataError(
            f"{folder}: unknown class folder(s) {unknown}; CIFAR-10 classes are {list(CLASSES)}"
        )
    if missing:
        raise DataError(f"{folder}: missing class folder(s) {missing}")
    paths: list[str] = []
    labels: list[int] = []
    fingerprint: list[str] = []
    # Serial on purpose: a thread per class folder measured 2.5x slower here (the listing is
    # Python-bound, so the threads only fight over the GIL).
    for label, name in enumerate(CLASSES):
        class_paths, class_prints = _list_class(folder, split, name)
        paths += class_paths
        fingerprint += class_prints
        labels += [label] * len(class_paths)
    return _Listing(paths, np.array(labels, dtype=np.int64), fingerprint)


def _decode_chunk(paths: list[str]) -> tuple[np.ndarray, list[str]]:
    out = np.zeros((len(paths), 32, 32, 3), dtype=np.uint8)
    errors = []
    for i, p in enumerate(paths):
        try:
            out[i] = load_image(p, require_32=True)
        except ImageError as exc:
            errors.append(str(exc))
    return out, errors


def decode_images(
    paths: list[str] | list[Path], workers: int | None = None, progress: Progress | None = None
) -> np.ndarray:
    """Decode many 32×32 images in parallel processes; any bad file fails the whole load."""
    workers = workers or os.cpu_count() or 1
    strs = [os.fspath(p) for p in paths]
    chunk = 1000
    chunks = [strs[i : i + chunk] for i in range(0, len(strs), chunk)]
    out = np.zeros((len(strs), 32, 32, 3), dtype=np.uint8)
    errors: list[str] = []
    done = 0
    if workers <= 1 or len(chunks) <= 1:
        results = map(_decode_chunk, chunks)
        for i, (arr, errs) in enumerate(results):
            out[i * chunk : i * chunk + len(arr)] = arr
            errors += errs
            done += len(arr)
            if progress:
                progress(done, len(strs), "decoding images")
    else:
        # spawn, not fork: the parent may hold TensorFlow threads, which fork can deadlock.
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = {pool.submit(_decode_chunk, c): i for i, c in enumerate(chunks)}
            for fut in concurrent.futures.as_completed(futures):
                i = futures[fut]
                arr, errs = fut.result()
                out[i * chunk : i * chunk + len(arr)] = arr
                errors += errs
                done += len(arr)
                if progress:
                    progress(done, len(strs), "decoding images")
    if errors:
        shown = "\n  ".join(sorted(errors)[:5])
        more = f"\n  … and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise DataError(f"{len(errors)} image(s) could not be used:\n  {shown}{more}")
    return out


def _read_cache(folder: Path) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        return np.load(folder / "x.npy"), np.load(folder / "y.npy")
    except (OSError, ValueError):
        return None


def _write_cache(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    # Plain .npy files (no zip): a cached split is one read per array.
    # Written into a temp folder renamed into place, so a reader never sees half a cache.
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        np.save(tmp / "x.npy", x)
        np.save(tmp / "y.npy", y)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process cached the same listing first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load_folder_split(
    root: Path, split: str, limit: int | None, seed: int, progress: Progress | None,
    use_cache: bool, notes: list[str],
) -> tuple[np.ndarray, np.ndarray]:
    """One split of an image-folder tree, through a cache keyed by its file listing."""
    listing = _list_split(root, split)
    if limit:
        listing = listing.subset(stratified_subset(listing.labels, limit, seed))
    digest = hashlib.sha256("\n".join(listing.fingerprint).encode()).hexdigest()[:24]
    cache = cache_dir() / f"folders-{digest}"
    if use_cache and cache.is_dir():
        cached = _read_cache(cache)
        if cached is not None:
            notes.append(f"{split}: decoded images from cache {cache}")
            return cached
        notes.append(f"{split}: ignored unreadable cache {cache}")
    x = decode_images(listing.paths, progress=progress)
    if use_cache:
        try:
            _write_cache(cache, x, listing.labels)
            notes.append(f"{split}: cached decoded images in {cache}")
        except OSError as exc:  # a read-only home must not break loading
            notes.append(f"{split}: could not write cache {cache}: {exc}")
    return x, listing.labels


def _load_folders(
    root: Path, limit: int | None, seed: int, progress: Progress | None, use_cache: bool,
    splits: tuple[str, ...],
) -> tuple[tuple[np.ndarray, ...], list[str]]:
    notes: list[str] = []
    empty = (np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64))
    arrays: list[np.ndarray] = []
    for split in ("train", "test"):
        if split in splits:
            arrays += _load_folder_split(root, split, limit, seed, progress, use_cache, notes)
        else:
            arrays += empty
    return tuple(arrays), notes


# --- entry points ----------------------------------------------------------------------


def _load_path(
    path: Path, limit: int | None, seed: int, progress: Progress | None, use_cache: bool,
    splits: tuple[str, ...],
) -> Dataset:
    if not path.exists():
        raise DataError(f"data path {path} does not exist")
    notes: list[str] = []
    if path.is_file():
        arrays, kind = _load_archive(path), "archive"
    elif (folder := _batches_dir(path)) is not None:
        arrays, kind = _load_batches_dir(folder), "batches"
    elif (path / "train").is_dir() or (path / "test").is_dir():
        arrays, notes = _load_folders(path, limit, seed, progress, use_cache, splits)
        kind = "folders"
        limit = None  # already applied before decoding
    else:
        raise DataError(
            f"{path}: not a CIFAR-10 source. Expected a cifar-10-batches-py folder, the "
            "cifar-10-python.tar.gz archive, or train/<class>/ and test/<class>/ image folders"
        )
    return _finish(arrays, str(path), kind, limit, seed, notes, splits)


def _finish(
    arrays: tuple[np.ndarray, ...], source: str, kind: str, limit: int | None, seed: int,
    notes: list[str], splits: tuple[str, ...] = SPLITS,
) -> Dataset:
    x_train, y_train, x_test, y_test = arrays
    for split, x in (("train", x_train), ("test", x_test)):
        if split in splits and len(x) == 0:
            raise DataError(f"{source}: the {split} split is empty")
    if limit:
        tr = stratified_subset(y_train, limit, seed) if len(y_train) else slice(None)
        te = stratified_subset(y_test, limit, seed) if len(y_test) else slice(None)
        x_train, y_train, x_test, y_test = x_train[tr], y_train[tr], x_test[te], y_test[te]
    return Dataset(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64),
                   source=source, kind=kind, notes=notes)


def load_dataset(
    data: str | os.PathLike[str] | None = None,
    *,
    limit: int | None = None,
    seed: int = 0,
    download: bool | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
    splits: tuple[str, ...] = SPLITS,
) -> Dataset:
    """Load CIFAR-10 as uint8 NHWC images and int64 labels, with where it came from.

    ``limit`` keeps a stratified subset of ``limit`` images per split (seeded).
    ``download`` defaults to true unless ``$CIFARKIT_NO_DOWNLOAD`` is set.
    ``splits``: ``("test",)`` skips decoding the training images of an image-folder source
    (its ``x_train`` is then empty); pickled sources always hold both.
    """
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise DataError(f"splits must be a non-empty subset of {SPLITS}, got {splits}")
    if data is None and os.environ.get("CIFARKIT_DATA"):
        data = os.environ["CIFARKIT_DATA"]
    if data is not None:
        return _load_path(Path(data).expanduser(), limit, seed, progress, use_cache, splits)
    cached = keras_cache_path()
    if _batches_dir(cached) is not None:
        return _finish(_load_batches_dir(cached), str(cached), "keras-cache", limit, seed, [])
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
    return _finish(_load_archive(Path(archive)), archive, "keras-download", limit, seed, [])


def load_data(
    data: str | os.PathLike[str] | None = None, **kwargs: object
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``(x_train, y_train), (x_test, y_test)`` like ``keras.datasets.cifar10.load_data``."""
    return load_dataset(data, **kwargs).as_tuple()  # type: ignore[arg-type]
