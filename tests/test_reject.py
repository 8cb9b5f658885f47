"""``predict --reject auto|VALUE|off`` (``engines.reject``): the rule a run applies, and the
``unknown`` rows in every format, on the open-set digits (a softmax regression trained on
0–5 whose metadata records a threshold; the 6–9 images are the unknown ones), checked
against the model's own top probabilities computed here."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from cifarkit.backends import Classifier
from cifarkit.contract import ModelInfo, UnknownRule
from cifarkit.data.images import load_image
from cifarkit.engines import PredictRequest, get_engine, open_writer
from cifarkit.engines.reject import UNKNOWN, parse_reject, resolve
from cifarkit.errors import ModelError, UsageError
from tests import onnx_fixtures as F
from tests.test_cli_foundation import run_cli


def test_parse_reject():
    assert parse_reject(None) == parse_reject(" OFF ") == "off"
    assert parse_reject("auto") == "auto" and parse_reject("0.25") == 0.25
    for bad in ("maybe", "nan", "inf"):
        with pytest.raises(UsageError, match="--reject"):
            parse_reject(bad)


def test_resolve_the_models_rule_a_value_or_a_clear_refusal(tmp_path):
    info = ModelInfo(classes=("cat", "dog"))
    ruled = ModelInfo(classes=("cat", "dog"),
                      unknown=UnknownRule("msp", 0.7, 0.95, "500 held-out images"))
    model = tmp_path / "m.onnx"
    assert resolve("off", ruled, model) is None
    auto = resolve("auto", ruled, model)
    assert (auto.score, auto.threshold) == ("msp", 0.7) and "500 held-out" in auto.source
    assert resolve(0.4, info, model).threshold == 0.4
    with pytest.raises(ModelError, match=r"m\.onnx records no unknown threshold.*--reject VALUE"):
        resolve("auto", info, model)
    with pytest.raises(UsageError, match=r"in \(0, 1\)"):
        resolve(1.5, info, model)
    with pytest.raises(UsageError, match="class of its own named 'unknown'"):
        resolve(0.5, ModelInfo(classes=("cat", UNKNOWN)), model)
    # A rule on the model's "score" output: the file must have one; any real threshold.
    rule = UnknownRule("score", 2.0)
    with pytest.raises(ModelError, match=r"--reject: .*m\.onnx: its unknown rule scores with "
                                         r"the model's 'score' output, which the file does "
                                         r"not have"):
        resolve("auto", ModelInfo(classes=("a", "b"), unknown=rule), model)
    scored_info = ModelInfo(classes=("a", "b"), unknown=rule, has_score=True)
    scored = resolve("auto", scored_info, model)
    assert scored.uses_output and resolve(-250.0, scored_info, model).threshold == -250.0
    with pytest.raises(ModelError, match="which the runtime did not return"):
        scored.scores(np.array([[0.5, 0.5]]))
    assert scored.scores(np.array([[0.5, 0.5]]), score_output=np.array([7.5])) == [7.5]


@pytest.fixture(scope="module")
def photos(open_set, tmp_path_factory):
    """Known (0–5) and unknown (6–9) test digits in their class folders, and a bad file."""
    root = tmp_path_factory.mktemp("photos")
    for part in (open_set.known, open_set.unknown):
        for d in (part / "test").iterdir():
            shutil.copytree(d, root / d.name)
    (root / "five" / "broken.png").write_bytes(b"not a png")
    return root


def _expected(model, photos):
    """path → top probability, computed here with the model on the decoded files."""
    files = sorted(p for p in photos.rglob("*.png") if p.name != "broken.png")
    x = np.stack([load_image(p, size=16) for p in files])
    with Classifier(model) as clf:
        top = clf.predict_proba(x).max(axis=1)
    return {str(p): float(s) for p, s in zip(files, top, strict=True)}


def _rows(fmt, target):
    if fmt == "parquet":
        return pd.read_parquet(target)
    text = target.read_text(encoding="utf-8")
    if fmt == "csv":
        return pd.DataFrame(list(csv.DictReader(io.StringIO(text))))
    return pd.DataFrame([json.loads(line) for line in text.splitlines()])


def test_unknown_rows_in_every_format(open_set, photos, tmp_path):
    expected = _expected(open_set.ruled, photos)
    t = open_set.threshold
    request = PredictRequest(sources=(str(photos),), model=open_set.ruled, workers=0,
                             reject="auto", labels_from_folders=True)
    for fmt in ("csv", "jsonl", "parquet"):
        target = tmp_path / f"rows.{fmt}"
        with open_writer(fmt, target=target, labels=True, reject=True) as out:
            stats = get_engine("local").run(request, out.add)
        df = _rows(fmt, target).set_index("path")
        assert stats.rejected == sum(s < t for s in expected.values()) > 0, fmt
        assert stats.succeeded - stats.rejected > 0 and stats.rejection.threshold == t
        bad = df.loc[str(photos / "five" / "broken.png")]
        assert bad["error"] and (pd.isna(bad.get("score")) or bad.get("score") == ""), fmt
        good = df.drop(index=str(photos / "five" / "broken.png"))
        assert set(good.index) == set(expected)
        for path, row in good.iterrows():
            score, rejected = float(row["score"]), str(row["rejected"]).lower() == "true"
            assert score == pytest.approx(expected[path], abs=1e-6) and rejected == (
                expected[path] < t), (fmt, path)
            top = row["top_k"]
            names = ([t.split(":")[0] for t in top.split(";")] if fmt == "csv"
                     else [t["label"] for t in top])
            assert len(names) == 3 and UNKNOWN not in names  # top-k kept either way
            if rejected:  # "unknown", no class chosen
                assert row["label"] == UNKNOWN
                truth = row.get("true_label")
                if isinstance(truth, str) and truth:  # a known digit's folder: not correct
                    assert str(row["correct"]).lower() == "false"
                assert pd.isna(row["index"]) or row["index"] == ""
            else:
                assert row["label"] == names[0]


def test_cli_reject_off_auto_and_errors(open_set, photos, tmp_path):
    res = run_cli("predict", str(photos), "-m", str(open_set.ruled), "--reject", "auto",
                  "--workers", "0")
    assert res.returncode == 1  # the broken file
    n = sum(s < open_set.threshold for s in _expected(open_set.ruled, photos).values())
    assert f"{n:,} unknown (top probability < {open_set.threshold:.4g}, the model's rule" \
        in res.stdout + res.stderr
    assert " unknown " in res.stdout  # the table's label column
    off = run_cli("predict", str(photos), "-m", str(open_set.ruled), "-f", "csv",
                  "--workers", "0")
    assert off.stdout.splitlines()[0] == ("path,label,index,confidence,top_k,error,reason,"
                                          "warnings,backend,provider,path_bytes")
    assert "unknown" not in off.stderr
    no_rule = run_cli("predict", str(photos), "-m", str(open_set.model), "--reject", "auto")
    assert no_rule.returncode == 4 and "digits06.onnx records no unknown threshold" in \
        no_rule.stderr
    own = F.linear_model(tmp_path / "own.onnx", np.zeros((256, 2)), np.zeros(2),
                         ("cat", "unknown"), 16)
    clash = run_cli("predict", str(photos), "-m", str(own), "--reject", "0.5")
    assert clash.returncode == 2 and "class of its own named 'unknown'" in clash.stderr


# --- a rule on the model's score output (onnx_fixtures.scored_model) ------------------------


@pytest.fixture(scope="module")
def solids(tmp_path_factory):
    """One lossless PNG per prototype colour: ``scored_model``'s score is its mean − 128
    (white 127, grey 0, orange −1/3, black −128), path → (colour, expected score)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("solids")
    out = {}
    for name, rgb in F.PROTOTYPES.items():
        path = root / f"{name}.png"
        Image.fromarray(F.solid(rgb)).save(path)
        out[str(path)] = (rgb, float(F.expected_score(F.solid(rgb)[None])[0]))
    return root, out


