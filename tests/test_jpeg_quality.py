"""benchmarks/jpeg_quality.py: re-encodes whole data sets, trains on each, reuses finished runs."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from tests.conftest import benchmark_module, isolated, write_folders


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


@pytest.fixture(scope="module")
def study(jq, tmp_path_factory):
    """One study (the source run and one quality, fastnet-s for one epoch), trained once for
    the module: ``(argv, work folder, result JSON)``."""
    root = tmp_path_factory.mktemp("study")
    src = write_folders(root / "src", train_per_class=4, test_per_class=2)
    out = root / "r.json"
    argv = ["jpeg_quality.py", "--data", str(src), "--arch", "fastnet-s", "--epochs", "1",
            "--qualities", "40", "--work", str(root / "work"), "--out", str(out)]
    with isolated(tmp_path_factory), pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", argv)
        assert jq.main() == 0
    return argv, root / "work", json.loads(out.read_text())


def test_study_trains_each_quality_then_reuses_the_runs(jq, study, monkeypatch):
    argv, work, result = study
    assert result["schema"] == jq.SCHEMA
    assert [r["quality"] for r in result["rows"]] == [None, 40]
    assert result["rows"][1]["distortion"]["images"] == 60
    first = (work / "fastnet-s-q40" / "run.json").stat().st_mtime_ns
    monkeypatch.setattr(sys, "argv", argv)
    assert jq.main() == 0  # finished runs are reused, not trained again
    assert (work / "fastnet-s-q40" / "run.json").stat().st_mtime_ns == first
    # A baseline that does not match the study's settings is refused.
    monkeypatch.setattr(sys, "argv", [*argv, "--baseline", str(work / "nope")])
    with pytest.raises(SystemExit):
        jq.main()


def test_rows_trained_with_another_recipe_are_refused(jq, study, tmp_path, monkeypatch):
    argv, work, _ = study
    mine = tmp_path / "work"
    shutil.copytree(work, mine)  # the study's finished runs, this test's to change
    argv = [*argv[:argv.index("--work")], "--work", str(mine), "--out", str(tmp_path / "r.json")]
    monkeypatch.setattr(sys, "argv", argv)
    run_json = mine / "fastnet-s-q40" / "run.json"
    run = json.loads(run_json.read_text())
    run["hyperparameters"]["lookahead"] = not run["hyperparameters"]["lookahead"]
    run_json.write_text(json.dumps(run))  # as if trained before a recipe change
    with pytest.raises(SystemExit, match="lookahead"):
        jq.main()
