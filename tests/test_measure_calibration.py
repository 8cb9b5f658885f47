"""cifarkit.measure.calibration: ECE against an independent reference, NLL, Brier, reliability
bins, and temperature fitting on synthetic logits whose true temperature is known.

The ECE reference is a plain loop over bins in the form of Guo et al.'s own code (boolean masks
``lo < conf <= hi``), not netcal or torchmetrics: both require PyTorch (netcal also gpytorch,
pyro-ppl and tensorboard), gigabytes of wheels for one reference number, and torchmetrics'
``[lo, hi)`` bins differ from the paper's at exact edges anyway.
"""

from __future__ import annotations

import numpy as np
import pytest

from cifarkit.errors import UsageError
from cifarkit.measure.calibration import (
    N_BINS,
    apply_temperature,
    brier,
    classwise_ece,
    ece,
    evaluate,
    fit_temperature,
    log_probs,
    nll,
    reliability,
    softmax,
)


def reference_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Guo et al. (2017)'s definition written as the obvious loop."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return total


def sampled(n: int, k: int, t0: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits with class structure, and labels drawn from ``softmax(z / t0)``: the model is
    perfectly calibrated at temperature ``t0`` by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, (n, k)) + 4.0 * np.eye(k)[rng.integers(0, k, n)]
    p = softmax(z, t0)
    u = rng.random(n)[:, None]
    y = (u > np.cumsum(p, axis=1)).sum(axis=1)
    return z, np.minimum(y, k - 1)


# --- ECE, NLL, Brier --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_matches_the_reference_loop(seed):
    z, y = sampled(5000, 10, 1.7, seed)
    probs = softmax(z)  # mis-calibrated: the labels follow T = 1.7
    got = ece(probs, y)
    assert got == pytest.approx(reference_ece(probs, y), abs=1e-12)
    assert got > 0.05  # a real miscalibration, so the comparison is not 0 == 0
    assert ece(probs, y, n_bins=10) == pytest.approx(reference_ece(probs, y, 10), abs=1e-12)


def test_ece_by_hand():
    # Confidences 0.95 (right), 0.95 (wrong), 0.55 (right): bins (14/15, 1] and (8/15, 9/15].
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.45, 0.55]])
    labels = np.array([0, 1, 1])
    # bin 15: 2 images, acc 0.5, conf 0.95 → |0.45|·2/3 ; bin 9: acc 1, conf 0.55 → 0.45·1/3
    assert ece(probs, labels) == pytest.approx(0.45 * 2 / 3 + 0.45 / 3)
    rel = reliability(probs, labels)
    assert rel.count.sum() == 3 and rel.count[14] == 2 and rel.count[8] == 1
    assert rel.accuracy[14] == pytest.approx(0.5) and rel.confidence[8] == pytest.approx(0.55)
    assert np.isnan(rel.accuracy[0])  # empty bins say so
    assert rel.to_dict()["accuracy"][0] is None
    assert len(rel.edges) == N_BINS + 1


def test_perfect_one_hot_predictions_are_perfectly_calibrated():
    y = np.arange(20) % 4
    probs = np.eye(4)[y]
    report = evaluate(probs, y)
    assert report.ece == 0.0 and report.classwise_ece == 0.0 and report.brier == 0.0
    assert report.nll == pytest.approx(0.0, abs=1e-9) and report.accuracy == 1.0


def test_nll_and_brier_by_hand():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    labels = np.array([0, 1])
    assert nll(probs, labels) == pytest.approx(-(np.log(0.7) + np.log(0.3)) / 2)
    b0 = 0.3**2 + 0.2**2 + 0.1**2
    b1 = 0.1**2 + 0.7**2 + 0.6**2
    assert brier(probs, labels) == pytest.approx((b0 + b1) / 2)
    # A true class at probability 0 (an int8 underflow) gives a large but finite NLL.
    assert np.isfinite(nll(np.array([[1.0, 0.0]]), np.array([1])))


