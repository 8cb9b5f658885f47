"""Ray itself for the Ray engine: finding Ray, reaching or starting a cluster, keeping Ray
quiet, the filesystems of URIs, and the cifarkit error inside Ray's wrappers.

Ray is imported only inside these functions; importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
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
CONNECT_SECONDS = 5  # Ray's once-a-second tries of a reachable GCS (its default: 20)


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


def current_cluster_file() -> str:
    """Where ``ray start`` records the last head's address, which Ray reads for ``auto`` (and,
    without ``address="local"``, for a plain ``ray.init()``): ``$RAY_TMPDIR/ray/`` (else
    ``$TMPDIR/ray/``, else ``/tmp/ray/``) ``ray_current_cluster``, as Ray finds it."""
    base = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    return os.path.join(base, "ray", "ray_current_cluster")


def _recorded_address() -> str | None:
    try:
        with open(current_cluster_file(), encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail fast, naming the address, when nothing listens there (``ray.init`` would retry
    for a minute or more). ``auto``: the address ``ray start`` recorded, if any."""
    recorded = _recorded_address() if address == "auto" else None
    hp = _host_port(recorded or address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as exc:
        if recorded:
            raise ClusterError(
                f"--address auto: {current_cluster_file()} names the Ray head at {recorded}, "
                f"where nothing listens ({exc.strerror or exc}): a head that stopped without "
                "`ray stop` leaves it behind. Start the cluster again, give its address, or "
                "leave --address and RAY_ADDRESS unset to start a local Ray"
            ) from None
        raise ClusterError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}. Is a head "
            "running there (`ray start --head`)? Check --address / RAY_ADDRESS, or leave both "
            "unset to start a local Ray"
        ) from None


_AUTH = re.compile(r"InvalidAuthToken|Authentication token is missing or incorrect|"
                   r"Token authentication is enabled but|Unauthenticated", re.I)
_LOG_PREFIX = re.compile(r"^\[[^\]]*\]\s*(?:\S+\.cc:\d+:\s*)?")


def auth_help(address: str) -> str:
    """What to do when a cluster wants a token this process does not have."""
    return (
        f"the Ray cluster at {address} uses token authentication (Ray 2.60's `ray start "
        "--head` turns it on where the head has a token) and this process has no valid "
        "token for it. Run with RAY_AUTH_MODE=token and the cluster's token: "
        "RAY_AUTH_TOKEN=<token>, or the token file in ~/.ray/auth_token or "
        "RAY_AUTH_TOKEN_PATH=<file> (on the head, `ray get-auth-token` prints it); see "
        "docs/scale-out.md"
    )


def connect_error(where: str, tried: str, exc: BaseException, log: str) -> ClusterError:
    """One message for a failed start/connect: what was tried and Ray's reason, once (its
    C++ client repeats a line per retry); the token advice when the cluster wants one."""
    texts = [log, *(str(e) for e in [exc, *seen_errors(exc)])]
    if any(_AUTH.search(t) for t in texts):
        return ClusterError(auth_help(where))
    lines: list[str] = []
    for raw in log.splitlines():
        line = _LOG_PREFIX.sub("", raw.strip())
        if line and line not in lines:
            lines.append(line)
    detail = " | ".join(lines[-3:])
    if len(detail) > 600:
        detail = detail[:599] + "…"
    return ClusterError(f"cannot {tried}: {type(exc).__name__}: {short_error(exc, 600)}"
                        + (f" ({detail})" if detail else ""))


@contextlib.contextmanager
def _connect_retries(seconds: int) -> Iterator[None]:
    """Ray's driver tries a cluster's GCS once a second, 20 times by default; this many
    (unless the user set ``RAY_gcs_server_port_wait_time_s``), for this ``ray.init`` only."""
    key = "RAY_gcs_server_port_wait_time_s"
    if key in os.environ:
        yield
        return
    os.environ[key] = str(seconds)
    try:
        yield
    finally:
        os.environ.pop(key, None)


class RaySession:
    """Connects to ``address`` (default ``$RAY_ADDRESS``) or starts a local Ray in this
    process; a Ray this session started is shut down on exit, a cluster is only left.

    The local case always starts its own Ray (``address="local"``): a ``ray_current_cluster``
    file left by a head that died without ``ray stop`` is never joined. A connect gives up
    after ``CONNECT_SECONDS`` of retries with one message naming the address (and the token
    settings, when the cluster wants a token)."""

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
            where, tried = str(self.address), f"connect to the Ray cluster at {self.address}"
        else:
            where, tried = "local", "start a local Ray in this process (ray.init(address='local'))"
        # Ray's start-up prints banners and C++ log lines; the library prints nothing.
        bounded = _connect_retries(CONNECT_SECONDS) if remote else contextlib.nullcontext()
        with captured_output() as log, bounded:
            try:
                if remote:
                    ray.init(address=self.address, **kwargs)
                else:
                    ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False,
                             **kwargs)
                error = None
            except Exception as exc:
                error = exc
        if error is not None:
            raise connect_error(where, tried, error, log.getvalue()) from None
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
    "CONNECT_SECONDS",
    "CONNECT_TIMEOUT",
    "RAY_EXTRA",
    "RaySession",
    "auth_help",
    "connect_error",
    "current_cluster_file",
    "check_reachable",
    "cifarkit_cause",
    "quiet_ray",
    "ray_module",
    "resolve_filesystem",
    "short_error",
]
