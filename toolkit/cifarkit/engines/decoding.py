"""What a decoder process runs: files → pixels, or each file's error and its cause.

Kept apart from ``local`` (the pipeline) so that a decoder process, which starts with a fresh
Python, imports numpy, Pillow and ``data.images`` and nothing else: its start is what a
short run waits for. Both engines decode through ``decode_one``, so a file reads the same
in each.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from cifarkit.contract import DEFAULT_IMAGE_SIZE
from cifarkit.data.images import Decoded
from cifarkit.data.images import decode as decode_image
from cifarkit.engines.rows import DECODER_CRASH
from cifarkit.errors import ImageError


class FileResult(NamedTuple):
    """What decoding one file gave besides its pixels: the error and its category
    (``ImageError.reason``), or neither; and the warnings it caused either way."""

    error: str | None = None
    reason: str | None = None
    warnings: tuple[str, ...] = ()


def decode_one(
    decode: Callable[[Any], Decoded | np.ndarray], source: Any, name: str
) -> tuple[np.ndarray | None, FileResult]:
    """Decode one image (``source``: a path, or a file's bytes): the array or ``None``, and
    its ``FileResult``."""
    try:
        out = decode(source)
    except ImageError as exc:
        return None, FileResult(str(exc), exc.reason)
    except Exception as exc:  # a decoder bug must not end the run either
        return None, FileResult(f"{name}: cannot decode image: {type(exc).__name__}: {exc}",
                                DECODER_CRASH)
    if isinstance(out, Decoded):
        return out.array, FileResult(warnings=tuple(out.warnings))
    return out, FileResult()


def decode_chunk(
    paths: list[str], decode: Callable[[str], Decoded | np.ndarray] | None = None,
    size: int = DEFAULT_IMAGE_SIZE,
) -> tuple[np.ndarray, list[FileResult]]:
    """Decode ``paths`` to ``size``×``size``: the good images stacked, and per path its
    ``FileResult``."""
    decode = decode or functools.partial(decode_image, size=size)
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    results: list[FileResult] = []
    n = 0
    for p in paths:
        arr, result = decode_one(decode, p, p)
        results.append(result)
        if arr is not None:
            out[n] = arr
            n += 1
    return out[:n].copy() if n < len(paths) else out, results


def ping() -> bool:
    """A task whose answer says the process runs."""
    return True


def worker_init() -> None:
    """Set a decoder process up while the main process loads the model."""
    # Ctrl-C is the main process's to handle: it stops the pool. Workers that also took the
    # SIGINT would each print a KeyboardInterrupt traceback.
    import signal

    from PIL import Image

    from cifarkit.data import formats

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Pillow imports its format plugins (and we register HEIF) on the first decode: do it
    # now, so the first chunk does not wait for it.
    Image.init()
    formats.register_plugins()


__all__ = ["FileResult", "decode_chunk", "decode_one", "ping", "worker_init"]
