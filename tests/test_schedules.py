"""Learning-rate schedules on short runs scale with the run; the shipped models' lengths are
unchanged (issue 22)."""

from __future__ import annotations

from dataclasses import replace

import keras
import numpy as np
import pytest

from cifarkit.train.fit import _schedule
from cifarkit.train.recipes import get_recipe


def _values(schedule, total: int) -> np.ndarray:
    if isinstance(schedule, float):
        return np.full(total + 1, schedule)
    return np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in range(total + 1)])


def _before(recipe, steps_per_epoch: int):
    """The schedule as it was built before the warm-up cap: the full warm-up, always."""
    return _schedule(replace(recipe, warmup_max_fraction=0.0), steps_per_epoch)


@pytest.mark.parametrize("recipe, epochs, train_images", [
    ("default", 40, 45_000),  # cnn-batchnorm's card: --recipe default --epochs 40
    ("default", 30, 45_000),  # the default recipe's own length
    ("fast", 15, 50_000),     # fastnet's card: --recipe fast --epochs 15
    ("fast", 10, 50_000),     # fastnet-s's card: --recipe fast
    ("fast-l", 15, 50_000),
])
def test_shipped_lengths_unchanged(recipe, epochs, train_images):
    rec = get_recipe(recipe, epochs=epochs)
    spe = int(np.ceil(train_images / rec.batch_size))
    total = epochs * spe
    assert rec.warmup(spe) == (int(round(rec.warmup_epochs * spe)), 1.0)
    picks = np.unique(np.linspace(0, total, 200).astype(int))
    now, before = _schedule(rec, spe), _before(rec, spe)
    got = np.array([float(keras.ops.convert_to_numpy(now(s))) for s in picks])
    want = np.array([float(keras.ops.convert_to_numpy(before(s))) for s in picks])
    np.testing.assert_array_equal(got, want)
    assert now.get_config() == before.get_config()


@pytest.mark.parametrize("recipe, epochs, train_images", [
    ("default", 1, 1_800), ("default", 3, 4_500), ("fast", 3, 5_000), ("fast", 1, 5_000),
])
def test_short_runs_peak_then_decay(recipe, epochs, train_images):
    rec = get_recipe(recipe, epochs=epochs)
    spe = int(np.ceil(train_images / rec.batch_size))
    total = epochs * spe
    lr = _values(_schedule(rec, spe), total)
    warm, reached = rec.warmup(spe)
    full = int(round(rec.warmup_epochs * spe))
    assert warm < full and warm <= round(rec.warmup_max_fraction * total)
    top = int(np.argmax(lr))
    assert top == warm  # the peak comes at the end of the (capped) warm-up ...
    assert lr[top] == pytest.approx(rec.lr * reached, rel=1e-5)
    assert np.all(np.diff(lr[:top + 1]) >= -1e-9) and np.all(np.diff(lr[top:]) <= 1e-9)
    # ... climbing at the full warm-up's slope, and the run then decays to its end value
    start = rec.lr_start_factor * rec.lr if rec.schedule == "triangle" else 0.0
    assert (lr[top] - start) / warm == pytest.approx((rec.lr - start) / full, rel=1e-4)
    end = rec.lr_end_factor * rec.lr if rec.schedule == "triangle" else 0.0
    assert lr[-1] == pytest.approx(end, abs=1e-6)
    # before the cap the warm-up took the whole run or most of it (a 1-epoch run never
    # reached its peak nor decayed); now it is at most the cap's share
    old = _values(_before(rec, spe), total)
    assert int(np.argmax(old)) >= min(full, total) - 1 > top
