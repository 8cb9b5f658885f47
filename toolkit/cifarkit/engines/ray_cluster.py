"""Ray itself for the Ray engine: finding Ray, reaching or starting a cluster, keeping Ray
quiet, the filesystems of URIs, and the cifarkit error inside Ray's wrappers.

Ray is imported only inside these functions; importing this module costs nothing.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
import warnings
from collections.abc import Iterator
from typing import Any

from cifarkit.errors import CifarkitError, ClusterError, DataError, UsageError

RAY_EXTRA = 'pip install "cifarkit[ray]"'
CONNECT_TIMEOUT = 5.0  # seconds to reach a cluster's GCS port before giving up


def ray_module() -> Any:
    """``ray`` (with Ray Data), or a ``UsageError`` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"--engine ray needs Ray Data ({exc}): {RAY_EXTRA}") from None
    return ray


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
    Ray's own loggers at errors only. For applications (the CLI); the library leaves them.
    Without Ray: the ``UsageError`` of ``ray_module``."""
    ray_module()
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


# --- errors from the cluster ---------------------------------------------------------------


def cifarkit_cause(exc: BaseException) -> CifarkitError | None:
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


def short_error(exc: BaseException, limit: int = 2000) -> str:
    text = str(exc).strip()
    return text if len(text) <= limit else text[:limit] + " …"


__all__ = [
    "CONNECT_TIMEOUT",
    "RAY_EXTRA",
    "RaySession",
    "check_reachable",
    "cifarkit_cause",
    "quiet_ray",
    "ray_module",
    "resolve_filesystem",
    "short_error",
]
