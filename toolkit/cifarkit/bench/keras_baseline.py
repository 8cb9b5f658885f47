"""The Keras baseline: the same model in Keras, timed beside its ONNX export in one run.

For each batch size, on the same preloaded images:

- ``onnx``: ``run_batch(batch)`` — one ``session.run`` on the whole batch (uint8 in, numpy
  out), as in the latency sweep;
- ``onnx_predict_proba``: ``predict_proba(batch)`` — the runtime's batching,
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
asked for. The ONNX side is opened through ``cifarkit.backends`` (onnxruntime, on CUDA when
Keras runs on a GPU and CUDA is benchmarked, else on the CPU).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.bench.config import BenchConfig, BenchResult, KerasResult, ModelFile, Progress
from cifarkit.errors import UsageError
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


def keras_sources(config: BenchConfig, models: list[ModelFile]) -> dict[str, Path]:
    """{model name: .keras path} for the baseline (empty when none was asked for)."""
    if config.keras is None:
        return {}
    names = list(dict.fromkeys(m.name for m in models))
    first = {name: next(m for m in models if m.name == name) for name in names}
    if os.fspath(config.keras) == "auto":
        found = {}
        for name in names:
            src = find_keras_source(first[name].path, name, config.runs)
            if src is not None:
                found[name] = src
        if not found:
            raise UsageError(
                "--keras auto: no .keras source found for "
                + ", ".join(names)
                + " (looked at card.json's source.file beside each model and "
                "runs/<name>/model.keras); pass --keras PATH"
            )
        return found
    path = Path(config.keras)
    if not path.is_file():
        raise UsageError(f"--keras {path}: no such file")
    if len(names) == 1:
        return {names[0]: path}
    matched = [
        n for n in names
        if (src := find_keras_source(first[n].path, n, config.runs))
        and src.resolve() == path.resolve()
    ]
    if len(matched) == 1:
        return {matched[0]: path}
    raise UsageError(
        f"--keras {path}: {len(names)} models are benchmarked ({', '.join(names)}) and it is "
        "not clear which one it belongs to; benchmark one MODEL with --keras, or use --keras auto"
    )


def run_keras(
    result: BenchResult, sources: dict[str, Path], batch_sizes: list[int],
    iterations: int | None, duration: float | None, progress: Progress | None,
) -> list[KerasResult]:
    """Each Keras source timed beside its model's fp32 file (else its first file)."""
    from cifarkit.backends import REFERENCE, open_backend

    config = result.config
    out = []
    total = len(sources) * len(batch_sizes)
    done = 0
    for name, src in sources.items():
        files = [m for m in result.models if m.name == name]
        ref = next((m for m in files if m.precision == "fp32"), files[0])
        if progress is not None:
            progress(done, total, f"Keras baseline: loading {src}")
        model = load_keras(src)
        device = keras_device()
        provider = "cuda" if device == "gpu" and "cuda" in result.providers else "cpu"
        if provider == "cpu" and "cpu" not in result.providers:
            result.notes.append("Keras baseline compared with the ONNX model on cpu (not in "
                                "--provider, opened for the baseline only)")
        onnx_model = open_backend(f"{REFERENCE}:{provider}", ref.path, threads=config.threads)
        try:
            def on_done(bs: int, _item: KerasComparison, _name: str = name) -> None:
                nonlocal done
                done += 1
                if progress is not None:
                    progress(done, total, f"Keras baseline {_name}: batch {bs}")

            comparisons = compare_with_keras(
                onnx_model, model, result.images, batch_sizes, warmup=config.warmup,
                iterations=iterations, duration=duration, on_done=on_done,
            )
            batch = make_batch(result.images, max(batch_sizes))
            onnx_p = onnx_model.run_batch(batch)
            keras_p = np.asarray(model(batch.astype(np.float32), training=False))
            chunk = onnx_model.classifier.batch_size  # its tuned predict_proba chunk
        finally:
            onnx_model.close()
        agree = float(np.mean(onnx_p.argmax(1) == keras_p.argmax(1)))
        diff = float(np.max(np.abs(onnx_p.astype(np.float64) - keras_p)))
        if agree < 0.99:
            result.notes.append(
                f"Keras baseline {src} agrees with {ref.path} on only {agree:.1%} of "
                f"{len(batch)} images: is it the model this ONNX file was exported from?"
            )
        out.append(KerasResult(name, ref.precision, provider, src, device, comparisons, agree,
                               diff, chunk))
    return out
