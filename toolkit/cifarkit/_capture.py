"""Keeping C libraries' own printing out of the user's terminal and in our errors and rows:
onnxruntime's log lines when a session is made (``captured_output``), libtiff's errors and
warnings while one image decodes (``c_stderr_lines``).

Below every layer (imports nothing from cifarkit), so data/ and backends/ both use it.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import threading
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


# c_stderr_lines: one sink file per process (a forked child makes its own: a shared file
# offset would mix two processes' lines), reused for every decode: five syscalls a call.
_sink_lock = threading.Lock()
_sink: tuple[int, int] | None = None  # (pid, fd)


def _sink_fd() -> int:
    global _sink
    if _sink is None or _sink[0] != os.getpid():
        with tempfile.TemporaryFile(mode="w+b") as tmp:  # unlinked at once; the fd keeps it
            _sink = (os.getpid(), os.dup(tmp.fileno()))
    return _sink[1]


@contextlib.contextmanager
def c_stderr_lines() -> Iterator[list[str]]:
    """What C code writes to file descriptor 2 during the block (libtiff prints its errors
    and warnings there, naming no file), as stripped non-blank lines in the yielded list,
    filled when the block ends. Cheap enough to wrap every image decode. The redirect is
    process-wide, so blocks are serialised by a lock; Python-level ``sys.stderr`` text is
    flushed first so that it is not counted. Where fd 2 cannot be redirected (closed), the
    block runs uncaptured and the list stays empty."""
    lines: list[str] = []
    with _sink_lock:
        with contextlib.suppress(AttributeError, OSError, ValueError):  # none, or closed
            sys.stderr.flush()
        try:
            fd = _sink_fd()
            saved = os.dup(2)
        except OSError:
            yield lines
            return
        try:
            os.dup2(fd, 2)
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            n = os.lseek(fd, 0, os.SEEK_END)
            if n:
                data = os.pread(fd, n, 0)
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                text = data.decode("utf-8", "replace")
                lines.extend(line.strip() for line in text.splitlines() if line.strip())
