"""``cifarkit predict --engine ray`` and ``runtime.distributed``, on real Ray (no mocks).

One Ray cluster for the module, started on 127.0.0.1 by ``ray.cluster_utils.Cluster``: a head
with no CPUs and two 1-CPU worker nodes (2 CPUs in all, where the actors run), and one real
S3 server (moto's server mode) that the nodes see through the standard AWS variables. The
CLI runs as a subprocess connecting with ``--address``; one test runs it with no address, so
it starts (and stops) its own local Ray. The worker-loss test runs last: it kills a node.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifarkit.engines.parts import FAULT_ENV, MANIFEST
from tests import onnx_fixtures as F
from tests.odd_files import SKIPPED, odd_corpus

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]
FAULT = Path(tempfile.gettempdir()) / f"cifarkit-test-fault-{os.getpid()}"
COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0), (255, 255, 0)]
BAD = {  # name: bytes, phrase its error must contain
    "empty.jpg": (b"", "empty"),
    "text.png": (b"just some text\n", "not an image"),
}


def _png(color, size=(32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(F.solid(color, size), "RGB").save(buf, "PNG")
    return buf.getvalue()


def _truncated_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


def _write_set(root: Path, n_good: int) -> Path:
    """Good images in class folders (``airplane/…``) plus bad files of several kinds."""
    for i in range(n_good):
        color = COLORS[i % len(COLORS)]
        d = root / F.expected_label(color)
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:04d}.png").write_bytes(_png(color, (32 + i % 3, 32)))
    bad = root / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    for name, (data, _) in BAD.items():
        (bad / name).write_bytes(data)
    (bad / "truncated.jpg").write_bytes(_truncated_jpeg())
    (root / "notes.txt").write_text("not an image extension: not an input\n")
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_env():
    """A moto S3 server on 127.0.0.1 (random port) and the environment that points at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        try:
            yield env
        finally:
            server.stop()


@pytest.fixture(scope="module")
def cluster(s3_env):
    """Head (0 CPUs) + two 1-CPU worker nodes; this process is connected as a driver."""
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as mp:
        # The nodes' workers import cifarkit from this checkout, like the CLI subprocesses.
        mp.setenv("PYTHONPATH", os.pathsep.join([str(REPO / "toolkit"), str(REPO)]))
        mp.delenv("RAY_ADDRESS", raising=False)
        # The nodes' part writers fail once when a test writes this file (parts.FAULT_ENV).
        mp.setenv(FAULT_ENV, str(FAULT))
        # Ray binds its nodes to this machine's own address (not reachable from elsewhere
        # here); a 127.0.0.1 head is not joinable by Ray's own address resolution.
        c = Cluster(initialize_head=True, connect=False,
                    head_node_args={"num_cpus": 0, "include_dashboard": False})
        try:
            workers = [c.add_node(num_cpus=1) for _ in range(2)]
            c.wait_for_nodes()
            ray.init(address=c.address, logging_level="ERROR", log_to_driver=False)
            c.workers = workers
            yield c
        finally:
            ray.shutdown()
            c.shutdown()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return F.color_model(tmp_path_factory.mktemp("model") / "color.onnx")


@pytest.fixture(scope="module")
def image_set(tmp_path_factory) -> Path:
    return _write_set(tmp_path_factory.mktemp("set") / "images", 30)


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 150):
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO / "toolkit"), str(REPO)])
    full_env.setdefault("CIFARKIT_EXPORTED", str(cwd / "no-exported"))
    if not full_env.get("RAY_ADDRESS"):
        full_env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "cifarkit", "predict", *args], cwd=cwd, capture_output=True,
        text=True, env=full_env, timeout=timeout,
    )


def _jsonl_rows(text: str) -> list[dict]:
    return sorted((json.loads(line) for line in text.splitlines() if line.strip()),
                  key=lambda r: r["path"])


# --- the decoder's bytes entry point -------------------------------------------------------------


