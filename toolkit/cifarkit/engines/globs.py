"""A glob pattern expanded in parts, by the first-level folder its matches start in, each part
giving exactly the strings ``glob.glob(pattern, recursive=True)`` gives for it (the local
engine's expansion: the same names, joins, hidden-name rules and repeats).

``glob`` splits a pattern at its last separator and expands the folder part first, so every
match is ``os.path.join(base, first, ...)``: ``base`` is the longest leading part without
magic (as ``glob`` splits it), ``first`` one entry of ``base``. The matches are grouped by
``first``:

- ``families``: the folders of ``base`` that can start a match, in groups whose matches are a
  contiguous run of ``sorted(glob.glob(...))`` (``b`` and ``b-2`` are one group: ``b-2``
  sorts between ``b`` and ``b/x``), so the order of folder matches, which the walks' cycle
  guard depends on, is kept between units as well as inside them;
- ``sub_matches``: the matches of one group, expanded with ``glob`` below its folders;
- ``top_matches``: the others (``base/`` itself, which ``**`` matches, and matches that are
  entries of ``base`` but not one of its folders), from one streaming pass over ``base``.
"""

from __future__ import annotations

import fnmatch
import glob
import itertools
import os
from collections.abc import Iterable

RECURSIVE = "**"


def _hidden(name: str) -> bool:
    return name[:1] == "."


def _glob(pattern: str) -> list[str]:
    return glob.glob(pattern, recursive=True)


def split(pattern: str) -> tuple[str, list[str]]:
    """(``base``, the components after it), as ``glob._iglob`` splits them."""
    dirname, basename = os.path.split(pattern)
    if dirname and dirname != pattern and glob.has_magic(dirname):
        base, comps = split(dirname)
        return base, [*comps, basename]
    return dirname, [basename]


def can_start(name: str, comps: list[str]) -> bool:
    """Whether a folder ``name`` of ``base`` can be the first component of a match."""
    first, rest = comps[0], comps[1:]
    if first == RECURSIVE:  # one or more folders (never hidden ones), or none, then ``rest``
        return not _hidden(name) or (bool(rest) and can_start(name, rest))
    if glob.has_magic(first):
        return bool(fnmatch.filter([name], first)) and (_hidden(first) or not _hidden(name))
    return name == first


def _itself(base: str, comps: list[str]) -> list[str]:
    """The matches that are ``base`` itself (``base/``): ``**`` as zero folders."""
    first, rest = comps[0], comps[1:]
    if first == RECURSIVE:  # glob yields '' for ``**`` without looking
        return _itself(base, rest) if rest else [os.path.join(base, "")]
    if not first and os.path.isdir(base):  # a trailing separator: folders only
        return [os.path.join(base, "")]
    return []


def _under(base: str, comps: list[str], name: str, is_dir: bool) -> list[str]:
    """The matches whose first component after ``base`` is the entry ``name``."""
    first, rest = comps[0], comps[1:]
    below = os.path.join(base, glob.escape(name))
    if first == RECURSIVE:
        found = _under(base, rest, name, is_dir) if rest else []  # ``**`` as zero folders
        if _hidden(name):
            return found
        if rest:
            return found + (_glob(os.path.join(below, RECURSIVE, *rest)) if is_dir else [])
        found.append(os.path.join(base, name))  # every entry, then below it
        if is_dir:
            itself = os.path.join(base, name, "")  # glob's own spelling: base/name
            found += [m for m in _glob(os.path.join(below, RECURSIVE)) if m != itself]
        return found
    if glob.has_magic(first):
        if not can_start(name, comps) or (rest and not is_dir):  # folders only before rest
            return []
    elif name != first:
        return []
    return _below(base, name, rest) if rest else [os.path.join(base, name)]


def _below(base: str, name: str, rest: list[str]) -> list[str]:
    """``glob`` of ``base/name/rest``. ``glob`` takes a pattern's leading literal folders on
    trust (``x/**`` gives ``x/`` even with no ``x``) but checks those that follow a magic
    component: the literal folders leading ``rest`` followed ``name``'s, so they are checked."""
    lead = list(itertools.takewhile(lambda c: not glob.has_magic(c), rest))
    if len(lead) < len(rest) and lead and not os.path.lexists(os.path.join(base, name, *lead)):
        return []
    return _glob(os.path.join(base, glob.escape(name), *rest))


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def families(pattern: str) -> list[tuple[str, ...]] | None:
    """The folders of ``base`` that can start a match, sorted, in contiguous groups; None
    when ``base`` cannot be listed (then the pattern is expanded whole)."""
    base, comps = split(pattern)
    try:
        with os.scandir(base or os.curdir) as it:
            names = sorted(e.name for e in it if _is_dir(e) and can_start(e.name, comps))
    except OSError:
        return None
    groups: list[list[str]] = []
    for name in names:
        lead = groups[-1][0] if groups else None
        # 'b-2', 'b.x' sort between 'b' and 'b/…' (a char below '/' follows 'b'): b's group.
        if lead is not None and name.startswith(lead) and name[len(lead)] < "/":
            groups[-1].append(name)
        else:
            groups.append([name])
    return [tuple(g) for g in groups]


def sub_matches(pattern: str, names: Iterable[str]) -> list[str]:
    """The matches below the folders ``names`` of ``base`` (one group of ``families``)."""
    base, comps = split(pattern)
    return sorted(m for name in names for m in _under(base, comps, name, True))


def top_matches(pattern: str) -> list[str]:
    """The matches outside every group of ``families``: ``base`` itself and the entries of
    ``base`` that are not folders able to start a match (files, mostly)."""
    base, comps = split(pattern)
    found = _itself(base, comps)
    try:
        with os.scandir(base or os.curdir) as it:
            for entry in it:
                is_dir = _is_dir(entry)
                if not (is_dir and can_start(entry.name, comps)):
                    found += _under(base, comps, entry.name, is_dir)
    except OSError:
        pass
    return sorted(m for m in found if m)  # '' (``**`` in the working folder): glob drops it


def whole_matches(pattern: str) -> list[str]:
    """The pattern expanded in one piece (``base`` could not be listed when planning)."""
    return sorted(_glob(pattern))


__all__ = ["can_start", "families", "split", "sub_matches", "top_matches", "whole_matches"]
