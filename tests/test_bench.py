"""``cifarkit bench``: metrics against hand-computed cases, latency statistics with a scripted
clock and a sleeping workload, MACs from the graph, the JSON schema, providers, the CLI, and
a real-data run on a subset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cifarkit.bench import BenchConfig, run_bench, to_dict
from cifarkit.bench.report import to_markdown, write_figures, write_json, write_markdown
from cifarkit.errors import ModelError, ProviderError, UsageError
from cifarkit.measure.flops import count_macs, cpu_fp32_peak
from cifarkit.measure.latency import make_batch, measure
from cifarkit.measure.metrics import (
    confusion_matrix,
    evaluate,
    format_confusion,
    per_class_metrics,
    row_normalize,
    top_confusions,
    topk_accuracy,
)
from tests.conftest import write_folders
from tests.onnx_fixtures import CLASSES, PROTOTYPES, cnn_model, color_model, solid

REPO = Path(__file__).resolve().parents[1]


# --- metrics --------------------------------------------------------------------------------

# 3 classes, 6 images: rows true, columns predicted
#   true 0: predicted 0, 1      true 1: 1, 1      true 2: 2, 0
Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
Y_PRED = np.array([0, 1, 1, 1, 2, 0])
NAMES = ("cat", "dog", "frog")


def test_confusion_matrix_and_row_normalisation_by_hand():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert cm.dtype == np.int64
    norm = row_normalize(cm)
    np.testing.assert_allclose(norm, [[0.5, 0.5, 0], [0, 1, 0], [0.5, 0, 0.5]])
    # a class with no images keeps a zero row (no division by zero)
    np.testing.assert_array_equal(row_normalize(np.array([[0, 0], [1, 3]])),
                                  [[0, 0], [0.25, 0.75]])


def test_per_class_precision_recall_f1_by_hand():
    rows = per_class_metrics(confusion_matrix(Y_TRUE, Y_PRED, 3), NAMES)
    # precision = TP / predicted: cat 1/2, dog 2/3, frog 1/1
    # recall = TP / support: cat 1/2, dog 2/2, frog 1/2
    # F1 = 2PR/(P+R): cat 0.5, dog 2·(2/3)·1/(5/3) = 0.8, frog 2·1·0.5/1.5 = 2/3
    expect = {
        "cat": (0.5, 0.5, 0.5, 2, 2),
        "dog": (2 / 3, 1.0, 0.8, 2, 3),
        "frog": (1.0, 0.5, 2 / 3, 2, 1),
    }
    for row in rows:
        p, r, f1, support, predicted = expect[row["class"]]
        assert row["precision"] == pytest.approx(p)
        assert row["recall"] == pytest.approx(r)
        assert row["f1"] == pytest.approx(f1)
        assert (row["support"], row["predicted"]) == (support, predicted)
    assert [r["label"] for r in rows] == [0, 1, 2]


def test_zero_division_is_zero():
    # class 2 is never predicted and has no images; class 1 is predicted but never right
    rows = per_class_metrics(confusion_matrix([0, 0, 1], [0, 1, 0], 3), NAMES)
    assert rows[2] == {"label": 2, "class": "frog", "precision": 0.0, "recall": 0.0,
                       "f1": 0.0, "support": 0, "predicted": 0}
    assert rows[1]["precision"] == 0.0 and rows[1]["f1"] == 0.0


def test_top_confusions_order_and_text():
    cm = np.array([[50, 3, 143], [7, 80, 7], [0, 0, 90]])
    top = top_confusions(cm, NAMES, n=3)
    assert [(t["true"], t["predicted"], t["count"]) for t in top] == [
        ("cat", "frog", 143), ("dog", "cat", 7), ("dog", "frog", 7),  # ties: by index
    ]
    assert top[0]["share_of_true"] == pytest.approx(143 / 196)
    assert format_confusion(top[0]) == "cat → frog: 143"
    assert format_confusion({"true": "cat", "predicted": "dog", "count": 1430}) == \
        "cat → dog: 1,430"
    assert top_confusions(np.diag([5, 5, 5]), NAMES) == []  # no mistakes, no confusions


def test_topk_and_evaluate_by_hand():
    probs = np.array([
        [0.7, 0.2, 0.1, 0.0],   # true 0: top-1
        [0.5, 0.3, 0.2, 0.0],   # true 2: rank 3 → top-3 only
        [0.1, 0.2, 0.3, 0.4],   # true 0: rank 4 → neither
        [0.25, 0.25, 0.25, 0.25],  # true 1: tie → argsort keeps index order: rank 2
    ], dtype=np.float32)
    y = np.array([0, 2, 0, 1])
    assert topk_accuracy(probs, y, 1) == 0.25
    assert topk_accuracy(probs, y, 2) == 0.5
    assert topk_accuracy(probs, y, 3) == 0.75
    assert topk_accuracy(probs, y, 10) == 1.0  # k clipped to the class count
    rep = evaluate(probs, y, ("a", "b", "c", "d"))
    assert (rep.n_images, rep.top1, rep.top3) == (4, 0.25, 0.75)
    assert rep.confusion.tolist() == [[1, 0, 0, 1], [1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    # precision: a 1/3, others 0; recall: a 1/2, others 0
    assert rep.macro_precision == pytest.approx((1 / 3) / 4)
    assert rep.macro_recall == pytest.approx(0.5 / 4)
    assert rep.macro_f1 == pytest.approx((2 * (1 / 3) * 0.5 / (1 / 3 + 0.5)) / 4)


def test_evaluate_rejects_bad_inputs():
    with pytest.raises(UsageError, match="do not match"):
        evaluate(np.ones((2, 3)) / 3, [0, 1], ("a", "b"))
    with pytest.raises(UsageError, match="integers in 0..1"):
        evaluate(np.ones((2, 2)) / 2, [0, 2], ("a", "b"))
    with pytest.raises(UsageError, match="2 probability rows but 3 labels"):
        topk_accuracy(np.ones((2, 2)), [0, 1, 1])


# --- latency --------------------------------------------------------------------------------


class ScriptedWorkload:
    """A fake clock and a workload that "takes" scripted durations on it."""

    def __init__(self, durations_s: list[float]) -> None:
        self.now = 0.0
        self.durations = list(durations_s)
        self.calls = 0

    def clock(self) -> float:
        return self.now

    def __call__(self) -> None:
        self.now += self.durations[self.calls % len(self.durations)]
        self.calls += 1


def test_percentiles_with_a_scripted_clock():
    # 3 warm-up calls of 1 s each (must not be recorded), then 1, 2, …, 100 ms.
    work = ScriptedWorkload([1.0] * 3 + [i / 1000 for i in range(1, 101)])
    stats = measure(work, batch_size=4, warmup=3, iterations=100, clock=work.clock)
    assert work.calls == 103 and stats.iterations == 100 and stats.warmup == 3
    assert stats.min_ms == pytest.approx(1) and stats.max_ms == pytest.approx(100)
    # numpy's linear percentiles of 1..100: rank q·99 (0-based)
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.total_s == pytest.approx(5.05)
    assert stats.images_per_s == pytest.approx(4 * 100 / 5.05)
    assert stats.p50_ms_per_image == pytest.approx(50.5 / 4)
    assert stats.to_dict()["p99_ms_per_image"] == pytest.approx(99.01 / 4)


def test_duration_mode_and_its_minimum():
    work = ScriptedWorkload([1 / 64])  # exact in binary: no rounding at the boundary
    stats = measure(work, batch_size=1, warmup=0, duration=0.125, clock=work.clock)
    assert stats.iterations == 8  # 8 × 1/64 s fill 0.125 s
    work = ScriptedWorkload([0.010])
    stats = measure(work, batch_size=1, warmup=0, duration=0.001, clock=work.clock)
    assert stats.iterations == 5  # at least 5 samples, even past the duration
    with pytest.raises(UsageError, match="not both"):
        measure(work, batch_size=1, iterations=3, duration=1.0)


def test_percentiles_of_a_sleeping_workload():
    """Real time: 18 calls sleep 2 ms, 2 calls sleep 20 ms; warm-up sleeps 50 ms."""
    plan = iter([0.05, 0.05] + [0.002] * 9 + [0.02] + [0.002] * 9 + [0.02])

    def work() -> None:
        time.sleep(next(plan))

    stats = measure(work, batch_size=8, warmup=2, iterations=20)
    assert stats.iterations == 20
    assert 2.0 <= stats.p50_ms < 10  # sleep never returns early; a loaded CI box adds a little
    assert stats.p99_ms >= 19.9 and stats.max_ms >= 19.9
    assert stats.max_ms < 50  # the 50 ms warm-up calls are not in the samples
    total = 18 * 0.002 + 2 * 0.02
    assert stats.images_per_s <= 8 * 20 / total


def test_make_batch_repeats_few_images():
    x = np.arange(3 * 32 * 32 * 3, dtype=np.uint8).reshape(3, 32, 32, 3)
    b = make_batch(x, 7)
    assert b.shape == (7, 32, 32, 3) and b.flags.c_contiguous
    np.testing.assert_array_equal(b[3], x[0])
    assert make_batch(x, 2).shape[0] == 2


# --- MACs and peak --------------------------------------------------------------------------

# cnn-batchnorm: conv 3→32 (30×30 out), 32→32 (28×28), 32→64 (12×12), 64→64 (10×10), 3×3
# kernels; dense 1600→512, 512→10.
CNN_MACS = (30 * 30 * 32 * 3 * 9 + 28 * 28 * 32 * 32 * 9 + 12 * 12 * 64 * 32 * 9
            + 10 * 10 * 64 * 64 * 9 + 1600 * 512 + 512 * 10)


def test_macs_from_the_graph(tmp_path):
    cnn = count_macs(cnn_model(tmp_path / "cnn.onnx"))
    assert cnn.macs_per_image == CNN_MACS == 15_167_872
    assert cnn.by_op == {"Conv": CNN_MACS - 1600 * 512 - 5120, "Gemm": 1600 * 512 + 5120}
    assert cnn.flops_per_image == 2 * CNN_MACS and cnn.uncounted == []
    color = count_macs(color_model(tmp_path / "color.onnx"))
    assert color.macs_per_image == 3 * 10 and color.by_op == {"MatMul": 30}


def test_macs_of_a_quantized_graph_match_fp32(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = cnn_model(tmp_path / "cnn.onnx")
    q = tmp_path / "cnn.int8.onnx"
    quantize_dynamic(str(src), str(q), weight_type=QuantType.QInt8)
    macs = count_macs(q)
    assert macs.macs_per_image == CNN_MACS
    assert any(op.endswith("Integer") for op in macs.by_op), macs.by_op


def test_cpu_peak_derivation():
    amd = "vendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
    peak = cpu_fp32_peak(2, flags={"avx", "avx2", "fma"}, cpuinfo=amd, clock=(2.5, "test"))
    assert peak.flops_per_cycle_per_core == 32 and peak.gflops == pytest.approx(160.0)
    assert "2 cores × 2.50 GHz × 32" in peak.derivation and "AVX2" in peak.derivation
    intel = "vendor_id\t: GenuineIntel\ncpu family\t: 6\n"
    peak = cpu_fp32_peak(4, flags={"avx2", "fma", "avx512f"}, cpuinfo=intel, clock=(3.0, "t"))
    assert peak.flops_per_cycle_per_core == 64 and peak.gflops == pytest.approx(768.0)
    zen4 = cpu_fp32_peak(1, flags={"avx2", "fma", "avx512f"}, cpuinfo=amd, clock=(3.0, "t"))
    assert zen4.simd_lanes == 8  # Zen 4 runs AVX-512 on 256-bit units
    here = cpu_fp32_peak(1)
    if Path("/proc/cpuinfo").exists():
        assert here is not None and here.gflops > 0 and "GHz" in here.derivation


# --- the sweep, JSON, Markdown, figures -----------------------------------------------------


def _colour_images(per_class: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Solid images of each class's prototype colour: the colour model gets them all right."""
    x = np.stack([solid(PROTOTYPES[c]) for c in CLASSES for _ in range(per_class)])
    y = np.repeat(np.arange(10), per_class)
    return x, y