def test_bytes_decoder_gives_the_path_decoders_array(tmp_path):
    from cifarkit.data.images import load_image, load_image_bytes
    from cifarkit.errors import ImageError

    rng = np.random.default_rng(1)
    cases = {
        "big.jpg": (Image.fromarray(rng.integers(0, 256, (300, 200, 3), np.uint8)), "JPEG"),
        "alpha.png": (Image.new("RGBA", (50, 40), (255, 0, 0, 90)), "PNG"),
        "grey16.png": (Image.new("I;16", (32, 32), 300 * 257), "PNG"),
    }
    for name, (img, fmt) in cases.items():
        img.save(tmp_path / name, fmt)
        a = load_image(tmp_path / name)
        b = load_image_bytes((tmp_path / name).read_bytes(), name)
        assert a.dtype == b.dtype == np.uint8 and np.array_equal(a, b), name
    for name, (data, phrase) in BAD.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageError) as by_path:
            load_image(tmp_path / name)
        with pytest.raises(ImageError) as by_bytes:
            load_image_bytes(data, str(tmp_path / name))
        assert phrase in str(by_bytes.value) and str(by_path.value) == str(by_bytes.value)


# --- local Ray: the same rows as the local engine ------------------------------------------------


def test_local_ray_gives_the_local_engines_rows_and_exit_code(image_set, model, tmp_path):
    """No --address and no RAY_ADDRESS: the CLI starts a 2-CPU Ray of its own, then stops it."""
    env = {"RAY_ADDRESS": ""}
    local = run_cli(str(image_set), "-m", str(model), "-f", "jsonl", "--labels-from-folders",
                    cwd=tmp_path, env=env)
    t0 = time.monotonic()
    dist = run_cli(str(image_set), "-m", str(model), "-f", "jsonl", "--labels-from-folders",
                   "--engine", "ray", "--batch-size", "8", cwd=tmp_path, env=env)
    assert dist.returncode == local.returncode == 1, dist.stderr  # bad files → exit 1
    rows, want = _jsonl_rows(dist.stdout), _jsonl_rows(local.stdout)
    assert len(want) == 33 and rows == want
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["error"]}
    assert set(errors) == {*BAD, "truncated.jpg"}
    assert all(BAD[n][1] in errors[n] for n in BAD)
    # The same final summary line, one progress display: nothing of Ray's own on stderr.
    summary = [ln for ln in dist.stderr.splitlines() if " images (" in ln]
    assert summary and "30 classified, 3 failed" in summary[0], dist.stderr
    assert "Ray actors" in dist.stderr and "Running Dataset" not in dist.stderr
    assert "core_worker" not in dist.stderr and "INFO" not in dist.stderr, dist.stderr
    print(f"local-Ray CLI run: {time.monotonic() - t0:.1f} s")


