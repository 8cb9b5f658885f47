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
) -> None:
    """The notebook's sample figure: the first ``per_class`` images of each class, one row each."""
    plt = _plt()
    n_cls = len(classes)
    fig, axes = plt.subplots(
        n_cls, per_class + 1, figsize=(1.1 * (per_class + 1) + 0.8, 1.1 * n_cls), squeeze=False
    )
    for c, name in enumerate(classes):
        idx = np.flatnonzero(y == c)[:per_class]
        axes[c, 0].text(0.95, 0.5, name, ha="right", va="center", fontsize=11)
        for j in range(per_class + 1):
            axes[c, j].axis("off")
        for j, i in enumerate(idx, start=1):
            axes[c, j].imshow(x[i], interpolation="nearest")
    fig.suptitle(f"CIFAR-10: first {per_class} training images per class", fontsize=13)
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
