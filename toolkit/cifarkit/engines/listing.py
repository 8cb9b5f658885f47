"""Listing in pieces: the driver plans *units* (a few per argument), workers list them.

``inputs.iter_inputs`` lists everything in one process; at scale that process (the Ray
driver) would hold every path. Here the driver only looks at the arguments and the top level
of each folder argument and glob pattern, and turns them into units, each listed by one
worker with the same rules (``inputs``: sorted walk, image extensions, hidden names skipped,
unreadable folders and globs that match nothing as error items):

- a folder: one ``files`` unit (the images directly in it) and, when recursive, one ``tree``
  unit per sub-folder (walked whole by its worker): partitioned by sub-folder;
- a glob pattern: a ``glob-top`` unit and one ``glob-sub`` unit per group of first-level
  folders its matches can start in (``globs``: each gives exactly ``glob.glob``'s matches
  there); ``glob`` (expanded whole) when the pattern's base cannot be listed;
- a file, anything else, and stdin's lines that are not folders: ``paths`` units of up to
  ``PATHS_PER_UNIT`` names (stdin is the driver's by nature: its lines pass through it).

**A folder reached twice** (symlinks, nested arguments, a glob matching a folder already
walked) is listed once, where the local walk lists it: at its first place in the order of
the arguments. The units are planned in that order, each a contiguous run of it, so "first
place" is "the earliest unit that enters it". Before listing, a *census* walks every unit
that enters folders (``census``, a Ray task each, in parallel: folders only are kept) and
``settle`` gives each unit the folders an earlier unit enters (``prune``; empty without
cross-links), which its walk then treats as already seen. A walk's cycle guard also holds the
earlier units' root folders, never later ones: a link to a later unit's folder is followed,
as locally, and that unit then lists nothing. The census is also what tells a glob's
``glob-top`` unit that the whole pattern matched nothing (``no_match``: its error item).

Each listed item gets its unit's number and its place in the unit (``seq``): the part files
of the Ray engine are named from them, so a retried task writes the same part again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, TextIO

from cifarkit.engines import globs
from cifarkit.engines.inputs import (
    GLOB_CHARS,
    InputItem,
    OnSkip,
    _expand,
    _ignore,
    _matched,
    _walk,
    arguments,
    no_match,
)

PATHS_PER_UNIT = 4096  # literal names (arguments, stdin lines) per ``paths`` unit
Key = tuple[int, int]  # (st_dev, st_ino) of a folder
Roots = Mapping[Key, int]  # a files / tree unit's root folder → the unit's index
GLOB_KINDS = ("glob", "glob-top", "glob-sub")
CENSUS_KINDS = ("tree", *GLOB_KINDS)  # the units whose walks enter folders found on the way


@dataclass(frozen=True)
class Unit:
    """One piece of listing: ``kind`` is ``tree``, ``files``, ``glob``, ``glob-top``,
    ``glob-sub``, ``paths``, ``uri-files`` or ``uri-tree``; ``paths`` holds the folder /
    pattern (one name; ``glob-sub``: then its first-level folders) or the literal names."""

    index: int
    kind: str
    paths: tuple[str, ...]
    key: Key | None = None  # the folder's own key (files and tree units)
    prune: frozenset[Key] = frozenset()  # folders an earlier unit enters (``settle``)
    no_match: bool = False  # glob-top: the whole pattern matched nothing (``settle``)


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
    """Units for the arguments, in order; ``roots``: each files / tree unit's root folder
    (a walk's cycle guard holds those of the units before it)."""

    def __init__(self, recursive: bool) -> None:
        self.recursive = recursive
        self.roots: dict[Key, int] = {}
        self.units: list[Unit] = []
        self._literal: list[str] = []

    def _add(self, kind: str, paths: Iterable[str], key: Key | None = None) -> None:
        self._flush()
        if key is not None:
            self.roots[key] = len(self.units)
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
        if key is not None and key in self.roots:
            return  # already planned: listed once
        subs = _subfolders(root) if self.recursive else []
        if subs is None:  # cannot be listed: one walk, whose worker says why
            self._add("tree", [root], key)
            return
        self._add("files", [root], key)
        for sub in subs:
            sub_key = _folder_key(sub)
            if sub_key is None or sub_key not in self.roots:
                self._add("tree", [sub], sub_key)

    def glob(self, pattern: str) -> None:
        groups = globs.families(pattern)
        if groups is None:
            self._add("glob", [pattern])
            return
        self._add("glob-top", [pattern])
        for names in groups:
            self._add("glob-sub", [pattern, *names])

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
            self.glob(arg)

    def finish(self) -> list[Unit]:
        self._flush()
        return self.units


def plan_units(sources: Iterable[str], *, recursive: bool = True,
               stdin: TextIO | None = None) -> tuple[list[Unit], dict[Key, int]]:
    """The units for ``sources`` (``inputs.iter_inputs``'s arguments) and their root
    folders. Before listing, ``census`` the ``CENSUS_KINDS`` and ``settle`` the units."""
    planner = Planner(recursive)
    for arg, literal in arguments(sources, stdin):
        planner.argument(arg, literal)
    return planner.finish(), planner.roots


class _Seen(set[Key]):
    """A unit's cycle guard: the folders its walk entered (the set itself), and as if
    entered already: the earlier units' roots and the folders they enter (``prune``)."""

    def __init__(self, unit: Unit, roots: Roots) -> None:
        super().__init__()
        self.index, self.roots, self.prune = unit.index, roots, unit.prune

    def __contains__(self, key: object) -> bool:
        return (set.__contains__(self, key) or key in self.prune
                or self.roots.get(key, self.index) < self.index)  # type: ignore[call-overload]


def _matches(unit: Unit) -> list[str]:
    pattern = unit.paths[0]
    if unit.kind == "glob-sub":
        return globs.sub_matches(pattern, unit.paths[1:])
    if unit.kind == "glob-top":
        return globs.top_matches(pattern)
    return globs.whole_matches(pattern)


def _items(unit: Unit, recursive: bool, seen: set[Key], on_skip: OnSkip,
           matches: list[str] | None) -> Iterator[InputItem]:
    kind, paths = unit.kind, unit.paths
    if kind == "tree":
        yield from _walk(paths[0], recursive, seen, on_skip)
    elif kind == "files":
        yield from _walk(paths[0], False, seen, on_skip)
    elif matches is not None:  # a glob's part; the no-match item once, from its first unit
        if unit.no_match or (unit.kind == "glob" and not matches):
            yield no_match(paths[0])
        yield from _matched(matches, recursive, seen, on_skip)
    else:
        from cifarkit.engines.parts import is_uri

        for path in paths:
            if is_uri(path):
                yield InputItem(path)
            else:
                yield from _expand(path, recursive, seen, True, on_skip)


def list_unit(unit: Unit, recursive: bool, roots: Roots,
              on_skip: OnSkip) -> Iterator[InputItem]:
    """The inputs of one (settled) unit, by ``inputs``' rules (on a worker)."""
    if unit.kind.startswith("uri-"):
        yield from list_uri(unit, on_skip)
        return
    matches = _matches(unit) if unit.kind in GLOB_KINDS else None
    yield from _items(unit, recursive, _Seen(unit, roots), on_skip, matches)


def census(units: Iterable[Unit], recursive: bool,
           roots: Roots) -> dict[int, tuple[Any, int]]:
    """Each unit's walk, as ``list_unit`` does it, keeping only the folders it enters (an
    (n, 2) uint64 array of keys) and, for a glob's part, how many matches it has."""
    import numpy as np

    found = {}
    for unit in units:
        seen = _Seen(unit, roots)
        matches = _matches(unit) if unit.kind in GLOB_KINDS else None
        for _ in _items(unit, recursive, seen, _ignore, matches):
            pass
        keys = np.array(sorted(seen), dtype=np.uint64).reshape(-1, 2)
        found[unit.index] = (keys, len(matches or ()))
    return found


def settle(units: list[Unit], counts: Mapping[int, tuple[Any, int]]) -> list[Unit]:
    """The units with their ``prune`` (the folders an earlier unit enters: ``census``'s, and a
    files unit's root) and a glob's ``no_match`` (no part of it matched)."""
    prune = _reached_before(units, counts)
    matched: dict[int, int] = {}  # glob-top unit → its pattern's matches
    head = None
    for unit in units:
        if unit.kind == "glob-top":
            head = unit.index
        elif unit.kind != "glob-sub":
            head = None
        if head is not None:
            matched[head] = matched.get(head, 0) + counts.get(unit.index, (None, 0))[1]
    return [replace(unit, prune=frozenset(prune.get(unit.index, ())),
                    no_match=matched.get(unit.index) == 0) for unit in units]


def _reached_before(units: list[Unit], counts: Mapping[int, tuple[Any, int]]
                    ) -> dict[int, set[Key]]:
    """unit index → the folders it enters that an earlier unit enters too."""
    import numpy as np

    keys, owners = [], []
    for unit in units:
        if unit.index in counts:
            found = counts[unit.index][0]
        elif unit.kind == "files" and unit.key is not None:  # enters its root only
            found = np.array([unit.key], dtype=np.uint64)
        else:
            continue
        keys.append(found.reshape(-1, 2))
        owners.append(np.full(len(keys[-1]), unit.index))
    if not keys:
        return {}
    key, owner = np.concatenate(keys), np.concatenate(owners)
    order = np.lexsort((owner, key[:, 1], key[:, 0]))  # by key, then by unit
    key, owner = key[order], owner[order]
    again = np.zeros(len(key), dtype=bool)
    again[1:] = (key[1:] == key[:-1]).all(axis=1)  # entered by an earlier unit as well
    reached: dict[int, set[Key]] = {}
    for index, dev, ino in zip(owner[again].tolist(), key[again, 0].tolist(),
                               key[again, 1].tolist(), strict=True):
        reached.setdefault(index, set()).add((dev, ino))
    return reached


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


__all__ = ["CENSUS_KINDS", "PATHS_PER_UNIT", "Planner", "Unit", "census", "list_unit", "list_uri",
           "plan_units", "plan_uri", "settle"]
