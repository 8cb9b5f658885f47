"""The one decoder: any image file becomes an S×S RGB uint8 array (S = 32 unless the model
says otherwise: ``size``), with the warnings its file caused.

Used by the image-folder data source, ``cifarkit predict`` and ``cifarkit bench`` alike, so a
picture is seen the same way in training and in inference. ``decode`` returns ``Decoded``
(the array and the file's warnings); ``load_image`` / ``load_image_bytes`` the array alone.

How an image becomes S×S×3 uint8 (the policy ``PREPROCESS``, recorded in every model):
1. Pillow opens it. Files over ``MAX_PIXELS`` are rejected from the header, before any
   pixel is decoded (decompression bombs).
2. The first frame is used (animated GIF/WebP/PNG, multi-page TIFF); EXIF orientation is
   applied.
3. Modes become RGB: palette and grey images are expanded; images with alpha (LA, PA, RGBA,
   P with transparency) are composited over a **white** background (``BACKGROUND``); CMYK,
   YCbCr, LAB and HSV are converted by Pillow; 16-bit integer images are scaled by their
   real bit depth and float images by their real range (``pixels``: 12-bit data in 16-bit
   files is not black, floats in ±3.14 are not clipped; a warning says what was done).
4. Non-square images are centre-cropped to a square (CIFAR-10 photos are square, and
   squashing changes object shapes), then resized to S×S: a box reduction by the integer
   factor ``f = side // (2·S)`` first, then Pillow's antialiased Lanczos filter (exactly
   ``resize((S, S), LANCZOS, reducing_gap=2)`` of the cropped RGB image). Large JPEGs are
   decoded at a reduced scale by libjpeg (``Image.draft``), JPEG 2000 at a reduced
   resolution level by OpenJPEG: both faster and antialiased.

Memory (issue 26, item 9): the decoded image is the only full-size buffer. The crop, the
mode conversion, alpha compositing and the 16-bit/float scaling all happen band by band on
the way down to ``f``× smaller (``pixels.reduce_in_bands``); an EXIF rotation is applied to
the reduced image (over ``ROTATE_FIRST_PIXELS``). So a decode peaks at about the decoded
image's own size — at most ``MAX_PIXELS`` × 4 bytes = 256 MiB (Pillow keeps RGB in 4 bytes
a pixel) — plus the interpreter (38 MiB with Pillow and numpy). Peak RSS of one decoder
process decoding one 8,100×8,100 image, old decoder → this one
(``benchmarks/decode_photos.py``; AMD EPYC Zen 3, 2 shared cores at load 8–11, Pillow 13.0):
RGB PNG 538 → 298 MiB; 16-bit grey PNG 1,791 → 183 MiB; float TIFF (deflate) 2,855 → 519
MiB, of which 228 MiB are the file's own pages that libtiff maps (anonymous memory
2,832 → 291 MiB). A 4000×3000 JPEG: 40 MiB (libjpeg decodes it at 1/8 scale); PNG 91 MiB.

What a file caused is kept with it: Pillow's warnings ("Corrupt EXIF data", "Invalid APNG",
…) and libtiff's C-level lines (captured from fd 2) become the row's warnings, or — for
libtiff's data errors, and every failure — an ``ImageError`` whose ``reason`` names the
real cause (``causes``).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import stat
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from cifarkit._capture import c_stderr_lines
from cifarkit.contract import DEFAULT_IMAGE_SIZE, DEFAULT_PREPROCESS
from cifarkit.data import causes, formats, pixels
from cifarkit.data.causes import image_error
from cifarkit.data.formats import is_image_path
from cifarkit.errors import ImageError

__all__ = ["BACKGROUND", "MAX_PIXELS", "PREPROCESS", "SIZE", "Decoded",
           "decode", "is_image_path", "load_image", "load_image_bytes",
           "resize_images", "to_square"]

SIZE = DEFAULT_IMAGE_SIZE
PREPROCESS = DEFAULT_PREPROCESS  # the name of steps 1–4, in model metadata and cards
BACKGROUND = (255, 255, 255)
# The pixel budget of one decode: files over it are refused from their header. 64 Mpx is a
# 8,192² image, 256 MiB decoded at 4 bytes per pixel (RGB, RGBA, CMYK, 32-bit, float).
MAX_PIXELS = 64 * 1024 * 1024
# EXIF-rotated images up to this size are rotated before the reduction (exactly as before);
# larger ones after it, at the reduced size: no full-size rotated copy, but the partial
# block at the end of a row/column of the box reduction moves to the other edge (a few
# levels of difference along that edge).
ROTATE_FIRST_PIXELS = 4 * 1024 * 1024

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_DEEP_MODES = {"I;16": "int", "I;16L": "int", "I;16B": "int", "I;16N": "int", "I": "int",
               "F": "float"}
_RGB16 = re.compile(r"^(RGBX?);16([BLN])$")  # Pillow keeps the high byte of each sample
_SWAPS = {
    Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
    Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
}
_ORIENTATIONS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                 4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                 8: Image.Transpose.ROTATE_90}

Source = Callable[[], "str | IO[bytes]"]


@dataclass(frozen=True)
class Decoded:
    """One decoded image: ``array`` is ``(size, size, 3)`` uint8 RGB; ``warnings`` what its
    file caused (Pillow's warnings, libtiff's, how deep pixel values were scaled)."""

    array: np.ndarray
    warnings: tuple[str, ...] = ()


def decode(source: str | os.PathLike[str] | bytes | bytearray | memoryview,
           name: str | os.PathLike[str] | None = None, *, size: int = SIZE,
           require_32: bool = False) -> Decoded:
    """Decode a file (a path) or a file's contents (bytes, e.g. read by Ray Data from S3)
    through steps 1–4; raise ``ImageError`` (with its ``reason``) if it can't.

    ``name`` is what messages call the file (default: the path, or ``<bytes>``).
    ``require_32`` refuses images that are not already 32×32 (CIFAR-10 data must not be
    resized).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label: object = "<bytes>" if name is None else name
        if not data:
            raise image_error(label, "corrupt", "empty file (0 bytes)", explain=False)
        return _decode(lambda: io.BytesIO(data), label, size, require_32)
    path = os.fspath(source)
    label = path if name is None else name
    _check_file(path, label)
    return _decode(lambda: path, label, size, require_32)


