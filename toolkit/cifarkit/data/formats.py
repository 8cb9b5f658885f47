"""Which files are images: every extension the installed Pillow can open and decode here.

Not a hand list: ``PIL.Image.registered_extensions()`` (all of Pillow's plugins, AVIF, QOI,
MPO, APNG, TGA, DDS, PBM/PNM, ICO, JPEG 2000 … and any plugin registered before the first
call) minus the formats Pillow can only *identify* in this installation:

- stub formats with no loader installed (BUFR, GRIB, HDF5, WMF/EMF outside Windows): Pillow
  names them but cannot read their pixels — and ``.h5`` is far more often a Keras model;
- MPEG: Pillow reads the header, has no decoder;
- EPS/PS while Ghostscript is not installed (Pillow runs it to render them);
- save-only formats (PDF, Palm).

HEIF/HEIC (phone photos) comes from the ``pillow-heif`` plugin, registered by
``register_plugins`` before the scan and before every decode (decoder processes and Ray
workers import this module afresh); where it is not installed, ``.heic`` files are skipped
with that reason.

Those are counted as skipped with their reason (``SkippedFiles``), so "no images found" can
say why. The set is computed once, on first use (importing every Pillow plugin costs ~50 ms).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

# Opened through another plugin: MPO files are opened by the JPEG plugin.
_OPENED_VIA = {"MPO": "JPEG"}
_NO_DECODER = {"MPEG": "Pillow identifies MPEG files but has no decoder for them"}

_HEIF_EXTENSIONS = (".heic", ".heics", ".heif", ".heifs", ".hif")
_HEIF_MISSING = "HEIF/HEIC needs the pillow-heif package, and it is not installed"

_extensions: frozenset[str] | None = None
_undecodable: dict[str, str] | None = None
_heif: bool | None = None


def register_plugins() -> bool:
    """Register pillow-heif's HEIF opener with Pillow, once per process; False where the
    package is missing. Idempotent and cheap after the first call."""
    global _heif
    if _heif is None:
        try:
            import pillow_heif
        except ImportError:
            _heif = False
        else:
            pillow_heif.register_heif_opener()
            _heif = True
    return _heif


def _scan() -> tuple[frozenset[str], dict[str, str]]:
    from PIL import EpsImagePlugin, Image, ImageFile

    heif = register_plugins()
    Image.init()
    good: set[str] = set()
    bad: dict[str, str] = {}
    for ext, fmt in Image.registered_extensions().items():
        ext = ext.lower()
        opener = Image.OPEN.get(_OPENED_VIA.get(fmt, fmt))
        if opener is None:
            bad[ext] = f"Pillow can write {fmt} files but not read them"
        elif fmt in _NO_DECODER:
            bad[ext] = _NO_DECODER[fmt]
        elif (isinstance(opener[0], type) and issubclass(opener[0], ImageFile.StubImageFile)
              and opener[0]._handler is None):  # noqa: SLF001 - the documented stub hook
            bad[ext] = f"Pillow has no loader for {fmt} files here (a stub plugin)"
        elif fmt == "EPS" and not EpsImagePlugin.has_ghostscript():
            bad[ext] = "Pillow needs Ghostscript for EPS/PS files, and it is not installed"
        else:
            good.add(ext)
    if not heif:
        bad.update(dict.fromkeys(_HEIF_EXTENSIONS, _HEIF_MISSING))
    return frozenset(good), bad


def image_extensions() -> frozenset[str]:
    """The walkable extensions (lower case, with the dot): Pillow opens and decodes them."""
    global _extensions, _undecodable
    if _extensions is None:
        _extensions, _undecodable = _scan()
    return _extensions


def undecodable_extensions() -> dict[str, str]:
    """Extensions Pillow knows but cannot decode here → why (for skip messages)."""
    image_extensions()
    assert _undecodable is not None
    return _undecodable


def __getattr__(name: str) -> frozenset[str]:  # IMAGE_EXTENSIONS, computed on first use
    if name == "IMAGE_EXTENSIONS":
        return image_extensions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True for file names with an image extension (case-insensitive)."""
    # os.path, not pathlib: called once per file when listing 60,000 images.
    return os.path.splitext(os.fspath(path))[1].lower() in (_extensions or image_extensions())


@dataclass
class SkippedFiles:
    """Files a walk left out for their extension: how many, by extension. Feed it the names
    (``add``) or let ``skipped_files`` walk a folder; ``describe()`` is the sentence for a
    summary or for "no images found"."""

    by_extension: Counter[str] = field(default_factory=Counter)

    def add(self, name: str | os.PathLike[str]) -> None:
        ext = os.path.splitext(os.fspath(name))[1].lower()
        self.by_extension[ext or "no extension"] += 1

    @property
    def count(self) -> int:
        return sum(self.by_extension.values())

    def describe(self, limit: int = 5) -> str:
        """E.g. ``12 files skipped as non-images (.txt ×10; .eps ×2: Pillow needs
        Ghostscript …)``; empty when nothing was skipped."""
        if not self.count:
            return ""
        why = undecodable_extensions()
        parts = []
        for ext, n in self.by_extension.most_common(limit):
            part = f"{ext} ×{n}"
            parts.append(f"{part}: {why[ext]}" if ext in why else part)
        if len(self.by_extension) > limit:
            parts.append(f"{len(self.by_extension) - limit} more extensions")
        noun = "file" if self.count == 1 else "files"
        return f"{self.count} {noun} skipped as non-images ({'; '.join(parts)})"


def skipped_files(folder: str | os.PathLike[str], *, recursive: bool = True) -> SkippedFiles:
    """The files under ``folder`` that a walk skips for their extension (names starting with
    ``.`` are skipped unseen, as walks do). For the message when a folder yielded no images:
    ``f"no images found: {skipped_files(folder).describe()}"``."""
    skipped = SkippedFiles()
    stack, seen = [os.fspath(folder)], set()
    while stack:
        top = stack.pop()
        try:
            st = os.stat(top)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            entries = list(os.scandir(top))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if recursive:
                    stack.append(entry.path)
            elif not is_image_path(entry.name):
                skipped.add(entry.name)
    return skipped