def test_cluster_rows_and_parquet_round_trip_for_both_engines(cluster, image_set, model,
                                                              tmp_path):
    import pandas as pd

    frames = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.parquet"
        extra = ["--engine", "ray", "--address", cluster.address] if engine == "ray" else []
        r = run_cli(str(image_set), "-m", str(model), "-f", "parquet", "-o", str(out),
                    "--labels-from-folders", *extra, cwd=tmp_path)
        assert r.returncode == 1, r.stderr
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{engine}.parquet")]
        frames[engine] = pd.read_parquet(out).sort_values("path").reset_index(drop=True)
    a, b = frames["local"], frames["ray"]
    # The row schema (engines/rows.py): reason/warnings of each file (issue 26); backend/
    # provider name what ran; path_bytes is set only for names that are not UTF-8.
    assert list(a.columns) == ["path", "label", "index", "confidence", "top_k", "error",
                               "reason", "warnings", "backend", "provider", "path_bytes",
                               "true_label", "correct"]
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 33 and a["path"].is_unique and a["error"].notna().sum() == 3
    good = a[a["error"].isna()]
    assert (good["label"] == good["true_label"]).all() and good["correct"].all()
    assert all(len(t) == 3 and t[0]["label"] == lab for t, lab in zip(good["top_k"],
                                                                     good["label"], strict=True))

    # A folder target: part files, committed as a whole; read back as one table.
    folder = tmp_path / "parts"
    r = run_cli(str(image_set), "-m", str(model), "-f", "parquet", "-o", str(folder),
                "--engine", "ray", "--address", cluster.address, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    names = sorted(p.name for p in folder.iterdir())
    manifest = json.loads((folder / MANIFEST).read_text())
    assert names == sorted([MANIFEST, *(p["name"] for p in manifest["parts"])])
    assert manifest["rows"] == 33 and manifest["failed"] == 3
    df = pd.read_parquet(folder)  # the parts, written by the workers; _SUCCESS skipped
    assert len(df) == 33 and "true_label" not in df.columns
    pd.testing.assert_frame_equal(df.sort_values("path").reset_index(drop=True),
                                  b.drop(columns=["true_label", "correct"]))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_failed_job_leaves_nothing_under_the_final_name(cluster, image_set, model, tmp_path):
    """A part write that raises (injected) fails the job: no file, no folder, no job folder."""
    FAULT.write_text("raise")
    try:
        r = run_cli(str(image_set), "-m", str(model), "-f", "csv", "-o", f"{tmp_path}/out/",
                    "--engine", "ray", "--address", cluster.address, cwd=tmp_path)
    finally:
        FAULT.unlink(missing_ok=True)
    assert r.returncode == 7 and "injected part-write failure" in r.stderr, r.stderr
    assert not [p for p in tmp_path.iterdir() if "out" in p.name], list(tmp_path.iterdir())


def test_reject_gives_the_same_unknown_rows_in_both_engines(cluster, image_set, model,
                                                            tmp_path):
    """``--reject VALUE``: the score and rejected columns, the same values on Ray's actors as
    in the local engine (float32 in Parquet, compared exactly)."""
    import pandas as pd

    frames = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.parquet"
        extra = ["--engine", "ray", "--address", cluster.address] if engine == "ray" else []
        r = run_cli(str(image_set), "-m", str(model), "-f", "parquet", "-o", str(out),
                    "--labels-from-folders", "--reject", "0.999", *extra, cwd=tmp_path)
        assert r.returncode == 1, r.stderr
        frames[engine] = pd.read_parquet(out).sort_values("path").reset_index(drop=True)
        n = int(frames[engine]["rejected"].fillna(False).sum())
        assert f"{n:,} unknown (top probability < 0.999, --reject 0.999)" in r.stderr
    a, b = frames["local"], frames["ray"]
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns)[-4:] == ["score", "rejected", "true_label", "correct"]
    good = a[a["error"].isna()]
    low = good["score"].astype("float64") < 0.999  # float32 scores, a float64 threshold
    assert low.any() and (~low).any() and (good["rejected"] == low).all()
    assert (good.loc[low, "label"] == "unknown").all() and good.loc[low, "index"].isna().all()
    assert (good["score"] == [t[0]["confidence"] for t in good["top_k"]]).all()
    assert a.loc[a["error"].notna(), ["score", "rejected"]].isna().all().all()


def test_strict_stops_at_a_failed_input_and_commits_what_was_written(cluster, image_set, model,
                                                                     tmp_path):
    r = run_cli(str(image_set), "-m", str(model), "-f", "jsonl", "-o", f"{tmp_path}/out/",
                "--strict", "--engine", "ray", "--address", cluster.address, "--batch-size", "2",
                "--concurrency", "1", cwd=tmp_path)
    assert r.returncode == 1 and "stopped at the first failure" in r.stderr, r.stderr
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["stopped_early"] is True and manifest["failed"] >= 1
    rows = _jsonl_rows("".join((tmp_path / "out" / p["name"]).read_text()
                               for p in manifest["parts"]))
    assert len(rows) == manifest["rows"] < 33 and len({r["path"] for r in rows}) == len(rows)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [MANIFEST, *(p["name"] for p in manifest["parts"])])


