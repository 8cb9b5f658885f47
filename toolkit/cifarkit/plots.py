"""Every matplotlib figure cifarkit draws, in one place. All are saved atomically as PNG."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cifarkit._io import atomic_path


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str]) -> None:
    plt = _plt()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def sample_grid(
    x: np.ndarray,
    y: np.ndarray,
    classes: Sequence[str],
    path: str | os.PathLike[str],
    per_class: int = 8,
    max_classes: int = 30,
) -> None:
    """The notebook's sample figure: the first ``per_class`` images of each class, one row
    each (the first ``max_classes`` classes: a taller figure is unreadable)."""
    plt = _plt()
    n_cls = min(len(classes), max_classes)
    fig, axes = plt.subplots(
        n_cls, per_class + 1, figsize=(1.1 * (per_class + 1) + 0.8, 1.1 * n_cls), squeeze=False
    )
    for c, name in enumerate(classes[:n_cls]):
        idx = np.flatnonzero(y == c)[:per_class]
        axes[c, 0].text(0.95, 0.5, name, ha="right", va="center", fontsize=11)
        for j in range(per_class + 1):
            axes[c, j].axis("off")
        for j, i in enumerate(idx, start=1):
            axes[c, j].imshow(x[i], interpolation="nearest")
    shown = f" (first {n_cls} of {len(classes)} classes)" if n_cls < len(classes) else ""
    fig.suptitle(f"first {per_class} images per class{shown}", fontsize=13)
    _save(fig, path)


def training_curves(
    history: Mapping[str, Sequence[float]], path: str | os.PathLike[str], title: str = ""
) -> None:
    """Accuracy and loss per epoch, train vs validation (the notebook's two plots, side by side)."""
    plt = _plt()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, key, label in ((ax_acc, "accuracy", "Accuracy"), (ax_loss, "loss", "Loss")):
        if key in history:
            ax.plot(epochs, history[key], "o-", label="train")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"{label} per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    _save(fig, path)


# --- benchmark figures (cifarkit bench) ----------------------------------------------------


ANNOTATE_MAX = 20  # classes up to which cells and bars carry their numbers
TOP_BARS = 5  # probability bars per image in the prediction figure when classes are many


def confusion_heatmap(
    cm: np.ndarray, classes: Sequence[str], path: str | os.PathLike[str], title: str = ""
) -> None:
    """Confusion matrix: colour = share of the true class (row-normalised), text = that share
    in % over the count. Rows are the true class, columns the predicted class."""
    plt = _plt()
    cm = np.asarray(cm)
    support = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, support, out=np.zeros(cm.shape, np.float64), where=support > 0)
    n = len(classes)
    cell = 0.75 if n <= ANNOTATE_MAX else max(0.16, 12 / n)  # inches: ≤ 16 in. for 100
    fig, ax = plt.subplots(figsize=(1.6 + cell * n, 1.2 + cell * n))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            if cm[i, j] == 0 or n > ANNOTATE_MAX:  # past ~20 classes: colour only
                continue
            color = "white" if frac[i, j] > 0.5 else "black"
            ax.text(j, i, f"{frac[i, j]:.0%}\n{cm[i, j]:,}", ha="center", va="center",
                    fontsize=7, color=color)
    tick = 10 if n <= ANNOTATE_MAX else 6
    ax.set_xticks(range(n), classes, rotation=45 if n <= ANNOTATE_MAX else 90, ha="right",
                  fontsize=tick)
    ax.set_yticks(range(n), classes, fontsize=tick)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "Confusion matrix (share of each true class, and count)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    _save(fig, path)


