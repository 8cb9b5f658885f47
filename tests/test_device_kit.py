"""benchmarks/device_kit.py: the data pack for the device machine is lossless and checked."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import benchmark_module, write_folders


@pytest.fixture
def kit():
    yield from benchmark_module("device_kit")


def test_pack_unpack_is_byte_exact(kit, tmp_path: Path):
    data = write_folders(tmp_path / "data", train_per_class=2, test_per_class=1)
    rng = np.random.default_rng(0)
    for i in range(3):  # JPEGs share a header the pack stores once
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            data / "train" / "cat" / f"j{i}.jpg", quality=75)
    info = kit.pack_tree(data, tmp_path / "pack.npz")
    assert info["files"] == 33 and info["headers"] == 2  # PNGs (no header) + one JPEG header
    out = kit.unpack_tree(tmp_path / "pack.npz", tmp_path / "out")
    assert out["digest"] == info["digest"] and out["reused"] == 0
    for split in ("train", "test"):
        cmp = filecmp.dircmp(data / split, tmp_path / "out" / split)
        assert not cmp.left_only and not cmp.right_only
        for sub in cmp.subdirs.values():
            assert not sub.diff_files and not sub.left_only and not sub.right_only
            _, mismatch, errors = filecmp.cmpfiles(sub.left, sub.right, sub.common_files,
                                                    shallow=False)
            assert not mismatch and not errors
    assert kit.unpack_tree(tmp_path / "pack.npz", tmp_path / "out")["reused"] == 1


def test_damaged_pack_is_refused(kit, tmp_path: Path):
    data = write_folders(tmp_path / "data", train_per_class=1, test_per_class=1)
    kit.pack_tree(data, tmp_path / "pack.npz")
    with np.load(tmp_path / "pack.npz") as z:
        arrays = {k: z[k].copy() for k in z.files}
    arrays["payload"][100] ^= 0xFF
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(SystemExit, match="damaged"):
        kit.unpack_tree(tmp_path / "bad.npz", tmp_path / "out")
    assert not (tmp_path / "out").exists()
