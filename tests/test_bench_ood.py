"""``bench --ood DIR``: an open-set split of scikit-learn's digits (a softmax regression trained
on 0–5, the 6–9 images as the unknown ones) and scikit-image's ``lfw_subset`` (faces and
non-faces: a labelled dataset of other subjects a package ships), against numbers computed
here independently from the model's own outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cifarkit.backends import Classifier
from cifarkit.bench import BenchConfig, run_bench, to_dict
from cifarkit.bench.ood import image_files
from cifarkit.bench.report import to_markdown
from cifarkit.data import load_dataset
from cifarkit.data.images import load_image
from cifarkit.errors import DataError, ModelError, UsageError
from tests import onnx_fixtures as F
from tests.test_cli_foundation import run_cli


def _bench(model, known, ood, **extra):
    return run_bench(BenchConfig(models=[str(model)], data=known, ood=ood, providers=["cpu"],
                                 batch_sizes=[8], warmup=0, iterations=2, **extra))


def _top_probability(model, images):
    with Classifier(model) as clf:
        return clf.predict_proba(images).max(axis=1).astype(np.float64)


@pytest.fixture(scope="module")
def lfw(tmp_path_factory):
    """``skimage.data.lfw_subset()``: 100 faces and 100 non-faces (25×25 grey), as PNGs in two
    folders, plus a file that is no image (left out and listed)."""
    from skimage.data import lfw_subset

    root = tmp_path_factory.mktemp("lfw")
    for i, img in enumerate(lfw_subset()):
        folder = root / ("faces" if i < 100 else "non-faces")
        folder.mkdir(exist_ok=True)
        Image.fromarray((img * 255).round().astype(np.uint8), "L").save(folder / f"{i:03d}.png")
    (root / "faces" / "broken.png").write_bytes(b"not a png")
    return root


def test_open_set_digits_match_an_independent_computation(open_set):
    from sklearn.metrics import roc_auc_score

    (row,) = to_dict(_bench(open_set.model, open_set.known, open_set.unknown))["ood"]
    x_in = load_dataset(open_set.known, splits=("test",), image_size=16).x_test
    files = image_files(open_set.unknown)
    x_out = np.stack([load_image(f, size=16) for f in files])
    s_in, s_out = (_top_probability(open_set.model, x) for x in (x_in, x_out))
    auroc = roc_auc_score(np.r_[np.ones(len(s_in)), np.zeros(len(s_out))], np.r_[s_in, s_out])
    # No rule in the model: the threshold accepts 95 % of the test split itself.
    t = np.sort(s_in)[int(0.05 * len(s_in))]
    assert row["threshold_source"] == "split" and row["score"] == "msp"
    assert (row["n_in"], row["n_out"]) == (len(s_in), len(files)) and len(files) > 600
    assert row["auroc"] == pytest.approx(auroc, abs=1e-9)
    assert row["threshold"] == pytest.approx(t, abs=1e-6)
    assert row["fpr_at_95_tpr"] == pytest.approx(np.mean(s_out >= t), abs=1e-9)
    assert row["rejected_in"] == pytest.approx(np.mean(s_in < t), abs=1e-9)
    assert row["rejected_in"] <= 0.05
    assert row["rejected_out"] == pytest.approx(np.mean(s_out < t), abs=1e-9)
    assert 0.7 < row["auroc"] < 1  # unseen digits look less sure than the known ones
    print(f"open-set digits: AUROC {row['auroc']:.3f}, FPR@95 {row['fpr_at_95_tpr']:.3f}")


def test_the_models_recorded_threshold_is_the_one_reported(open_set, lfw):
    result = _bench(open_set.ruled, open_set.known, lfw)
    (row,) = to_dict(result)["ood"]
    assert row["threshold_source"] == "model"
    assert row["threshold"] == pytest.approx(open_set.threshold)
    # Set on held-out training images at 95 %: near 5 % of the test split is rejected.
    assert 0 < row["rejected_in"] < 0.15
    skipped = result.ood_images.skipped
    assert row["n_out"] == 200 and len(skipped) == 1 and "broken.png" in skipped[0]
    faces = np.stack([load_image(f, size=16) for f in image_files(lfw) if "broken" not in f])
    s_out = _top_probability(open_set.ruled, faces)
    assert row["rejected_out"] == pytest.approx(np.mean(s_out < open_set.threshold), abs=1e-9)
    assert row["auroc"] > 0.6  # top probability separates, if weakly
    md = to_markdown(result)
    assert "## Unknown inputs (--ood)" in md and "1 files could not be decoded" in md
    print(f"digits 0–5 vs lfw_subset: AUROC {row['auroc']:.3f}, rejected "
          f"{row['rejected_out']:.1%} of faces, {row['rejected_in']:.1%} of digits")


def test_cli_writes_the_table_json_and_markdown(open_set, lfw, tmp_path):
    res = run_cli("bench", str(open_set.model), "--data", str(open_set.known), "--ood", str(lfw),
                  "--provider", "cpu", "--batch-sizes", "8", "--iterations", "2",
                  "--json", str(tmp_path / "b.json"), "--markdown", str(tmp_path / "b.md"),
                  "--no-plots")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "unknown inputs: 200 images of other subjects" in res.stdout
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["settings"]["ood"]["n_images"] == 200
    assert len(data["settings"]["ood"]["skipped"]) == 1
    (row,) = data["ood"]
    assert f"{row['auroc']:.3f}" in res.stdout and f"{row['auroc']:.3f}" in (
        tmp_path / "b.md").read_text()


def test_a_bad_ood_folder_fails_before_the_sweep(open_set, tmp_path):
    with pytest.raises(UsageError, match="not a folder"):
        _bench(open_set.model, open_set.known, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="no image files"):
        _bench(open_set.model, open_set.known, tmp_path / "empty")


def test_a_score_rule_uses_the_models_score_output_on_every_runtime(tmp_path):
    """``scored_model`` (score: mean pixel − 128, rule threshold 0): known images are bright
    prototype colours with noise, the other ones darker; AUROC and the rejected shares come
    from the model's score output, checked against scikit-learn on the numpy scores."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    bright = [c for c in F.CLASSES if sum(F.PROTOTYPES[c]) / 3 > 100]
    y = np.array([F.CLASSES.index(bright[i % len(bright)]) for i in range(40)])
    protos = np.array([F.PROTOTYPES[c] for c in F.CLASSES], np.float64)
    x_in = np.clip(protos[y][:, None, None] + rng.normal(0, 30, (40, 32, 32, 3)), 0, 255)
    x_in = x_in.astype(np.uint8)
    grey = rng.uniform(40, 180, (30, 1, 1, 1))  # mostly darker: scores about −88 to 52
    x_out = np.clip(grey + rng.normal(0, 30, (30, 32, 32, 3)), 0, 255).astype(np.uint8)
    (tmp_path / "other").mkdir()
    for i, img in enumerate(x_out):
        Image.fromarray(img).save(tmp_path / "other" / f"{i}.png")
    model = F.scored_model(tmp_path / "scored.onnx", threshold=0.0)
    result = run_bench(BenchConfig(models=[str(model)], ood=tmp_path / "other", providers=["cpu"],
                                   runtimes=["onnxruntime", "tract"], batch_sizes=[8], warmup=0,
                                   iterations=2), images=x_in, labels=y, classes=F.CLASSES)
    data = to_dict(result)
    s_in, s_out = F.expected_score(x_in), F.expected_score(x_out)
    auroc = roc_auc_score(np.r_[np.ones(40), np.zeros(30)], np.r_[s_in, s_out])
    assert 0.5 < auroc < 1 and len(data["ood"]) == 2
    for row in data["ood"]:
        assert (row["score"], row["threshold_source"], row["threshold"]) == ("score", "model", 0)
        assert row["auroc"] == pytest.approx(auroc, abs=1e-9)
        assert row["fpr_at_95_tpr"] == pytest.approx(
            np.mean(s_out >= np.sort(s_in)[int(0.05 * 40)]), abs=1e-9)
        assert row["rejected_in"] == pytest.approx(np.mean(s_in < 0), abs=1e-9)
        assert row["rejected_out"] == pytest.approx(np.mean(s_out < 0), abs=1e-9)
        assert row["rejected_out"] > 0.3
    for acc in data["accuracy"]:
        assert acc["score_agrees"] and acc["score_max_abs_diff"] < 1e-3, acc
    assert "| score |" in to_markdown(result)
    no_output = F.scored_model(tmp_path / "ruled-only.onnx", threshold=0.0, score=False)
    with pytest.raises(ModelError, match="ruled-only.onnx: its unknown rule scores with the "
                                         "model's 'score' output, which the file does not"):
        run_bench(BenchConfig(models=[str(no_output)], ood=tmp_path / "other",
                              providers=["cpu"], batch_sizes=[8], warmup=0, iterations=2),
                  images=x_in, labels=y, classes=F.CLASSES)
