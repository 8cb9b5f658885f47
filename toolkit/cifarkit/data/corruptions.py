"""Common corruptions (Hendrycks & Dietterich 2019): the 15 of ImageNet-C and CIFAR-10-C —
noise, blur, weather, digital — at severities 1–5, seeded.

The library is ``imagecorruptions-imaug`` (``pip install "cifarkit[corruptions]"``), the kept
fork of bethgelab's ``imagecorruptions`` (the ImageNet-C code without ImageMagick, Apache-2.0).
Checked here with numpy 2.4, scikit-image 0.26, scipy 1.17, OpenCV 5.1 (2026):

- bethgelab ``imagecorruptions`` 1.1.2 (PyPI's last, 2020) fails with today's stack: fog
  (``np.float_``, gone in numpy 2), gaussian and glass blur (scikit-image's ``multichannel``
  argument, gone in 0.19). The fork fixes both and runs every corruption on 32×32 uint8.
- Its severities are ImageNet-C's, set for 224-px images. At 32 px they are far stronger than
  CIFAR-10-C's (defocus radius 3 px against 0.3, JPEG quality 25 against 80, an elastic warp
  sized for 250-px images): the shipped model fell to 17 % (chance is 10 %) on Gaussian noise
  and on elastic at severity 1. Such a table measures nothing.
- ``corrupt-tta`` and ``imgcorr`` carry the same ImageNet constants; ``albumentations`` has no
  severity scale; the AI Verify plug-ins pin numpy 1.26. None ships CIFAR-10-C's table.

So, the documented shim: preset ``"cifar-10-c"`` applies CIFAR-10-C's published severities
(Hendrycks' ``make_cifar_c.py``) through the library's own kernels (``disk``,
``plasma_fractal``, ``clipped_zoom``, its ImageMagick-free ``_motion_blur``, the frost
textures); the rest of each corruption is a few lines of numpy, scikit-image or Pillow below.
Preset ``"imagenet-c"`` is the library's ``corrupt`` unchanged. By default the preset whose
image size is nearer (in scale) is used: CIFAR-10-C up to 84 px (√(32·224) ≈ 84.7),
ImageNet-C above (its glass blur is compiled by numba on first use: about 15 s).
Known differences from the published CIFAR-10-C files: motion blur is the library's port of
ImageMagick's, and frost draws from all six textures (the original's ``randint(5)`` never
picked the sixth).

Determinism: image ``i`` is corrupted with a seed drawn from ``(seed, corruption, severity,
i)``, so a run gives the same images whatever the batch size. The library's kernels draw from
numpy's global legacy generator; it is seeded per image and restored afterwards (so this is not
safe to call from several threads at once).
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from cifarkit.errors import UsageError

FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
CORRUPTIONS: tuple[str, ...] = tuple(name for names in FAMILIES.values() for name in names)
SEVERITIES = (1, 2, 3, 4, 5)
PRESETS = ("cifar-10-c", "imagenet-c")
EXTRA = 'pip install "cifarkit[corruptions]"'
_SWITCH_PX = math.sqrt(32 * 224)  # images above this size get ImageNet-C's severities

# CIFAR-10-C's severities, one entry per severity 1..5 (Hendrycks & Dietterich's
# make_cifar_c.py). Sizes in pixels are for 32 px images; elastic's scale with the image.
CIFAR_10_C: dict[str, list[Any]] = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],  # σ of the added noise
    "shot_noise": [500, 250, 100, 75, 50],  # photons at full scale (Poisson)
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],  # share of salt-and-pepper pixels
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],  # radius, alias σ
    # blur σ, largest pixel step, passes
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],  # radius, σ
    "zoom_blur": [np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
                  np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01)],  # zoom factors averaged
    # flake mean, σ, zoom, cut-off, blur radius, blur σ, share of the image kept
    "snow": [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
             (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
             (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)],
    "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],  # image, frost weight
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],  # strength, fractal decay
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],  # added to HSV value
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],  # factor on the distance to the channel mean
    # displacement α, its smoothing σ, affine jitter: shares of the image size
    "elastic_transform": [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06),
                          (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],  # downscale factor (box filter both ways)
    "jpeg_compression": [80, 65, 58, 50, 40],  # quality
}


def _library() -> Any:
    try:
        import imagecorruptions.corruptions as lib
    except ImportError as exc:
        raise UsageError(
            f"image corruptions need imagecorruptions-imaug ({exc}): {EXTRA}") from None
    return lib


def family_of(name: str) -> str:
    """``noise``, ``blur``, ``weather`` or ``digital``."""
    for family, names in FAMILIES.items():
        if name in names:
            return family
    raise UsageError(f"unknown corruption {name!r}; choose one of: {', '.join(CORRUPTIONS)}")


@contextlib.contextmanager
def _global_rng_kept() -> Iterator[None]:
    """Leave numpy's global legacy generator as it was found."""
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