FLAT = (str, int, float, bool, type(None))
TABLE_KEYS = {
    "accuracy": {"model", "precision", "provider", "runtime", "n_images", "top1", "top3",
                 "macro_precision", "macro_recall", "macro_f1", "ece", "nll", "brier",
                 "seconds", "agreement_top1", "max_abs_diff", "score_max_abs_diff",
                 "score_agrees"},
    "per_class": {"model", "precision", "provider", "runtime", "label", "class",
                  "class_precision", "class_recall", "class_f1", "support", "predicted"},
    "confusion": {"model", "precision", "provider", "runtime", "true_label", "true",
                  "predicted_label", "predicted", "count", "row_fraction"},
    "top_confusions": {"model", "precision", "provider", "runtime", "rank", "true",
                       "predicted", "count", "share_of_true"},
    "latency": {"model", "precision", "provider", "runtime", "io_binding", "threads", "batch_size",
                "status", "reason", "active_providers", "warmup", "iterations", "total_s",
                "mean_ms", "min_ms", "max_ms", "p50_ms", "p90_ms", "p99_ms",
                "p50_ms_per_image", "p90_ms_per_image", "p99_ms_per_image", "images_per_s",
                "macs_per_image", "gflops", "peak_share", "peak"},
    "models": {"model", "precision", "path", "architecture", "input_kind", "size_bytes",
               "macs_per_image", "flops_per_image", "macs_conv", "macs_matmul",
               "macs_uncounted_nodes"},
    "unavailable": {"provider", "reason"},
    "runtimes": {"runtime", "version", "package", "status", "reason"},
    "runtime_failures": {"model", "precision", "runtime", "reason"},
    "runtime_matrix": {"model", "precision", "runtime", "provider", "version", "status",
                       "reason", "threads", "top1", "agreement_top1", "max_abs_diff",
                       "score_max_abs_diff", "batch1_p50_ms", "best_batch_size", "best_p50_ms",
                       "best_images_per_s"},
    "keras": {"model", "precision", "provider", "keras_path", "keras_device", "batch_size",
              "onnx_images_per_s", "onnx_predict_proba_images_per_s", "keras_call_images_per_s",
              "keras_predict_images_per_s", "speedup_vs_call", "speedup_vs_predict",
              "speedup_predict_proba_vs_call", "onnx_chunk", "onnx_p50_ms", "keras_call_p50_ms",
              "keras_predict_p50_ms", "top1_agreement", "max_abs_diff"},
}


