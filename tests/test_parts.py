"""``engines/parts.py``: the output rule, parts written atomically under names that a retry
reuses, the driver's check of the parts, and a commit that leaves either the whole output
(one file or a folder + ``_SUCCESS``) or nothing under the final name. No Ray here: the
workers' side is called directly (``tests/test_ray.py`` runs it on a real cluster)."""

from __future__ import annotations

import json
import os

import pytest

from cifarkit.engines.parts import (
    FAULT_ENV,
    MANIFEST,
    PartsJob,
    encode_part,
    output_for,
    part_name,
    write_part,
)
from cifarkit.engines.rows import Prediction
from cifarkit.engines.writers import open_writer
from cifarkit.errors import ClusterError, UsageError

pd = pytest.importorskip("pandas")

ROWS = [Prediction(f"img/{i:03d}.png", index=i % 3, label="cat", confidence=0.5,
                   top_k=[("cat", 0.5)], backend="onnxruntime", provider="cpu")
        for i in range(7)] + [Prediction(os.fsdecode(b"img/non\xffutf8.png"), error="bad",
                                         reason="corrupt")]


def _job(target, fmt, units=((0, 0, 5), (0, 5, 3))):
    """A job whose 'workers' wrote ``units`` as (unit, first, rows) parts of ROWS."""
    out = output_for(target, fmt, labels=False)
    job = PartsJob(out)
    at = 0
    for unit, first, rows in units:
        name = part_name(unit, first, fmt)
        write_part(out.job, name, encode_part(ROWS[at:at + rows], fmt, False))
        job.ledger.add(name, unit, first, rows, 8, sum(not p.ok for p in ROWS[at:at + rows]))
        at += rows
    return out, job


def _siblings(path):
    return sorted(p for p in os.listdir(os.path.dirname(path)))


def test_the_output_rule(tmp_path):
    assert output_for(tmp_path / "p.parquet", "parquet", False).folder is False
    assert output_for(tmp_path / "p", "parquet", False).folder is True
    assert output_for(tmp_path / "p.csv", "csv", False).folder is False
    assert output_for(tmp_path / "p", "jsonl", False).folder is False  # as the local engine
    assert output_for(f"{tmp_path}/p/", "jsonl", False).folder is True
    out = output_for("s3://bucket/preds/", "csv", False)
    assert out.folder and out.target == "s3://bucket/preds"
    assert out.job.startswith("s3://bucket/.preds.job-")
    with pytest.raises(UsageError, match="prefix ending in /"):
        output_for("s3://bucket/preds.parquet", "parquet", False)
    with pytest.raises(UsageError, match="bucket's root"):
        output_for("s3://bucket/", "parquet", False)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_one_file_is_what_the_local_writer_writes(tmp_path, fmt):
    out, job = _job(tmp_path / f"one.{fmt}", fmt)
    job.commit()
    with open_writer(fmt, target=tmp_path / f"local.{fmt}") as writer:
        for pred in ROWS:
            writer.add(pred)
    if fmt == "parquet":
        a, b = pd.read_parquet(out.target), pd.read_parquet(tmp_path / "local.parquet")
        pd.testing.assert_frame_equal(a, b)
    else:
        assert (tmp_path / f"one.{fmt}").read_bytes() == (tmp_path / f"local.{fmt}").read_bytes()
    assert _siblings(out.target) == [f"local.{fmt}", f"one.{fmt}"]  # no job folder left


def test_a_folder_gets_its_parts_and_the_manifest_and_replaces_an_old_one(tmp_path):
    old = tmp_path / "preds"
    old.mkdir()
    (old / "stale.parquet").write_bytes(b"old run")
    # a worker that died mid-write left a temp file; a retried one rewrote its part
    out, job = _job(f"{old}/", "parquet")
    (tmp_path / os.path.basename(out.job) / ".part-x.tmp-1").write_bytes(b"half")
    write_part(out.job, part_name(0, 5, "parquet"), encode_part(ROWS[5:], "parquet", False))
    job.commit()
    names = sorted(os.listdir(old))
    assert names == [MANIFEST, part_name(0, 0, "parquet"), part_name(0, 5, "parquet")]
    manifest = json.loads((old / MANIFEST).read_text())
    assert manifest["rows"] == 8 and manifest["failed"] == 1
    assert [p["rows"] for p in manifest["parts"]] == [5, 3]
    df = pd.read_parquet(old)  # pyarrow skips _SUCCESS
    assert sorted(df["path"]) == sorted(p.display_path for p in ROWS)
    assert _siblings(old) == ["preds"]


