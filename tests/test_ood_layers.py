from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import benchmark_module


@pytest.fixture(scope="module")
def ol():
    # ood_layers imports its siblings by name, as when it runs as a script from benchmarks/.
    for _ in benchmark_module("ood_scores"):
        for _ in benchmark_module("ood_sets"):
            yield from benchmark_module("ood_layers")


def test_layer_features_are_channel_means_and_gram_row_sums(ol):
    a = np.random.default_rng(0).normal(size=(3, 4, 5, 6)).astype(np.float32)
    f = ol.layer_features(a)
    assert f.shape == (3, 1 + len(ol.ORDERS), 4)
    np.testing.assert_allclose(f[:, 0], a.mean(axis=(2, 3)), rtol=1e-5)
    flat = a.reshape(3, 4, -1).astype(np.float64)
    for j, p in enumerate(ol.ORDERS, start=1):
        g = np.einsum("nch,ndh->ncd", flat ** p, flat ** p).sum(axis=2)  # Σ_j (F^p F^pᵀ)_ij
        np.testing.assert_allclose(f[:, j], np.sign(g) * np.abs(g) ** (1 / p), rtol=1e-4)


def test_gram_score_is_zero_inside_the_fit_range_and_grows_outside(ol):
    fit = np.random.default_rng(1).uniform(1, 2, size=(20, 6, 3)).astype(np.float32)
    pred_fit = np.repeat([0, 1], 10)
    inside, outside = fit[[0, 10]], fit[:2] * 3
    s = ol.gram_score(fit, pred_fit, {"held": np.r_[outside, outside], "test": inside},
                      {"held": np.zeros(4, int), "test": pred_fit[[0, 10]]}, 2)
    np.testing.assert_array_equal(s["test"], 0)
    np.testing.assert_allclose(s["held"].mean(), 1)  # each layer divided by its held mean


def test_z_sum_standardises_each_part_on_held(ol):
    rng = np.random.default_rng(2)
    parts = [{k: rng.normal(m, sd, 50) for k in ol.SETS} for m, sd in ((5, 2), (-1, 10))]
    z = ol._zsum(parts)
    assert abs(z["held"].mean()) < 1e-9
    expect = sum((p["test"] - p["held"].mean()) / p["held"].std() for p in parts)
    np.testing.assert_allclose(z["test"], expect)


def test_unknown_groups_split_the_398_images_into_their_subsets(ol):
    names = ["lfw_subset[0]", "lfw_subset[99]", "lfw_subset[100]", "moon", "moon[crop 3]"]
    assert ol.unknown_groups(names) == ["faces", "faces", "non-faces", "photos+crops",
                                        "photos+crops"]
