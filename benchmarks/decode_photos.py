"""The decoder alone on camera-size photos and on huge images: images/s and peak RSS.

    .venv/bin/python benchmarks/decode_photos.py --out benchmarks/results/decode-photos-cpu.json

What ``cifarkit predict`` can reach at best on a folder of phone/camera photos is how fast one
decoder process turns them into S×S arrays (``data.images.load_image``, the same function, the
same reduction, no model): predict's goal is ≥ 0.9 of this bound per decoder process, and no
decoder above ~500 MiB. Two parts, every file made on the fly (nothing downloaded):

- ``photos``: ``--count`` photo-like 4000×3000 (12 Mpx) JPEGs (quality 92) and PNGs; each
  format decoded ``--rounds`` times over in one fresh process: images/s (best round, files in
  the page cache) and the process's peak RSS;
- ``large``: one 8,100×8,100 image per kind (8-bit RGB PNG; 16-bit grey PNG holding 12-bit
  data; 32-bit float TIFF with values in ±3.14, deflate), each decoded once in its own fresh
  process: peak RSS, peak anonymous RSS (sampled every 2 ms: without the file pages libtiff
  maps), and the peak of the same process before the decode (imports, one 32×32 decode).

Peak RSS is the child's ``VmHWM`` (``/proc/self/status``), not ``getrusage``'s ``ru_maxrss``:
Linux carries ``ru_maxrss`` across fork + exec, so a child of this (large) process would
report the parent's peak. The report names the machine and the load averages before and
after (the cores may be shared). ``--keep DIR`` reuses files already made there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SCHEMA = "cifarkit.decode-photos/1"
PHOTO = (4000, 3000)
LARGE = 8100

# One child per measurement: peak RSS is per process and never goes down.
_CHILD = """
import json, sys, threading, time
from pathlib import Path
from cifarkit.data.images import load_image

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

size, rounds, sample, files = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4:]
load_image(Path(files[0]).with_name("warmup.png"), size=size)
before, anon, done = status("VmHWM"), [0.0], threading.Event()

def sampler():  # anonymous memory only: libtiff maps the file itself (page cache, shared)
    while not done.wait(0.002):
        anon[0] = max(anon[0], status("RssAnon"))

if sample:
    threading.Thread(target=sampler, daemon=True).start()
best = float("inf")
for _ in range(rounds):
    t = time.perf_counter()
    for f in files:
        arr = load_image(f, size=size)
    best = min(best, time.perf_counter() - t)
done.set()
print(json.dumps({"seconds": best, "images_per_s": len(files) / best, "rss_before_mib": before,
                  "peak_rss_mib": status("VmHWM"), "peak_anon_mib": anon[0] if sample else None,
                  "mean": float(arr.mean())}))
"""


def photo(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A photo-like picture: smooth shapes and shading (upsampled noise) plus sensor noise,
    so JPEG and PNG sizes and decode times are those of real photos, not of flat colour."""
    coarse = rng.integers(0, 256, (h // 100 + 1, w // 100 + 1, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))
    noise = rng.normal(0, 6, (h, w, 1)).astype(np.int16)
    return np.clip(smooth.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def make_photos(folder: Path, count: int) -> dict[str, list[str]]:
    rng = np.random.default_rng(0)
    out: dict[str, list[str]] = {"jpeg": [], "png": []}
    for i in range(count):
        img = Image.fromarray(photo(rng, *PHOTO))  # made even when kept: same rng stream
        for fmt, kw in (("jpeg", {"quality": 92}), ("png", {"compress_level": 1})):
            path = folder / f"photo{i}.{'jpg' if fmt == 'jpeg' else 'png'}"
            if not path.exists():
                img.save(path, **kw)
            out[fmt].append(str(path))
    return out


def make_large(folder: Path) -> dict[str, str]:
    """The three 8,100² images of issue 26's memory figures."""
    ramp = np.linspace(0.0, 1.0, LARGE, dtype=np.float32)
    paths = {k: str(folder / n) for k, n in
             (("rgb-png", "rgb.png"), ("grey16-png", "grey16.png"), ("float-tiff", "float.tif"))}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    rgb = np.empty((LARGE, LARGE, 3), np.uint8)
    rgb[..., 0] = (ramp * 255).astype(np.uint8)[None, :]
    rgb[..., 1] = (ramp * 255).astype(np.uint8)[:, None]
    rgb[..., 2] = 128
    Image.fromarray(rgb).save(paths["rgb-png"], compress_level=1)
    del rgb
    grey = np.broadcast_to((ramp * 4095).astype(np.uint16)[None, :], (LARGE, LARGE))
    Image.fromarray(np.ascontiguousarray(grey)).save(paths["grey16-png"])
    flt = np.sin(np.outer(ramp, ramp) * 40).astype(np.float32) * np.float32(3.14)
    Image.fromarray(flt).save(paths["float-tiff"], compression="tiff_adobe_deflate")
    return paths


def measure(files: list[str], size: int, rounds: int, sample: bool = False) -> dict[str, Any]:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CHILD, str(size), str(rounds),
                          str(int(sample)), *files],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1:],
                "process_s": time.perf_counter() - t}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["stderr"] = out.stderr.strip()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=6, help="photos per format (default 6)")
    ap.add_argument("--rounds", type=int, default=3, help="passes over the photos (best kept)")
    ap.add_argument("--size", type=int, default=32, help="the model's image size S")
    ap.add_argument("--parts", default="photos,large", help="photos, large or both")
    ap.add_argument("--keep", help="make the files in this folder and keep them")
    ap.add_argument("--out", help="write the results here as JSON")
    ap.add_argument("--note", default="", help="free text kept in the JSON (what else ran)")
    args = ap.parse_args()

    from cifarkit._io import write_json
    from cifarkit.measure.machine import collect_environment, load_average

    folder = Path(args.keep or tempfile.mkdtemp(prefix="cifarkit-decode-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (90, 120, 200)).save(folder / "warmup.png")
    parts = set(args.parts.split(","))
    load_before = load_average()
    report: dict[str, Any] = {"schema": SCHEMA, "note": args.note, "size": args.size,
                              "load_before": load_before}
    if "photos" in parts:
        files = make_photos(folder, args.count)
        report["photos"] = {}
        for fmt, paths in files.items():
            r = measure(paths, args.size, args.rounds)
            r["files"], r["mpx"] = len(paths), PHOTO[0] * PHOTO[1] / 1e6
            r["mean_file_mib"] = sum(os.path.getsize(p) for p in paths) / len(paths) / 2**20
            report["photos"][fmt] = r
            print(f"{fmt:5} 4000×3000: {r.get('images_per_s', 0):6.1f} images/s, peak RSS "
                  f"{r.get('peak_rss_mib', 0):5.0f} MiB {r.get('error') or ''}")
    if "large" in parts:
        report["large"] = {}
        for kind, path in make_large(folder).items():
            r = measure([path], args.size, 1, sample=True)
            r["file_mib"] = os.path.getsize(path) / 2**20
            report["large"][kind] = r
            print(f"{kind:10} {LARGE}²: peak RSS {r.get('peak_rss_mib', 0):5.0f} MiB, anonymous "
                  f"{r.get('peak_anon_mib') or 0:4.0f} MiB (before the decode "
                  f"{r.get('rss_before_mib', 0):3.0f} MiB), {r.get('seconds', 0):.2f} s "
                  f"{r.get('error') or ''}")
    report["load_after"] = load_average()
    report["environment"] = collect_environment()
    print(f"load average {load_before} → {report['load_after']}")
    if not args.keep:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
    if args.out:
        write_json(Path(args.out), report)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
