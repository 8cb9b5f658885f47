"""``predict --reject auto|VALUE|off``: rows whose score is under a threshold answer ``unknown``.

- ``off`` (the default): nothing changes, not even the columns.
- ``auto``: the model's own rule (``contract.UnknownRule``, the metadata's ``unknown`` entry
  that export writes from held-out in-distribution images); a model without one is an error
  that says how to get one.
- ``VALUE``: a threshold on the same score (the model's rule's score, else the top
  probability, where it must be in (0, 1)). A rule on the model's ``score`` output takes
  any real number: that output is not a probability.

A rejected row keeps its ``top_k`` and gets ``label`` ``unknown``, no ``index`` or
``confidence`` (no class was chosen), its ``score`` and ``rejected`` true; accepted rows get
their ``score`` and ``rejected`` false. A model with a class of its own named ``unknown`` is
refused: its rows could not tell the two apart. Which score a rule means is decided in one
place, ``measure.ood.unknown_scores``; a rule on the ``score`` output needs the file to have
one (checked in ``resolve``, before any input is read) and the engines to fetch it with the
probabilities (``Rejection.uses_output``, ``RuntimeModel.predict_scored``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifarkit.contract import SCORE_OUTPUT, ModelInfo
from cifarkit.errors import ModelError, UsageError

UNKNOWN = "unknown"  # the label of a rejected row
MODES = ("off", "auto")


def parse_reject(value: str | float | None) -> str | float:
    """``off``, ``auto`` or a finite number (the threshold)."""
    if value is None:
        return "off"
    if isinstance(value, str):
        text = value.strip().lower()
        if text in MODES:
            return text
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"--reject wants auto, off or a score threshold (a number), "
                             f"got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(value):
        raise UsageError(f"--reject wants auto, off or a finite threshold, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Rejection:
    """The rule a run applies: rows with ``score < threshold`` are ``unknown``. ``source``
    says where the threshold came from (for the summary)."""

    score: str
    threshold: float
    source: str

    @property
    def uses_output(self) -> bool:
        """The rule scores with the model's ``score`` output (so it must be fetched)."""
        return self.score == SCORE_OUTPUT

    def scores(self, probs: np.ndarray, where: str = "the model",
               score_output: np.ndarray | None = None) -> np.ndarray:
        """The rule's score per row: from ``probs``, or the model's ``score_output``."""
        from cifarkit.measure.ood import unknown_scores

        return unknown_scores(probs, self.score, where, score_output)

    def describe(self) -> str:
        name = "top probability" if self.score == "msp" else self.score
        return f"{name} < {self.threshold:.4g}, {self.source}"


def resolve(mode: str | float, info: ModelInfo, model: Path) -> Rejection | None:
    """The run's ``Rejection`` for ``--reject mode`` on ``model`` (None: ``off``)."""
    if mode == "off":
        return None
    if UNKNOWN in info.classes:
        raise UsageError(f"--reject: {model} has a class of its own named {UNKNOWN!r}; "
                         "rejected rows would be indistinguishable from it")
    rule = info.unknown
    if mode == "auto":
        if rule is None:
            raise ModelError(
                f"--reject auto: {model} records no unknown threshold (no 'unknown' entry in "
                "its metadata); re-export it with held-out in-distribution images so that "
                "export fits one, or give the threshold yourself: --reject VALUE (a top "
                "probability in (0, 1); cifarkit bench MODEL --ood DIR shows what a threshold "
                "rejects)")
        _check_output(rule.score, info, model)
        fitted = f" on {rule.fitted_on}" if rule.fitted_on else ""
        return Rejection(rule.score, rule.threshold,
                         f"the model's rule ({100 * rule.acceptance:g} % acceptance{fitted})")
    score = rule.score if rule is not None else "msp"
    _check_output(score, info, model)
    if score == "msp" and not 0 < float(mode) < 1:
        raise UsageError(f"--reject {mode:g}: the score is the top probability, so the "
                         "threshold must be in (0, 1)")
    return Rejection(score, float(mode), f"--reject {mode:g}")


def _check_output(score: str, info: ModelInfo, model: Path) -> None:
    if score == SCORE_OUTPUT and not info.has_score:
        from cifarkit.measure.ood import missing_score

        raise missing_score(f"--reject: {model}", None)


__all__ = ["UNKNOWN", "Rejection", "parse_reject", "resolve"]
