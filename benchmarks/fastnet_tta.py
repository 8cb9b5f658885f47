"""Test-time augmentation for a trained ``fastnet*`` run: what each level is worth.

airbench94 evaluates with three TTA levels: 0 (the image), 1 (the image and its mirror:
what cifarkit bakes into the exported graph) and 2 (level 1, plus both views translated by
one pixel up-left and down-right, reflection-padded, weighted ½ : ¼ : ¼). This script
measures each level's test accuracy on the real test images with the run's own weights,
averaging logits as airbench does, and the inference work each level costs, so the choice
made for the export is a measured one.

    python benchmarks/fastnet_tta.py runs/fastnet-s/model.keras --data ../shared/data/cifar10 \\
        --out benchmarks/results/fastnet-tta-cpu.json

The Keras model (TensorFlow backend) is used directly; exported ONNX files contain level 1.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a fastnet run's model.keras")
    parser.add_argument("--data", required=True, help="CIFAR-10 source (as cifarkit --data)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--limit", type=int, default=None,
                        help="a stratified subset of N test images (a quick check)")
    args = parser.parse_args()

    import keras

    import cifarkit.models.layers  # noqa: F401  (registers fastnet's layers)
    from cifarkit._io import write_json
    from cifarkit.data import load_dataset
    from cifarkit.export.source import load_keras_model
    from cifarkit.measure.machine import cpu_name
    from cifarkit.models.fastnet import with_tta

    trained = load_keras_model(args.model)
    # The logits before the in-graph mirror average: the same weights without TTA layers.
    plain = with_tta(trained, 0)
    logits_model = keras.Model(plain.input, plain.get_layer("head_scale").output)

    ds = load_dataset(args.data, splits=("test",), limit=args.limit)
    x, y = ds.x_test.astype(np.float32), ds.y_test

    def logits(images: np.ndarray) -> np.ndarray:
        return np.asarray(logits_model.predict(images, batch_size=args.batch_size, verbose=0))

    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    views = {
        "plain": x,
        "mirror": x[:, :, ::-1],
        "up_left": padded[:, 0:32, 0:32],
        "down_right": padded[:, 2:34, 2:34],
    }
    views["up_left_mirror"] = views["up_left"][:, :, ::-1]
    views["down_right_mirror"] = views["down_right"][:, :, ::-1]
    out: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    for key, images in views.items():
        out[key] = logits(images)
    seconds = time.perf_counter() - t0

    level1 = 0.5 * out["plain"] + 0.5 * out["mirror"]
    translated = (out["up_left"] + out["up_left_mirror"]
                  + out["down_right"] + out["down_right_mirror"]) / 4
    levels = {"0": out["plain"], "1": level1, "2": 0.5 * level1 + 0.5 * translated}
    acc = {k: float(np.mean(v.argmax(1) == y)) for k, v in levels.items()}
    # The in-graph TTA model must agree with level 1 (same weights, same arithmetic).
    graph = np.asarray(trained.predict(x, batch_size=args.batch_size, verbose=0))
    result = {
        "schema": "cifarkit.fastnet-tta/1",
        "command": " ".join(["python", *sys.argv]),
        "model": str(args.model),
        "data": ds.source,
        "test_images": int(len(y)),
        "accuracy_by_level": acc,
        "views_per_image": {"0": 1, "1": 2, "2": 6},
        "in_graph_tta_accuracy": float(np.mean(graph.argmax(1) == y)),
        "seconds_for_6_views": seconds,
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "keras": keras.__version__,
                    "backend": keras.backend.backend()},
    }
    write_json(args.out, result)
    for k, v in acc.items():
        print(f"TTA level {k} ({result['views_per_image'][k]} views): {v:.2%}")
    print(f"in-graph TTA model: {result['in_graph_tta_accuracy']:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
