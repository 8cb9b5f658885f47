"""Accuracy metrics from predicted probabilities: top-k, per-class P/R/F1, confusion.

Conventions (the ones scikit-learn uses, so numbers can be cross-checked against it):

- confusion matrix rows are the *true* class, columns the *predicted* class;
- a class's precision is ``TP / (TP + FP)``, recall ``TP / (TP + FN)`` (= that class's
  accuracy), F1 their harmonic mean; a ratio whose denominator is 0 (a class never
  predicted, or absent from the labels) is 0.0 (scikit-learn's ``zero_division=0``);
- macro averages are the unweighted means over all classes;
- the row-normalised confusion matrix divides each row by its support (a row of zeros for a
  class with no images), so cell ``[cat, dog]`` reads "share of cats predicted as dog";
- top-k: the true label is among the k highest probabilities; ties are broken by class
  index (``argsort`` is stable on the negated scores).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cifarkit.errors import UsageError
from cifarkit.measure import calibration


def _check(y_true: np.ndarray, n_classes: int, what: str = "labels") -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise UsageError(f"{what} must be a 1-D array of class indices, got shape {y.shape}")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes):
        raise UsageError(f"{what} must be integers in 0..{n_classes - 1}")
    return y.astype(np.int64, copy=False)


def topk_accuracy(probs: np.ndarray, y_true: np.ndarray, k: int = 1) -> float:
    """Share of rows whose true label is among the ``k`` highest scores (0.0 for no rows)."""
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise UsageError(f"probabilities must be [N, n_classes], got shape {probs.shape}")
    y = _check(y_true, probs.shape[1])
    if len(y) != len(probs):
        raise UsageError(f"{len(probs)} probability rows but {len(y)} labels")
    if not len(y):
        return 0.0
    k = max(1, min(k, probs.shape[1]))
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == y[:, None], axis=1)))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts ``[n_classes, n_classes]`` (int64): rows true class, columns predicted class."""
    t = _check(y_true, n_classes, "true labels")
    p = _check(y_pred, n_classes, "predicted labels")
    if len(t) != len(p):
        raise UsageError(f"{len(t)} true labels but {len(p)} predictions")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    ).astype(np.int64)


def row_normalize(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (float64); rows that sum to 0 stay 0."""
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def per_class_metrics(cm: np.ndarray, classes: Sequence[str]) -> list[dict[str, Any]]:
    """One dict per class: ``label, class, precision, recall, f1, support, predicted``."""
    cm = np.asarray(cm)
    if cm.shape != (len(classes), len(classes)):
        raise UsageError(f"confusion matrix {cm.shape} does not match {len(classes)} classes")
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return [
        {
            "label": i, "class": name, "precision": float(precision[i]),
            "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i]),
            "predicted": int(predicted[i]),
        }
        for i, name in enumerate(classes)
    ]


def top_confusions(
    cm: np.ndarray, classes: Sequence[str], n: int = 10
) -> list[dict[str, Any]]:
    """The ``n`` largest off-diagonal cells, largest first (ties: by true, then predicted
    index): ``true, predicted, count, share_of_true`` (count / that class's support)."""
    cm = np.asarray(cm)
    support = cm.sum(axis=1)
    cells = [
        (int(cm[t, p]), t, p)
        for t in range(cm.shape[0]) for p in range(cm.shape[1])
        if t != p and cm[t, p] > 0
    ]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [
        {
            "true": classes[t], "predicted": classes[p], "count": count,
            "share_of_true": float(count / support[t]) if support[t] else 0.0,
        }
        for count, t, p in cells[: max(0, n)]
    ]


def format_confusion(item: dict[str, Any]) -> str:
    """``"cat → dog: 143"``: one entry of ``top_confusions``."""
    return f"{item['true']} → {item['predicted']}: {item['count']:,}"


@dataclass
class AccuracyReport:
    """Everything about *what* a model gets right and wrong on one labelled image set."""

    classes: tuple[str, ...]
    n_images: int
    top1: float
    top3: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    per_class: list[dict[str, Any]]
    confusion: np.ndarray  # int64 counts, rows true, columns predicted
    confusion_normalized: np.ndarray  # row-normalised
    top_confusions: list[dict[str, Any]] = field(default_factory=list)
    #: Confidence: expected calibration error (15 bins, top label), NLL and Brier score.
    ece: float | None = None
    nll: float | None = None
    brier: float | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "n_images": self.n_images, "top1": self.top1, "top3": self.top3,
            "macro_precision": self.macro_precision, "macro_recall": self.macro_recall,
            "macro_f1": self.macro_f1, "ece": self.ece, "nll": self.nll, "brier": self.brier,
        }


def evaluate(
    probs: np.ndarray, y_true: np.ndarray, classes: Sequence[str], *, n_confusions: int = 10
) -> AccuracyReport:
    """All accuracy metrics of probabilities ``[N, n_classes]`` against labels ``[N]``."""
    probs = np.asarray(probs)
    classes = tuple(classes)
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise UsageError(
            f"probabilities {list(probs.shape)} do not match {len(classes)} classes"
        )
    y = _check(y_true, len(classes))
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, np.int64)
    conf = calibration.evaluate(probs, y) if len(y) else None
    cm = confusion_matrix(y, pred, len(classes))
    rows = per_class_metrics(cm, classes)
    return AccuracyReport(
        classes=classes,
        n_images=int(len(y)),
        top1=topk_accuracy(probs, y, 1),
        top3=topk_accuracy(probs, y, 3),
        macro_precision=float(np.mean([r["precision"] for r in rows])),
        macro_recall=float(np.mean([r["recall"] for r in rows])),
        macro_f1=float(np.mean([r["f1"] for r in rows])),
        per_class=rows,
        confusion=cm,
        confusion_normalized=row_normalize(cm),
        top_confusions=top_confusions(cm, classes, n_confusions),
        ece=None if conf is None else conf.ece,
        nll=None if conf is None else conf.nll,
        brier=None if conf is None else conf.brier,
    )