def _cuda_active(model: Path) -> bool:
    from cifarkit.backends import Classifier

    try:
        Classifier(model, "cuda").close()
    except ProviderError:
        return False
    return True


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    """An exported/ folder: colour (fp32 + a copy labelled int8) and cnn (fp32)."""
    root = tmp_path / "exported"
    color_model(root / "color" / "model.fp32.onnx")
    from tests.onnx_fixtures import default_metadata

    color_model(root / "color" / "model.int8.onnx", metadata=default_metadata("int8"))
    cnn_model(root / "cnn" / "model.fp32.onnx")
    return root


def test_sweep_json_schema_and_known_accuracy(exported, tmp_path):
    x, y = _colour_images()
    y = y.copy()
    y[[0, 1]] = 3  # two airplanes labelled "cat": exactly 2 mistakes of the colour model
    cfg = BenchConfig(models=["color"], exported=exported, batch_sizes=[1, 4], warmup=1,
                      iterations=3, argv=["cifarkit", "bench", "color"])
    result = run_bench(cfg, images=x, labels=y, classes=CLASSES, data_source="solid colours")
    data = json.loads(json.dumps(to_dict(result)))  # JSON-serialisable as is
    assert data["schema"] == "cifarkit.bench/1"
    for table, keys in TABLE_KEYS.items():
        for row in data[table]:
            assert set(row) == keys, (table, set(row) ^ keys)
            assert all(isinstance(v, FLAT) for v in row.values()), (table, row)
    assert [(m["model"], m["precision"]) for m in data["models"]] == [
        ("color", "fp32"), ("color", "int8")]
    # the default runtime is onnxruntime alone, the reference of every agreement
    assert data["settings"]["runtimes_requested"] is None
    assert data["settings"]["runtimes"] == ["onnxruntime"]
    assert [r["runtime"] for r in data["runtimes"]] == ["onnxruntime"]
    assert data["runtime_failures"] == []
    assert {a["runtime"] for a in data["accuracy"]} == {"onnxruntime"}
    assert all(a["agreement_top1"] == 1.0 and a["max_abs_diff"] == 0.0
               for a in data["accuracy"] if a["provider"] == "cpu")
    assert not result.multi_runtime and "## Runtimes" not in to_markdown(result)

    acc = {a["precision"]: a for a in data["accuracy"] if a["provider"] == "cpu"}
    assert set(acc) == {"fp32", "int8"}
    assert acc["fp32"]["n_images"] == 30 and acc["fp32"]["top1"] == pytest.approx(28 / 30)
    assert data["top_confusions"][0]["true"] == "cat"
    assert data["top_confusions"][0]["predicted"] == "airplane"
    assert data["top_confusions"][0]["count"] == 2
    cells = [c for c in data["confusion"] if c["precision"] == "fp32" and c["provider"] == "cpu"]
    assert len(cells) == 100 and sum(c["count"] for c in cells) == 30
    cat = next(r for r in data["per_class"]
               if r["class"] == "cat" and r["precision"] == "fp32" and r["provider"] == "cpu")
    assert (cat["support"], cat["class_recall"], cat["class_precision"]) == (5, 0.6, 1.0)

    ok = [r for r in data["latency"] if r["status"] == "ok" and r["provider"] == "cpu"]
    assert sorted((r["precision"], r["batch_size"]) for r in ok) == [
        ("fp32", 1), ("fp32", 4), ("int8", 1), ("int8", 4)]
    for r in ok:
        assert r["iterations"] == 3 and r["warmup"] == 1
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["images_per_s"] > 0 and r["macs_per_image"] == 30
        assert r["gflops"] == pytest.approx(60 * r["images_per_s"] / 1e9)
        assert r["active_providers"].startswith("cpu")

    env = data["environment"]
    assert env["command"] == "cifarkit bench color" and env["timestamp"].endswith("+00:00")
    assert env["cpu"]["physical_cores"] >= 1 and "onnxruntime-gpu" in env["libraries"]
    assert data["settings"]["n_images"] == 30 and data["settings"]["batch_sizes"] == [1, 4]
    if not _cuda_active(exported / "color" / "model.fp32.onnx"):
        # the default sweep lists cuda as unavailable, with its reason, for every model file
        assert [u["provider"] for u in data["unavailable"]] == ["cuda"]
        bad = [r for r in data["latency"] if r["status"] == "unavailable"]
        assert {(r["precision"], r["provider"]) for r in bad} == {("fp32", "cuda"),
                                                                 ("int8", "cuda")}
        assert all(r["reason"] and r["p50_ms"] is None for r in bad)

    md = to_markdown(result)
    assert "| color | fp32 | cpu | 30 | 93.33 % |" in md
    assert "cat → airplane: 2" in md and "FP32 peak" in md
    if data["unavailable"]:
        assert "unavailable: " in md

    from rich.console import Console

    from cifarkit.bench import rich_report

    console = Console(record=True, width=160, color_system=None)
    for item in rich_report(result):
        console.print(item)
    text = console.export_text()
    assert "per class: color fp32 on cpu" in text and "cat → airplane: 2" in text
    heat = [line for line in text.splitlines() if line.strip().startswith("cat ")]
    # the heatmap row of "cat": 2 of 5 predicted airplane (40 %), 3 right (60 %)
    assert heat and heat[-1].split()[1:] == ["40", "·", "·", "60", "·", "·", "·", "·", "·", "·"]
    if data["unavailable"]:
        assert "cuda: unavailable: " in text

    json_path, md_path = tmp_path / "r" / "bench.json", tmp_path / "r" / "RESULTS.md"
    write_json(result, json_path)
    assert json.loads(json_path.read_text())["latency"] == data["latency"]
    figures = write_figures(result, tmp_path / "r" / "figures")
    # confusion, per-class, predictions, misclassified, throughput, accuracy vs throughput
    assert len(figures) == 6
    for p in figures.values():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    write_markdown(result, md_path, figures)
    assert "](figures/color-fp32-cpu-confusion.png)" in md_path.read_text()


