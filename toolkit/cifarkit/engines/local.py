"""Streaming prediction over image files: walk → decode in worker processes → batch → infer.

``predict_files`` yields one ``Prediction`` per input, in input order, as soon as its batch
is done. The pipeline:

    iter_inputs ──► chunks of batch_size paths ──► decoder processes (load_image) ──►
        in order ──► Classifier.predict_proba (chunks of its preferred size) ──► Predictions

Decoding runs in ``workers`` processes (Pillow's per-image Python work holds the GIL, so
threads do not help), at most ``2 × workers`` chunks ahead of inference, so decoding the
next chunks overlaps inference of this one and memory is bounded by
``(2 × workers + 1) × batch_size`` images, however many files there are. A run whose inputs
fit in one chunk decodes in-process (starting processes would cost more than it saves).

A file that cannot be decoded becomes a ``Prediction`` with ``error`` set and the run goes
on; a decoder process that dies (a crash inside an image library) is replaced, and the files
of its chunk are retried one by one so only the culprit is reported.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from cifarkit.data.images import load_image
from cifarkit.engines.inputs import InputItem, count_inputs, iter_inputs
from cifarkit.errors import ImageError, UsageError

DEFAULT_BATCH = 256
Progress = Callable[[int, int, "int | None"], None]  # (done, failed, total or None)


@dataclass
class Prediction:
    """The result for one input file. ``error`` is set (and the rest empty) when it failed."""

    path: str
    index: int | None = None
    label: str | None = None
    confidence: float | None = None
    top_k: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    true_label: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def correct(self) -> bool | None:
        if self.true_label is None or not self.ok:
            return None
        return self.label == self.true_label

    def as_dict(self) -> dict[str, Any]:
        """The JSONL record: path, label, index, confidence, top_k, error (+ truth if known)."""
        out: dict[str, Any] = {
            "path": self.path,
            "label": self.label,
            "index": self.index,
            "confidence": None if self.confidence is None else round(self.confidence, 6),
            "top_k": [{"label": lab, "confidence": round(p, 6)} for lab, p in self.top_k],
            "error": self.error,
        }
        if self.true_label is not None:
            out["true_label"] = self.true_label
            out["correct"] = self.correct
        return out


@dataclass
class PredictStats:
    """Running totals for the final summary; per-class counts when true labels are known."""

    classes: tuple[str, ...] = ()
    images: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    labelled: Counter[str] = field(default_factory=Counter)
    correct: Counter[str] = field(default_factory=Counter)
    predicted: Counter[str] = field(default_factory=Counter)
    unlabelled: int = 0

    def add(self, pred: Prediction) -> None:
        self.images += 1
        if not pred.ok:
            self.failed += 1
            return
        self.predicted[pred.label or ""] += 1
        if pred.true_label is None:
            self.unlabelled += 1
        else:
            self.labelled[pred.true_label] += 1
            self.correct[pred.true_label] += bool(pred.correct)

    def finish(self) -> PredictStats:
        self.finished = time.perf_counter()
        return self

    @property
    def succeeded(self) -> int:
        return self.images - self.failed

    @property
    def seconds(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def accuracy(self) -> float | None:
        n = sum(self.labelled.values())
        return sum(self.correct.values()) / n if n else None

    def per_class(self) -> list[dict[str, Any]]:
        """Rows ``{class, images, correct, accuracy, predicted}`` for classes seen as truth."""
        rows = []
        for name in self.classes:
            n = self.labelled[name]
            if n:
                rows.append({
                    "class": name, "images": n, "correct": self.correct[name],
                    "accuracy": self.correct[name] / n, "predicted": self.predicted[name],
                })
        return rows


def folder_label(path: str, classes: Iterable[str]) -> str | None:
    """The class named by the image's folder (``…/cat/x.jpg`` → ``cat``), if it is one."""
    parent = Path(path).parent.name
    return parent if parent in classes else None


def decode_one(
    decode: Callable[[Any], np.ndarray], source: Any, name: str
) -> tuple[np.ndarray | None, str | None]:
    """Decode one image (``source``: a path, or bytes for ``load_image_bytes``): the array, or
    ``None`` and the error. Shared by both engines, so a bad file reads the same in each."""
    try:
        return decode(source), None
    except ImageError as exc:
        return None, str(exc)
    except Exception as exc:  # a decoder bug must not end the run either
        return None, f"{name}: cannot decode image: {type(exc).__name__}: {exc}"


