"""Each int8 quantizer choice, measured: speed vs fp32 (one interleaved run) and test top-1.

For every ``--speed`` fp32 ONNX file, the script quantizes it once per variant with
``cifarkit.export.quantize.quantize_int8`` (the exporter's own code path: pre-processing,
batch-norm folding, the 500 stratified training images the exporter calibrates on) and times
fp32 and all variants interleaved in one run (``export.measure.throughput``: rounds rotate
the order; median of per-round ratios), at batch 32 and batch 1, one thread. For every
``--accuracy`` fp32 file (trained models) it measures each variant's top-1 on the full test
split and its top-1 agreement with fp32.

    python benchmarks/int8_choices.py --data ../shared/data/cifar10 \\
        --speed /tmp/probe-relu-exp/model.fp32.onnx \\
        --accuracy exported/cnn-batchnorm/model.fp32.onnx exported/fastnet/model.fp32.onnx \\
        --out benchmarks/results/int8-choices-cpu.json

Variants (``base`` is the quantizer's settings before issue 21: QDQ, S8S8, per-channel,
min-max calibration, every op type onnxruntime quantizes, reduce_range as given):
see ``VARIANTS``. ``--only`` picks some by name.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: The conv chain only: preprocessing (Mul/Add), the flip TTA (Transpose, ReverseSequence /
#: Slice, Concat), the global pool, head MatMul/Gemm, TTA mean and Softmax stay float.
CONV_CHAIN = ("Conv", "MaxPool")

#: name → quantize_int8 keyword arguments, on top of ``base``.
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "u8s8": {"activation_type": "QUInt8"},
    "per_tensor": {"per_channel": False},
    "reduce_range": {"reduce_range": True},
    "percentile": {"method": "percentile"},
    "entropy": {"method": "entropy"},
    "qoperator": {"quant_format": "QOperator"},
    "qoperator_u8s8": {"quant_format": "QOperator", "activation_type": "QUInt8"},
    "conv_chain": {"op_types": CONV_CHAIN},
    "conv_chain_head": {"op_types": (*CONV_CHAIN, "MatMul", "Gemm")},
    "conv_chain_u8s8": {"op_types": CONV_CHAIN, "activation_type": "QUInt8"},
    "conv_chain_flip_int8": {"op_types": (*CONV_CHAIN, "Transpose", "Concat")},
    "exclude_head": {"exclude_op_types": ("MatMul", "Gemm")},
}
BASE: dict[str, Any] = {"method": "minmax", "reduce_range": False, "activation_type": "QInt8",
                        "per_channel": True, "quant_format": "QDQ", "op_types": "auto"}


def _settings(name: str) -> dict[str, Any]:
    return {**BASE, **VARIANTS[name]}


def _op_counts(proto: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in proto.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


def _optimized_ops(blob: bytes) -> dict[str, int]:
    """Op types of the graph onnxruntime actually runs (after its fusions)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.optimized_model_filepath = os.path.join(tmp, "opt.onnx")
        ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
        return _op_counts(onnx.load(opts.optimized_model_filepath))


def quantize_all(fp32: Path, names: list[str], calib: np.ndarray) -> dict[str, tuple[bytes, Any]]:
    import onnx

    from cifarkit.export.quantize import quantize_int8

    proto = onnx.load(fp32)
    out = {}
    for name in names:
        t0 = time.perf_counter()
        q, info = quantize_int8(proto, calib, calibration_data="500 stratified training images",
                                **_settings(name))
        out[name] = (q.SerializeToString(), info)
        print(f"  {fp32.parent.name}/{name}: quantized in {time.perf_counter() - t0:.1f}s",
              file=sys.stderr)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--speed", nargs="*", type=Path, default=[],
                        help="fp32 .onnx files to time each variant of")
    parser.add_argument("--accuracy", nargs="*", type=Path, default=[],
                        help="fp32 .onnx files of trained models: top-1 of each variant")
    parser.add_argument("--only", help="comma-separated variant names")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calibration-images", type=int, default=500)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import onnxruntime as ort

    from cifarkit._io import write_json
    from cifarkit.backends.onnxruntime import cpu_session
    from cifarkit.backends.onnxruntime import session_proba as predict_onnx
    from cifarkit.data import load_dataset, stratified_subset
    from cifarkit.export.measure import throughput
    from cifarkit.measure.machine import cpu_flags, cpu_name

    names = args.only.split(",") if args.only else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    ds = load_dataset(args.data)
    # As the exporter: a stratified subset of the training images, seed 0.
    calib = ds.x_train[stratified_subset(ds.y_train, args.calibration_images, 0)]
    results: dict[str, Any] = {
        "schema": "cifarkit.int8-choices/1",
        "command": " ".join(["python", *sys.argv]),
        "machine": {
            "cpu": cpu_name(), "logical_cpus": os.cpu_count(),
            "flags": {f: f in cpu_flags() for f in ("avx2", "avx512f", "avx512_vnni",
                                                    "avx_vnni", "amx_int8")},
            "load_average_before": list(os.getloadavg()),
            "python": platform.python_version(), "onnxruntime": ort.__version__,
            "note": "machine shared with a training run: speeds are only comparable as the "
                    "ratios measured interleaved in one run",
        },
        "base": BASE,
        "variants": {n: VARIANTS[n] for n in names},
        "speed": {}, "accuracy": {},
    }
    for fp32 in args.speed:
        variants = quantize_all(fp32, names, calib)
        blobs = {"fp32": fp32.read_bytes(), **{n: b for n, (b, _) in variants.items()}}
        entry: dict[str, Any] = {"file": os.fspath(fp32), "ops_optimized": {}}
        for batch in (32, 1):
            t = throughput(blobs, ds.x_test[:512], batch=batch, rounds=args.rounds,
                           seconds=0.15 if batch == 32 else 0.1, threads=1)
            entry[f"batch{batch}"] = {"images_per_s": t.images_per_s,
                                      "ratio_vs_fp32": t.ratio_vs_fp32, "threads": 1,
                                      "rounds": t.rounds}
            print(f"{fp32} b{batch}: " + ", ".join(f"{k} {v}" for k, v in
                                                    t.ratio_vs_fp32.items()), file=sys.stderr)
        for n, (b, _) in variants.items():
            entry["ops_optimized"][n] = _optimized_ops(b)
        results["speed"][fp32.parent.name] = entry
        write_json(args.out, results)
    for fp32 in args.accuracy:
        base_probs = predict_onnx(cpu_session(fp32.read_bytes()), ds.x_test)
        base_pred = base_probs.argmax(1)
        entry = {"file": os.fspath(fp32), "test_images": int(len(ds.y_test)),
                 "fp32_top1": float(np.mean(base_pred == ds.y_test)), "variants": {}}
        variants = quantize_all(fp32, names, calib)
        for n, (b, info) in variants.items():
            pred = predict_onnx(cpu_session(b), ds.x_test).argmax(1)
            top1 = float(np.mean(pred == ds.y_test))
            entry["variants"][n] = {
                "top1": top1, "delta_points": round(100 * (top1 - entry["fp32_top1"]), 2),
                "agreement_with_fp32": float(np.mean(pred == base_pred)),
                "quantization": info.to_dict(),
            }
            print(f"{fp32.parent.name}/{n}: top1 {top1:.4f} "
                  f"({entry['variants'][n]['delta_points']:+.2f})", file=sys.stderr)
        results["accuracy"][fp32.parent.name] = entry
        write_json(args.out, results)
    results["machine"]["load_average_after"] = list(os.getloadavg())
    write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