def test_models_resolution_and_errors(exported, tmp_path):
    from cifarkit.bench import resolve_models

    names = [(m.name, m.precision) for m in resolve_models([], root=exported)]
    assert names == [("cnn", "fp32"), ("color", "fp32"), ("color", "int8")]
    assert [m.precision for m in resolve_models(["color"], ["int8"], root=exported)] == ["int8"]
    one = resolve_models([str(exported / "cnn" / "model.fp32.onnx")], root=exported)
    assert [(m.name, m.precision) for m in one] == [("cnn", "fp32")]
    with pytest.raises(ModelError, match="no exported models"):
        resolve_models([], root=tmp_path / "empty")
    with pytest.raises(ModelError, match="precision"):
        resolve_models(["cnn"], ["fp16"], root=exported)
    with pytest.raises(UsageError, match="unknown precision"):
        resolve_models(["cnn"], ["fp8"], root=exported)


def test_two_copies_of_one_model_get_distinct_names(exported, tmp_path, monkeypatch):
    """Rows are keyed by name:precision: two folders both named cnn must not share one."""
    import shutil

    from cifarkit.bench import resolve_models

    copy = tmp_path / "elsewhere" / "cnn"
    shutil.copytree(exported / "cnn", copy)
    monkeypatch.chdir(tmp_path)
    models = resolve_models([str(exported / "cnn"), str(copy)], root=exported)
    assert len({m.label for m in models}) == 2
    assert "elsewhere/cnn:fp32" in {m.label for m in models}