def load_image(path: str | os.PathLike[str], *, size: int = SIZE,
               require_32: bool = False) -> np.ndarray:
    """``decode(path).array``: the ``(size, size, 3)`` uint8 RGB array, or ``ImageError``
    naming the file and the real cause."""
    return decode(path, size=size, require_32=require_32).array


def load_image_bytes(
    data: bytes | bytearray | memoryview, name: str | os.PathLike[str] = "<bytes>", *,
    size: int = SIZE, require_32: bool = False,
) -> np.ndarray:
    """``load_image`` for a file's contents already in memory; ``name`` (the file's path or
    URI) is what the messages name."""
    return decode(data, name, size=size, require_32=require_32).array


def _check_file(path: str, name: object) -> None:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise causes.os_error(name, exc) from None
    if stat.S_ISDIR(st.st_mode):
        raise image_error(name, "unreadable", "is a directory, not an image", explain=False)
    if not stat.S_ISREG(st.st_mode):
        # Opening a FIFO would block forever; devices can be endless.
        raise image_error(name, "unreadable", "not a regular file (a pipe, socket or device)",
                          explain=False)
    if st.st_size == 0:
        raise image_error(name, "corrupt", "empty file (0 bytes)", explain=False)


@contextlib.contextmanager
def _pillow_settings() -> Iterator[None]:
    """Our pixel limit, and Pillow's reasons when no plugin opens a file (as warnings)."""
    old = Image.MAX_IMAGE_PIXELS, Image.WARN_POSSIBLE_FORMATS
    Image.MAX_IMAGE_PIXELS, Image.WARN_POSSIBLE_FORMATS = MAX_PIXELS, True
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS, Image.WARN_POSSIBLE_FORMATS = old