def test_a_non_utf8_name_on_ray_gives_the_local_engines_rows(cluster, model, tmp_path):
    """issue 26: with such a name, ``--engine ray -f jsonl`` failed the run and wrote nothing.
    Now both engines write the same rows: the name escaped in ``path``, its bytes in
    ``path_bytes``; the actors run any backend (``--backend openvino``)."""
    import base64

    import pandas as pd

    folder = tmp_path / "odd"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/non\xffutf8.png"
    Path(os.fsdecode(raw)).write_bytes(_png(COLORS[0]))
    (folder / "ok.png").write_bytes(_png(COLORS[2]))
    (folder / "empty.jpg").write_bytes(b"")
    shown = os.fsencode(folder).decode() + "/non\\xffutf8.png"
    ray_args = ["--engine", "ray", "--address", cluster.address]
    for fmt, read in (("jsonl", lambda p: pd.read_json(p, lines=True)),
                      ("parquet", pd.read_parquet)):
        frames = {}
        for engine, extra in (("local", []), ("ray", ray_args)):
            out = tmp_path / f"{engine}.{fmt}"
            r = run_cli(str(folder), "-m", str(model), "-f", fmt, "-o", str(out), *extra,
                        cwd=tmp_path)
            assert r.returncode == 1, r.stderr  # empty.jpg failed, the rest is there
            assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{engine}")]
            if fmt == "jsonl":
                out.read_bytes().decode("utf-8")  # strict
            frames[engine] = read(out).sort_values("path").reset_index(drop=True)
        a, b = frames["local"], frames["ray"]
        pd.testing.assert_frame_equal(a, b)
        row = a.set_index("path").loc[shown]
        assert row["label"] == "airplane" and base64.b64decode(row["path_bytes"]) == raw
        assert (row["backend"], row["provider"]) == ("onnxruntime", "cpu")
    r = run_cli(str(folder), "-m", str(model), "-f", "jsonl", "--backend", "openvino", *ray_args,
                cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    rows = {x["path"]: x for x in _jsonl_rows(r.stdout)}
    assert rows[shown]["label"] == "airplane" and rows[shown]["backend"] == "openvino"
    assert rows[str(folder / "ok.png")]["label"] == F.expected_label(COLORS[2])
    assert "on openvino in" in r.stderr


def test_globs_and_cross_linked_folders_give_the_local_engines_rows(cluster, model, tmp_path):
    """A glob listed in first-level units, folders reached twice through links (``a/tob ->
    ../b`` before b itself, ``c/todeep`` into b's middle, a loop) and a file named by both a
    folder and a glob: the local engine's rows, on stdout and in parts: each folder once at
    its local place, the glob's file twice (as locally), one no-match row."""
    root = tmp_path / "in"
    for i, name in enumerate(("a/1.png", "b/2.png", "b/deep/3.png", "c/4.png", "c/x5.png")):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(_png(COLORS[i]))
    for link, target in (("a/tob", "../b"), ("c/todeep", "../b/deep"), ("b/deep/up", "../..")):
        (root / link).symlink_to(target)
    sources = [str(root), str(root / "*" / "x*.png"), str(root / "*" / "no*.png")]
    ray_args = ["--engine", "ray", "--address", cluster.address]
    local = run_cli(*sources, "-m", str(model), "-f", "jsonl", cwd=tmp_path)
    streamed = run_cli(*sources, "-m", str(model), "-f", "jsonl", *ray_args, cwd=tmp_path)
    parted = run_cli(*sources, "-m", str(model), "-f", "jsonl", "-o", f"{tmp_path}/out/",
                     *ray_args, cwd=tmp_path)
    assert local.returncode == streamed.returncode == parted.returncode == 1, streamed.stderr
    want = _jsonl_rows(local.stdout)
    assert sorted(os.path.relpath(r["path"], root) for r in want) == [
        "*/no*.png", "a/1.png", "a/tob/2.png", "a/tob/deep/3.png", "c/4.png", "c/x5.png",
        "c/x5.png"]
    assert _jsonl_rows(streamed.stdout) == want
    parts = "".join(p.read_text() for p in (tmp_path / "out").glob("part-*"))
    assert _jsonl_rows(parts) == want


def test_ctrl_c_mid_run_stops_within_seconds_leaving_nothing(cluster, model, tmp_path):
    """Ctrl-C (SIGINT to the CLI's process group, as a terminal sends it) once the first part
    is written: exit 130 within seconds; no output, job folder, part or manifest, even a while
    later (an actor still busy must not write into a folder the driver removed)."""
    png = _png(COLORS[0])
    # Long enough that the first part comes well before the end: on a warm cluster a
    # 3,000-image job once wrote its first part so late that the run had finished (exit 0,
    # output complete) before the interrupt could land.
    for i in range(6000):
        d = tmp_path / "in" / f"d{i // 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:04d}.png").write_bytes(png)
    env = {**os.environ, "COLUMNS": "200", "CIFARKIT_EXPORTED": str(tmp_path / "none"),
           "PYTHONPATH": os.pathsep.join([str(REPO / "toolkit"), str(REPO)])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifarkit", "predict", str(tmp_path / "in"), "-m", str(model),
         "-f", "jsonl", "-o", f"{tmp_path}/out/", "--batch-size", "8", "--engine", "ray",
         "--address", cluster.address], cwd=tmp_path, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".out.job-*/part-*")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert took < 15, f"{took:.1f} s to stop"
    time.sleep(3)  # the actors' calls in flight end meanwhile
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"], list(tmp_path.iterdir())


