"""Ray engine vs local engine: img/s, the ratio, Ray's start-up, and memory at 10k and 100k inputs.

    .venv/bin/python benchmarks/ray_predict.py                 # writes results/ray-predict-cpu.json
    .venv/bin/python benchmarks/ray_predict.py --skip-100k     # the 10k runs only

On ``$CIFARKIT_DATA/test`` (10,000 JPEGs) with the default shipped model (``exported/default``),
one run of each, every run in a fresh subprocess so peaks are its own:

- local: ``predict_files`` as ``cifarkit predict`` runs it (decoder processes = physical cores,
  onnxruntime threads = physical cores, no spinning);
- ray: ``RayPrediction`` as ``cifarkit predict --engine ray`` runs it, on a local Ray started in
  the subprocess (one 1-CPU actor per CPU). Its img/s is counted from the end of Ray's start-up
  (reported apart) to the last row, so it compares pipelines, not start-up costs;
- both at 100,000 inputs: the test tree linked 10 times (symlinks in a temp folder).

Ray's img/s is also given once running (rows after the first over the time after it): the
actors' spin-up (worker processes, imports, model load: ~5 s here) is a fixed cost that a
10,000-image run on 2 cores cannot amortise.

Memory: peak driver RSS (``ru_maxrss``) and peak object-store use (Ray's memory summary,
sampled every 0.5 s). The goal of issue 19: Ray ≥ 0.8× local on 2 cores; memory flat from
10,000 to 100,000 inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "ray-predict-cpu.json"


def _data() -> Path:
    root = Path(os.environ.get("CIFARKIT_DATA", REPO.parent / "shared" / "data" / "cifar10"))
    test = root / "test"
    if not test.is_dir():
        sys.exit(f"no test split at {test}: set CIFARKIT_DATA")
    return test


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _StoreSampler(threading.Thread):
    """Peak object-store use, from Ray's memory summary, every ``period`` seconds."""

    def __init__(self, period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.period, self.peak_mib, self.samples = period, 0.0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        from ray._private.internal_api import memory_summary

        while not self.stop.is_set():
            try:
                text = memory_summary(stats_only=True)
                m = re.search(r"Plasma memory usage (\d+(?:\.\d+)?) MiB", text)
                if m:
                    self.peak_mib = max(self.peak_mib, float(m.group(1)))
                    self.samples += 1
            except Exception:
                pass
            self.stop.wait(self.period)


def child(engine: str, source: str, batch_size: int) -> dict:
    from cifarkit.backends import Classifier, resolve_model
    from cifarkit.engines import predict_files
    from cifarkit.engines.local import default_workers

    model = resolve_model(None)
    n = failed = correct = 0
    out: dict = {"engine": engine, "model": str(model), "batch_size": batch_size}
    if engine == "local":
        workers = default_workers()
        t0 = time.perf_counter()
        with Classifier(model, "cpu", allow_spinning=False) as clf:
            for pred in predict_files(clf, [source], batch_size=batch_size, workers=workers,
                                      labels_from_folders=True):
                n += 1
                failed += not pred.ok
                correct += bool(pred.correct)
            out["threads"] = clf.threads
        seconds = time.perf_counter() - t0
        out.update(workers=workers, seconds=seconds, images_per_second=n / seconds)
    else:
        from cifarkit.engines import PredictRequest
        from cifarkit.engines.ray import RayPrediction, quiet_ray

        quiet_ray()
        job = RayPrediction(PredictRequest(sources=(source,), model=model, batch_size=batch_size,
                                           labels_from_folders=True))
        sampler = _StoreSampler()
        t0 = time.perf_counter()
        first = None
        for pred in job:
            if first is None:
                first = time.perf_counter()
                sampler.start()
            n += 1
            failed += not pred.ok
            correct += bool(pred.correct)
        end = time.perf_counter()
        sampler.stop.set()
        startup = job.startup_seconds
        out.update(
            seconds_total=end - t0, ray_startup_seconds=startup,
            seconds_after_startup=end - t0 - startup,
            images_per_second=n / (end - t0 - startup),
            first_row_after_startup_seconds=(first or end) - t0 - startup,
            # rows after the first one over the time after it: the pipeline once running
            steady_images_per_second=(n - 1) / (end - first) if first and end > first else None,
            concurrency=job.concurrency, resources=job.resources, duplicates=job.duplicates,
            object_store_peak_mib=sampler.peak_mib, object_store_samples=sampler.samples,
        )
    out.update(images=n, failed=failed, accuracy=correct / n if n else None,
               driver_peak_rss_mib=_peak_rss_mib())
    return out


def _run_child(engine: str, source: Path, batch_size: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "toolkit"), str(REPO)])}
    r = subprocess.run(
        [sys.executable, __file__, "--child", engine, "--source", str(source),
         "--batch-size", str(batch_size)],
        capture_output=True, text=True, env=env, timeout=3600,
    )
    if r.returncode != 0:
        sys.exit(f"{engine} run on {source} failed:\n{r.stderr[-3000:]}")
    result = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"  {engine:5s} {result['images']:>7,} images: {result['images_per_second']:,.0f} img/s,"
          f" driver peak RSS {result['driver_peak_rss_mib']:.0f} MiB"
          + (f", object store peak {result['object_store_peak_mib']:.0f} MiB, Ray start-up "
             f"{result['ray_startup_seconds']:.1f} s" if engine == "ray" else ""), flush=True)
    return result


