"""Listing in pieces: the driver plans *units* (a few per argument), workers list them.

``inputs.iter_inputs`` lists everything in one process; at scale that process (the Ray
driver) would hold every path. Here the driver only looks at the arguments and the top level
of each folder argument, and turns them into units, each listed by one worker with the same
rules (``inputs``: sorted walk, image extensions, hidden names skipped, unreadable folders and
globs that match nothing as error items):

- a folder: one ``files`` unit (the images directly in it) and, when recursive, one ``tree``
  unit per sub-folder (walked whole by its worker): partitioned by sub-folder;
- a glob pattern: one ``glob`` unit (its worker expands the pattern and walks the folders it
  matches; one worker knows whether the pattern matched nothing, the no-match row needs that);
- a file, anything else, and stdin's lines that are not folders: ``paths`` units of up to
  ``PATHS_PER_UNIT`` names (stdin is the driver's by nature: its lines pass through it).

A folder reached twice is listed once, as locally (the cycle guard): the driver skips an
argument folder already planned, and each worker's walk starts with the other units' roots
marked as seen, so a symlink to a sibling sub-folder is not entered (its files are listed
under the sub-folder's own name). A link from deep inside one sub-folder into another
sub-folder's middle is the one case listed twice (each worker guards its own walk only).

Each listed item gets its unit's number and its place in the unit (``seq``): the part files
of the Ray engine are named from them, so a retried task writes the same part again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from cifarkit.engines.inputs import (
    GLOB_CHARS,
    InputItem,
    OnSkip,
    _expand,
    _walk,
    arguments,
)

PATHS_PER_UNIT = 4096  # literal names (arguments, stdin lines) per ``paths`` unit
Key = tuple[int, int]  # (st_dev, st_ino) of a folder


@dataclass(frozen=True)
class Unit:
    """One piece of listing: ``kind`` is ``tree``, ``files``, ``glob`` or ``paths``;
    ``paths`` holds the folder / pattern (one name) or the literal names."""

    index: int
    kind: str
    paths: tuple[str, ...]
    key: Key | None = None  # the folder's own key (tree units), not skipped by its walk


def _folder_key(path: str) -> Key | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _subfolders(root: str) -> list[str] | None:
    """The non-hidden sub-folders of ``root``, sorted; None when it cannot be listed (its
    unit's worker then reports why, as the walk does)."""
    try:
        with os.scandir(root) as it:
            found = []
            for entry in it:  # only the folders are kept: a flat folder costs no memory here
                try:
                    if not entry.name.startswith(".") and entry.is_dir():
                        found.append(entry.path)
                except OSError:
                    continue
    except OSError:
        return None
    return sorted(found, key=os.path.basename)


class Planner:
    """Units for the arguments, in order; ``keys`` are every planned folder's (the cycle
    guard each worker starts from)."""

    def __init__(self, recursive: bool) -> None:
        self.recursive = recursive
        self.keys: set[Key] = set()
        self.units: list[Unit] = []
        self._literal: list[str] = []

    def _add(self, kind: str, paths: Iterable[str], key: Key | None = None) -> None:
        self._flush()
        self.units.append(Unit(len(self.units), kind, tuple(paths), key))

    def _flush(self) -> None:
        if self._literal:
            batch, self._literal = self._literal, []
            self.units.append(Unit(len(self.units), "paths", tuple(batch)))

    def literal(self, path: str) -> None:
        self._literal.append(path)
        if len(self._literal) >= PATHS_PER_UNIT:
            self._flush()

    def folder(self, root: str) -> None:
        key = _folder_key(root)
        if key is not None and key in self.keys:
            return  # already planned: listed once
        subs = _subfolders(root) if self.recursive else []
        if subs is None:  # cannot be listed: one walk, whose worker says why
            self._add("tree", [root], key)
            return
        if key is not None:
            self.keys.add(key)
        self._add("files", [root], key)
        for sub in subs:
            sub_key = _folder_key(sub)
            if sub_key is not None and sub_key in self.keys:
                continue
            if sub_key is not None:
                self.keys.add(sub_key)
            self._add("tree", [sub], sub_key)

    def argument(self, arg: str, literal: bool) -> None:
        """One argument (``literal``: a stdin line, never a pattern), as ``inputs._expand``
        sorts them out; a URI (``scheme://``) by ``plan_uri``."""
        from cifarkit.engines.parts import is_uri

        if is_uri(arg):
            plan_uri(self, arg)
        elif os.path.isdir(arg):
            self.folder(arg)
        elif literal or os.path.lexists(arg) or not (GLOB_CHARS & set(arg)):
            self.literal(arg)
        else:
            self._add("glob", [arg])

    def finish(self) -> list[Unit]:
        self._flush()
        return self.units


def plan_units(sources: Iterable[str], *, recursive: bool = True,
               stdin: TextIO | None = None) -> tuple[list[Unit], frozenset[Key]]:
    """The units for ``sources`` (``inputs.iter_inputs``'s arguments) and the folder keys
    every worker's walk starts from."""
    planner = Planner(recursive)
    for arg, literal in arguments(sources, stdin):
        planner.argument(arg, literal)
    return planner.finish(), frozenset(planner.keys)


def list_unit(unit: Unit, recursive: bool, keys: frozenset[Key],
              on_skip: OnSkip) -> Iterator[InputItem]:
    """The inputs of one unit, by ``inputs``' rules (on a worker)."""
    if unit.kind.startswith("uri-"):
        yield from list_uri(unit, on_skip)
        return
    seen = set(keys)
    if unit.key is not None:
        seen.discard(unit.key)  # its own root: entered
    kind, paths = unit.kind, unit.paths
    if kind == "tree":
        yield from _walk(paths[0], recursive, seen, on_skip)
    elif kind == "files":
        yield from _walk(paths[0], False, seen, on_skip)
    elif kind == "glob":  # a pattern that matches nothing: the no-match item
        yield from _expand(paths[0], recursive, seen, False, on_skip)
    else:
        from cifarkit.engines.parts import is_uri

        for path in paths:
            if is_uri(path):
                yield InputItem(path)
            else:
                yield from _expand(path, recursive, seen, True, on_skip)




# --- URIs (object stores, anything pyarrow or fsspec opens) ------------------------------------


def _uri_parts(uri: str) -> tuple[Any, str, str]:
    """(filesystem, path inside it, ``scheme://``)."""
    from cifarkit.engines.ray_cluster import resolve_filesystem

    fs, path = resolve_filesystem(uri)
    return fs, path.rstrip("/"), uri[: uri.index("://") + 3]


def plan_uri(planner: Planner, uri: str) -> None:
    """A URI prefix: one ``uri-files`` unit (the objects directly under it) and one
    ``uri-tree`` unit per sub-prefix (listed whole by its worker); an object: a literal."""
    import pyarrow.fs as pafs

    fs, base, scheme = _uri_parts(uri)
    info = fs.get_file_info(base)
    if info.type != pafs.FileType.Directory:
        planner.literal(uri)  # an object, or nothing there: its row says which
        return
    planner._add("uri-files", [uri])
    children = fs.get_file_info(pafs.FileSelector(base, recursive=False))
    for sub in sorted(i.path for i in children if i.type == pafs.FileType.Directory):
        if not os.path.basename(sub).startswith("."):
            planner._add("uri-tree", [scheme + sub])


def list_uri(unit: Unit, on_skip: OnSkip) -> Iterator[InputItem]:
    """The objects of a ``uri-files`` / ``uri-tree`` unit, sorted, by the local rules
    (names starting with ``.`` skipped unseen, image extensions only)."""
    import pyarrow.fs as pafs

    from cifarkit.data.formats import is_image_path

    fs, base, scheme = _uri_parts(unit.paths[0])
    selector = pafs.FileSelector(base, recursive=unit.kind == "uri-tree", allow_not_found=True)
    infos = fs.get_file_info(selector)
    for path in sorted(i.path for i in infos if i.type == pafs.FileType.File):
        rel = path[len(base):].lstrip("/")
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        if is_image_path(path):
            yield InputItem(scheme + path)
        else:
            on_skip(scheme + path)


__all__ = ["PATHS_PER_UNIT", "Planner", "Unit", "list_unit", "list_uri", "plan_units", "plan_uri"]