def test_parquet_folder_parts_and_a_failed_run_leaves_nothing(tmp_path):
    import pandas as pd

    from cifarkit.engines.rows import Prediction
    from cifarkit.engines.writers import ParquetWriter

    preds = [Prediction(f"img/{i:03d}.png", index=i % 10, label="cat", confidence=0.5,
                        top_k=[("cat", 0.5)]) for i in range(25)] + [Prediction("x", error="bad")]
    with ParquetWriter(tmp_path / "out", part_rows=10, row_group=4) as out:
        for p in preds:
            out.add(p)
    parts = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert parts == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    df = pd.read_parquet(tmp_path / "out").sort_values("path")
    assert len(df) == 26 and df["error"].notna().sum() == 1
    with pytest.raises(RuntimeError), ParquetWriter(tmp_path / "failed.parquet") as out:
        out.add(preds[0])
        raise RuntimeError("the job died")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_library_predict_dataset_streams_rows(cluster, image_set, model):
    from cifarkit.engines.ray import predict_dataset
    from cifarkit.engines.rows import prediction_schema

    ds = predict_dataset([str(image_set)], model, batch_size=8, concurrency=2)
    assert isinstance(ds, ray.data.Dataset)
    n = 0
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        assert batch.schema.equals(prediction_schema(False))
        n += batch.num_rows
    assert n == 33
    # A Dataset of paths works too (the actors read them).
    paths = ray.data.from_items([{"path": str(image_set / "airplane" / "0000.png")}])
    row = predict_dataset(paths, model).take_all()[0]
    assert row["label"] == "airplane" and row["error"] is None


# --- S3 through a real S3-compatible server ------------------------------------------------------


