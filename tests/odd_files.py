"""A small corpus of odd image files, made on the fly, for the engines' tests (issue 26): each
file with the ``reason`` its row must have (None: a prediction) and a phrase its row's
warnings must hold (None: no warnings). Both engines must give these files the same rows."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from tests import onnx_fixtures as F

RED = (255, 0, 0)


def _bmp_bitfields() -> bytes:
    """A 4×4 16-bit BMP with bitfield masks this Pillow does not support."""
    pix = bytes(4 * 4 * 2)
    dib = struct.pack("<IiiHHIIiiII", 56, 4, 4, 1, 16, 3, len(pix), 2835, 2835, 0, 0)
    dib += struct.pack("<IIII", 0x7C00, 0x03E0, 0x001E, 0)
    off = 14 + 56
    return b"BM" + struct.pack("<IHHI", off + len(pix), 0, 0, off) + dib + pix


def _tiff_with_compression(code: int) -> bytes:
    """A valid deflate TIFF whose Compression tag then says ``code`` (34712: JPEG 2000)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buf, "TIFF", compression="tiff_deflate")
    data = bytearray(buf.getvalue())
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack("<H", data[entry : entry + 2])[0] == 259:
            struct.pack_into("<H", data, entry + 8, code)
    return bytes(data)


def _damaged_fax_tiff() -> bytes:
    """Group 4 fax data with damage: libtiff says "Bad code word" and returns pixels anyway."""
    bits = np.random.default_rng(1).integers(0, 2, (64, 64)).astype(bool)
    buf = io.BytesIO()
    Image.fromarray(bits).save(buf, "TIFF", compression="group4")
    data = bytearray(buf.getvalue())
    for k in range(9, 200, 3):
        data[k] ^= 0x5A
    return bytes(data)


def _truncated_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


def libtiff_has_webp() -> bool:
    try:
        Image.new("RGB", (8, 8)).save(io.BytesIO(), "TIFF", compression="webp")
        return True
    except (OSError, ValueError, KeyError):
        return False


def odd_corpus(root: Path) -> dict[str, tuple[str | None, str | None]]:
    """Write the corpus under ``root``; name → (reason, warning phrase). ``root`` also holds
    two files that are not images by their extension (``notes.txt``, ``data.csv``)."""
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(F.solid(RED, (32, 32)), "RGB").save(root / "good.png")
    # An EXIF block cut short: Pillow warns "Corrupt EXIF data" and decodes the pixels.
    Image.fromarray(F.solid(RED, (64, 64)), "RGB").save(
        root / "exif.jpg", quality=95, exif=b"Exif\0\0MM\0\x2a\0\0\0\x08\xff\xff")
    ramp = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (64, 1))  # 12 bits in 16
    Image.fromarray(ramp).save(root / "12bit.tiff")
    pi = (np.sin(np.linspace(0, 20, 64 * 64)).reshape(64, 64) * 3.14).astype(np.float32)
    Image.fromarray(pi).save(root / "float.tiff")
    (root / "bitfields.bmp").write_bytes(_bmp_bitfields())
    (root / "j2k-in.tif").write_bytes(_tiff_with_compression(34712))
    (root / "fax.tif").write_bytes(_damaged_fax_tiff())
    (root / "truncated.jpg").write_bytes(_truncated_jpeg())
    (root / "text.png").write_bytes(b"just some text\n")
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.txt").write_text("not an image by its extension\n")
    (root / "data.csv").write_text("a,b\n1,2\n")
    expected = {
        "good.png": (None, None),
        "exif.jpg": (None, "Corrupt EXIF data"),
        "12bit.tiff": (None, "12-bit data"),
        "float.tiff": (None, "float data in [-3.14, 3.14]"),
        "bitfields.bmp": ("unsupported", None),
        "j2k-in.tif": ("unsupported", None),
        "fax.tif": ("corrupt", None),
        "truncated.jpg": ("corrupt", None),
        "text.png": ("not-an-image", None),
        "empty.jpg": ("corrupt", None),
    }
    if not libtiff_has_webp():  # as here: "WEBP compression support is not configured"
        (root / "webp-in.tif").write_bytes(_tiff_with_compression(50001))
        expected["webp-in.tif"] = ("unsupported", None)
    return expected


SKIPPED = ("data.csv", "notes.txt")  # what odd_corpus writes that is not an image
