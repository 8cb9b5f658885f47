"""The one function that turns any image file into an S×S RGB uint8 array (S = 32 unless the
model says otherwise: ``size``).

Used by the image-folder data source, ``cifarkit predict`` and ``cifarkit bench`` alike, so
a picture is seen the same way in training and in inference.

How an image becomes S×S×3 uint8 (the policy ``PREPROCESS``, recorded in every model):
1. Pillow opens it. Files over ``MAX_PIXELS`` are rejected from the header, before any
   pixel is decoded (decompression bombs).
2. The first frame is used (animated GIF/WebP, multi-page TIFF); EXIF orientation is applied.
3. Modes become RGB: palette and grey images are expanded; images with alpha (LA, PA, RGBA,
   P with transparency) are composited over a **white** background (``BACKGROUND``); CMYK and
   YCbCr are converted by Pillow; 16-bit integer images (I;16, I) are scaled from 0–65535 to
   0–255; float images (F) are taken as 0–1 when their maximum is ≤ 1, else as 0–255.
4. Non-square images are centre-cropped to a square (CIFAR-10 photos are square, and
   squashing changes object shapes), then resized to S×S with Pillow's antialiased
   Lanczos filter (``Image.Resampling.LANCZOS`` with ``reducing_gap=2``: a cheap box
   reduction first for large images, then Lanczos). Large JPEGs are decoded at a reduced
   scale by libjpeg (``Image.draft``), which is both faster and antialiased.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cifarkit.contract import DEFAULT_IMAGE_SIZE, DEFAULT_PREPROCESS
from cifarkit.errors import ImageError

SIZE = DEFAULT_IMAGE_SIZE
PREPROCESS = DEFAULT_PREPROCESS  # the name of steps 1–4, in model metadata and cards
BACKGROUND = (255, 255, 255)
# Pillow warns past MAX_IMAGE_PIXELS and raises past twice that; we raise past it.
MAX_PIXELS = 64 * 1024 * 1024

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True for file names with an image extension (case-insensitive)."""
    # os.path, not pathlib: called once per file when listing 60,000 images.
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0
        arr = np.nan_to_num(arr * scale, nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _center_square(img: Image.Image) -> Image.Image:
    w, h = img.size
    if w == h:
        return img
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side))


def load_image(path: str | os.PathLike[str], *, size: int = SIZE,
               require_32: bool = False) -> np.ndarray:
    """Decode ``path`` into a ``(size, size, 3)`` uint8 RGB array; raise ``ImageError`` if it
    can't.

    The error message names the file and the reason (empty, truncated, not an image,
    too many pixels, unreadable), so a batch job can report it and carry on.
    ``require_32`` refuses images that are not already 32×32 (CIFAR-10 data must not be
    resized).
    """
    path = Path(path)
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(f"{path}: is a directory, not an image")
        if not stat.S_ISREG(st.st_mode):
            # Opening a FIFO would block forever; devices can be endless.
            raise ImageError(f"{path}: not a regular file (a pipe, socket or device)")
        if st.st_size == 0:
            raise ImageError(f"{path}: empty file (0 bytes)")
    except ImageError:
        raise
    except OSError as exc:
        raise _os_error(path, exc) from None
    return _decode(path, path, size, require_32)


def load_image_bytes(
    data: bytes | bytearray | memoryview, name: str | os.PathLike[str] = "<bytes>", *,
    size: int = SIZE, require_32: bool = False,
) -> np.ndarray:
    """``load_image`` for a file's contents already in memory (read by Ray Data from S3, …).

    Same decoding, same array, same error messages; ``name`` (the file's path or URI) is what
    the messages name.
    """
    if len(data) == 0:
        raise ImageError(f"{name}: empty file (0 bytes)")
    return _decode(io.BytesIO(data), name, size, require_32)


def _os_error(name: str | os.PathLike[str], exc: OSError) -> ImageError:
    if isinstance(exc, FileNotFoundError):
        return ImageError(f"{name}: file not found (missing or vanished)")
    if isinstance(exc, IsADirectoryError):
        return ImageError(f"{name}: is a directory, not an image")
    if isinstance(exc, PermissionError):
        return ImageError(f"{name}: permission denied")
    # Pillow reports truncated/corrupt data as OSError ("image file is truncated", ...).
    return ImageError(f"{name}: corrupt or truncated image: {exc}")


def _decode(
    source: Path | io.BytesIO, name: str | os.PathLike[str], size: int, require_32: bool
) -> np.ndarray:
    """Steps 1–4 of the module docstring on an opened-by-Pillow source (a path or bytes)."""
    try:
        with warnings.catch_warnings():
            # Turn Pillow's bomb warning into an error: checked from the header, pre-decode.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            old_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            try:
                with Image.open(source) as img:
                    if require_32 and img.size != (SIZE, SIZE):
                        w, h = img.size
                        raise ImageError(f"{name}: image is {w}×{h}; CIFAR-10 images are 32×32")
                    if getattr(img, "n_frames", 1) > 1:
                        img.seek(0)
                    if img.format == "JPEG" and min(img.size) > 2 * size:
                        img.draft("RGB", (2 * size, 2 * size))
                    img.load()
                    img = ImageOps.exif_transpose(img)
                    arr = to_square(_to_rgb(img), size)
            finally:
                Image.MAX_IMAGE_PIXELS = old_limit
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{name}: image too large (decompression bomb guard): {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image Pillow can read") from None
    except OSError as exc:
        raise _os_error(name, exc) from None
    except (ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"{name}: cannot decode image: {exc}") from None
    if arr.shape != (size, size, 3):  # pragma: no cover - guarded by the steps above
        raise ImageError(f"{name}: decoded to shape {arr.shape}, expected {(size, size, 3)}")
    return arr


def to_square(img: Image.Image, size: int) -> np.ndarray:
    """Step 4: centre-crop to a square, antialiased resize to ``size``×``size``."""
    img = _center_square(img)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return np.asarray(img, dtype=np.uint8)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Already-decoded RGB images ``[N, h, w, 3]`` through step 4 (e.g. CIFAR-10's pickled
    32×32 arrays for a model of another size)."""
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i, im in enumerate(images):
        out[i] = to_square(Image.fromarray(im, "RGB"), size)
    return out