def test_s3_input_gives_the_same_predictions_as_disk(cluster, s3_env, image_set, model,
                                                     tmp_path):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="images")
    files = sorted(p for p in image_set.rglob("*") if p.is_file())
    for p in files:
        s3.put_object(Bucket="images", Key=f"set/{p.relative_to(image_set)}", Body=p.read_bytes())
    disk = run_cli(str(image_set), "-m", str(model), "-f", "jsonl", "--engine", "ray",
                   "--address", cluster.address, cwd=tmp_path)
    # S3 in and out: listed by tasks per sub-prefix, read by the actors, parts written to
    # a job prefix beside the target and published on commit.
    s3.create_bucket(Bucket="out")
    remote = run_cli("s3://images/set/", "-m", str(model), "-f", "jsonl", "--engine", "ray",
                     "--address", cluster.address, "--labels-from-folders", "-o",
                     "s3://out/preds/", cwd=tmp_path)
    assert remote.returncode == disk.returncode == 1, remote.stderr
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="out")["Contents"]]
    assert all(k.startswith("preds/") for k in keys), keys  # the job prefix is gone
    manifest = json.loads(s3.get_object(Bucket="out", Key=f"preds/{MANIFEST}")["Body"].read())
    assert sorted(keys) == sorted([f"preds/{MANIFEST}"]
                                  + [f"preds/{p['name']}" for p in manifest["parts"]])
    text = "".join(s3.get_object(Bucket="out", Key=k)["Body"].read().decode("utf-8")
                   for k in keys if k.endswith(".jsonl"))
    assert manifest["rows"] == 33
    want = {os.path.relpath(r["path"], image_set): r for r in _jsonl_rows(disk.stdout)}
    got = {r["path"].removeprefix("s3://images/set/"): r for r in _jsonl_rows(text)}
    assert set(got) == set(want) and len(got) == 33  # notes.txt is not an image: not read
    for key, row in got.items():
        assert row["path"] == f"s3://images/set/{key}"
        for field in ("label", "index", "confidence", "top_k"):
            assert row[field] == want[key][field], (key, field)
        assert (row["error"] is None) == (want[key]["error"] is None)
        if key.split("/")[0] != "bad":
            assert row["true_label"] == key.split("/")[0]


# --- issue 26: every odd file gets the local engine's row; a stale cluster file is ignored ------