def _linked_tree(test: Path, copies: int, into: Path) -> Path:
    """``copies`` × the test tree as symlinks: ``into/rep-k/<class>/<file>``."""
    for k in range(copies):
        for cls in sorted(p for p in test.iterdir() if p.is_dir()):
            d = into / f"rep-{k:02d}" / cls.name
            d.mkdir(parents=True)
            for f in cls.iterdir():
                os.symlink(f, d / f.name)
    return into


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", choices=("local", "ray"), help=argparse.SUPPRESS)
    ap.add_argument("--source", help=argparse.SUPPRESS)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--skip-100k", action="store_true", help="only the 10,000-input runs")
    ap.add_argument("--output", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.source, args.batch_size)))
        return

    sys.path.insert(0, str(REPO / "toolkit"))
    from cifarkit._io import write_json
    from cifarkit.measure.machine import collect_environment, load_average

    env = collect_environment(sys.argv)
    test = _data()
    print(f"10,000 test JPEGs from {test}", flush=True)
    local = _run_child("local", test, args.batch_size)
    ray10 = _run_child("ray", test, args.batch_size)
    runs = {"local_10k": local, "ray_10k": ray10}
    if not args.skip_100k:
        with tempfile.TemporaryDirectory(prefix="cifarkit-ray-bench-") as tmp:
            tree = _linked_tree(test, 10, Path(tmp))
            print(f"100,000 inputs (symlinks) in {tree}", flush=True)
            runs["local_100k"] = _run_child("local", tree, args.batch_size)
            runs["ray_100k"] = _run_child("ray", tree, args.batch_size)
    ratio = ray10["images_per_second"] / local["images_per_second"]
    summary = {
        "local_images_per_second": local["images_per_second"],
        "ray_images_per_second": ray10["images_per_second"],
        "ray_over_local": ratio,
        "ray_startup_seconds": ray10["ray_startup_seconds"],
        # the actors' own start (worker processes, imports, model load) until the first row
        "ray_actor_spinup_seconds": ray10["first_row_after_startup_seconds"],
        "ray_steady_images_per_second": ray10["steady_images_per_second"],
        "ray_steady_over_local": ray10["steady_images_per_second"] / local["images_per_second"],
        "goal_ray_over_local": 0.8,
    }
    if "ray_100k" in runs:
        big = runs["ray_100k"]
        summary.update(
            local_100k_images_per_second=runs["local_100k"]["images_per_second"],
            ray_100k_images_per_second=big["images_per_second"],
            ray_over_local_100k=big["images_per_second"]
            / runs["local_100k"]["images_per_second"],
            memory_10k_mib={"driver_peak_rss": ray10["driver_peak_rss_mib"],
                            "object_store_peak": ray10["object_store_peak_mib"]},
            memory_100k_mib={"driver_peak_rss": big["driver_peak_rss_mib"],
                             "object_store_peak": big["object_store_peak_mib"]},
        )
    env["load_average_after"] = load_average()
    write_json(args.output, {"benchmark": "ray_predict", "environment": env,
                             "summary": summary, "runs": runs})
    print(f"ray / local = {ratio:.2f} at 10,000 inputs, actor spin-up "
          f"({summary['ray_actor_spinup_seconds']:.1f} s) included; "
          f"{summary['ray_steady_over_local']:.2f} once running"
          + (f"; {summary['ray_over_local_100k']:.2f} at 100,000 inputs"
             if "ray_over_local_100k" in summary else "") + f" (goal ≥ 0.8); wrote {args.output}")


if __name__ == "__main__":
    main()