def per_class_accuracy_bars(
    series: Mapping[str, Sequence[float]], classes: Sequence[str],
    path: str | os.PathLike[str], title: str = "",
) -> None:
    """Per-class accuracy (recall) bars, one bar group per class, one colour per series
    (e.g. per precision)."""
    plt = _plt()
    n, k = len(classes), max(1, len(series))
    width = 0.8 / k
    fig, ax = plt.subplots(figsize=(max(8, min(0.9 * n, 0.22 * n + 10) + 1.5), 4.2))
    x = np.arange(n)
    for i, (label, values) in enumerate(series.items()):
        values = np.asarray(values, dtype=np.float64)
        bars = ax.bar(x + (i - (k - 1) / 2) * width, values * 100, width, label=label)
        if k == 1 and n <= ANNOTATE_MAX:
            ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=8, padding=1)
    ax.set_xticks(x, classes, rotation=30 if n <= ANNOTATE_MAX else 90, ha="right",
                  fontsize=10 if n <= ANNOTATE_MAX else 6)
    ax.set_ylabel("accuracy on the class (recall), %")
    ax.set_xlabel("true class")
    ax.set_ylim(0, 118 if k > 1 else 108)  # headroom for the legend / labels
    ax.set_yticks(range(0, 101, 20))
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title or "Per-class accuracy")
    if len(series) > 1:
        ax.legend(loc="upper center", ncol=min(k, 4), fontsize=8, frameon=False)
    _save(fig, path)


def prediction_figure(
    images: np.ndarray, probs: np.ndarray, classes: Sequence[str],
    path: str | os.PathLike[str], y_true: Sequence[int] | None = None, title: str = "",
    columns: int = 2,
) -> None:
    """The notebook's prediction figure: each image beside a bar chart of its class
    probabilities. The predicted bar is green when right, red when wrong; the true class is
    named under the image."""
    plt = _plt()
    n = len(images)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(
        rows, 2 * columns, figsize=(6.2 * columns, 1.9 * rows),
        gridspec_kw={"width_ratios": [1, 2.2] * columns}, squeeze=False,
    )
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, columns)
        ax_img, ax_bar = axes[r, 2 * c], axes[r, 2 * c + 1]
        p = np.asarray(probs[i], dtype=np.float64)
        pred = int(p.argmax())
        truth = None if y_true is None else int(y_true[i])
        ax_img.imshow(images[i], interpolation="nearest")
        label = f"true: {classes[truth]}" if truth is not None else ""
        ax_img.set_title(label, fontsize=8)
        ax_bar.axis("on")
        # Many classes: the five most probable (and the true one), not a bar per class.
        shown = np.argsort(-p)[:TOP_BARS] if len(classes) > ANNOTATE_MAX // 2 else \
            np.arange(len(classes))
        if truth is not None and truth not in shown:
            shown = np.append(shown, truth)
        colors = ["#9aa5b1"] * len(shown)
        colors[int(np.flatnonzero(shown == pred)[0])] = (
            "#2e7d32" if truth is None or pred == truth else "#c62828")
        if truth is not None and truth != pred:
            colors[int(np.flatnonzero(shown == truth)[0])] = "#1565c0"
        ax_bar.barh(range(len(shown)), p[shown], color=colors)
        ax_bar.set_yticks(range(len(shown)), [classes[c] for c in shown], fontsize=7)
        ax_bar.invert_yaxis()
        ax_bar.set_xlim(0, 1)
        ax_bar.tick_params(axis="x", labelsize=7)
        ax_bar.set_title(f"predicted: {classes[pred]} ({p[pred]:.0%})", fontsize=8)
        if r == rows - 1:
            ax_bar.set_xlabel("probability", fontsize=8)
    fig.suptitle(
        (title or "Predictions: each image and its class probabilities")
        + "\npredicted bar green when right, red when wrong; blue: the true class",
        fontsize=11,
    )
    fig.tight_layout()
    _save(fig, path)


def misclassified_grid(
    images: np.ndarray, y_true: Sequence[int], y_pred: Sequence[int],
    confidence: Sequence[float], classes: Sequence[str], path: str | os.PathLike[str],
    title: str = "", columns: int = 6,
) -> None:
    """A grid of misclassified images, each titled "true → predicted (confidence)"."""
    plt = _plt()
    n = len(images)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.75 * columns, 2.15 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        ax = axes[divmod(i, columns)]
        ax.imshow(images[i], interpolation="nearest")
        ax.set_title(
            f"{classes[int(y_true[i])]} → {classes[int(y_pred[i])]}\n({confidence[i]:.0%})",
            fontsize=8,
        )
    if n == 0:
        axes[0, 0].text(0, 0.5, "no misclassified images", fontsize=11)
    fig.suptitle(title or "Misclassified images: true → predicted (confidence)", fontsize=12)
    fig.tight_layout()
    _save(fig, path)


