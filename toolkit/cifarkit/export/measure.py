"""Accuracy, per-class errors, CPU throughput, latency, MACs and the "runs in" table of the
exported files, measured here and now (through ``cifarkit.backends`` and ``cifarkit.measure``).

Throughput is a *ratio* against fp32, measured in one run on the same inputs: every round
times each precision once for a short while, in a rotated order; each round gives a ratio of
neighbours in time, and the median of those ratios is reported, so background load (this
machine is shared) that comes and goes hits all precisions alike. One onnxruntime thread by
default: the ratio then compares the kernels, not thread scheduling on a busy machine.

Latency is absolute, measured the way users run the files: ``cifarkit.backends.Classifier``
on the CPU provider with its default threads (the physical cores), timed by the bench
library (``latency.time_batches``, one ``session.run`` per call) at a sweep of batch sizes,
so ``cifarkit bench`` measures the same thing. Batch 1 and 32 are always timed; a larger
batch is skipped when its estimated cost would overrun the per-file time budget (a big model
at batch 512 can take seconds per call on a small CPU).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.backends.onnxruntime import cpu_session, session_proba
from cifarkit.measure.flops import MacCount

BENCH_BATCH = 32
LATENCY_BATCH_SIZES = (1, 8, 32, 128, 512)
#: Always timed, whatever the budget: the card promises these two.
REQUIRED_LATENCY_BATCHES = (1, 32)
LATENCY_WARMUP = 2
LATENCY_MIN_ITERATIONS = 3
#: Seconds of timed calls per batch size, and the most one file's sweep should take.
LATENCY_SECONDS = 0.25
LATENCY_BUDGET_S = 5.0
N_CONFUSIONS = 5


@dataclass(frozen=True)
class Throughput:
    images_per_s: dict[str, float]
    ratio_vs_fp32: dict[str, float]
    batch: int
    rounds: int
    seconds_per_measurement: float
    #: onnxruntime intra-op threads; 0 = its default (one per physical core).
    threads: int
    cpu_count: int
    provider: str
    cpu: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def accuracy(session: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Top-1 accuracy and the probabilities (batched)."""
    probs = session_proba(session, x)
    return float(np.mean(probs.argmax(axis=1) == y)), probs


