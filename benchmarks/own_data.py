"""Your own data, end to end: train → export (fp32 + int8) → accuracy, on datasets that are
not CIFAR-10 and that packages ship (nothing is downloaded).

Datasets, written out as class folders (PNG) the way a user's photos would be:
- ``digits``: scikit-learn's 1,797 8×8 handwritten digit scans, 10 classes (zero … nine),
  20 % of each class as test/;
- ``faces``: scikit-image's ``lfw_subset``, 200 25×25 crops, 2 classes (face / not-face),
  25 % of each class as test/.

For each dataset and architecture: from scratch, and with ``--init fastnet-relu`` (the
shipped CIFAR-10 model, rebuilt from its ONNX file) — test top-1 of the Keras run, of the
exported fp32 and int8 files (int8 calibrated on the dataset's own training images), and
seconds per epoch at the chosen size on this machine.

    python benchmarks/own_data.py --out benchmarks/results/own-data-cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_faces(root: Path) -> Path:
    from skimage.data import lfw_subset

    faces = (lfw_subset() * 255).round().astype(np.uint8)
    for c, name in enumerate(("face", "not-face")):
        part = faces[100 * c:100 * (c + 1)]
        for i, img in enumerate(part):
            split = "test" if i % 4 == 0 else "train"
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img, "L").save(d / f"{i:03d}.png")
    return root


def run_one(name: str, data: Path, arch: str, size: int, epochs: int, init: str | None,
            work: Path) -> dict:
    from cifarkit.backends import Classifier
    from cifarkit.data import load_dataset
    from cifarkit.export import export_model
    from cifarkit.train import train

    tag = f"{name}-{arch}-{'init' if init else 'scratch'}"
    start = time.perf_counter()
    result = train(arch, data=str(data), image_size=size, epochs=epochs, init=init,
                   out=work / tag, overwrite=True)
    train_s = time.perf_counter() - start
    export_model(work / tag, out=work / tag / "exported", precisions=("fp32", "int8"),
                 data=str(data))
    ds = load_dataset(data, splits=("test",), image_size=size)
    files = {}
    for precision in ("fp32", "int8"):
        with Classifier(work / tag / "exported" / f"model.{precision}.onnx") as clf:
            probs = clf.predict_proba(ds.x_test)
            assert tuple(clf.classes) == ds.classes
        files[precision] = float(np.mean(probs.argmax(1) == ds.y_test))
    meta = json.loads((work / tag / "run.json").read_text())
    return {"dataset": name, "arch": arch, "init": init, "image_size": size,
            "classes": len(ds.classes), "train_images": meta["data"]["train"],
            "val_images": meta["data"]["val"], "test_images": len(ds.y_test),
            "epochs": epochs, "keras_test_top1": result.test_accuracy,
            "onnx_fp32_top1": files["fp32"], "onnx_int8_top1": files["int8"],
            "seconds_per_epoch": float(np.median(meta["epoch_seconds"])),
            "train_seconds": train_s, "command": meta["command"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "own-data")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--archs", default="fastnet-relu,cnn-batchnorm")
    args = p.parse_args()

    from tests.conftest import write_digits

    from cifarkit.measure.machine import collect_environment

    args.work.mkdir(parents=True, exist_ok=True)
    datasets = {"digits": write_digits(args.work / "data-digits"),
                "faces": write_faces(args.work / "data-faces")}
    rows = []
    for name, data in datasets.items():
        for arch in args.archs.split(","):
            rows.append(run_one(name, data, arch, args.size, args.epochs, None, args.work))
            print(json.dumps(rows[-1]), flush=True)
        rows.append(run_one(name, data, "fastnet-relu", args.size, args.epochs, "fastnet-relu",
                            args.work))
        print(json.dumps(rows[-1]), flush=True)
    report = {"rows": rows, "environment": collect_environment(sys.argv)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
