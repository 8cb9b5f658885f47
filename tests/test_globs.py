"""``engines/globs.py``: a pattern's parts (``top_matches`` and one ``sub_matches`` per group of
``families``) give exactly ``glob.glob(pattern, recursive=True)``: the same strings, repeats
included, and its folder matches in the same order when the parts are taken in turn."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

from cifarkit.engines import globs

PATTERNS = [
    "*", "**", "**/*", "**/*.png", "*/*.png", "b*/*", "*/**", "*/**/*.png", "**/**",
    "**/**/*.png", ".*/*", "**/.hh/*", "**/", "*/", "a/**", "a/**/", "[bc]*/*", "c[[]1]/*",
    "**/e/*", "**/e/**", "nothing*/x", "*.png", "**/x/*", "d/**/f", "*/*/*", "*/x/**",
    "*/x/**/*.png", "**/b/*", "?/*", "b/**/*.jpg", "*/e/f/", "**/e/f/**",
    "*[[]*/*", "b*/b/*", "**/n*", "*/n*.png", "[a]/**",
]


def _tree(root: Path) -> Path:
    """Names that sort between a folder and its contents (b, b-2, b.x, b0), magic characters,
    hidden names, links (a folder, a file, a broken one) and a non-UTF-8 name."""
    for name in ("a/1.png", "a/x/2.png", "b/3.jpg", "b-2/4.png", "b.x/5.png", "b0/6.png",
                 "top.png", "t.txt", ".h/7.png", "a/.hh/8.png", "c[1]/9.png", "c1/10.png",
                 "d/e/f/11.png", "sp ace/12.png", "b/b/13.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    (root / "alink").symlink_to("d/e")
    (root / "flink.png").symlink_to("top.png")
    (root / "broken.png").symlink_to("nowhere")
    Path(os.fsdecode(os.fsencode(root / "a") + b"/n\xffu.png")).write_bytes(b"x")
    return root


def _parts(pattern: str) -> list[list[str]]:
    groups = globs.families(pattern)
    assert groups is not None
    return [globs.top_matches(pattern), *(globs.sub_matches(pattern, g) for g in groups)]


@pytest.mark.parametrize("relative", [False, True])
def test_the_parts_give_globs_matches_with_its_folder_order(tmp_path, monkeypatch, relative):
    root = _tree(tmp_path / "in")
    if relative:
        monkeypatch.chdir(root)
    for pattern in PATTERNS + ["./**/*.png", "./*/x/*"]:
        full = pattern if relative else str(root / pattern)
        want = sorted(glob.glob(full, recursive=True))
        parts = _parts(full)
        assert sorted(m for part in parts for m in part) == want, pattern
        in_turn = [m for part in parts for m in part if os.path.isdir(m)]
        assert in_turn == [m for m in want if os.path.isdir(m)], pattern


def test_a_link_loop_under_double_star_ends_where_globs_does(tmp_path):
    """glob follows a loop until the path has too many links (ELOOP): so do the parts."""
    (tmp_path / "loop" / "in").mkdir(parents=True)
    (tmp_path / "loop" / "in" / "1.png").write_bytes(b"x")
    (tmp_path / "loop" / "in" / "again").symlink_to("..")
    for pattern in ("**/*.png", "*/**/*.png", "loop/*/*/*"):
        full = str(tmp_path / pattern)
        want = sorted(glob.glob(full, recursive=True))
        assert sorted(m for part in _parts(full) for m in part) == want
        assert len(want) > (10 if "**" in pattern else 0)


def test_families_group_names_that_sort_inside_a_folders_run(tmp_path):
    root = _tree(tmp_path / "in")
    assert globs.families(str(root / "b*" / "*")) == [("b", "b-2", "b.x"), ("b0",)]
    assert globs.families(str(root / "*.png")) == []  # flat: all in the top part
    assert globs.families(str(root / "missing" / "*")) is None  # expanded whole
    assert globs.whole_matches(str(root / "missing" / "**")) == [str(root / "missing") + "/"]
