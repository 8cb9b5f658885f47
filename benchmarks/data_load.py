"""How long loading CIFAR-10 from an image-folder tree takes: first load vs cached reloads.

    .venv/bin/python benchmarks/data_load.py --data ../shared/data/cifar10 \\
        --out benchmarks/results/data-load-cpu.json

Each load runs in a fresh Python process (what a user's second ``cifarkit train`` sees: no
warm interpreter state, only the OS page cache), against a new, empty cache folder
(``$CIFARKIT_CACHE`` set to a temp folder, removed afterwards) so the first load really decodes:

- first load: list + stat the 60,000 files, decode them in parallel, write the cache;
- ``--rounds`` cached reloads: list + stat the files (the cache key: names, sizes, mtimes), read
  the cached arrays.

Reported per load: seconds inside ``load_dataset`` and the process's whole wall time (Python
start and imports included), with the medians and maxima of the reloads, the machine, load
averages and versions, as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCHEMA = "cifarkit.data-load/1"

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from cifarkit.data import load_dataset
t1 = time.perf_counter()
ds = load_dataset(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "train": len(ds.x_train),
                  "test": len(ds.x_test), "notes": list(ds.notes)}))
"""


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def one_load(data: str, cache: Path) -> dict[str, Any]:
    env = {**os.environ, "CIFARKIT_CACHE": str(cache)}
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CHILD, data], env=env, capture_output=True,
                         text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        sys.exit(f"load failed:\n{out.stderr.strip()}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="an image-folder tree train/<class>/*")
    ap.add_argument("--rounds", type=int, default=8, help="cached reloads (default 8)")
    ap.add_argument("--out", help="write the results here as JSON")
    ap.add_argument("--note", default="", help="free text kept in the JSON (e.g. what else ran)")
    args = ap.parse_args()

    from cifarkit._io import write_json
    from cifarkit.measure.machine import cpu_name

    cache = Path(tempfile.mkdtemp(prefix="cifarkit-cache-bench-"))
    load_before = load_average()
    try:
        first = one_load(args.data, cache)
        if not any("cached decoded images" in n for n in first["notes"]):
            sys.exit(f"the first load did not write the cache: {first['notes']}")
        reloads = []
        for _ in range(args.rounds):
            r = one_load(args.data, cache)
            if not all("from cache" in n for n in r["notes"]):
                sys.exit(f"a reload did not read the cache: {r['notes']}")
            reloads.append(r)
    finally:
        shutil.rmtree(cache, ignore_errors=True)

    def stats(key: str) -> dict[str, float]:
        vals = [r[key] for r in reloads]
        return {"median": round(statistics.median(vals), 3), "min": round(min(vals), 3),
                "max": round(max(vals), 3)}

    import numpy
    import PIL

    report = {
        "schema": SCHEMA,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "load_before": load_before,
                    "load_after": load_average()},
        "versions": {"numpy": numpy.__version__, "pillow": PIL.__version__},
        "data": args.data,
        "note": args.note,
        "images": {k: first[k] for k in ("train", "test")},
        "first_load": {"load_s": round(first["load_s"], 3),
                       "process_s": round(first["process_s"], 3)},
        "cached_reload": {"rounds": args.rounds, "load_s": stats("load_s"),
                          "process_s": stats("process_s"), "import_s": stats("import_s")},
        "loads": [first, *reloads],
    }
    summary = (f"first load {first['load_s']:.2f} s; cached reload (load_dataset) median "
               f"{report['cached_reload']['load_s']['median']:.2f} s, max "
               f"{report['cached_reload']['load_s']['max']:.2f} s over {args.rounds} fresh "
               f"processes (whole process median "
               f"{report['cached_reload']['process_s']['median']:.2f} s); "
               f"{report['machine']['cpu']} ×{report['machine']['cores']}, load "
               f"{load_before}→{report['machine']['load_after']}")
    print(summary)
    if args.out:
        write_json(Path(args.out), report)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
