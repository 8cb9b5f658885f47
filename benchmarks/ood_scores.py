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
- ``energy``: ``logsumexp`` of the logits (Liu et al. 2020), the input of the output Softmax
  before the calibration temperature the export folds in (a ``Mul`` by ``1/T`` whose constant's
  name ends in ``/inv_temperature``); ``energy-T``: ``T · logsumexp(z / T)`` at that folded ``T``.
- ``knn-k{1,10,50}``: deep nearest neighbours (Sun et al. 2022), ``-‖f̂ - b̂_(k)‖`` where ``f̂``
  is the L2-normalised penultimate feature and ``b̂_(k)`` the k-th nearest of the same
  ``--fit-images`` training images' normalised features (the bank); ``-bank{N}`` with a bank of
  ``--knn-bank`` stratified training images instead.
- ``vim``: Virtual-logit Matching (Wang et al. 2022): ``logsumexp(z) - α‖P⊥(f - u)‖``, ``u``
  the point where the (affine, least-squares-recovered) head gives zero logits, ``P⊥`` the
  projection off the top ``D/2`` principal directions of the fit features (D = feature size,
  the ViM code's rule below 768 features), ``α`` = mean top logit / mean residual norm on
  the fit images.
- ``best-layer``: diagnostic only, the best single earlier layer (spatially averaged ReLU /
  MaxPool outputs), chosen on these very test and unknown images, so optimistic.

AUROC, FPR at 95 % TPR (the share of unknown images accepted when 95 % of test images are),
and where the training held out a validation split, the shares rejected on both sides at the
threshold that accepts 95 % of it (the threshold export would record).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "cifarkit.ood-scores/1"
PHOTOS = ("astronaut", "brick", "camera", "clock", "coffee", "coins", "grass", "gravel",
          "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket",
          "stereo_motorcycle", "page", "text", "cell", "microaneurysms")
CROPS = 10
KS = (1, 10, 50)  # k of the nearest-neighbour scores (Sun et al. use 50 at 50,000 images)


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


def _logits_tensor(graph: Any) -> tuple[str, float]:
    """The Softmax's input before a folded calibration temperature, and that ``T`` (1 without)."""
    producers = {o: n for n in graph.node for o in n.output}
    consts = {i.name: i for i in graph.initializer}
    z = producers["probabilities"].input[0]
    mul = producers.get(z)
    if mul is not None and mul.op_type == "Mul":
        inv = [i for i in mul.input if i in consts and i.endswith("/inv_temperature")]
        if inv:
            from onnx import numpy_helper

            inv_t = float(numpy_helper.to_array(consts[inv[0]]).reshape(-1)[0])
            return next(i for i in mul.input if i != inv[0]), 1 / inv_t
    return z, 1.0


def _layer_tensors(graph: Any) -> list[str]:
    return [n.output[0] for n in graph.node if n.op_type in ("Relu", "MaxPool")]


def run_outputs(path: Path, x: np.ndarray, tensors: list[str], reduce: Any,
                batch: int = 250) -> list[np.ndarray]:
    """``probabilities`` and each of ``tensors`` (made graph outputs) over ``x`` in batches:
    rank-4 outputs through ``reduce``, the two mirror-TTA views averaged per image."""
    import onnx

    from cifarkit.backends.onnxruntime import cpu_session

    proto = onnx.load(str(path))
    for t in tensors:
        proto.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT,
                                                                     None))
    session = cpu_session(proto.SerializeToString())
    wanted = ["probabilities", *tensors]
    parts: list[list[np.ndarray]] = [[] for _ in wanted]
    for s in range(0, len(x), batch):
        b = x[s:s + batch]
        for part, out in zip(parts, session.run(wanted, {"images": b}), strict=True):
            out = reduce(out) if out.ndim == 4 else out
            if len(out) == 2 * len(b):  # mirror TTA: [images; mirrors]
                out = (out[:len(b)] + out[len(b):]) / 2
            part.append(out)
    return [np.concatenate(p) for p in parts]


def _spatial_mean(out: np.ndarray) -> np.ndarray:
    # NCHW after tf2onnx (channels are the smaller axis here)
    return out.mean(axis=(2, 3) if out.shape[1] >= out.shape[3] else (1, 2))


def features(path: Path, x: np.ndarray, extra_layers: bool) -> dict[str, np.ndarray]:
    """``probabilities``, the logits (before any folded temperature), the penultimate features
    and (optionally) every ReLU/MaxPool output averaged over space, each ``[N, ...]`` (two-view
    TTA batches averaged per image)."""
    import onnx

    graph = onnx.load(str(path)).graph
    wanted = [_logits_tensor(graph)[0], _feature_tensor(graph)]
    wanted += [t for t in (_layer_tensors(graph) if extra_layers else []) if t not in wanted]
    probs, logits, penultimate, *layers = (
        a.reshape(len(x), -1) for a in run_outputs(path, x, wanted, _spatial_mean))
    return {"probabilities": probs, "logits": logits, "penultimate": penultimate,
            **{f"layer:{t}": v for t, v in zip(wanted[2:], layers, strict=True)}}