def _decode(source: Source, name: object, size: int, require_32: bool) -> Decoded:
    """Run the pipeline with the file's Python warnings and C-level lines recorded, then
    turn a failure or a libtiff data error into an ``ImageError``."""
    notes: list[str] = []
    failure: Exception | None = None
    c_lines: list[str] = []  # libtiff's, filled by _pipeline
    formats.register_plugins()  # HEIF, in whatever process decodes
    with _pillow_settings(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Past MAX_PIXELS: refused from the header (Pillow raises only past twice its limit).
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        # Pillow's advice to programmers when we convert such a palette, not about the file.
        warnings.filterwarnings("ignore", message="Palette images with Transparency")
        try:
            arr = _pipeline(source, name, size, require_32, notes, c_lines)
        except ImageError:
            raise
        except Exception as exc:  # judged below, with the lines it printed
            failure = exc
    texts = []
    for w in caught:  # the file's warnings are Pillow's; others (numpy …) go on as usual
        if f"{os.sep}PIL{os.sep}" in w.filename:
            texts.append(" ".join(str(w.message).split()))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    texts = list(dict.fromkeys(texts))
    possible = [t for t in texts if " opening failed. " in t or "support not installed" in t]
    c_errors, c_warnings = causes.clean_c_lines(c_lines)
    if failure is not None:
        raise _failure(name, failure, c_errors, possible) from None
    if c_errors:
        raise image_error(name, "corrupt", "libtiff reported data errors while decoding: "
                          + "; ".join(c_errors[:3]))
    found = notes + [t for t in texts if t not in possible] + [f"libtiff: {w}" for w in c_warnings]
    return Decoded(arr, tuple(dict.fromkeys(found)))


def _failure(name: object, exc: Exception, c_errors: list[str], possible: list[str]
             ) -> ImageError:
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return causes.too_large(name, exc, MAX_PIXELS)
    if isinstance(exc, UnidentifiedImageError):
        return causes.unidentified(name, possible)
    if isinstance(exc, OSError) and exc.errno is not None:  # the file itself, not its bytes
        return causes.os_error(name, exc)
    if isinstance(exc, (OSError, MemoryError)) or causes.raised_by_pillow(exc):
        return causes.classify(name, exc, c_errors)
    raise exc  # a bug of ours: let it be seen as one


def _pipeline(source: Source, name: object, size: int, require_32: bool,
              notes: list[str], c_lines: list[str]) -> np.ndarray:
    with Image.open(source()) as img:
        if require_32 and img.size != (SIZE, SIZE):
            w, h = img.size
            raise image_error(name, "wrong-size", f"image is {w}×{h}; CIFAR-10 images are "
                              "32×32", explain=False)
        rawmode = _rawmode(img)  # read before load(), which empties the tile list
        declared = _declared_depth(img, source)
        if img.format in ("JPEG", "MPO") and min(img.size) > 2 * size:
            img.draft("RGB", (2 * size, 2 * size))
        elif img.format == "JPEG2000":
            img.reduce = _j2k_reduction(img, source, size)  # type: ignore[assignment,method-assign]
        if img.format == "TIFF":  # libtiff prints its errors on fd 2, naming no file
            try:
                with c_stderr_lines() as lines:
                    img.load()
            finally:
                c_lines.extend(lines)
        img.load()
        arr = _to_square(img, size, notes, rawmode, declared, source)
    if arr.shape != (size, size, 3):  # pragma: no cover - guarded by the steps above
        raise image_error(name, "corrupt", f"decoded to shape {arr.shape}, expected "
                          f"{(size, size, 3)}")
    return arr


def _to_square(img: Image.Image, size: int, notes: list[str], rawmode: str,
               declared: int | None, source: Source) -> np.ndarray:
    """Steps 2–4 on a loaded image: the crop box (in the file's own orientation), reduce and
    convert in bands, orient the small image, Lanczos to ``size``."""
    method = _ORIENTATIONS.get(img.getexif().get(0x0112, 1))
    if method is not None and img.width * img.height <= ROTATE_FIRST_PIXELS:
        img.im, method = img.im.transpose(method), None  # small (drafted photos): as before
        img._size = img.im.size  # noqa: SLF001 - what ImageOps.exif_transpose(in_place) does
    w, h = img.size
    turned = method in (Image.Transpose.TRANSPOSE, Image.Transpose.TRANSVERSE,
                        Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270)
    ow, oh = (h, w) if turned else (w, h)
    side = min(ow, oh)
    box = ((ow - side) // 2, (oh - side) // 2, (ow - side) // 2 + side, (oh - side) // 2 + side)
    if method is not None:
        box = _map_box(box, _SWAPS.get(method, method), (ow, oh))
    f = int(side / size / 2) or 1  # Pillow's resize(reducing_gap=2) factor
    small = _reduce(img, box, f, notes, rawmode, declared, source)
    if method is not None:
        small = small.transpose(method)
    if small.mode == "RGBa":
        small = pixels.composite(small, BACKGROUND)
    elif small.mode != "RGB":
        small = small.convert("RGB")
    if small.size != (size, size):
        small = small.resize((size, size), Image.Resampling.LANCZOS,
                             box=(0, 0, side / f, side / f))
    return np.asarray(small, dtype=np.uint8)


def _reduce(img: Image.Image, box: pixels.Box, f: int, notes: list[str], rawmode: str,
            declared: int | None, source: Source) -> Image.Image:
    """``box`` of ``img`` reduced ``f``×: RGB, L, or RGBa (premultiplied alpha) at 8 bits."""
    mode = img.mode
    if mode in _DEEP_MODES:
        means, stats = pixels.reduce_samples(img, box, f)
        out, found = pixels.to_uint8(means, stats, _DEEP_MODES[mode], declared)
        notes += found
        return Image.fromarray(out, "L")
    if (m := _RGB16.match(rawmode)) and mode in ("RGB", "RGBX"):
        if (recovered := _rgb16_low_range(img, box, f, notes, m, declared, source)):
            return recovered
    elif (";16" in rawmode and mode in ("RGBA", "LA")
          and max(hi for _, hi in img.getextrema()[:-1]) < 16):
        notes.append("16-bit image with alpha and values below 4096: decoded from each "
                     "sample's high byte only, so it comes out nearly black or transparent")
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        return pixels.reduce_in_bands(img, box, f,
                                      lambda band: band.convert("RGBA").convert("RGBa"))
    if mode in ("RGB", "L"):
        return pixels.reduce_in_bands(img, box, f)
    target = "L" if mode == "1" else "RGB"
    return pixels.reduce_in_bands(img, box, f, lambda band: band.convert(target))


def _rgb16_low_range(img: Image.Image, box: pixels.Box, f: int, notes: list[str],
                     m: re.Match[str], declared: int | None, source: Source
                     ) -> Image.Image | None:
    """A 16-bit RGB file whose values sit in the low bits (12-bit data: high bytes 0–15):
    Pillow keeps only each sample's high byte, so decode it again for the low bytes (the
    unpacker of the other byte order reads them) and scale the 16-bit values by their depth.
    Means are linear, so the two reductions add up: one full-size image at a time."""
    high = max(hi for _, hi in img.getextrema()[:3])
    if high >= 64:  # values ≥ 16384: full range, the high byte is the picture
        return None
    means_hi, _ = pixels.reduce_samples(img, box, f)
    img.close()  # free the high bytes before the low ones are decoded
    swapped = {"B": "L", "L": "B", "N": "B" if np.little_endian else "L"}[m.group(2)]
    with Image.open(source()) as lo:
        lo.tile = [_with_rawmode(t, f"{m.group(1)};16{swapped}") for t in lo.tile]
        lo.load()
        means_lo, _ = pixels.reduce_samples(lo, box, f)
    stats = pixels.Stats(low=0, high=256 * high + 255)
    out, found = pixels.to_uint8(256 * means_hi + means_lo, stats, "int", declared)
    notes += found
    return Image.fromarray(out, "RGB")


def _rawmode(img: Image.Image) -> str:
    """How the file stores its pixels (Pillow's raw mode, e.g. ``RGB;16B``), if one tile."""
    if not img.tile:
        return ""
    args = img.tile[0].args
    first = args[0] if isinstance(args, tuple) and args else args
    return first if isinstance(first, str) else ""


def _with_rawmode(tile: Any, rawmode: str) -> Any:
    args = tile.args
    new = (rawmode, *args[1:]) if isinstance(args, tuple) else rawmode
    return tile._replace(args=new)


def _declared_depth(img: Image.Image, source: Source) -> int | None:
    """The bit depth a 16-bit file declares for its samples: PNG ``sBIT``, TIFF
    ``MaxSampleValue`` or ``BitsPerSample``."""
    if img.format == "TIFF":
        tags = getattr(img, "tag_v2", {})
        top = tags.get(281)  # MaxSampleValue
        if top:
            return math.ceil(math.log2(max(_as_tuple(top)) + 1))
        bits = max(_as_tuple(tags.get(258, (8,))))
        return bits if bits < 16 else None
    if img.format == "PNG" and ";16" in _rawmode(img) + img.mode:
        return _png_sbit(source)
    return None


def _as_tuple(value: object) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),)  # type: ignore[arg-type]