def _decode_chunk(
    paths: list[str], decode: Callable[[str], np.ndarray] | None = None
) -> tuple[np.ndarray, list[str | None]]:
    """Decode ``paths``: the good images stacked, and per path ``None`` or its error."""
    decode = decode or load_image
    out = np.empty((len(paths), 32, 32, 3), dtype=np.uint8)
    errors: list[str | None] = []
    n = 0
    for p in paths:
        arr, error = decode_one(decode, p, p)
        errors.append(error)
        if arr is not None:
            out[n] = arr
            n += 1
    return out[:n].copy() if n < len(paths) else out, errors


def _reason(message: str, path: str) -> str:
    """The error without the ``path: `` prefix the decoder puts in front (the row has it)."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _chunks(items: Iterator[InputItem], size: int) -> Iterator[list[InputItem]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _default_workers() -> int:
    from cifarkit.measure.machine import physical_cores

    return physical_cores()


def _ping() -> bool:
    return True


def _worker_init() -> None:
    # Ctrl-C is the main process's to handle: it stops the pool. Workers that also took the
    # SIGINT would each print a KeyboardInterrupt traceback.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


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
        self, workers: int, decode: Callable[[str], np.ndarray] | None,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.workers = workers
        self.decode = decode
        self.on_warning = on_warning
        self._pool: Any = None
        self._ping: Any = None

    def _start_pool(self) -> None:
        import concurrent.futures
        import multiprocessing

        # spawn, not fork: the parent holds onnxruntime's thread pool, which fork can deadlock.
        ctx = multiprocessing.get_context("spawn")
        self._pool = concurrent.futures.ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=_worker_init
        )
        self._ping = self._pool.submit(_ping)

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
        return self._pool.submit(_decode_chunk, paths, self.decode)

    def result(self, pending: Any, paths: list[str]) -> tuple[np.ndarray, list[str | None]]:
        if isinstance(pending, _Deferred):
            return _decode_chunk(pending.paths, self.decode)
        from concurrent.futures.process import BrokenProcessPool

        try:
            return pending.result()
        except BrokenProcessPool:
            # Either the processes never started, or one died on a file of some chunk.
            return self._isolate(paths)

    def _isolate(self, paths: list[str]) -> tuple[np.ndarray, list[str | None]]:
        """Retry each file alone in a fresh pool, so only a file that kills the decoder is
        reported as such."""
        from concurrent.futures.process import BrokenProcessPool

        self.reset()
        images, errors = [], []
        for p in paths:
            if not self._checked_pool():  # processes cannot start at all: decode here
                arr, errs = _decode_chunk([p], self.decode)
            else:
                try:
                    arr, errs = self._pool.submit(_decode_chunk, [p], self.decode).result()
                except BrokenProcessPool:
                    self.reset()
                    arr, errs = np.empty((0, 32, 32, 3), np.uint8), [
                        f"{p}: the image decoder crashed on this file (process died)"
                    ]
            images.append(arr)
            errors += errs
        return np.concatenate(images), errors

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


def _top_k(probs: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest per row, largest first (ties: lower index first)."""
    if k >= probs.shape[1]:
        return np.argsort(-probs, axis=1, kind="stable")
    part = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(probs, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def make_predictions(
    paths: list[str], errors: list[str | None], probs: np.ndarray | None,
    classes: tuple[str, ...], k: int, truths: list[str | None],
) -> Iterator[Prediction]:
    """The ``Prediction`` per path (both engines build rows here): ``errors[i]`` set → an error
    row; the good paths take the rows of ``probs`` in order."""
    order = _top_k(probs, k) if probs is not None else None
    row = 0
    for path, error, truth in zip(paths, errors, truths, strict=True):
        if error is not None:
            yield Prediction(path, error=_reason(error, path), true_label=truth)
            continue
        assert probs is not None and order is not None
        idx = order[row]
        p = probs[row]
        yield Prediction(
            path=path,
            index=int(idx[0]),
            label=classes[int(idx[0])],
            confidence=float(p[idx[0]]),
            top_k=[(classes[int(j)], float(p[j])) for j in idx],
            true_label=truth,
        )
        row += 1


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
    on_warning: Callable[[str], None] | None = None,
    _decode: Callable[[str], np.ndarray] | None = None,
) -> Iterator[Prediction]:
    """Classify the images ``sources`` name (files, folders, globs, ``-``), in input order.

    ``classifier``: a ``Classifier`` (anything with ``classes`` and ``predict_proba``).
    ``batch_size``: paths per decode task and inference request (default 256); the classifier
    cuts each request into its own preferred chunk size. ``workers``: decoder processes
    (default: the physical cores; 0 decodes in this process, without overlap).
    ``progress(done, failed, total)`` is called after each chunk; ``total`` is None until a
    background count of the inputs finishes (never, for stdin input or ``count_total=False``).
    ``on_warning(message)`` hears about problems that are not one file's (decoder processes
    that cannot start, so decoding falls back to this process).
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
    workers = _default_workers() if workers is None else workers
    if workers < 0:
        raise UsageError(f"workers must be >= 0, got {workers}")
    classes = tuple(classifier.classes)
    class_set = frozenset(classes)
    k = min(top_k, len(classes))

    total: list[int | None] = [None]
    if count_total and "-" not in sources:
        def count() -> None:
            total[0] = count_inputs(sources, recursive=recursive)

        threading.Thread(target=count, name="cifarkit-count-inputs", daemon=True).start()

    chunks = _chunks(iter_inputs(sources, recursive=recursive, stdin=stdin), batch_size)
    first = next(chunks, None)
    if first is None:
        return
    second = next(chunks, None)
    # One chunk only: nothing to overlap, and starting processes would cost more.
    decoder = _Decoder(workers if second is not None else 0, _decode, on_warning)
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
            if job is None:
                images, errors = np.empty((0, 32, 32, 3), np.uint8), []
            else:
                images, errors = decoder.result(job, paths)
            probs = classifier.predict_proba(images) if len(images) else None
            truths = [
                folder_label(item.path, class_set) if labels_from_folders else None
                for item in chunk
            ]
            err_iter = iter(errors)
            merged = [item.error if item.error is not None else next(err_iter) for item in chunk]
            for pred in make_predictions(
                [item.path for item in chunk], merged, probs, classes, k, truths
            ):
                failed += not pred.ok
                yield pred
            done += len(chunk)
            if progress is not None:
                progress(done, failed, total[0])
        finished = True
    finally:
        # Stopped early (--strict, Ctrl-C): don't wait for chunks nobody will read.
        decoder.close(wait=finished)


# --- the row type as Arrow (Ray's blocks, parquet) -------------------------------------------

PARQUET_EXTRA = 'pip install "cifarkit[parquet]" (or "cifarkit[ray]")'
PART_ROWS = 1_000_000  # rows per part file of a parquet folder
ROW_GROUP = 65_536  # rows buffered before a parquet row group is written


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
    except ImportError:
        raise UsageError(f"parquet output needs pyarrow: {PARQUET_EXTRA}") from None
    return pa


def prediction_schema(labels: bool = False) -> Any:
    """The Arrow schema of prediction rows: path, label, index, confidence, top_k (a list of
    ``{label, confidence}``), error, and true_label + correct when labels are known.
    Confidences are float32, the model's own precision, so rows round-trip exactly."""
    pa = _pyarrow()
    fields = [
        pa.field("path", pa.string()),
        pa.field("label", pa.string()),
        pa.field("index", pa.int32()),
        pa.field("confidence", pa.float32()),
        pa.field("top_k", pa.list_(pa.struct([
            pa.field("label", pa.string()), pa.field("confidence", pa.float32()),
        ]))),
        pa.field("error", pa.string()),
    ]
    if labels:
        fields += [pa.field("true_label", pa.string()), pa.field("correct", pa.bool_())]
    return pa.schema(fields)


