"""Any image-folder dataset: one folder per class, with or without split folders.

Layouts (the class names are the folder names, sorted; every split has the same set):
- ``DIR/train/<class>/`` with ``DIR/{val,valid,validation}/<class>/`` and/or
  ``DIR/test/<class>/`` (Ultralytics', timm's and Keras's layout);
- ``DIR/<class>/`` alone: all of it is ``train``; the trainer holds out a stratified, seeded
  validation share (``--val-split``) and records it in the run.

Images of any size and any format the decoder reads become S×S through the one decoder
(``images.load_image``). A file that fails to decode is skipped and listed (``strict``:
fail instead). Each decoded split is cached, keyed by the files' contents (a hash per file,
also used to find the same image in two splits), S and the resize policy.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cifarkit.data.images import PREPROCESS, is_image_path, load_image
from cifarkit.data.splits import stratified_subset
from cifarkit.errors import DataError, ImageError

#: Split name → the folder names that hold it, in order of preference.
SPLIT_DIRS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
#: ``progress(done, total, what)``: called from long loads; the CLI draws a bar from it.
Progress = Callable[[int, int, str], None]
CHUNK = 500  # files per decoding task


@dataclass
class SplitFiles:
    """One split's image files (sorted per class), labels and content hashes."""

    paths: list[str]
    labels: np.ndarray
    digests: list[str]

    def subset(self, idx: np.ndarray | list[int]) -> SplitFiles:
        return SplitFiles([self.paths[i] for i in idx], self.labels[idx],
                          [self.digests[i] for i in idx])


@dataclass
class FolderData:
    """Decoded splits of an image-folder tree, with what was skipped and why."""

    root: Path
    layout: str  # "splits" (train/val/test folders) or "flat" (class folders only)
    classes: tuple[str, ...]
    arrays: dict[str, tuple[np.ndarray, np.ndarray]]
    files: dict[str, SplitFiles]
    skipped: list[str] = field(default_factory=list)  # "path: reason"
    notes: list[str] = field(default_factory=list)


def split_folders(root: Path) -> dict[str, Path]:
    """``{split: folder}`` of a split layout; ``{"train": root}`` for class folders only."""
    found = {}
    for split, names in SPLIT_DIRS.items():
        for name in names:
            if (root / name).is_dir():
                found[split] = root / name
                break
    if found and "train" not in found and "test" not in found:
        raise DataError(f"{root}: a {found['val'].name}/ folder but no train/ or test/ beside it")
    return found or {"train": root}


def _class_dirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder)
                  if e.is_dir() and not e.name.startswith((".", "_")))


def find_classes(folders: dict[str, Path]) -> tuple[str, ...]:
    """The sorted class names every split shares; a clear error names any difference."""
    per_split = {split: _class_dirs(folder) for split, folder in folders.items()}
    classes = sorted(set().union(*per_split.values()))
    problems = [f"{folders[s].name}/ lacks {sorted(set(classes) - set(names))}"
                for s, names in per_split.items() if set(names) != set(classes)]
    if problems:
        raise DataError("every split must have the same class folders: " + "; ".join(problems))
    if len(classes) < 2:
        where = next(iter(folders.values()))
        raise DataError(f"{where}: a classifier needs at least two class folders, found "
                        f"{classes or 'none'} (expected {where}/<class>/<image files>)")
    return tuple(classes)


