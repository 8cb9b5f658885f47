"""cifarkit train on a user's own class folders: names, sizes, val folders, --init."""

from __future__ import annotations

import json

import pytest

from cifarkit.train import train
from tests.conftest import write_digits

pytestmark = pytest.mark.slow


def test_digits_at_size_16_name_their_classes(digits_run):
    run, result = digits_run
    meta = json.loads((run / "run.json").read_text())
    assert meta["classes"][:3] == ["eight", "five", "four"]  # sorted folder names
    assert meta["image_size"] == 16 and meta["preprocess"]
    assert meta["data"]["evaluated_on"] == "test" and meta["data"]["layout"] == "splits"
    assert "--image-size 16" in meta["command"]
    # 8×8 scans of ten digits: far above chance (10 %) after four short epochs.
    assert result.test_accuracy > 0.4, result.test_accuracy


def test_class_folders_alone_and_init_from_a_run(tmp_path):
    root = write_digits(tmp_path / "d", per_class=60, classes=3)
    flat = tmp_path / "flat"
    (root / "train").rename(flat)  # <class>/ folders only: no test split
    first = train("fastnet-s", data=flat, image_size=16, epochs=2, batch_size=32,
                  out=tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "run.json").read_text())
    assert meta["data"]["evaluated_on"] == "val" and meta["data"]["layout"] == "flat"
    assert any("no test split" in n for n in first.notes)
    tuned = train("fastnet-s", data=flat, image_size=24, epochs=1, batch_size=32,
                  init=str(tmp_path / "a"), out=tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "run.json").read_text())
    assert meta["init"]["skipped"] == {"head": "head: rebuilt for the new classes"}
    assert meta["init"]["lr_scale"] == 0.2 and "--init" in meta["command"]
    assert "block3_conv2" in meta["init"]["loaded"] and tuned.recipe.lr == 0.2 * first.recipe.lr
