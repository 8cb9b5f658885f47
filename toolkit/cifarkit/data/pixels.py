"""Reducing a decoded image in bands, and scaling deep pixel values to 0–255 by their real
range (the decoder's steps 3–4 for large and non-8-bit images; see ``images``).

Memory: a decoded W×H image is reduced ``f``×``f`` (box averages, exactly
``Image.reduce``) one band of rows at a time — each band cropped, converted and reduced, then
dropped — so no second full-size copy is ever made: not a converted one (RGBA, premultiplied
alpha, 16-bit as float), not a transposed one.

Range (issue 26, item 8): 16-bit integer samples are divided by ``2**bits - 1`` where
``bits`` is the data's real depth: the depth the file declares (PNG ``sBIT``, TIFF
``MaxSampleValue``/``BitsPerSample``) when the values fit it, else the smallest of 8, 10,
12, 14 and 16 bits that holds the largest value — 12-bit camera or scanner data stored in
16 bits comes out bright, not all but black. 32-bit integers outside 0–65535 and floats
outside 0–1 and 0–255 are stretched by their own minimum and maximum; NaN and −inf become
the low end, +inf the high end. Every such choice is said in a warning on the image's row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]
BAND_PIXELS = 1 << 20  # pixels per band: a few MiB whatever the image's size
DEPTHS = (8, 10, 12, 14, 16)  # bit depths data is inferred to have (sensors, containers)


def _bands(box: Box, f: int) -> list[Box]:
    """Rows of ``box`` in bands of a multiple of ``f`` rows, about ``BAND_PIXELS`` each."""
    left, top, right, bottom = box
    step = f * max(1, BAND_PIXELS // (f * max(1, right - left)))
    return [(left, y, right, min(y + step, bottom)) for y in range(top, bottom, step)]


def reduce_in_bands(img: Image.Image, box: Box, f: int,
                    convert: Callable[[Image.Image], Image.Image] | None = None) -> Image.Image:
    """``convert(img.crop(box)).reduce(f)`` without a full-size crop or converted copy."""
    if f == 1 and box == (0, 0, *img.size):  # small and square: nothing to crop or reduce
        return convert(img) if convert is not None else img
    left, top, right, bottom = box
    out: Image.Image | None = None
    for crop in _bands(box, f):
        band = img.crop(crop)
        if convert is not None:
            band = convert(band)
        small = band.reduce(f) if f > 1 else band
        if out is None:
            out = Image.new(small.mode, (math.ceil((right - left) / f),
                                         math.ceil((bottom - top) / f)))
        out.paste(small, (0, (crop[1] - top) // f))
    assert out is not None
    return out


@dataclass
class Stats:
    """Range of the raw samples used (finite ones), and how many were not finite."""

    low: float = math.inf
    high: float = -math.inf
    nonfinite: int = 0

    def update(self, a: np.ndarray) -> None:
        if a.dtype.kind == "f":
            finite = np.isfinite(a)
            self.nonfinite += int(a.size - np.count_nonzero(finite))
            a = a[finite]
        if a.size:
            self.low, self.high = min(self.low, float(a.min())), max(self.high, float(a.max()))


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Means of f×f blocks (the last row/column of blocks may be partial, as in Pillow)."""
    if f == 1:
        return a.astype(np.float64)
    ys, xs = np.arange(0, a.shape[0], f), np.arange(0, a.shape[1], f)
    sums = np.add.reduceat(np.add.reduceat(a, ys, axis=0, dtype=np.float64), xs, axis=1)
    counts = np.outer(np.minimum(f, a.shape[0] - ys), np.minimum(f, a.shape[1] - xs))
    return sums / (counts if sums.ndim == 2 else counts[..., None])


def reduce_samples(img: Image.Image, box: Box, f: int) -> tuple[np.ndarray, Stats]:
    """Block means (float64, ``[h, w]`` or ``[h, w, c]``) of the raw samples of ``box``, and
    their range, band by band (an I;16, I or F image, or the bytes of an RGB one)."""
    bands, stats = _bands(box, f), Stats()
    floats = img.mode == "F"
    if floats:  # NaN and ±inf go to the ends of the finite range: find it first
        for crop in bands:
            stats.update(np.asarray(img.crop(crop)))
        lo, hi = (stats.low, stats.high) if stats.low <= stats.high else (0.0, 0.0)
    parts = []
    for crop in bands:
        a = np.asarray(img.crop(crop))
        if not floats:
            stats.update(a)
        elif stats.nonfinite:
            a = np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo)
        parts.append(_block_mean(a, f))
    return np.concatenate(parts), stats


def sample_depth(stats: Stats, declared: int | None) -> tuple[int, str]:
    """The bit depth to scale 0…65535 integer samples by, and where it came from."""
    if declared and 8 <= declared < 16 and stats.high < 2**declared:
        return declared, "declared by the file"
    bits = next(b for b in DEPTHS if stats.high < 2**b or b == 16)
    return bits, "inferred from the values"


def to_uint8(means: np.ndarray, stats: Stats, kind: str, declared: int | None = None
             ) -> tuple[np.ndarray, list[str]]:
    """Scale block means of raw samples to uint8 by the rules of the module docstring.
    ``kind``: ``"int"`` (16-bit or 32-bit integer samples) or ``"float"``."""
    notes: list[str] = []
    lo, hi = stats.low, stats.high
    if kind == "int" and lo >= 0 and hi <= 65535:
        bits, source = sample_depth(stats, declared)
        offset, scale = 0.0, 255.0 / (2**bits - 1)
        if bits < 16:
            notes.append(f"16-bit image holding {bits}-bit data (all values below {2**bits}, "
                         f"depth {source}): scaled by {2**bits - 1}, not 65535")
    elif kind == "float" and lo >= 0 and hi <= 1:
        offset, scale = 0.0, 255.0
    elif kind == "float" and lo >= 0 and hi <= 255:
        offset, scale = 0.0, 1.0
    elif hi > lo:
        offset, scale = lo, 255.0 / (hi - lo)
        what = "float" if kind == "float" else "32-bit integer"
        notes.append(f"{what} data in [{lo:.6g}, {hi:.6g}] stretched to 0–255 by its own "
                     "minimum and maximum")
    else:  # one value (or none finite): no range to stretch, show it as mid-grey
        offset, scale = (lo - 128.0 if math.isfinite(lo) else 0.0), 1.0
        notes.append(f"constant image (every value {lo:.6g}): shown as mid-grey")
    if stats.nonfinite:
        notes.append(f"{stats.nonfinite} NaN or infinite values: NaN and −inf shown as the "
                     "lowest value, +inf as the highest")
    out = np.clip((means - offset) * scale + 0.5, 0, 255).astype(np.uint8)
    return out, notes


def composite(premultiplied: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """An ``RGBa`` (premultiplied) image over an opaque background colour, as RGB.

    Averaging premultiplied pixels and compositing after is the same as compositing first
    (both are linear), but needs no full-size composited copy, and keeps the colour of
    transparent pixels (often black) out of the edges of opaque ones."""
    a = np.asarray(premultiplied, dtype=np.float32)
    alpha = a[..., 3:4] / 255.0
    rgb = a[..., :3] + (1.0 - alpha) * np.asarray(background, np.float32)
    return Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), "RGB")
