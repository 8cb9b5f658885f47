"""How much the data's JPEG compression costs a training recipe: the same run on re-encoded data.

The CIFAR-10 copy here is JPEG quality 75 with 4:2:0 chroma subsampling (the 32×32 images'
colour is stored at 16×16); airbench94's 94 % is on the original lossless pickles, which
are not available offline. The cost of the compression cannot be measured directly without
them, so this script measures its slope instead: it re-encodes the whole data set (train and
test) at lower qualities, trains the same architecture, recipe and seed on each copy, and
tabulates test accuracy against quality next to the run on the data as given. It also reports
each copy's mean PSNR against the source images, so the size of the extra distortion is on
record beside its cost.

    python benchmarks/jpeg_quality.py --data ../shared/data/cifar10 --arch fastnet-s \\
        --qualities 50,30 --work runs/jpeg-quality \\
        --out benchmarks/results/jpeg-quality-fastnet-s.json

Re-encoded copies go under ``--work`` (never into the repository); a copy already there is
reused, and a quality whose run folder holds a finished run (same arch, recipe, seed) is not
trained again, so an interrupted study resumes. ``--baseline RUN_DIR`` takes the source-data
row from an existing finished run instead of training it (it must match arch, epochs and
seed). Every row must have the same hyper-parameters as the first (a run reused from before
a recipe change is refused, not mixed in).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

SCHEMA = "cifarkit.jpeg-quality/1"


def reencode(src: Path, dst: Path, quality: int) -> dict[str, float]:
    """Copy the train/ and test/ trees of ``src`` to ``dst``, every image re-encoded at
    ``quality`` with 4:2:0 subsampling (the source's). Written into a temp folder renamed
    into place, so a half-written copy is never taken for a finished one."""
    from PIL import Image

    from cifarkit.data.images import is_image_path

    tmp = dst.with_name(dst.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    t0 = time.perf_counter()
    sq_err, n_pix = 0.0, 0
    count = 0
    for split in ("train", "test"):
        for cls in sorted(p for p in (src / split).iterdir() if p.is_dir()):
            out_dir = tmp / split / cls.name
            out_dir.mkdir(parents=True)
            for f in sorted(p for p in cls.iterdir() if is_image_path(p)):
                with Image.open(f) as im:
                    rgb = im.convert("RGB")
                target = out_dir / (f.stem + ".jpg")
                rgb.save(target, format="JPEG", quality=quality, subsampling=2)
                with Image.open(target) as im2:
                    again = np.asarray(im2.convert("RGB"), dtype=np.float64)
                sq_err += float(np.sum((again - np.asarray(rgb, dtype=np.float64)) ** 2))
                n_pix += again.size
                count += 1
    mse = sq_err / max(n_pix, 1)
    stats = {"images": count, "mse_vs_source": mse,
             "psnr_vs_source_db": float(10 * np.log10(255.0**2 / mse)) if mse else float("inf"),
             "seconds": time.perf_counter() - t0}
    (tmp / "reencode.json").write_text(json.dumps(stats))
    tmp.rename(dst)
    return stats


def finished_run(run_dir: Path, arch: str, epochs: int | None, seed: int) -> dict | None:
    """The run's ``run.json`` if it is a finished run of ``arch`` with ``seed`` (and
    ``epochs``, when given); else None."""
    path = run_dir / "run.json"
    if not path.is_file():
        return None
    run = json.loads(path.read_text())
    if run.get("status") != "complete" or run.get("arch") != arch or run.get("seed") != seed:
        return None
    if epochs is not None and run.get("epochs") != epochs:
        return None
    return run


def row(label: str, quality: int | None, data: Path, run_dir: Path, run: dict,
        distortion: dict | None) -> dict:
    return {"label": label, "quality": quality, "data": str(data), "run_dir": str(run_dir),
            "test_accuracy": run["test_accuracy"], "test_loss": run["test_loss"],
            "train_seconds": run["train_seconds"], "epochs": run["epochs"],
            "seed": run["seed"], "recipe": run["recipe"],
            "hyperparameters": run.get("hyperparameters"), "command": run.get("command"),
            "machine": run.get("device"), "finished_utc": run.get("finished_utc"),
            "distortion": distortion}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="an image-folder CIFAR-10 (train/<class>/*.jpg, test/<class>/*.jpg)")
    parser.add_argument("--arch", default="fastnet-s")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--qualities", default="50,30",
                        help="comma-separated JPEG qualities to re-encode at (1-95)")
    parser.add_argument("--work", type=Path, default=Path("runs/jpeg-quality"),
                        help="where the re-encoded copies and the runs go")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a finished run on --data itself to use as the source row")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--note", action="append", default=[],
                        help="a caveat to record in the JSON (repeatable)")
    args = parser.parse_args()

    qualities = [int(q) for q in args.qualities.split(",") if q.strip()]
    bad = [q for q in qualities if not 1 <= q <= 95]
    if bad:
        parser.error(f"--qualities must be in 1-95, got {bad}")
    if not (args.data / "train").is_dir() or not (args.data / "test").is_dir():
        parser.error(f"--data {args.data} needs train/ and test/ image folders")

    import keras

    from cifarkit._io import write_json
    from cifarkit.measure.machine import cpu_name
    from cifarkit.train import train

    reference: dict | None = None  # every row's hyper-parameters must be these

    def same_recipe(run: dict, run_dir: Path) -> dict:
        nonlocal reference
        hyper = run.get("hyperparameters") or {}
        if reference is None:
            reference = hyper
        differ = sorted(k for k in set(hyper) | set(reference)
                        if hyper.get(k) != reference.get(k))
        if differ:
            raise SystemExit(
                f"{run_dir} was trained with other hyper-parameters than the study's first row "
                f"({', '.join(differ)}): the rows would not compare. Remove it to train it "
                "again, or give a --baseline trained with the current recipe.")
        return run

    def train_on(data: Path, run_dir: Path) -> dict:
        run = finished_run(run_dir, args.arch, args.epochs, args.seed)
        if run is not None:
            print(f"{run_dir}: finished run reused")
            return same_recipe(run, run_dir)
        print(f"training {args.arch} on {data} -> {run_dir}", flush=True)
        train(args.arch, data=data, epochs=args.epochs, seed=args.seed, out=run_dir,
              overwrite=True)
        run = finished_run(run_dir, args.arch, args.epochs, args.seed)
        if run is None:
            raise SystemExit(f"{run_dir}: training did not finish")
        return same_recipe(run, run_dir)

    rows = []
    if args.baseline is not None:
        base = finished_run(args.baseline, args.arch, args.epochs, args.seed)
        if base is None:
            parser.error(f"--baseline {args.baseline} is not a finished {args.arch} run "
                         f"with seed {args.seed}" + (f" and {args.epochs} epochs"
                                                     if args.epochs else ""))
        base_dir = args.baseline
        same_recipe(base, base_dir)
    else:
        base_dir = args.work / f"{args.arch}-source"
        base = train_on(args.data, base_dir)
    rows.append(row("as given (q75, 4:2:0)", None, args.data, base_dir, base, None))

    for q in qualities:
        copy = args.work / f"data-q{q}"
        if not copy.is_dir():
            print(f"re-encoding {args.data} at quality {q} -> {copy}", flush=True)
            reencode(args.data, copy, q)
        distortion = json.loads((copy / "reencode.json").read_text())
        run = train_on(copy, args.work / f"{args.arch}-q{q}")
        rows.append(row(f"re-encoded at q{q}, 4:2:0", q, copy, args.work / f"{args.arch}-q{q}",
                        run, distortion))

    result = {
        "schema": SCHEMA,
        "command": " ".join(["python", *sys.argv]),
        "arch": args.arch,
        "seed": args.seed,
        "rows": rows,
        "notes": args.note,
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                    "platform": platform.platform(), "python": platform.python_version(),
                    "keras": keras.__version__, "backend": keras.backend.backend()},
    }
    write_json(args.out, result)
    print(f"{'data':28} {'PSNR vs source':>15} {'test acc':>9} {'train s':>8}")
    for r in rows:
        psnr = (f"{r['distortion']['psnr_vs_source_db']:.1f} dB" if r["distortion"] else "-")
        print(f"{r['label']:28} {psnr:>15} {r['test_accuracy']:9.2%} {r['train_seconds']:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
