"""int8 vs fp32 speed of exported models: the ratio table of issue 21, with the CPU's flags.

For each model folder (``model.fp32.onnx`` + ``model.int8.onnx``; default: the default
model's folder from ``exported/default``, plus any given), for 1 and 2 onnxruntime threads and
batch sizes 1, 8, 32, 128: fp32 and int8 are timed in interleaved rounds (the order alternates
each round; each measurement runs whole batches for about ``--seconds``), and the table gives
the median images/s and the median of the per-round int8/fp32 ratios at batch 1, batch 32 and
"best" (each precision's fastest batch size). Interleaving is what makes ratios from a busy
machine usable; absolute images/s from one are not.

    python benchmarks/int8_speed.py exported/fastnet /tmp/probe-relu-exp \\
        --out benchmarks/results/int8-speed-cpu.json --markdown benchmarks/results/int8-speed-cpu.md

Issue 21's goals: int8 ≥ 1.6× fp32 at batch 32 and ≥ 1.8× at batch 1 on a CPU without VNNI,
≥ 2.5× at batch 32 on one with VNNI (``avx512_vnni`` / ``avx_vnni`` / ``amx_int8``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

BATCHES = (1, 8, 32, 128)
FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8",
         "amx_tile")
PRECISIONS = ("fp32", "int8")


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(os.fspath(path), sess_options=opts,
                                providers=["CPUExecutionProvider"])


def measure(folder: Path, threads: int, images: np.ndarray, rounds: int,
            seconds: float) -> dict[str, Any]:
    """Per batch size: median images/s of each precision and median int8/fp32 ratio."""
    sessions = {p: _session(folder / f"model.{p}.onnx", threads) for p in PRECISIONS}
    out: dict[str, Any] = {}
    for batch in BATCHES:
        x = np.ascontiguousarray(images[:batch])
        for sess in sessions.values():  # warm up: allocation and kernel choice
            for _ in range(3):
                sess.run(["probabilities"], {"images": x})
        t0 = time.perf_counter()
        sessions["fp32"].run(["probabilities"], {"images": x})
        iters = max(2, int(seconds / max(time.perf_counter() - t0, 1e-6)))
        rates: dict[str, list[float]] = {p: [] for p in PRECISIONS}
        for r in range(rounds):
            for p in (PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]):
                t = time.perf_counter()
                for _ in range(iters):
                    sessions[p].run(["probabilities"], {"images": x})
                rates[p].append(iters * batch / (time.perf_counter() - t))
        out[str(batch)] = {
            "images_per_s": {p: round(statistics.median(v), 1) for p, v in rates.items()},
            "ratio": round(statistics.median(
                a / b for a, b in zip(rates["int8"], rates["fp32"], strict=True)), 3),
            "iterations_per_measurement": iters,
        }
    best = {p: max(out[str(b)]["images_per_s"][p] for b in BATCHES) for p in PRECISIONS}
    best_batch = {p: max(BATCHES, key=lambda b: out[str(b)]["images_per_s"][p])
                  for p in PRECISIONS}
    out["best"] = {"images_per_s": best, "batch": best_batch,
                   "ratio": round(best["int8"] / best["fp32"], 3)}
    return out


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    flags = ", ".join(f for f, on in m["flags"].items() if on)
    lines = [f"CPU: {m['cpu']} ({m['logical_cpus']} logical CPUs; flags: {flags}); "
             f"onnxruntime {m['onnxruntime']}; load average before {m['load_average_before']}",
             "", "| model | threads | batch | fp32 img/s | int8 img/s | int8 / fp32 |",
             "|---|---:|---|---:|---:|---:|"]
    for entry in results["models"]:
        for threads, table in entry["threads"].items():
            for key in ("1", "32", "best"):
                row = table[key]
                label = key if key != "best" else (
                    f"best ({row['batch']['fp32']} / {row['batch']['int8']})")
                lines.append(f"| {entry['name']} | {threads} | {label} | "
                             f"{row['images_per_s']['fp32']:.0f} | "
                             f"{row['images_per_s']['int8']:.0f} | {row['ratio']:.2f}× |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path,
                        help="model folders (model.fp32.onnx + model.int8.onnx)")
    parser.add_argument("--no-default", action="store_true",
                        help="only the folders given, not the default model's")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.2,
                        help="seconds per measurement (whole batches)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()

    import onnxruntime as ort

    from cifarkit._io import write_json, write_text
    from cifarkit.backends.catalog import choose_model
    from cifarkit.measure.machine import cpu_flags, cpu_name

    folders: list[Path] = []
    if not args.no_default:
        folders.append(choose_model(None, "cpu").path.parent)
    folders += [f for f in args.folders if f.resolve() not in {g.resolve() for g in folders}]
    missing = [f"{f}/model.{p}.onnx" for f in folders for p in PRECISIONS
               if not (f / f"model.{p}.onnx").is_file()]
    if missing:
        parser.error(f"missing: {', '.join(missing)}")
    # Real pixel statistics matter little for speed; fixed random pixels keep this data-free.
    images = np.random.default_rng(0).integers(0, 256, (max(BATCHES), 32, 32, 3),
                                               dtype=np.uint8)
    flags = cpu_flags()
    results: dict[str, Any] = {
        "schema": "cifarkit.int8-speed/1",
        "command": " ".join(["python", *sys.argv]),
        "machine": {
            "cpu": cpu_name(), "logical_cpus": os.cpu_count(),
            "flags": {f: f in flags for f in FLAGS},
            "load_average_before": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(), "onnxruntime": ort.__version__,
        },
        "rounds": args.rounds, "seconds_per_measurement": args.seconds,
        "batch_sizes": list(BATCHES), "models": [],
    }
    for folder in folders:
        entry = {"name": folder.name, "folder": os.fspath(folder), "threads": {}}
        for threads in (int(t) for t in args.threads.split(",")):
            entry["threads"][str(threads)] = measure(folder, threads, images, args.rounds,
                                                     args.seconds)
            t = entry["threads"][str(threads)]
            print(f"{folder.name} threads {threads}: b1 {t['1']['ratio']}×, "
                  f"b32 {t['32']['ratio']}×, best {t['best']['ratio']}×", file=sys.stderr)
        results["models"].append(entry)
    results["machine"]["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    write_json(args.out, results)
    if args.markdown:
        write_text(args.markdown, markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
