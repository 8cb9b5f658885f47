"""The CLI end to end (subprocesses): models, data and how errors look (its training run:
test_newcomer)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import write_folders


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "cifarkit", *args], capture_output=True,
                          text=True, env=full_env, timeout=600)


def test_models_table():
    res = run_cli("models")
    assert res.returncode == 0, res.stderr
    for name, params in (("dense", "9,050,378"), ("cnn-batchnorm", "892,842"),
                         ("vgg16-transfer", "14,982,474")):
        assert name in res.stdout and params in res.stdout
    assert "267,786" in res.stdout and "49.76% test" in res.stdout


def test_data_summary_and_grid(tmp_path):
    root = write_folders(tmp_path / "d", 3, 2)
    grid = tmp_path / "grid.png"
    res = run_cli("data", "--data", str(root), "--grid", str(grid), "--per-class", "3")
    assert res.returncode == 0, res.stderr
    assert "folders" in res.stdout and "(30, 32, 32, 3)" in res.stdout
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_are_one_line_with_exit_codes(tmp_path):
    res = run_cli("train", "cnn-batchnrm", "--data", str(tmp_path))
    assert res.returncode == 2
    assert "Did you mean 'cnn-batchnorm'" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("data", "--data", str(tmp_path / "missing"))
    assert res.returncode == 3 and "does not exist" in res.stderr
    assert "Traceback" not in res.stderr
    res = run_cli("--debug", "data", "--data", str(tmp_path / "missing"))
    assert res.returncode == 3 and "Traceback" in res.stderr
    # Every UsageError takes the one path above (exit 2, one line): the recipe's own
    # messages (unknown recipe, --cutout range) are checked in-process in test_train.


@pytest.mark.parametrize("args, message", [
    (("predict", "--no-such-option"), "No such option"),
    (("predict", "--batch-size", "abc", "x.png"), "--batch-size"),
    (("export", "runs/x", "--tta", "3"), "--tta"),
    (("bench", "--provider"), "requires an argument"),
])
def test_typer_usage_errors_exit_2_without_a_traceback(args, message):
    """Option errors found by typer itself (whether it raises click's exceptions or, from
    typer 0.2x on, its vendored copies) are a usage message and exit code 2."""
    res = run_cli(*args)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