@pytest.mark.parametrize("fmt, reader", [("parquet", "read_parquet"), ("csv", "read_csv"),
                                         ("jsonl", "read_json")])
def test_duckdb_reads_a_committed_folder_of_parts(tmp_path, fmt, reader):
    duckdb = pytest.importorskip("duckdb")
    out, job = _job(f"{tmp_path / 'preds'}/", fmt)
    job.commit()
    got = duckdb.sql(f"select path from {reader}('{tmp_path / 'preds'}/part-*') "
                     "order by path").fetchall()
    assert [r[0] for r in got] == sorted(p.display_path for p in ROWS)


@pytest.mark.parametrize("units, phrase", [
    (((0, 0, 5), (0, 4, 3)), "overlap"),
    (((0, 0, 4), (0, 5, 3)), "miss"),
    (((0, 0, 5),), "has 8 inputs, its parts 5"),
])
def test_parts_that_do_not_cover_the_inputs_once_are_not_committed(tmp_path, units, phrase):
    out, job = _job(tmp_path / "preds.parquet", "parquet", units)
    with pytest.raises(ClusterError, match=phrase):
        job.commit()
    assert os.listdir(tmp_path) == []


def test_a_part_the_driver_cannot_see_fails_the_commit_naming_the_cause(tmp_path):
    out, job = _job(tmp_path / "preds/", "csv")
    job.ledger.add(part_name(1, 0, "csv"), 1, 0, 2, 2, 0)  # written on another node's disk
    with pytest.raises(ClusterError, match="filesystem every node shares"):
        job.commit()
    assert os.listdir(tmp_path) == []


def test_a_failed_part_write_leaves_no_temp_file_and_a_retry_writes_the_same_part(
        tmp_path, monkeypatch):
    marker = tmp_path / "fault"
    marker.write_text("raise")
    monkeypatch.setenv(FAULT_ENV, str(marker))
    job = tmp_path / "job"
    with pytest.raises(OSError, match="injected"):
        write_part(str(job), "part-a.csv", b"a,b\n")
    assert os.listdir(job) == [] and not marker.exists()  # claimed once
    write_part(str(job), "part-a.csv", b"a,b\n")
    write_part(str(job), "part-a.csv", b"a,b\n")  # the retry: the same name, replaced
    assert os.listdir(job) == ["part-a.csv"]


def test_reject_columns_in_parts_and_in_the_merged_file(tmp_path):
    """``--reject``: the parts carry score and rejected, and one CSV file gets the header of
    those columns once, as the local engine's writer writes it."""
    rows = [Prediction("a.png", label="unknown", top_k=[("cat", 0.4)], score=0.4,
                       rejected=True, backend="onnxruntime", provider="cpu"),
            Prediction("b.png", index=1, label="dog", confidence=0.9, top_k=[("dog", 0.9)],
                       score=0.9, rejected=False, backend="onnxruntime", provider="cpu")]
    out = output_for(tmp_path / "one.csv", "csv", labels=False, reject=True)
    job = PartsJob(out)
    for i, pred in enumerate(rows):
        name = part_name(0, i, "csv")
        write_part(out.job, name, encode_part([pred], "csv", False, reject=True))
        job.ledger.add(name, 0, i, 1, 2, 0)
    job.commit()
    with open_writer("csv", target=tmp_path / "local.csv", reject=True) as writer:
        for pred in rows:
            writer.add(pred)
    text = (tmp_path / "one.csv").read_text()
    assert text == (tmp_path / "local.csv").read_text()
    assert text.splitlines()[0].endswith(",score,rejected") and "unknown" in text
