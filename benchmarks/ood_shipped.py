"""How well each model file's own "unknown" rule (its metadata ``unknown``: the top
probability, or the graph's ``score`` output) separates CIFAR-10's test images from images of
other subjects, run through a cifarkit backend as ``predict --reject auto`` runs it.

    python benchmarks/ood_shipped.py --data ../shared/data/cifar10 \\
        --model exported/fastnet-relu/model.fp32.onnx \\
        --model exported/fastnet-relu/model.int8.onnx \\
        --out benchmarks/results/ood-shipped-cpu.json \\
        --markdown benchmarks/results/ood-shipped-cpu.md

Unknown images (nothing is fitted or chosen on them; the threshold is the file's own, set at
export on its held-out validation images): (a) ``ood_scores.unknown_images``, 398 images
(``lfw_subset``'s 100 grey faces and 100 non-face crops, 18 scikit-image photos whole and as
10 crops each), (b) the two folders ``ood_sets.py`` writes (217 images), decoded as
``predict`` decodes files. Reported per file and set: AUROC and FPR at 95 % TPR against the
10,000 test images, the share rejected on each side at the file's threshold, and per subset
(faces / non-faces / photos) the share rejected.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ood_layers import folder_images, unknown_groups
from ood_scores import _sha256, unknown_images

SCHEMA = "cifarkit.ood-shipped/1"
GOAL = "AUROC >= 0.92 and >= 60 % of other subjects rejected at 95 % acceptance"


def scores(path: Path, runtime: str, x: np.ndarray) -> np.ndarray:
    """The file's own unknown score of each image, through ``runtime``."""
    from cifarkit.backends import get_runtime
    from cifarkit.contract import read_onnx
    from cifarkit.measure.ood import unknown_scores

    rule = read_onnx(path).unknown
    if rule is None:
        sys.exit(f"{path} has no unknown rule (export it with --held-out)")
    with get_runtime(runtime).open(path) as model:
        probs, score = model.predict_scored(x)
    return unknown_scores(probs, rule.score, path.name, score)


def measure_file(path: Path, runtime: str, sets: dict[str, np.ndarray],
                 groups: dict[str, list[str]]) -> dict[str, Any]:
    from cifarkit.contract import read_onnx
    from cifarkit.measure.ood import evaluate

    rule = read_onnx(path).unknown
    assert rule is not None
    s = {k: scores(path, runtime, x) for k, x in sets.items()}
    out: dict[str, Any] = {"file": str(path), "sha256": _sha256(path), "score": rule.score,
                           "threshold": rule.threshold, "fitted_on": rule.fitted_on}
    for k in ("unknown", "folders"):
        out[k] = evaluate(s["test"], s[k], rule.threshold).to_dict()
        g = np.array(groups[k])
        out[k]["subsets"] = {name: {"n": int(np.sum(g == name)),
                                    "rejected": float(np.mean(s[k][g == name] < rule.threshold))}
                             for name in dict.fromkeys(groups[k])}
    return out


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [f"Each file's own unknown rule through `{results['runtime']}`; test "
             f"{results['test_images']} images vs (a) {results['unknown_images']} and (b) "
             f"{results['folder_images']} images of other subjects. {env['cpu'].get('model')}."
             f" Goal: {GOAL}.", "",
             "| file | score | AUROC (a) | rejected (a) | AUROC (b) | rejected (b) | "
             "test rejected | faces rejected (a) |", "|---" * 8 + "|"]
    for m in results["models"]:
        a, b = m["unknown"], m["folders"]
        lines.append(f"| `{m['file']}` | {m['score']} | {a['auroc']:.3f} | "
                     f"{a['rejected_out']:.1%} | {b['auroc']:.3f} | {b['rejected_out']:.1%} | "
                     f"{a['rejected_in']:.1%} | {a['subsets']['faces']['rejected']:.1%} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 (any form cifarkit reads)")
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()

    from cifarkit._io import write_json, write_text
    from cifarkit.data import load_dataset
    from cifarkit.measure.machine import collect_environment

    started = time.time()
    ds = load_dataset(args.data, splits=("test",))
    x_unknown, names = unknown_images(0)
    x_folders, folder_groups = folder_images()
    sets = {"test": ds.x_test, "unknown": x_unknown, "folders": x_folders}
    groups = {"unknown": unknown_groups(names), "folders": folder_groups}
    results = {"schema": SCHEMA, "environment": collect_environment(), "runtime": args.runtime,
               "data": args.data, "test_images": len(ds.y_test), "unknown_images": len(names),
               "folder_images": len(x_folders),
               "models": [measure_file(p, args.runtime, sets, groups) for p in args.model]}
    results["seconds"] = time.time() - started
    write_json(args.out, results)
    text = markdown(results)
    if args.markdown:
        write_text(args.markdown, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
