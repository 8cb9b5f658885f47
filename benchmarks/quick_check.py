"""The quick-try check: every non-VGG architecture, its own default recipe, a short run.

Each architecture is trained with ``cifarkit train ARCH --epochs 3 --limit 5000`` (a
stratified 5,000-image subset of each split, so 4,500 or 5,000 training images and 5,000
test images) in its own process, and its ``run.json`` is collected. The point is that a short
run learns: each must clearly beat chance (10 %); the figures are a sanity floor, not a
result to compare recipes by.

    python benchmarks/quick_check.py --data ../shared/data/cifar10 \\
        --out benchmarks/results/quick-check-3ep-5000.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ARCHS = ["dense", "cnn", "cnn-dropout", "cnn-batchnorm", "fastnet", "fastnet-s", "fastnet-l",
         "fastnet-relu"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--runs", type=Path, default=Path("runs/quick-check"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=5000)
    ap.add_argument("--only", default="", help="Comma-separated subset of the architectures.")
    args = ap.parse_args()

    from cifarkit._io import write_json

    archs = [a for a in ARCHS if not args.only or a in args.only.split(",")]
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    rows = {r["arch"]: r for r in previous.get("runs", [])}
    for arch in archs:
        out = args.runs / arch
        cmd = ["cifarkit", "train", arch, "--epochs", str(args.epochs), "--limit",
               str(args.limit), "--data", args.data, "--out", str(out), "--overwrite"]
        print("$", " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cifarkit", *cmd[1:]], check=True)
        run = json.loads((out / "run.json").read_text())
        rows[arch] = {
            "arch": arch, "recipe": run["recipe"], "command": " ".join(cmd),
            "train": run["data"]["train"], "test": run["data"]["test"],
            "batch_size": run["hyperparameters"]["batch_size"],
            "test_accuracy": run["test_accuracy"], "train_seconds": run["train_seconds"],
            "wall_seconds": round(time.perf_counter() - t0, 1), "device": run["device"],
        }
        write_json(args.out, {
            "schema": "cifarkit.quick-check/1", "epochs": args.epochs, "limit": args.limit,
            "machine": {"cpu": platform.processor() or platform.machine(),
                        "cores": os.cpu_count(), "load_avg": os.getloadavg()},
            "runs": [rows[a] for a in ARCHS if a in rows],
        })
        print(f"{arch}: test {run['test_accuracy']:.2%}", flush=True)


if __name__ == "__main__":
    main()
