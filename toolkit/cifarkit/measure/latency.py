"""Latency of one model call: warm-up excluded, inputs preloaded, percentiles per batch.

What is timed is one call of a function that runs one batch (``Classifier.run_batch``: one
``session.run``, or one run through an I/O binding). The batch is built, made contiguous and
converted *before* the clock starts, so the numbers are model time, not decoding or copying
in Python. ``warmup`` calls run first and are not recorded (first runs allocate memory and
pick kernels; on a GPU they also autotune convolutions).

Stopping rule: ``iterations`` timed calls, or as many as fit in ``duration`` seconds (at
least ``min_iterations``, so a slow batch still gets percentiles; at most
``max_iterations``). Percentiles are numpy's default (linear interpolation between the
closest ranks); with n samples, p99 is close to the maximum unless n ≳ 100.

``images_per_s`` is ``batch_size × calls / total timed seconds`` (the mean rate, which a
long run converges to), not ``batch_size / p50``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cifarkit.errors import UsageError

DEFAULT_WARMUP = 5
DEFAULT_DURATION = 1.0  # seconds per batch size when neither iterations nor duration is given
MIN_ITERATIONS = 5
MAX_ITERATIONS = 100_000

Clock = Callable[[], float]


@dataclass(frozen=True)
class LatencyStats:
    """Timing of ``iterations`` calls, each running one batch of ``batch_size`` images."""

    batch_size: int
    warmup: int
    iterations: int
    total_s: float
    mean_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    images_per_s: float

    @property
    def p50_ms_per_image(self) -> float:
        return self.p50_ms / self.batch_size

    @property
    def p90_ms_per_image(self) -> float:
        return self.p90_ms / self.batch_size

    @property
    def p99_ms_per_image(self) -> float:
        return self.p99_ms / self.batch_size

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            p50_ms_per_image=self.p50_ms_per_image, p90_ms_per_image=self.p90_ms_per_image,
            p99_ms_per_image=self.p99_ms_per_image,
        )
        return d


def stats_from_samples(samples_s: Sequence[float], batch_size: int, warmup: int = 0
                       ) -> LatencyStats:
    """``LatencyStats`` from per-call durations in seconds."""
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    s = np.asarray(samples_s, dtype=np.float64)
    if s.ndim != 1 or not len(s):
        raise UsageError("no timing samples")
    ms = s * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    total = float(s.sum())
    return LatencyStats(
        batch_size=int(batch_size), warmup=int(warmup), iterations=int(len(s)), total_s=total,
        mean_ms=float(ms.mean()), min_ms=float(ms.min()), max_ms=float(ms.max()),
        p50_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99),
        images_per_s=float(batch_size * len(s) / total) if total > 0 else float("inf"),
    )


def check_budget(iterations: int | None, duration: float | None) -> tuple[int | None, float | None]:
    """Validate ``--iterations N | --duration S`` (one or neither; neither → the default
    duration)."""
    if iterations is not None and duration is not None:
        raise UsageError("give --iterations or --duration, not both")
    if iterations is not None and iterations < 1:
        raise UsageError(f"--iterations must be >= 1, got {iterations}")
    if duration is not None and not duration > 0:
        raise UsageError(f"--duration must be > 0 seconds, got {duration}")
    if iterations is None and duration is None:
        duration = DEFAULT_DURATION
    return iterations, duration


def measure(fn: Callable[[], Any], *, batch_size: int, warmup: int = DEFAULT_WARMUP,
            **budget: Any) -> LatencyStats:
    """Time ``fn()`` (one batch of ``batch_size`` images per call); see the module docstring.
    ``budget``: ``collect_samples``' ``iterations``, ``duration``, ``min_iterations``,
    ``max_iterations`` and ``clock`` (injectable, so the statistics can be tested with a
    scripted clock)."""
    return stats_from_samples(collect_samples(fn, warmup=warmup, **budget), batch_size, warmup)


def collect_samples(
    fn: Callable[[], Any],
    *,
    warmup: int = DEFAULT_WARMUP,
    iterations: int | None = None,
    duration: float | None = None,
    min_iterations: int = MIN_ITERATIONS,
    max_iterations: int = MAX_ITERATIONS,
    clock: Clock = time.perf_counter,
) -> list[float]:
    """The per-call durations (seconds) behind ``measure``."""
    iterations, duration = check_budget(iterations, duration)
    if warmup < 0:
        raise UsageError(f"--warmup must be >= 0, got {warmup}")
    for _ in range(warmup):
        fn()
    gc.collect()  # a collection of earlier garbage would otherwise land in a timed call
    samples: list[float] = []
    start = clock()
    while True:
        t0 = clock()
        fn()
        samples.append(clock() - t0)
        n = len(samples)
        if iterations is not None:
            if n >= iterations:
                break
        elif (n >= min_iterations and clock() - start >= duration) or n >= max_iterations:
            break
    return samples


def make_batch(images: np.ndarray, batch_size: int) -> np.ndarray:
    """A contiguous batch of ``batch_size`` images: the first ones, repeated when there are
    fewer images than that."""
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    if not len(images):
        raise UsageError("no images to time")
    if len(images) < batch_size:
        reps = -(-batch_size // len(images))
        images = np.concatenate([images] * reps)
    return np.ascontiguousarray(images[:batch_size])


def time_batches(
    run: Callable[[np.ndarray], Any],
    images: np.ndarray,
    batch_sizes: Sequence[int],
    *,
    warmup: int = DEFAULT_WARMUP,
    iterations: int | None = None,
    duration: float | None = None,
    min_iterations: int = MIN_ITERATIONS,
    on_done: Callable[[int, LatencyStats], None] | None = None,
) -> list[LatencyStats]:
    """``measure`` ``run(batch)`` at each batch size, on batches prepared up front."""
    batches = {bs: make_batch(images, bs) for bs in batch_sizes}
    out = []
    for bs in batch_sizes:
        batch = batches[bs]
        stats = measure(lambda b=batch: run(b), batch_size=bs, warmup=warmup,
                        iterations=iterations, duration=duration,
                        min_iterations=min_iterations)
        out.append(stats)
        if on_done is not None:
            on_done(bs, stats)
    return out
