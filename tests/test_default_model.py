"""The precision-aware default model (issue 21): ``NAME:auto`` and ``exported/default``.

int8 is chosen on CPU providers only when the model's card shows its int8 file meets the bar
(≤ 0.3 points lost on the full test split, ≥ 2.5× fp32 at batch 32 measured with VNNI or
≥ 1.6× without); fp32 on CUDA and whenever the card does not show it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cifarkit.backends.catalog import choose_model, recommended_precision, resolve_model
from cifarkit.errors import ModelError
from tests import onnx_fixtures as F


def _ship(root: Path, name: str, *, acc32: float = 0.91, acc8: float = 0.909,
          ratio: float = 3.4, vnni: bool = True, limit: int | None = None) -> Path:
    folder = root / name
    for p in ("fp32", "int8"):
        F.color_model(folder / f"model.{p}.onnx", metadata=F.default_metadata(precision=p))
    card = {
        "name": name,
        "evaluation": {"synthetic": False, "test_images": 10000, "limit": limit},
        "quantization": {"cpu_vnni": vnni, "activation_type": "QInt8"},
        "benchmark": {"batch": 32, "ratio_vs_fp32": {"fp32": 1.0, "int8": ratio}},
        "files": [{"precision": "fp32", "accuracy": acc32},
                  {"precision": "int8", "accuracy": acc8}],
    }
    (folder / "card.json").write_text(json.dumps(card))
    return folder


@pytest.fixture()
def exported(tmp_path, monkeypatch):
    root = tmp_path / "exported"
    monkeypatch.setenv("CIFARKIT_EXPORTED", str(root))
    _ship(root, "fast")                              # passes: int8 on CPUs
    _ship(root, "lossy", acc8=0.9060)                # 0.4 points lost
    _ship(root, "slow", ratio=1.31)                  # VNNI, under 2.5×
    _ship(root, "avx2", ratio=1.7, vnni=False)       # no VNNI: 1.6× is the bar
    _ship(root, "subset", limit=500)                 # accuracy not on the full split
    return root


def test_auto_picks_int8_on_cpu_only_when_the_card_shows_it_pays(exported):
    def chosen(spec: str, provider: str = "cpu") -> str:
        return choose_model(spec, provider).path.name

    assert chosen("fast:auto") == "model.int8.onnx"
    assert chosen("fast:auto", "openvino") == "model.int8.onnx"
    assert chosen("avx2:auto") == "model.int8.onnx"
    for name in ("lossy", "slow", "subset"):
        assert chosen(f"{name}:auto") == "model.fp32.onnx", name
    for provider in ("cuda", "tensorrt"):
        assert chosen("fast:auto", provider) == "model.fp32.onnx"
    precision, why = recommended_precision(exported / "slow", "cpu")
    assert precision == "fp32" and "1.31×" in why and "2.5×" in why
    precision, why = recommended_precision(exported / "fast", "cpu")
    assert precision == "int8" and "90.90 % vs fp32 91.00 %" in why
    # Explicit precisions are untouched; a bare NAME is still fp32.
    assert resolve_model("fast:fp32").name == "model.fp32.onnx"
    assert resolve_model("fast").name == "model.fp32.onnx"
    assert resolve_model("slow:int8").name == "model.int8.onnx"
    with pytest.raises(ModelError, match="no model 'gone:auto'"):
        resolve_model("gone:auto")


def test_auto_without_int8_file_or_card_is_fp32(exported):
    (exported / "fast" / "model.int8.onnx").unlink()
    assert choose_model("fast:auto").path.name == "model.fp32.onnx"
    (exported / "slow" / "card.json").unlink()
    precision, why = recommended_precision(exported / "slow", "cpu")
    assert precision == "fp32" and "card.json" in why


def test_default_pointer_with_auto_says_which_file_runs(exported):
    (exported / "default").write_text("fast:auto\n")
    cpu = choose_model(None, "cpu")
    assert cpu.path == exported / "fast" / "model.int8.onnx"
    assert "default: fast:auto" in cpu.reason and "int8 on cpu" in cpu.reason
    assert choose_model(None, "cuda").path == exported / "fast" / "model.fp32.onnx"
    (exported / "default").write_text("fast:fp32\n")  # a pinned precision stays pinned
    assert choose_model(None, "cpu").path == exported / "fast" / "model.fp32.onnx"


def test_bench_resolves_default_and_auto_like_predict(exported):
    from cifarkit.bench import resolve_models

    (exported / "default").write_text("fast:auto\n")
    got = resolve_models(["default", "slow:auto"], root=exported)
    assert [(m.name, m.precision) for m in got] == [("fast", "int8"), ("slow", "fp32")]
    got = resolve_models(["default"], root=exported, provider="cuda")
    assert [(m.name, m.precision) for m in got] == [("fast", "fp32")]


def test_predict_prints_the_chosen_file(exported, tmp_path):
    import numpy as np
    from PIL import Image

    (exported / "default").write_text("fast:auto\n")
    img = tmp_path / "red.png"
    Image.fromarray(np.full((32, 32, 3), (200, 30, 30), np.uint8)).save(img)
    r = subprocess.run([sys.executable, "-m", "cifarkit", "predict", str(img), "--workers", "0"],
                       capture_output=True, text=True, check=True,
                       env={**os.environ, "COLUMNS": "400"})  # no wrapping inside the path
    err = r.stderr
    assert "fast/model.int8.onnx" in err and "int8 on cpu" in err, err


def test_shipped_default_meets_the_bar_when_it_picks_int8():
    """Whatever exported/default names, the file it picks on a CPU is backed by its card."""
    root = Path(__file__).resolve().parents[1] / "exported"
    choice = choose_model((root / "default").read_text().strip(), "cpu", root)
    if choice.path.name == "model.int8.onnx":
        assert choice.reason.startswith("int8 on cpu")
    assert choice.path.is_file()
