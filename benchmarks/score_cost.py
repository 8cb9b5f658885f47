"""What the ``score`` output (``export --unknown-score blocks``) costs: each file as shipped
against the same graph without the score's nodes, through onnxruntime on the CPU, in
interleaved rounds (so both see the same machine), batch 1 and 32, one thread.

    python benchmarks/score_cost.py exported/fastnet-relu/model.fp32.onnx \\
        exported/fastnet-relu/model.int8.onnx --out benchmarks/results/score-cost-cpu.json

Reported per file and batch size: the best and median milliseconds per call of each, running
``probabilities`` alone and both outputs, and the ratio of the medians (without / with).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def without_score(path: Path) -> bytes:
    """The file's graph with only ``probabilities`` and the nodes it needs."""
    import onnx

    from cifarkit.contract import probabilities_only

    model = onnx.load(str(path))
    probabilities_only(model.graph)
    return model.SerializeToString()


def session(blob: bytes) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    return ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])


def measure(path: Path, batch: int, rounds: int, calls: int) -> dict[str, Any]:
    x = np.random.default_rng(0).integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    cases = {"without score": (session(without_score(path)), ["probabilities"]),
             "with score, probabilities only": (session(path.read_bytes()), ["probabilities"]),
             "with score, both outputs": (session(path.read_bytes()), ["probabilities",
                                                                        "score"])}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for s, outputs in cases.values():
        s.run(outputs, {"images": x})
    for _ in range(rounds):
        for name, (s, outputs) in cases.items():
            start = time.perf_counter()
            for _ in range(calls):
                s.run(outputs, {"images": x})
            times[name].append((time.perf_counter() - start) / calls * 1000)
    base = float(np.median(times["without score"]))
    return {k: {"best_ms": min(v), "median_ms": float(np.median(v)),
                "median_vs_without": float(np.median(v)) / base} for k, v in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from cifarkit._io import write_json
    from cifarkit.measure.machine import collect_environment, load_average

    env = collect_environment()
    results = {"environment": env, "rounds": args.rounds, "models": {}}
    for path in args.models:
        results["models"][str(path)] = {
            str(b): measure(path, b, args.rounds, calls) for b, calls in ((1, 50), (32, 5))}
        for b, cases in results["models"][str(path)].items():
            for name, r in cases.items():
                print(f"{path.name} batch {b:>2} {name:32s} median {r['median_ms']:7.2f} ms "
                      f"({r['median_vs_without']:.3f}× without)")
    env["load_average_after"] = load_average()
    write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
