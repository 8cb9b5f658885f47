"""The Keras baseline: the same model in Keras, timed beside its ONNX export in one run.

For each batch size, on the same preloaded images:

- ``onnx``: ``Classifier.run_batch(batch)`` — one ``session.run`` on the whole batch (uint8
  in, numpy out), as in the latency sweep;
- ``onnx_predict_proba``: ``Classifier.predict_proba(batch)`` — the runtime's batching,
  which cuts a request into chunks of its preferred size (32 on a CPU), what
  ``cifarkit predict`` and library users get;
- ``keras_call``: ``np.asarray(model(x, training=False))`` with ``x`` the same images as a
  float32 tensor made up front (the Keras models take raw 0–255 pixels); converting the
  output to numpy waits for the result, as ``session.run`` does;
- ``keras_predict``: ``model.predict(x, batch_size=n, verbose=0)`` on the float32 array,
  Keras's own batched-inference entry point, overhead included.

Each is warmed up first, then the four are timed in ``ROUNDS`` interleaved rounds (each
round a share of the time budget) and each one's samples pooled, so a load change on a
shared machine hits all four alike. Ratios are ``ONNX images/s ÷ Keras images/s`` at the
same batch size, from the same run. TensorFlow is imported here only, when a baseline is
asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.measure.latency import (
    DEFAULT_WARMUP,
    MIN_ITERATIONS,
    LatencyStats,
    check_budget,
    collect_samples,
    make_batch,
    stats_from_samples,
)

ROUNDS = 3


@dataclass(frozen=True)
class KerasComparison:
    """ONNX vs Keras at one batch size."""

    batch_size: int
    onnx: LatencyStats
    onnx_predict_proba: LatencyStats
    keras_call: LatencyStats
    keras_predict: LatencyStats

    @property
    def speedup_vs_call(self) -> float:
        return self.onnx.images_per_s / self.keras_call.images_per_s

    @property
    def speedup_vs_predict(self) -> float:
        return self.onnx.images_per_s / self.keras_predict.images_per_s

    @property
    def speedup_predict_proba_vs_call(self) -> float:
        return self.onnx_predict_proba.images_per_s / self.keras_call.images_per_s


def load_keras(path: str | os.PathLike[str]) -> Any:
    """Load a ``.keras`` file safely (``cifarkit.export.load_keras_model``: imports Keras)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from cifarkit.export.source import load_keras_model

    return load_keras_model(path)


def keras_device() -> str:
    """``gpu`` when TensorFlow sees a GPU (Keras then runs there), else ``cpu``."""
    try:
        import tensorflow as tf

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    except Exception:  # another Keras backend, or TensorFlow without device support
        return "cpu"


def find_keras_source(onnx_path: Path, name: str, runs: Path | None = None) -> Path | None:
    """The ``.keras`` an exported model came from: ``card.json``'s ``source.file`` next to
    the model, else ``runs/<name>/model.keras``; None when neither exists."""
    import json

    card = onnx_path.parent / "card.json"
    if card.is_file():
        try:
            src = json.loads(card.read_text(encoding="utf-8")).get("source", {}).get("file")
        except (OSError, ValueError, AttributeError):
            src = None
        if src:
            p = Path(src)
            for candidate in (p, card.parent / p):
                if candidate.is_file():
                    return candidate
    runs = runs if runs is not None else Path("runs")
    candidate = runs / name / "model.keras"
    return candidate if candidate.is_file() else None


def compare_with_keras(
    classifier: Any,
    model: Any,
    images: np.ndarray,
    batch_sizes: Sequence[int],
    *,
    warmup: int = DEFAULT_WARMUP,
    iterations: int | None = None,
    duration: float | None = None,
    rounds: int = ROUNDS,
    on_done: Callable[[int, KerasComparison], None] | None = None,
) -> list[KerasComparison]:
    """Time the ONNX ``classifier`` and the Keras ``model`` per batch size (module docstring).
    ``iterations``/``duration`` are per timed function and batch size, split over
    ``rounds``."""
    import keras

    iterations, duration = check_budget(iterations, duration)
    rounds = max(1, min(rounds, iterations or rounds))
    share: dict[str, Any] = {
        "iterations": -(-iterations // rounds) if iterations else None,
        "duration": duration / rounds if duration else None,
        "min_iterations": -(-MIN_ITERATIONS // rounds),
    }
    out = []
    for bs in batch_sizes:
        batch = make_batch(images, bs)
        x_np = batch.astype(np.float32)
        x_tensor = keras.ops.convert_to_tensor(x_np)
        fns: dict[str, Callable[[], Any]] = {
            "onnx": lambda b=batch: classifier.run_batch(b),
            "onnx_predict_proba": lambda b=batch: classifier.predict_proba(b),
            "keras_call": lambda x=x_tensor: np.asarray(model(x, training=False)),
            "keras_predict": lambda x=x_np, n=bs: model.predict(x, batch_size=n, verbose=0),
        }
        # model.predict traces a tf.function on its first call for a new shape: warm-ups
        # make sure that is not timed.
        for fn in fns.values():
            for _ in range(max(2, warmup)):
                fn()
        samples: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(rounds):
            for key, fn in fns.items():
                samples[key] += collect_samples(fn, warmup=0, **share)
        stats = {k: stats_from_samples(v, bs, max(2, warmup)) for k, v in samples.items()}
        item = KerasComparison(bs, **stats)
        out.append(item)
        if on_done is not None:
            on_done(bs, item)
    return out
