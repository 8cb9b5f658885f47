"""cifarkit.data.corruptions: the 15 corruptions in four families, seeded determinism, each one
changing the images, damage growing with severity, and the two severity tables."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("imagecorruptions")

from cifarkit.data.corruptions import (  # noqa: E402
    CIFAR_10_C,
    CORRUPTIONS,
    FAMILIES,
    SEVERITIES,
    corrupt,
    family_of,
    preset_for,
)
from cifarkit.errors import UsageError  # noqa: E402


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Six photo-like 32×32 images: smooth colour gradients with edges and some texture (flat
    or pure-noise images would hide what blur or brightness do)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    out = []
    for _ in range(6):
        a, b, c = rng.uniform(0.1, 0.9, 3)
        base = np.stack([a * xx + (1 - a) * yy, b * yy, c * (1 - xx)], axis=-1)
        base[8:20, 10:24] = rng.uniform(0, 1, 3)  # an object with hard edges
        base += rng.normal(0, 0.03, base.shape)
        out.append(np.clip(base * 230 + 10, 0, 255))
    return np.array(out, dtype=np.uint8)


def mean_change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def test_fifteen_corruptions_in_four_families():
    assert set(FAMILIES) == {"noise", "blur", "weather", "digital"}
    assert len(CORRUPTIONS) == 15 == len(set(CORRUPTIONS)) == len(CIFAR_10_C)
    assert all(len(CIFAR_10_C[name]) == len(SEVERITIES) for name in CORRUPTIONS)
    assert family_of("motion_blur") == "blur" and family_of("jpeg_compression") == "digital"
    with pytest.raises(UsageError, match="gaussian_noise"):  # the message lists the names
        family_of("blurry")


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_same_seed_same_images_whatever_the_batch(images, name):
    first = corrupt(images, name, 3, seed=7)
    np.testing.assert_array_equal(corrupt(images, name, 3, seed=7), first)
    np.testing.assert_array_equal(corrupt(images[:2], name, 3, seed=7), first[:2])
    assert first.dtype == np.uint8 and first.shape == images.shape


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "glass_blur",
                                  "snow", "fog", "elastic_transform"])
def test_another_seed_gives_other_images(images, name):
    assert not np.array_equal(corrupt(images, name, 3, seed=1), corrupt(images, name, 3, seed=2))


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_changes_every_image(images, name):
    before = images.copy()
    out = corrupt(images, name, 1, seed=0)
    np.testing.assert_array_equal(images, before)  # the input is left alone
    per_image = np.abs(out.astype(np.float64) - images).mean(axis=(1, 2, 3))
    assert np.all(per_image > 0.2), per_image


@pytest.mark.parametrize("name", ["gaussian_noise", "impulse_noise", "defocus_blur",
                                  "zoom_blur", "fog", "brightness", "contrast", "pixelate"])
def test_higher_severity_changes_the_images_more(images, name):
    changes = [mean_change(corrupt(images, name, s, seed=0), images) for s in SEVERITIES]
    assert all(a < b for a, b in zip(changes, changes[1:], strict=False)), changes


def test_imagenet_c_is_the_library_unchanged_and_far_stronger_at_32_px(images):
    from imagecorruptions import corrupt as library_corrupt

    for name in ("gaussian_noise", "defocus_blur", "pixelate"):
        lib = corrupt(images, name, 1, seed=3, preset="imagenet-c")
        np.testing.assert_array_equal(corrupt(images, name, 1, seed=3, preset="imagenet-c"), lib)
        # The 224-px table at 32 px: far more damage than CIFAR-10-C's severity 1 (σ 0.08
        # against 0.04 for the noise; the blur and pixelation gaps are wider).
        assert mean_change(lib, images) > 1.5 * mean_change(corrupt(images, name, 1), images)
    # Deterministic corruptions agree with the library called directly.
    np.testing.assert_array_equal(
        corrupt(images[:1], "jpeg_compression", 2, preset="imagenet-c")[0],
        library_corrupt(images[0], severity=2, corruption_name="jpeg_compression"))


def test_the_preset_follows_the_image_size():
    assert preset_for(32) == "cifar-10-c" and preset_for(64) == "cifar-10-c"
    assert preset_for(96) == "imagenet-c" and preset_for(224) == "imagenet-c"


def test_numpy_global_generator_is_left_as_it_was(images):
    np.random.seed(5)
    expected = np.random.random()
    np.random.seed(5)
    corrupt(images, "fog", 2, seed=0)  # the library's fractal draws from the global generator
    corrupt(images[:1], "gaussian_noise", 2, seed=0, preset="imagenet-c")
    assert np.random.random() == expected


def test_bad_arguments_are_refused(images):
    with pytest.raises(UsageError, match="severity"):
        corrupt(images, "fog", 6)
    with pytest.raises(UsageError, match="uint8"):
        corrupt(images.astype(np.float32), "fog", 1)
    with pytest.raises(UsageError, match="uint8"):
        corrupt(images[0], "fog", 1)
    with pytest.raises(UsageError, match="seed"):
        corrupt(images, "fog", 1, seed=-1)
    with pytest.raises(UsageError, match="preset"):
        corrupt(images, "fog", 1, preset="cifar-100-c")
    with pytest.raises(UsageError, match="at least 32"):
        corrupt(images[:, :16, :16], "fog", 1, preset="imagenet-c")


def test_a_missing_library_says_what_to_install(images, monkeypatch):
    monkeypatch.setitem(sys.modules, "imagecorruptions", None)
    monkeypatch.setitem(sys.modules, "imagecorruptions.corruptions", None)
    with pytest.raises(UsageError, match=r"cifarkit\[corruptions\]"):
        corrupt(images, "fog", 1)