def _check_rows(rows, expected, threshold):
    assert sorted(p.path for p in rows) == sorted(expected)
    for p in rows:
        rgb, score = expected[p.path]
        assert p.score == pytest.approx(score, abs=1e-3) and p.rejected == (score < threshold)
        assert p.label == (UNKNOWN if p.rejected else F.expected_label(rgb)), p.path


def test_reject_auto_and_value_use_the_models_score_output(solids, tmp_path):
    """Local engine and the Ray actor (``ray_actor.Predictor``, plain Python: no cluster
    needed) fetch the score output with the probabilities and judge rows on it."""
    from cifarkit.engines.base import rejection
    from cifarkit.engines.ray_actor import Predictor, model_files
    from cifarkit.engines.rows import predictions_from_table

    root, expected = solids
    model = F.scored_model(tmp_path / "scored.onnx", threshold=0.0)
    for reject, threshold in (("auto", 0.0), ("42.5", 42.5)):  # any real number: not (0, 1)
        request = PredictRequest(sources=(str(root),), model=model, workers=0, reject=reject)
        rows = []
        stats = get_engine("local").run(request, rows.append)
        assert (stats.rejection.score, stats.rejection.threshold) == ("score", threshold)
        assert stats.rejected == sum(s < threshold for _, s in expected.values()) >= 4
        _check_rows(rows, expected, threshold)
    import pyarrow as pa

    actor = Predictor(request, model_files(request), "rows", rule=rejection(request))
    table = actor(pa.table({"path": sorted(expected)}))
    _check_rows(list(predictions_from_table(next(table))), expected, 42.5)


def test_a_score_rule_without_the_output_fails_before_any_input(solids, tmp_path):
    root, _ = solids
    model = F.scored_model(tmp_path / "ruled-only.onnx", threshold=0.0, score=False)
    request = PredictRequest(sources=(str(root),), model=model, workers=0, reject="auto")
    rows = []
    with pytest.raises(ModelError, match="which the file does not have"):
        get_engine("local").run(request, rows.append)
    assert rows == []
    request = PredictRequest(sources=(str(root),), model=model, workers=0, reject="5")
    with pytest.raises(ModelError, match=r"ruled-only\.onnx: its unknown rule scores with the "
                                         r"model's 'score' output, which the file does not have"):
        get_engine("local").run(request, rows.append)  # a threshold on the same missing score
