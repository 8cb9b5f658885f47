"""Where an ONNX file's CPU time goes: onnxruntime's session profile, summed by op type.

onnxruntime's profiler (``SessionOptions.enable_profiling``) writes a Chrome-trace JSON with
one ``Node`` event per kernel run; this script runs each model ``--runs`` times at each batch
size (after warm-up runs that are not counted), sums the events' durations by op type (the
*optimized* graph's kernels: ``QLinearConv``, ``Conv``, ``Erf``, ``QuantizeLinear`` …) and
records the share of each, so a note can say where int8 time went before and after a change.

    python benchmarks/int8_profile.py exported/fastnet/model.int8.onnx \\
        /tmp/probe-relu-exp/model.int8.onnx --threads 1 \\
        --out benchmarks/results/int8-profile-cpu.json

Totals are per image (µs). The profiler adds a little overhead per kernel; shares, not
absolute speeds, are the point (speed ratios come from ``int8_speed.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def profile(model: Path, batch: int, runs: int, threads: int, warmup: int = 5) -> dict[str, Any]:
    """Per-op-type time of ``runs`` timed runs of ``model`` at ``batch`` (µs per image)."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory(prefix="cifarkit-profile-") as tmp:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = threads
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "ort")
        sess = ort.InferenceSession(os.fspath(model), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
        # Warm-up runs (allocation, kernel choice) are in the trace too: only the last
        # `runs` model_run events and the kernels inside them are counted.
        for _ in range(warmup + runs):
            sess.run(["probabilities"], {"images": images})
        trace_file = sess.end_profiling()
        events = json.loads(Path(trace_file).read_text(encoding="utf-8"))
    run_events = sorted((e for e in events if e.get("cat") == "Session"
                         and e.get("name") == "model_run"), key=lambda e: e["ts"])[-runs:]
    start = run_events[0]["ts"]
    by_op: dict[str, float] = defaultdict(float)
    nodes: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for e in events:
        if e.get("cat") != "Node" or e["ts"] < start or not e["name"].endswith("_kernel_time"):
            continue
        op = e.get("args", {}).get("op_name", "?")
        by_op[op] += e["dur"]
        nodes[e["name"][: -len("_kernel_time")]] += e["dur"]
        count[op] += 1
    total_nodes = sum(by_op.values())
    total_run = sum(e["dur"] for e in run_events)
    per_image = runs * batch
    return {
        "batch": batch,
        "runs": runs,
        "threads": threads,
        "us_per_image_model_run": round(total_run / per_image, 2),
        "us_per_image_kernels": round(total_nodes / per_image, 2),
        "by_op_type": {
            op: {"us_per_image": round(t / per_image, 2),
                 "share": round(t / total_nodes, 4),
                 "kernels_per_run": count[op] // runs}
            for op, t in sorted(by_op.items(), key=lambda kv: -kv[1])
        },
        "top_nodes": {n: round(t / per_image, 2)
                      for n, t in sorted(nodes.items(), key=lambda kv: -kv[1])[:12]},
    }


def markdown(results: dict[str, Any]) -> str:
    lines = []
    for entry in results["models"]:
        for p in entry["profiles"]:
            lines.append(f"### {entry['label']} — batch {p['batch']}, {p['threads']} thread(s): "
                         f"{p['us_per_image_model_run']} µs/image")
            lines += ["", "| op type | kernels/run | µs/image | share |", "|---|---:|---:|---:|"]
            for op, r in p["by_op_type"].items():
                lines.append(f"| {op} | {r['kernels_per_run']} | {r['us_per_image']} "
                             f"| {100 * r['share']:.1f} % |")
            lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help=".onnx files (label=path allowed)")
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--runs", type=int, default=50, help="profiled runs per batch size "
                        "(batch 1 gets 10x as many)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    args = parser.parse_args()

    import onnxruntime as ort

    from cifarkit._io import write_json, write_text
    from cifarkit.measure.machine import cpu_flags, cpu_name

    batches = [int(b) for b in args.batches.split(",")]
    entries = []
    for spec in args.models:
        label, _, path = os.fspath(spec).rpartition("=")
        path_p = Path(path)
        label = label or os.fspath(path_p)
        profiles = [profile(path_p, b, args.runs * (10 if b == 1 else 1), args.threads)
                    for b in batches]
        entries.append({"label": label, "file": os.fspath(path_p), "profiles": profiles})
        print(f"{label}: " + ", ".join(
            f"b{p['batch']} {p['us_per_image_model_run']} µs/img" for p in profiles),
            file=sys.stderr)
    flags = cpu_flags()
    results = {
        "schema": "cifarkit.int8-profile/1",
        "command": " ".join(["python", *sys.argv]),
        "machine": {
            "cpu": cpu_name(), "logical_cpus": os.cpu_count(),
            "flags": {f: f in flags for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni",
                                              "amx_int8")},
            "load_average": list(os.getloadavg()),
            "python": platform.python_version(), "onnxruntime": ort.__version__,
        },
        "models": entries,
    }
    write_json(args.out, results)
    if args.markdown:
        write_text(args.markdown, markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
