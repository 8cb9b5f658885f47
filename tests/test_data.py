"""cifarkit.data: sources, safe unpickling, caching, splits and their errors."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifarkit.data import (
    CLASSES,
    load_data,
    load_dataset,
    stratified_split,
    stratified_subset,
)
from cifarkit.data.safe_pickle import load_batch
from cifarkit.errors import DataError, UsageError
from tests.conftest import synthetic_images, write_batches, write_folders

# --- sources -----------------------------------------------------------------------------


def test_batches_folder_loads_nhwc_exactly(batches_dir):
    folder, (x_train, y_train, x_test, y_test) = batches_dir
    ds = load_dataset(folder)
    assert ds.kind == "batches"
    assert ds.x_train.shape == (100, 32, 32, 3) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(ds.x_train, x_train)
    np.testing.assert_array_equal(ds.y_test, y_test)
    assert ds.y_train.dtype == np.int64


def test_channel_first_rows_become_hwc(tmp_path):
    # One image whose red plane is 1, green 2, blue 3: row layout is R(1024) G(1024) B(1024).
    folder = tmp_path / "b"
    write_batches(folder, per_batch=2)
    row = np.concatenate([np.full(1024, v, np.uint8) for v in (1, 2, 3)])
    obj = {b"data": np.stack([row, row]), b"labels": [3, 4]}
    (folder / "test_batch").write_bytes(pickle.dumps(obj))
    (x_tr, _), (x_te, y_te) = load_data(folder)
    assert x_te[0, 5, 7].tolist() == [1, 2, 3]
    assert y_te.tolist() == [3, 4]


def test_parent_folder_and_archive(tmp_path, batches_dir):
    folder, (x_train, *_rest) = batches_dir
    assert load_dataset(tmp_path).kind == "batches"  # parent of cifar-10-batches-py
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    ds = load_dataset(archive)
    assert ds.kind == "archive"
    np.testing.assert_array_equal(ds.x_train, x_train)


def test_image_folders_and_env_var(folders, monkeypatch):
    monkeypatch.setenv("CIFARKIT_DATA", str(folders))
    ds = load_dataset()
    assert ds.kind == "folders"
    assert ds.x_train.shape == (60, 32, 32, 3) and ds.x_test.shape == (30, 32, 32, 3)
    assert np.bincount(ds.y_train).tolist() == [6] * 10
    # PNG is lossless: pixels are exactly the ones written.
    first = np.asarray(Image.open(folders / "train" / "airplane" / "0000.png"))
    np.testing.assert_array_equal(ds.x_train[0], first)


def test_keras_cache_is_second_choice(tmp_path, monkeypatch):
    monkeypatch.delenv("CIFARKIT_DATA", raising=False)
    write_batches(Path(os.environ["KERAS_HOME"]) / "datasets" / "cifar-10-batches-py")
    assert load_dataset().kind == "keras-cache"


def test_nothing_found_offline_names_the_options(monkeypatch):
    monkeypatch.delenv("CIFARKIT_DATA", raising=False)
    with pytest.raises(DataError) as err:
        load_dataset(download=False)
    msg = str(err.value)
    assert "--data" in msg and "CIFARKIT_DATA" in msg and "cifar-10-batches-py" in msg


def test_folder_cache_is_used_and_invalidated(folders):
    first = load_dataset(folders)
    assert any("cached" in n for n in first.notes)
    second = load_dataset(folders)
    assert any("from cache" in n for n in second.notes)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    # Rewriting one image (new size/mtime) changes the key: decoded afresh.
    target = folders / "train" / "cat" / "0003.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(target)
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    third = load_dataset(folders)
    assert not any(n.startswith("train: decoded images from cache") for n in third.notes)
    assert any(n.startswith("test: decoded images from cache") for n in third.notes)
    idx = list(CLASSES).index("cat") * 6  # files sorted per class; 0003 is the first cat
    assert third.x_train[idx].max() == 0


# --- bad sources --------------------------------------------------------------------------


def test_splits_with_different_class_folders(folders):
    (folders / "train" / "cat").rename(folders / "train" / "kitten")
    with pytest.raises(DataError, match=r"same class folders: train/ lacks \['cat'\]; "
                                        r"test/ lacks \['kitten'\]"):
        load_dataset(folders, use_cache=False)
    (folders / "train" / "kitten").rename(folders / "train" / "cat")
    for f in (folders / "test" / "dog").iterdir():
        f.unlink()
    (folders / "test" / "dog").rmdir()
    with pytest.raises(DataError, match=r"test/ lacks \['dog'\]"):
        load_dataset(folders, use_cache=False)


def test_empty_class_and_wrong_image_size(tmp_path):
    root = write_folders(tmp_path / "d", 2, 1)
    for f in (root / "test" / "ship").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="ship: no images"):
        load_dataset(root, use_cache=False)
    # Any size is resized (centre crop, then antialiased resize): no longer an error.
    root = write_folders(tmp_path / "e", 2, 1)
    Image.new("RGB", (40, 30), (10, 200, 30)).save(root / "train" / "frog" / "big.png")
    ds = load_dataset(root, use_cache=False)
    assert ds.x_train.shape == (21, 32, 32, 3) and np.bincount(ds.y_train)[6] == 3
    assert ds.x_train[ds.y_train == 6][-1].tolist()[5][5] == [10, 200, 30]  # big.png: last


def test_not_a_source_and_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "random").mkdir()
    with pytest.raises(DataError, match="at least two class folders, found none"):
        load_dataset(tmp_path / "random")


def test_corrupt_batch_and_archive(tmp_path):
    folder = tmp_path / "b"
    write_batches(folder, per_batch=2)
    (folder / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset(folder)
    bad = tmp_path / "x.tar.gz"
    bad.write_bytes(b"not an archive")
    with pytest.raises(DataError, match="cannot read archive"):
        load_dataset(bad)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_does_not_run_code(tmp_path):
    marker = tmp_path / "pwned"
    _Exploit.marker = marker
    payload = pickle.dumps({b"data": _Exploit(), b"labels": [0]})
    with pytest.raises(DataError, match="refused to unpickle.*system"):
        load_batch(io.BytesIO(payload), "evil")
    assert not marker.exists()
    # The same payload through a whole source fails the load, still without running code.
    folder = tmp_path / "b"
    write_batches(folder, per_batch=2)
    (folder / "test_batch").write_bytes(payload)
    with pytest.raises(DataError):
        load_dataset(folder)
    assert not marker.exists()


# --- splits -------------------------------------------------------------------------------


def test_split_is_stratified_on_class_ordered_labels():
    y = np.repeat(np.arange(10), 500)  # class-ordered, like the JPEG folders
    keep, held = stratified_split(y, 0.25, seed=0)
    assert len(held) == 1250 and len(keep) == 3750
    assert np.bincount(y[held], minlength=10).tolist() == [125] * 10
    assert not set(keep) & set(held)
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(5000))
    # Shuffled: the held-out block is not a run of one class.
    assert len(set(y[held[:50]].tolist())) > 5
    again, _ = stratified_split(y, 0.25, seed=0)
    other, _ = stratified_split(y, 0.25, seed=1)
    assert np.array_equal(keep, again) and not np.array_equal(keep, other)
    # What Keras's validation_split would do instead: the last 25 % is 3 classes only.
    assert len(set(y[-1250:].tolist())) == 3


def test_split_bounds():
    y = np.repeat(np.arange(10), 10)
    keep, held = stratified_split(y, 0.0)
    assert len(held) == 0 and len(keep) == 100
    with pytest.raises(UsageError):
        stratified_split(y, 1.0)


def test_limit_is_stratified(batches_dir):
    folder, _ = batches_dir
    ds = load_dataset(folder, limit=50)
    assert len(ds.x_train) == 50 and len(ds.x_test) == 20  # test has only 20
    assert np.bincount(ds.y_train, minlength=10).tolist() == [5] * 10
    y = np.repeat(np.arange(10), 100)
    sub = stratified_subset(y, 33, seed=3)
    counts = np.bincount(y[sub], minlength=10)
    assert counts.sum() == 33 and counts.max() - counts.min() <= 1
    with pytest.raises(UsageError):
        stratified_subset(y, 0)


def test_synthetic_helper_is_learnable():
    x, y = synthetic_images(40)
    # Per-class mean colours differ: the fixture data carries a real signal.
    means = np.array([x[y == c].mean(axis=(0, 1, 2)) for c in range(10)])
    assert np.unique(means.round(), axis=0).shape[0] == 10


# --- real data ----------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_folders_subset(real_data):
    ds = load_dataset(real_data, limit=500)
    assert ds.kind == "folders"
    assert ds.x_train.shape == (500, 32, 32, 3) and ds.x_test.shape == (500, 32, 32, 3)
    assert np.bincount(ds.y_test, minlength=10).tolist() == [50] * 10
    # Real photos, not blank decodes.
    assert 60 < ds.x_train.mean() < 200 and ds.x_train.std() > 30


def test_test_split_only_and_shared_cache(folders):
    ds = load_dataset(folders, splits=("test",))
    assert ds.x_train.shape == (0, 32, 32, 3) and ds.x_test.shape == (30, 32, 32, 3)
    full = load_dataset(folders)
    assert any(n.startswith("test: decoded images from cache") for n in full.notes)
    np.testing.assert_array_equal(full.x_test, ds.x_test)
    with pytest.raises(DataError, match="splits"):
        load_dataset(folders, splits=("valid",))
