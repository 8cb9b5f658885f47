"""How far a model's confidence can be trusted: ECE, NLL, Brier, reliability bins, temperature.

Conventions (each is one of several in the literature; these are the ones to quote):

- **ECE** (Guo et al. 2017, "On Calibration of Modern Neural Networks"): the top label's
  confidence ``max_k p_k`` cut into ``n_bins`` equal-width bins ``(b/B, (b+1)/B]`` (a
  confidence of exactly 0 goes to the first bin), then ``Σ_b (n_b / N) · |acc_b - conf_b|``.
  15 bins is the paper's and the issue's setting. torchmetrics bins ``[lo, hi)`` instead; the
  two differ only for confidences exactly on an edge.
- **Classwise ECE** (Kull et al. 2019): the same binning applied to every class's own
  probability ``p_k`` against ``1[y = k]`` over all rows, averaged over the classes.
- **NLL**: mean ``-log p_y`` in nats. **Brier**: mean over rows of ``Σ_k (p_k - 1[y = k])²``
  (Brier's original multi-class score, range 0–2; some libraries divide it by the classes).
- **Temperature** (Guo et al. 2017): one scalar ``T`` so that ``softmax(z / T)`` minimises the
  NLL on held-out images. An exported model gives probabilities, not logits; ``log p`` serves
  as logits because softmax is shift-invariant (``log p = z - logsumexp(z)`` differs from
  ``z`` by a per-row constant), so ``softmax(log p / T) == softmax(z / T)`` exactly.

Only numpy is imported. Arrays are float64 inside whatever comes in.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cifarkit.errors import UsageError

N_BINS = 15
# A probability that underflowed to 0 (fp16/int8 outputs can) has no finite log; this floor
# keeps NLL and log p finite. It is far below anything a float32 softmax tells apart from 0.
PROB_FLOOR = 1e-12
# The temperatures fit_temperature searches: wide enough for any sane network (label
# smoothing makes T < 1, over-confidence T > 1) and bounded so a degenerate set cannot run off.
T_BOUNDS = (0.05, 20.0)


def _check(
    probs: Any, labels: Any, what: str = "probabilities"
) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2 or p.shape[1] < 2:
        raise UsageError(f"{what} must be [N, n_classes >= 2], got shape {p.shape}")
    if y.ndim != 1 or len(y) != len(p):
        raise UsageError(f"labels must be 1-D with one entry per row: {y.shape} vs {p.shape}")
    if not len(y):
        raise UsageError("no rows: calibration needs at least one labelled image")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]:
        raise UsageError(f"labels must be integers in 0..{p.shape[1] - 1}")
    if not np.all(np.isfinite(p)):
        raise UsageError(f"{what} contain NaN or infinity")
    return p, y.astype(np.int64, copy=False)


def _bin_index(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each value in ``[0, 1]``: bin b holds ``(b/B, (b+1)/B]``, 0 goes to bin 0."""
    if n_bins < 1:
        raise UsageError(f"n_bins must be >= 1, got {n_bins}")
    return np.clip(np.ceil(values * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


# --- logits and softmax -----------------------------------------------------------------------


def log_probs(probs: Any) -> np.ndarray:
    """``log p`` with ``p`` floored at ``PROB_FLOOR``: logits up to a per-row constant."""
    return np.log(np.maximum(np.asarray(probs, dtype=np.float64), PROB_FLOOR))


def log_softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """``log softmax(z / T)`` per row, computed stably (max subtracted first)."""
    if not temperature > 0:
        raise UsageError(f"temperature must be > 0, got {temperature}")
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """``softmax(z / T)`` per row."""
    return np.exp(log_softmax(logits, temperature))


def apply_temperature(probs: Any, temperature: float) -> np.ndarray:
    """Probabilities recalibrated by ``T``: ``softmax(log p / T)`` (see the module docstring
    for why ``log p`` stands in for the logits). Top-1 never changes."""
    return softmax(log_probs(probs), temperature)


# --- metrics ----------------------------------------------------------------------------------


def nll(probs: Any, labels: Any) -> float:
    """Mean negative log-likelihood of the true class, in nats."""
    p, y = _check(probs, labels)
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], PROB_FLOOR))))


