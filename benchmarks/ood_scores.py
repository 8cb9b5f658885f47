"""Does a feature-based "unknown" score beat the top probability (MSP) on the shipped models?
Issue 27's goal: AUROC ≥ 0.92, and ≥ 60 % of other-subject photos rejected while ≥ 95 % of
CIFAR-10 test images are accepted.

    python benchmarks/ood_scores.py --data ../shared/data/cifar10 \\
        --model exported/cnn-batchnorm/model.fp32.onnx \\
        --out benchmarks/results/ood-scores-cnn-batchnorm-cpu.json

In-distribution: the 10,000 CIFAR-10 test images. Unknown: 398 images of other subjects that
scikit-image ships, decoded to 32×32 by cifarkit's one decoder (``load_image_bytes``): the
200 ``skimage.data.lfw_subset()`` images (25×25 grey faces and non-face patches of LFW) and
18 of its photos that show none of the ten classes (astronaut, brick, camera, clock, coffee,
coins, grass, gravel, hubble_deep_field, immunohistochemistry, moon, retina, rocket,
stereo_motorcycle, page, text, cell, microaneurysms; cat/chelsea and horse are left out),
each whole and as 10 seeded random square crops (25–60 % of the short side).

Scores (``cifarkit.measure.ood``), higher = more like the training classes:

- ``msp``: the file's top probability (its own output; calibrated when it is).
- ``mahalanobis``: ``-min_k (f - μ_k)ᵀ Σ⁻¹ (f - μ_k)`` on the penultimate features ``f`` (the
  input of the last MatMul/Gemm before the Softmax; with mirror TTA the two views' features
  averaged, as the head averages their logits), class means and one shared covariance fitted
  on ``--fit-images`` stratified training images the model learnt from (outside the training's
  validation split when it had one); ``mahalanobis-l2`` the same on L2-normalised features.
- ``best-layer``: diagnostic only, the best single earlier layer (spatially averaged ReLU /
  MaxPool outputs), chosen on these very test and unknown images, so optimistic.

AUROC, FPR at 95 % TPR (the share of unknown images accepted when 95 % of test images are),
and where the training held out a validation split, the shares rejected on both sides at the
threshold that accepts 95 % of it (the threshold export would record).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "cifarkit.ood-scores/1"
PHOTOS = ("astronaut", "brick", "camera", "clock", "coffee", "coins", "grass", "gravel",
          "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket",
          "stereo_motorcycle", "page", "text", "cell", "microaneurysms")
CROPS = 10


def _png(a: np.ndarray) -> bytes:
    from PIL import Image

    a = np.asarray(a)
    if a.dtype != np.uint8:  # lfw_subset is float 0–1
        a = np.round(255 * (a - a.min()) / max(float(a.max() - a.min()), 1e-9)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def unknown_images(seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """The 398 other-subject images at 32×32, and where each came from."""
    import skimage.data as skd

    from cifarkit.data.images import load_image_bytes

    rng = np.random.default_rng(seed)
    images, names = [], []
    for i, face in enumerate(skd.lfw_subset()):
        images.append(load_image_bytes(_png(face)))
        names.append(f"lfw_subset[{i}]")
    for name in PHOTOS:
        photo = getattr(skd, name)()
        photo = photo[0] if isinstance(photo, tuple) else photo  # stereo pair: the left one
        images.append(load_image_bytes(_png(photo)))
        names.append(name)
        h, w = photo.shape[:2]
        for c in range(CROPS):
            s = int(rng.uniform(0.25, 0.6) * min(h, w))
            y, x = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
            images.append(load_image_bytes(_png(photo[y:y + s, x:x + s])))
            names.append(f"{name}[crop {c}]")
    return np.stack(images), names


def _feature_tensor(graph: Any) -> str:
    """The input of the last MatMul/Gemm on the way back from ``probabilities``."""
    producers = {o: n for n in graph.node for o in n.output}
    consts = {i.name for i in graph.initializer}
    node = producers["probabilities"]
    while node.op_type not in ("MatMul", "Gemm"):
        node = producers[next(i for i in node.input if i in producers and i not in consts)]
    return node.input[0]


def _layer_tensors(proto: Any) -> list[str]:
    return [n.output[0] for n in proto.graph.node if n.op_type in ("Relu", "MaxPool")]


def features(path: Path, x: np.ndarray, extra_layers: bool) -> dict[str, np.ndarray]:
    """``probabilities``, the penultimate features and (optionally) every ReLU/MaxPool output
    averaged over space, each ``[N, ...]`` (two-view TTA batches averaged per image)."""
    import onnx

    from cifarkit.backends.onnxruntime import cpu_session

    proto = onnx.load(str(path))
    wanted = ["probabilities", _feature_tensor(proto.graph)]
    wanted += [t for t in (_layer_tensors(proto) if extra_layers else []) if t not in wanted]
    for t in wanted[1:]:
        proto.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT,
                                                                     None))
    session = cpu_session(proto.SerializeToString())
    parts: dict[str, list[np.ndarray]] = {t: [] for t in wanted}
    for s in range(0, len(x), 250):
        batch = x[s:s + 250]
        for t, out in zip(wanted, session.run(wanted, {"images": batch}), strict=True):
            if out.ndim == 4:  # NCHW after tf2onnx (channels are the smaller axis here)
                out = out.mean(axis=(2, 3) if out.shape[1] >= out.shape[3] else (1, 2))
            if len(out) == 2 * len(batch):  # mirror TTA: [images; mirrors]
                out = (out[:len(batch)] + out[len(batch):]) / 2
            parts[t].append(out.reshape(len(batch), -1))
    named = {t: np.concatenate(v) for t, v in parts.items()}
    return {"probabilities": named.pop("probabilities"), "penultimate": named.pop(wanted[1]),
            **{f"layer:{t}": v for t, v in named.items()}}


def _rates(s_in: np.ndarray, s_out: np.ndarray, s_held: np.ndarray | None) -> dict[str, Any]:
    from cifarkit.measure.ood import auroc, fpr_at_tpr, threshold_for

    out: dict[str, Any] = {"auroc": auroc(s_in, s_out), "fpr_at_95_tpr": fpr_at_tpr(s_in, s_out),
                           "rejected_out_at_95_test": 1 - fpr_at_tpr(s_in, s_out)}
    if s_held is not None:
        t = threshold_for(s_held, 0.95)
        out |= {"held_out_threshold": t, "accepted_in": float(np.mean(s_in >= t)),
                "rejected_out": float(np.mean(s_out < t))}
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from cifarkit.data import load_dataset, stratified_split, stratified_subset
    from cifarkit.export import read_metadata
    from cifarkit.measure.ood import Mahalanobis, msp_score

    started = time.time()
    meta = read_metadata(args.model)
    training = meta.get("training") or {}
    ds = load_dataset(args.data, splits=("train", "test"))
    frac, seed = training.get("val_split") or 0.0, int(training.get("seed") or 0)
    keep, held = stratified_split(ds.y_train, frac, seed=seed)
    fit_idx = keep[stratified_subset(ds.y_train[keep], args.fit_images, args.seed)]
    x_out, names = unknown_images(args.seed)
    f_fit = features(args.model, ds.x_train[fit_idx], True)
    f_in = features(args.model, ds.x_test, True)
    f_out = features(args.model, x_out, True)
    f_held = features(args.model, ds.x_train[held], False) if len(held) else None
    y_fit = ds.y_train[fit_idx]
    scores: dict[str, Any] = {"msp": _rates(
        msp_score(f_in["probabilities"]), msp_score(f_out["probabilities"]),
        None if f_held is None else msp_score(f_held["probabilities"]))}
    for name, norm in (("mahalanobis", False), ("mahalanobis-l2", True)):
        m = Mahalanobis.fit(f_fit["penultimate"], y_fit, n_classes=len(ds.classes),
                            normalize=norm)
        scores[name] = _rates(m.score(f_in["penultimate"]), m.score(f_out["penultimate"]),
                              None if f_held is None else m.score(f_held["penultimate"]))
    layers = {}
    for key in (k for k in f_in if k.startswith("layer:")):
        m = Mahalanobis.fit(f_fit[key], y_fit, n_classes=len(ds.classes), normalize=True)
        layers[key[6:]] = _rates(m.score(f_in[key]), m.score(f_out[key]), None)
    best = max(layers, key=lambda k: layers[k]["auroc"]) if layers else None
    return {
        "schema": SCHEMA, "model": str(args.model), "architecture": meta.get("architecture"),
        "precision": meta.get("precision"), "temperature":
            (meta.get("calibration") or {}).get("temperature"),
        "training_val_split": frac, "fit_images": len(fit_idx),
        "held_out_images": int(len(held)), "test_images": int(len(ds.y_test)),
        "unknown_images": len(names), "unknown_sources": sorted({n.split("[")[0] for n in names}),
        "penultimate_dims": int(f_in["penultimate"].shape[1]), "scores": scores,
        "best_layer_diagnostic": None if best is None else {"layer": best, **layers[best]},
        "seconds": time.time() - started, "command": " ".join(["python", *sys.argv]),
        "machine": "2-core AMD EPYC VM with AVX-512 VNNI (shared)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--fit-images", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = measure(args)
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    for name, r in result["scores"].items():
        extra = (f" · at the held-out threshold: {r['accepted_in']:.1%} test accepted, "
                 f"{r['rejected_out']:.1%} unknown rejected" if "accepted_in" in r else "")
        print(f"{name:15s} AUROC {r['auroc']:.4f} · FPR@95%TPR {r['fpr_at_95_tpr']:.3f}"
              f"{extra}")
    if result["best_layer_diagnostic"]:
        b = result["best_layer_diagnostic"]
        print(f"best layer (diagnostic, chosen on these images): {b['layer']} AUROC "
              f"{b['auroc']:.4f} · FPR@95%TPR {b['fpr_at_95_tpr']:.3f}")


if __name__ == "__main__":
    main()
