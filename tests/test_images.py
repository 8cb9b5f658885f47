"""The shared image decoder: formats, modes, orientation, resizing and bad files."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter, ImageOps

from cifarkit.data import images, load_image
from cifarkit.data.images import (
    BACKGROUND,
    MAX_PIXELS,
    decode,
    is_image_path,
    load_image_bytes,
    to_square,
)
from cifarkit.errors import ImageError
from tests.odd_files import _damaged_fax_tiff


def _rgb(color=(200, 30, 60), size=(32, 32)) -> Image.Image:
    return Image.new("RGB", size, color)


@pytest.mark.parametrize("ext", ["png", "bmp", "gif", "tiff", "webp", "PNG", "JPG", "jpeg"])
def test_formats_and_upper_case_extensions(tmp_path, ext):
    path = tmp_path / f"img.{ext}"
    fmt = {"jpg": "JPEG", "jpeg": "JPEG"}.get(ext.lower(), ext.upper())
    _rgb().save(path, format=fmt)
    arr = load_image(path)
    assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8
    # Lossy formats (JPEG, WebP, GIF palette) stay close to the colour.
    assert np.abs(arr.astype(int) - [200, 30, 60]).mean() < 12


def test_modes_become_rgb(tmp_path):
    cases = {
        "L": Image.new("L", (32, 32), 128),
        "P": _rgb().quantize(colors=4),
        "CMYK": _rgb().convert("CMYK"),
        "I;16": Image.fromarray(np.full((32, 32), 65535, np.uint16)),
        "I": Image.fromarray(np.full((32, 32), 32896, np.int32)),
        "F": Image.fromarray(np.full((32, 32), 0.5, np.float32)),
    }
    expected = {"L": 128, "I;16": 255, "I": 128, "F": 128}
    for mode, img in cases.items():
        path = tmp_path / f"{mode.replace(';', '_')}.tiff"
        img.save(path)
        arr = load_image(path)
        assert arr.shape == (32, 32, 3), mode
        if mode in expected:
            assert abs(int(arr[0, 0, 0]) - expected[mode]) <= 1, (mode, arr[0, 0])
            assert arr[0, 0, 0] == arr[0, 0, 1] == arr[0, 0, 2]
        else:
            assert np.abs(arr[0, 0].astype(int) - [200, 30, 60]).max() < 8, (mode, arr[0, 0])


def test_alpha_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (32, 32), (0, 0, 255, 0))  # fully transparent blue
    rgba.paste((255, 0, 0, 255), (0, 0, 16, 32))  # left half opaque red
    rgba.save(tmp_path / "a.png")
    arr = load_image(tmp_path / "a.png")
    assert arr[5, 2].tolist() == [255, 0, 0]
    assert arr[5, 28].tolist() == list(BACKGROUND)
    la = Image.new("LA", (32, 32), (0, 0))
    la.save(tmp_path / "la.png")
    assert load_image(tmp_path / "la.png")[0, 0].tolist() == list(BACKGROUND)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (32, 32), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 32, 8))  # white band on top
    exif = Image.Exif()
    exif[0x0112] = 3  # rotated 180°: the band must end up at the bottom
    img.save(tmp_path / "o.jpg", exif=exif, quality=95)
    arr = load_image(tmp_path / "o.jpg")
    assert arr[2].mean() < 40 and arr[-2].mean() > 200


def test_large_and_non_square_images_are_cropped_and_resized(tmp_path):
    img = Image.new("RGB", (300, 100), (0, 255, 0))
    img.paste((255, 0, 0), (100, 0, 200, 100))  # the centre square is red
    img.save(tmp_path / "wide.png")
    arr = load_image(tmp_path / "wide.png")
    assert arr.shape == (32, 32, 3)
    assert arr[16, 16].tolist() == [255, 0, 0] and arr[16, 1, 0] > 200
    # A large photo-like JPEG goes through libjpeg's draft mode and still comes out 32×32.
    big = np.random.default_rng(0).integers(0, 255, (1200, 1600, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "big.jpg")
    assert load_image(tmp_path / "big.jpg").shape == (32, 32, 3)


def test_first_frame_of_animations(tmp_path):
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert load_image(tmp_path / "a.gif")[0, 0, 0] > 200


def test_bad_files_raise_image_error(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "text.jpg")
    _rgb(size=(64, 64)).save(tmp_path / "t.jpg", quality=90)
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError, match="trunc"):
        load_image(tmp_path / "trunc.jpg")
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "gone.png")
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)


def test_decompression_bomb_rejected_before_decoding(tmp_path):
    # A tiny PNG whose header claims more pixels than the limit (a 1-bit image compresses
    # to almost nothing); it must be refused from the header, not decoded.
    side = int(MAX_PIXELS**0.5) + 64
    Image.new("1", (side, side)).save(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 2_000_000
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(tmp_path / "bomb.png")


def test_require_32_for_data_sets(tmp_path):
    _rgb(size=(33, 32)).save(tmp_path / "x.png")
    with pytest.raises(ImageError, match="33×32"):
        load_image(tmp_path / "x.png", require_32=True)


@pytest.mark.parametrize(("name", "expected"), [
    ("a.jpg", True), ("A.JPEG", True), ("dir.png/b.PNG", True), ("x.webp", True),
    ("notes.txt", False), ("jpg", False), (".jpg", False), ("dir.jpg/readme", False),
    ("trailing.", False),
])
def test_is_image_path_by_extension(name, expected):
    assert is_image_path(name) is expected
    assert is_image_path(Path(name)) is expected


# --- issue 26: exactness of the band-wise path, warnings, deep pixels, memory ---------------


def _png(arr: np.ndarray, color_type: int, sbit: list[int] | None = None) -> bytes:
    """A 16-bit PNG written by hand (Pillow writes no 16-bit RGB, and no sBIT)."""
    h = arr.shape[0]
    rows = b"".join(b"\0" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    ihdr = struct.pack(">IIBBBBB", arr.shape[1], h, 16, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + (chunk(b"sBIT", bytes(sbit)) if sbit else b"")
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _tiff_rgb16(arr: np.ndarray) -> bytes:
    """An uncompressed little-endian 16-bit RGB TIFF written by hand (Pillow writes none)."""
    h, w, _ = arr.shape
    data = arr.astype("<u2").tobytes()
    tags = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 3, 0), (259, 3, 1, 1), (262, 3, 1, 2),
            (273, 4, 1, 0), (277, 3, 1, 3), (278, 3, 1, h), (279, 4, 1, len(data))]
    bits_at = 8 + 2 + 12 * len(tags) + 4
    out = b"II*\0" + struct.pack("<IH", 8, len(tags))
    for tag, kind, count, value in tags:
        value = {258: bits_at, 273: bits_at + 6}.get(tag, value)
        out += struct.pack("<HHI", tag, kind, count)
        out += struct.pack("<HH", value, 0) if kind == 3 and count == 1 else struct.pack(
            "<I", value)
    return out + b"\0\0\0\0" + struct.pack("<HHH", 16, 16, 16) + data


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "CMYK", "1", "YCbCr"])
def test_band_wise_path_equals_crop_then_resize(tmp_path, mode):
    # The memory-bounded path gives exactly what cropping and resizing the whole converted
    # image gives (the policy models were trained with), for odd sizes and both S.
    rng = np.random.default_rng(0)
    for w, h in ((1201, 799), (257, 513)):
        img = Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).convert(mode)
        path = tmp_path / f"{mode}-{w}.{'tiff' if mode in ('CMYK', 'YCbCr') else 'png'}"
        img.save(path)
        for size in (32, 64):
            want = to_square(Image.open(path).convert("RGB"), size)
            assert np.array_equal(load_image(path, size=size), want), (mode, w, size)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_rotation_before_or_after_the_reduction(tmp_path, monkeypatch, orientation):
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (707, 1103, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(tmp_path / "o.png", exif=exif)
    want = to_square(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")), 32)
    assert np.array_equal(load_image(tmp_path / "o.png"), want)
    # Over ROTATE_FIRST_PIXELS the small image is rotated: same crop, same picture, only the
    # partial edge block of the reduction (707 = 64·11 + 3) lands on the other side.
    monkeypatch.setattr(images, "ROTATE_FIRST_PIXELS", 0)
    diff = np.abs(load_image(tmp_path / "o.png").astype(int) - want)
    assert diff.max() <= 16 and diff.mean() < 3
    img.crop((0, 0, 1100, 704)).save(tmp_path / "even.png", exif=exif)  # 704 = 64·11
    want = to_square(ImageOps.exif_transpose(Image.open(tmp_path / "even.png")), 32)
    assert np.array_equal(load_image(tmp_path / "even.png"), want)


def test_warnings_come_with_their_image_and_not_on_stderr(tmp_path, capfd):
    _rgb(size=(64, 64)).save(tmp_path / "exif.jpg",
                             exif=b"Exif\0\0MM\0\x2a\0\0\0\x08\xff\xff")  # IFD cut short
    decoded = decode(tmp_path / "exif.jpg")
    assert decoded.array.shape == (32, 32, 3)
    assert any("Corrupt EXIF data" in w for w in decoded.warnings), decoded.warnings
    assert decode(_rgb_bytes()).warnings == ()
    assert capfd.readouterr().err == ""


def _rgb_bytes() -> bytes:
    buf = io.BytesIO()
    _rgb().save(buf, "PNG")
    return buf.getvalue()


def test_libtiff_data_errors_make_a_corrupt_error_not_a_row(capfd):
    # A fax-compressed TIFF with damaged data: libtiff prints "Bad code word" (naming no file)
    # and Pillow returns the picture anyway, partly made up.
    with pytest.raises(ImageError, match="Bad code word") as info:
        decode(_damaged_fax_tiff(), "fax.tif")
    assert info.value.reason == "corrupt"
    assert str(info.value).startswith("fax.tif: corrupt or truncated image: libtiff reported")
    assert capfd.readouterr().err == ""


def test_deep_images_are_scaled_by_their_real_range(tmp_path):
    ramp = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (64, 1))  # 12-bit data
    Image.fromarray(ramp).save(tmp_path / "12bit.tiff")
    cases = {
        "12bit.tiff": tmp_path / "12bit.tiff",
        "grey16.png": _png(ramp, 0),
        "grey16-sbit.png": _png(ramp, 0, sbit=[12]),
        "rgb16.png": _png(np.stack([ramp, ramp // 2, ramp // 4], -1), 2),
        "rgb16.tif": _tiff_rgb16(np.stack([ramp, ramp // 2, ramp // 4], -1)),
    }
    for name, source in cases.items():
        decoded = decode(source, name)
        assert decoded.array.max() >= 240, (name, decoded.array.max())  # 4095/257 was 15
        assert any("12-bit data" in w for w in decoded.warnings), (name, decoded.warnings)
    for name in ("rgb16.png", "rgb16.tif"):  # both bytes of each sample were read
        rgb = decode(cases[name]).array
        assert rgb[:, -1].mean(0).round().tolist() == pytest.approx([254, 127, 63], abs=2)
    full = _png(np.full((8, 8, 3), 51400, np.uint16), 2)  # full range: as before, no warning
    assert decode(full).array[0, 0].tolist() == [200, 200, 200] and decode(full).warnings == ()
    pi = (np.sin(np.linspace(0, 20, 64 * 64)).reshape(64, 64) * 3.14).astype(np.float32)
    Image.fromarray(pi).save(tmp_path / "pi.tiff")
    decoded = decode(tmp_path / "pi.tiff")
    assert decoded.array.min() <= 10 and decoded.array.max() >= 245
    assert decoded.warnings == ("float data in [-3.14, 3.14] stretched to 0–255 by its own "
                                "minimum and maximum",)


_MEMORY_CHILD = """
import os, resource, sys
from cifarkit.data.images import load_image
load_image(sys.argv[1])  # imports and a warm-up decode count against the base size
size = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize"))
limit = size + int(sys.argv[3]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
arr = load_image(sys.argv[2])
print(arr.min(), arr.max())
"""


def test_a_large_16bit_image_decodes_under_a_memory_limit(tmp_path):
    # 6,000² 16-bit PNG: 69 MiB decoded. Scaling it as a whole in float64 took 4 copies of
    # 275 MiB; band by band it fits in 200 MiB of address space over the process's own.
    side = 6000
    ramp = np.linspace(0, 4095, side).astype(np.uint16)
    Image.fromarray(np.ascontiguousarray(np.broadcast_to(ramp, (side, side)))).save(
        tmp_path / "big16.png", compress_level=1)
    _rgb().save(tmp_path / "small.png")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(tmp_path / "small.png"),
                          str(tmp_path / "big16.png"), "200"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    low, high = map(int, out.stdout.split())
    assert low <= 5 and high >= 245  # the whole 12-bit ramp, not 0–15


def test_bytes_and_paths_decode_alike(tmp_path):
    img = Image.fromarray(np.random.default_rng(2).integers(0, 255, (90, 120, 3), np.uint8))
    img.save(tmp_path / "a.webp")
    data = (tmp_path / "a.webp").read_bytes()
    assert np.array_equal(decode(data).array, load_image(tmp_path / "a.webp"))
    assert np.array_equal(load_image_bytes(bytearray(data), "a.webp"), decode(data).array)


@pytest.mark.parametrize("resolutions", [2, 6])
def test_jpeg2000_decoded_at_a_reduced_level_it_has(tmp_path, resolutions):
    img = Image.fromarray(np.random.default_rng(3).integers(0, 255, (1024, 1024, 3), np.uint8)
                          ).resize((1024, 1024))
    img = img.filter(ImageFilter.GaussianBlur(4))  # photo-like: reductions agree
    img.save(tmp_path / "a.jp2", num_resolutions=resolutions)
    want = to_square(Image.open(tmp_path / "a.jp2").convert("RGB"), 32)
    got = load_image(tmp_path / "a.jp2")
    assert np.abs(got.astype(int) - want).mean() < 2
