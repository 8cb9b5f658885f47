"""The benchmark run: models × precisions × backends × batch sizes, on real images.

``run_bench(BenchConfig(...))`` checks the settings, resolves the model files
(``models.resolve_models``) and what they run on (``plan.plan_backends``: onnxruntime on its
execution providers, the other runtimes on the CPU; an explicit one that cannot run here
fails before any work), loads the labelled images, then runs every file on every backend
through one path (``sweep.Sweep``: accuracy and agreement with onnxruntime, latency per
batch size, GFLOP/s and share of peak). When asked (``keras=``), it then times the source
Keras model beside the fp32 ONNX file (``keras_baseline``), measures accuracy under corruption
(``corruptions=``, ``robustness``) and how well unknown images are told apart (``ood=``, a
folder loaded before the sweep; ``ood``). Reports: ``bench.report``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from cifarkit.bench.config import SPLITS, BenchConfig, BenchResult, Progress
from cifarkit.bench.models import quick_focus, resolve_models, stratified_light
from cifarkit.errors import ModelError, UsageError


def _check_settings(config: BenchConfig) -> list[int]:
    """The batch sizes, after every setting is checked (``UsageError`` before any work)."""
    sizes = list(dict.fromkeys(int(s) for s in config.batch_sizes))
    if not sizes:
        raise UsageError("--batch-sizes: empty list")
    if any(s < 1 for s in sizes):
        raise UsageError(f"--batch-sizes must be >= 1, got {sizes}")
    if config.warmup < 0:
        raise UsageError(f"--warmup must be >= 0, got {config.warmup}")
    if config.threads is not None and config.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {config.threads}")
    if config.limit is not None and config.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {config.limit}")
    if config.split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}, got {config.split!r}")
    return sizes


def _load_images(config: BenchConfig, progress: Progress | None, size: int) -> tuple[Any, ...]:
    from cifarkit.data import load_dataset

    def data_progress(done: int, total: int, what: str = "loading images") -> None:
        if progress is not None:
            progress(done, total, what)

    # Keras's download is the last resort (it imports Keras, once, on a machine with no data).
    ds = load_dataset(config.data, limit=config.limit, seed=config.seed, progress=data_progress,
                      splits=(config.split,), image_size=size)
    x, y = ds.split(config.split)
    notes = list(ds.notes) + [f"skipped {s}" for s in ds.skipped[:20]]
    return x, y, tuple(ds.classes), f"{ds.source} ({ds.kind})", notes


def _image_size(models: list[Any]) -> int:
    """The one S×S every model takes (the data is decoded to it)."""
    from cifarkit.contract import onnx_image_size

    sizes = {onnx_image_size(mf.path) for mf in models}
    if len(sizes) > 1:
        raise UsageError(f"the models take different image sizes ({sorted(sizes)}); bench "
                         "models of one size together")
    return sizes.pop()


def run_bench(
    config: BenchConfig,
    *,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    data_source: str | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """Run the benchmark. ``images``/``labels`` (uint8 NHWC, int labels) replace the data
    source when given. ``progress(done, total, what)`` is called as the sweep advances."""
    from cifarkit.backends import get_runtime
    from cifarkit.bench.keras_baseline import keras_sources, run_keras
    from cifarkit.bench.plan import plan_backends, split_backends
    from cifarkit.bench.sweep import Sweep
    from cifarkit.measure.flops import count_macs
    from cifarkit.measure.latency import check_budget
    from cifarkit.measure.machine import collect_environment, load_average

    start = time.perf_counter()
    iterations, duration = check_budget(config.iterations, config.duration)
    batch_sizes = _check_settings(config)
    runtimes, providers = split_backends(config.runtimes, config.providers)
    config = dataclasses.replace(config, runtimes=runtimes, providers=providers)
    models = resolve_models(config.models, config.precisions, config.exported,
                            provider=(providers or ["cpu"])[0])
    backends = plan_backends(models[0].path, runtimes, providers, config.threads)
    sources = keras_sources(config, models)  # before the long part: fail early

    environment = collect_environment(config.argv)
    data_notes: list[str] = []
    if images is None:
        images, labels, data_classes, source, data_notes = _load_images(
            config, progress, _image_size(models))
    else:
        if labels is None:
            raise UsageError("images given without labels")
        images = np.asarray(images)
        labels = np.asarray(labels, dtype=np.int64)
        data_classes = tuple(classes) if classes is not None else None
        source = data_source or "images passed in"
    if len(images) == 0:
        raise UsageError("no images to benchmark on")
    ood = None
    if config.ood is not None:  # before the long part: a bad folder or rule fails early
        from cifarkit.bench.ood import check_rules, load_ood

        check_rules(models)
        ood = load_ood(config.ood, int(images.shape[1]), progress)

    result = BenchResult(
        config=config, environment=environment, models=models, classes=(), images=images,
        labels=labels, data_source=source, split=config.split, backends=backends,
        data_notes=data_notes, ood_images=ood,
    )
    result.runtime_versions = {n: get_runtime(n).version()
                               for n in dict.fromkeys(b.runtime for b in backends)}
    sweep = Sweep(result, progress, data_classes, batch_sizes, iterations, duration)
    if config.quick:
        sweep.focus = quick_focus(models, config.exported, result.notes)
        sweep.light = stratified_light(labels, config.seed)
    sweep.total = sum(sweep.steps(mf, b) for mf in models for b in backends if b.reason is None)
    for mf in models:
        try:
            mf.macs = count_macs(mf.path)
        except ModelError as exc:
            result.notes.append(f"{mf.label}: MACs not counted: {exc}")
        for backend in backends:
            sweep.run(mf, backend)
    if sources:
        result.keras = run_keras(result, sources, batch_sizes, iterations, duration, progress)
    if config.corruptions:
        from cifarkit.bench.robustness import run_corruptions

        result.corruptions = run_corruptions(result, config.corruptions, config.seed, progress)
    if ood is not None:
        from cifarkit.bench.ood import run_ood

        result.ood = run_ood(result, ood, progress)
    environment["load_average_after"] = load_average()
    result.seconds = time.perf_counter() - start
    return result