def test_explicit_unavailable_provider_fails_before_any_work(exported):
    model = exported / "color" / "model.fp32.onnx"
    if _cuda_active(model):
        pytest.skip("CUDA is really active here")
    x, y = _colour_images(1)
    cfg = BenchConfig(models=["color:fp32"], exported=exported, providers=["cuda"],
                      iterations=1, warmup=0, batch_sizes=[1])
    with pytest.raises(ProviderError, match=r"provider 'cuda' .* is not active") as err:
        run_bench(cfg, images=x, labels=y)
    assert "--provider cpu" in str(err.value)
    with pytest.raises(UsageError, match="unknown provider"):
        run_bench(BenchConfig(models=["color:fp32"], exported=exported, providers=["tpu"]),
                  images=x, labels=y)


def test_backend_names_choose_runtimes_and_providers(exported):
    """``onnxruntime:PROVIDER`` is onnxruntime plus an explicit provider: really used, or the
    run fails before any work."""
    x, y = _colour_images(1)
    cfg = BenchConfig(models=["color:fp32"], exported=exported, runtimes=["onnxruntime:cpu"],
                      iterations=1, warmup=0, batch_sizes=[1])
    data = to_dict(run_bench(cfg, images=x, labels=y, classes=CLASSES))
    settings = data["settings"]
    assert settings["runtimes_requested"] == ["onnxruntime"]
    assert settings["providers_requested"] == ["cpu"] and data["unavailable"] == []
    assert [(r["runtime"], r["provider"], r["status"]) for r in data["latency"]] == [
        ("onnxruntime", "cpu", "ok")]
    if not _cuda_active(exported / "color" / "model.fp32.onnx"):
        cfg = BenchConfig(models=["color:fp32"], exported=exported,
                          runtimes=["onnxruntime:cuda"], iterations=1, batch_sizes=[1])
        with pytest.raises(ProviderError, match=r"provider 'cuda' .* is not active"):
            run_bench(cfg, images=x, labels=y)
    with pytest.raises(UsageError, match="openvino takes no execution provider"):
        run_bench(BenchConfig(models=["color:fp32"], exported=exported,
                              runtimes=["openvino:cuda"]), images=x, labels=y)


