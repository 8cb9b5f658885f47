"""The decoder alone on camera-size photos and on huge images: images/s and peak RSS.

    .venv/bin/python benchmarks/decode_photos.py --out benchmarks/results/decode-photos-cpu.json

What ``cifarkit predict`` can reach at best on a folder of phone/camera photos is how fast one
decoder process turns them into S×S arrays (``data.images.load_image``, the same function, the
same reduction, no model): predict's goal is ≥ 0.9 of this bound per decoder process, and no
decoder above ~500 MiB. Two parts, every file made on the fly (nothing downloaded):

- ``photos``: ``--count`` photo-like 4000×3000 (12 Mpx) JPEGs (quality 92) and PNGs; each
  format decoded ``--rounds`` times over in one fresh process: images/s (best round, files in
  the page cache) and the process's peak RSS;
- ``predict``: ``cifarkit predict`` over the same photos, one decoder process (``-w 1``,
  chunks of 4), one inference thread, JSONL to a file; its own reported seconds (best of
  ``--rounds``; the command's start-up is not in them, the decoder process's start is) over
  half the photos and over all: the whole-run rate and the steady-state (marginal) rate,
  each against the decode bound measured again in the same rounds (interleaved, and watched
  by the same 10-ms poller, so both see the same load on shared cores), and the decoder
  process's peak RSS (from ``/proc``);
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
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SCHEMA = "cifarkit.decode-photos/3"
SUMMARY = re.compile(r"(\d+) images? \((\d+) classified, (\d+) failed\) in ([\d.]+) s")
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
best = cpu = float("inf")
for _ in range(rounds):
    t, c = time.perf_counter(), time.process_time()
    for f in files:
        arr = load_image(f, size=size)
    best = min(best, time.perf_counter() - t)
    cpu = min(cpu, time.process_time() - c)
done.set()
print(json.dumps({"seconds": best, "images_per_s": len(files) / best, "cpu_seconds": cpu,
                  "rss_before_mib": before,
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


def _formats() -> dict[str, tuple[str, dict[str, Any]]]:
    """format → (suffix, save options); HEIF where pillow-heif (a cifarkit dependency) is."""
    from cifarkit.data.formats import register_plugins

    fmts = {"jpeg": (".jpg", {"quality": 92}), "png": (".png", {"compress_level": 1})}
    if register_plugins():
        fmts["heif"] = (".heic", {"quality": 85})
    return fmts


def make_photos(folder: Path, count: int, only: set[str] | None = None) -> dict[str, list[str]]:
    rng = np.random.default_rng(0)
    fmts = {k: v for k, v in _formats().items() if only is None or k in only}
    out: dict[str, list[str]] = {fmt: [] for fmt in fmts}
    for i in range(count):
        img = Image.fromarray(photo(rng, *PHOTO))  # made even when kept: same rng stream
        for fmt, (suffix, kw) in fmts.items():
            path = folder / f"photo{i}{suffix}"
            if not path.exists() or not path.stat().st_size:
                tmp = path.with_name(f".{path.name}.tmp")
                img.save(tmp, format=fmt.upper(), **kw)  # JPEG, PNG, HEIF: Pillow's names
                tmp.replace(path)
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
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(size), str(rounds),
                             str(int(sample)), *files],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _watch(proc, itself=True)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        return {"error": stderr.strip().splitlines()[-1:], "process_s": time.perf_counter() - t}
    result = json.loads(stdout.strip().splitlines()[-1])
    result["stderr"] = stderr.strip()
    return result


def _cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time, its exited threads included (``/proc/PID/stat``,
    in clock ticks): HEIF decoders run libheif's threads, which end before the next reading,
    so summing the live threads' ``schedstat`` lost most of their time (predict's HEIC decoder
    read 7× "leaner" than decoding alone). The bound's ``time.process_time()`` counts the
    same."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    """``pid``'s child processes and theirs, from ``/proc/PID/task/TID/children`` (a few
    small reads, where psutil scans every process on the machine)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def _watch(proc: Any, itself: bool = False) -> tuple[float, float]:
    """Poll a running command every 10 ms until it ends: the highest VmHWM among its
    descendants (the decoders; with ``itself``, the process alone), in MiB, and their CPU
    seconds, each from its last reading (VmHWM only grows). The decode bound is watched
    the same way as predict, so the poller's load on the shared cores is the same in both."""
    peaks: dict[int, float] = {}
    cpu: dict[int, float] = {}
    while proc.poll() is None:
        try:
            pids = [proc.pid] if itself else _descendants(proc.pid)
        except OSError:
            break
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peaks[pid] = int(line.split()[1]) / 1024
                cpu[pid] = _cpu_seconds(pid)
            except (OSError, IndexError, ValueError):
                continue
        time.sleep(0.01)
    return max(peaks.values(), default=0.0), sum(cpu.values())