def _png_sbit(source: Source) -> int | None:
    """The PNG ``sBIT`` chunk's largest significant-bit count (Pillow does not read it)."""
    with _open_raw(source) as fh:
        fh.seek(8)
        while len(header := fh.read(8)) == 8:
            length, kind = int.from_bytes(header[:4], "big"), header[4:]
            if kind in (b"IDAT", b"IEND"):
                break
            if kind == b"sBIT":
                return max(fh.read(min(length, 4)) or b"\0") or None
            fh.seek(length + 4, io.SEEK_CUR)
    return None


def _open_raw(source: Source) -> IO[bytes]:
    src = source()
    return open(src, "rb") if isinstance(src, str) else src  # noqa: SIM115 - caller closes


def _j2k_reduction(img: Image.Image, source: Source, size: int) -> int:
    """Resolution levels to drop when decoding a JPEG 2000 (each halves the side), keeping
    at least 2·size pixels, and no more than the codestream has (more fails to decode)."""
    want = int(math.log2(min(img.size) / (2 * size))) if min(img.size) > 2 * size else 0
    if want <= 0:
        return 0
    with _open_raw(source) as fh:
        head = fh.read(1 << 16)
    start = head.find(b"\xff\x4f\xff\x51")  # SOC then SIZ: the main header
    pos = start + 2
    while start >= 0 and pos + 4 <= len(head) and head[pos] == 0xFF:
        marker, length = head[pos + 1], int.from_bytes(head[pos + 2 : pos + 4], "big")
        if marker == 0x52 and pos + 9 < len(head):  # COD: decomposition levels at byte 9
            return min(want, head[pos + 9])
        pos += 2 + length
    return 0


def _map_box(box: pixels.Box, method: Image.Transpose, size: tuple[int, int]) -> pixels.Box:
    """Where ``box`` of an image of ``size`` lands after ``transpose(method)``."""
    left, top, right, bottom = box
    w, h = size
    t = Image.Transpose
    return {
        t.FLIP_LEFT_RIGHT: (w - right, top, w - left, bottom),
        t.FLIP_TOP_BOTTOM: (left, h - bottom, right, h - top),
        t.ROTATE_180: (w - right, h - bottom, w - left, h - top),
        t.TRANSPOSE: (top, left, bottom, right),
        t.ROTATE_90: (top, w - right, bottom, w - left),
        t.ROTATE_270: (h - bottom, left, h - top, right),
        t.TRANSVERSE: (h - bottom, w - right, h - top, w - left),
    }[method]


def to_square(img: Image.Image, size: int) -> np.ndarray:
    """Step 4 on an RGB image: centre-crop to a square, antialiased resize to
    ``size``×``size``."""
    w, h = img.size
    side = min(w, h)
    if (w, h) != (side, side):
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
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
