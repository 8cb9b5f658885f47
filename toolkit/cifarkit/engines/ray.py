"""The Ray Data engine: the same prediction as ``predict_files``, scaled out over a Ray cluster.

    inputs ──► a Ray Dataset of (path[, bytes | error]) ──► map_batches(_Predictor, actor pool)
        ──► a Ray Dataset of prediction rows (``predict.prediction_schema``)

- **Inputs.** Local paths, folders, globs and ``-`` are expanded on the driver by
  ``inputs.iter_inputs`` (the local engine's rules: sorted walk, image extensions, hidden
  names skipped, a glob that matches nothing is an error row) and handed to Ray as blocks of
  paths; the actors read them from the (shared, on a cluster) filesystem with the decoder's
  path entry point, which also turns FIFOs, unreadable and vanished files into error rows.
  URIs (``s3://``, ``gs://``, ``hdfs://``, anything pyarrow or fsspec opens) are read as bytes
  by Ray Data's own reader (``read_binary_files(include_paths=True)``) on the workers and
  decoded with ``data.images.load_image_bytes``: the same decoder, the same array.
- **Inference.** ``map_batches`` with a callable class: one actor per ``concurrency`` slot,
  each holding one ``Classifier`` (one onnxruntime session; intra-op threads = the actor's
  CPUs, no spinning). The actor decodes and infers its batch itself: decoding is cheap next
  to inference, and decoded pixels never cross the object store. The provider check of
  ``Classifier`` (no silent fallback) runs in every actor's constructor; Ray Data fails the
  job on the first actor that cannot start, and the driver re-raises the actor's
  ``ProviderError``/``ModelError`` with its own message and exit code.
- **Exactly once.** Each input is one row of one input block, and the output rows of a block
  are a pure function of it (deterministic decoding and inference). Ray restarts a dead
  actor (``max_restarts=-1``) and retries its tasks (``max_task_retries=-1``); a lost
  output block is rebuilt from lineage; Ray Data only hands a block downstream once its task
  has produced it. ``RayPrediction`` additionally drops any row whose path it has already
  yielded (``duplicates`` counts them; 0 in every run so far), so a retry can never show up
  twice in the output, and ``ParquetOutput``/the CLI's atomic writers commit only a finished
  run, so a job that fails leaves no partial file.
- **Streaming.** The driver pulls output blocks as they finish (``iter_batches``), converts
  them to ``Prediction`` rows and lets them go; Ray Data's backpressure bounds what is in
  flight. What the driver keeps per input: the input path blocks in the object store (local
  inputs, ~100 bytes each) and one 8-byte hash for de-duplication.

Ray is imported only here, lazily; ``cifarkit predict --engine local`` never imports it.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import socket
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from cifarkit.engines.local import DEFAULT_BATCH, Prediction, Progress
from cifarkit.errors import CifarkitError, ClusterError, DataError, UsageError

RAY_EXTRA = 'pip install "cifarkit[ray]"'
URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
CONNECT_TIMEOUT = 5.0  # seconds to reach a cluster's GCS port before giving up
# Batches of this size keep an actor's per-task overhead (~1 ms) small next to its work.
RAY_BATCH = DEFAULT_BATCH


def ray_module() -> Any:
    """``ray`` (with Ray Data), or a ``UsageError`` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"--engine ray needs Ray Data ({exc}): {RAY_EXTRA}") from None
    return ray


def is_uri(source: str) -> bool:
    return bool(URI_RE.match(source))


def parse_concurrency(text: str | int | tuple[int, int] | None) -> int | tuple[int, int] | None:
    """``N`` → N actors; ``MIN-MAX`` → an autoscaling pool; None → the default."""
    if text is None or isinstance(text, int | tuple):
        return text  # type: ignore[return-value]
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not m:
        raise UsageError(f"--concurrency wants N or MIN-MAX, got {text!r}")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) else None
    if lo < 1 or (hi is not None and hi < lo):
        raise UsageError(f"--concurrency wants N >= 1 or 1 <= MIN <= MAX, got {text!r}")
    return lo if hi is None else (lo, hi)


