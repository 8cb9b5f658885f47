"""Which files are images: every extension the installed Pillow opens, and what was skipped."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, features

from cifarkit.data.formats import (
    IMAGE_EXTENSIONS,
    SkippedFiles,
    image_extensions,
    is_image_path,
    skipped_files,
    undecodable_extensions,
)
from cifarkit.data.images import load_image


def test_every_extension_pillow_registers_is_walked_or_explained():
    registered = {ext.lower(): fmt for ext, fmt in Image.registered_extensions().items()}
    walked, explained = image_extensions(), undecodable_extensions()
    assert walked == IMAGE_EXTENSIONS
    assert set(registered) == walked | set(explained)
    assert not walked & set(explained)
    # Formats Pillow opens itself are walked; skipped ones say why.
    for ext in walked:
        fmt = registered[ext]
        assert fmt in Image.OPEN or fmt == "MPO", ext
    assert all(why for why in explained.values())
    # The ones issue 26 found skipped although Pillow decodes them.
    for ext in (".tga", ".dds", ".mpo", ".qoi", ".pbm", ".pnm", ".ico", ".jp2", ".apng", ".j2k",
                ".icns", ".pcx", ".sgi", ".psd", ".xbm"):
        assert ext in walked, ext
    if features.check("avif"):
        assert ".avif" in walked
    # Never walked: Keras weights share HDF5's extension; PDF is write-only here.
    assert ".h5" not in walked and ".pdf" not in walked and ".txt" not in walked
    assert (".eps" in walked) == EpsImagePlugin.has_ghostscript()


def _save_any(img: Image.Image, path) -> bool:
    """Save ``img`` as ``path``'s format in the first mode the writer takes."""
    for mode in ("RGB", "RGBA", "L", "P", "1"):
        try:
            img.convert(mode).save(path)
            return True
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
    return False


def test_every_format_pillow_can_write_decodes_by_its_extension(tmp_path):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), np.uint8))
    decoded = []
    for ext in sorted(image_extensions()):
        path = tmp_path / f"x{ext}"
        if not _save_any(img, path):
            continue  # a format Pillow reads but cannot write: covered by the set test
        arr = load_image(path)
        assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8, ext
        decoded.append(ext)
    for ext in (".tga", ".dds", ".qoi", ".pbm", ".pnm", ".ico", ".jp2", ".png", ".tif", ".bmp",
                ".gif", ".webp", ".jpg", ".ppm", ".pcx", ".sgi", ".im", ".blp"):
        assert ext in decoded, ext


@pytest.mark.parametrize(("name", "expected"), [
    ("a.tga", True), ("B.QOI", True), ("c.pbm", True), ("d.pnm", True), ("e.mpo", True),
    ("model.h5", False), ("doc.pdf", False), ("notes.txt", False), ("no-extension", False),
])
def test_is_image_path_follows_pillow(name, expected):
    assert is_image_path(name) is expected


def test_skipped_files_counted_and_explained(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.txt", "b.txt", "sub/c.txt", "model.h5", "README", "sub/img.tga",
                 ".hidden.txt"):
        (tmp_path / name).write_bytes(b"x")
    skipped = skipped_files(tmp_path)
    assert skipped.count == 5 and skipped.by_extension == {".txt": 3, ".h5": 1,
                                                           "no extension": 1}
    text = skipped.describe()
    assert text.startswith("5 files skipped as non-images (.txt ×3; ")
    assert ".h5 ×1: Pillow has no loader for HDF5 files" in text and "no extension ×1" in text
    assert skipped_files(tmp_path, recursive=False).count == 4
    assert SkippedFiles().describe() == ""
    one = SkippedFiles()
    one.add("x.doc")
    assert one.describe() == "1 file skipped as non-images (.doc ×1)"
    many = SkippedFiles()
    for i in range(8):
        many.add(f"f.e{i}")
    assert many.describe(limit=3).endswith("; 5 more extensions)")


def test_heif_photos_are_walked_and_decoded_in_a_fresh_process(tmp_path):
    """Phone photos (HEIC) through pillow-heif, a dependency: walked, and decoded by a
    process that only imports the decoder (as predict's decoder processes and Ray actors)."""
    import subprocess
    import sys

    assert {".heic", ".heif"} <= image_extensions()
    y, x = np.mgrid[0:240, 0:320]
    rgb = np.stack([x * 255 // 320, y * 255 // 240, np.full_like(x, 90)], -1).astype(np.uint8)
    path = tmp_path / "IMG_0001.HEIC"
    Image.fromarray(rgb).save(path, format="HEIF", quality=90)
    code = ("import sys, numpy as np; from cifarkit.data.images import load_image; "
            "a = load_image(sys.argv[1]); print(a.shape, *a.reshape(-1, 3).mean(0).round())")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True).stdout.split(")")
    assert out[0] == "(32, 32, 3"
    # centre crop of the ramps: red and green average about mid-range, blue stays ~90
    r, g, b = (float(v) for v in out[1].split())
    assert 110 < r < 145 and 110 < g < 145 and 80 < b < 100
