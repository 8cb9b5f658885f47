"""A newcomer's terminal (issue 22): no TensorFlow start-up lines, tables that fit 80
columns, the quick main job's sweep and the accuracy-vs-throughput figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cifarkit.cli._tfquiet import NOISE, filter_noise
from cifarkit.cli.predict_cmd import short_path
from tests.conftest import write_folders

NO_GPU = not any(Path("/dev").glob("nvidia[0-9]*"))


def _cli(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "cifarkit", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def test_filter_noise_keeps_what_is_not_start_up_chatter():
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to "
        "STDERR\n"
        "I0000 00:00:1.1 1 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
        "GPU will not be used.\n"
        "E0000 00:00:1.2 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
        "Failed call to cuInit: UNKNOWN ERROR (303)\n"
        "I0000 00:00:1.3 1 port.cc:153] oneDNN custom operations are on. You may see ...\n"
        "E0000 00:00:2.0 1 some_kernel.cc:9] OOM when allocating tensor\n"
        "a Python warning\n"
    )
    assert filter_noise(text) == ("E0000 00:00:2.0 1 some_kernel.cc:9] OOM when allocating "
                                  "tensor\na Python warning\n")


def test_models_quiet_and_80_columns():
    """The real CLI, TensorFlow imported to count parameters: no C++ start-up line on stderr,
    every row on one line of at most 80 columns; --debug lets TensorFlow speak."""
    res = _cli("models", "*n*")
    assert res.returncode == 0, res.stderr
    assert not [line for line in res.stderr.splitlines() if NOISE.search(line)], res.stderr
    assert res.stderr.strip() == ""
    lines = res.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), res.stdout
    for name in ("dense", "cnn-batchnorm", "vgg16-finetune", "fastnet-s"):
        row = [line for line in lines if line.startswith(name + " ")]
        assert len(row) == 1 and "," in row[0], res.stdout  # name, params, ... on one line
    debug = _cli("--debug", "models", "cnn")
    assert debug.returncode == 0, debug.stderr
    if NO_GPU:  # TensorFlow 2.21 says so on every CPU-only start
        assert "Could not find cuda drivers" in debug.stderr


def test_train_quiet_and_names_its_device(tmp_path):
    """`cifarkit train` end to end in its own process (the only CLI training in the suite):
    quiet, names its device, prints the result and writes the run."""
    root = write_folders(tmp_path / "d", 4, 2)
    out = tmp_path / "run"
    res = _cli("train", "dense", "--recipe", "seed", "--epochs", "1", "--data", str(root),
               "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert not [line for line in res.stderr.splitlines() if NOISE.search(line)], res.stderr
    assert "on tensorflow: CPU" in res.stdout or "on tensorflow: GPU" in res.stdout
    assert "test accuracy" in res.stdout and "seconds / epoch" in res.stdout
    meta = json.loads((out / "run.json").read_text())
    assert meta["command"].startswith("cifarkit train dense --recipe seed")
    assert meta["device"].startswith("tensorflow: ")


def test_short_path():
    assert short_path("a/b.jpg", 20) == "a/b.jpg"
    cut = short_path("/data/cifar10/test/airplane/airplane_0001.jpg", 24)
    assert len(cut) == 24 and "…" in cut and cut.endswith("plane_0001.jpg")
    assert short_path(os.path.join(os.getcwd(), "x", "y.png"), 40) == os.path.join("x", "y.png")


def test_quick_sweep_and_accuracy_vs_throughput(tmp_path, monkeypatch):
    """--quick: the default model on every image and batch size, the others lighter; the
    figure gets one point per model × precision × provider."""
    import numpy as np

    from cifarkit.bench import BenchConfig, run_bench, to_dict
    from cifarkit.bench.report import accuracy_vs_throughput_points, write_figures
    from tests.onnx_fixtures import CLASSES, cnn_model

    root = tmp_path / "exported"
    cnn_model(root / "big" / "model.fp32.onnx")
    cnn_model(root / "small" / "model.fp32.onnx")
    (root / "default").write_text("big:fp32\n")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2400, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(2400) % 10
    cfg = BenchConfig(exported=root, providers=["cpu"], batch_sizes=[1, 8, 32], warmup=1,
                      iterations=3, quick=True)
    result = run_bench(cfg, images=images, labels=labels,
                       classes=list(CLASSES))
    data = to_dict(result)
    n = {a["model"]: a["n_images"] for a in data["accuracy"]}
    assert n == {"big": 2400, "small": 2000}
    sizes = {m: sorted(r["batch_size"] for r in data["latency"] if r["model"] == m)
             for m in n}
    assert sizes == {"big": [1, 8, 32], "small": [1, 32]}
    assert data["settings"]["quick"]["full_sweep_models"] == ["big"]
    points = accuracy_vs_throughput_points(result)
    assert sorted(p[0] for p in points) == ["big", "small"] and all(p[3] > 0 for p in points)
    figures = write_figures(result, tmp_path / "fig")
    png = figures["accuracy vs throughput"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("ref", ["small", "missing"])
def test_quick_focus_follows_exported_default(tmp_path, ref):
    from cifarkit.bench.models import ModelFile, quick_focus

    root = tmp_path / "exported"
    root.mkdir()
    (root / "default").write_text(ref)
    models = [ModelFile("big", "fp32", root / "big/model.fp32.onnx"),
              ModelFile("small", "int8", root / "small/model.int8.onnx")]
    notes: list[str] = []
    assert quick_focus(models, root, notes) == (None if ref == "missing" else "small")
    assert bool(notes) == (ref == "missing")
