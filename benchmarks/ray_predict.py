"""Ray engine vs local engine, whole commands; the Ray driver's memory and CPU at 10⁴–10⁶ inputs.

    .venv/bin/python benchmarks/ray_predict.py                    # 10⁴ and 10⁵ inputs
    .venv/bin/python benchmarks/ray_predict.py --sizes 1e4,1e5,1e6   # docs/scale-out.md

Inputs: hard links to ``$CIFARKIT_DATA/test`` (10,000 JPEGs), made by this script in a scratch
folder outside the repository: ``SCRATCH/cifarkit-links/rep-NNN/<class>/<file>``, one ``rep``
per 10,000 inputs (kept for the next run; links cost no data blocks). A run of N inputs names
the first N/10,000 rep folders. Each command is the CLI as a user runs it, in a fresh
subprocess, with the default shipped model (``exported/default``), writing Parquet:

- ``cifarkit predict REPS… -f parquet -o SCRATCH/out-ray/ --engine ray`` (a local Ray started
  by the command: one 1-CPU actor per CPU; the workers list, classify and write the parts);
- ``cifarkit predict REPS… -f parquet -o SCRATCH/out-local/`` (the local engine), at 10⁴ and
  10⁵ inputs.

Reported per command: wall seconds (start to exit, Ray's start-up included), img/s; for the
Ray driver (the CLI process itself, not Ray's own processes): peak RSS (``ru_maxrss``) and
CPU seconds (user + system), also per 100,000 inputs. Goals of issue 28 on the 2-core VM:
Ray ≥ 0.8× local at 100,000 inputs, whole commands; driver RSS flat (± 50 MB) 10⁴ → 10⁶.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "ray-predict-cpu.json"
PER_REP = 10_000
# The CLI, with the process's own peak RSS and CPU time written at exit (atexit runs after
# typer's SystemExit). Ray's processes (raylet, GCS, workers) are not this process.
WRAPPER = """
import atexit, json, os, resource, sys
def _dump():
    r = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.environ["CK_RUSAGE"], "w") as fh:
        json.dump({"peak_rss_mib": r.ru_maxrss / 1024, "cpu_seconds": r.ru_utime + r.ru_stime}, fh)