def predictions_to_table(preds: list[Prediction], labels: bool = False) -> Any:
    """Prediction rows as a ``pyarrow.Table`` of ``prediction_schema(labels)``."""
    pa = _pyarrow()
    cols: dict[str, list[Any]] = {
        "path": [p.path for p in preds],
        "label": [p.label for p in preds],
        "index": [p.index for p in preds],
        "confidence": [p.confidence for p in preds],
        "top_k": [[{"label": lab, "confidence": c} for lab, c in p.top_k] for p in preds],
        "error": [p.error for p in preds],
    }
    if labels:
        cols["true_label"] = [p.true_label for p in preds]
        cols["correct"] = [p.correct for p in preds]
    return pa.table(cols, schema=prediction_schema(labels))


def predictions_from_table(table: Any) -> Iterator[Prediction]:
    """The ``Prediction`` per row of an Arrow table (or record batch) of prediction rows."""
    names = set(table.schema.names)
    for row in table.to_pylist():
        yield Prediction(
            path=row["path"],
            index=row["index"],
            label=row["label"],
            confidence=row["confidence"],
            top_k=[(t["label"], t["confidence"]) for t in row["top_k"] or []],
            error=row["error"],
            true_label=row["true_label"] if "true_label" in names else None,
        )


def is_parquet_folder(target: str | os.PathLike[str]) -> bool:
    """The parquet output rule: a name ending in ``.parquet`` is one file, anything else a
    folder of part files."""
    return not os.fspath(target).lower().endswith(".parquet")