@pytest.fixture()
def ray_tmpdir():
    """A short folder for ``RAY_TMPDIR`` (Ray's session sockets must fit AF_UNIX's 107
    bytes, which pytest's tmp_path does not leave room for); removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="ck26-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_odd_files_same_rows_on_a_local_ray_despite_a_stale_cluster_file(model, tmp_path,
                                                                          ray_tmpdir):
    """Items 1 and 12: warnings and reasons are the local engine's, row for row; a
    ``ray_current_cluster`` naming a dead head (as a killed ``ray start`` leaves it) neither
    hangs nor joins the local case, and ``--address auto`` says what the file is."""
    expected = odd_corpus(tmp_path / "odd")
    stale = ray_tmpdir / "ray" / "ray_current_cluster"
    stale.parent.mkdir()
    dead = f"127.0.0.1:{_free_port()}"
    stale.write_text(dead)
    env = {"RAY_ADDRESS": "", "RAY_TMPDIR": str(ray_tmpdir)}
    local = run_cli(str(tmp_path / "odd"), "-m", str(model), "-f", "jsonl", cwd=tmp_path,
                    env=env)
    t0 = time.monotonic()
    dist = run_cli(str(tmp_path / "odd"), "-m", str(model), "-f", "jsonl", "--engine", "ray",
                   cwd=tmp_path, env=env)
    took = time.monotonic() - t0
    assert dist.returncode == local.returncode == 1, dist.stderr  # bad files: exit 1
    rows, want = _jsonl_rows(dist.stdout), _jsonl_rows(local.stdout)
    assert rows == want and {Path(r["path"]).name for r in rows} == set(expected)
    for row in rows:
        reason, phrase = expected[Path(row["path"]).name]
        assert row.get("reason") == reason, row
        assert (phrase is None) == ("warnings" not in row), row
        assert phrase is None or any(phrase in w for w in row["warnings"]), row
    skipped = f"{len(SKIPPED)} files skipped as non-images"
    assert skipped in dist.stderr and skipped in local.stderr
    assert took < 120, f"local Ray run took {took:.0f} s"
    t0 = time.monotonic()
    auto = run_cli(str(tmp_path / "odd"), "-m", str(model), "--engine", "ray", "--address",
                   "auto", cwd=tmp_path, env=env, timeout=60)
    assert auto.returncode == 7 and str(stale) in auto.stderr and dead in auto.stderr
    assert "ray stop" in auto.stderr and time.monotonic() - t0 < 30, auto.stderr


# --- a cluster with token authentication (item 11) -------------------------------------------


def _tree(marker: str) -> set[int]:
    """PIDs of the processes whose command line names ``marker``, and their descendants."""
    procs: dict[int, tuple[int, bytes]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        procs[int(entry)] = (ppid, cmd)
    found = {pid for pid, (_, cmd) in procs.items() if marker.encode() in cmd}
    while new := {pid for pid, (ppid, _) in procs.items() if ppid in found} - found:
        found |= new
    return found


def _stop_head(temp_dir: Path) -> None:
    """``ray stop`` for this head only: its processes are the ones that name its temp dir
    (and their children); plain ``ray stop`` would stop every Ray on the machine."""
    pids = _tree(str(temp_dir))
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and (pids := pids & _tree(str(temp_dir))):
            time.sleep(0.2)
        if not pids:
            return


@pytest.fixture()
def token_head(ray_tmpdir):
    """``ray start --head`` as Ray 2.60 does it by default where a token exists (any earlier
    local ``ray.init()`` writes ~/.ray/auth_token): token authentication on. Its own home
    (its token) and temp dir; always stopped, and only it."""
    home, temp_dir = ray_tmpdir / "home", ray_tmpdir / "t"
    home.mkdir()
    env = {**os.environ, "HOME": str(home),
           "PYTHONPATH": os.pathsep.join([str(REPO / "toolkit"), str(REPO)])}
    for key in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(key, None)
    ray_cli = Path(sys.executable).with_name("ray")
    subprocess.run([str(ray_cli), "get-auth-token", "--generate"], env=env, check=True,
                   capture_output=True, timeout=60)
    try:
        started = subprocess.run(
            [str(ray_cli), "start", "--head", "--port", str(_free_port()), "--num-cpus", "1",
             "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp_dir),
             "--include-dashboard", "false", "--disable-usage-stats"],
            env=env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stderr[-2000:]
        assert "Token authentication is enabled" in started.stderr + started.stdout
        address = (temp_dir / "ray_current_cluster").read_text().strip()
        token = (home / ".ray" / "auth_token").read_text().strip()
        yield address, token
    finally:
        _stop_head(temp_dir)


def test_a_token_cluster_without_its_token_fails_once_saying_what_to_do(
        token_head, image_set, model, tmp_path):
    address, token = token_head
    bare = tmp_path / "home"  # no ~/.ray/auth_token here
    bare.mkdir()
    t0 = time.monotonic()
    r = run_cli(str(image_set), "-m", str(model), "--engine", "ray", "--address", address,
                cwd=tmp_path, env={"HOME": str(bare)}, timeout=90)
    assert r.returncode == 7, r.stderr
    assert time.monotonic() - t0 < 45
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and address in errors[0], r.stderr
    assert "RAY_AUTH_MODE=token" in errors[0] and "RAY_AUTH_TOKEN" in errors[0]
    assert "Authentication token is missing" not in r.stderr  # Ray's own lines stay out
    # The advice works: with the token the same command runs on that cluster.
    r = run_cli(str(image_set), "-m", str(model), "--engine", "ray", "--address", address,
                "-f", "jsonl", cwd=tmp_path, timeout=150,
                env={"HOME": str(bare), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
    assert r.returncode == 1, r.stderr[-2000:]  # the set's bad files
    assert len(_jsonl_rows(r.stdout)) == 33


# --- bad setups fail fast and clearly ------------------------------------------------------------


def test_unreachable_address_fails_fast_naming_it(image_set, model, tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    r = run_cli(str(image_set), "-m", str(model), "--engine", "ray", "--address", address,
                cwd=tmp_path, timeout=60)
    assert r.returncode == 7 and address in r.stderr and "cannot reach" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 30


def test_missing_ray_and_missing_filesystem_package_are_named(image_set, model, tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
        "sys.argv = ['cifarkit', 'predict', sys.argv[1], '-m', sys.argv[2], '--engine', 'ray']\n"
        "from cifarkit.cli import main; main()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "toolkit")}
    r = subprocess.run([sys.executable, "-c", code, str(image_set), str(model)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and 'pip install "cifarkit[ray]"' in r.stderr, r.stderr

    from cifarkit.engines.ray import resolve_filesystem
    from cifarkit.errors import DataError

    with pytest.raises(DataError, match="ocifs"):  # fsspec knows oci://, its package is absent
        resolve_filesystem("oci://bucket@namespace/images/")


def test_provider_error_in_the_actors_is_the_local_one(cluster, image_set, model, tmp_path):
    from cifarkit.backends.providers import available_providers

    if "openvino" in available_providers():
        pytest.skip("needs an onnxruntime build without OpenVINO")
    args = [str(image_set), "-m", str(model), "--provider", "openvino"]
    local = run_cli(*args, cwd=tmp_path)
    dist = run_cli(*args, "--engine", "ray", "--address", cluster.address, cwd=tmp_path)
    assert local.returncode == dist.returncode == 6, dist.stderr

    def message(text: str) -> str:
        return " ".join(text.split()).split("error:", 1)[1].strip()

    assert message(dist.stderr) == message(local.stderr)


# --- exactly once, when a worker node dies mid-run (runs last: it changes the cluster) -----------


def test_a_worker_node_dies_mid_run_and_every_input_is_there_once(cluster, model, tmp_path):
    """Workers write the parts: one write dies mid-write (its process exits: a half temp
    file stays), then a worker node is killed; the output holds every input once."""
    import pyarrow.dataset as pads

    n = 600
    root = tmp_path / "many"
    for i in range(n):
        d = root / f"{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:04d}.png").write_bytes(_png(COLORS[i % len(COLORS)]))
    env = {**os.environ, "COLUMNS": "200", "CIFARKIT_EXPORTED": str(tmp_path / "none"),
           "PYTHONPATH": os.pathsep.join([str(REPO / "toolkit"), str(REPO)])}
    out = tmp_path / "preds"
    FAULT.write_text("die")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifarkit", "predict", str(root), "-m", str(model), "-f",
         "jsonl", "-o", f"{out}/", "--engine", "ray", "--address", cluster.address,
         "--batch-size", "4", "--concurrency", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )
    killed_at = None
    try:
        deadline = time.monotonic() + 150
        while proc.poll() is None and time.monotonic() < deadline and killed_at is None:
            parts = [p for job in tmp_path.glob(".preds.job-*") for p in job.glob("part-*")]
            if len(parts) >= 3:
                # Kill a worker node, its raylet and the actor on it, without warning; a
                # replacement joins, as KubeRay or an autoscaler would provide.
                victim = cluster.workers.pop(0)
                cluster.remove_node(victim, allow_graceful=False)
                cluster.workers.append(cluster.add_node(num_cpus=1))
                killed_at = len(parts)
            time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=150)
    finally:
        FAULT.unlink(missing_ok=True)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert killed_at is not None and killed_at * 32 < n, "the node must die mid-run"
    assert proc.returncode == 0, stderr
    assert not FAULT.exists()  # the injected death happened
    assert stdout == ""  # rows went to the parts, not through the driver
    manifest = json.loads((out / MANIFEST).read_text())
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST, *(p["name"] for p in manifest["parts"])])  # no temp file left
    rows = pads.dataset(out, format="json").to_table().to_pylist()
    paths = [r["path"] for r in rows]
    assert manifest["rows"] == len(paths) == n and len(set(paths)) == n
    assert set(paths) == {str(p) for p in root.rglob("*.png")}
    assert all(r["error"] is None for r in rows)
    assert not list(tmp_path.glob(".preds*"))
    print(f"node killed after {killed_at} parts; stderr tail: {stderr[-300:]}")
