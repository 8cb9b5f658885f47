"""Streaming prediction over image files: walk → decode in worker processes → batch → infer.

``predict_files`` yields one ``Prediction`` per input, in input order, as soon as its batch
is done. The pipeline:

    iter_inputs ──► chunks of batch_size paths ──► decoder processes (data.images.decode) ──►
        in order ──► Classifier.predict_proba (chunks of its preferred size) ──► Predictions
        (predict_scored: with the model's score output, when --reject's rule uses it)

Decoding runs in ``workers`` processes (Pillow's per-image Python work holds the GIL, so
threads do not help), at most ``2 × workers`` chunks ahead of inference, so decoding the
next chunks overlaps inference of this one and memory is bounded by
``(2 × workers + 1) × batch_size`` images, however many files there are. A run whose inputs
fit in one chunk decodes in-process (starting processes would cost more than it saves).
``LocalEngine`` starts the decoder processes (``DecoderPool``) before it loads the model, so
their start (a fresh Python importing numpy and Pillow, ≈ 0.15–0.2 s here) overlaps the
model's.

A file that cannot be decoded becomes a ``Prediction`` with ``error`` set and the run goes
on; a decoder process that dies (a crash inside an image library) is replaced, and the files
of its chunk are retried one by one so only the culprit is reported.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

import numpy as np

from cifarkit.contract import DEFAULT_IMAGE_SIZE
from cifarkit.data.images import Decoded
from cifarkit.engines.base import (
    DEFAULT_BATCH,
    OnRow,
    OnStart,
    OnWarning,
    PredictRequest,
    PredictStats,
    Progress,
    backend_of,
    check_scored,
    consume,
    describe_model,
    open_model,
    refuse,
    rejection,
    run_model,
    skip_counter,
)
from cifarkit.engines.decoding import FileResult, decode_chunk, ping, worker_init
from cifarkit.engines.inputs import InputItem, OnSkip, count_inputs, iter_inputs
from cifarkit.engines.reject import Rejection
from cifarkit.engines.rows import DECODER_CRASH, Prediction, folder_label, make_predictions
from cifarkit.errors import UsageError


def _chunks(items: Iterator[InputItem], size: int) -> Iterator[list[InputItem]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def default_workers() -> int:
    """Decoder processes used when ``workers`` is not given: the physical cores."""
    from cifarkit.measure.machine import physical_cores

    return physical_cores()


def _new_pool(workers: int) -> tuple[Any, Any]:
    """A pool of ``workers`` decoder processes, and a ping future that is done once they run."""
    import concurrent.futures
    import multiprocessing

    # spawn, not fork: the parent holds onnxruntime's thread pool, which fork can deadlock.
    ctx = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx,
                                                  initializer=worker_init)
    return pool, pool.submit(ping)


class DecoderPool:
    """Decoder processes started ahead of need (a context manager): ``predict_files`` uses
    them for its first pool when their number is its ``workers``; whatever it did not take
    is shut down on exit, without waiting."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool, self._ping = _new_pool(workers) if workers > 0 else (None, None)

    def take(self) -> tuple[Any, Any]:
        """The pool and its ping future, now the taker's to close."""
        taken = self._pool, self._ping
        self._pool = self._ping = None
        return taken

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._ping = None

    def __enter__(self) -> DecoderPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Deferred:
    """A chunk to decode in this process when its result is asked for."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths


class _Decoder:
    """Decodes chunks in order: inline, or in a process pool that is rebuilt if it breaks.

    With a pool, every file is decoded in a worker process, so an image that crashes the
    decoder (a bug in an image library) costs that file only, never the run.
    """

    def __init__(
        self, workers: int, decode: Callable[[str], Decoded | np.ndarray] | None,
        on_warning: OnWarning | None = None, size: int = DEFAULT_IMAGE_SIZE,
        warm: DecoderPool | None = None,
    ) -> None:
        self.workers = workers
        self.decode = decode
        self.size = size
        self.on_warning = on_warning
        self._warm = warm  # processes started ahead: used for the first pool, if it fits
        self._pool: Any = None
        self._ping: Any = None

    def _start_pool(self) -> None:
        warm, self._warm = self._warm, None
        if warm is not None and warm.workers == self.workers:
            self._pool, self._ping = warm.take()
        if self._pool is None:
            self._pool, self._ping = _new_pool(self.workers)

    def _checked_pool(self) -> bool:
        """A pool whose processes are known to start (blocking check); False, and decoding
        falls back to this process, when they cannot (e.g. a ``__main__`` that spawned
        processes cannot re-import)."""
        if self._pool is None and self.workers > 0:
            self._start_pool()
        if self._pool is None:
            return False
        try:
            self._ping.result(timeout=120)
            return True
        except Exception as exc:
            self.reset()
            self.workers = 0
            if self.on_warning is not None:
                self.on_warning(
                    f"decoder processes could not start ({type(exc).__name__}: {exc}); "
                    "decoding in the main process instead"
                )
            return False

    def submit(self, paths: list[str]) -> Any:
        if self.workers > 0 and self._pool is None:
            self._start_pool()
        if self._pool is None:
            return _Deferred(paths)
        return self._pool.submit(decode_chunk, paths, self.decode, self.size)

    def result(self, pending: Any, paths: list[str]) -> tuple[np.ndarray, list[FileResult]]:
        if isinstance(pending, _Deferred):
            return decode_chunk(pending.paths, self.decode, self.size)
        from concurrent.futures.process import BrokenProcessPool

        try:
            return pending.result()
        except BrokenProcessPool:
            # Either the processes never started, or one died on a file of some chunk.
            return self._isolate(paths)

    def _isolate(self, paths: list[str]) -> tuple[np.ndarray, list[FileResult]]:
        """Retry each file alone in a fresh pool, so only a file that kills the decoder is
        reported as such."""
        from concurrent.futures.process import BrokenProcessPool

        self.reset()
        images, errors = [], []
        for p in paths:
            if not self._checked_pool():  # processes cannot start at all: decode here
                arr, errs = decode_chunk([p], self.decode, self.size)
            else:
                try:
                    arr, errs = self._pool.submit(decode_chunk, [p], self.decode,
                                                   self.size).result()
                except BrokenProcessPool:
                    self.reset()
                    arr, errs = self.empty(), [FileResult(
                        f"{p}: the image decoder crashed on this file (process died)",
                        DECODER_CRASH)]
            images.append(arr)
            errors += errs
        return np.concatenate(images), errors

    def empty(self) -> np.ndarray:
        return np.empty((0, self.size, self.size, 3), np.uint8)

    def reset(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            self._ping = None

    def close(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None
            self._ping = None


def _count_in_background(sources: list[str], recursive: bool) -> list[int | None]:
    """``[None]``, filled with the number of inputs once a background walk has counted them."""
    total: list[int | None] = [None]

    def count() -> None:
        total[0] = count_inputs(sources, recursive=recursive)

    threading.Thread(target=count, name="cifarkit-count-inputs", daemon=True).start()
    return total


def predict_files(
    classifier: Any,
    sources: Iterable[str],
    *,
    recursive: bool = True,
    top_k: int = 3,
    batch_size: int | None = None,
    workers: int | None = None,
    labels_from_folders: bool = False,
    stdin: TextIO | None = None,
    progress: Progress | None = None,
    count_total: bool = True,
    on_warning: OnWarning | None = None,
    on_skip: OnSkip | None = None,
    rejection: Rejection | None = None,
    warm: DecoderPool | None = None,
    _decode: Callable[[str], Decoded | np.ndarray] | None = None,
) -> Iterator[Prediction]:
    """Classify the images ``sources`` name (files, folders, globs, ``-``), in input order.

    ``classifier``: a ``Classifier`` or a backend's ``RuntimeModel`` (anything with
    ``classes``, ``image_size`` and ``predict_proba``); rows name the backend and provider it
    runs on. ``batch_size``: paths per decode task and inference request (default 256); the
    classifier cuts each request into its own preferred chunk size. ``workers``: decoder
    processes (default: the physical cores; 0 decodes in this process, without overlap).
    ``progress(done, failed, total)`` is called after each chunk; ``total`` is None until a
    background count of the inputs finishes (never, for stdin input or ``count_total=False``).
    ``on_warning(message)`` hears about problems that are not one file's (decoder processes
    that cannot start, so decoding falls back to this process); ``on_skip(path)`` of each file
    the walk leaves out as a non-image. ``rejection``: rows under its threshold answer
    ``unknown`` (``engines.reject``; ``base.rejection`` makes it from ``--reject``).
    ``warm``: decoder processes already started (used if there are ``workers`` of them).
    Closing the generator early (``--strict``) stops the workers.
    """
    sources = list(sources)
    if not sources:
        raise UsageError("no inputs: give image files, folders, glob patterns or - for stdin")
    if top_k < 1:
        raise UsageError(f"top_k must be >= 1, got {top_k}")
    batch_size = batch_size or DEFAULT_BATCH
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise UsageError(f"workers must be >= 0, got {workers}")
    classes = tuple(classifier.classes)
    class_set = frozenset(classes)
    k = min(top_k, len(classes))
    backend, provider = backend_of(classifier)
    counted = "-" not in sources and count_total
    total = _count_in_background(sources, recursive) if counted else [None]

    chunks = _chunks(iter_inputs(sources, recursive=recursive, stdin=stdin, on_skip=on_skip),
                     batch_size)
    first = next(chunks, None)
    if first is None:
        return
    second = next(chunks, None)
    # One chunk only: nothing to overlap, and starting processes would cost more.
    decoder = _Decoder(workers if second is not None else 0, _decode, on_warning,
                       size=int(getattr(classifier, "image_size", DEFAULT_IMAGE_SIZE)),
                       warm=warm)
    chunks = itertools.chain([first] + ([second] if second is not None else []), chunks)
    prefetch = max(1, 2 * decoder.workers)
    pending: deque[tuple[list[InputItem], Any]] = deque()
    done = failed = 0
    finished = False

    def submit_next() -> bool:
        chunk = next(chunks, None)
        if chunk is None:
            return False
        paths = [item.path for item in chunk if item.error is None]
        pending.append((chunk, decoder.submit(paths) if paths else None))
        return True

    try:
        while len(pending) < prefetch and submit_next():
            pass
        while pending:
            chunk, job = pending.popleft()
            submit_next()  # keep the decoders busy while this chunk is inferred
            paths = [item.path for item in chunk if item.error is None]
            images, errors = (decoder.empty(), []) if job is None else decoder.result(job, paths)
            probs, score = (run_model(classifier, images, rejection) if len(images)
                            else (None, None))
            truths = [folder_label(item.path, class_set) if labels_from_folders else None
                      for item in chunk]
            found = iter(errors)
            merged = [FileResult(item.error, item.reason) if item.error is not None
                      else next(found) for item in chunk]
            for pred in make_predictions([item.path for item in chunk],
                                         [r.error for r in merged], probs, classes, k, truths,
                                         backend, provider, reasons=[r.reason for r in merged],
                                         warnings=[r.warnings for r in merged],
                                         rejection=rejection, score_output=score):
                failed += not pred.ok
                yield pred
            done += len(chunk)
            if progress is not None:
                progress(done, failed, total[0])
        finished = True
    finally:
        # Stopped early (--strict, Ctrl-C): don't wait for chunks nobody will read.
        decoder.close(wait=finished)


def _may_span_chunks(sources: Iterable[str], batch_size: int | None) -> bool:
    """Whether the inputs may fill two chunks, judged without listing them: a folder, a glob,
    stdin, or more files than one chunk holds. A single photo's run should not start (and
    wait at exit for) processes it will not use."""
    sources = list(sources)
    return len(sources) > (batch_size or DEFAULT_BATCH) or not all(map(os.path.isfile, sources))


class LocalEngine:
    """This process and its decoder processes: ``predict_files`` on the request's backend."""

    name = "local"

    def check(self, request: PredictRequest) -> None:
        refuse(request, {"address": "--address", "concurrency": "--concurrency",
                         "cpus_per_actor": "--cpus-per-actor",
                         "gpus_per_actor": "--gpus-per-actor"}, "only with --engine ray")

    def run(self, request: PredictRequest, on_row: OnRow, on_progress: Progress | None = None,
            *, on_start: OnStart | None = None, on_warning: OnWarning | None = None,
            on_skip: OnSkip | None = None, stdin: TextIO | None = None) -> PredictStats:
        self.check(request)
        workers = default_workers() if request.workers is None else request.workers
        rule = rejection(request)  # --reject auto without a rule: fails before any work
        # The decoders start while the model loads; busy-waiting inference threads would
        # steal the cores they need.
        early = workers if _may_span_chunks(request.sources, request.batch_size) else 0
        with DecoderPool(early) as warm, \
                open_model(request, request.threads, allow_spinning=workers == 0) as model:
            check_scored(model, rule)
            stats = PredictStats(classes=tuple(model.classes), rejection=rule)
            if on_start is not None:
                on_start(stats.classes)
            rows = predict_files(
                model, request.sources, recursive=request.recursive, top_k=request.top_k,
                batch_size=request.batch_size, workers=workers, stdin=stdin,
                labels_from_folders=request.labels_from_folders, progress=on_progress,
                on_warning=on_warning, on_skip=skip_counter(stats, on_skip), rejection=rule,
                warm=warm,
            )
            consume(rows, stats, on_row, request.strict)
            stats.ran_on = f"{describe_model(model)}, up to {workers} decoder processes"
        return stats.finish()


__all__ = [
    "DEFAULT_BATCH",
    "DecoderPool",
    "LocalEngine",
    "default_workers",
    "predict_files",
]
