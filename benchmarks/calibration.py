"""Calibration and accuracy under corruption of one exported model on real CIFAR-10: issue 27's
measurement library (``cifarkit.measure.calibration``, ``cifarkit.data.corruptions``) run
before any of it is wired into export or bench.

    python benchmarks/calibration.py --data ../shared/data/cifar10 \\
        --model exported/fastnet-relu/model.int8.onnx \\
        --out benchmarks/results/calibration-fastnet-relu-int8-cpu.json

1. Probabilities of the test images and of ``--val`` stratified *training* images (never test)
   through ``cifarkit.backends.Classifier`` (onnxruntime, CPU).
2. One temperature fitted on those training images (``log p`` as logits: softmax is
   shift-invariant; the model's TTA average is what gets scaled), then ECE (15 bins, top
   label), classwise ECE, NLL, Brier and the reliability bins on the test split, before and
   after. The shipped models trained on all 50,000 training images (``val_split`` 0), so these
   are images the model has seen, where it is surer and more often right than on new ones: the
   fitted T is biased towards sharpening. As a yardstick only, ``diagnostic_test_halves`` fits
   T on one half of the test split and scores the other half (both ways round); it is never
   the reported fit.
3. The corruption table on ``--corruption-images`` stratified test images: the 15 corruptions
   at severities 1–5 (the CIFAR-10-C table, seeded), accuracy per corruption and severity,
   their mean, the drop from the clean images, and the ECE with and without the temperature.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "cifarkit.calibration/1"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_images(data: str, n_val: int, n_corrupt: int, seed: int) -> dict[str, np.ndarray]:
    """Test images, ``n_val`` stratified training images, and the corruption subset's index."""
    from cifarkit.data import load_dataset, stratified_subset

    ds = load_dataset(data, splits=("train", "test"))
    val = stratified_subset(ds.y_train, n_val, seed)
    return {"x_test": ds.x_test, "y_test": ds.y_test, "x_val": ds.x_train[val],
            "y_val": ds.y_train[val], "corrupt_idx": stratified_subset(ds.y_test, n_corrupt, seed)}


def calibration_before_after(
    p_val: np.ndarray, y_val: np.ndarray, p_test: np.ndarray, y_test: np.ndarray,
) -> dict[str, Any]:
    from cifarkit.measure import calibration as cal

    fit = cal.fit_temperature(cal.log_probs(p_val), y_val)
    before = cal.evaluate(p_test, y_test)
    after = cal.evaluate(cal.apply_temperature(p_test, fit.temperature), y_test)
    return {"fit": vars(fit) | {"fitted_on": f"{len(y_val)} stratified training images"},
            "test_before": before.to_dict(), "test_after": after.to_dict(),
            "val_before": cal.evaluate(p_val, y_val).to_dict()}


def halves_yardstick(p_test: np.ndarray, y_test: np.ndarray, seed: int) -> dict[str, Any]:
    """T fitted on one half of the test split, ECE/NLL on the other; both ways round."""
    from cifarkit.data import stratified_split
    from cifarkit.measure import calibration as cal

    a, b = stratified_split(y_test, 0.5, seed)
    rows = []
    for fit_idx, eval_idx in ((a, b), (b, a)):
        fit = cal.fit_temperature(cal.log_probs(p_test[fit_idx]), y_test[fit_idx])
        scaled = cal.apply_temperature(p_test[eval_idx], fit.temperature)
        report = cal.evaluate(scaled, y_test[eval_idx])
        rows.append({"temperature": fit.temperature, "ece": report.ece, "nll": report.nll,
                     "brier": report.brier, "n_fit": len(fit_idx), "n_eval": len(eval_idx)})
    return {"note": "yardstick only: T fitted on test images; never the reported fit",
            "folds": rows}


