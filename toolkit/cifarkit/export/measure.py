"""Accuracy and CPU throughput of the exported files, measured here and now.

Throughput is a *ratio* against fp32, measured in one run on the same inputs: every round
times each precision once for a short while, in a rotated order; each round gives a ratio of
neighbours in time, and the median of those ratios is reported, so background load (this
machine is shared) that comes and goes hits all precisions alike. One onnxruntime thread by
default: the ratio then compares the kernels, not thread scheduling on a busy machine.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cifarkit.export.check import cpu_session
from cifarkit.export.parity import predict_onnx

BENCH_BATCH = 32


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
    probs = predict_onnx(session, x)
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
    from cifarkit._sysinfo import cpu_name

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