def _predict_once(paths: list[str], out: Path) -> dict[str, Any]:
    """One ``cifarkit predict`` over ``paths`` (chunks of 4, so one decoder process works
    from the first chunk on): its reported seconds and counts, the decoder's peak RSS and
    its CPU seconds."""
    cmd = [sys.executable, "-m", "cifarkit", "predict", *paths, "-w", "1", "--threads", "1",
           "-b", "4", "--format", "jsonl", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, cpu = _watch(proc)
    stdout, stderr = proc.communicate()
    found = SUMMARY.search(stdout + stderr)
    if not found:
        return {"error": (stdout + stderr).strip().splitlines()[-3:]}
    return {"seconds": float(found.group(4)), "counts": [int(found.group(i)) for i in (1, 2, 3)],
            "peak": peak, "cpu": cpu}


def measure_predict(paths: list[str], rounds: int, out: Path, size: int) -> dict[str, Any]:
    """``cifarkit predict`` over the first half of ``paths`` and over all of them, best of
    ``rounds``: wall seconds as predict reports them (its own start-up not counted) and the
    decoder process's CPU seconds. The marginal figures ``(n - n/2) / (all - half)`` cancel
    the decoder process's start (its imports): the steady state a long run reaches. The
    decode bound is measured again in each round, just before, so both see the same load;
    CPU seconds are the figure that survives a shared machine's load best."""
    half = paths[: len(paths) // 2]
    wall: dict[int, float] = {}
    cpu: dict[int, float] = {}
    peak, counts, bound, bound_cpu = 0.0, [0, 0, 0], 0.0, float("inf")
    for _ in range(rounds):
        alone = measure(paths, size, 1)
        bound = max(bound, alone.get("images_per_s", 0.0))
        bound_cpu = min(bound_cpu, alone.get("cpu_seconds", float("inf")))
        for part in (half, paths):
            got = _predict_once(part, out)
            if "error" in got:
                return got
            wall[len(part)] = min(wall.get(len(part), float("inf")), got["seconds"])
            cpu[len(part)] = min(cpu.get(len(part), float("inf")), got["cpu"])
            peak = max(peak, got["peak"])
            counts = got["counts"] if part is paths else counts
    n, h = len(paths), len(half)
    marginal = (n - h) / (wall[n] - wall[h]) if wall[n] > wall[h] else None
    cpu_per_image = (cpu[n] - cpu[h]) / (n - h)
    return {"decode_bound_images_per_s": bound, "seconds": wall[n],
            "images_per_s": n / wall[n], "half_seconds": wall[h],
            "marginal_images_per_s": marginal, "images": counts[0], "classified": counts[1],
            "failed": counts[2], "decoder_peak_rss_mib": peak,
            "decode_bound_cpu_s_per_image": bound_cpu / n,
            "decoder_cpu_s_per_image": cpu_per_image,
            "cpu_ratio": (bound_cpu / n) / cpu_per_image if cpu_per_image > 0 else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=6, help="photos per format (default 6)")
    ap.add_argument("--rounds", type=int, default=3, help="passes over the photos (best kept)")
    ap.add_argument("--size", type=int, default=32, help="the model's image size S")
    ap.add_argument("--parts", default="photos,predict,large",
                    help="comma-separated: photos, predict (needs photos), large")
    ap.add_argument("--formats", help="comma-separated: jpeg, png, heif (default: all)")
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
        files = make_photos(folder, args.count,
                            set(args.formats.split(",")) if args.formats else None)
        report["photos"] = {}
        for fmt, paths in files.items():
            r = measure(paths, args.size, args.rounds)
            r["files"], r["mpx"] = len(paths), PHOTO[0] * PHOTO[1] / 1e6
            r["mean_file_mib"] = sum(os.path.getsize(p) for p in paths) / len(paths) / 2**20
            report["photos"][fmt] = r
            print(f"{fmt:5} 4000×3000: {r.get('images_per_s', 0):6.1f} images/s, peak RSS "
                  f"{r.get('peak_rss_mib', 0):5.0f} MiB {r.get('error') or ''}")
    if "predict" in parts and "photos" in parts:
        report["predict"] = {}
        for fmt, paths in files.items():
            r = measure_predict(paths, args.rounds, folder / f"predictions-{fmt}.jsonl",
                                args.size)
            bound = r.get("decode_bound_images_per_s")
            for key in ("images_per_s", "marginal_images_per_s"):
                rate = r.get(key)
                r[key.replace("images_per_s", "ratio")] = rate / bound if bound and rate else None
            report["predict"][fmt] = r
            print(f"predict {fmt:5}: {r.get('images_per_s', 0):6.1f} images/s = "
                  f"{r.get('ratio') or 0:.2f}× the decode bound (steady state "
                  f"{r.get('marginal_ratio') or 0:.2f}×; decoder CPU per image "
                  f"{r.get('cpu_ratio') or 0:.2f}× as lean as decoding alone), decoder peak RSS "
                  f"{r.get('decoder_peak_rss_mib', 0):4.0f} MiB {r.get('error') or ''}")
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