def _digest(path: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def list_split(folder: Path, classes: tuple[str, ...]) -> SplitFiles:
    """Every image file of ``folder/<class>/`` (not recursive), sorted, hashed."""
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        entries = sorted((e for e in os.scandir(folder / name)
                          if not e.name.startswith(".") and is_image_path(e.name)
                          and e.is_file()), key=lambda e: e.name)
        if not entries:
            raise DataError(f"{folder / name}: no images (class {name!r} of {folder} is empty)")
        paths += [e.path for e in entries]
        labels += [label] * len(entries)
    # Reading is I/O and hashing releases the GIL: threads keep both cores busy.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        digests = list(pool.map(_digest, paths, chunksize=64))
    return SplitFiles(paths, np.array(labels, dtype=np.int64), digests)


def _decode_chunk(args: tuple[list[str], int, bool]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    paths, size, require_32 = args
    out = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    errors = []
    for i, p in enumerate(paths):
        try:
            out[i] = load_image(p, size=size, require_32=require_32)
        except ImageError as exc:
            errors.append((i, str(exc)))
    return out, errors


def decode_images(
    paths: list[str] | list[Path], size: int = 32, *, workers: int | None = None,
    progress: Progress | None = None, require_32: bool = False,
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Decode many files to ``[N, size, size, 3]`` in parallel processes: the images and the
    ``(index, reason)`` of each file that failed (its row is left black)."""
    strs = [os.fspath(p) for p in paths]
    starts = range(0, len(strs), CHUNK)
    tasks = [(strs[i : i + CHUNK], size, require_32) for i in starts]
    out = np.zeros((len(strs), size, size, 3), dtype=np.uint8)
    errors: list[tuple[int, str]] = []
    workers = workers or os.cpu_count() or 1
    pool = None
    if workers > 1 and len(tasks) > 1:
        # spawn, not fork: the parent may hold TensorFlow threads, which fork can deadlock.
        pool = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        results = pool.map(_decode_chunk, tasks) if pool else map(_decode_chunk, tasks)
        for start, (arr, errs) in zip(starts, results, strict=True):
            out[start : start + len(arr)] = arr
            errors += [(start + i, why) for i, why in errs]
            if progress:
                progress(start + len(arr), len(strs), "decoding images")
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    return out, errors


def _cache_key(files: SplitFiles, size: int) -> str:
    h = hashlib.sha256(f"{size}\0{PREPROCESS}\0".encode())
    for path, digest, label in zip(files.paths, files.digests, files.labels, strict=True):
        h.update(f"{os.path.basename(path)}\0{digest}\0{label}\n".encode())
    return h.hexdigest()[:24]


def _read_cache(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    try:
        return np.load(folder / "x.npy"), np.load(folder / "y.npy"), np.load(folder / "ok.npy")
    except (OSError, ValueError):
        return None


def _write_cache(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    # Plain .npy files in a temp folder renamed into place: a reader never sees half a cache.
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", arr)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process cached the same listing first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@dataclass
class LoadOptions:
    size: int = 32
    limit: int | None = None
    seed: int = 0
    strict: bool = False
    use_cache: bool = True
    require_32: bool = False
    progress: Progress | None = None
    cache_root: Path | None = None


def _decode_split(split: str, files: SplitFiles, opts: LoadOptions, data: FolderData
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One split through the cache; failed files dropped (listed in ``data.skipped``)."""
    cache = (opts.cache_root or Path(".")) / f"folders-{_cache_key(files, opts.size)}"
    cached = _read_cache(cache) if opts.use_cache and cache.is_dir() else None
    if cached is not None:
        x, y, ok = cached
        data.notes.append(f"{split}: decoded images from cache {cache}")
        failed = [(int(i), f"{files.paths[i]}: failed to decode (cached result)")
                  for i in np.flatnonzero(~ok)]
    else:
        x, failed = decode_images(files.paths, opts.size, progress=opts.progress,
                                  require_32=opts.require_32)
        y, ok = files.labels, np.ones(len(files.paths), bool)
        ok[[i for i, _ in failed]] = False
        if opts.use_cache:
            try:
                _write_cache(cache, {"x": x, "y": y, "ok": ok})
                data.notes.append(f"{split}: cached decoded images in {cache}")
            except OSError as exc:  # a read-only home must not break loading
                data.notes.append(f"{split}: could not write cache {cache}: {exc}")
    if failed and opts.strict:
        shown = "\n  ".join(why for _, why in failed[:5])
        more = f"\n  … and {len(failed) - 5} more" if len(failed) > 5 else ""
        raise DataError(f"{len(failed)} image(s) could not be used:\n  {shown}{more}")
    data.skipped += [why for _, why in failed]
    data.files[split] = files.subset(np.flatnonzero(ok))
    return x[ok], y[ok]


def load_folders(root: Path, opts: LoadOptions, splits: tuple[str, ...] | None = None
                 ) -> FolderData:
    """Decode the splits of ``root`` (``splits``: only these, when present)."""
    folders = split_folders(root)
    classes = find_classes(folders)
    data = FolderData(root, "flat" if folders == {"train": root} else "splits", classes, {}, {})
    for split, folder in folders.items():
        if splits is not None and split not in splits:
            continue
        files = list_split(folder, classes)
        if opts.limit:
            files = files.subset(stratified_subset(files.labels, opts.limit, opts.seed))
        x, y = _decode_split(split, files, opts, data)
        if len(x) == 0:
            raise DataError(f"{folder}: none of its {len(files.paths)} image(s) could be "
                            f"decoded; first: {data.skipped[0]}")
        missing = sorted(set(range(len(classes))) - set(np.unique(y).tolist()))
        if missing:
            raise DataError(f"{folder}: no decodable images for class(es) "
                            f"{[classes[i] for i in missing]}")
        data.arrays[split] = (x, y)
    if data.skipped:
        data.notes.append(f"skipped {len(data.skipped)} file(s) that could not be decoded "
                          "(strict loading fails instead)")
    return data


def cross_split_duplicates(files: dict[str, SplitFiles]) -> list[tuple[str, str, str]]:
    """``(digest, path_a, path_b)`` for byte-identical files in two different splits: a
    train/test leak inflates every accuracy measured on the test split."""
    seen: dict[str, tuple[str, str]] = {}
    leaks = []
    for split in ("train", "val", "test"):
        if split not in files:
            continue
        for path, digest in zip(files[split].paths, files[split].digests, strict=True):
            if digest in seen and seen[digest][0] != split:
                leaks.append((digest, seen[digest][1], path))
            seen.setdefault(digest, (split, path))
    return leaks
