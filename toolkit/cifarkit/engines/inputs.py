"""Turning ``predict``'s arguments into a stream of image paths.

Each argument is, in the order given:

- ``-``: newline-separated paths read from stdin (each a file or a folder; blank lines
  skipped; no glob expansion, so names with ``*`` or ``[`` are taken literally);
- an existing folder: walked (recursively unless ``recursive=False``) in sorted order —
  entries of a folder sorted by name, a subfolder's images at its name's place; only
  files with an image extension (any case: every extension the installed Pillow opens,
  ``data.formats.is_image_path``) are taken, the others are skipped as non-images and
  reported to ``on_skip``; names starting with ``.`` are skipped unseen;
  symlinked folders are followed, but a folder already visited (same device and inode) is not
  entered again, so symlink cycles cannot loop and a linked folder is not listed twice;
- an existing file: taken as is, whatever its extension (the decoder reports non-images);
- a glob pattern (``*``, ``?``, ``[``): its matches in sorted order, folders walked (as
  folder arguments: recursively unless ``recursive=False``), files filtered by image
  extension (the others reported to ``on_skip``). ``**`` always matches any depth,
  ``recursive`` or not: whoever writes it asks for that. A pattern that matches nothing is
  reported as one failed input (reason ``no-match``);
- anything else: passed on, and reported by the decoder as missing.

The stream is lazy: a folder is listed when the walk reaches it, so memory does not grow
with the number of images (only with the number of folders, for the cycle guard).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

from cifarkit.data.formats import is_image_path
from cifarkit.engines.rows import NO_MATCH

GLOB_CHARS = frozenset("*?[")
OnSkip = Callable[[str], None]  # called with each file skipped as a non-image


def _ignore(path: str) -> None:
    pass


@dataclass(frozen=True)
class InputItem:
    """One input: a path to decode, or a problem found before decoding (``error``, with its
    category ``reason`` as rows have it)."""

    path: str
    error: str | None = None
    reason: str | None = None


def _walk(root: str, recursive: bool, seen: set[tuple[int, int]],
          on_skip: OnSkip = _ignore) -> Iterator[InputItem]:
    """Depth-first, sorted, iterative (no recursion limit on deep trees)."""
    stack: list[Iterator[os.DirEntry[str]]] = []

    def enter(folder: str) -> InputItem | None:
        try:
            st = os.stat(folder)
            key = (st.st_dev, st.st_ino)
            if key in seen:
                return None
            seen.add(key)
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            return InputItem(folder, f"{folder}: cannot list folder: {exc.strerror or exc}",
                             "unreadable")
        stack.append(iter(entries))
        return None

    if (problem := enter(root)) is not None:
        yield problem
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()  # follows symlinks
        except OSError:
            is_dir = False
        if is_dir:
            if recursive and (problem := enter(entry.path)) is not None:
                yield problem
        elif is_image_path(entry.name):
            # Broken symlinks and unreadable files included: the decoder reports them.
            yield InputItem(entry.path)
        else:
            on_skip(entry.path)


def _expand(arg: str, recursive: bool, seen: set[tuple[int, int]], literal: bool,
            on_skip: OnSkip) -> Iterator[InputItem]:
    if os.path.isdir(arg):
        yield from _walk(arg, recursive, seen, on_skip)
    elif os.path.lexists(arg) or literal or not (GLOB_CHARS & set(arg)):
        yield InputItem(arg)
    else:
        matches = sorted(glob.glob(arg, recursive=True))
        if not matches:
            yield no_match(arg)
        yield from _matched(matches, recursive, seen, on_skip)


def no_match(pattern: str) -> InputItem:
    return InputItem(pattern, f"{pattern}: no file matches this pattern", NO_MATCH)


def _matched(matches: Iterable[str], recursive: bool, seen: set[tuple[int, int]],
             on_skip: OnSkip) -> Iterator[InputItem]:
    """A pattern's matches, sorted: folders walked, image files taken, other files skipped."""
    for match in matches:
        if os.path.isdir(match):
            yield from _walk(match, recursive, seen, on_skip)
        elif is_image_path(match):
            yield InputItem(match)
        else:
            on_skip(match)


def arguments(sources: Iterable[str], stdin: TextIO | None) -> Iterator[tuple[str, bool]]:
    """``(argument, literal)`` for each of ``sources``, ``-`` replaced by the non-blank lines
    of ``stdin`` (default ``sys.stdin``), which are literal: never glob patterns."""
    for arg in sources:
        if arg != "-":
            yield os.fspath(arg), False
            continue
        if stdin is None:
            import sys

            stdin = sys.stdin
        for line in stdin:
            line = line.rstrip("\r\n")
            if line.strip():
                yield line, True


def iter_inputs(
    sources: Iterable[str], *, recursive: bool = True, stdin: TextIO | None = None,
    on_skip: OnSkip | None = None,
) -> Iterator[InputItem]:
    """The image paths named by ``sources`` (see the module docstring), lazily;
    ``on_skip(path)`` hears of each file left out as a non-image (e.g.
    ``data.formats.SkippedFiles().add``)."""
    on_skip = on_skip or _ignore
    seen: set[tuple[int, int]] = set()
    for arg, literal in arguments(sources, stdin):
        yield from _expand(arg, recursive, seen, literal, on_skip)


def count_inputs(sources: Iterable[str], *, recursive: bool = True) -> int:
    """How many items ``iter_inputs`` yields (walks again; not for ``-``)."""
    return sum(1 for _ in iter_inputs(sources, recursive=recursive))