def throughput(
    models: dict[str, bytes],
    images: np.ndarray,
    *,
    batch: int = BENCH_BATCH,
    rounds: int = 15,
    seconds: float = 0.1,
    threads: int = 1,
) -> Throughput:
    """Images/s of each model at ``batch`` on the CPU, interleaved over ``rounds``.

    ``models`` maps a precision to serialized ONNX bytes; it must contain ``fp32`` (the
    baseline). Each measurement runs whole batches for about ``seconds``. ``threads``:
    onnxruntime intra-op threads (0 = its default, one per physical core).
    """
    from cifarkit.measure.machine import cpu_name

    if "fp32" not in models:
        raise ValueError("throughput needs the fp32 baseline")
    n_batches = max(1, len(images) // batch)
    batches = [np.ascontiguousarray(images[i * batch:(i + 1) * batch]) for i in range(n_batches)]
    if len(batches[0]) < batch:  # fewer images than one batch: repeat them
        reps = -(-batch // len(batches[0]))
        batches = [np.concatenate([batches[0]] * reps)[:batch]]
    sessions = {p: cpu_session(m, threads=threads) for p, m in models.items()}
    names = list(sessions)
    # Warm up (first runs allocate, pick kernels) and size each measurement by the fp32 speed.
    for sess in sessions.values():
        for b in batches[:2]:
            sess.run(["probabilities"], {"images": b})
    start = time.perf_counter()
    sessions["fp32"].run(["probabilities"], {"images": batches[0]})
    per_batch = max(time.perf_counter() - start, 1e-5)
    iters = max(3, int(seconds / per_batch))
    rates: dict[str, list[float]] = {p: [] for p in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for p in order:
            sess = sessions[p]
            t0 = time.perf_counter()
            for i in range(iters):
                sess.run(["probabilities"], {"images": batches[i % len(batches)]})
            rates[p].append(iters * batch / (time.perf_counter() - t0))
    ratios = {p: statistics.median(a / b for a, b in zip(rates[p], rates["fp32"], strict=True))
              for p in names}
    return Throughput(
        images_per_s={p: round(statistics.median(v), 1) for p, v in rates.items()},
        ratio_vs_fp32={p: round(v, 3) for p, v in ratios.items()},
        batch=batch, rounds=rounds, seconds_per_measurement=round(iters * per_batch, 3),
        threads=threads, cpu_count=os.cpu_count() or 1, provider="CPUExecutionProvider",
        cpu=cpu_name(),
    )


def evaluation(probs: np.ndarray, y: np.ndarray, classes: Sequence[str],
               n_confusions: int = N_CONFUSIONS) -> dict[str, Any]:
    """``bench.metrics.evaluate`` as card JSON: top-1/3, macro P/R/F1, per-class rows, the
    most common confusions and the confusion matrix (rows true, columns predicted)."""
    from cifarkit.measure.metrics import evaluate

    report = evaluate(probs, y, classes, n_confusions=n_confusions)
    return {
        **report.summary(),
        "per_class": report.per_class,
        "top_confusions": report.top_confusions,
        "confusion_matrix": report.confusion.tolist(),
    }


@dataclass(frozen=True)
class LatencySetup:
    """How every file's latency was measured (one per export)."""

    provider: str
    threads: int
    cpu: str
    physical_cores: int
    logical_cpus: int
    batch_sizes: tuple[int, ...]
    warmup: int
    min_iterations: int
    seconds_per_batch_size: float
    budget_s_per_file: float
    load_average_before: list[float] | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["batch_sizes"] = list(self.batch_sizes)
        return d


def _point(stats: Any) -> dict[str, Any]:
    return {
        "batch_size": stats.batch_size, "iterations": stats.iterations,
        "p50_ms": stats.p50_ms, "p90_ms": stats.p90_ms,
        "p50_ms_per_image": stats.p50_ms_per_image, "images_per_s": stats.images_per_s,
    }


def latency_sweep(
    path: str | os.PathLike[str],
    images: np.ndarray,
    *,
    batch_sizes: Sequence[int] = LATENCY_BATCH_SIZES,
    seconds: float = LATENCY_SECONDS,
    budget_s: float = LATENCY_BUDGET_S,
    warmup: int = LATENCY_WARMUP,
    min_iterations: int = LATENCY_MIN_ITERATIONS,
) -> tuple[dict[str, Any], int]:
    """Latency of one ONNX file on the CPU provider at ``batch_sizes`` (plus 1 and 32).

    Returns (``{"points": [...], "best": {...}, "skipped_batch_sizes": [...]}``, threads).
    A batch size beyond 1 and 32 is skipped once ``(warmup + min_iterations)`` calls at the
    per-image time of the last point would overrun ``budget_s`` (per-image time falls with
    the batch, so the estimate errs on the safe side).
    """
    from cifarkit.backends import Classifier
    from cifarkit.measure.latency import time_batches

    sizes = sorted({*batch_sizes, *REQUIRED_LATENCY_BATCHES})
    clf = Classifier(path, "cpu")
    points: list[dict[str, Any]] = []
    skipped: list[int] = []
    spent = 0.0
    per_image_s: float | None = None
    try:
        for bs in sizes:
            estimate = (warmup + min_iterations) * bs * (per_image_s or 0.0)
            if bs not in REQUIRED_LATENCY_BATCHES and spent + estimate > budget_s:
                skipped.append(bs)
                continue
            t0 = time.perf_counter()
            (stats,) = time_batches(clf.run_batch, images, [bs], warmup=warmup,
                                    duration=seconds, min_iterations=min_iterations)
            spent += time.perf_counter() - t0
            per_image_s = stats.p50_ms / 1e3 / bs
            points.append(_point(stats))
        threads = clf.threads
    finally:
        clf.close()
    best = max(points, key=lambda p: p["images_per_s"])
    return {
        "points": points,
        "best": {"batch_size": best["batch_size"], "images_per_s": best["images_per_s"],
                 "p50_ms": best["p50_ms"]},
        "skipped_batch_sizes": skipped,
        "seconds": round(spent, 2),
    }, threads


def latencies(
    models: dict[str, bytes],
    images: np.ndarray,
    *,
    batch_sizes: Sequence[int] = LATENCY_BATCH_SIZES,
    seconds: float = LATENCY_SECONDS,
    budget_s: float = LATENCY_BUDGET_S,
) -> tuple[dict[str, dict[str, Any]], LatencySetup]:
    """``latency_sweep`` of each serialized model (precision → bytes), one after another.

    ``Classifier`` opens files, so each model goes through a private temp folder.
    """
    from cifarkit.measure.machine import cpu_name, load_average, physical_cores

    load = load_average()
    out: dict[str, dict[str, Any]] = {}
    threads = physical_cores()
    with tempfile.TemporaryDirectory(prefix="cifarkit-latency-") as tmp:
        for p, blob in models.items():
            path = Path(tmp) / f"model.{p}.onnx"
            path.write_bytes(blob)
            out[p], threads = latency_sweep(path, images, batch_sizes=batch_sizes,
                                            seconds=seconds, budget_s=budget_s)
    setup = LatencySetup(
        provider="CPUExecutionProvider", threads=threads, cpu=cpu_name(),
        physical_cores=physical_cores(), logical_cpus=os.cpu_count() or 1,
        batch_sizes=tuple(sorted({*batch_sizes, *REQUIRED_LATENCY_BATCHES})),
        warmup=LATENCY_WARMUP, min_iterations=LATENCY_MIN_ITERATIONS,
        seconds_per_batch_size=seconds, budget_s_per_file=budget_s,
        load_average_before=load,
    )
    return out, setup


def macs(proto: Any, notes: list[str]) -> MacCount | None:
    """MACs per input image of the fp32 graph (``measure.flops.count_macs``), or None.

    ``count_macs`` fixes the batch dimension to 1 before shape inference, so work the graph
    does on a batch it builds itself (flip TTA concatenates the mirrored images: 2 rows per
    input image) is counted per *input* image, as it costs.
    """
    from cifarkit.errors import ModelError
    from cifarkit.measure.flops import count_macs

    try:
        counted = count_macs(proto)
    except ModelError as exc:
        notes.append(f"MACs not counted: {exc}")
        return None
    if counted.uncounted:
        notes.append(f"MACs per image is a lower bound: shapes unknown for "
                     f"{', '.join(counted.uncounted)}")
    return counted


def runs_in(
    folder: Path, files: Sequence[str], runtimes: Sequence[str], x: np.ndarray, y: np.ndarray,
    threads: int, notes: list[str], images: str = "test images",
) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """{precision: ``cifarkit.backends.matrix`` rows} for each ONNX file among ``files`` in
    ``folder`` (the export's files before they are committed; litert finds the .tflite
    siblings there), and the sentence that says how it was measured. ``images`` names the
    images in that sentence."""
    from cifarkit.backends import matrix, resolve_runtimes
    from cifarkit.measure.machine import cpu_name

    names = resolve_runtimes(list(runtimes))
    if "litert" in names and not any(name.endswith(".tflite") for name in files):
        names.remove("litert")
        notes.append("runs in: litert runs .tflite files; export with --format onnx,tflite for "
                     "its row")
    table: dict[str, list[dict[str, Any]]] = {}
    hide = os.fspath(folder) + os.sep  # a reason names the file, not the temp folder
    for name in (n for n in files if n.endswith(".onnx")):
        rows = matrix(folder / name, x, y, names, threads=threads or None)
        table[name.split(".")[1]] = [
            {**r.to_dict(), "file": Path(r.file).name if r.file else None,
             "reason": r.reason.replace(hide, "") if r.reason else None} for r in rows]
    threads_text = "each runtime's default threads" if not threads else (
        f"{threads} thread{'s' if threads != 1 else ''}")
    setup = (f"{len(y):,} {images}, {threads_text}, {cpu_name()} "
             f"({os.cpu_count()} logical CPUs); agreement is top-1 agreement with onnxruntime "
             "(CPU) on the same images, latency the p50 of batch-1 calls.")
    return table, setup
