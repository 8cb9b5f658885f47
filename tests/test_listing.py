"""``engines/listing.py``: the units the driver plans, listed one by one (as Ray's workers do),
give exactly the inputs ``inputs.iter_inputs`` gives, by the same rules; the driver holds no
file names of a folder, only its sub-folders."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from cifarkit.engines.inputs import iter_inputs
from cifarkit.engines.listing import (
    CENSUS_KINDS,
    PATHS_PER_UNIT,
    census,
    list_unit,
    plan_units,
    settle,
)


def _tree(root: Path) -> Path:
    """Class folders, a nested one, hidden names, non-images, a non-UTF-8 name, a symlink to
    a sibling folder and a symlink cycle."""
    for sub in ("cat", "dog", "dog/puppies", "bird", ".hidden", "empty"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(3):
        (root / "cat" / f"{i}.png").write_bytes(b"x")
        (root / "dog" / f"{i}.JPG").write_bytes(b"x")
        (root / "dog" / "puppies" / f"{i}.webp").write_bytes(b"x")
    (root / "top.png").write_bytes(b"x")
    (root / "notes.txt").write_text("no")
    (root / "bird" / ".secret.png").write_bytes(b"x")
    (root / ".hidden" / "h.png").write_bytes(b"x")
    Path(os.fsdecode(os.fsencode(root / "bird") + b"/non\xffutf8.png")).write_bytes(b"x")
    (root / "zlink").symlink_to(root / "cat")  # a sibling again: listed once
    (root / "dog" / "puppies" / "loop").symlink_to(root / "dog")  # a cycle
    return root


def _listed(sources, recursive=True, stdin=None):
    """As the Ray engine lists: plan, census, settle, then each unit on its own (in reverse:
    no unit may depend on another having been listed first)."""
    units, roots = plan_units(sources, recursive=recursive, stdin=stdin)
    counts = census([u for u in units if u.kind in CENSUS_KINDS], recursive, roots)
    units = settle(units, counts)
    items, skipped = [], []
    for unit in reversed(units):
        items += list(list_unit(unit, recursive, roots, skipped.append))
    return units, items, skipped


def _local(sources, recursive=True, stdin=None):
    skipped = []
    return list(iter_inputs(sources, recursive=recursive, stdin=stdin,
                            on_skip=skipped.append)), skipped


@pytest.mark.parametrize("recursive", [True, False])
def test_units_list_what_iter_inputs_lists(tmp_path, recursive):
    root = _tree(tmp_path / "t")
    units, items, skipped = _listed([str(root)], recursive)
    want, want_skipped = _local([str(root)], recursive)
    assert sorted(items, key=lambda i: i.path) == sorted(want, key=lambda i: i.path)
    assert sorted(skipped) == sorted(want_skipped) == [str(root / "notes.txt")]
    # one unit for the folder's own files, one per non-hidden sub-folder (recursive)
    kinds = [(u.kind, os.path.basename(u.paths[0])) for u in units]
    if recursive:
        assert kinds == [("files", "t"), ("tree", "bird"), ("tree", "cat"), ("tree", "dog"),
                         ("tree", "empty")]  # zlink is cat again: not a unit of its own
        assert len(items) == 3 + 3 + 3 + 1 + 1  # cat, dog, puppies, top.png, the odd name
    else:
        assert kinds == [("files", "t")] and [i.path for i in items] == [str(root / "top.png")]


def test_globs_files_missing_names_and_stdin_by_the_local_rules(tmp_path):
    root = _tree(tmp_path / "t")
    sources = [str(root / "*" / "*.png"), str(root / "nothing*.png"), str(root / "top.png"),
               str(root / "missing.png"), str(root / "d*g"), "-"]
    stdin = io.StringIO(f"{root / 'cat'}\n\n{root / 'weird[1].png'}\n")
    units, items, skipped = _listed(sources, stdin=stdin)
    want, want_skipped = _local(sources, stdin=io.StringIO(stdin.getvalue()))
    key = lambda i: (i.path, i.error or "")  # noqa: E731
    assert sorted(items, key=key) == sorted(want, key=key)
    assert sorted(skipped) == sorted(want_skipped)
    no_match = [i for i in items if i.reason == "no-match"]
    assert [i.path for i in no_match] == [str(root / "nothing*.png")]
    assert {u.kind for u in units} == {"glob-top", "glob-sub", "paths", "files"}


def test_literal_names_come_in_bounded_units(tmp_path):
    names = [str(tmp_path / f"{i}.png") for i in range(PATHS_PER_UNIT + 5)]
    units, _ = plan_units(names)
    assert [len(u.paths) for u in units] == [PATHS_PER_UNIT, 5]


def test_an_unreadable_folder_is_one_error_row_from_its_unit(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every folder")
    root = _tree(tmp_path / "t")
    (root / "cat").chmod(0)
    try:
        _, items, _ = _listed([str(root)])
        want, _ = _local([str(root)])
    finally:
        (root / "cat").chmod(0o755)
    assert sorted(items, key=lambda i: i.path) == sorted(want, key=lambda i: i.path)
    assert any(i.reason == "unreadable" for i in items)


def _same(sources, recursive=True):
    """The units list what the local walk lists: the same items (paths, errors, repeats) and
    the same skipped files."""
    units, items, skipped = _listed(sources, recursive)
    want, want_skipped = _local(sources, recursive)
    key = lambda i: (i.path, i.error or "")  # noqa: E731
    assert sorted(items, key=key) == sorted(want, key=key), sources
    assert sorted(skipped) == sorted(want_skipped), sources
    return units, items


@pytest.mark.parametrize("recursive", [True, False])
def test_a_glob_is_listed_in_first_level_folder_units_as_the_local_engine_lists_it(
        tmp_path, recursive):
    root = _tree(tmp_path / "t")
    for sub in ("cat", "dog", "bird"):
        (root / sub / f"x-{sub}.png").write_bytes(b"x")
    for pattern in ("**/*.png", "*/x*.png", "*", "**", "d*/**/*.webp", "*/puppies/*",
                    "*/nothing*.png", "nothing*/x.png", "**/.hidden/*", "*/"):
        _same([str(root / pattern)], recursive)
    units, items = _same([str(root / "**" / "*.png")], recursive)
    # ``base/**`` splits like the folder: one unit per sub-folder, holding its name only
    assert [(u.kind, u.paths[1:]) for u in units] == [
        ("glob-top", ()), *[("glob-sub", (n,)) for n in ("bird", "cat", "dog", "empty",
                                                         "zlink")]]
    # the no-match row once, from the pattern's first unit, though five units matched nothing
    units, items = _same([str(root / "*" / "nothing*.png")], recursive)
    assert len(units) == 6 and [(i.path, i.reason) for i in items] == [
        (str(root / "*" / "nothing*.png"), "no-match")]
    assert units[0].no_match and not any(u.no_match for u in units[1:])


def test_a_glob_over_a_flat_folder_gives_the_driver_no_file_names(tmp_path):
    flat = tmp_path / "flat"
    (flat / "sub").mkdir(parents=True)
    for i in range(500):
        (flat / f"{i}.png").write_bytes(b"x")
    for pattern in ("*.png", "**/*.png", "*"):
        units, roots = plan_units([str(flat / pattern)])
        assert sum(len(u.paths) for u in units) <= 3 and not roots
        assert len(_same([str(flat / pattern)])[1]) >= 500


def _cross_linked(root: Path) -> Path:
    """Folders reached twice: a link to a later sibling, one into the middle of another
    sub-folder, two to one folder outside the input, one into a hidden folder, and a loop."""
    for name in ("a/1.png", "b/2.png", "b/deep/3.png", "c/4.png", ".h/5.png", "../out/6.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    for link, target in (("a/tob", "../b"), ("c/todeep", "../b/deep"), ("a/out", "../../out"),
                         ("c/out", "../../out"), ("a/hid", "../.h"), ("b/deep/up", "../..")):
        (root / link).symlink_to(target)
    return root


@pytest.mark.parametrize("recursive", [True, False])
def test_cross_linked_folders_are_listed_once_where_the_local_walk_lists_them(
        tmp_path, recursive):
    root = _cross_linked(tmp_path / "in")
    r = str(root)
    # (no ``**``: glob follows the loop to the kernel's 40-link limit along every path into it)
    for sources in ([r, f"{r}/b/deep"], [f"{r}/b/deep", r], [r, f"{r}/*/*"], [f"{r}/*/*", r],
                    [f"{r}/*", f"{r}/b"], [f"{r}/c", r], [f"{r}/*/*/*.png"]):
        _same(sources, recursive)
    units, items = _same([r], recursive)
    paths = sorted(os.path.relpath(i.path, r) for i in items)
    if recursive:  # b is listed at its first place, a/tob (before b itself); out once, at a/
        assert paths == ["a/1.png", "a/hid/5.png", "a/out/6.png", "a/tob/2.png",
                         "a/tob/deep/3.png", "c/4.png"]
        b = next(u for u in units if u.paths == (f"{r}/b",))
        assert b.key in b.prune  # b's own unit lists nothing
    else:
        assert paths == []