def test_bad_settings_are_usage_errors(exported):
    x, y = _colour_images(1)
    for kwargs, msg in (
        ({"iterations": 2, "duration": 1.0}, "not both"),
        ({"batch_sizes": [0]}, "batch-sizes"),
        ({"batch_sizes": []}, "empty"),
        ({"warmup": -1}, "warmup"),
        ({"keras": str(exported / "nope.keras")}, "no such file"),
    ):
        with pytest.raises(UsageError, match=msg):
            run_bench(BenchConfig(models=["color:fp32"], exported=exported, providers=["cpu"],
                                  **kwargs), images=x, labels=y)


def test_class_names_must_match_the_data(exported):
    x, y = _colour_images(1)
    with pytest.raises(ModelError, match="differ from the data"):
        run_bench(BenchConfig(models=["color:fp32"], exported=exported, providers=["cpu"],
                              iterations=1, batch_sizes=[1]),
                  images=x, labels=y, classes=tuple(reversed(CLASSES)))


# --- the CLI --------------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None):
    full = {**os.environ, "COLUMNS": "160", **(env or {})}
    return subprocess.run([sys.executable, "-m", "cifarkit", *args], capture_output=True,
                          text=True, cwd=cwd, env=full, timeout=300)


def test_cli_provider_error_exit_code(exported, tmp_path):
    if _cuda_active(exported / "color" / "model.fp32.onnx"):
        pytest.skip("CUDA is really active here")
    data = write_folders(tmp_path / "d", 1, 1)
    res = run_cli("bench", "color:fp32", "--provider", "cuda", "--data", str(data),
                  cwd=exported.parent)
    assert res.returncode == 6, res.stderr
    assert "provider 'cuda'" in res.stderr and "not active" in res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    res = run_cli("bench", "color:fp32", "--backend", "onnxruntime:cuda", "--data", str(data),
                  cwd=exported.parent)
    assert res.returncode == 6 and "provider 'cuda'" in res.stderr, res.stderr
    res = run_cli("bench", "--iterations", "2", "--duration", "1", cwd=exported.parent)
    assert res.returncode == 2 and "not both" in res.stderr


