"""Throughput of `cifarkit predict`: decode-only, inference-only and end-to-end img/s, one run.

    .venv/bin/python benchmarks/predict_throughput.py --model exported/cnn-batchnorm/model.fp32.onnx
    .venv/bin/python benchmarks/predict_throughput.py --fixture-cnn      # no trained model yet
    .venv/bin/python benchmarks/predict_throughput.py --fixture-cnn --batch-sweep

On the JPEG folder ``$CIFARKIT_DATA/test`` (default ``../shared/data/cifar10/test``, 10,000
images), with the settings `cifarkit predict` uses, measured in rounds interleaved
(decode, inference, end-to-end, decode, …) so a noisy shared machine hits all three alike;
the median round is reported:

- decode-only: the predict pipeline's decoder (``workers`` processes, chunks of
  ``batch_size`` paths) with no model;
- inference-only: ``Classifier.predict_proba`` on the already-decoded images, in requests of
  ``batch_size``;
- end-to-end: ``predict_files`` over the folder (walk, decode, infer, results), output
  discarded.

If decoding and inference shared the machine without overlapping, end-to-end would take
1/decode + 1/infer seconds per image: the script prints end-to-end / (1/(1/decode + 1/infer))
(issue 4's goal: ≥ 0.8). ``--batch-sweep`` adds single ``run_batch`` throughput per batch
size and ``predict_proba`` throughput per request size (the chunking goal: every request
size ≥ 0.9× the best). ``--fixture-cnn`` builds the ``cnn-batchnorm`` topology with random
weights (tests/onnx_fixtures.py): same compute as the trained model, meaningless labels.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.onnx_fixtures for --fixture-cnn


def machine() -> dict:
    import numpy
    import onnxruntime
    import PIL

    from cifarkit.measure.machine import physical_cores

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "physical_cores": physical_cores(),
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "platform": platform.platform(),
    }


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the decoder processes)."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def list_images(folder: Path, limit: int | None) -> list[str]:
    from cifarkit.engines import iter_inputs

    paths = [item.path for item in iter_inputs([str(folder)])]
    if limit:
        # An even spread over the class folders, not the first classes only.
        step = max(1, len(paths) // limit)
        paths = paths[::step][:limit]
    return paths


def decode_only(paths: list[str], workers: int, batch_size: int) -> tuple[float, object]:
    """The predict pipeline's decoding (same chunks, same prefetch), no inference."""
    from collections import deque

    import numpy as np

    from cifarkit.engines.local import _Decoder

    decoder = _Decoder(workers, None)
    start = time.perf_counter()
    chunks = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    pending: deque = deque()
    parts = []
    it = iter(chunks)
    for chunk in it:
        pending.append((chunk, decoder.submit(chunk)))
        if len(pending) >= max(1, 2 * workers):
            break
    while pending:
        chunk, job = pending.popleft()
        nxt = next(it, None)
        if nxt is not None:
            pending.append((nxt, decoder.submit(nxt)))
        images, errors = decoder.result(job, chunk)
        assert not any(errors), errors
        parts.append(images)
    seconds = time.perf_counter() - start
    decoder.close()
    return len(paths) / seconds, np.concatenate(parts)