# --- CIFAR-10-C: the library's kernels with CIFAR-10-C's severities ----------------------------
# Each takes one uint8 HWC image, the severity's parameters and a seeded generator, and
# returns floats in 0..255 (the caller truncates to uint8, as the reference's np.uint8 does).


def _unit(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) / 255.0


def _centre_crop(a: np.ndarray, h: int, w: int) -> np.ndarray:
    top, left = (a.shape[0] - h) // 2, (a.shape[1] - w) // 2
    return a[top:top + h, left:left + w]


def _zoom(lib: Any, a: np.ndarray, factor: float) -> np.ndarray:
    """The library's clipped zoom, trimmed to the input's size about the centre."""
    return _centre_crop(lib.clipped_zoom(a, factor), a.shape[0], a.shape[1])


def _gaussian_noise(img: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    x = _unit(img)
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def _shot_noise(img: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    return np.clip(rng.poisson(_unit(img) * c) / c, 0, 1) * 255


def _impulse_noise(img: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    from skimage.util import random_noise

    seed = int(rng.randint(2**31))
    return np.clip(random_noise(_unit(img), mode="s&p", amount=c, rng=seed), 0, 1) * 255


def _defocus_blur(img: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    import cv2

    kernel = _library().disk(radius=c[0], alias_blur=c[1])
    return np.clip(cv2.filter2D(_unit(img), -1, kernel), 0, 1) * 255


def _glass_blur(img: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    from skimage.filters import gaussian

    sigma, step, passes = c
    x = np.uint8(gaussian(_unit(img), sigma=sigma, channel_axis=-1) * 255)
    h, w = x.shape[:2]
    # Pixels visited bottom-right to top-left, each replaced by a neighbour up to `step` away
    # (offsets in [-step, step), as randint draws them). The reference's "swap"
    # `x[a], x[b] = x[b], x[a]` of two numpy views copies x[b] into x[a] and leaves x[b] as it
    # was; CIFAR-10-C was made that way, so this copies too. Order matters (a pixel can be
    # copied on), so the loop stays sequential, over Python lists for speed.
    i, j = np.meshgrid(np.arange(h - step, step, -1), np.arange(w - step, step, -1),
                       indexing="ij")
    dst = (i * w + j).ravel()
    pixels = x.reshape(-1, 3).tolist()
    for _ in range(passes):
        dx, dy = rng.randint(-step, step, size=(2, dst.size))
        src = dst + dy * w + dx
        for a, b in zip(dst.tolist(), src.tolist(), strict=True):
            pixels[a] = pixels[b]
    x = np.array(pixels, dtype=np.uint8).reshape(h, w, 3)
    return np.clip(gaussian(x / 255.0, sigma=sigma, channel_axis=-1), 0, 1) * 255


def _motion_blur(img: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    angle = rng.uniform(-45, 45)
    out = _library()._motion_blur(img.astype(np.float32), radius=c[0], sigma=c[1], angle=angle)
    return np.clip(out, 0, 255)


def _zoom_blur(img: np.ndarray, c: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    lib = _library()
    x = _unit(img).astype(np.float32)
    out = x + sum(_zoom(lib, x, float(f)) for f in c)
    return np.clip(out / (len(c) + 1), 0, 1) * 255


def _gray(x: np.ndarray) -> np.ndarray:
    return x @ np.array([0.299, 0.587, 0.114], dtype=x.dtype)  # OpenCV's RGB2GRAY weights


def _snow(img: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    lib = _library()
    x = _unit(img).astype(np.float32)
    flakes = rng.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    flakes = _zoom(lib, flakes[..., None], c[2])[..., 0]
    flakes[flakes < c[3]] = 0
    # The reference blurs the flakes as an 8-bit image (ImageMagick) and reads them back.
    flakes = np.uint8(np.clip(flakes, 0, 1) * 255).astype(np.float32)
    flakes = lib._motion_blur(flakes, radius=c[4], sigma=c[5], angle=rng.uniform(-135, -45))
    flakes = (np.round(np.clip(flakes, 0, 255)) / 255.0)[..., None]
    x = c[6] * x + (1 - c[6]) * np.maximum(x, _gray(x)[..., None] * 1.5 + 0.5)
    return np.clip(x + flakes + np.rot90(flakes, k=2), 0, 1) * 255


@functools.lru_cache(maxsize=32)
def _frost_texture(index: int, scale: float) -> np.ndarray:
    import importlib.resources

    import cv2

    name = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg"]
    ref = importlib.resources.files("imagecorruptions") / "frost" / name[index]
    with importlib.resources.as_file(ref) as path:
        bgr = cv2.imread(str(path))
    if bgr is None:
        raise UsageError(f"cannot read the frost texture {ref}: reinstall with {EXTRA}")
    return cv2.resize(bgr, (0, 0), fx=scale, fy=scale)[..., ::-1]  # RGB


def _frost(img: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    h, w = img.shape[:2]
    # 0.2 at 32 px (the reference's); the texture keeps its size relative to larger images.
    frost = _frost_texture(int(rng.randint(6)), 0.2 * max(h, w) / 32)
    top, left = rng.randint(0, frost.shape[0] - h), rng.randint(0, frost.shape[1] - w)
    return np.clip(c[0] * img.astype(np.float64) + c[1] * frost[top:top + h, left:left + w],
                   0, 255)


def _fog(img: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    h, w = img.shape[:2]
    x = _unit(img)
    top = x.max()
    np.random.seed(rng.randint(2**31))  # plasma_fractal draws from the global generator
    size = 1 << (max(h, w) - 1).bit_length()  # the fractal's side is a power of two
    x = x + c[0] * _library().plasma_fractal(mapsize=size, wibbledecay=c[1])[:h, :w, None]
    return np.clip(x * top / (top + c[0]), 0, 1) * 255


def _hsv_shift(img: np.ndarray, channel: int, add: float) -> np.ndarray:
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(_unit(img))
    hsv[..., channel] = np.clip(hsv[..., channel] + add, 0, 1)
    return np.clip(hsv2rgb(hsv), 0, 1) * 255


def _brightness(img: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    return _hsv_shift(img, 2, c)


def _contrast(img: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    x = _unit(img)
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def _elastic(img: np.ndarray, c: tuple, rng: np.random.RandomState) -> np.ndarray:
    import cv2
    from scipy.ndimage import map_coordinates
    from skimage.filters import gaussian

    h, w = img.shape[:2]
    alpha, sigma, jitter = (v * min(h, w) for v in c)
    x = img.astype(np.float32) / 255.0
    # A random affine warp of three points around the centre, then a smooth random field.
    centre, side = np.float32([h, w]) // 2, min(h, w) // 3
    src = np.float32([centre + side, [centre[0] + side, centre[1] - side], centre - side])
    dst = src + rng.uniform(-jitter, jitter, size=src.shape).astype(np.float32)
    x = cv2.warpAffine(x, cv2.getAffineTransform(src, dst), (w, h),
                       borderMode=cv2.BORDER_REFLECT_101)
    fields = [rng.uniform(-1, 1, size=(h, w)) for _ in range(2)]
    dx, dy = (gaussian(f, sigma, mode="reflect", truncate=3) * alpha if sigma else 0 * f
              for f in fields)
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = [rows + dy, cols + dx]
    out = np.stack([map_coordinates(x[..., k], coords, order=1, mode="reflect")
                    for k in range(x.shape[2])], axis=-1)
    return np.clip(out, 0, 1) * 255


def _pil(img: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(img)


def _pixelate(img: np.ndarray, c: float, rng: np.random.RandomState) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    small = _pil(img).resize((int(w * c), int(h * c)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX), dtype=np.float64)


def _jpeg(img: np.ndarray, c: int, rng: np.random.RandomState) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    _pil(img).save(buf, format="JPEG", quality=c)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64)


_CIFAR_FUNCTIONS: dict[str, Callable[[np.ndarray, Any, np.random.RandomState], np.ndarray]] = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise, "defocus_blur": _defocus_blur, "glass_blur": _glass_blur,
    "motion_blur": _motion_blur, "zoom_blur": _zoom_blur, "snow": _snow, "frost": _frost,
    "fog": _fog, "brightness": _brightness, "contrast": _contrast,
    "elastic_transform": _elastic, "pixelate": _pixelate, "jpeg_compression": _jpeg,
}


# --- the one entry point ----------------------------------------------------------------------


def _image_seeds(seed: int, name: str, severity: int, n: int) -> np.ndarray:
    entropy = [int(seed), CORRUPTIONS.index(name), int(severity)]
    return np.random.SeedSequence(entropy).generate_state(n, dtype=np.uint32)


def _imagenet_c(img: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    from imagecorruptions import corrupt as library_corrupt

    np.random.seed(seed)
    # Two corruptions take their own seed (the rest use the global generator seeded above).
    kwargs = {"seed": seed} if name in ("impulse_noise", "glass_blur") else {}
    return library_corrupt(img, severity=severity, corruption_name=name, **kwargs)


def preset_for(image_size: int) -> str:
    """The severity table for images of this size: ``cifar-10-c`` up to 84 px, else
    ``imagenet-c`` (the nearer of 32 and 224 px on a log scale)."""
    return "cifar-10-c" if image_size <= _SWITCH_PX else "imagenet-c"


def corrupt(
    images: np.ndarray, name: str, severity: int, seed: int = 0, *, preset: str | None = None,
) -> np.ndarray:
    """``images`` (uint8 ``[N, H, W, 3]``) with corruption ``name`` at ``severity`` 1–5; the
    same ``seed`` gives the same images. ``preset``: ``"cifar-10-c"``, ``"imagenet-c"`` or
    None (by image size, ``preset_for``). The input is never modified."""
    family_of(name)
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise UsageError(f"images must be uint8 [N, H, W, 3], got {x.dtype} {list(x.shape)}")
    if severity not in SEVERITIES:
        raise UsageError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
    preset = preset or preset_for(max(x.shape[1:3]))
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    if preset == "imagenet-c" and min(x.shape[1:3]) < 32:
        raise UsageError("the imagenet-c preset needs images of at least 32×32 pixels")
    _library()  # fail before the loop if the package is missing
    out = np.empty_like(x)
    params = CIFAR_10_C[name][severity - 1]
    fn = _CIFAR_FUNCTIONS[name]
    with _global_rng_kept():
        for i, s in enumerate(_image_seeds(seed, name, severity, len(x))):
            if preset == "imagenet-c":
                out[i] = _imagenet_c(x[i], name, severity, int(s))
            else:
                out[i] = np.uint8(fn(x[i], params, np.random.RandomState(int(s))))
    return out
