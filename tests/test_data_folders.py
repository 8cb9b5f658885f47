"""cifarkit.data.folders: any image-folder dataset (layouts, classes, sizes, skips, cache)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifarkit.data import cross_split_duplicates, load_dataset
from cifarkit.errors import DataError, UsageError

FORMATS = ("png", "jpg", "webp", "bmp", "tiff")


def photo_folders(root: Path, classes: tuple[str, ...], per_class: int, *, seed: int = 0,
                  splits: tuple[str, ...] = ("",)) -> Path:
    """Class folders of non-square images of mixed sizes and formats; each class has its own
    colour, so a decoded image says which class it came from."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for c, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                w, h = (int(v) for v in rng.integers(20, 90, 2))
                colour = ((37 * c) % 256, (91 * c + 40) % 256, (53 * c + 90) % 256)
                img = Image.new("RGB", (w, h), colour)
                img.save(d / f"{i:03d}.{FORMATS[(i + c) % len(FORMATS)]}", quality=95)
    return root


def test_class_folders_alone_any_names_and_size(tmp_path):
    root = photo_folders(tmp_path / "photos", ("bees", "ants", "wasps"), 5)
    ds = load_dataset(root, image_size=48, use_cache=False)
    assert ds.classes == ("ants", "bees", "wasps")  # sorted folder names
    assert ds.layout == "flat" and ds.kind == "folders"
    assert ds.x_train.shape == (15, 48, 48, 3) and ds.x_train.dtype == np.uint8
    assert np.bincount(ds.y_train).tolist() == [5, 5, 5]
    assert len(ds.y_test) == 0 and not ds.has_val  # the trainer holds out val
    # Each image is its class's flat colour (JPEG/WebP within a few levels).
    for x, y in zip(ds.x_train, ds.y_train, strict=True):
        c = ("bees", "ants", "wasps").index(ds.classes[y])
        want = np.array(((37 * c) % 256, (91 * c + 40) % 256, (53 * c + 90) % 256))
        assert np.abs(x[24, 24].astype(int) - want).max() <= 6


def test_split_layout_with_valid_folder(tmp_path):
    root = photo_folders(tmp_path / "d", ("a", "b"), 3, splits=("train", "valid", "test"))
    ds = load_dataset(root, use_cache=False)
    assert ds.layout == "splits" and ds.classes == ("a", "b")
    assert len(ds.y_train) == len(ds.y_val) == len(ds.y_test) == 6
    assert ds.held_out()[0] == "test"
    only_test = load_dataset(root, splits=("test",), use_cache=False)
    assert len(only_test.y_train) == 0 and len(only_test.y_test) == 6


def test_hundred_classes(tmp_path):
    names = tuple(f"class{i:03d}" for i in range(100))
    rng = np.random.default_rng(0)
    for name in names:
        (tmp_path / "c" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(
                tmp_path / "c" / name / f"{i}.png")
    ds = load_dataset(tmp_path / "c", image_size=16, use_cache=False)
    assert ds.classes == names and np.bincount(ds.y_train).tolist() == [2] * 100


def test_bad_trees_fail_with_exit_code_3(tmp_path):
    photo_folders(tmp_path / "one", ("only",), 2)
    with pytest.raises(DataError, match=r"at least two class folders, found \['only'\]") as e:
        load_dataset(tmp_path / "one", use_cache=False)
    assert e.value.exit_code == 3
    root = photo_folders(tmp_path / "empty", ("a", "b"), 2)
    (tmp_path / "empty" / "c").mkdir()
    with pytest.raises(DataError, match="class 'c' .* is empty"):
        load_dataset(root, use_cache=False)
    root = photo_folders(tmp_path / "broken", ("a", "b"), 2)
    for f in (root / "b").iterdir():
        f.write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"no decodable images for class\(es\) \['b'\]"):
        load_dataset(root, use_cache=False)
    with pytest.raises(UsageError, match="--image-size must be between"):
        load_dataset(root, image_size=8)


def test_undecodable_files_are_skipped_and_listed_or_strict(tmp_path):
    root = photo_folders(tmp_path / "p", ("a", "b"), 4)
    (root / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "b" / "empty.jpg").write_bytes(b"")
    ds = load_dataset(root, use_cache=False)
    assert len(ds.y_train) == 8 and len(ds.skipped) == 2
    assert any("bad.png" in s for s in ds.skipped) and any("empty.jpg: empty" in s
                                                          for s in ds.skipped)
    assert any("skipped 2 file(s)" in n for n in ds.notes)
    with pytest.raises(DataError, match="2 image\\(s\\) could not be used"):
        load_dataset(root, use_cache=False, strict=True)


def test_cache_keyed_by_content_size_and_policy(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path / "cache"))
    root = photo_folders(tmp_path / "p", ("a", "b"), 3)
    first = load_dataset(root, image_size=40)
    assert any("cached decoded images" in n for n in first.notes)
    again = load_dataset(root, image_size=40)
    assert any("from cache" in n for n in again.notes)
    np.testing.assert_array_equal(first.x_train, again.x_train)
    other_size = load_dataset(root, image_size=32)
    assert not any("from cache" in n for n in other_size.notes)
    # New content under the same name, size and mtime: still decoded afresh.
    target = sorted((root / "a").iterdir())[0]
    st = target.stat()
    Image.new("RGB", (30, 30), (0, 0, 0)).save(target, format=Image.open(target).format)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = load_dataset(root, image_size=40)
    assert not any("from cache" in n for n in changed.notes)


def test_cross_split_duplicates_are_found(tmp_path):
    root = photo_folders(tmp_path / "d", ("a", "b"), 3, splits=("train", "test"))
    leaked = root / "test" / "b" / "leak.png"
    leaked.write_bytes(sorted((root / "train" / "a").iterdir())[1].read_bytes())
    ds = load_dataset(root, use_cache=False)
    leaks = cross_split_duplicates(ds.folders.files)
    assert [Path(b).name for _, _, b in leaks] == ["leak.png"]
