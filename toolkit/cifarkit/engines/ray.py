"""The Ray Data engine: the same prediction as ``predict_files``, scaled out over a Ray cluster,
with the driver out of the data path.

    plan units (driver: arguments + top-level folders) ──► map_batches(Predictor, actor
        pool): list a unit, decode, infer, write part files ──► one small report per part
        ──► the driver checks and commits the parts (``parts``)

- **Listing.** The driver only plans *units* (``listing``: one per sub-folder of a folder
  argument or of a glob's base, per sub-prefix of a URI, per few thousand literal names), a
  Dataset of one block each; a census (Ray tasks, folders only) first settles which unit
  lists a folder reached twice, as the local walk does; each actor lists a unit with the local
  engine's rules just before it predicts its inputs, each input numbered by its place in the
  unit. No list of inputs is ever a Dataset: a listing step's blocks (small, so kept in the
  owner's memory by Ray) piled up in the driver (``input_dataset``). The driver never holds
  the list (stdin's lines excepted: they are read by the driver; the census sends it folder
  keys only, 16 bytes a folder). Local paths are read by the actors from the
  (shared, on a cluster) filesystem with the decoder's path entry point; URIs (``s3://``, …)
  are read by the actors through pyarrow/fsspec (several reads in flight) and decoded from
  bytes (``data.images.decode``: the same array, warnings and error reasons).
- **Inference.** ``map_batches`` with a callable class (``ray_actor.Predictor``: the worker
  side, in its own module) that gets the ``PredictRequest``: one actor per ``concurrency``
  slot, each holding the model on its backend (``base.open_model``; threads = the actor's
  CPUs). The backend and provider checks (no silent fallback) run in
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
  actors send their rows (Arrow IPC) in the report, and the driver drops a report whose place
  (unit, first row) it has already had: a retried call's (O(reports) memory; a path listed
  twice on purpose, as ``a/**`` lists files, stays twice, as locally).

Ray is imported only here and in ``ray_cluster``, lazily; ``--engine local`` never imports it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from cifarkit.engines.base import (
    OnRow,
    OnStart,
    OnWarning,
    PredictRequest,
    PredictStats,
    Progress,
    consume,
    model_info,
    refuse,
    rejection,
    skip_counter,
)
from cifarkit.engines.inputs import OnSkip
from cifarkit.engines.listing import CENSUS_KINDS, Roots, Unit, census, plan_units, settle
from cifarkit.engines.parts import Output, PartsJob, output_for
from cifarkit.engines.ray_actor import Predictor, model_files, unit_rows
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
from cifarkit.engines.rows import Prediction
from cifarkit.errors import CifarkitError, ClusterError, UsageError

# --- datasets ---------------------------------------------------------------------------------


def _settled(units: list[Unit], recursive: bool, roots: Roots) -> list[Unit]:
    """``listing.settle`` after the census of the units that enter folders, run as Ray tasks
    (a few per CPU of the cluster, units dealt round-robin) before anything is predicted."""
    ray = ray_module()
    todo = [u for u in units if u.kind in CENSUS_KINDS]
    if not todo:
        return settle(units, {})
    n = max(1, min(len(todo), 4 * int(RaySession.resources().get("CPU", 1))))
    task, roots_ref = ray.remote(census), ray.put(dict(roots))
    counts: dict[int, Any] = {}
    for part in ray.get([task.remote(todo[i::n], recursive, roots_ref) for i in range(n)]):
        counts.update(part)
    return settle(units, counts)


def input_dataset(sources: Iterable[str], *, recursive: bool = True,
                  stdin: TextIO | None = None) -> tuple[Any, Roots]:
    """A Ray Dataset of settled listing units (``listing``: a few per argument; folders,
    globs and URI prefixes split by sub-folder / sub-prefix; a folder reached twice given to
    the unit that reaches it first, by a census run now as Ray tasks), one block each, and
    the units' root folders (``list_unit``'s ``roots``); None when there is nothing to list.

    The units are listed by the actors themselves, each just before it predicts that unit's
    inputs (``Predictor._unit``): no list of inputs is ever a Dataset. A listing step of its
    own would return its blocks to the driver (Ray keeps task results under 100 kB in the
    owner's memory, and listing runs far ahead of inference): the driver would hold the list
    after all (measured: +75 MiB in 100 s at 10⁶ inputs)."""
    ray = ray_module()
    sources = [os.fspath(s) for s in sources]
    if not sources:
        raise UsageError("no inputs: give image files, folders, glob patterns or - for stdin")
    units, roots = plan_units(sources, recursive=recursive, stdin=stdin)
    if not units:
        return None, roots
    units = _settled(units, recursive, roots)
    return ray.data.from_items(unit_rows(units), override_num_blocks=len(units)), roots


def default_concurrency(cpus_per_actor: float, gpus_per_actor: float) -> int:
    """One actor per ``cpus_per_actor`` CPUs of the cluster (per ``gpus_per_actor`` GPUs with
    GPU actors)."""
    res = RaySession.resources()
    if gpus_per_actor:
        return max(1, int(res.get("GPU", 0) // gpus_per_actor))
    return max(1, int(res.get("CPU", 1) // cpus_per_actor))


def map_predict(ds: Any, request: PredictRequest, concurrency: int | tuple[int, int],
                mode: str = "rows", out: Output | None = None,
                roots: Roots | None = None, rule: Rejection | None = None) -> Any:
    """``ds`` → a lazy Dataset computed by ``concurrency`` ``Predictor`` actors in ``mode``
    (``rows``, ``stream`` or ``parts``). ``ds``: listing units (``input_dataset``; ``roots``
    given), or rows with a ``path`` column and optionally ``path_bytes``. ``rule``:
    ``--reject``'s (``base.rejection``)."""
    return ds.map_batches(
        Predictor,
        fn_constructor_args=(request, model_files(request), mode, out, roots, rule),
        batch_size=1 if roots is not None else request.batch_size,  # one unit per call
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
    ds, roots = input_dataset(request.sources, recursive=request.recursive)
    if ds is None:
        raise UsageError("no inputs: the sources name no files")
    return map_predict(ds, request, _concurrency(request), roots=roots, rule=rule)


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


class RayPrediction:
    """``predict_files`` on Ray. Iterate it for ``Prediction`` rows (completion order, each
    input once: for stdout and tables, the rows come through the driver), or ``write`` them
    as part files from the workers (the rows never reach the driver). Starts (or joins) Ray
    and shuts a Ray it started down at the end.

    After the run: ``concurrency``, ``resources``, ``startup_seconds``, ``duplicates``
    (reports dropped because they had already arrived: a retried task's) and ``address``.
    """

    def __init__(self, request: PredictRequest, *, num_cpus: int | None = None,
                 stdin: TextIO | None = None, progress: Progress | None = None,
                 on_skip: OnSkip | None = None,
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
        """The actors' report rows (``ray_actor._report``) as they come; Ray's errors as
        cifarkit's."""
        with self.session:
            self.resources = self.session.resources()
            try:
                ds, roots = input_dataset(self.request.sources,
                                          recursive=self.request.recursive, stdin=self.stdin)
                if ds is None:
                    return
                self.units = ds.count()  # from the blocks' metadata: nothing runs
                self.concurrency = _concurrency(self.request)
                ds = map_predict(ds, self.request, self.concurrency, mode, out, roots,
                                 self.rule)
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

        seen: set[str] = set()  # the reports' places (unit, first): one per actor call
        done = failed = 0
        for report in self._reports("stream"):
            where = report["where"]
            if where is not None and where in seen:  # a retried call's: its rows are in
                self.duplicates += 1
                continue
            seen.add(where)
            self._skipped(report)
            for pred in predictions_from_table(pa.ipc.open_stream(report["rows"]).read_all()):
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
               on_start: OnStart | None) -> PredictStats:
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
            *, on_start: OnStart | None = None, on_warning: OnWarning | None = None,
            on_skip: OnSkip | None = None, stdin: TextIO | None = None) -> PredictStats:
        stats = self._start(request, on_start)
        job = RayPrediction(request, stdin=stdin, progress=on_progress,
                            on_skip=skip_counter(stats, on_skip), rule=stats.rejection)
        consume(job, stats, on_row, request.strict)
        stats.ran_on = job.describe()
        return stats.finish()

    def write(self, request: PredictRequest, target: str | os.PathLike[str], fmt: str,
              on_progress: Progress | None = None, *, on_start: OnStart | None = None,
              on_skip: OnSkip | None = None, stdin: TextIO | None = None) -> PredictStats:
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