def test_cli_end_to_end_without_tensorflow(exported, tmp_path):
    """The whole command on image folders, in-process, then check TensorFlow stayed out."""
    data = write_folders(tmp_path / "d", 1, 2)
    out = tmp_path / "out"
    argv = ["cifarkit", "bench", "color", "--data", str(data), "--batch-sizes", "1,8",
            "--iterations", "3", "--warmup", "1", "--json", str(out / "b.json"),
            "--markdown", str(out / "RESULTS.md")]
    code = (
        "import sys\nfrom cifarkit.cli import main\n"
        f"sys.argv = {argv!r}\n"
        "try:\n    main()\nexcept SystemExit as e:\n    rc = e.code\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules]\n"
        "print('RC', rc, 'HEAVY', heavy)\n"
    )
    env = {**os.environ, "COLUMNS": "160"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=exported.parent, env=env, timeout=300)
    assert "RC 0 HEAVY []" in res.stdout, res.stdout + res.stderr
    assert "accuracy on 20 test images" in res.stdout
    assert "per class: color fp32 on cpu" in res.stdout
    report = json.loads((out / "b.json").read_text())
    assert report["settings"]["n_images"] == 20
    assert {(r["precision"], r["batch_size"]) for r in report["latency"]
            if r["status"] == "ok"} == {("fp32", 1), ("fp32", 8), ("int8", 1), ("int8", 8)}
    md = (out / "RESULTS.md").read_text()
    assert md.startswith("# cifarkit bench") and "cifarkit bench color --data" in md
    assert len(list((out / "figures").glob("*.png"))) == 6


