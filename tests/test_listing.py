"""``engines/listing.py``: the units the driver plans, listed one by one (as Ray's workers do),
give exactly the inputs ``inputs.iter_inputs`` gives, by the same rules; the driver holds no
file names of a folder, only its sub-folders."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from cifarkit.engines.inputs import iter_inputs
from cifarkit.engines.listing import PATHS_PER_UNIT, list_unit, plan_units


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
    units, keys = plan_units(sources, recursive=recursive, stdin=stdin)
    items, skipped = [], []
    for unit in units:
        items += list(list_unit(unit, recursive, keys, skipped.append))
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
    assert {u.kind for u in units} == {"glob", "paths", "files"}


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
