"""Why an image did not decode: one category per real cause, named in the error message.

Pillow reports most failures as a bare ``OSError`` and prints libtiff's reasons on stderr,
naming no file; ``images.decode`` records both (Python warnings and the C-level lines) and this
module turns them into one ``ImageError`` whose ``reason`` is one of ``REASONS`` and whose
message reads ``NAME: <what the category means>: <the library's own words>`` (or just
``NAME: <cause>`` where our own words say it: ``empty file (0 bytes)``).

A decode that returned pixels while libtiff reported a *data error* (``Fax4Decode: Bad code
word``, ``TIFFFillStrip: Read error``) is an error too, reason ``corrupt``: libtiff fills the
rest of the strip with zeros and carries on, so the picture is partly made up, and a confident
label on it would be wrong in a way no one could see. libtiff's *warnings* (lines with
``Warning,``) stay warnings on the row.
"""

from __future__ import annotations

import re
from types import TracebackType

from cifarkit.errors import ImageError

REASONS = {
    "unreadable": "cannot read the file",
    "not-an-image": "not an image Pillow can read",
    "corrupt": "corrupt or truncated image",
    "unsupported": "uses a feature this Pillow build does not support",
    "missing-codec": "needs a codec or helper program that is not installed",
    "too-large": "image too large",
    "wrong-size": "wrong size for this data set",
}

_MISSING = re.compile(
    r"ghostscript|(?:de|en)coder \S+ not available|cannot find loader|not installed", re.I)
_UNSUPPORTED = re.compile(
    r"support is not configured|unsupported|not supported|unknown pixel mode|"
    r"not implemented|unknown (?:compression|raw mode|image mode)|cannot handle", re.I)
_BOMB = re.compile(r"Image size \((\d+) pixels\)")
# libtiff names the stream after Pillow's fake file name, not the user's file.
_TIFF_NAME = re.compile(r"^tempfile\.tif:\s*")


def image_error(name: object, reason: str, detail: str, *, explain: bool = True) -> ImageError:
    """``NAME: <category>: detail`` with ``reason`` attached; ``explain=False`` leaves the
    category out where ``detail`` says it already (``empty file (0 bytes)``)."""
    text = f"{REASONS[reason]}: {detail}" if explain else detail
    return ImageError(f"{name}: {text}", reason=reason)


def clean_c_lines(lines: list[str]) -> tuple[list[str], list[str]]:
    """libtiff's lines split into (errors, warnings), de-duplicated, Pillow's fake name off."""
    errors: list[str] = []
    warnings: list[str] = []
    for raw in lines:
        line = _TIFF_NAME.sub("", raw).rstrip(".")
        target = warnings if "Warning," in line else errors
        if line not in target:
            target.append(line)
    return errors, warnings


def raised_by_pillow(exc: BaseException) -> bool:
    """True if the exception came out of a Pillow module (a plugin choking on a malformed
    file), not out of cifarkit's own code (a bug, to be seen as one)."""
    tb: TracebackType | None = exc.__traceback__
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and str(last.tb_frame.f_globals.get("__name__", "")).startswith(
        "PIL.")


def too_large(name: object, exc: Exception, limit: int) -> ImageError:
    """One message with the one limit (Pillow's own quotes twice it past 2× the limit)."""
    m = _BOMB.search(str(exc))
    size = f"{int(m.group(1)):,} pixels, " if m else ""
    return image_error(name, "too-large", f"{size}over the decoder's limit of {limit:,} pixels "
                       "(decompression bomb guard: refused before decoding)")


def unidentified(name: object, possible: list[str]) -> ImageError:
    """No plugin opened the file. ``possible``: Pillow's "FMT opening failed. why" warnings
    (``Image.WARN_POSSIBLE_FORMATS``) of the plugins whose signature check matched the file —
    if one did, the file is that format with a feature or damage Pillow cannot get past."""
    from PIL import Image

    for text in possible:
        fmt, _, why = text.partition(" opening failed. ")
        if not why or Image.OPEN.get(fmt, (None, None))[1] is None:
            continue  # plugins without a signature check try every file: no evidence
        if "buffer of at least" in why:  # the signature check itself ran out of bytes
            continue
        if fmt == "TIFF" and why.isdigit():  # Pillow's KeyError on an unknown compression
            return image_error(name, "unsupported", f"TIFF compression {why} is not one "
                               "Pillow can decode")
        reason = "unsupported" if _UNSUPPORTED.search(why) else "corrupt"
        return image_error(name, reason, f"a {fmt} file Pillow cannot open: {why}")
    return image_error(name, "not-an-image", "no image format Pillow knows matches its "
                       "contents")


def classify(name: object, exc: Exception, c_errors: list[str]) -> ImageError:
    """The ``ImageError`` for an exception Pillow raised while opening or decoding ``name``,
    with libtiff's error lines of that decode (the real cause when Pillow only says
    ``decoder error -2``)."""
    if isinstance(exc, MemoryError):
        return image_error(name, "too-large", "not enough memory to decode it")
    text = str(exc) or type(exc).__name__
    if c_errors:
        cause = "; ".join(c_errors[:3])
        if _MISSING.search(cause):
            return image_error(name, "missing-codec", cause)
        reason = "unsupported" if _UNSUPPORTED.search(cause) else "corrupt"
        return image_error(name, reason, cause)
    if _MISSING.search(text):
        return image_error(name, "missing-codec", text)
    if _UNSUPPORTED.search(text):
        return image_error(name, "unsupported", text)
    if not isinstance(exc, OSError):  # a plugin's ValueError, struct.error … on bad bytes
        text = f"{type(exc).__name__}: {text}"
    return image_error(name, "corrupt", text)


def os_error(name: object, exc: OSError) -> ImageError:
    """Reading the file failed (before or while Pillow read it)."""
    if isinstance(exc, FileNotFoundError):
        return image_error(name, "unreadable", "file not found (missing or vanished)",
                           explain=False)
    if isinstance(exc, IsADirectoryError):
        return image_error(name, "unreadable", "is a directory, not an image", explain=False)
    if isinstance(exc, PermissionError):
        return image_error(name, "unreadable", "permission denied", explain=False)
    return image_error(name, "unreadable", exc.strerror or str(exc))
