"""benchmarks/seed_study.py: trains, resumes, reuses, and writes an honest partial document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import benchmark_module, write_folders


@pytest.fixture(scope="module")
def study():
    yield from benchmark_module("seed_study")


def _args(tmp: Path, data: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--runs", str(tmp / "runs"), "--out", str(tmp / "doc" / "S.md"),
            "--json", str(tmp / "doc" / "s.json"), "--limit", "40", *extra]


def test_study_interrupt_resume_reuse(tmp_path, study, monkeypatch, capsys):
    data = write_folders(tmp_path / "data", train_per_class=4, test_per_class=2)
    argv = _args(tmp_path, data, "--only", "cnn,batch-size,vgg16-transfer",
                 "--epochs-default", "2", "--batch-sizes", "4,32")
    runs, doc = tmp_path / "runs", tmp_path / "doc" / "S.md"

    # 1st: Ctrl-C at the end of default-cnn's first epoch (seed-cnn has finished by then).
    real = study.make_progress

    def interrupting(name):
        inner = real(name)

        def progress(event, info):
            inner(event, info)
            if name == "default-cnn" and event == "epoch_end" and info["epoch"] == 1:
                raise KeyboardInterrupt

        return progress

    monkeypatch.setattr(study, "make_progress", interrupting)
    assert study.main(argv) == 130
    monkeypatch.setattr(study, "make_progress", real)
    assert json.loads((runs / "seed-cnn" / "run.json").read_text())["status"] == "complete"
    assert (runs / "default-cnn" / ".backup" / "run-config.json").is_file()
    text = doc.read_text()
    assert "interrupted after 1/2 epochs" in text
    assert "not run yet" in text  # dense, batch runs, …
    assert "1 of 15 runs complete" in text

    # 2nd: resumes default-cnn at epoch 2, trains the batch runs; VGG16 has no weights here.
    capsys.readouterr()
    assert study.main(argv) == 0
    log = capsys.readouterr().err
    assert "[seed-cnn] reused" in log
    assert "[default-cnn] resuming after epoch 1" in log and "[default-cnn] resumed" in log
    assert "[seed-vgg16-transfer] not measured" in log
    meta = json.loads((runs / "default-cnn" / "run.json").read_text())
    assert meta["status"] == "complete" and meta["epochs"] == 2
    sessions = json.loads((runs / "default-cnn" / "study.json").read_text())["sessions"]
    assert [s["outcome"] for s in sessions] == ["interrupted", "complete"]
    assert [s["resumed"] for s in sessions] == [False, True]
    b4 = json.loads((runs / "batch-4" / "run.json").read_text())
    assert b4["hyperparameters"]["batch_size"] == 4 and b4["epochs"] == 1
    assert b4["hyperparameters"]["lr"] == 0.01 and b4["hyperparameters"]["val_split"] == 0.25

    # 3rd: nothing left to train; every finished run is reused untouched.
    models = sorted(runs.glob("*/model.keras"))
    assert [m.parent.name for m in models] == ["batch-32", "batch-4", "default-cnn", "seed-cnn"]
    mtimes = {m: m.stat().st_mtime_ns for m in models}
    assert study.main(argv) == 0
    log = capsys.readouterr().err
    assert {m: m.stat().st_mtime_ns for m in models} == mtimes
    trained = [line for line in log.splitlines() if "] training:" in line or "resuming" in line]
    assert all(line.startswith(("[seed-vgg16", "[default-vgg16")) for line in trained), trained
    assert log.count("] reused") == 4

    text = doc.read_text()
    # The notebook's figures, all of them, beside the measured ones.
    for figure in ("49.76 % test", "63.61 % val", "62.07 % val", "63.47 % val", "55.33 % val",
                   "49.22 %", "31.30 %", "20.75 %", "11.70 %", "≥ 82.00 % test",
                   "≥ 78.00 % test", "≥ 55.00 % test"):
        assert figure in text, figure
    s = json.loads((tmp_path / "doc" / "s.json").read_text())
    by = {r["name"]: r for r in s["runs"]}
    seed = json.loads((runs / "seed-cnn" / "run.json").read_text())
    val = 100 * seed["val_accuracy"]
    assert by["seed-cnn"]["val_pct"] == pytest.approx(val)
    row = next(line for line in text.splitlines() if line.startswith("| `cnn` | 63.61 % val"))
    assert f"{val:.2f} %" in row and f"{val - 63.61:+.2f}" in row
    assert "[curves](figures/seed-study/seed-cnn.png)" in row
    assert "cifarkit train cnn --recipe seed" in row
    row4 = next(line for line in text.splitlines() if line.startswith("| 4 |"))
    assert f"{100 * b4['val_accuracy']:.2f} %" in row4 and "--batch-size 4 --epochs" not in row4
    assert "--epochs 1 --batch-size 4" in row4
    assert by["seed-dense"]["status"] == "not run yet"
    assert "not measured" in by["seed-vgg16-transfer"]["status"]
    assert "ImageNet weights" in by["seed-vgg16-transfer"]["detail"]
    assert "not measured: " in text and "--limit 40` per split: a smoke run" in text
    assert "4 of 15 runs complete" in text
    for name in ("seed-cnn", "default-cnn", "batch-4", "batch-32"):
        assert (tmp_path / "doc" / "figures" / "seed-study" / f"{name}.png").is_file()
    assert (tmp_path / "doc" / "figures" / "seed-study" / "batch-size.png").is_file()
    assert (tmp_path / "doc" / "figures" / "seed-study" / "accuracy-by-architecture.png").is_file()
    # The document names the whole study, not this invocation's --only subset.
    assert s["command"].startswith("python benchmarks/seed_study.py --data ")
    assert "--only" not in s["command"] and "--epochs-default 2" in s["command"]


def test_study_refuses_a_mismatched_run_folder_before_training(tmp_path, study, capsys):
    run = tmp_path / "runs" / "seed-cnn"
    run.mkdir(parents=True)
    hyper = study.expected_hyperparameters(study.build_specs(None, [32])[1])
    (run / "run.json").write_text(json.dumps({
        "arch": "cnn", "status": "complete", "hyperparameters": hyper,
        "data": {"limit": None}}))
    argv = ["--data", str(tmp_path / "nowhere"), "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "S.md"), "--only", "cnn", "--limit", "40"]
    assert study.main(argv) == 2
    assert "trained with --limit None, this study uses --limit 40" in capsys.readouterr().err
    assert not (tmp_path / "S.md").exists()
    with pytest.raises(SystemExit):
        study.main([*argv, "--only", "resnet"])


def test_only_selects_by_run_name(study):
    specs = {s.name: s for s in study.build_specs(40, [1, 32])}
    only = {"default-cnn-batchnorm", "seed-cnn"}
    chosen = [n for n, s in specs.items() if study.selected(s, only, False, [1, 32])]
    assert chosen == ["seed-cnn", "default-cnn-batchnorm"]
    assert specs["default-cnn-batchnorm"].epochs == 40
    assert study._without_only(["--data", "d", "--only", "cnn", "--only=x", "--limit", "9"]) == [
        "--data", "d", "--limit", "9"]


def test_runs_resumed_before_the_stream_fix_are_named(study, tmp_path):
    specs = {s.name: s for s in study.build_specs(40, [1, 32])}

    def row(name, *starts):
        sessions = [{"started_utc": t, "resumed": i > 0} for i, t in enumerate(starts)]
        return study.Row(specs[name], tmp_path, "cmd", "complete", study={"sessions": sessions})

    early, late = "2026-11-28T15:55:00+00:00", "2026-11-29T09:00:00+00:00"
    assert study._resume_replays([row("seed-cnn", early), row("default-dense", early, late)]) == []
    notes = study._resume_replays([row("default-cnn", early, early, early),
                                   row("seed-cnn", early, late)])
    assert len(notes) == 1 and "`default-cnn` was resumed" in notes[0]
    assert "seed-cnn" not in notes[0]
    assert "epochs 28–30 repeat 25–27" in notes[0]


def test_finished_runs_survive_losing_the_run_folders(tmp_path, study, capsys):
    """A fresh clone has no runs/: the committed JSON stands in for finished runs."""
    import shutil

    data = write_folders(tmp_path / "data", train_per_class=4, test_per_class=2)
    argv = _args(tmp_path, data, "--only", "seed-cnn", "--batch-sizes", "32")
    runs, doc, js = tmp_path / "runs", tmp_path / "doc" / "S.md", tmp_path / "doc" / "s.json"
    assert study.main(argv) == 0
    val = 100 * json.loads((runs / "seed-cnn" / "run.json").read_text())["val_accuracy"]
    entry = {r["name"]: r for r in json.loads(js.read_text())["runs"]}["seed-cnn"]
    assert entry["meta"]["val_accuracy"] == pytest.approx(val / 100)
    assert len(entry["history"]["val_accuracy"]) == 10 and len(entry["meta"]["epoch_seconds"]) == 10

    shutil.rmtree(runs)
    capsys.readouterr()
    assert study.main(argv) == 0
    log = capsys.readouterr().err
    assert f"[seed-cnn] reused (archived in {js})" in log and "training:" not in log
    assert not (runs / "seed-cnn").exists()
    text = doc.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `cnn` | 63.61 % val"))
    assert f"{val:.2f} %" in row and "[curves](figures/seed-study/seed-cnn.png)" in row
    assert "| `seed-cnn` | complete (archived) |" in text and "1 of 14 runs complete" in text
    again = {r["name"]: r for r in json.loads(js.read_text())["runs"]}["seed-cnn"]
    assert again["meta"] == entry["meta"] and again["sessions"] == entry["sessions"]

    # --rerun sets the archived result aside and trains the run again.
    assert study.main([*argv, "--rerun", "seed-cnn"]) == 0
    assert "[seed-cnn] training:" in capsys.readouterr().err
    assert json.loads((runs / "seed-cnn" / "run.json").read_text())["status"] == "complete"
    assert "| `seed-cnn` | complete |" in doc.read_text()

    # Another --limit, or an entry trained otherwise, is not reused.
    args = study.parse_args([*_args(tmp_path, data)[:-2], "--limit", "50"])
    assert study.load_archive(args, study.build_specs(None, [32])) == {}
    assert "written with --limit 40" in capsys.readouterr().err
    spec = {s.name: s for s in study.build_specs(3, [32])}["default-cnn"]
    other = {"status": "complete", "arch": "cnn", "recipe": "default", "meta": {"epochs": 2},
             "overrides": {"epochs": 2, "batch_size": None, "val_split": None}}
    assert "overrides" in study.archived_mismatch(spec, other)
    with pytest.raises(SystemExit):
        study.parse_args([*argv, "--rerun", "seed-resnet"])


def test_runs_table_tells_machines_apart(study, tmp_path):
    specs = {s.name: s for s in study.build_specs(40, [1, 32])}

    def row(name, *platforms):
        sessions = [{"platform": p, "cpu": "AMD EPYC", "cores": 2} for p in platforms]
        return study.Row(specs[name], tmp_path, "cmd", "complete", study={"sessions": sessions})

    one = study._runs_section([row("seed-cnn", "Linux-a"), row("default-cnn", "Linux-a")])
    assert not any("machines" in line for line in one)
    two = study._runs_section([row("seed-cnn", "Linux-a"),
                               row("default-cnn", "Linux-a", "Linux-b")])
    note = next(line for line in two if line.startswith("Sessions ran on 2 machines"))
    assert "`Linux-a`: `seed-cnn`, `default-cnn`; `Linux-b`: `default-cnn`" in note


def test_an_archive_entry_survives_being_rewritten(study, tmp_path, capsys):
    """Entries converted from schema 1 keep only a median epoch time: rewriting keeps it."""
    spec = {s.name: s for s in study.build_specs(None, [32])}["seed-cnn"]
    meta = {"arch": "cnn", "status": "complete", "test_accuracy": 0.6049,
            "val_accuracy": 0.6014, "epochs": 10, "median_epoch_seconds": 167.3,
            "finished_utc": "2026-11-28T05:26:00+00:00", "provenance": "converted"}
    js = tmp_path / "s.json"
    js.write_text(json.dumps({"schema": study.SCHEMA, "limit": 40, "seed": 0, "runs": [
        {"name": "seed-cnn", "status": "complete", "arch": "cnn", "recipe": "seed",
         "overrides": spec.overrides, "meta": meta, "history": {}, "sessions": []}]}))
    argv = ["--data", str(tmp_path / "unused"), "--runs", str(tmp_path / "runs"),
            "--out", str(tmp_path / "S.md"), "--json", str(js), "--limit", "40",
            "--only", "seed-cnn"]
    for _ in range(2):
        assert study.main(argv) == 0
        entry = json.loads(js.read_text())["runs"][1]
        assert entry["name"] == "seed-cnn" and entry["meta"] == meta
        assert entry["median_epoch_seconds"] == 167.3
        assert "| 167 (128) |" in (tmp_path / "S.md").read_text()
    assert "training:" not in capsys.readouterr().err
