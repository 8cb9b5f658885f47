"""cifarkit.measure.ood: scores, the held-out threshold's acceptance, AUROC and FPR at 95 % TPR
on synthetic populations whose separation is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cifarkit.errors import ModelError, UsageError
from cifarkit.measure.calibration import log_probs, softmax
from cifarkit.measure.ood import (
    Mahalanobis,
    auroc,
    energy_score,
    evaluate,
    fpr_at_tpr,
    msp_score,
    threshold_for,
    unknown_scores,
)


def phi(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


# --- threshold --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [10, 20, 100, 1001, 5000])
@pytest.mark.parametrize("acceptance", [0.9, 0.95, 0.99])
def test_threshold_accepts_the_stated_share_of_held_out_scores(n, acceptance):
    held_out = np.random.default_rng(n).normal(size=n)
    t = threshold_for(held_out, acceptance)
    accepted = np.mean(held_out >= t)
    assert accepted >= acceptance - 1e-12
    # ... and no more than one image above it: it is the highest such threshold.
    assert accepted - 1 / n < acceptance - 1e-12 or accepted == 1.0


def test_threshold_generalises_to_fresh_in_distribution_images():
    rng = np.random.default_rng(0)
    t = threshold_for(rng.normal(size=20000), 0.95)
    assert t == pytest.approx(-1.645, abs=0.03)  # the normal's 5 % quantile
    assert np.mean(rng.normal(size=20000) >= t) == pytest.approx(0.95, abs=0.006)


def test_threshold_with_ties_still_accepts_at_least_the_share():
    scores = np.array([0.0] * 50 + [1.0] * 50)
    assert threshold_for(scores, 0.6) == 0.0  # 1.0 would accept only half
    assert threshold_for(scores, 0.5) == 1.0


def test_bad_threshold_arguments():
    with pytest.raises(UsageError, match="acceptance"):
        threshold_for([0.1, 0.2], 0.0)
    with pytest.raises(UsageError, match="non-empty"):
        threshold_for([], 0.95)
    with pytest.raises(UsageError, match="NaN"):
        threshold_for([0.1, np.nan], 0.95)


# --- AUROC and FPR at 95 % TPR ----------------------------------------------------------------


def test_auroc_and_fpr_match_their_closed_forms():
    # Known N(2, 1) against unknown N(0, 1): AUROC = Φ(2 / √2); at 95 % TPR the threshold is
    # 2 - 1.645, and the unknown images above it are 1 - Φ(0.355).
    rng = np.random.default_rng(1)
    s_in, s_out = rng.normal(2.0, 1.0, 40000), rng.normal(0.0, 1.0, 40000)
    assert auroc(s_in, s_out) == pytest.approx(phi(2 / math.sqrt(2)), abs=0.005)
    assert fpr_at_tpr(s_in, s_out) == pytest.approx(1 - phi(2 - 1.6449), abs=0.01)
    assert auroc(s_out, s_out[::-1]) == pytest.approx(0.5)  # identical populations
    assert auroc([1.0, 2.0], [0.0, 0.5]) == 1.0 and fpr_at_tpr([1.0, 2.0], [0.0, 0.5]) == 0.0


def test_auroc_is_the_share_of_correctly_ordered_pairs():
    # The Mann-Whitney reading of AUROC, pair by pair (ties count half), as a reference.
    rng = np.random.default_rng(2)
    s_in = rng.integers(0, 6, 60).astype(float)
    s_out = rng.integers(0, 4, 50).astype(float)
    pairs = [(a > b) + 0.5 * (a == b) for a in s_in for b in s_out]
    assert auroc(s_in, s_out) == pytest.approx(np.mean(pairs))


def test_evaluate_reports_the_share_rejected_on_each_side():
    rng = np.random.default_rng(3)
    held_out, s_in, s_out = rng.normal(2, 1, 5000), rng.normal(2, 1, 5000), rng.normal(0, 1, 5000)
    t = threshold_for(held_out)
    report = evaluate(s_in, s_out, t)
    assert report.threshold == t and report.n_in == 5000 and report.n_out == 5000
    assert report.rejected_in == pytest.approx(0.05, abs=0.01)
    assert report.rejected_out == pytest.approx(phi(2 - 1.6449), abs=0.02)
    assert report.rejected_out == pytest.approx(1 - report.fpr_at_95_tpr, abs=0.02)
    assert set(report.to_dict()) >= {"auroc", "fpr_at_95_tpr", "rejected_in", "rejected_out"}


# --- scores -----------------------------------------------------------------------------------


def test_msp_and_energy():
    z = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(msp_score(softmax(z)), [np.e**2 / (np.e**2 + 2), 1 / 3])
    np.testing.assert_allclose(energy_score(z), [np.log(np.e**2 + 2), np.log(3)])
    # T → 0 tends to the top logit; large logits do not overflow.
    np.testing.assert_allclose(energy_score(z, 0.01), [2.0, 0.0], atol=0.02)
    assert np.isfinite(energy_score(np.array([[1000.0, 999.0]]))).all()
    # Why energy needs real logits: from probabilities it is 0 for every image.
    np.testing.assert_allclose(energy_score(log_probs(softmax(z * 5))), 0.0, atol=1e-9)
    with pytest.raises(UsageError, match="temperature"):
        energy_score(z, -1.0)


def test_unknown_scores_picks_the_rules_score():
    probs = np.array([[0.7, 0.3], [0.4, 0.6]], np.float32)
    output = np.array([-250.5, 3.25], np.float32)  # a model's score output: any real number
    np.testing.assert_allclose(unknown_scores(probs), [0.7, 0.6], rtol=1e-6)
    got = unknown_scores(probs, "score", score_output=output)
    assert got.dtype == np.float64 and got.tolist() == [-250.5, 3.25]
    with pytest.raises(ModelError, match=r"^m\.onnx on tract: its unknown rule scores with the "
                                         r"model's 'score' output, which the runtime did not "
                                         r"return"):
        unknown_scores(probs, "score", "m.onnx on tract")
    with pytest.raises(UsageError, match="NaN or infinity"):
        unknown_scores(probs, "score", score_output=np.array([1.0, np.nan]))
    with pytest.raises(UsageError, match="unknown score 'energy'"):
        unknown_scores(probs, "energy")


def clusters(rng, n, means, scale):
    y = rng.integers(0, len(means), n)
    return means[y] + rng.normal(size=(n, means.shape[1])) * scale, y


def test_mahalanobis_uses_the_shared_covariance():
    # Features spread widely along some directions and tightly along others. Unknown images lie
    # a small step off a class along a tight direction: far in Mahalanobis terms, near in
    # Euclidean ones, so only the covariance tells them apart.
    rng = np.random.default_rng(4)
    d, k = 16, 4
    scale = np.where(np.arange(d) < 8, 5.0, 0.1)
    means = rng.normal(0, 20, (k, d))
    f_fit, y_fit = clusters(rng, 8000, means, scale)
    f_in, _ = clusters(rng, 2000, means, scale)
    f_out, _ = clusters(rng, 2000, means, scale)
    f_out[:, 8:] += 1.0  # 10 standard deviations along each tight direction
    m = Mahalanobis.fit(f_fit, y_fit, n_classes=k)
    np.testing.assert_allclose(m.means, means, atol=0.5)
    assert auroc(m.score(f_in), m.score(f_out)) > 0.999
    euclid = Mahalanobis(means=m.means, precision=np.eye(d))
    assert auroc(euclid.score(f_in), euclid.score(f_out)) < 0.8
    # In-distribution squared distances follow χ²(d): mean about d.
    assert np.mean(m.distances(f_in).min(axis=1)) == pytest.approx(d, rel=0.1)


def test_mahalanobis_distance_by_hand_and_normalisation():
    means = np.array([[0.0, 0.0], [10.0, 0.0]])
    m = Mahalanobis(means=means, precision=np.diag([1.0, 4.0]))  # σ = 1 and 0.5
    np.testing.assert_allclose(m.distances([[1.0, 1.0]]), [[1 + 4, 81 + 4]])
    np.testing.assert_allclose(m.score([[1.0, 1.0], [10.0, 0.5]]), [-5.0, -1.0])
    rng = np.random.default_rng(5)
    f, y = clusters(rng, 3000, rng.normal(0, 5, (3, 6)), 1.0)
    mn = Mahalanobis.fit(f, y, normalize=True)
    # Normalised: a feature and any positive multiple of it score the same.
    np.testing.assert_allclose(mn.score(f[:5]), mn.score(3.0 * f[:5]))


def test_mahalanobis_survives_fewer_images_than_features():
    rng = np.random.default_rng(6)
    f, y = clusters(rng, 20, rng.normal(0, 5, (2, 64)), 1.0)  # a singular covariance
    m = Mahalanobis.fit(f, y)
    assert np.all(np.isfinite(m.score(rng.normal(size=(5, 64)))))


def test_mahalanobis_refuses_bad_fits():
    f = np.zeros((4, 3))
    with pytest.raises(UsageError, match="none for classes \\[1\\]"):
        Mahalanobis.fit(f, np.array([0, 0, 2, 2]))
    with pytest.raises(UsageError, match="below n_classes"):
        Mahalanobis.fit(f, np.array([0, 1, 2, 3]), n_classes=2)
    m = Mahalanobis.fit(np.random.default_rng(0).normal(size=(10, 3)), np.arange(10) % 2)
    with pytest.raises(UsageError, match="dimensions"):
        m.score(np.zeros((1, 4)))