# --- the cluster ------------------------------------------------------------------------------


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``host:port`` or ``ray://host:port``; None for ``auto``/``local``."""
    rest = address.split("://", 1)[1] if "://" in address else address
    if rest in ("auto", "local", ""):
        return None
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--address wants HOST:PORT (the head's GCS port, usually 6379), "
                         f"ray://HOST:PORT or auto; got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail fast, naming the address, when nothing listens there (``ray.init`` would retry
    for a minute or more)."""
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}. Is a head "
            "running there (`ray start --head`)? Check --address / RAY_ADDRESS, or leave both "
            "unset to start a local Ray"
        ) from None


class RaySession:
    """Connects to ``address`` (default ``$RAY_ADDRESS``) or starts a local Ray in this
    process; a Ray this session started is shut down on exit, a cluster is only left."""

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None) -> None:
        self.address = address if address is not None else os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self.started = False
        self.startup_seconds = 0.0

    def __enter__(self) -> RaySession:
        ray = ray_module()
        if ray.is_initialized():  # the caller's own session: use it, leave it running
            return self
        from cifarkit._capture import captured_output

        t0 = time.perf_counter()
        kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
        remote = bool(self.address) and self.address != "local"
        if remote:
            check_reachable(self.address)
        # Ray's start-up prints banners and C++ log lines; the library prints nothing.
        with captured_output() as log:
            try:
                if remote:
                    ray.init(address=self.address, **kwargs)
                else:
                    ray.init(num_cpus=self.num_cpus, include_dashboard=False, **kwargs)
                error = None
            except Exception as exc:
                error = exc
        if error is not None:
            where = f"the Ray cluster at {self.address}" if remote else "a local Ray"
            detail = log.getvalue().strip()[-1000:]
            raise ClusterError(
                f"cannot start or connect to {where}: {type(error).__name__}: {error}"
                + (f" ({detail})" if detail else "")
            ) from None
        self.started = True
        self.startup_seconds = time.perf_counter() - t0
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            import ray

            ray.shutdown()
            self.started = False

    @staticmethod
    def resources() -> dict[str, float]:
        import ray

        return dict(ray.cluster_resources())


def quiet_ray() -> None:
    """No Ray progress bars or execution banners (the CLI draws the one progress display) and
    Ray's own loggers at errors only. For applications (the CLI); the library leaves them."""
    # Ray's C++ core logs to stderr directly (e.g. a warning on every actor whose arguments
    # sit in the object store, which Ray Data's always do); read when Ray starts.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False
    # Errors too: a failed job is re-raised by the driver with the actor's own message.
    for name in ("ray", "ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # Ray's driver prints messages it receives from the cluster (e.g. "Raylet is terminated"
    # when a node dies) on *stdout*, where `-f jsonl` rows go: send them to stderr.
    try:
        import ray._private.worker as ray_worker

        original = ray_worker.print_to_stdstream
        if not getattr(original, "_cifarkit_stderr", False):

            def to_stderr(data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
                return original({**data, "is_err": True}, *args, **kwargs)

            to_stderr._cifarkit_stderr = True  # type: ignore[attr-defined]
            ray_worker.print_to_stdstream = to_stderr
    except (ImportError, AttributeError):  # another Ray layout: nothing to redirect
        pass
    # Ray Data's advice (e.g. "fewer input blocks than actors" on small runs) is not the user's.
    warnings.filterwarnings("ignore", module=r"ray(\.|$)")


# --- filesystems ------------------------------------------------------------------------------


def resolve_filesystem(uri: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path inside it) for a URI: pyarrow's own filesystems first
    (s3, gs, hdfs, file), else fsspec's (wrapped for pyarrow). A scheme whose package is
    missing raises ``DataError`` naming the package."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    scheme = uri.split("://", 1)[0].lower()
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowException, OSError,
            ImportError, ValueError) as exc:
        arrow_error = f"{type(exc).__name__}: {exc}"
    try:
        import fsspec
    except ImportError:
        raise DataError(
            f"{uri}: pyarrow cannot open {scheme}:// ({arrow_error}), and fsspec, which knows "
            "more filesystems, is not installed: pip install fsspec (plus the package for "
            f"{scheme}://)"
        ) from None
    try:
        fs = fsspec.filesystem(scheme)
    except ImportError as exc:
        # fsspec's message names the package: "Install gcsfs to access Google Storage".
        raise DataError(f"{uri}: reading {scheme}:// needs a package that is not installed: "
                        f"{exc}") from None
    except ValueError as exc:
        raise DataError(f"{uri}: no filesystem is known for {scheme}:// ({exc}; pyarrow: "
                        f"{arrow_error})") from None
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return PyFileSystem(FSSpecHandler(fs)), fs._strip_protocol(uri)


# --- the actor --------------------------------------------------------------------------------


class _Predictor:
    """One per actor: one ``Classifier`` (the provider check runs here, in the actor), then
    decode + infer one batch of input rows per call, returning prediction rows."""

    def __init__(
        self, model_bytes: bytes, model_name: str, provider: str, threads: int,
        provider_options: dict[str, str] | None, top_k: int, labels: bool,
    ) -> None:
        from cifarkit.backends.onnxruntime import Classifier

        # The model travels in the actor's arguments, so workers need no shared filesystem.
        self._dir = tempfile.mkdtemp(prefix="cifarkit-model-")
        path = Path(self._dir) / model_name
        path.write_bytes(model_bytes)
        self.clf = Classifier(path, provider, threads=threads, provider_options=provider_options,
                              allow_spinning=False)
        self.classes = tuple(self.clf.classes)
        self.class_set = frozenset(self.classes)
        self.k = min(top_k, len(self.classes))
        self.labels = labels

    def __call__(self, batch: Any) -> Any:
        import numpy as np

        from cifarkit.data.images import load_image, load_image_bytes
        from cifarkit.engines.local import (
            decode_one,
            folder_label,
            make_predictions,
            predictions_to_table,
        )

        names = set(batch.schema.names)
        paths: list[str] = batch.column("path").to_pylist()
        n = len(paths)
        pre = batch.column("error").to_pylist() if "error" in names else [None] * n
        blobs = batch.column("bytes") if "bytes" in names else None
        images = np.empty((n, 32, 32, 3), np.uint8)
        errors: list[str | None] = []
        good = 0
        for i, path in enumerate(paths):
            if pre[i] is not None:
                errors.append(pre[i])
                continue
            if blobs is not None:
                arr, error = decode_one(
                    lambda b, p=path: load_image_bytes(b, p), blobs[i].as_py(), path
                )
            else:
                arr, error = decode_one(load_image, path, path)
            errors.append(error)
            if arr is not None:
                images[good] = arr
                good += 1
        probs = self.clf.predict_proba(images[:good]) if good else None
        truths = [folder_label(p, self.class_set) if self.labels else None for p in paths]
        preds = list(make_predictions(paths, errors, probs, self.classes, self.k, truths))
        return predictions_to_table(preds, self.labels)


def _with_scheme(batch: Any, prefix: str) -> Any:
    """Ray's reader gives paths without the ``s3://``; rows name inputs as the user did."""
    import pyarrow as pa
    import pyarrow.compute as pc

    i = batch.schema.get_field_index("path")
    col = pc.binary_join_element_wise(pa.scalar(prefix), batch.column(i), "")
    return batch.set_column(i, "path", col)


# --- datasets ---------------------------------------------------------------------------------


def input_dataset(
    sources: Iterable[str], *, recursive: bool = True, stdin: TextIO | None = None,
    block_rows: int = RAY_BATCH,
) -> tuple[Any, int | None]:
    """A Ray Dataset of inputs and its size when known (local inputs; None for URIs).

    Local sources → blocks of ``path`` (+ ``error`` for problems found while listing);
    URIs → ``read_binary_files`` blocks of ``bytes`` + ``path``. Local paths and URIs
    cannot be mixed in one run (they are read in different ways)."""
    ray = ray_module()
    import pyarrow as pa

    sources = [os.fspath(s) for s in sources]
    if not sources:
        raise UsageError("no inputs: give image files, folders, glob patterns or - for stdin")
    uris = [s for s in sources if is_uri(s) and s != "-"]
    local = [s for s in sources if s not in uris]
    if uris and local:
        raise UsageError("give either local paths or URIs (s3://…) in one run, not both")
    if local:
        from cifarkit.engines.inputs import iter_inputs

        tables = []
        items = iter_inputs(local, recursive=recursive, stdin=stdin)
        total = 0
        while chunk := list(itertools.islice(items, block_rows)):
            tables.append(pa.table({
                "path": pa.array([it.path for it in chunk], pa.string()),
                "error": pa.array([it.error for it in chunk], pa.string()),
            }))
            total += len(chunk)
        if not tables:
            return None, 0
        return ray.data.from_arrow(tables), total

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


def predict_dataset(
    sources: Iterable[str] | Any,
    model: str | os.PathLike[str] | None = None,
    *,
    provider: str = "cpu",
    top_k: int = 3,
    batch_size: int | None = None,
    labels_from_folders: bool = False,
    recursive: bool = True,
    concurrency: int | tuple[int, int] | str | None = None,
    cpus_per_actor: int = 1,
    gpus_per_actor: float | None = None,
    provider_options: dict[str, Any] | None = None,
) -> Any:
    """A Ray Dataset of prediction rows (``predict.prediction_schema``) for ``sources``.

    ``sources``: paths/folders/globs/URIs (see ``input_dataset``), or a Ray Dataset with a
    ``path`` column and optionally ``bytes`` (the file contents; else the actors read
    ``path``). ``model``: as ``--model`` (``resolve_model``). The dataset is lazy: nothing runs
    until it is consumed (``iter_batches``, ``write_parquet``, …). Needs a Ray session
    (``ray.init`` or ``RaySession``).
    """
    ray = ray_module()
    from cifarkit.backends.catalog import resolve_model
    from cifarkit.backends.providers import GPU_PROVIDERS

    if top_k < 1:
        raise UsageError(f"top_k must be >= 1, got {top_k}")
    batch_size = batch_size or RAY_BATCH
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    if cpus_per_actor < 1:
        raise UsageError(f"cpus_per_actor must be >= 1, got {cpus_per_actor}")
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if provider in GPU_PROVIDERS else 0.0
    if gpus_per_actor < 0:
        raise UsageError(f"gpus_per_actor must be >= 0, got {gpus_per_actor}")
    if provider in GPU_PROVIDERS and not gpus_per_actor:
        raise UsageError(f"--provider {provider} needs GPU actors: --gpus-per-actor > 0")
    model_path = resolve_model(None if model is None else os.fspath(model))
    if isinstance(sources, ray.data.Dataset):
        ds = sources
    else:
        ds, _ = input_dataset(sources, recursive=recursive, block_rows=batch_size)
        if ds is None:
            raise UsageError("no inputs: the sources name no files")
    concurrency = parse_concurrency(concurrency)
    if concurrency is None:
        concurrency = default_concurrency(cpus_per_actor, gpus_per_actor)
    return ds.map_batches(
        _Predictor,
        fn_constructor_args=(
            model_path.read_bytes(), model_path.name, provider, int(cpus_per_actor),
            {str(k): str(v) for k, v in (provider_options or {}).items()} or None, top_k,
            labels_from_folders,
        ),
        batch_size=batch_size,
        batch_format="pyarrow",
        zero_copy_batch=True,
        concurrency=concurrency,
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor or None,
        # Fault tolerance is Ray Data's default for actor pools (max_restarts=-1,
        # max_task_retries=-1: a dead actor is restarted, its tasks retried); passing them
        # explicitly is deprecated in Ray 2.60.
    )


# --- the driver side --------------------------------------------------------------------------


def _cifarkit_cause(exc: BaseException) -> CifarkitError | None:
    """The cifarkit error an actor raised, out of Ray's wrappers (RayTaskError, ActorDied…)."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, CifarkitError) and type(e).__module__.startswith("cifarkit"):
            return e
        for attr in ("cause", "__cause__", "__context__", "creation_task_error"):
            nxt = getattr(e, attr, None)
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    # Errors that crossed processes (an actor's constructor failing) may arrive as text only:
    # the remote traceback ends with "cifarkit.errors.ProviderError: <message>".
    from cifarkit import errors

    pattern = r"cifarkit\.errors\.(\w+Error): ([^\n]+)"
    for e in [exc, *(x for x in seen_errors(exc))]:
        m = re.search(pattern, str(e))
        if m and isinstance(getattr(errors, m.group(1), None), type):
            cls = getattr(errors, m.group(1))
            if issubclass(cls, CifarkitError):
                return cls(re.sub(r"\x1b\[[0-9;]*m", "", m.group(2)).strip())
    return None


def seen_errors(exc: BaseException) -> Iterator[BaseException]:
    """``exc``'s causes and contexts (Ray's wrappers keep the original in ``cause``)."""
    seen: set[int] = {id(exc)}
    todo: list[Any] = [exc]
    while todo:
        e = todo.pop()
        for attr in ("cause", "__cause__", "__context__"):
            nxt = getattr(e, attr, None)
            if isinstance(nxt, BaseException) and id(nxt) not in seen:
                seen.add(id(nxt))
                todo.append(nxt)
                yield nxt


def _path_key(path: str) -> bytes:
    return hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()


class RayPrediction:
    """``predict_files`` on Ray: iterate it for ``Prediction`` rows (in completion order), each
    input once. Starts (or joins) Ray on iteration and shuts a Ray it started down at the end.

    After the run: ``concurrency``, ``resources``, ``startup_seconds``, ``duplicates`` (rows
    dropped because their path had already been yielded) and ``address``.
    """

    def __init__(
        self,
        sources: Iterable[str],
        model: str | os.PathLike[str] | None = None,
        *,
        address: str | None = None,
        num_cpus: int | None = None,
        stdin: TextIO | None = None,
        progress: Progress | None = None,
        quiet: bool = False,
        **predict_kwargs: Any,
    ) -> None:
        self.sources = list(sources)
        self.model = model
        self.session = RaySession(address, num_cpus=num_cpus)
        self.stdin = stdin
        self.progress = progress
        self.quiet = quiet
        self.kwargs = predict_kwargs
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

    def __iter__(self) -> Iterator[Prediction]:
        from cifarkit.engines.local import predictions_from_table

        if self.quiet:
            quiet_ray()
        with self.session:
            self.resources = self.session.resources()
            kw = dict(self.kwargs)
            ds, self.total = input_dataset(
                self.sources, recursive=kw.get("recursive", True), stdin=self.stdin,
                block_rows=kw.get("batch_size") or RAY_BATCH,
            )
            if ds is None:
                return
            cpus = kw.get("cpus_per_actor", 1)
            from cifarkit.backends.providers import GPU_PROVIDERS

            gpus = kw.get("gpus_per_actor")
            if gpus is None:
                gpus = 1.0 if kw.get("provider", "cpu") in GPU_PROVIDERS else 0.0
            conc = parse_concurrency(kw.pop("concurrency", None))
            self.concurrency = conc if conc is not None else default_concurrency(cpus, gpus)
            out = predict_dataset(ds, self.model, concurrency=self.concurrency, **kw)
            seen: set[bytes] = set()
            done = failed = 0
            try:
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
            except GeneratorExit:
                raise
            except CifarkitError:
                raise
            except Exception as exc:
                cause = _cifarkit_cause(exc)
                if cause is not None:
                    raise type(cause)(*cause.args) from None
                raise ClusterError(f"the Ray job failed: {type(exc).__name__}: "
                                   f"{_short(exc)}") from None


def _short(exc: BaseException, limit: int = 2000) -> str:
    text = str(exc).strip()
    return text if len(text) <= limit else text[:limit] + " …"


__all__ = [
    "RAY_EXTRA",
    "ClusterError",
    "RayPrediction",
    "RaySession",
    "check_reachable",
    "input_dataset",
    "parse_concurrency",
    "predict_dataset",
    "quiet_ray",
    "resolve_filesystem",
]

