"""Your own data end to end: scikit-learn's digits as class folders → train at 16×16 →
export fp32 + int8 → bench → predict, class names and image size round-tripping."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cifarkit.backends import Classifier
from cifarkit.contract import read_onnx
from cifarkit.data import load_dataset
from cifarkit.export import export_model
from tests.test_cli_foundation import run_cli

pytestmark = pytest.mark.slow


def test_digits_train_export_bench_predict(digits, digits_run, tmp_path):
    run, _ = digits_run  # the session's one training (conftest), checked in test_train_own_data
    out = tmp_path / "exported"
    # No speed benchmark (wall-clock-bound timing loops; test_export times its own export):
    # this test checks classes, size and accuracy; the runs-in table still runs both runtimes.
    export_model(run, out=out, precisions=("fp32", "int8"), data=digits,
                 runtimes=["onnxruntime", "openvino"], benchmark=False)
    ds = load_dataset(digits, splits=("test",), image_size=16)
    names = ("eight", "five", "four", "nine", "one", "seven", "six", "three", "two", "zero")
    for precision in ("fp32", "int8"):
        info = read_onnx(out / f"model.{precision}.onnx")
        assert info.classes == names and info.image_size == 16 and info.preprocess
        with Classifier(out / f"model.{precision}.onnx") as clf:
            acc = float(np.mean(clf.predict(ds.x_test) == ds.y_test))
        assert acc > 0.4, (precision, acc)  # int8 calibrated on the digits themselves
    card = json.loads((out / "card.json").read_text())
    assert card["classes"] == list(names)

    res = run_cli("bench", str(out), "--data", str(digits), "--json", str(tmp_path / "b.json"),
                  "--batch-sizes", "8", "--duration", "0.1", "--provider", "cpu")
    assert res.returncode == 0, res.stderr[-2000:]
    bench = json.loads((tmp_path / "b.json").read_text())
    assert {r["class"] for r in bench["per_class"]} == set(names)

    photos = tmp_path / "new"
    shutil.copytree(digits / "test" / "seven", photos / "seven")
    res = run_cli("predict", str(photos), "-m", str(out / "model.int8.onnx"), "-f", "jsonl",
                  "--labels-from-folders")
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == len(list(photos.glob("seven/*.png")))
    assert {r["label"] for r in rows} <= set(names) and "seven" in {r["label"] for r in rows}


def test_labels_from_folders_that_name_no_class_is_an_error(tmp_path):
    from tests import onnx_fixtures as F

    model = F.color_model(tmp_path / "color.onnx")
    (tmp_path / "photos" / "kittens").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "photos" / "kittens" / "a.png")
    res = run_cli("predict", str(tmp_path / "photos"), "-m", str(model),
                  "--labels-from-folders")
    assert res.returncode == 2
    assert "no input is in a folder named after one of the model's classes" in res.stderr