def inference_only(clf, images, batch_size: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        clf.predict_proba(images[i : i + batch_size])
    return len(images) / (time.perf_counter() - start)


def end_to_end(clf, folder: Path, paths: list[str], workers: int, batch_size: int,
               limit: int | None) -> float:
    from cifarkit.engines import predict_files

    sources = [str(folder)] if not limit else paths
    start = time.perf_counter()
    n = 0
    for pred in predict_files(clf, sources, workers=workers, batch_size=batch_size,
                              count_total=False):
        assert pred.ok, pred.error
        n += 1
    return n / (time.perf_counter() - start)


def batch_sweep(clf, images, rounds: int) -> dict:
    """Round-robin over sizes (so load changes hit every size alike), ``rounds`` times:
    single ``run_batch`` calls per batch size, and ``predict_proba`` per request size (cut
    into the classifier's chunk). Median img/s and CPU µs per image (this process, all
    threads) per size."""
    import numpy as np

    sizes = (1, 8, 16, 32, 64, 128, 256, 512)
    requests = (1, 8, 32, 100, 256, 1000, 2048)
    x = np.ascontiguousarray(images[:2048])
    work = 2048  # images per measurement

    def measure(fn, size: int) -> tuple[float, float]:
        c0, t0 = time.process_time(), time.perf_counter()
        done = 0
        while done < work:
            for i in range(0, len(x), size):
                fn(x[i : i + size])
                done += len(x[i : i + size])
                if done >= work:
                    break
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return done / wall, 1e6 * cpu / done

    for size in sizes:  # warm-up: each shape once
        clf.run_batch(x[:size])
    single: dict[int, list] = {s: [] for s in sizes}
    chunked: dict[int, list] = {r: [] for r in requests}
    for _ in range(rounds):
        for size in sizes:
            single[size].append(measure(clf.run_batch, size))
        for req in requests:
            chunked[req].append(measure(clf.predict_proba, req))

    def summary(table: dict[int, list]) -> dict[int, dict[str, float]]:
        return {k: {"img_s": statistics.median(v[0] for v in vals),
                    "cpu_us_per_img": statistics.median(v[1] for v in vals)}
                for k, vals in table.items()}

    return {"chunk": clf.batch_size, "rounds": rounds, "run_batch": summary(single),
            "predict_proba_request": summary(chunked)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="NAME[:precision] or .onnx path (default: exported/default)")
    ap.add_argument("--fixture-cnn", action="store_true",
                    help="use the random-weight cnn-batchnorm fixture model")
    default_data = os.environ.get("CIFARKIT_DATA") or str(REPO.parent / "shared/data/cifar10")
    ap.add_argument("--data", default=str(Path(default_data) / "test"),
                    help="image folder (default: $CIFARKIT_DATA/test)")
    ap.add_argument("--limit", type=int, help="use N images spread over the folder")
    ap.add_argument("--provider", default="cpu")
    ap.add_argument("--workers", type=int, help="decoder processes (default: predict's)")
    ap.add_argument("--threads", type=int, help="onnxruntime intra-op threads")
    ap.add_argument("--batch-size", type=int, default=256, help="request size (predict's -b)")
    ap.add_argument("--chunk", type=int, help="the classifier's chunk size (default: preferred)")
    ap.add_argument("--spinning", choices=("auto", "on", "off"), default="auto",
                    help="onnxruntime thread spinning (auto: predict's choice)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-sweep", action="store_true")
    ap.add_argument("--sweep-rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, help="write the results here (atomically)")
    args = ap.parse_args()

    from cifarkit._io import write_json
    from cifarkit.backends import Classifier, resolve_model
    from cifarkit.engines import default_workers

    tmp = None
    if args.fixture_cnn:
        from tests.onnx_fixtures import cnn_model

        tmp = tempfile.TemporaryDirectory()
        model = cnn_model(Path(tmp.name) / "cnn-batchnorm-random.onnx")
        model_label = "cnn-batchnorm topology, random weights (tests/onnx_fixtures.cnn_model)"
    else:
        model = resolve_model(args.model)
        model_label = str(model)
    workers = default_workers() if args.workers is None else args.workers
    spinning = {"auto": workers == 0, "on": True, "off": False}[args.spinning]
    folder = Path(args.data)
    paths = list_images(folder, args.limit)
    if not paths:
        print(f"no images under {folder}", file=sys.stderr)
        return 1

    load_before = load_average()
    clf = Classifier(model, args.provider, threads=args.threads, batch_size=args.chunk,
                     allow_spinning=spinning)
    print(f"model: {model_label}\nprovider: {clf.provider} {clf.active_providers}, "
          f"threads {clf.threads}, chunk {clf.batch_size}, spinning {spinning}; "
          f"{workers} decoder processes, requests of {args.batch_size}; "
          f"{len(paths):,} images from {folder}; load average before {load_before}")

    # Warm-up: start-up costs (process spawn, first session runs, chunk-size tuning) are not
    # throughput.
    _, images = decode_only(paths[: 4 * args.batch_size], workers, args.batch_size)
    for _ in range(200):
        inference_only(clf, images, args.batch_size)
        if not clf.tuning:
            break
    if clf.chunk_timings:
        print(f"chunk size tuned to {clf.batch_size}: " + ", ".join(
            f"{k}: {v:,.0f}" for k, v in clf.chunk_timings.items()) + " img/s")

    rounds: dict[str, list[float]] = {"decode": [], "inference": [], "end_to_end": []}
    # CPU-milliseconds per image (all processes): unlike img/s, barely moved by other jobs
    # on a shared machine; end-to-end ≈ decode + inference means pipelining costs no work.
    cpu_ms: dict[str, list[float]] = {"decode": [], "inference": [], "end_to_end": []}
    n = len(paths)
    for r in range(args.rounds):
        c0 = cpu_seconds()
        d, images = decode_only(paths, workers, args.batch_size)
        c1 = cpu_seconds()
        i = inference_only(clf, images, args.batch_size)
        c2 = cpu_seconds()
        e = end_to_end(clf, folder, paths, workers, args.batch_size, args.limit)
        c3 = cpu_seconds()
        for key, value, cpu in (("decode", d, c1 - c0), ("inference", i, c2 - c1),
                                ("end_to_end", e, c3 - c2)):
            rounds[key].append(value)
            cpu_ms[key].append(1000 * cpu / n)
        print(f"round {r + 1}: decode {d:,.0f}  inference {i:,.0f}  end-to-end {e:,.0f} img/s"
              f"   (CPU ms/img: {cpu_ms['decode'][-1]:.3f} + {cpu_ms['inference'][-1]:.3f}"
              f" vs {cpu_ms['end_to_end'][-1]:.3f})")
    med = {k: statistics.median(v) for k, v in rounds.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu_ms.items()}
    serial = 1 / (1 / med["decode"] + 1 / med["inference"])
    ratio = med["end_to_end"] / serial
    print(f"median: decode {med['decode']:,.0f} img/s, inference {med['inference']:,.0f} img/s, "
          f"end-to-end {med['end_to_end']:,.0f} img/s")
    print(f"end-to-end / (1/(1/decode + 1/infer)) = {med['end_to_end']:,.0f} / {serial:,.0f} "
          f"= {ratio:.2f}  (goal >= 0.8)")
    print(f"CPU ms per image: decode {med_cpu['decode']:.3f} + inference "
          f"{med_cpu['inference']:.3f} = {med_cpu['decode'] + med_cpu['inference']:.3f}; "
          f"end-to-end {med_cpu['end_to_end']:.3f}")

    sweep = None
    if args.batch_sweep:
        sweep = batch_sweep(clf, images, args.sweep_rounds)
        best = max(v["img_s"] for v in sweep["run_batch"].values())
        best_cpu = min(v["cpu_us_per_img"] for v in sweep["run_batch"].values())
        print("single run_batch by batch size: img/s (CPU µs/img):\n  " + ", ".join(
            f"{k}: {v['img_s']:,.0f} ({v['cpu_us_per_img']:,.0f})"
            for k, v in sweep["run_batch"].items()))
        print(f"predict_proba by request size, chunk {sweep['chunk']}: img/s vs best single "
              "batch (CPU µs/img vs best):\n  " + ", ".join(
                  f"{k}: {v['img_s'] / best:.2f}× ({best_cpu / v['cpu_us_per_img']:.2f}×)"
                  for k, v in sweep["predict_proba_request"].items()))
    load_after = load_average()
    print(f"load average after {load_after}")

    if args.json:
        write_json(args.json, {
            "benchmark": "predict_throughput",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": machine(),
            "load_average": {"before": load_before, "after": load_after},
            "model": model_label,
            "provider": clf.provider,
            "active_providers": clf.active_providers,
            "provider_options": getattr(clf, "provider_options", {}),
            "threads": clf.threads,
            "chunk": clf.batch_size,
            "chunk_tuning_img_s": clf.chunk_timings,
            "allow_spinning": spinning,
            "workers": workers,
            "request_batch": args.batch_size,
            "images": len(paths),
            "data": str(folder),
            "rounds_img_s": rounds,
            "median_img_s": med,
            "cpu_ms_per_image": cpu_ms,
            "median_cpu_ms_per_image": med_cpu,
            "serial_bound_img_s": serial,
            "ratio_end_to_end_vs_serial": ratio,
            "batch_sweep": sweep,
        })
        print(f"wrote {args.json}")
    clf.close()
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
