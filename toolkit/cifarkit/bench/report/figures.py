"""The report's PNG figures (drawn by ``cifarkit.plots``): per model, the confusion heatmap,
per-class accuracy, predictions and mistakes; throughput against batch size; the runtimes;
accuracy against throughput."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cifarkit.backends import REFERENCE
from cifarkit.bench.config import AccuracyResult, BenchResult
from cifarkit.bench.report._format import reference_accuracy
from cifarkit.bench.report.data import to_dict


def write_figures(result: BenchResult, folder: str | os.PathLike[str], *,
                  n_predictions: int = 10, n_misclassified: int = 24) -> dict[str, Path]:
    """All PNGs into ``folder``: per model (reference precision/provider) the confusion
    heatmap, per-class accuracy bars (every precision), predictions and misclassified
    examples; one throughput-vs-batch chart; one accuracy-vs-throughput chart (a point per
    model × precision × provider). Returns {title: path}."""
    from cifarkit import plots

    folder = Path(folder)
    out: dict[str, Path] = {}
    for ref in reference_accuracy(result):
        out.update(_model_figures(result, ref, folder, n_predictions, n_misclassified))
    cpu = result.environment.get("cpu", {})
    machine = f"{cpu.get('model')}, {cpu.get('physical_cores')} cores"
    series = _throughput_series(result)
    if series:
        gpus = result.environment.get("gpus")
        p = folder / "throughput-vs-batch.png"
        plots.throughput_vs_batch(
            series, p, title=f"Throughput vs batch size ({machine}"
            + (f"; {gpus[0]['name']}" if gpus else "") + ")",
        )
        out["throughput vs batch size"] = p
    if result.multi_runtime:
        matrix = [m for m in to_dict(result)["runtime_matrix"] if m["status"] == "ok"]
        if matrix:
            p = folder / "runtimes.png"
            plots.runtime_matrix(
                matrix, p, title=f"Runtimes on {cpu.get('model')} "
                f"({cpu.get('physical_cores')} cores): agreement with onnxruntime, latency, "
                "throughput",
            )
            out["runtimes"] = p
    points = accuracy_vs_throughput_points(result)
    if points:
        p = folder / "accuracy-vs-throughput.png"
        plots.accuracy_vs_throughput(points, p, title=f"Accuracy vs throughput ({machine})")
        out["accuracy vs throughput"] = p
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def _model_figures(result: BenchResult, ref: AccuracyResult, folder: Path,
                   n_predictions: int, n_misclassified: int) -> dict[str, Path]:
    """The four figures of one model, from its reference accuracy row ``ref``."""
    from cifarkit import plots

    classes = result.classes
    tag = f"{ref.model} {ref.precision} on {ref.provider}"
    # a model of the quick sweep's lighter part was run on a subset of the images
    x, y = ((result.images, result.labels) if ref.indices is None else
            (result.images[ref.indices], result.labels[ref.indices]))
    base = _slug(f"{ref.model}-{ref.precision}-{ref.provider}")
    r = ref.report
    out: dict[str, Path] = {}
    p = folder / f"{base}-confusion.png"
    plots.confusion_heatmap(
        r.confusion, classes, p,
        title=f"Confusion matrix: {tag} (top-1 {r.top1:.1%}, {r.n_images:,} images)",
    )
    out[f"confusion matrix, {tag}"] = p

    series = {
        f"{a.precision} on {a.provider} (top-1 {a.report.top1:.1%})":
            [row["recall"] for row in a.report.per_class]
        for a in result.accuracy if a.model == ref.model
    }
    p = folder / f"{_slug(ref.model)}-per-class-accuracy.png"
    plots.per_class_accuracy_bars(series, classes, p, title=f"Per-class accuracy: {ref.model}")
    out[f"per-class accuracy, {ref.model}"] = p

    # the first image of each class, for a fixed figure
    pick = [int(idx[0]) for c in range(len(classes)) if len(idx := np.flatnonzero(y == c))]
    pick = pick[:n_predictions]
    p = folder / f"{base}-predictions.png"
    plots.prediction_figure(
        x[pick], ref.probs[pick], classes, p, y_true=y[pick],
        title=f"Predictions of {tag}: the first test image of each class",
    )
    out[f"predictions, {tag}"] = p

    pred = ref.probs.argmax(axis=1)
    conf = ref.probs.max(axis=1)
    wrong = np.flatnonzero(pred != y)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:n_misclassified]
    p = folder / f"{base}-misclassified.png"
    plots.misclassified_grid(
        x[wrong], y[wrong], pred[wrong], conf[wrong], classes, p,
        title=f"Most confident mistakes of {tag}: true → predicted (confidence)",
    )
    out[f"misclassified, {tag}"] = p
    return out


def _throughput_series(result: BenchResult) -> dict[str, tuple[list[int], list[float]]]:
    """One line per model × precision × provider (+ I/O binding), or × runtime."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for row in result.latency:
        if row.stats is None:
            continue
        label = f"{row.model} {row.precision} {row.provider}" + (" +iobind" if row.io_binding
                                                                  else "")
        if row.runtime != REFERENCE:
            label = f"{row.model} {row.precision} {row.runtime}"
        sizes, rates = series.setdefault(label, ([], []))
        sizes.append(row.stats.batch_size)
        rates.append(row.stats.images_per_s)
    return series


def accuracy_vs_throughput_points(result: BenchResult) -> list[tuple[str, str, str, float,
                                                                      float]]:
    """(model, precision, provider, best images/s over the batch sizes timed, top-1): one
    point per model × precision × provider of onnxruntime that has both an accuracy and a
    timing (other runtimes are compared in the runtimes figure; mixing their rates into one
    point would credit onnxruntime with another runtime's speed)."""
    best: dict[tuple[str, str, str], float] = {}
    for row in result.latency:
        if row.stats is not None and row.runtime == REFERENCE:
            key = (row.model, row.precision, row.provider)
            best[key] = max(best.get(key, 0.0), row.stats.images_per_s)
    return [(a.model, a.precision, a.provider, best[key], a.report.top1)
            for a in result.accuracy
            if a.runtime == REFERENCE and (key := (a.model, a.precision, a.provider)) in best]
