"""Band-wise reduction and the real-range scaling of deep (16-bit, 32-bit, float) pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cifarkit.data import pixels
from cifarkit.data.pixels import Stats, composite, reduce_in_bands, reduce_samples, to_uint8


@pytest.fixture
def small_bands(monkeypatch):
    monkeypatch.setattr(pixels, "BAND_PIXELS", 500)  # many bands even on small images


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "CMYK", "P"])
def test_reduce_in_bands_is_crop_convert_reduce(small_bands, mode):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (203, 301, 4), np.uint8), "RGBA").convert(mode)
    box = (17, 3, 17 + 197, 3 + 197)
    for f in (1, 3, 7):
        convert = None if mode in ("RGB", "L") else (lambda band: band.convert("RGB"))
        want = img.crop(box)
        want = (convert(want) if convert else want)
        want = want.reduce(f) if f > 1 else want
        got = reduce_in_bands(img, box, f, convert)
        assert got.mode == want.mode and got.size == want.size
        assert np.array_equal(np.asarray(got), np.asarray(want)), (mode, f)


def test_reduce_samples_block_means_with_partial_blocks(small_bands):
    a = np.arange(23 * 29, dtype=np.uint16).reshape(23, 29) * 7
    means, stats = reduce_samples(Image.fromarray(a), (2, 1, 27, 23), 4)
    crop = a[1:23, 2:27].astype(np.float64)
    want = np.array([[crop[y : y + 4, x : x + 4].mean() for x in range(0, 25, 4)]
                     for y in range(0, 22, 4)])
    assert means.shape == want.shape == (6, 7)
    assert np.allclose(means, want)
    assert (stats.low, stats.high) == (crop.min(), crop.max())


def test_reduce_samples_places_nan_and_inf_at_the_ends(small_bands):
    a = np.linspace(-2, 2, 40 * 40, dtype=np.float32).reshape(40, 40)
    a[0, :] = np.nan
    a[1, :] = np.inf
    a[2, :] = -np.inf
    means, stats = reduce_samples(Image.fromarray(a), (0, 0, 40, 40), 1)
    assert stats.nonfinite == 120 and stats.low == pytest.approx(a[3:].min())
    assert np.all(means[0] == stats.low) and np.all(means[1] == stats.high)
    assert np.all(means[2] == stats.low) and np.isfinite(means).all()


@pytest.mark.parametrize(("kind", "low", "high", "declared", "value", "expected", "note"), [
    ("int", 0, 65535, None, 65535, 255, None),
    ("int", 0, 40000, None, 32896, 128, None),  # full 16-bit range: /257
    ("int", 0, 4000, None, 4000, 249, "12-bit data"),  # 12-bit in 16: not ~16
    ("int", 0, 1000, 12, 1000, 62, "declared by the file"),  # sBIT 12 beats inferred 10
    ("int", 0, 1000, None, 1000, 249, "10-bit data"),
    ("int", 0, 200, None, 200, 200, "8-bit data"),  # 8-bit values in a 16-bit file
    ("int", 0, 5000, 12, 5000, 78, "14-bit data"),  # declared depth the data overflows
    ("int", -100, 100, None, 100, 255, "stretched"),  # 32-bit signed
    ("int", -100, 100, None, -100, 0, "stretched"),
    ("float", 0.0, 1.0, None, 0.5, 128, None),
    ("float", 0.0, 200.0, None, 100.0, 100, None),
    ("float", -3.14, 3.14, None, 3.14, 255, "stretched"),
    ("float", -3.14, 3.14, None, -3.14, 0, "stretched"),
    ("float", 1e6, 1e6, None, 1e6, 128, "constant"),
])
def test_to_uint8_scales_by_the_real_range(kind, low, high, declared, value, expected, note):
    out, notes = to_uint8(np.array([[value]], float), Stats(low, high), kind, declared)
    assert out.dtype == np.uint8 and int(out[0, 0]) == expected
    assert (note is None and notes == []) or (note is not None and note in notes[0]), notes


def test_to_uint8_counts_non_finite_values():
    out, notes = to_uint8(np.zeros((2, 2)), Stats(0.0, 1.0, nonfinite=3), "float")
    assert notes == ["3 NaN or infinite values: NaN and −inf shown as the lowest value, +inf "
                     "as the highest"]


def test_composite_of_premultiplied_over_white():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 255, 0)  # transparent blue
    rgba[1, 0] = (0, 0, 0, 128)  # half-transparent black
    out = np.asarray(composite(Image.fromarray(rgba, "RGBA").convert("RGBa"), (255, 255, 255)))
    want = np.asarray(Image.alpha_composite(Image.new("RGBA", (2, 2), (255, 255, 255, 255)),
                                            Image.fromarray(rgba, "RGBA")).convert("RGB"))
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 1].tolist() == [255, 255, 255]
    assert np.abs(out.astype(int) - want).max() <= 1
