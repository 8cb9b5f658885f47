"""The shared image decoder: formats, modes, orientation, resizing and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifarkit.data import load_image
from cifarkit.data.images import BACKGROUND, MAX_PIXELS, is_image_path
from cifarkit.errors import ImageError


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
