"""An "unknown" answer: scores for "this image is none of my classes", a threshold, and how
well a score separates known from unknown images.

One convention for every score: **higher means more like the training classes**, an image is
accepted when ``score >= threshold`` and answered "unknown" below it. In-distribution images
are the positives of every rate here (TPR = share of them accepted).

Scores:

- ``msp_score``: the maximum softmax probability (Hendrycks & Gimpel 2017), the baseline;
  needs only the probabilities every exported model gives.
- ``energy_score``: ``T · logsumexp(z / T)``, the negative free energy (Liu et al. 2020).
  It needs the real logits: from probabilities, ``logsumexp(log p) = 0`` for every row (softmax
  removed exactly the per-row shift that energy measures), so a model must export its logits
  (a second named output) before this score can be used.
- ``Mahalanobis`` on penultimate features (Lee et al. 2018): class means and one shared
  covariance, score ``-min_k (f - μ_k)ᵀ Σ⁻¹ (f - μ_k)``. Chosen over k-nearest-neighbour
  distance (Sun et al. 2022), which separates as well or better in the literature, because
  it is small and fixed in size: ``K·D + D²`` numbers (≈ 0.3 MB for 256 features) that fold
  into an ONNX graph as one MatMul and a ReduceMin, where k-NN must ship a bank of training
  features with the model and search it per image. Its fit is closed-form (no ``k``).

Metrics: AUROC (scikit-learn's ``roc_auc_score``, imported when called), FPR at 95 % TPR
(share of unknown images accepted when 95 % of the known ones are), and the share rejected on
each side at a threshold set on held-out in-distribution images (``threshold_for``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cifarkit.contract import SCORE_OUTPUT, UNKNOWN_SCORES
from cifarkit.errors import ModelError, UsageError

ACCEPTANCE = 0.95  # default share of held-out in-distribution images the threshold accepts


def _finite(values: Any, what: str, ndim: int) -> np.ndarray:
    """``values`` as float64, non-empty, of ``ndim`` dimensions, without NaN or infinity."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != ndim or not len(a):
        shape = "1-D array of scores" if ndim == 1 else "[N, D] array"
        raise UsageError(f"{what} must be a non-empty {shape}, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise UsageError(f"{what} contain NaN or infinity")
    return a


def _scores(values: Any, what: str) -> np.ndarray:
    return _finite(values, what, 1)


def _matrix(values: Any, what: str) -> np.ndarray:
    return _finite(values, what, 2)


# --- scores -----------------------------------------------------------------------------------


def msp_score(probs: Any) -> np.ndarray:
    """Maximum softmax probability per row."""
    return _matrix(probs, "probabilities").max(axis=1)


def unknown_scores(probs: Any, score: str = "msp", where: str = "the model",
                   score_output: Any = None) -> np.ndarray:
    """The score an ``unknown`` rule names (``contract.UnknownRule.score``), per row: the one
    place that decides which score ``predict --reject`` and ``bench --ood`` use. ``msp``: the
    top probability of ``probs``. ``score``: ``score_output``, the model's second output
    ``contract.SCORE_OUTPUT`` as a runtime returned it (``RuntimeModel.run_outputs``);
    ``ModelError`` naming ``where`` (the model, and the runtime) when it is None."""
    if score == "msp":
        return msp_score(probs)
    if score == SCORE_OUTPUT:
        if score_output is None:
            raise missing_score(where)
        return _scores(score_output, f"{where}: {SCORE_OUTPUT!r} output's scores")
    raise UsageError(f"unknown score {score!r}; one of {', '.join(UNKNOWN_SCORES)}")


def missing_score(where: str, runtime: str | None = "the runtime") -> ModelError:
    """The error for a rule on the ``score`` output that ``runtime`` did not return (None:
    the file, read without running it, has no such output)."""
    got = f"which {runtime} did not return" if runtime else "which the file does not have"
    return ModelError(f"{where}: its unknown rule scores with the model's {SCORE_OUTPUT!r} "
                      f"output, {got} (no output named {SCORE_OUTPUT!r}); re-export the model "
                      "with it, or run without the unknown rule (predict --reject off)")


def energy_score(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """``T · logsumexp(z / T)`` per row (negative free energy; real logits only, see above)."""
    if not temperature > 0:
        raise UsageError(f"temperature must be > 0, got {temperature}")
    z = _matrix(logits, "logits") / temperature
    top = z.max(axis=1)
    return temperature * (top + np.log(np.exp(z - top[:, None]).sum(axis=1)))


@dataclass(frozen=True)
class Mahalanobis:
    """Class means and the shared precision matrix (the covariance's pseudo-inverse) of
    penultimate features; ``normalize`` L2-normalises features first (fit and score alike),
    which later work (e.g. Müller & Hein 2025, "Mahalanobis++") finds helps many networks."""

    means: np.ndarray  # [K, D]
    precision: np.ndarray  # [D, D]
    normalize: bool = False

    @staticmethod
    def _prepare(features: Any, normalize: bool) -> np.ndarray:
        f = _matrix(features, "features")
        if normalize:
            f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        return f

    @classmethod
    def fit(cls, features: Any, labels: Any, *, n_classes: int | None = None,
            normalize: bool = False, rcond: float = 1e-10) -> Mahalanobis:
        """Fit on in-distribution features ``[N, D]`` and their labels ``[N]``. Directions
        with (relative) variance below ``rcond`` are left out of the distance, as a
        pseudo-inverse does (scikit-learn's ``EmpiricalCovariance``, Lee et al.'s code)."""
        f = cls._prepare(features, normalize)
        y = np.asarray(labels)
        if y.shape != (len(f),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise UsageError("labels must be one non-negative integer class per feature row")
        k = int(n_classes if n_classes is not None else y.max() + 1)
        if y.max() >= k:
            raise UsageError(f"labels must be below n_classes={k}, got {int(y.max())}")
        missing = np.flatnonzero(np.bincount(y, minlength=k) == 0).tolist()
        if missing:
            raise UsageError(f"every class needs features to fit; none for classes {missing}")
        means = np.stack([f[y == c].mean(axis=0) for c in range(k)])
        centred = f - means[y]
        cov = centred.T @ centred / len(f)
        vals, vecs = np.linalg.eigh(cov)
        keep = vals > rcond * max(vals.max(), 0.0)
        precision = (vecs[:, keep] / vals[keep]) @ vecs[:, keep].T
        return cls(means=means, precision=precision, normalize=normalize)

    def distances(self, features: Any) -> np.ndarray:
        """Squared Mahalanobis distance of each row to each class mean, ``[N, K]``."""
        f = self._prepare(features, self.normalize)
        if f.shape[1] != self.means.shape[1]:
            raise UsageError(f"features have {f.shape[1]} dimensions, the fit had "
                             f"{self.means.shape[1]}")
        fp = f @ self.precision
        own = np.sum(fp * f, axis=1)
        cross = fp @ self.means.T
        mean_terms = np.sum((self.means @ self.precision) * self.means, axis=1)
        return np.maximum(own[:, None] - 2 * cross + mean_terms[None, :], 0.0)

    def score(self, features: Any) -> np.ndarray:
        """``-min_k d²_k``: higher for features near some class."""
        return -self.distances(features).min(axis=1)


# --- thresholds and metrics -------------------------------------------------------------------


def threshold_for(scores_in: Any, acceptance: float = ACCEPTANCE) -> float:
    """The highest threshold that accepts at least ``acceptance`` of these (held-out,
    in-distribution) scores under the rule ``score >= threshold``."""
    s = np.sort(_scores(scores_in, "in-distribution scores"))
    if not 0 < acceptance <= 1:
        raise UsageError(f"acceptance must be in (0, 1], got {acceptance}")
    # Rounded first: (1 - 0.9) * 10 is 0.999…, which must count as 1 rejected image.
    rejected = math.floor(round((1 - acceptance) * len(s), 9))
    return float(s[rejected])


def auroc(scores_in: Any, scores_out: Any) -> float:
    """Area under the ROC curve, in-distribution as positives (0.5: no separation)."""
    s_in = _scores(scores_in, "in-distribution scores")
    s_out = _scores(scores_out, "out-of-distribution scores")
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        raise UsageError("AUROC needs scikit-learn: pip install scikit-learn") from None
    y = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
    return float(roc_auc_score(y, np.r_[s_in, s_out]))


def fpr_at_tpr(scores_in: Any, scores_out: Any, tpr: float = 0.95) -> float:
    """Share of out-of-distribution images accepted at the threshold that accepts ``tpr`` of
    the in-distribution ones (the first threshold reaching it, as in Hendrycks et al.'s code)."""
    t = threshold_for(scores_in, tpr)
    return float(np.mean(_scores(scores_out, "out-of-distribution scores") >= t))


@dataclass(frozen=True)
class OODReport:
    """How one score separates in-distribution test images from unknown ones."""

    n_in: int
    n_out: int
    auroc: float
    fpr_at_95_tpr: float
    threshold: float
    rejected_in: float  # share of in-distribution test images below the threshold
    rejected_out: float  # share of unknown images below it (the ones answered "unknown")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(scores_in: Any, scores_out: Any, threshold: float) -> OODReport:
    """AUROC, FPR at 95 % TPR and the share rejected on each side at ``threshold`` — set it
    with ``threshold_for`` on held-out in-distribution images, not on ``scores_in``."""
    s_in = _scores(scores_in, "in-distribution scores")
    s_out = _scores(scores_out, "out-of-distribution scores")
    return OODReport(
        n_in=len(s_in), n_out=len(s_out), auroc=auroc(s_in, s_out),
        fpr_at_95_tpr=fpr_at_tpr(s_in, s_out, 0.95), threshold=float(threshold),
        rejected_in=float(np.mean(s_in < threshold)),
        rejected_out=float(np.mean(s_out < threshold)),
    )