def throughput_vs_batch(
    series: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    path: str | os.PathLike[str], title: str = "",
) -> None:
    """Images per second against batch size (log-log), one line per model/precision/provider."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    all_sizes: set[int] = set()
    for label, (sizes, rates) in series.items():
        ax.plot(sizes, rates, "o-", label=label)
        all_sizes.update(int(s) for s in sizes)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    if all_sizes:
        ticks = sorted(all_sizes)
        ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("batch size (images per run)")
    ax.set_ylabel("throughput, images/s")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title or "Throughput vs batch size")
    if series:
        ax.legend(fontsize=8)
    _save(fig, path)


def runtime_matrix(
    rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], title: str = ""
) -> None:
    """Per model file (one group of bars each) and runtime (one colour each): top-1
    agreement with onnxruntime, batch-1 p50 latency and best-batch images/s, side by side.
    ``rows``: the bench report's ``runtime_matrix`` rows with status ``ok``."""
    plt = _plt()
    files = list(dict.fromkeys(f"{r['model']}:{r['precision']}" for r in rows))
    runtimes = list(dict.fromkeys(
        r["runtime"] + ("" if r["provider"] == "cpu" else f" ({r['provider']})") for r in rows))
    panels = (("agreement_top1", "top-1 agreement with onnxruntime, %", 100.0, False),
              ("batch1_p50_ms", "batch 1 latency p50, ms (log)", 1.0, True),
              ("best_images_per_s", "images/s at the best batch", 1.0, False))
    fig, axes = plt.subplots(1, 3, figsize=(14, 0.6 * len(files) * max(1, len(runtimes)) / 2
                                            + 2.5), squeeze=False)
    height = 0.8 / max(1, len(runtimes))
    colours = plt.get_cmap("tab10")
    for ax, (key, label, scale, log) in zip(axes[0], panels, strict=True):
        for j, rt in enumerate(runtimes):
            ys, vals = [], []
            for r in rows:
                name = r["runtime"] + ("" if r["provider"] == "cpu" else f" ({r['provider']})")
                if name == rt and r.get(key) is not None:
                    ys.append(files.index(f"{r['model']}:{r['precision']}") + j * height)
                    vals.append(float(r[key]) * scale)
            ax.barh(ys, vals, height=height, color=colours(j % 10), label=rt)
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(files))], files)
        ax.invert_yaxis()
        ax.set_xlabel(label)
        if log:
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # decade labels only
        elif key == "agreement_top1":
            lows = [float(r[key]) * scale for r in rows if r.get(key) is not None]
            ax.set_xlim(min([95.0, *lows]) - 0.5, 100.2)
        ax.grid(alpha=0.3, axis="x", which="both")
    for ax in axes[0, 1:]:
        ax.set_yticklabels([])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(runtimes), fontsize=9,
               title="no bar: the runtime cannot run that file (see the report)",
               title_fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title or "Runtimes: agreement with onnxruntime, latency, throughput")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    _save(fig, path)


def accuracy_vs_throughput(
    points: Sequence[tuple[str, str, str, float, float]],
    path: str | os.PathLike[str], title: str = "",
    rate_label: str = "throughput, images/s (best batch size timed; log scale)",
) -> None:
    """Top-1 accuracy against images/s, one point per (model, precision, provider): the chart
    to pick a model for a machine by. ``points``: (model, precision, provider, images/s,
    top-1 in 0-1). Colour per model, marker per precision, hollow markers for non-CPU."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    models = list(dict.fromkeys(p[0] for p in points))
    colours = {m: f"C{i % 10}" for i, m in enumerate(models)}
    markers = {"fp32": "o", "fp16": "s", "int8": "^"}
    for model, precision, provider, rate, top1 in points:
        hollow = provider != "cpu"
        ax.scatter([rate], [100 * top1], s=60, marker=markers.get(precision, "D"),
                   facecolors="none" if hollow else colours[model],
                   edgecolors=colours[model], linewidths=1.5, zorder=3)
        ax.annotate(f"{model} {precision}" + (f" {provider}" if hollow else ""),
                    (rate, 100 * top1), textcoords="offset points", xytext=(6, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(rate_label)
    ax.set_ylabel("top-1 accuracy, %")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title or "Accuracy vs throughput")
    handles = [plt.Line2D([], [], linestyle="", marker=markers[p], color="grey", label=p)
               for p in markers if any(q[1] == p for q in points)]
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="lower left")
    _save(fig, path)