class ParquetOutput:
    """Prediction rows streamed to parquet, committed atomically.

    ``target`` ending in ``.parquet``: one file (a temp file beside it, renamed over it on
    success). Otherwise: a folder of ``part-00000.parquet``, … of at most ``part_rows`` rows,
    written in a temp folder beside it and renamed into place on success (an old folder of
    that name is replaced). A failed or interrupted run leaves nothing under the final name.
    """

    def __init__(self, target: str | os.PathLike[str], labels: bool = False, *,
                 part_rows: int = PART_ROWS, row_group: int = ROW_GROUP) -> None:
        self.target = Path(target)
        self.labels = labels
        self.folder = is_parquet_folder(target)
        self.part_rows, self.row_group = part_rows, row_group
        self.schema = prediction_schema(labels)
        self._buffer: list[Prediction] = []
        self._writer: Any = None
        self._part_rows_written = 0
        self._parts = 0
        self.rows = 0
        self.target.parent.mkdir(parents=True, exist_ok=True)
        import tempfile

        if self.folder:
            self._tmp = Path(
                tempfile.mkdtemp(prefix=f".{self.target.name}.", dir=self.target.parent)
            )
        else:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".parquet",
                                       dir=self.target.parent)
            os.close(fd)
            self._tmp = Path(tmp)

    def add(self, pred: Prediction) -> None:
        self._buffer.append(pred)
        self.rows += 1
        if len(self._buffer) >= self.row_group:
            self.flush()

    def flush(self) -> None:
        while self._buffer:
            full = self._part_rows_written >= self.part_rows
            if self.folder and self._writer is not None and full:
                self._writer.close()
                self._writer = None
            if self._writer is None:
                self._open_part()
            room = self.part_rows - self._part_rows_written if self.folder else len(self._buffer)
            rows, self._buffer = self._buffer[:room], self._buffer[room:]
            self._writer.write_table(predictions_to_table(rows, self.labels))
            self._part_rows_written += len(rows)

    def _open_part(self) -> None:
        import pyarrow.parquet as pq

        if self.folder:
            path = self._tmp / f"part-{self._parts:05d}.parquet"
            self._parts += 1
        else:
            path = self._tmp
        self._writer = pq.ParquetWriter(os.fspath(path), self.schema)
        self._part_rows_written = 0

    def commit(self) -> None:
        """Write what is buffered and move the result under its final name."""
        self.flush()
        if self._writer is None:  # no rows: still a valid (empty) file / one empty part
            self._open_part()
        self._writer.close()
        self._writer = None
        umask = os.umask(0)
        os.umask(umask)
        if not self.folder:
            os.chmod(self._tmp, 0o666 & ~umask)
            os.replace(self._tmp, self.target)
            return
        os.chmod(self._tmp, 0o777 & ~umask)
        old = None
        if self.target.exists():
            if not self.target.is_dir():
                raise UsageError(f"{self.target} exists and is not a folder; parquet output "
                                 "without a .parquet suffix is a folder of part files")
            old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
            os.replace(self.target, old)
        os.replace(self._tmp, self.target)
        if old is not None:
            import shutil

            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        """Drop everything written (the final name is left as it was)."""
        import contextlib
        import shutil

        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        if self.folder:
            shutil.rmtree(self._tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()

    def __enter__(self) -> ParquetOutput:
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def default_workers() -> int:
    """Decoder processes used when ``workers`` is not given."""
    return _default_workers()


__all__ = [
    "DEFAULT_BATCH",
    "ParquetOutput",
    "Prediction",
    "PredictStats",
    "decode_one",
    "default_workers",
    "folder_label",
    "make_predictions",
    "prediction_schema",
    "predict_files",
    "predictions_from_table",
    "predictions_to_table",
]