# --- the Keras baseline ---------------------------------------------------------------------


@pytest.mark.slow
def test_keras_baseline_in_the_same_run(exported, tmp_path):
    """A small Keras model beside the colour ONNX model: every ratio is measured, and the
    bench notes that the two models disagree (they are not the same model)."""
    import keras

    inp = keras.Input((32, 32, 3), name="images")
    h = keras.layers.Rescaling(1 / 255)(inp)
    h = keras.layers.Conv2D(8, 3, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(10, activation="softmax")(h)
    path = tmp_path / "tiny.keras"
    keras.Model(inp, out).save(path)

    x, y = _colour_images(1)
    cfg = BenchConfig(models=["color:fp32"], exported=exported, providers=["cpu"],
                      batch_sizes=[1, 8], warmup=1, iterations=3, keras=str(path))
    result = run_bench(cfg, images=x, labels=y, classes=CLASSES)
    rows = to_dict(result)["keras"]
    assert [r["batch_size"] for r in rows] == [1, 8]
    for r in rows:
        assert set(r) == TABLE_KEYS["keras"]
        assert all(isinstance(v, FLAT) for v in r.values())
        assert r["keras_path"] == str(path) and r["provider"] == "cpu"
        for key in ("onnx_images_per_s", "onnx_predict_proba_images_per_s",
                    "keras_call_images_per_s", "keras_predict_images_per_s"):
            assert r[key] > 0
        assert r["speedup_vs_call"] == pytest.approx(
            r["onnx_images_per_s"] / r["keras_call_images_per_s"])
    assert any("agrees with" in n for n in result.notes)
    md = to_markdown(result)
    assert "ONNX vs Keras" in md and "batch 1: " in md and "best vs best" in md
    # iterations are split over the interleaved rounds: 3 rounds × 1 = 3 samples each
    assert result.keras[0].comparisons[0].keras_call.iterations == 3


# --- real data ------------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_data_subset(real_data, tmp_path):
    """The cnn-batchnorm topology (random weights) over 300 real test images: the pipeline is
    real (decoding, stratified subset, accuracy, timing), the accuracy is chance level."""
    root = tmp_path / "exported"
    cnn_model(root / "cnn" / "model.fp32.onnx")
    cfg = BenchConfig(data=real_data, limit=300, exported=root, providers=["cpu"],
                      batch_sizes=[1, 32], warmup=2, iterations=5)
    result = run_bench(cfg)
    data = to_dict(result)
    assert data["settings"]["n_images"] == 300 and str(real_data) in data["settings"]["data_source"]
    assert [r["support"] for r in data["per_class"]] == [30] * 10  # stratified subset
    acc = data["accuracy"][0]
    assert 0.0 <= acc["top1"] <= acc["top3"] <= 1.0
    lat = {r["batch_size"]: r for r in data["latency"]}
    assert lat[32]["macs_per_image"] == CNN_MACS and lat[32]["peak_share"] > 0
    assert lat[32]["p50_ms"] > lat[1]["p50_ms"]  # 32 images take longer than one
    assert result.images.shape == (300, 32, 32, 3) and result.images.dtype == np.uint8


def test_corruption_table_is_deterministic_and_reported(exported):
    x, y = _colour_images()
    cfg = BenchConfig(models=["cnn"], exported=exported, batch_sizes=[4], warmup=1,
                      iterations=2, corruptions=20, precisions=["fp32"])
    first = run_bench(cfg, images=x, labels=y, classes=CLASSES)
    again = run_bench(cfg, images=x, labels=y, classes=CLASSES)
    rows = to_dict(first)["corruptions"]
    assert rows == to_dict(again)["corruptions"]
    (row,) = rows
    assert len(row["accuracy"]) == 15 and all(len(v) == 5 for v in row["accuracy"].values())
    assert row["drop"] == pytest.approx(row["clean"] - row["mean"])
    assert "## Accuracy under corruption" in to_markdown(first)
