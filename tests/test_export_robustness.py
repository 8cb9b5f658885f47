"""``export --corruptions N``: the card's table of accuracy under the CIFAR-10-C corruptions,
measured on the written (calibrated) ONNX files of every precision.

The model is the colour-prototype classifier of ``tests/onnx_fixtures.py`` (no TensorFlow) on
the noisy colour images of ``test_export_calibrate``; 20 images keep the 75 corrupted sets
fast.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifarkit.data import Dataset, stratified_subset
from cifarkit.errors import UsageError

pytest.importorskip("onnxruntime")
pytest.importorskip("imagecorruptions")

from cifarkit.backends import Classifier  # noqa: E402
from cifarkit.data.corruptions import CORRUPTIONS, SEVERITIES  # noqa: E402
from cifarkit.export import export_model  # noqa: E402
from cifarkit.export.data import synthetic_dataset  # noqa: E402
from tests import onnx_fixtures as F  # noqa: E402
from tests.test_export_calibrate import noisy_colours  # noqa: E402

N = 20


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    root = tmp_path_factory.mktemp("colour")
    src = F.color_model(root / "src" / "model.fp32.onnx")
    (xt, yt), (xv, yv), (xs, ys) = (noisy_colours(n, s) for n, s in ((200, 0), (200, 1),
                                                                    (100, 2)))
    return src, Dataset(xt, yt, xs, ys, source="noisy colours", kind="fixture", x_val=xv,
                        y_val=yv)


def _export(colours, out, **options):
    src, ds = colours
    return export_model(src, out, precisions=["fp32", "int8"], data=ds,
                        calibration_images=50, parity_images=50, benchmark=False, **options)


@pytest.fixture(scope="module")
def robust(colours, tmp_path_factory):
    return _export(colours, tmp_path_factory.mktemp("robust") / "colour", corruptions=N)


def test_card_has_the_corruption_table(robust):
    r = robust.card["robustness"]
    assert (r["n_images"], r["seed"], r["preset"]) == (N, 0, "cifar-10-c")
    assert r["severities"] == list(SEVERITIES) and r["corruptions"] == list(CORRUPTIONS)
    assert r["library"].startswith("imagecorruptions-imaug ")
    assert list(r["precisions"]) == ["fp32", "int8"]
    for p, row in r["precisions"].items():
        assert row["precision"] == p and set(row["accuracy"]) == set(CORRUPTIONS)
        values = [a for accs in row["accuracy"].values() for a in accs]
        assert len(values) == 75 and all(0.0 <= a <= 1.0 for a in values)
        assert row["mean"] == pytest.approx(np.mean(values))
        assert row["drop"] == pytest.approx(row["clean"] - row["mean"])
        assert len(row["mean_by_severity"]) == 5
        assert all(0.0 <= a <= 1.0 for a in (row["clean"], *row["mean_by_severity"]))
    # written to disk as returned, and the reproduce command asks for it again
    card = json.loads((robust.out_dir / "card.json").read_text())
    assert card["robustness"] == r and card["card_version"] >= 5
    assert "--corruptions 20" in card["reproduce"]


def test_clean_accuracy_is_the_written_files_on_the_stratified_images(robust, colours):
    _, ds = colours
    idx = stratified_subset(ds.y_test, N, 0)
    for p, row in robust.card["robustness"]["precisions"].items():
        with Classifier(robust.out_dir / f"model.{p}.onnx", "cpu") as clf:
            clean = float(np.mean(clf.predict(ds.x_test[idx]) == ds.y_test[idx]))
        assert row["clean"] == clean


def test_readme_has_the_table(robust):
    readme = (robust.out_dir / "README.md").read_text()
    assert "## Accuracy under corruptions" in readme
    assert "| precision | clean | mean corrupted | drop | sev 1 |" in readme
    for p, row in robust.card["robustness"]["precisions"].items():
        assert f"| {p} | {row['clean']:.2%} | {row['mean']:.2%} |" in readme


def test_same_seed_gives_the_same_table(robust, colours, tmp_path):
    again = _export(colours, tmp_path / "again", corruptions=N)
    assert again.card["robustness"] == robust.card["robustness"]


def test_off_by_default(colours, tmp_path):
    result = _export(colours, tmp_path / "plain", held_out="none")
    assert "robustness" not in result.card
    assert "--corruptions" not in result.card["reproduce"]
    assert "under corruptions" not in (tmp_path / "plain" / "README.md").read_text()


def test_synthetic_data_has_no_table_and_says_why(colours, tmp_path):
    src, _ = colours
    result = export_model(src, tmp_path / "synthetic", precisions=["fp32"],
                          data=synthetic_dataset(100, 100), benchmark=False, corruptions=N)
    assert "robustness" not in result.card
    assert any("no corruption table" in n for n in result.notes)


def test_negative_count_is_a_usage_error(colours, tmp_path):
    with pytest.raises(UsageError, match="--corruptions"):
        _export(colours, tmp_path / "bad", corruptions=-1)