def brier(probs: Any, labels: Any) -> float:
    """Mean over rows of ``Σ_k (p_k - 1[y = k])²`` (0 is perfect, 2 the worst)."""
    p, y = _check(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram's data: per equal-width bin of top-label confidence, its edges,
    the images in it, their mean confidence and their accuracy (both NaN for an empty bin)."""

    edges: np.ndarray  # [n_bins + 1], 0 .. 1
    count: np.ndarray  # [n_bins] int64
    confidence: np.ndarray  # [n_bins] float64, NaN where count == 0
    accuracy: np.ndarray  # [n_bins] float64, NaN where count == 0

    @property
    def ece(self) -> float:
        """``Σ_b (n_b / N) · |acc_b - conf_b|`` over the non-empty bins."""
        used = self.count > 0
        gaps = np.abs(self.accuracy[used] - self.confidence[used])
        return float(np.sum(self.count[used] * gaps) / self.count.sum())

    def to_dict(self) -> dict[str, list[float | None]]:
        """JSON-ready lists (``None`` for an empty bin's confidence and accuracy)."""
        def clean(a: np.ndarray) -> list[float | None]:
            return [None if math.isnan(v) else float(v) for v in a]
        return {"edges": [float(e) for e in self.edges], "count": [int(c) for c in self.count],
                "confidence": clean(self.confidence), "accuracy": clean(self.accuracy)}


def _binned(values: np.ndarray, hits: np.ndarray, n_bins: int) -> Reliability:
    idx = _bin_index(values, n_bins)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=values, minlength=n_bins) / count
        acc = np.bincount(idx, weights=hits, minlength=n_bins) / count
    return Reliability(np.linspace(0.0, 1.0, n_bins + 1), count.astype(np.int64), conf, acc)


def reliability(probs: Any, labels: Any, n_bins: int = N_BINS) -> Reliability:
    """Top-label reliability bins (ties in the top probability go to the lowest class)."""
    p, y = _check(probs, labels)
    return _binned(p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64), n_bins)


def ece(probs: Any, labels: Any, n_bins: int = N_BINS) -> float:
    """Expected calibration error of the top label, ``n_bins`` equal-width bins."""
    return reliability(probs, labels, n_bins).ece


def classwise_ece(probs: Any, labels: Any, n_bins: int = N_BINS) -> float:
    """Mean over classes of the ECE of ``p_k`` against ``1[y = k]`` (all rows, every class)."""
    p, y = _check(probs, labels)
    per_class = [_binned(p[:, k], (y == k).astype(np.float64), n_bins).ece
                 for k in range(p.shape[1])]
    return float(np.mean(per_class))


@dataclass(frozen=True)
class CalibrationReport:
    """The calibration figures of one set of probabilities against labels."""

    n_images: int
    accuracy: float
    mean_confidence: float
    ece: float
    classwise_ece: float
    nll: float
    brier: float
    reliability: Reliability

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reliability"] = self.reliability.to_dict()
        return out


def evaluate(probs: Any, labels: Any, n_bins: int = N_BINS) -> CalibrationReport:
    """Every calibration figure of ``probs`` [N, K] against ``labels`` [N]."""
    p, y = _check(probs, labels)
    rel = reliability(p, y, n_bins)
    return CalibrationReport(
        n_images=len(y), accuracy=float(np.mean(p.argmax(axis=1) == y)),
        mean_confidence=float(np.mean(p.max(axis=1))), ece=rel.ece,
        classwise_ece=classwise_ece(p, y, n_bins), nll=nll(p, y), brier=brier(p, y),
        reliability=rel,
    )


# --- temperature scaling ----------------------------------------------------------------------


@dataclass(frozen=True)
class TemperatureFit:
    """One fitted temperature and the held-out NLL before (``T = 1``) and after."""

    temperature: float
    nll_before: float
    nll_after: float
    n_images: int
    at_bound: bool  # the optimum lies on the search's edge: the set is degenerate (see fit)


def _nll_at(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    logp = log_softmax(logits, temperature)
    return float(-np.mean(logp[np.arange(len(labels)), labels]))


def fit_temperature(
    logits: Any, labels: Any, *, bounds: tuple[float, float] = T_BOUNDS, tol: float = 1e-6,
) -> TemperatureFit:
    """The ``T`` in ``bounds`` minimising the NLL of ``softmax(logits / T)`` on ``labels``.

    Pass real logits, or ``log_probs(probs)`` for a model that outputs probabilities (same
    answer: see the module docstring). The search is golden-section on ``log T``: the NLL is
    convex in ``1/T`` (a log-sum-exp plus a linear term), hence unimodal in ``log T``, so the
    bracket shrinks onto the one minimum without derivatives or a step size to tune; ``tol``
    is the final bracket width in ``log T``. A set the model gets all right (or all wrong)
    pushes the optimum to ``bounds``' edge, which ``at_bound`` reports rather than hides.
    """
    z, y = _check(logits, labels, "logits")
    lo, hi = bounds
    if not 0 < lo < hi:
        raise UsageError(f"temperature bounds must satisfy 0 < low < high, got {bounds}")
    a, b = math.log(lo), math.log(hi)
    inv_phi = (math.sqrt(5) - 1) / 2
    c, d = b - inv_phi * (b - a), a + inv_phi * (b - a)
    fc, fd = _nll_at(z, y, math.exp(c)), _nll_at(z, y, math.exp(d))
    while b - a > tol:
        if fc <= fd:  # the minimum is in [a, d]
            b, d, fd = d, c, fc
            c = b - inv_phi * (b - a)
            fc = _nll_at(z, y, math.exp(c))
        else:  # in [c, b]
            a, c, fc = c, d, fd
            d = a + inv_phi * (b - a)
            fd = _nll_at(z, y, math.exp(d))
    t = math.exp((a + b) / 2)
    edge = 10 * tol
    return TemperatureFit(
        temperature=t, nll_before=_nll_at(z, y, 1.0), nll_after=_nll_at(z, y, t),
        n_images=len(y),
        at_bound=(a - math.log(lo) < edge) or (math.log(hi) - b < edge),
    )
