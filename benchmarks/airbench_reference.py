"""airbench's own code on cifarkit's data: is the gap to 94 % cifarkit's or the data's?

``fastnet`` is a Keras port of airbench94 (Keller Jordan, MIT licence), which reports
94.01 % (mean of 1,000 runs) on the original CIFAR-10 pickles. cifarkit's port reaches
about 90.5 % on the JPEG (q75) copy it trains on here. This script trains the *reference*
implementation, the ``airbench`` package from PyPI, unchanged, on that same copy, so the two
can be compared on equal data: if airbench also lands near 90–91 %, the gap is the data's.

airbench is written for one CUDA GPU in fp16. To run it on a CPU, and only for that, this
script redirects at run time: ``.cuda()`` keeps tensors on the CPU, ``.half()`` keeps them
in float32 (CPU fp16 training is neither fast nor what airbench measured), the CUDA event
timers become wall-clock timers, and ``torch.load`` maps to the CPU. Its network, data
loader, augmentation, whitening, optimiser, schedule, lookahead and TTA run as published.

The images are decoded by ``cifarkit.data.load_dataset`` exactly as ``cifarkit train``
decodes them and saved where airbench's ``CifarLoader`` looks for them
(``WORK/cifar10/{train,test}.pt``; it would otherwise download the original pickles).

Setup (not one of cifarkit's dependencies; PyTorch is not needed anywhere else)::

    python -m venv .venv-airbench
    .venv-airbench/bin/pip install torch==2.14.1 torchvision==0.29.1 airbench==0.1.8 \\
        numpy pillow
    .venv-airbench/bin/pip install --no-deps -e .
    .venv-airbench/bin/python benchmarks/airbench_reference.py --data ../shared/data/cifar10 \\
        --variant 94 --out benchmarks/results/airbench-reference-94-cpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any


class _Tee(io.TextIOBase):
    """Echo airbench's progress table to the terminal and keep a copy for the JSON."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.lines = stream, io.StringIO()

    def write(self, s: str) -> int:
        self.stream.write(s)
        self.stream.flush()
        return self.lines.write(s)


class _WallEvent:
    """Stands in for ``torch.cuda.Event(enable_timing=True)``: milliseconds between records."""

    intervals: list[float] = []

    def __init__(self, **_: Any) -> None:
        self.t = 0.0

    def record(self) -> None:
        self.t = time.perf_counter()

    def elapsed_time(self, end: _WallEvent) -> float:
        ms = 1e3 * (end.t - self.t)
        _WallEvent.intervals.append(ms / 1e3)
        return ms


def _run_on_cpu(torch: Any) -> None:
    """Redirect airbench's CUDA/fp16 calls to float32 on the CPU (see the module docstring)."""
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.Tensor.half = lambda self, *a, **k: self.float()
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.nn.Module.half = lambda self: self.float()
    torch.cuda.Event = _WallEvent
    torch.cuda.synchronize = lambda *a, **k: None
    load = torch.load
    torch.load = lambda f, *a, **k: load(f, *a, **{**k, "map_location": "cpu"})


def _write_data(data: str, work: Path) -> dict[str, Any]:
    import numpy as np
    import torch

    from cifarkit._io import atomic_path
    from cifarkit.data import load_dataset
    from cifarkit.data.sources import CLASSES

    ds = load_dataset(data)
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        payload = {"images": torch.tensor(np.ascontiguousarray(x)),
                   "labels": torch.tensor(y.astype(np.int64)), "classes": list(CLASSES)}
        with atomic_path(work / "cifar10" / f"{split}.pt") as tmp:
            torch.save(payload, tmp)
    return {"source": ds.source, "train_images": int(len(ds.y_train)),
            "test_images": int(len(ds.y_test))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 source (as cifarkit --data)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--variant", choices=("94", "95", "96"), default="94")
    parser.add_argument("--epochs", type=float, default=None,
                        help="override airbench's epoch count (a quick check; not the recipe)")
    parser.add_argument("--seed", type=int, default=0, help="torch.manual_seed before training")
    parser.add_argument("--work", type=Path, default=Path("runs/airbench-reference"),
                        help="where airbench's cifar10/{train,test}.pt are written")
    args = parser.parse_args()
    out, work = args.out.resolve(), args.work.resolve()  # airbench needs a chdir below

    import airbench
    import torch

    from cifarkit._io import write_json
    from cifarkit.measure.machine import cpu_name

    _run_on_cpu(torch)
    torch.set_num_threads(os.cpu_count() or 1)
    data = _write_data(args.data, work)
    train = getattr(airbench, f"train{args.variant}")
    kwargs = {} if args.epochs is None else {"epochs": args.epochs}

    os.chdir(work)  # airbench reads ./cifar10/{train,test}.pt
    torch.manual_seed(args.seed)
    tee = _Tee(sys.stdout)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(tee):
        model = train(**kwargs)
    wall = time.perf_counter() - t0
    # airbench's timer: whitening init + training epochs + the final TTA evaluation.
    airbench_seconds = sum(_WallEvent.intervals)

    test = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
    acc = {str(level): float(airbench.evaluate(model, test, tta_level=level))
           for level in (0, 1, 2)}
    module = sys.modules[f"airbench.lib_airbench{args.variant}"]
    result = {
        "schema": "cifarkit.airbench-reference/1",
        "command": " ".join(["python", *sys.argv]),
        "variant": f"airbench{args.variant}",
        "published_accuracy_on_original_data": {"94": 0.9401, "95": 0.9501, "96": 0.9605}[
            args.variant],
        "hyperparameters": module.hyp,
        "epochs": args.epochs if args.epochs is not None else module.hyp["opt"]["train_epochs"],
        "seed": args.seed,
        "data": data,
        "accuracy_by_level": acc,
        "airbench_seconds": airbench_seconds,
        "wall_seconds_with_per_epoch_eval": wall,
        "log": tee.lines.getvalue().splitlines(),
        "cpu_adaptation": "cuda() -> CPU, half() -> float32, CUDA events -> wall clock",
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "airbench": importlib.metadata.version("airbench"),
                    "threads": torch.get_num_threads()},
    }
    write_json(out, result)
    for k, v in acc.items():
        print(f"airbench{args.variant} TTA level {k}: {v:.2%}")
    print(f"airbench's timer: {airbench_seconds:.0f} s; wall {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
