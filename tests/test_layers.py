"""The layer contract in pyproject.toml: it holds, and it catches an upward import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(root / "toolkit"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_layers_hold():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "cifarkit layers KEPT" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "toolkit", tmp_path / "toolkit",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    metrics = tmp_path / "toolkit" / "cifarkit" / "measure" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\nimport cifarkit.bench  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "cifarkit.measure.metrics -> cifarkit.bench" in result.stdout
