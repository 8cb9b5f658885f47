"""One path for every backend: a model file opened through ``cifarkit.backends``
(``open_backend``; onnxruntime on one execution provider, the other runtimes on the CPU),

1. the whole image set through ``predict_scored`` (onnxruntime's ``Classifier`` with its
   tuned chunk size), accuracy metrics (``metrics.evaluate``) and the agreement with
   onnxruntime's probabilities for the same file (its first provider, cpu first); a model
   with a ``score`` output keeps it (``bench --ood``'s in-distribution scores) and has it
   compared with onnxruntime's too (``backends.score_agreement``; a note when it differs);
2. one ``run_batch`` per batch size timed (``latency.time_batches``), on CUDA/TensorRT once
   with and once without I/O binding;
3. images/s turned into GFLOP/s with the graph's MACs per image, and (CPU rows) into a share
   of this CPU's peak for the arithmetic the row runs.

onnxruntime is the reference: an error of its own ends the run. Another runtime that cannot
run a file is recorded (``BenchResult.failures``, a latency row ``status="failed"``) and the
sweep goes on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.backends import REFERENCE
from cifarkit.bench.config import (
    QUICK_BATCH_SIZES,
    QUICK_DURATION,
    AccuracyResult,
    Backend,
    BenchResult,
    LatencyRow,
    ModelFile,
    Progress,
    RuntimeFailure,
)
from cifarkit.errors import CifarkitError, ModelError
from cifarkit.measure.flops import achieved_gflops, row_peak, runtime_int8_share
from cifarkit.measure.latency import LatencyStats, time_batches
from cifarkit.measure.metrics import evaluate


class Sweep:
    """Model files × backends, into ``result``; keeps the progress count. ``focus`` and
    ``light`` (``--quick``): the model that gets the whole sweep, and the image indices the
    others are measured on."""

    def __init__(self, result: BenchResult, progress: Progress | None,
                 data_classes: tuple[str, ...] | None, batch_sizes: list[int],
                 iterations: int | None, duration: float | None) -> None:
        self.result, self.progress = result, progress
        self.data_classes, self.batch_sizes = data_classes, batch_sizes
        self.iterations, self.duration = iterations, duration
        self.done = self.total = 0
        self._references: dict[Path, tuple[np.ndarray, np.ndarray | None]] = {}
        self.focus: str | None = None
        self.light: np.ndarray | None = None

    def _is_light(self, mf: ModelFile) -> bool:
        return self.result.config.quick and mf.name != self.focus

    def sizes_for(self, mf: ModelFile) -> list[int]:
        if not self._is_light(mf):
            return self.batch_sizes
        return [b for b in self.batch_sizes if b in QUICK_BATCH_SIZES] or self.batch_sizes[:1]

    def steps(self, mf: ModelFile, backend: Backend) -> int:
        """Progress steps of ``mf`` on ``backend``: its accuracy pass, then each timing."""
        return 1 + len(backend.io_binding_variants) * len(self.sizes_for(mf))

    def _report(self, what: str, advance: bool = True) -> None:
        self.done += int(advance)
        if self.progress is not None:
            self.progress(self.done, self.total, what)

    def _open(self, mf: ModelFile, backend: Backend, io_binding: bool = False) -> Any:
        from cifarkit.backends import open_backend

        return open_backend(backend.name, mf.path, threads=self.result.config.threads,
                            io_binding=io_binding)

    def run(self, mf: ModelFile, backend: Backend) -> None:
        """``mf`` on ``backend`` (module docstring); an unavailable backend gets its row."""
        result = self.result
        if backend.reason is not None:
            result.latency.append(LatencyRow(
                mf.name, mf.precision, backend.provider or "cpu", False,
                result.config.threads, None, status="unavailable", reason=backend.reason,
                runtime=backend.runtime,
            ))
            return
        n_accuracy, n_latency, done = len(result.accuracy), len(result.latency), self.done
        try:
            self._measure(mf, backend)
        except CifarkitError as exc:
            if backend.runtime == REFERENCE:
                raise
            del result.accuracy[n_accuracy:], result.latency[n_latency:]
            reason = str(exc)
            result.failures.append(RuntimeFailure(mf.name, mf.precision, backend.runtime,
                                                  reason))
            result.latency.append(LatencyRow(
                mf.name, mf.precision, "cpu", False, result.config.threads, None,
                status="failed", reason=reason, runtime=backend.runtime,
            ))
            self.done = done + self.steps(mf, backend)  # the steps it skips
            self._report(f"{mf.label} on {backend.where}: failed", advance=False)

    def _measure(self, mf: ModelFile, backend: Backend) -> None:
        images, labels, indices = self.result.images, self.result.labels, None
        duration = self.duration
        if self._is_light(mf):
            if self.light is not None:
                indices = self.light
                images, labels = images[indices], labels[indices]
            if self.iterations is None:
                duration = min(duration or QUICK_DURATION, QUICK_DURATION)
        what = f"{mf.label} on {backend.where}"
        self._report(f"{what}: opening", advance=False)
        model = self._open(mf, backend)
        try:
            self._accuracy(mf, backend, model, images, labels, indices)
            for io_binding in backend.io_binding_variants:
                if io_binding:
                    model.close()
                    model = self._open(mf, backend, io_binding=True)
                label = what + (" (I/O binding)" if io_binding else "")
                self._report(f"{label}: latency", advance=False)
                for stats in time_batches(
                    model.run_batch, images, self.sizes_for(mf),
                    warmup=self.result.config.warmup, iterations=self.iterations,
                    duration=duration,
                    on_done=lambda bs, _s, w=label: self._report(f"{w}: batch {bs} done"),
                ):
                    self.result.latency.append(
                        _latency_row(self.result, mf, model, backend, io_binding, stats))
        finally:
            model.close()

    def _accuracy(self, mf: ModelFile, backend: Backend, model: Any, images: np.ndarray,
                  labels: np.ndarray, indices: np.ndarray | None) -> None:
        result, config = self.result, self.result.config
        if model.path == mf.path:  # it read the file itself (litert opens a sibling .tflite)
            mf.architecture = mf.architecture or model.metadata.get("architecture")
            mf.input_kind = mf.input_kind or model.input_kind
        classes = tuple(model.classes)
        _check_classes(mf, classes, self.data_classes, labels)
        result.classes = result.classes or classes
        self._report(f"{mf.label} on {backend.where}: accuracy", advance=False)
        t0 = time.perf_counter()
        probs, scores = model.predict_scored(images)
        seconds = time.perf_counter() - t0
        report = evaluate(probs, labels, classes, n_confusions=config.n_confusions)
        agree = self._agreement(mf, backend, probs, indices)
        acc = AccuracyResult(
            mf.name, mf.precision, model.provider, report, probs, seconds,
            runtime=backend.runtime, agreement=agree[0], max_abs_diff=agree[1],
            indices=indices, scores=scores,
        )
        self._score_agreement(mf, backend, acc)
        result.accuracy.append(acc)
        self._report(f"{mf.label} on {backend.where}: accuracy")

    def _first_reference(self, mf: ModelFile) -> AccuracyResult | None:
        return next((a for a in self.result.accuracy if a.runtime == REFERENCE
                     and (a.model, a.precision) == (mf.name, mf.precision)), None)

    def reference(self, mf: ModelFile) -> tuple[np.ndarray, np.ndarray | None]:
        """onnxruntime's probabilities and score output (None: none) for ``mf``: its first
        onnxruntime accuracy row (the first provider, cpu first), or a cpu pass made for the
        comparison alone."""
        first = self._first_reference(mf)
        if first is not None:
            return first.probs, first.scores
        key = mf.path.resolve()
        if key not in self._references:
            with self._open(mf, Backend(REFERENCE, "cpu")) as model:
                self._references[key] = model.predict_scored(self.result.images)
        return self._references[key]

    def _reference_rows(self, mf: ModelFile, n: int, indices: np.ndarray | None,
                        ) -> tuple[np.ndarray, np.ndarray | None]:
        probs, scores = self.reference(mf)
        if indices is not None and len(probs) != n:  # --quick's subset
            return probs[indices], None if scores is None else scores[indices]
        return probs, scores

    def _agreement(self, mf: ModelFile, backend: Backend, probs: np.ndarray,
                   indices: np.ndarray | None) -> tuple[float, float]:
        from cifarkit.backends import agreement

        if backend.runtime == REFERENCE and self._first_reference(mf) is None:
            return 1.0, 0.0  # the first onnxruntime pass of a file is the reference
        return agreement(probs, self._reference_rows(mf, len(probs), indices)[0])

    def _score_agreement(self, mf: ModelFile, backend: Backend, acc: AccuracyResult) -> None:
        """``acc``'s score output against onnxruntime's (a note when out of tolerance)."""
        from cifarkit.backends import SCORE_RTOL, score_agreement

        if acc.scores is None:
            return
        if backend.runtime == REFERENCE and self._first_reference(mf) is None:
            acc.score_max_abs_diff, acc.score_agrees = 0.0, True
            return
        reference = self._reference_rows(mf, len(acc.probs), acc.indices)[1]
        if reference is None:
            return
        acc.score_max_abs_diff, acc.score_agrees = score_agreement(acc.scores, reference)
        if not acc.score_agrees:
            self.result.notes.append(
                f"{mf.label} on {backend.where}: its score output differs from onnxruntime's "
                f"by up to {acc.score_max_abs_diff:.3g} (more than {SCORE_RTOL:g} × (1 + "
                "|score|) on some images): a threshold set on one runtime's scores does not "
                "hold on the other")


def _check_classes(
    mf: ModelFile, model_classes: tuple[str, ...], data_classes: tuple[str, ...] | None,
    labels: np.ndarray,
) -> None:
    if data_classes is not None and tuple(data_classes) != model_classes:
        raise ModelError(
            f"{mf.path}: the model's classes {list(model_classes)} differ from the data's "
            f"{list(data_classes)}; accuracy would compare different label indices"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(model_classes)):
        raise ModelError(
            f"{mf.path}: labels go up to {int(labels.max())} but the model has "
            f"{len(model_classes)} classes"
        )


def _latency_row(result: BenchResult, mf: ModelFile, model: Any, backend: Backend,
                 io_binding: bool, stats: LatencyStats) -> LatencyRow:
    macs = mf.macs.macs_per_image if mf.macs and not mf.macs.uncounted else None
    gflops = achieved_gflops(macs, stats.images_per_s)
    share, peak = None, None
    # The CPU's own arithmetic is known (flops.row_peak); OpenVINO (onnxruntime's provider)
    # picks its own kernels, so only its fp32 rows have a peak to show.
    if gflops is not None and (model.provider == "cpu" or
                               (model.provider == "openvino" and mf.precision == "fp32")):
        cores = min(model.threads, result.environment["cpu"]["physical_cores"] or model.threads)
        # Which MACs run as int8 is read from onnxruntime's optimised graph; another runtime
        # (LiteRT's full-integer file, OpenVINO's own fusions) may run more of them as int8,
        # so its int8 rows are shown against the all-int8 peak, an upper bound.
        ort = backend.runtime == REFERENCE
        key = (cores, mf.precision,
               (os.fspath(mf.path) if ort else "all int8") if mf.precision == "int8" else "")
        if key not in result.cpu_peaks:
            int8_share = None
            if mf.precision == "int8":
                int8_share = runtime_int8_share(mf.path) if ort else 1.0
            result.cpu_peaks[key] = row_peak(mf.precision, cores, int8_share=int8_share)
        peak = result.cpu_peaks[key]
        share = gflops / peak.gflops if peak else None
    return LatencyRow(
        mf.name, mf.precision, model.provider, io_binding, model.threads, stats.batch_size,
        stats, active_providers=",".join(model.active_providers), macs_per_image=macs,
        gflops=gflops, peak_share=share, peak=peak.arithmetic if peak else None,
        runtime=backend.runtime,
    )
