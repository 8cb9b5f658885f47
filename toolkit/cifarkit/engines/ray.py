"""The Ray Data engine: the same prediction as ``predict_files``, scaled out over a Ray cluster,
with the driver out of the data path.

    plan units (driver: arguments + top-level folders) ──► map_batches(_Predictor, actor
        pool): list a unit, decode, infer, write part files ──► one small report per part
        ──► the driver checks and commits the parts (``parts``)

- **Listing.** The driver only plans *units* (``listing``: one per sub-folder of a folder
  argument, per sub-prefix of a URI, per glob, per few thousand literal names), a Dataset of
  one block each; each actor lists a unit with the local engine's rules just before it
  predicts its inputs, each input numbered by its place in the unit. No list of inputs is
  ever a Dataset: a listing step's blocks (small, so kept in the owner's memory by Ray)
  piled up in the driver (``input_dataset``). The driver never holds the list (stdin's lines
  excepted: they are read by the driver). Local paths are read by the actors from the
  (shared, on a cluster) filesystem with the decoder's path entry point; URIs (``s3://``, …)
  are read by the actors through pyarrow/fsspec (several reads in flight) and decoded from
  bytes (``data.images.decode``: the same array, warnings and error reasons).
- **Inference.** ``map_batches`` with a callable class that gets the ``PredictRequest``: one
  actor per ``concurrency`` slot, each holding the model on its backend (``base.open_model``;
  threads = the actor's CPUs). The backend and provider checks (no silent fallback) run in
  every actor's constructor; the driver re-raises an actor's ``ProviderError``/``ModelError``
  with its own message and exit code.
- **Writes (``--output``).** An actor writes a unit's rows as part files named from the rows
  themselves (unit, first place: ``parts.part_name``), atomically, and yields a one-row report
  per part (counts per class, skipped files, the part). Ray Data's own
  ``write_*``/``Datasink`` path is not used for this: it writes in separate tasks after the
  actors (one more pass of every block through the object store, on CPUs the actors need),
  reports nothing until the end (no worker-counted progress), and its file datasinks name
  files per write task and have had exactly-once gaps (rows lost by parallel writes in
  overwrite mode, ray-project/ray#55043, #54949). The driver keeps a ledger of parts
  (O(parts), a few thousand rows each), checks that every unit's rows are covered exactly
  once, and commits: our ``Datasink.on_write_complete``.
- **Exactly once.** Ray restarts a dead actor and retries its tasks; a lost block is rebuilt
  from lineage. A retried call gets the same rows, so it writes the same part names again
  (replacing, never adding); a report that arrives twice is dropped by part name. A job that
  fails leaves no file under the final name (``parts``).
- **Stdout and tables** still come through the driver (``RayPrediction.__iter__``): the
  actors send their rows (Arrow IPC) in the report, and the driver drops a row whose path it
  has already yielded (8 bytes per input: fine for what fits on a screen or a pipe).

Ray is imported only here and in ``ray_cluster``, lazily; ``--engine local`` never imports it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from cifarkit.engines.base import (
    OnRow,
    PredictRequest,
    PredictStats,
    Progress,
    model_info,
    refuse,
    rejection,
    skip_counter,
)
from cifarkit.engines.inputs import InputItem
from cifarkit.engines.listing import Unit, list_unit, plan_units
from cifarkit.engines.parts import (
    Output,
    PartsJob,
    encode_part,
    is_uri,
    output_for,
    part_name,
    write_part,
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

PART_BATCHES = 8  # batches per part file: 2,048 rows at the default batch size
READ_THREADS = 16  # object-store reads in flight per actor (URI inputs)


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
    run here, in the actor), then decode + infer one batch of input rows per call.

    ``mode``: ``rows`` returns the prediction rows (the library's Dataset); ``stream`` returns
    one report row holding them (Arrow IPC) with the batch's counts and skipped files (the
    CLI's stdout); ``parts`` writes the rows as part files (``parts``) and returns only the
    report: the rows never leave the worker."""

    def __init__(self, request: PredictRequest, files: dict[str, bytes], mode: str = "rows",
                 out: Output | None = None, keys: frozenset[tuple[int, int]] | None = None,
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
        self.mode, self.out, self.keys = mode, out, keys or frozenset()
        self.rule = rule  # --reject's, resolved once on the driver (base.rejection)
        self._filesystems: dict[str, Any] = {}

    def _read(self, uri: str) -> bytes:
        """An object's bytes (URI inputs): the filesystem is opened once per scheme."""
        scheme = uri.split("://", 1)[0]
        if scheme not in self._filesystems:
            self._filesystems[scheme] = resolve_filesystem(uri)[0]
        with self._filesystems[scheme].open_input_file(uri.split("://", 1)[1]) as fh:
            return fh.read()

    def _fetch(self, paths: list[str], pre: list[Any]) -> list[Any]:
        """The bytes of each URI input (read by threads: object stores answer in ms, not
        µs), or the read's error; None for local paths and listing errors."""
        from concurrent.futures import ThreadPoolExecutor

        def read(i: int) -> Any:
            if pre[i].error is not None or not is_uri(paths[i]):
                return None
            try:
                return self._read(paths[i])
            except OSError as exc:
                return exc

        if not any(is_uri(p) for p in paths):
            return [None] * len(paths)
        with ThreadPoolExecutor(READ_THREADS) as pool:
            return list(pool.map(read, range(len(paths))))

    def _decode(self, paths: list[str], pre: list[Any]) -> tuple[Any, list]:
        """The good images stacked, and a ``FileResult`` per path (``pre``: listing errors)."""
        import functools

        import numpy as np

        from cifarkit.data.images import decode
        from cifarkit.engines.local import FileResult, decode_one

        size = int(self.model.image_size)
        images = np.empty((len(paths), size, size, 3), np.uint8)
        results = []
        good = 0
        for i, blob in enumerate(self._fetch(paths, pre)):
            path = paths[i]
            if pre[i].error is not None:
                results.append(pre[i])
                continue
            if isinstance(blob, OSError):
                results.append(FileResult(f"{path}: cannot read: {blob}", "unreadable"))
                continue
            if blob is not None:
                arr, result = decode_one(functools.partial(decode, name=path, size=size),
                                         blob, path)
            else:
                arr, result = decode_one(functools.partial(decode, size=size), path, path)
            results.append(result)
            if arr is not None:
                images[good] = arr
                good += 1
        return images[:good], results

    def _predict(self, paths: list[str], pre: list[Any]) -> list[Prediction]:
        """Rows for ``paths``, inferred in chunks of the request's batch size."""
        from cifarkit.engines.rows import folder_label, make_predictions

        step = self.request.batch_size
        labels = self.request.labels_from_folders
        preds: list[Prediction] = []
        for at in range(0, len(paths), step):
            chunk, chunk_pre = paths[at:at + step], pre[at:at + step]
            images, results = self._decode(chunk, chunk_pre)
            probs = self.model.predict_proba(images) if len(images) else None
            truths = [folder_label(p, self.class_set) if labels else None for p in chunk]
            preds += make_predictions(chunk, [r.error for r in results], probs, self.classes,
                                      self.k, truths, self.backend, self.provider,
                                      reasons=[r.reason for r in results],
                                      warnings=[r.warnings for r in results],
                                      rejection=self.rule)
        return preds

    def __call__(self, batch: Any) -> Iterator[Any]:
        """``batch``: listing units (``input_dataset``: listed here, then predicted in chunks,
        one output per chunk) or rows of paths (a Dataset the caller made)."""
        if "kind" in batch.schema.names:
            for row in batch.to_pylist():
                yield from self._unit(row)
            return
        from cifarkit.engines.rows import decode_name

        n = batch.num_rows
        raw = batch.column("path_bytes").to_pylist() if "path_bytes" in batch.schema.names \
            else [None] * n
        paths = [decode_name(p, b) for p, b in zip(batch.column("path").to_pylist(), raw,
                                                   strict=True)]
        yield self._output([InputItem(p) for p in paths], [], None)

    def _unit(self, row: dict[str, Any]) -> Iterator[Any]:
        """List one unit (``listing.list_unit``), then its inputs in chunks: a part each
        (``parts``) or a batch each; the skipped files go with the first chunk."""
        from cifarkit.engines.rows import decode_name

        paths = tuple(decode_name(t, b) for t, b in zip(row["paths"], row["raw"], strict=True))
        key = None if row["dev"] < 0 else (row["dev"], row["ino"])
        unit = Unit(row["unit"], row["kind"], paths, key)
        skipped: list[str] = []
        items = list(list_unit(unit, self.request.recursive, self.keys, skipped.append))
        step = part_rows(self.request) if self.mode == "parts" else self.request.batch_size
        for at in range(0, max(len(items), 1 if skipped else 0), step):
            where = (unit.index, at, len(items))
            yield self._output(items[at:at + step], skipped if at == 0 else [], where)

    def _output(self, items: list[InputItem], skipped: list[str],
                where: tuple[int, int, int] | None) -> Any:
        """Rows (``rows``), or a report with them (``stream``) or with the part written from
        them (``parts``; ``where``: unit, first place, unit's size)."""
        from cifarkit.engines.local import FileResult
        from cifarkit.engines.rows import predictions_to_table

        pre = [FileResult(it.error, it.reason) for it in items]
        preds = self._predict([it.path for it in items], pre)
        labels = self.request.labels_from_folders
        reject = self.rule is not None
        if self.mode == "rows":
            return predictions_to_table(preds, labels, reject)
        if self.mode == "stream":
            return _report(preds, skipped,
                           rows=_ipc(predictions_to_table(preds, labels, reject)))
        return _report(preds, skipped, parts=self._write_part(preds, where) if preds else [])

    def _write_part(self, preds: list[Prediction],
                    where: tuple[int, int, int] | None) -> list[dict[str, int | str]]:
        """The part of these rows: named from where they are in their unit (``parts``)."""
        assert self.out is not None and where is not None
        unit, first, unit_rows = where
        name = part_name(unit, first, self.out.fmt)
        data = encode_part(preds, self.out.fmt, self.out.labels, self.out.reject)
        write_part(self.out.job, name, data)
        return [{"name": name, "unit": unit, "first": first, "rows": len(preds),
                 "unit_rows": unit_rows, "failed": sum(not p.ok for p in preds)}]


def _ipc(table: Any) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _report(preds: list[Prediction], skipped: list[str], *, rows: bytes | None = None,
            parts: list[dict[str, int | str]] | None = None) -> Any:
    """One row: the batch's counts (``PredictStats.counts``), its skipped files, and its rows
    (stream) or parts (parts)."""
    import json

    import pyarrow as pa

    from cifarkit.engines.rows import encode_name

    stats = PredictStats()
    for pred in preds:
        stats.add(pred)
    return pa.table({
        "counts": pa.array([json.dumps(stats.counts())], pa.string()),
        "skipped": pa.array([[encode_name(p)[0] for p in skipped]], pa.list_(pa.string())),
        "skipped_bytes": pa.array([[encode_name(p)[1] for p in skipped]],
                                  pa.list_(pa.string())),
        "parts": pa.array([json.dumps(parts or [])], pa.string()),
        "rows": pa.array([rows], pa.binary()),
    })


# --- datasets ---------------------------------------------------------------------------------


def _unit_rows(units: list[Unit]) -> list[dict[str, Any]]:
    from cifarkit.engines.rows import encode_name

    rows = []
    for u in units:
        names = [encode_name(p) for p in u.paths]
        rows.append({"unit": u.index, "kind": u.kind, "paths": [t for t, _ in names],
                     "raw": [b for _, b in names],
                     "dev": -1 if u.key is None else u.key[0],
                     "ino": -1 if u.key is None else u.key[1]})
    return rows


def input_dataset(sources: Iterable[str], *, recursive: bool = True,
                  stdin: TextIO | None = None) -> tuple[Any, frozenset[tuple[int, int]]]:
    """A Ray Dataset of listing units (``listing.plan_units``: a few per argument; folders
    and URI prefixes split by sub-folder / sub-prefix), one block each, and the folder keys
    each unit's walk starts from; None when there is nothing to list.

    The units are listed by the actors themselves, each just before it predicts that unit's
    inputs (``_Predictor._unit``): no list of inputs is ever a Dataset. A listing step of its
    own would return its blocks to the driver (Ray keeps task results under 100 kB in the
    owner's memory, and listing runs far ahead of inference): the driver would hold the list
    after all (measured: +75 MiB in 100 s at 10⁶ inputs)."""
    ray = ray_module()
    sources = [os.fspath(s) for s in sources]
    if not sources:
        raise UsageError("no inputs: give image files, folders, glob patterns or - for stdin")
    units, keys = plan_units(sources, recursive=recursive, stdin=stdin)
    if not units:
        return None, keys
    return ray.data.from_items(_unit_rows(units), override_num_blocks=len(units)), keys


def default_concurrency(cpus_per_actor: float, gpus_per_actor: float) -> int:
    """One actor per ``cpus_per_actor`` CPUs of the cluster (per ``gpus_per_actor`` GPUs with
    GPU actors)."""
    res = RaySession.resources()
    if gpus_per_actor:
        return max(1, int(res.get("GPU", 0) // gpus_per_actor))
    return max(1, int(res.get("CPU", 1) // cpus_per_actor))


def part_rows(request: PredictRequest) -> int:
    """Inputs per part file (and per actor call when writing parts)."""
    return request.batch_size * PART_BATCHES


def map_predict(ds: Any, request: PredictRequest, concurrency: int | tuple[int, int],
                mode: str = "rows", out: Output | None = None,
                keys: frozenset[tuple[int, int]] | None = None,
                rule: Rejection | None = None) -> Any:
    """``ds`` → a lazy Dataset computed by ``concurrency`` ``_Predictor`` actors in ``mode``
    (``rows``, ``stream`` or ``parts``). ``ds``: listing units (``input_dataset``; ``keys``
    given), or rows with a ``path`` column and optionally ``path_bytes``. ``rule``:
    ``--reject``'s (``base.rejection``)."""
    return ds.map_batches(
        _Predictor,
        fn_constructor_args=(request, model_files(request), mode, out, keys, rule),
        batch_size=1 if keys is not None else request.batch_size,  # one unit per call
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
    ``path`` column and optionally ``path_bytes`` (the actors read ``path``: a local file or
    a URI). ``model``: as ``--model`` (``resolve_model``). ``options``: ``PredictRequest``
    fields (``backend``, ``provider``, ``top_k``, ``batch_size``, ``concurrency``, …). The
    dataset is lazy: nothing runs until it is consumed. Needs a Ray session (``ray.init`` or
    ``RaySession``). To write it exactly once, use ``RayPrediction(...).write(...)``.
    """
    ray = ray_module()
    from cifarkit.backends.catalog import resolve_model

    given = isinstance(sources, ray.data.Dataset)
    request = PredictRequest(sources=() if given else tuple(sources),
                             model=resolve_model(None if model is None else os.fspath(model)),
                             **options)
    RayEngine().check(request)
    rule = rejection(request)
    if given:
        return map_predict(sources, request, _concurrency(request), rule=rule)
    ds, keys = input_dataset(request.sources, recursive=request.recursive)
    if ds is None:
        raise UsageError("no inputs: the sources name no files")
    return map_predict(ds, request, _concurrency(request), keys=keys, rule=rule)


def _concurrency(request: PredictRequest) -> int | tuple[int, int]:
    if request.concurrency is not None:
        return request.concurrency  # type: ignore[return-value]
    return default_concurrency(request.cpus_per_actor, request.actor_gpus)


# --- the driver side --------------------------------------------------------------------------


def _root_cause(exc: BaseException) -> str:
    """The error under Ray's wrappers (``RayTaskError(OSError)`` → the ``OSError``): its own
    message, not the remote traceback around it."""
    err: BaseException = exc
    while True:  # down the wrappers' causes (not __context__: what was being handled)
        inner = getattr(err, "cause", None) or err.__cause__
        if not isinstance(inner, BaseException) or inner is err:
            break
        err = inner
    if type(err).__module__.startswith("ray"):
        return f"{type(exc).__name__}: {short_error(exc)}"
    return f"{type(err).__name__}: {short_error(err, 600)}"


def _path_key(path: str) -> bytes:
    return hashlib.blake2b(name_bytes(path), digest_size=8).digest()


class RayPrediction:
    """``predict_files`` on Ray. Iterate it for ``Prediction`` rows (completion order, each
    input once: for stdout and tables, the rows come through the driver), or ``write`` them
    as part files from the workers (the rows never reach the driver). Starts (or joins) Ray
    and shuts a Ray it started down at the end.

    After the run: ``concurrency``, ``resources``, ``startup_seconds``, ``duplicates`` (rows
    or parts dropped because they had already arrived: a retried task's) and ``address``.
    """

    def __init__(self, request: PredictRequest, *, num_cpus: int | None = None,
                 stdin: TextIO | None = None, progress: Progress | None = None,
                 on_skip: Callable[[str], None] | None = None,
                 rule: Rejection | None = None) -> None:
        self.request = request
        self.rule = rule  # --reject's (base.rejection)
        self.on_skip = on_skip
        self.session = RaySession(request.address, num_cpus=num_cpus)
        self.stdin = stdin
        self.progress = progress
        self.concurrency: int | tuple[int, int] | None = None
        self.resources: dict[str, float] = {}
        self.duplicates = 0
        self.units = 0

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
        dup = f"; {self.duplicates:,} retried results dropped" if self.duplicates else ""
        return (f"{r.model} on {runs_on} in {actors} Ray actors ({cpus} CPU{gpu} and {cpus} "
                f"thread{'s' if cpus != 1 else ''} each) on {self.address}; listed in "
                f"{self.units:,} units by the actors; Ray start-up {self.startup_seconds:.1f} s"
                f"{dup}")

    def _reports(self, mode: str, out: Output | None = None) -> Iterator[dict[str, Any]]:
        """The actors' report rows (``_report``) as they come; Ray's errors as cifarkit's."""
        with self.session:
            self.resources = self.session.resources()
            ds, keys = input_dataset(self.request.sources, recursive=self.request.recursive,
                                     stdin=self.stdin)
            if ds is None:
                return
            self.units = ds.count()  # from the blocks' metadata: nothing runs
            self.concurrency = _concurrency(self.request)
            ds = map_predict(ds, self.request, self.concurrency, mode, out, keys, self.rule)
            try:
                for table in ds.iter_batches(batch_size=None, batch_format="pyarrow",
                                             prefetch_batches=2):
                    yield from table.to_pylist()
            except (GeneratorExit, CifarkitError):
                raise
            except Exception as exc:
                cause = cifarkit_cause(exc)
                if cause is not None:
                    raise type(cause)(*cause.args) from None
                raise ClusterError(f"the Ray job failed: {_root_cause(exc)}") from None

    def _skipped(self, report: dict[str, Any]) -> None:
        from cifarkit.engines.rows import decode_name

        if self.on_skip is not None:
            for text, raw in zip(report["skipped"], report["skipped_bytes"], strict=True):
                self.on_skip(decode_name(text, raw))

    def __iter__(self) -> Iterator[Prediction]:
        import pyarrow as pa

        from cifarkit.engines.rows import predictions_from_table

        seen: set[bytes] = set()  # stdout-sized runs only: 8 bytes per input
        done = failed = 0
        for report in self._reports("stream"):
            self._skipped(report)
            for pred in predictions_from_table(pa.ipc.open_stream(report["rows"]).read_all()):
                key = _path_key(pred.path)
                if key in seen:
                    self.duplicates += 1
                    continue
                seen.add(key)
                done += 1
                failed += not pred.ok
                yield pred
            if self.progress is not None:
                self.progress(done, failed, None)

    def write(self, out: Output, stats: PredictStats) -> PredictStats:
        """Predict every input into part files written by the actors, then commit them
        (``parts.PartsJob``): the driver sees one small report per actor call, adds its
        counts to ``stats`` and reports progress; with ``strict`` it stops at the first
        report of a failed input and commits the parts reported so far."""
        import contextlib

        job = PartsJob(out)
        reports = self._reports("parts", out)
        try:
            # Closed before the commit: a run stopped early (--strict) writes no more parts.
            with contextlib.closing(reports):
                self._ledger(reports, job, stats)
        except BaseException:
            job.abort()
            raise
        job.commit(complete=not stats.stopped_early,
                   extra={"stopped_early": True} if stats.stopped_early else None)
        return stats

    def _ledger(self, reports: Iterator[dict[str, Any]], job: PartsJob,
                stats: PredictStats) -> None:
        """The reports into the job's ledger and ``stats``; progress; ``strict``'s stop."""
        import json

        for report in reports:
            parts = json.loads(report["parts"])
            fresh = [job.ledger.add(p["name"], p["unit"], p["first"], p["rows"],
                                    p["unit_rows"], p["failed"]) for p in parts]
            if parts and not any(fresh):
                self.duplicates += 1  # a retried call's report: its parts are in already
                continue
            self._skipped(report)
            stats.merge(json.loads(report["counts"]))
            if self.progress is not None:
                self.progress(stats.images, stats.failed, None)
            if self.request.strict and stats.failed:
                stats.stopped_early = True
                return


class RayEngine:
    """Ray Data: an actor pool listing the inputs and running the model
    (``RayPrediction``); ``write`` for outputs the workers write themselves."""

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

    def _start(self, request: PredictRequest,
               on_start: Callable[[tuple[str, ...]], None] | None) -> PredictStats:
        self.check(request)
        ray_module()  # Ray missing: say how to install it before anything else
        # The class names and --reject's rule from the model's metadata (the contract), before
        # Ray starts; the actors run the model.
        info = model_info(request)
        stats = PredictStats(classes=info.classes, rejection=rejection(request, info))
        if on_start is not None:
            on_start(stats.classes)
        return stats

    def run(self, request: PredictRequest, on_row: OnRow, on_progress: Progress | None = None,
            *, on_start: Callable[[tuple[str, ...]], None] | None = None,
            on_warning: Callable[[str], None] | None = None,
            on_skip: Callable[[str], None] | None = None,
            stdin: TextIO | None = None) -> PredictStats:
        import contextlib

        stats = self._start(request, on_start)
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

    def write(self, request: PredictRequest, target: str | os.PathLike[str], fmt: str,
              on_progress: Progress | None = None, *,
              on_start: Callable[[tuple[str, ...]], None] | None = None,
              on_skip: Callable[[str], None] | None = None,
              stdin: TextIO | None = None) -> PredictStats:
        """Every input's row into ``target`` (``parts.output_for``: one file or a folder of
        parts, a local path or a URI) in ``fmt``, written by the workers, committed once."""
        out = output_for(target, fmt, request.labels_from_folders, request.reject != "off")
        stats = self._start(request, on_start)
        job = RayPrediction(request, stdin=stdin, progress=on_progress,
                            on_skip=skip_counter(stats, on_skip), rule=stats.rejection)
        job.write(out, stats)
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