atexit.register(_dump)
sys.argv = ["cifarkit", *sys.argv[1:]]
from cifarkit.cli import main
main()
"""


def _data() -> Path:
    root = Path(os.environ.get("CIFARKIT_DATA", REPO.parent / "shared" / "data" / "cifar10"))
    test = root / "test"
    if not test.is_dir():
        sys.exit(f"no test split at {test}: set CIFARKIT_DATA")
    return test


def linked_reps(test: Path, reps: int, scratch: Path) -> list[Path]:
    """``reps`` folders of hard links to the test split (made once, then reused)."""
    base = scratch / "cifarkit-links"
    out = []
    for k in range(reps):
        rep = base / f"rep-{k:03d}"
        if not (rep / ".complete").exists():
            shutil.rmtree(rep, ignore_errors=True)
            for cls in sorted(p for p in test.iterdir() if p.is_dir()):
                (rep / cls.name).mkdir(parents=True)
                for f in cls.iterdir():
                    os.link(f, rep / cls.name / f.name)
            (rep / ".complete").write_text("")
        out.append(rep)
    return out


def run_cli(engine: str, reps: list[Path], scratch: Path) -> dict:
    target = scratch / f"out-{engine}"
    shutil.rmtree(target, ignore_errors=True)
    usage = scratch / f"rusage-{engine}.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "toolkit"), str(REPO)]),
           "CK_RUSAGE": str(usage)}
    env.pop("RAY_ADDRESS", None)
    cmd = ["predict", *map(str, reps), "-f", "parquet", "-o", f"{target}/",
           "--labels-from-folders"] + (["--engine", "ray"] if engine == "ray" else [])
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True,
                       env=env, timeout=7200, cwd=scratch)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{engine} on {len(reps)} reps failed ({r.returncode}):\n{r.stderr[-3000:]}")
    n = len(reps) * PER_REP
    rows = _rows(target)
    if rows != n:
        sys.exit(f"{engine}: {rows} rows for {n} inputs")
    result = {"engine": engine, "inputs": n, "wall_seconds": wall, "images_per_second": n / wall,
              "command": "cifarkit " + " ".join(cmd[:2]) + f" … ({len(reps)} folders) "
              + " ".join(cmd[1 + len(reps):]),
              "summary": [ln for ln in r.stderr.splitlines() if ln.strip()][-3:]}
    driver = json.loads(usage.read_text())
    result.update(driver_peak_rss_mib=driver["peak_rss_mib"],
                  driver_cpu_seconds=driver["cpu_seconds"],
                  driver_cpu_seconds_per_100k=driver["cpu_seconds"] * 100_000 / n)
    shutil.rmtree(target, ignore_errors=True)
    print(f"  {engine:5s} {n:>9,} inputs: {wall:7.1f} s, {n / wall:,.0f} img/s; driver peak "
          f"RSS {driver['peak_rss_mib']:.0f} MiB, CPU {driver['cpu_seconds']:.1f} s",
          flush=True)
    return result


def run_partial(reps: list[Path], scratch: Path, seconds: float) -> dict:
    """The Ray command on ``reps`` for at most ``seconds``, then Ctrl-C (SIGINT: the job is
    aborted, its job folder removed). For a size this machine cannot finish in the time at
    hand: the driver's peak RSS (``VmHWM``) and CPU seconds, sampled from /proc, against the
    rows the workers had written by then (the parts in the job folder)."""
    import signal

    import pyarrow.parquet as pq

    target = scratch / "out-ray"
    shutil.rmtree(target, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "toolkit"), str(REPO)]),
           "CK_RUSAGE": str(scratch / "rusage-partial.json")}
    env.pop("RAY_ADDRESS", None)
    cmd = ["predict", *map(str, reps), "-f", "parquet", "-o", f"{target}/", "--engine", "ray"]
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER, *cmd], env=env, cwd=scratch,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.perf_counter()
    samples = []
    while proc.poll() is None and time.perf_counter() - t0 < seconds:
        time.sleep(10)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        hwm = int(status.split("VmHWM:")[1].split()[0]) / 1024
        stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        rows = sum(pq.ParquetFile(p).metadata.num_rows
                   for job in scratch.glob(".out-ray.job-*") for p in job.glob("part-*"))
        samples.append({"seconds": time.perf_counter() - t0, "rows_written": rows,
                        "driver_peak_rss_mib": hwm, "driver_cpu_seconds": cpu})
        print(f"    {samples[-1]}", flush=True)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=300)
    last = samples[-1]
    n = len(reps) * PER_REP
    result = {"engine": "ray", "inputs": n, "partial": True, "stopped_after_seconds": seconds,
              "samples": samples, "driver_peak_rss_mib": last["driver_peak_rss_mib"],
              "rows_written": last["rows_written"],
              "driver_cpu_seconds_per_100k": last["driver_cpu_seconds"] * 100_000
              / max(1, last["rows_written"]),
              "leftover": [p.name for p in scratch.glob("*out-ray*")]}
    print(f"  ray   {n:>9,} inputs, stopped after {seconds:.0f} s: {last['rows_written']:,} rows "
          f"written; driver peak RSS {last['driver_peak_rss_mib']:.0f} MiB", flush=True)
    return result


def _rows(folder: Path) -> int:
    import pyarrow.dataset as pads

    return pads.dataset(folder, format="parquet").count_rows()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1e4,1e5", help="inputs per run, multiples of 10,000")
    ap.add_argument("--local-sizes", default="1e4,1e5", help="sizes also run on the local engine")
    ap.add_argument("--scratch", type=Path, default=Path("/work/scratch"),
                    help="where the hard links and outputs go (outside the repository)")
    ap.add_argument("--partial", default="", help="SIZE:SECONDS: run the Ray command on SIZE "
                    "inputs for SECONDS only, sampling the driver (a size too big to finish)")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    local_sizes = {int(float(s)) for s in args.local_sizes.split(",") if s}
    sys.path.insert(0, str(REPO / "toolkit"))
    from cifarkit._io import write_json
    from cifarkit.measure.machine import collect_environment, load_average

    env = collect_environment(sys.argv)
    test = _data()
    args.scratch.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict] = {}
    for n in sizes:
        reps = linked_reps(test, n // PER_REP, args.scratch)
        print(f"{n:,} inputs ({len(reps)} folders of hard links in {args.scratch})", flush=True)
        if n in local_sizes:
            runs[f"local_{n}"] = run_cli("local", reps, args.scratch)
        runs[f"ray_{n}"] = run_cli("ray", reps, args.scratch)
    if args.partial:
        size, seconds = args.partial.split(":")
        n = int(float(size))
        reps = linked_reps(test, n // PER_REP, args.scratch)
        print(f"{n:,} inputs, at most {seconds} s", flush=True)
        runs[f"ray_{n}"] = run_partial(reps, args.scratch, float(seconds))
        sizes = sizes + [n]
    summary = _summary(runs, sizes)
    env["load_average_after"] = load_average()
    write_json(args.output, {"benchmark": "ray_predict", "environment": env,
                             "summary": summary, "runs": runs})
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.output}")


def _summary(runs: dict[str, dict], sizes: list[int]) -> dict:
    out: dict = {"goal_ray_over_local": 0.8, "goal_driver_rss_flat_mib": 50}
    for n in sizes:
        ray, local = runs.get(f"ray_{n}"), runs.get(f"local_{n}")
        if local and ray:
            out[f"ray_over_local_{n}"] = local["wall_seconds"] / ray["wall_seconds"]
        if ray:
            out[f"driver_peak_rss_mib_{n}"] = ray["driver_peak_rss_mib"]
            out[f"driver_cpu_seconds_per_100k_{n}"] = ray["driver_cpu_seconds_per_100k"]
    rss = [runs[f"ray_{n}"]["driver_peak_rss_mib"] for n in sizes if f"ray_{n}" in runs]
    if len(rss) > 1:
        out["driver_rss_spread_mib"] = max(rss) - min(rss)
    return out


if __name__ == "__main__":
    main()
