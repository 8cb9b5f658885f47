"""benchmarks/jpeg_quality.py: re-encodes whole data sets, trains on each, reuses finished runs."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import benchmark_module, write_folders


@pytest.fixture(scope="module")
def jq():
    yield from benchmark_module("jpeg_quality")


def test_reencode_keeps_the_tree_and_measures_its_distortion(jq, tmp_path):
    src = write_folders(tmp_path / "src", train_per_class=2, test_per_class=1)
    hi = jq.reencode(src, tmp_path / "q90", 90)
    lo = jq.reencode(src, tmp_path / "q10", 10)
    assert hi["images"] == lo["images"] == 30
    names = sorted(p.relative_to(tmp_path / "q10").as_posix()
                   for p in (tmp_path / "q10").rglob("*.jpg"))
    assert len(names) == 30 and names[0].startswith("test/airplane/")
    assert lo["psnr_vs_source_db"] < hi["psnr_vs_source_db"]  # lower quality, more distortion
    assert not (tmp_path / "q10.partial").exists()


def test_study_trains_each_quality_then_reuses_the_runs(jq, tmp_path, monkeypatch):
    src = write_folders(tmp_path / "src", train_per_class=4, test_per_class=2)
    out = tmp_path / "r.json"
    argv = ["jpeg_quality.py", "--data", str(src), "--arch", "fastnet-s", "--epochs", "1",
            "--qualities", "40", "--work", str(tmp_path / "work"), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    assert jq.main() == 0
    result = json.loads(out.read_text())
    assert result["schema"] == jq.SCHEMA
    assert [r["quality"] for r in result["rows"]] == [None, 40]
    assert result["rows"][1]["distortion"]["images"] == 60
    first = (tmp_path / "work" / "fastnet-s-q40" / "run.json").stat().st_mtime_ns
    assert jq.main() == 0  # finished runs are reused, not trained again
    assert (tmp_path / "work" / "fastnet-s-q40" / "run.json").stat().st_mtime_ns == first
    # A baseline that does not match the study's settings is refused.
    monkeypatch.setattr(sys, "argv", [*argv, "--baseline", str(tmp_path / "work" / "nope")])
    with pytest.raises(SystemExit):
        jq.main()


def test_rows_trained_with_another_recipe_are_refused(jq, tmp_path, monkeypatch):
    src = write_folders(tmp_path / "src", train_per_class=4, test_per_class=2)
    argv = ["jpeg_quality.py", "--data", str(src), "--arch", "fastnet-s", "--epochs", "1",
            "--qualities", "40", "--work", str(tmp_path / "work"), "--out",
            str(tmp_path / "r.json")]
    monkeypatch.setattr(sys, "argv", argv)
    assert jq.main() == 0
    run_json = tmp_path / "work" / "fastnet-s-q40" / "run.json"
    run = json.loads(run_json.read_text())
    run["hyperparameters"]["lookahead"] = not run["hyperparameters"]["lookahead"]
    run_json.write_text(json.dumps(run))  # as if trained before a recipe change
    with pytest.raises(SystemExit, match="lookahead"):
        jq.main()
