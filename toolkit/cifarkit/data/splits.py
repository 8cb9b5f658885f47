"""Stratified, seeded subsets and validation splits.

Keras's ``validation_split`` takes the *last* fraction of the arrays unshuffled. The image
folders list files in class order, so that "validation set" is one or two classes. These
functions shuffle within each class instead.
"""

from __future__ import annotations

import numpy as np

from cifarkit.errors import UsageError


def _per_class_counts(y: np.ndarray, total: int) -> dict[int, int]:
    """Split ``total`` over the classes in proportion to their sizes (largest remainder)."""
    classes, sizes = np.unique(y, return_counts=True)
    exact = sizes * total / len(y)
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return {int(c): int(n) for c, n in zip(classes, counts, strict=True)}


def stratified_split(
    y: np.ndarray, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(keep, held_out)`` with ``fraction`` of each class held out, both shuffled."""
    y = np.asarray(y)
    if not 0.0 <= fraction < 1.0:
        raise UsageError(f"validation fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    n_held = int(round(fraction * len(y)))
    if n_held == 0:
        return rng.permutation(len(y)), np.empty(0, dtype=np.int64)
    held_counts = _per_class_counts(y, n_held)
    keep, held = [], []
    for c, n in held_counts.items():
        idx = rng.permutation(np.flatnonzero(y == c))
        held.append(idx[:n])
        keep.append(idx[n:])
    return rng.permutation(np.concatenate(keep)), rng.permutation(np.concatenate(held))


def stratified_subset(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``n`` items drawn per class in proportion (for ``--limit``)."""
    y = np.asarray(y)
    if n <= 0:
        raise UsageError(f"--limit must be positive, got {n}")
    if n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    picked = [
        rng.choice(np.flatnonzero(y == c), size=k, replace=False)
        for c, k in _per_class_counts(y, n).items()
    ]
    return np.sort(np.concatenate(picked))
