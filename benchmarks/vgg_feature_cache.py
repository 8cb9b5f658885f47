"""Speed-up of VGG16 head training on cached features, against epochs through the frozen base.

    .venv/bin/python benchmarks/vgg_feature_cache.py --limit 512
    .venv/bin/python benchmarks/vgg_feature_cache.py --data ../shared/data/cifar10 \\
        --limit 2000 --image-size 64 --out benchmarks/results/vgg-feature-cache-64-cpu.json

One process, one ``vgg16-transfer`` model (random init by default: the arithmetic does not
depend on the weights' values), the same N images, optimizer (Nesterov SGD) and batch size:

- baseline: one epoch of ``model.fit`` on the full model with the base frozen, what
  ``cifarkit train vgg16-transfer --no-feature-cache`` does every epoch: a VGG16 forward pass
  per image, gradients for the head only;
- cached: one epoch of the head model on features computed beforehand, what
  ``cifarkit train vgg16-transfer`` does every epoch, plus the one-off feature pass itself.

Each model gets a warm-up epoch first (graph tracing), then ``--rounds`` timed rounds,
interleaved (baseline, features, head, baseline, …) so a shared machine's load hits all three
alike; medians are reported. Results: the per-epoch speed-up (baseline epoch ÷ cached epoch),
the epochs after which caching has paid for its feature pass, and the machine, load
averages, versions and command beside them, as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def images(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    if args.data is None:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (args.limit, 32, 32, 3), dtype=np.uint8)
        return x, rng.integers(0, 10, args.limit), "random uint8 images"
    from cifarkit.data import load_dataset

    ds = load_dataset(args.data, limit=args.limit, seed=0)
    return ds.x_train[: args.limit], ds.y_train[: args.limit], f"{ds.source} ({ds.kind})"


def epoch_timer() -> Any:
    import keras

    class _Timer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.seconds.append(time.perf_counter() - self._t0)

    return _Timer()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=512, help="training images (default 512)")
    parser.add_argument("--data", help="a CIFAR-10 source (default: random images)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--weights", default="none", help="none (default), imagenet or a path")
    parser.add_argument("--project-epochs", type=int, default=30,
                        help="epochs for the projected totals (default 30, the default recipe)")
    parser.add_argument("--out",
                        default=str(REPO / "benchmarks/results/vgg-feature-cache-cpu.json"))
    args = parser.parse_args()

    import keras

    from cifarkit._io import write_json
    from cifarkit.measure.machine import cpu_name
    from cifarkit.models import create_model
    from cifarkit.train.fit import describe_device
    from cifarkit.train.transfer import compute_features, feature_batch_size, split_at

    load_before = load_average()
    x, y, source = images(args)
    onehot = np.eye(10, dtype=np.float32)[y]
    keras.utils.set_random_seed(0)
    model = create_model("vgg16-transfer", weights=args.weights, image_size=args.image_size)
    features, head = split_at(model)
    for m in (model, head):
        m.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    chunk = feature_batch_size(args.image_size)
    xf = x.astype(np.float32)

    def baseline_epoch() -> float:
        timer = epoch_timer()
        model.fit(xf, onehot, batch_size=args.batch_size, epochs=1, verbose=0,
                  callbacks=[timer])
        return timer.seconds[0]

    def feature_pass() -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        f = compute_features(features, x, batch_size=chunk)
        return time.perf_counter() - t0, f

    def head_epoch(f: np.ndarray) -> float:
        timer = epoch_timer()
        head.fit(f, onehot, batch_size=args.batch_size, epochs=1, verbose=0, callbacks=[timer])
        return timer.seconds[0]

    # Warm-up: trace every graph once.
    baseline_epoch()
    _, f = feature_pass()
    head_epoch(f)
    base_s, feat_s, head_s = [], [], []
    for _ in range(args.rounds):
        base_s.append(baseline_epoch())
        seconds, f = feature_pass()
        feat_s.append(seconds)
        head_s.append(head_epoch(f))
    base, feat, cached = (statistics.median(v) for v in (base_s, feat_s, head_s))
    n = args.project_epochs
    versions = {"python": platform.python_version(), "keras": keras.__version__,
                "backend": keras.backend.backend(), "numpy": np.__version__}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    result = {
        "schema": "cifarkit.vgg_feature_cache/1",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpu": cpu_name(), "logical_cpus": os.cpu_count(), "device": describe_device(),
            "platform": platform.platform(), "load_average_before": load_before,
            "load_average_after": load_average(),
            "niceness": os.nice(0),
        },
        "versions": versions,
        "settings": {"images": len(x), "data": source, "image_size": args.image_size,
                     "batch_size": args.batch_size, "weights": args.weights,
                     "rounds": args.rounds, "feature_batch": chunk,
                     "feature_shape": list(f.shape[1:])},
        "seconds": {"baseline_epoch": base_s, "feature_pass": feat_s, "cached_head_epoch": head_s},
        "median": {
            "baseline_epoch_s": base, "feature_pass_s": feat, "cached_head_epoch_s": cached,
            "baseline_ms_per_image": 1e3 * base / len(x),
            "cached_ms_per_image": 1e3 * cached / len(x),
        },
        "speedup_per_epoch": base / cached,
        # Caching pays for itself once the epochs saved exceed the feature pass.
        "break_even_epochs": feat / (base - cached) if base > cached else None,
        "projected": {"epochs": n, "baseline_s": n * base, "cached_s": feat + n * cached,
                      "speedup": n * base / (feat + n * cached)},
    }
    write_json(args.out, result)
    print(f"{len(x)} images at {args.image_size}px, batch {args.batch_size}, on {cpu_name()} "
          f"({os.cpu_count()} CPUs, load {load_before} → {load_average()})")
    print(f"epoch through the frozen base: {base:.2f} s   feature pass (once): {feat:.2f} s   "
          f"head epoch on cached features: {cached * 1e3:.1f} ms")
    print(f"per-epoch speed-up {base / cached:.0f}x; {n} epochs: {n * base:.1f} s vs "
          f"{feat + n * cached:.1f} s ({result['projected']['speedup']:.1f}x); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
