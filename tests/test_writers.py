"""``engines/writers.py``: every format is valid UTF-8 that pandas, DuckDB and jq read
(non-UTF-8 names included), commits atomically, and leaves neither a partial file nor a temp
file when it fails, also when the failure is raised inside ``commit()``."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cifarkit.engines import writers
from cifarkit.engines.rows import Prediction
from cifarkit.engines.writers import open_writer

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

RAW = b"imgs/non\xffutf8.png"
ROWS = [
    Prediction(os.fsdecode(RAW), index=3, label="cat", confidence=0.75,
               top_k=[("cat", 0.75), ("dog", 0.25)], backend="onnxruntime", provider="cpu"),
    Prediction("imgs/ünï 日本.png", index=5, label="dog", confidence=0.5, top_k=[("dog", 0.5)],
               backend="onnxruntime", provider="cpu"),
    Prediction("imgs/bad.png", error="not an image Pillow can read"),
]


def _render(rows: list[Prediction], first: bool) -> str:
    lines = ["path\tlabel"] if first else []
    return "".join(f"{line}\n" for line in lines + [
        f"{p.display_path}\t{p.label or 'error'}" for p in rows])


def _write(fmt: str, target: Path) -> Path:
    """ROWS written to ``target`` in ``fmt``."""
    with open_writer(fmt, target=target) as out:
        for pred in ROWS:
            out.add(pred)
    return target


def _read(fmt: str, path: Path):
    if fmt == "csv":
        return pd.read_csv(path, keep_default_na=False)
    if fmt == "jsonl":
        return pd.read_json(path, lines=True)
    return pd.read_parquet(path)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_each_format_is_utf8_that_pandas_reads_and_keeps_the_exact_name(tmp_path, fmt):
    target = _write(fmt, tmp_path / f"out.{fmt}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    if fmt != "parquet":
        target.read_bytes().decode("utf-8")  # strict: the whole file is valid UTF-8
    df = _read(fmt, target)
    assert list(df["path"]) == ["imgs/non\\xffutf8.png", "imgs/ünï 日本.png", "imgs/bad.png"]
    assert base64.b64decode(df["path_bytes"][0]) == RAW
    assert all(pd.isna(x) or x == "" for x in df["path_bytes"][1:])  # only where it differs
    assert list(df["label"][:2]) == ["cat", "dog"] and df["backend"][0] == "onnxruntime"
    assert df["error"][2] == "not an image Pillow can read"


def _duckdb_read(fmt: str, path: Path) -> list[tuple]:
    duckdb = pytest.importorskip("duckdb")
    reader = {"csv": "read_csv", "jsonl": "read_json", "parquet": "read_parquet"}[fmt]
    return duckdb.sql(f"select path, path_bytes, label, error from {reader}('{path}') "
                      "order by path").fetchall()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_duckdb_reads_every_format_with_the_exact_name(tmp_path, fmt):
    rows = _duckdb_read(fmt, _write(fmt, tmp_path / f"out.{fmt}"))
    assert [r[0] for r in rows] == sorted(["imgs/non\\xffutf8.png", "imgs/ünï 日本.png",
                                           "imgs/bad.png"])
    raw = next(r[1] for r in rows if r[0] == "imgs/non\\xffutf8.png")
    assert base64.b64decode(raw) == RAW
    assert next(r[3] for r in rows if r[0] == "imgs/bad.png") == "not an image Pillow can read"


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_jq_reads_the_jsonl(tmp_path):
    target = _write("jsonl", tmp_path / "out.jsonl")
    got = subprocess.run(["jq", "-r", ".path_bytes // .path", str(target)], check=True,
                         capture_output=True, text=True).stdout.splitlines()
    assert base64.b64decode(got[0]) == RAW and got[1:] == ["imgs/ünï 日本.png", "imgs/bad.png"]


def test_table_writer_renders_blocks_into_a_utf8_file(tmp_path):
    target = tmp_path / "out.txt"
    with writers.TableWriter(_render, target, block=2) as out:
        for pred in ROWS:
            out.add(pred)
    assert target.read_text(encoding="utf-8").splitlines() == [
        "path\tlabel", "imgs/non\\xffutf8.png\tcat", "imgs/ünï 日本.png\tdog",
        "imgs/bad.png\terror"]


def test_streams_get_the_same_text_as_files(tmp_path):
    for fmt in ("csv", "jsonl"):
        stream = io.StringIO()
        with open_writer(fmt, stream=stream) as out, open_writer(
                fmt, target=tmp_path / fmt) as file_out:
            for pred in ROWS:
                out.add(pred)
                file_out.add(pred)
        assert stream.getvalue() == (tmp_path / fmt).read_text(encoding="utf-8")
    lines = (tmp_path / "jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x).get("path_bytes") for x in lines] == [
        base64.b64encode(RAW).decode(), None, None]


def _fail(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("fmt,name", [("csv", "out.csv"), ("jsonl", "out.jsonl"),
                                      ("table", "out.txt"), ("parquet", "out.parquet"),
                                      ("parquet", "parts")])
def test_a_failure_inside_commit_leaves_no_temp_file(tmp_path, monkeypatch, fmt, name):
    """The rename at the end of ``commit()`` fails (a full disk, a vanished folder): the error
    reaches the caller, the old output is untouched and no ``.NAME.*`` temp file survives."""
    target = tmp_path / name
    if fmt == "parquet" and name == "parts":
        target.mkdir()
        (target / "part-00000.parquet").write_text("previous results\n")
    else:
        target.write_text("previous results\n")
    monkeypatch.setattr(writers.os, "replace", _fail)
    out = open_writer(fmt, target=target, render=_render)
    for pred in ROWS:
        out.add(pred)
    with pytest.raises(OSError, match="No space left"):
        out.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    old = target / "part-00000.parquet" if target.is_dir() else target
    assert old.read_text() == "previous results\n"


def test_a_failure_while_writing_rows_in_commit_leaves_nothing(tmp_path, monkeypatch):
    """issue 26: the parquet rows were encoded inside ``commit()`` (its last flush), and an
    encoding error there left ``.NAME.parquet.XXXX.parquet`` behind."""

    def broken(*args, **kwargs):
        raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")

    monkeypatch.setattr(writers, "predictions_to_table", broken)
    with pytest.raises(UnicodeEncodeError), open_writer(
            "parquet", target=tmp_path / "out.parquet") as out:
        out.add(ROWS[0])
    assert list(tmp_path.iterdir()) == []


def test_an_exception_in_the_run_aborts(tmp_path):
    for fmt in ("csv", "jsonl", "parquet"):
        with pytest.raises(RuntimeError), open_writer(fmt, target=tmp_path / f"x.{fmt}") as out:
            out.add(ROWS[0])
            raise RuntimeError("the job died")
    assert list(tmp_path.iterdir()) == []


def test_parquet_folder_target_that_is_a_file_is_refused_up_front(tmp_path):
    from cifarkit.errors import UsageError

    (tmp_path / "preds").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        open_writer("parquet", target=tmp_path / "preds")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preds"]
