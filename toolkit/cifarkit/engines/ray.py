"""The Ray Data engine: the same prediction as ``predict_files``, scaled out over a Ray cluster.

    inputs ──► a Ray Dataset of (path[, path_bytes, error | bytes]) ──► map_batches(_Predictor,
        actor pool) ──► a Ray Dataset of prediction rows (``rows.prediction_schema``)

- **Inputs.** Local paths, folders, globs and ``-`` are expanded on the driver by
  ``inputs.iter_inputs`` (the local engine's rules: sorted walk, image extensions, hidden
  names skipped, a glob that matches nothing is an error row) and handed to Ray as blocks of
  paths (a name that is not UTF-8 as ``rows.encode_name`` writes it: the text and its exact
  bytes, from which the actor gets the name back); the actors read them from the (shared, on
  a cluster) filesystem with the decoder's path entry point, which also turns FIFOs,
  unreadable and vanished files into error rows.
  URIs (``s3://``, ``gs://``, ``hdfs://``, anything pyarrow or fsspec opens) are read as bytes
  by Ray Data's own reader (``read_binary_files(include_paths=True)``) on the workers and
  decoded with ``data.images.decode``: the same decoder, the same array, the same warnings
  and error reasons (``local.decode_one`` makes both engines' rows).
- **Inference.** ``map_batches`` with a callable class that gets the ``PredictRequest``: one
  actor per ``concurrency`` slot, each holding the request's model on its backend
  (``base.open_model``: a ``Classifier`` with the provider, or another backend; threads =
  the actor's CPUs, no spinning). The actor decodes and infers its batch itself: decoding is
  cheap next to inference, and decoded pixels never cross the object store. The backend's
  and provider's checks (no silent fallback) run in every actor's constructor; Ray Data
  fails the job on the first actor that cannot start, and the driver re-raises the actor's
  ``ProviderError``/``ModelError`` with its own message and exit code. Rows name the
  backend and provider of the actor that computed them.
- **Exactly once.** Each input is one row of one input block, and the output rows of a block
  are a pure function of it (deterministic decoding and inference). Ray restarts a dead
  actor (``max_restarts=-1``) and retries its tasks (``max_task_retries=-1``); a lost
  output block is rebuilt from lineage; Ray Data only hands a block downstream once its task
  has produced it. ``RayPrediction`` additionally drops any row whose path it has already
  yielded (``duplicates`` counts them; 0 in every run so far), so a retry can never show up
  twice in the output, and the writers (``writers``) commit only a finished run, so a job
  that fails leaves no partial file.
- **Streaming.** The driver pulls output blocks as they finish (``iter_batches``), converts
  them to ``Prediction`` rows and lets them go; Ray Data's backpressure bounds what is in
  flight. What the driver keeps per input: the input path blocks in the object store (local
  inputs, ~100 bytes each) and one 8-byte hash for de-duplication.

Ray is imported only here and in ``ray_cluster``, lazily; ``--engine local`` never imports it.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from cifarkit.engines.base import (
    DEFAULT_BATCH,
    OnRow,
    PredictRequest,
    PredictStats,
    Progress,
    model_info,
    refuse,
    rejection,
    skip_counter,
)
from cifarkit.engines.ray_cluster import (
    RAY_EXTRA,
    RaySession,
    check_reachable,
    cifarkit_cause,
    quiet_ray,
    ray_module,
    resolve_filesystem,
    short_error,
)
from cifarkit.engines.reject import Rejection
from cifarkit.engines.rows import Prediction, name_bytes
from cifarkit.errors import CifarkitError, ClusterError, UsageError

URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Batches of this size keep an actor's per-task overhead (~1 ms) small next to its work.
RAY_BATCH = DEFAULT_BATCH


def is_uri(source: str) -> bool:
    return bool(URI_RE.match(source))


# --- the actor --------------------------------------------------------------------------------


def model_files(request: PredictRequest) -> dict[str, bytes]:
    """The files an actor needs to open the request's model, by name: the model file, and
    the file its backend really opens when that is another (litert's ``.tflite``)."""
    from cifarkit.backends import get_runtime

    files = {request.model.name: request.model.read_bytes()}
    opened = get_runtime(request.backend).model_file(request.model)  # missing: fails here
    if opened != request.model:
        files[opened.name] = opened.read_bytes()
    return files


class _Predictor:
    """One per actor: the request's model on its backend (the backend and provider checks
    run here, in the actor), then decode + infer one batch of input rows per call, returning
    prediction rows."""

    def __init__(self, request: PredictRequest, files: dict[str, bytes],
                 rule: Rejection | None = None) -> None:
        import dataclasses

        from cifarkit.engines.base import backend_of, open_model

        # The model travels in the actor's arguments, so workers need no shared filesystem.
        self._dir = Path(tempfile.mkdtemp(prefix="cifarkit-model-"))
        for name, data in files.items():
            (self._dir / name).write_bytes(data)
        self.request = dataclasses.replace(request, model=self._dir / request.model.name)
        self.model = open_model(self.request, self.request.cpus_per_actor)
        self.backend, self.provider = backend_of(self.model)
        self.classes = tuple(self.model.classes)
        self.class_set = frozenset(self.classes)
        self.k = min(request.top_k, len(self.classes))
        self.rule = rule  # resolved once on the driver (base.rejection), as the local engine

    def _decode(self, paths: list[str], pre: list[Any], blobs: Any) -> tuple[Any, list]:
        """The good images stacked, and a ``FileResult`` per path (``pre``: listing errors)."""
        import functools

        import numpy as np

        from cifarkit.data.images import decode
        from cifarkit.engines.local import decode_one

        size = int(self.model.image_size)
        images = np.empty((len(paths), size, size, 3), np.uint8)
        results = []
        good = 0
        for i, path in enumerate(paths):
            if pre[i].error is not None:
                results.append(pre[i])
                continue
            if blobs is not None:
                arr, result = decode_one(functools.partial(decode, name=path, size=size),
                                         blobs[i].as_py(), path)
            else:
                arr, result = decode_one(functools.partial(decode, size=size), path, path)
            results.append(result)
            if arr is not None:
                images[good] = arr
                good += 1
        return images[:good], results

    def __call__(self, batch: Any) -> Any:
        from cifarkit.engines.local import FileResult
        from cifarkit.engines.rows import (
            decode_name,
            folder_label,
            make_predictions,
            predictions_to_table,
        )

        names = set(batch.schema.names)
        n = batch.num_rows

        def column(name: str) -> list[Any]:
            return batch.column(name).to_pylist() if name in names else [None] * n

        raw = column("path_bytes")
        paths = [decode_name(p, b) for p, b in zip(column("path"), raw, strict=True)]
        pre = [FileResult(e, r) for e, r in zip(column("error"), column("reason"), strict=True)]
        blobs = batch.column("bytes") if "bytes" in names else None
        images, results = self._decode(paths, pre, blobs)
        probs = self.model.predict_proba(images) if len(images) else None
        labels = self.request.labels_from_folders
        truths = [folder_label(p, self.class_set) if labels else None for p in paths]
        preds = make_predictions(paths, [r.error for r in results], probs, self.classes, self.k,
                                 truths, self.backend, self.provider,
                                 reasons=[r.reason for r in results],
                                 warnings=[r.warnings for r in results], rejection=self.rule)
        return predictions_to_table(list(preds), labels, self.rule is not None)


def _with_scheme(batch: Any, prefix: str) -> Any:
    """Ray's reader gives paths without the ``s3://``; rows name inputs as the user did."""
    import pyarrow as pa
    import pyarrow.compute as pc

    i = batch.schema.get_field_index("path")
    col = pc.binary_join_element_wise(pa.scalar(prefix), batch.column(i), "")
    return batch.set_column(i, "path", col)


# --- datasets ---------------------------------------------------------------------------------


def _local_blocks(sources: list[str], recursive: bool, stdin: TextIO | None,
                  block_rows: int, on_skip: Callable[[str], None] | None) -> Iterator[Any]:
    """Arrow blocks of the local inputs (``inputs.iter_inputs``): names as valid text plus
    their bytes when they are not UTF-8, and listing errors (without the path prefix) with
    their reason."""
    import pyarrow as pa

    from cifarkit.engines.inputs import iter_inputs
    from cifarkit.engines.rows import encode_name, reason, safe_text

    items = iter_inputs(sources, recursive=recursive, stdin=stdin, on_skip=on_skip)
    while chunk := list(itertools.islice(items, block_rows)):
        names = [encode_name(it.path) for it in chunk]
        errors = [None if it.error is None else safe_text(reason(it.error, it.path))
                  for it in chunk]
        yield pa.table({"path": pa.array([n for n, _ in names], pa.string()),
                        "path_bytes": pa.array([b for _, b in names], pa.string()),
                        "error": pa.array(errors, pa.string()),
                        "reason": pa.array([it.reason for it in chunk], pa.string())})


def input_dataset(
    sources: Iterable[str], *, recursive: bool = True, stdin: TextIO | None = None,
    block_rows: int = RAY_BATCH, on_skip: Callable[[str], None] | None = None,
) -> tuple[Any, int | None]:
    """A Ray Dataset of inputs and its size when known (local inputs; None for URIs).

    Local sources → blocks of ``path``, ``path_bytes`` (``rows.encode_name``), ``error`` and
    ``reason`` (problems found while listing; ``on_skip(path)`` hears of files left out as
    non-images); URIs → ``read_binary_files`` blocks of ``bytes`` +
    ``path``. Local paths and URIs cannot be mixed in one run (they are read in different
    ways)."""
    ray = ray_module()
    sources = [os.fspath(s) for s in sources]
    if not sources:
        raise UsageError("no inputs: give image files, folders, glob patterns or - for stdin")
    uris = [s for s in sources if is_uri(s) and s != "-"]
    local = [s for s in sources if s not in uris]
    if uris and local:
        raise UsageError("give either local paths or URIs (s3://…) in one run, not both")
    if local:
        tables = list(_local_blocks(local, recursive, stdin, block_rows, on_skip))
        if not tables:
            return None, 0
        return ray.data.from_arrow(tables), sum(t.num_rows for t in tables)

    from cifarkit.data.images import IMAGE_EXTENSIONS

    groups: dict[tuple[str, int], tuple[Any, str, list[str]]] = {}
    for uri in uris:
        fs, path = resolve_filesystem(uri)
        prefix = uri[: uri.index("://") + 3]
        key = (prefix, id(type(fs)))
        groups.setdefault(key, (fs, prefix, []))[2].append(path)
    parts = []
    for fs, prefix, paths in groups.values():
        ds = ray.data.read_binary_files(
            paths, include_paths=True, filesystem=fs,
            file_extensions=sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS),
            # Reading is I/O; with a CPU each, reads could wait forever for the CPUs the
            # inference actors hold (the default pool takes them all).
            num_cpus=0,
        )
        if prefix != "file://":
            ds = ds.map_batches(_with_scheme, fn_args=(prefix,), batch_format="pyarrow",
                                batch_size=None, zero_copy_batch=True, num_cpus=0)
        parts.append(ds)
    ds = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
    return ds, None


