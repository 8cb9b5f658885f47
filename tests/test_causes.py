"""Every decode failure names the file and its real cause (``reason`` and message)."""

from __future__ import annotations

import io
import os
import pickle
import struct

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from cifarkit.data.causes import REASONS, clean_c_lines, raised_by_pillow
from cifarkit.data.images import MAX_PIXELS, decode, load_image
from cifarkit.errors import ImageError
from tests.odd_files import _tiff_with_compression


def _reason(source, name="f") -> tuple[str, str]:
    with pytest.raises(ImageError) as info:
        decode(source, name)
    assert str(info.value).startswith(f"{name}: "), str(info.value)
    assert info.value.reason in REASONS
    return info.value.reason, str(info.value)


def _bmp(compression: int, bpp: int, masks=None, payload: bytes = b"") -> bytes:
    """A 4×4 BMP with the given compression, depth, bitfield masks and pixel payload."""
    header_size = 40 if masks is None else 56
    pix = payload or bytes(4 * 4 * bpp // 8)
    dib = struct.pack("<IiiHHIIiiII", header_size, 4, 4, 1, bpp, compression, len(pix), 2835,
                      2835, 0, 0)
    if masks is not None:
        dib += struct.pack("<IIII", *masks)
    off = 14 + header_size
    return b"BM" + struct.pack("<IHHI", off + len(pix), 0, 0, off) + dib + pix


def _libtiff_has_webp() -> bool:
    try:
        Image.new("RGB", (8, 8)).save(io.BytesIO(), "TIFF", compression="webp")
        return True
    except (OSError, ValueError, KeyError):
        return False


def test_features_this_pillow_lacks_are_unsupported_not_corrupt():
    jpeg = io.BytesIO()
    Image.new("RGB", (4, 4)).save(jpeg, "JPEG")
    reason, text = _reason(_bmp(4, 0, payload=jpeg.getvalue()), "jpeg-in.bmp")
    assert reason == "unsupported" and "Unsupported BMP" in text
    reason, text = _reason(_bmp(3, 16, masks=(0x7C00, 0x03E0, 0x001E, 0)), "bitfields.bmp")
    assert reason == "unsupported" and "bitfields" in text
    assert "does not support" in text and "corrupt" not in text
    reason, text = _reason(_tiff_with_compression(34712), "j2k-in.tif")
    assert reason == "unsupported" and "TIFF compression 34712" in text


@pytest.mark.skipif(_libtiff_has_webp(), reason="this libtiff decodes WebP TIFFs")
def test_libtiff_lacking_a_codec_says_which_with_the_file_name(capfd):
    reason, text = _reason(_tiff_with_compression(50001), "webp.tif")
    assert reason == "unsupported"
    assert "WEBP compression support is not configured" in text
    assert capfd.readouterr().err == ""  # said in the error, not on stderr without a name


@pytest.mark.skipif(EpsImagePlugin.has_ghostscript(), reason="Ghostscript is installed")
def test_a_missing_helper_program_is_missing_codec():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto 9 9 lineto stroke\n"
    reason, text = _reason(eps, "drawing.eps")
    assert reason == "missing-codec" and "Ghostscript" in text


def test_corrupt_truncated_not_an_image_and_unreadable(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        buf, "PNG")
    reason, text = _reason(buf.getvalue()[:300], "cut.png")
    assert reason == "corrupt" and "truncated" in text
    assert _reason(b"just some text", "notes.jpg")[0] == "not-an-image"
    reason, text = _reason(b"", "empty.png")
    assert (reason, text) == ("corrupt", "empty.png: empty file (0 bytes)")
    reason, text = _reason(tmp_path / "gone.png", "gone.png")
    assert reason == "unreadable" and "not found" in text
    assert _reason(tmp_path, "dir")[0] == "unreadable"
    os.mkfifo(tmp_path / "pipe.png")
    assert _reason(tmp_path / "pipe.png", "pipe")[0] == "unreadable"


def test_too_large_quotes_the_one_real_limit(tmp_path):
    # Pillow's own message quotes twice its limit past that; ours quotes MAX_PIXELS always.
    for side in (int(MAX_PIXELS**0.5) + 64, int((2 * MAX_PIXELS) ** 0.5) + 64):
        Image.new("1", (side, side)).save(tmp_path / "bomb.png")
        reason, text = _reason(tmp_path / "bomb.png", "bomb.png")
        assert reason == "too-large" and f"limit of {MAX_PIXELS:,} pixels" in text
        assert f"{side * side:,} pixels" in text and "134" not in text


def test_wrong_size_for_cifar_data(tmp_path):
    Image.new("RGB", (33, 32)).save(tmp_path / "x.png")
    with pytest.raises(ImageError, match="33×32") as info:
        load_image(tmp_path / "x.png", require_32=True)
    assert info.value.reason == "wrong-size"


def test_reason_survives_pickling_between_processes():
    err = pickle.loads(pickle.dumps(ImageError("x.png: corrupt", reason="unsupported")))
    assert isinstance(err, ImageError) and err.reason == "unsupported"
    assert str(err) == "x.png: corrupt"
    assert ImageError("old-style message").reason == "corrupt"


def test_libtiff_lines_split_into_errors_and_warnings():
    errors, warnings = clean_c_lines([
        "tempfile.tif: WEBP compression support is not configured.",
        "tempfile.tif: WEBP compression support is not configured.",
        "TIFFReadDirectory: Warning, Unknown field with tag 65000 (0xfde8) encountered.",
        "Fax4Decode: Bad code word at line 6 of strip 0 (x 1).",
    ])
    assert errors == ["WEBP compression support is not configured",
                      "Fax4Decode: Bad code word at line 6 of strip 0 (x 1)"]
    assert warnings == ["TIFFReadDirectory: Warning, Unknown field with tag 65000 (0xfde8) "
                        "encountered"]


def test_only_pillow_exceptions_count_as_bad_files():
    with pytest.raises(Exception) as from_pillow:  # noqa: PT011 - any type Pillow raises
        Image.open(io.BytesIO(b"not an image"))
    assert raised_by_pillow(from_pillow.value)
    with pytest.raises(KeyError) as ours:
        {}["missing"]  # noqa: B018 - raises on purpose
    assert not raised_by_pillow(ours.value)