def _rates(s_in: np.ndarray, s_out: np.ndarray, s_held: np.ndarray | None) -> dict[str, Any]:
    from cifarkit.measure.ood import auroc, fpr_at_tpr, threshold_for

    out: dict[str, Any] = {"auroc": auroc(s_in, s_out), "fpr_at_95_tpr": fpr_at_tpr(s_in, s_out),
                           "rejected_out_at_95_test": 1 - fpr_at_tpr(s_in, s_out)}
    if s_held is not None:
        t = threshold_for(s_held, 0.95)
        out |= {"held_out_threshold": t, "accepted_in": float(np.mean(s_in >= t)),
                "rejected_out": float(np.mean(s_out < t))}
    return out


def _unit(f: np.ndarray) -> np.ndarray:
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def knn_scores(bank: np.ndarray, ks: tuple[int, ...], *feats: np.ndarray) -> list[np.ndarray]:
    """Per ``feats`` array, ``[N, len(ks)]``: minus the distance from each L2-normalised row to
    its k-th nearest L2-normalised ``bank`` row (brute force, exact)."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=max(ks), algorithm="brute").fit(_unit(bank))
    return [-nn.kneighbors(_unit(f))[0][:, [k - 1 for k in ks]] for f in feats]


@dataclass(frozen=True)
class ViM:
    """Virtual-logit Matching fitted on training features and their logits."""

    origin: np.ndarray  # u: where the head's logits are all zero
    residual: np.ndarray  # [D, D - D/2]: the principal directions left out
    alpha: float

    @classmethod
    def fit(cls, f: np.ndarray, z: np.ndarray) -> ViM:
        a = np.c_[f, np.ones(len(f))].astype(np.float64)
        wb = np.linalg.lstsq(a, z.astype(np.float64), rcond=None)[0]  # the head, recovered
        w, b = wb[:-1], wb[-1]
        u = -np.linalg.pinv(w.T) @ b
        x = f - u
        _, vecs = np.linalg.eigh(x.T @ x / len(x))  # ascending eigenvalues
        ns = vecs[:, : f.shape[1] - f.shape[1] // 2]
        alpha = float(z.max(axis=1).mean() / np.linalg.norm(x @ ns, axis=1).mean())
        return cls(u, ns, alpha)

    def score(self, f: np.ndarray, z: np.ndarray) -> np.ndarray:
        from scipy.special import logsumexp

        return logsumexp(z, axis=1) - self.alpha * np.linalg.norm((f - self.origin) @
                                                                  self.residual, axis=1)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import onnx

    from cifarkit.data import load_dataset, stratified_split, stratified_subset
    from cifarkit.export import read_metadata
    from cifarkit.measure.ood import Mahalanobis, energy_score, msp_score

    started = time.time()
    sha = _sha256(args.model)
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
    _, temperature = _logits_tensor(onnx.load(str(args.model)).graph)
    sets = [f_in, f_out] + ([] if f_held is None else [f_held])
    for name, t in (("energy", 1.0), ("energy-T", temperature)):
        scores[name] = _rates(*[energy_score(f["logits"], t) for f in sets])
    banks = {"": f_fit["penultimate"]}
    if args.knn_bank and args.knn_bank != len(fit_idx):
        bank_idx = keep[stratified_subset(ds.y_train[keep], args.knn_bank, args.seed)]
        banks[f"-bank{len(bank_idx)}"] = features(args.model, ds.x_train[bank_idx],
                                                  False)["penultimate"]
    for suffix, bank in banks.items():
        per_set = knn_scores(bank, KS, *[f["penultimate"] for f in sets])
        for j, k in enumerate(KS):
            scores[f"knn-k{k}{suffix}"] = _rates(*[s[:, j] for s in per_set])
    vim = ViM.fit(f_fit["penultimate"], f_fit["logits"])
    scores["vim"] = _rates(*[vim.score(f["penultimate"], f["logits"]) for f in sets])
    layers = {}
    for key in (k for k in f_in if k.startswith("layer:")):
        m = Mahalanobis.fit(f_fit[key], y_fit, n_classes=len(ds.classes), normalize=True)
        layers[key[6:]] = _rates(m.score(f_in[key]), m.score(f_out[key]), None)
    best = max(layers, key=lambda k: layers[k]["auroc"]) if layers else None
    return {
        "schema": SCHEMA, "model": str(args.model), "architecture": meta.get("architecture"),
        "precision": meta.get("precision"), "temperature":
            (meta.get("calibration") or {}).get("temperature"),
        "graph_temperature": temperature, "model_sha256": sha,
        "knn_bank_images": {(s[1:] or "fit"): len(b) for s, b in banks.items()},
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
    parser.add_argument("--knn-bank", type=int, default=0,
                        help="also score k-NN against this many training images (0: only the "
                             "--fit-images bank)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = measure(args)
    if _sha256(args.model) != result["model_sha256"]:
        sys.exit(f"{args.model} changed while it was measured; run again")
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
