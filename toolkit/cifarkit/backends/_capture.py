"""Keeping onnxruntime's own printing out of the user's terminal (and into our errors)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def captured_output() -> Iterator[io.StringIO]:
    """Capture what onnxruntime prints while a session is created (C++ log lines on fd 2,
    Python ``print``s of its fallback code on stdout, warnings), so the library prints
    nothing and a ProviderError can quote it. Redirects the process's fds 1 and 2 for the
    duration: call it only around short, single-threaded steps."""
    text = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    saved: list[tuple[int, int]] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                    os.dup2(tmp.fileno(), fd)
                except OSError:
                    pass
            with (
                warnings.catch_warnings(record=True) as caught,
                contextlib.redirect_stdout(text),
                contextlib.redirect_stderr(text),
            ):
                warnings.simplefilter("always")
                yield text
            for w in caught:
                text.write(f"{w.category.__name__}: {w.message}\n")
        finally:
            for fd, dup in saved:
                os.dup2(dup, fd)
                os.close(dup)
            tmp.seek(0)
            text.write(tmp.read().decode("utf-8", "replace"))


def clean_log(text: str, limit: int = 600) -> str:
    """The useful part of onnxruntime's log: no ANSI colours, timestamps or blank lines."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = []
    for line in text.splitlines():
        line = re.sub(r"^\d{4}-\d\d-\d\d [\d:.]+ \[\w:onnxruntime:[^\]]*\]\s*", "", line).strip()
        if line and not line.startswith("****") and line not in lines:
            lines.append(line)
    out = " | ".join(lines)
    return out if len(out) <= limit else out[: limit - 1] + "…"