def test_classwise_ece_by_hand():
    # Class 0's probabilities 0.8, 0.8 with one hit → gap 0.3; class 1: 0.2, 0.2, one hit → 0.3.
    probs = np.array([[0.8, 0.2], [0.8, 0.2]])
    labels = np.array([0, 1])
    assert classwise_ece(probs, labels) == pytest.approx(0.3)


def test_bad_inputs_are_refused():
    with pytest.raises(UsageError, match="labels must be integers"):
        ece(np.full((2, 3), 1 / 3), np.array([0, 3]))
    with pytest.raises(UsageError, match="one entry per row"):
        nll(np.full((2, 3), 1 / 3), np.array([0]))
    with pytest.raises(UsageError, match="no rows"):
        brier(np.zeros((0, 3)), np.zeros(0, np.int64))
    with pytest.raises(UsageError, match="NaN"):
        ece(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(UsageError, match="temperature must be > 0"):
        softmax(np.zeros((1, 2)), 0.0)


# --- temperature ------------------------------------------------------------------------------


@pytest.mark.parametrize("t0", [0.5, 1.0, 2.5])
def test_fit_recovers_the_true_temperature(t0):
    z, y = sampled(20000, 10, t0, seed=int(t0 * 10))
    fit = fit_temperature(z, y)
    assert fit.temperature == pytest.approx(t0, rel=0.03)
    assert not fit.at_bound and fit.n_images == 20000
    assert fit.nll_after <= fit.nll_before + 1e-12
    # The NLL really is lowest there: 10 % either side is worse.
    for t in (fit.temperature * 0.9, fit.temperature * 1.1):
        assert fit_temperature(z, y, bounds=(t, t * 1.0001)).nll_after > fit.nll_after


def test_log_probabilities_give_the_same_temperature_as_logits():
    z, y = sampled(5000, 10, 1.8, seed=3)
    from_logits = fit_temperature(z, y).temperature
    from_probs = fit_temperature(log_probs(softmax(z)), y).temperature
    assert from_probs == pytest.approx(from_logits, rel=1e-4)


def test_temperature_scaling_fixes_an_under_confident_model():
    # Labels follow T = 0.5 but the "model" reports softmax(z): far too unsure (like label
    # smoothing); scaling must cut ECE several-fold and leave every prediction as it was.
    z, y = sampled(20000, 10, 0.5, seed=4)
    raw = softmax(z)
    fit = fit_temperature(log_probs(raw[:10000]), y[:10000])  # fit on one half
    cal = apply_temperature(raw[10000:], fit.temperature)  # judge on the other
    before, after = evaluate(raw[10000:], y[10000:]), evaluate(cal, y[10000:])
    assert fit.temperature == pytest.approx(0.5, rel=0.08)
    assert before.ece > 0.1 and after.ece < before.ece / 4
    assert after.nll < before.nll and after.brier < before.brier
    np.testing.assert_array_equal(cal.argmax(axis=1), raw[10000:].argmax(axis=1))
    assert after.accuracy == before.accuracy
    np.testing.assert_allclose(apply_temperature(raw, 1.0), raw, atol=1e-12)


def test_an_all_correct_set_reports_the_bound():
    z = np.array([[5.0, 0.0], [0.0, 5.0]] * 10)
    y = np.array([0, 1] * 10)
    fit = fit_temperature(z, y, bounds=(0.1, 10.0))
    assert fit.at_bound and fit.temperature == pytest.approx(0.1, rel=1e-3)
    with pytest.raises(UsageError, match="bounds"):
        fit_temperature(z, y, bounds=(2.0, 1.0))


def test_accuracy_reports_carry_the_calibration_figures():
    from cifarkit.measure import calibration, metrics

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(400, 4)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 4, 400)
    report = metrics.evaluate(probs, labels, ("a", "b", "c", "d"))
    assert report.ece == pytest.approx(calibration.ece(probs, labels))
    assert report.summary()["nll"] == pytest.approx(calibration.nll(probs, labels))
    assert 0 < report.brier < 2