def corruption_table(
    clf: Any, x: np.ndarray, y: np.ndarray, temperature: float, seed: int,
    progress: bool = True,
) -> dict[str, Any]:
    from cifarkit.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt, family_of
    from cifarkit.measure import calibration as cal

    clean = clf.predict_proba(x)
    rows: dict[str, Any] = {}
    t0 = time.perf_counter()
    for name in CORRUPTIONS:
        per = []
        for severity in SEVERITIES:
            probs = clf.predict_proba(corrupt(x, name, severity, seed))
            per.append({"severity": severity, "accuracy": float(np.mean(probs.argmax(1) == y)),
                        "ece": cal.ece(probs, y),
                        "ece_scaled": cal.ece(cal.apply_temperature(probs, temperature), y)})
        rows[name] = {"family": family_of(name), "severities": per,
                      "mean_accuracy": float(np.mean([r["accuracy"] for r in per]))}
        if progress:
            print(f"  {name:18s} " + " ".join(f"{r['accuracy']:.3f}" for r in per)
                  + f"  ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    clean_acc = float(np.mean(clean.argmax(1) == y))
    mean_acc = float(np.mean([r["mean_accuracy"] for r in rows.values()]))
    by_severity = [float(np.mean([r["severities"][s - 1]["accuracy"] for r in rows.values()]))
                   for s in SEVERITIES]
    return {"preset": "cifar-10-c", "seed": seed, "n_images": len(y),
            "clean_accuracy": clean_acc, "clean_ece": cal.ece(clean, y),
            "clean_ece_scaled": cal.ece(cal.apply_temperature(clean, temperature), y),
            "mean_accuracy": mean_acc, "drop_from_clean": clean_acc - mean_acc,
            "mean_accuracy_by_severity": by_severity, "corruptions": rows,
            "seconds": time.perf_counter() - t0}


def markdown(results: dict[str, Any]) -> str:
    c = results["calibration"]
    b, a, fit = c["test_before"], c["test_after"], c["fit"]
    lines = [
        f"model {results['model']['file']}, T = {fit['temperature']:.4f} "
        f"(fitted on {fit['n_images']} training images)",
        "", "| test split | accuracy | confidence | ECE | classwise ECE | NLL | Brier |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in (("before", b), ("after T", a)):
        lines.append(f"| {label} | {r['accuracy']:.4f} | {r['mean_confidence']:.4f} | "
                     f"{r['ece']:.4f} | {r['classwise_ece']:.4f} | {r['nll']:.4f} | "
                     f"{r['brier']:.4f} |")
    halves = results["diagnostic_test_halves"]["folds"]
    lines += ["", "yardstick (T fitted on one test half, scored on the other): " + ", ".join(
        f"T {h['temperature']:.3f} → ECE {h['ece']:.4f}" for h in halves)]
    t = results["corruptions"]
    lines += ["", f"corruptions ({t['n_images']} test images, CIFAR-10-C severities, "
              f"seed {t['seed']}): clean {t['clean_accuracy']:.4f}, mean "
              f"{t['mean_accuracy']:.4f} (drop {t['drop_from_clean']:.4f})", "",
              "| corruption | family | s1 | s2 | s3 | s4 | s5 | mean |",
              "|---|---|---|---|---|---|---|---|"]
    for name, r in t["corruptions"].items():
        accs = " | ".join(f"{s['accuracy']:.3f}" for s in r["severities"])
        lines.append(f"| {name} | {r['family']} | {accs} | {r['mean_accuracy']:.3f} |")
    sev = " | ".join(f"{v:.3f}" for v in t["mean_accuracy_by_severity"])
    lines.append(f"| **mean** | | {sev} | {t['mean_accuracy']:.3f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 (any form cifarkit reads)")
    parser.add_argument("--model", type=Path, default=Path("exported/fastnet-relu/model.int8.onnx"))
    parser.add_argument("--val", type=int, default=5000, help="training images to fit T on")
    parser.add_argument("--corruption-images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    args = parser.parse_args()

    from cifarkit._io import write_json, write_text
    from cifarkit.backends import Classifier
    from cifarkit.measure.machine import collect_environment, load_average

    env = collect_environment()
    started = time.perf_counter()
    data = load_images(args.data, args.val, args.corruption_images, args.seed)
    with Classifier(args.model, "cpu", threads=args.threads) as clf:
        p_test, p_val = clf.predict_proba(data["x_test"]), clf.predict_proba(data["x_val"])
        calib = calibration_before_after(p_val, data["y_val"], p_test, data["y_test"])
        idx = data["corrupt_idx"]
        table = corruption_table(clf, data["x_test"][idx], data["y_test"][idx],
                                 calib["fit"]["temperature"], args.seed)
    env["load_average_after"] = load_average()
    results = {
        "schema": SCHEMA, "environment": env, "seconds": time.perf_counter() - started,
        "model": {"file": str(args.model), "sha256": sha256(args.model)},
        "data": {"source": args.data, "test_images": len(data["y_test"]),
                 "val_images_from_train": len(data["y_val"]), "seed": args.seed},
        "calibration": calib,
        "diagnostic_test_halves": halves_yardstick(p_test, data["y_test"], args.seed),
        "corruptions": table,
    }
    write_json(args.out, results)
    text = markdown(results)
    if args.markdown:
        write_text(args.markdown, text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