def default_concurrency(cpus_per_actor: float, gpus_per_actor: float) -> int:
    """One actor per ``cpus_per_actor`` CPUs of the cluster (per ``gpus_per_actor`` GPUs with
    GPU actors)."""
    res = RaySession.resources()
    if gpus_per_actor:
        return max(1, int(res.get("GPU", 0) // gpus_per_actor))
    return max(1, int(res.get("CPU", 1) // cpus_per_actor))


def map_predict(ds: Any, request: PredictRequest, concurrency: int | tuple[int, int],
                rule: Rejection | None = None) -> Any:
    """``ds`` (a ``path`` column, optionally ``path_bytes``, ``error``, ``bytes``) → a lazy
    Dataset of prediction rows, computed by ``concurrency`` ``_Predictor`` actors (``rule``:
    ``--reject``'s, from ``base.rejection``)."""
    return ds.map_batches(
        _Predictor,
        fn_constructor_args=(request, model_files(request), rule),
        batch_size=request.batch_size,
        batch_format="pyarrow",
        zero_copy_batch=True,
        concurrency=concurrency,
        num_cpus=request.cpus_per_actor,
        num_gpus=request.actor_gpus or None,
        # Fault tolerance is Ray Data's default for actor pools (max_restarts=-1,
        # max_task_retries=-1: a dead actor is restarted, its tasks retried); passing them
        # explicitly is deprecated in Ray 2.60.
    )


def predict_dataset(sources: Iterable[str] | Any,
                    model: str | os.PathLike[str] | None = None, **options: Any) -> Any:
    """A Ray Dataset of prediction rows (``rows.prediction_schema``) for ``sources``.

    ``sources``: paths/folders/globs/URIs (see ``input_dataset``), or a Ray Dataset with a
    ``path`` column and optionally ``bytes`` (the file contents; else the actors read
    ``path``). ``model``: as ``--model`` (``resolve_model``). ``options``: ``PredictRequest``
    fields (``backend``, ``provider``, ``top_k``, ``batch_size``, ``concurrency``, …). The
    dataset is lazy: nothing runs until it is consumed (``iter_batches``, ``write_parquet``,
    …). Needs a Ray session (``ray.init`` or ``RaySession``).
    """
    ray = ray_module()
    from cifarkit.backends.catalog import resolve_model

    given = isinstance(sources, ray.data.Dataset)
    request = PredictRequest(sources=() if given else tuple(sources),
                             model=resolve_model(None if model is None else os.fspath(model)),
                             **options)
    RayEngine().check(request)
    ds = sources
    if not given:
        ds, _ = input_dataset(request.sources, recursive=request.recursive,
                              block_rows=request.batch_size)
        if ds is None:
            raise UsageError("no inputs: the sources name no files")
    return map_predict(ds, request, _concurrency(request), rejection(request))


def _concurrency(request: PredictRequest) -> int | tuple[int, int]:
    if request.concurrency is not None:
        return request.concurrency  # type: ignore[return-value]
    return default_concurrency(request.cpus_per_actor, request.actor_gpus)


# --- the driver side --------------------------------------------------------------------------


def _path_key(path: str) -> bytes:
    return hashlib.blake2b(name_bytes(path), digest_size=8).digest()


class RayPrediction:
    """``predict_files`` on Ray: iterate it for ``Prediction`` rows (in completion order), each
    input once. Starts (or joins) Ray on iteration and shuts a Ray it started down at the end.

    After the run: ``concurrency``, ``resources``, ``startup_seconds``, ``duplicates`` (rows
    dropped because their path had already been yielded) and ``address``.
    """

    def __init__(self, request: PredictRequest, *, num_cpus: int | None = None,
                 stdin: TextIO | None = None, progress: Progress | None = None,
                 on_skip: Callable[[str], None] | None = None,
                 rule: Rejection | None = None) -> None:
        self.request = request
        self.rule = rule
        self.on_skip = on_skip
        self.session = RaySession(request.address, num_cpus=num_cpus)
        self.stdin = stdin
        self.progress = progress
        self.concurrency: int | tuple[int, int] | None = None
        self.resources: dict[str, float] = {}
        self.duplicates = 0
        self.total: int | None = None

    @property
    def startup_seconds(self) -> float:
        return self.session.startup_seconds

    @property
    def address(self) -> str:
        return self.session.address or "a local Ray in this process"

    def describe(self) -> str:
        """One line: the model, backend, actors and cluster (the summary's model line)."""
        r = self.request
        conc = self.concurrency
        actors = f"{conc[0]}–{conc[1]}" if isinstance(conc, tuple) else f"{conc}"
        runs_on = r.backend if r.backend != "onnxruntime" else f"onnxruntime {r.provider}"
        cpus, gpus = r.cpus_per_actor, r.actor_gpus
        gpu = f", {gpus:g} GPU" if gpus else ""
        dup = f"; {self.duplicates:,} retried rows dropped as duplicates" if self.duplicates else ""
        return (f"{r.model} on {runs_on} in {actors} Ray actors ({cpus} CPU{gpu} and {cpus} "
                f"thread{'s' if cpus != 1 else ''} each) on {self.address}; Ray start-up "
                f"{self.startup_seconds:.1f} s{dup}")

    def __iter__(self) -> Iterator[Prediction]:
        with self.session:
            self.resources = self.session.resources()
            ds, self.total = input_dataset(self.request.sources, recursive=self.request.recursive,
                                           stdin=self.stdin, block_rows=self.request.batch_size,
                                           on_skip=self.on_skip)
            if ds is None:
                return
            self.concurrency = _concurrency(self.request)
            out = map_predict(ds, self.request, self.concurrency, self.rule)
            try:
                yield from self._rows(out)
            except (GeneratorExit, CifarkitError):
                raise
            except Exception as exc:
                cause = cifarkit_cause(exc)
                if cause is not None:
                    raise type(cause)(*cause.args) from None
                raise ClusterError(f"the Ray job failed: {type(exc).__name__}: "
                                   f"{short_error(exc)}") from None

    def _rows(self, out: Any) -> Iterator[Prediction]:
        from cifarkit.engines.rows import predictions_from_table

        seen: set[bytes] = set()
        done = failed = 0
        for table in out.iter_batches(batch_size=None, batch_format="pyarrow",
                                      prefetch_batches=2):
            for pred in predictions_from_table(table):
                key = _path_key(pred.path)
                if key in seen:
                    self.duplicates += 1
                    continue
                seen.add(key)
                done += 1
                failed += not pred.ok
                yield pred
            if self.progress is not None:
                self.progress(done, failed, self.total)


class RayEngine:
    """Ray Data: the inputs as a Dataset, an actor pool running the model (``RayPrediction``)."""

    name = "ray"

    def check(self, request: PredictRequest) -> None:
        from cifarkit.backends.providers import GPU_PROVIDERS

        refuse(request, {"workers": "--workers", "threads": "--threads",
                         "io_binding": "--io-binding"},
               "not used by --engine ray (each actor decodes its own batches and runs "
               "--cpus-per-actor inference threads)")
        if request.provider in GPU_PROVIDERS and not request.actor_gpus:
            raise UsageError(f"--provider {request.provider} needs GPU actors: "
                             "--gpus-per-actor > 0")

    def run(self, request: PredictRequest, on_row: OnRow, on_progress: Progress | None = None,
            *, on_start: Callable[[tuple[str, ...]], None] | None = None,
            on_warning: Callable[[str], None] | None = None,
            on_skip: Callable[[str], None] | None = None,
            stdin: TextIO | None = None) -> PredictStats:
        import contextlib

        self.check(request)
        ray_module()  # Ray missing: say how to install it before anything else
        # The class names and --reject's rule from the model's metadata (the contract), before
        # Ray starts; the actors run the model.
        info = model_info(request)
        stats = PredictStats(classes=info.classes, rejection=rejection(request, info))
        if on_start is not None:
            on_start(stats.classes)
        job = RayPrediction(request, stdin=stdin, progress=on_progress,
                            on_skip=skip_counter(stats, on_skip), rule=stats.rejection)
        with contextlib.closing(iter(job)) as rows:
            for pred in rows:
                stats.add(pred)
                on_row(pred)
                if request.strict and not pred.ok:
                    stats.stopped_early = True
                    break
        stats.ran_on = job.describe()
        return stats.finish()


__all__ = [
    "RAY_EXTRA",
    "ClusterError",
    "RayEngine",
    "RayPrediction",
    "RaySession",
    "check_reachable",
    "input_dataset",
    "map_predict",
    "predict_dataset",
    "quiet_ray",
    "resolve_filesystem",
]
