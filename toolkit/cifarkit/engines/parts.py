"""Part files written by workers, committed once by the driver (the Ray engine's ``--output``).

    the rule:  -o NAME.parquet / NAME.csv / NAME.jsonl (or any local name that is not a
               folder, for csv and jsonl)        → one file, as with the local engine
               -o FOLDER/, an existing folder, a parquet name without .parquet, a URI
                                                 → a folder of parts + _SUCCESS

Both are written the same way. Workers write each part into a job folder beside the target
(``.NAME.job-<id>``; on an object store the prefix ``.NAME.job-<id>/`` beside it), named from
the rows it holds: ``part-<unit>-<first>.<fmt>`` (``listing``: the unit the rows were listed
in and the first one's place in it), so a retried task writes the same name again, never a
second part. On a filesystem a part is written under a temp name and renamed; an object store
shows an object only once it is complete. At the end the driver checks the parts (every unit's
rows exactly covered, once; every reported part there) and commits:

- a folder: ``_SUCCESS`` (JSON: format, rows, failed, parts with their rows) is written into
  the job folder, which is then renamed into place (an old folder of that name is replaced
  only then); on an object store the parts are copied (server-side) under the final prefix and
  ``_SUCCESS`` is written last, then the job prefix is removed;
- one file: the parts are concatenated in name order (listing order) into a temp file beside
  the target, renamed over it (the driver streams bytes, one part at a time: memory flat, time
  linear; for large runs give a folder).

A job that fails removes its job folder; the final name is not touched. A driver killed
outright leaves a hidden ``.NAME.job-<id>`` folder, never a file under the final name.
Readers: pandas/pyarrow ``read_parquet(FOLDER)``, ``pyarrow.dataset.dataset(FOLDER,
format="csv"|"json")`` and DuckDB's ``read_parquet('FOLDER/*.parquet')`` skip ``_SUCCESS``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cifarkit.engines.rows import Prediction, columns, prediction_schema, predictions_to_table
from cifarkit.errors import ClusterError, UsageError

SUFFIXES = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".jsonl"}
MANIFEST = "_SUCCESS"
COPY_THREADS = 32  # server-side copies in flight when an object-store output is published
#: Test hook (fault injection): a file whose content is ``die`` or ``raise``; the first part
#: write that claims it (by deleting it) dies mid-write or raises, once.
FAULT_ENV = "CIFARKIT_FAULT_PART"


def is_uri(name: str) -> bool:
    head, sep, _ = name.partition("://")
    return bool(sep) and head.replace("+", "").replace(".", "").replace("-", "").isalnum()


@dataclass(frozen=True)
class Output:
    """Where ``--output`` goes: ``folder`` (of parts) or one file; ``job`` is the job folder
    the workers write into (a path or URI, beside the target); ``labels``/``reject``: the
    optional columns (``rows.columns``)."""

    target: str
    fmt: str
    folder: bool
    labels: bool
    job: str
    reject: bool = False

    @property
    def uri(self) -> bool:
        return is_uri(self.target)


def output_for(target: str | os.PathLike[str], fmt: str, labels: bool,
               reject: bool = False) -> Output:
    """The rule of the module docstring, and a fresh job folder name beside the target."""
    if fmt not in SUFFIXES:
        raise UsageError(f"--engine ray writes csv, jsonl or parquet to --output, not {fmt}")
    name = os.fspath(target)
    bare = name.rstrip("/")
    if is_uri(name):
        if not name.endswith("/") and bare.lower().endswith(tuple(SUFFIXES.values())):
            raise UsageError(f"--output {name}: on an object store the output is a folder of "
                             f"parts: give a prefix ending in / (e.g. {bare.rsplit('.', 1)[0]}/)")
        folder = True
    else:
        folder = (name.endswith(("/", os.sep)) or os.path.isdir(name)
                  or (fmt == "parquet" and not bare.lower().endswith(".parquet")))
    if not is_uri(name):  # workers need not share the driver's working folder
        bare = os.path.abspath(bare)
    parent, _, base = bare.rpartition("/")
    if not base or not parent or parent.endswith(":/"):
        raise UsageError(f"--output {name}: name a folder or file, not a bucket's root")
    job = f"{parent}/.{base}.job-{uuid.uuid4().hex[:12]}"
    return Output(bare, fmt, folder, labels, job, reject)


def _fs(path: str) -> tuple[Any, str]:
    if is_uri(path):
        from cifarkit.engines.ray_cluster import resolve_filesystem

        return resolve_filesystem(path)
    import pyarrow.fs as pafs

    return pafs.LocalFileSystem(), os.path.abspath(path)


# --- a part, on a worker ----------------------------------------------------------------------


def part_name(unit: int, first: int, fmt: str) -> str:
    return f"part-{unit:06d}-{first:010d}{SUFFIXES[fmt]}"


def encode_part(preds: list[Prediction], fmt: str, labels: bool, reject: bool = False) -> bytes:
    """The part's bytes, with the writers' encodings (a CSV part has its header)."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        sink = pa.BufferOutputStream()
        pq.write_table(predictions_to_table(preds, labels, reject), sink)
        return sink.getvalue().to_pybytes()
    from cifarkit.engines.writers import CsvWriter, JsonlWriter

    text = io.StringIO()
    writer = (CsvWriter(stream=text, labels=labels, reject=reject) if fmt == "csv"
              else JsonlWriter(stream=text))
    for pred in preds:
        writer.add(pred)
    return text.getvalue().encode("utf-8")


def write_part(job: str, name: str, data: bytes) -> None:
    """``data`` as ``job/name``, atomically: a temp name renamed on a filesystem, one object
    (visible only once complete) on an object store. Writing it again replaces it."""
    fs, base = _fs(job)
    path = f"{base}/{name}"
    fault = _claim_fault()
    if is_uri(job):
        if fault:
            _fail(fault, None)
        with fs.open_output_stream(path) as out:
            out.write(data)
        return
    os.makedirs(base, exist_ok=True)
    tmp = f"{base}/.{name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data[: len(data) // 2] if fault else data)
            if fault:
                fh.flush()
                _fail(fault, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _claim_fault() -> str | None:
    marker = os.environ.get(FAULT_ENV)
    if not marker:
        return None
    try:
        with open(marker, encoding="utf-8") as fh:
            what = fh.read().strip()
        os.unlink(marker)  # only one writer wins the claim
    except OSError:
        return None
    return what


def _fail(what: str, tmp: str | None) -> None:
    if what == "die":  # the process dies mid-write: its half temp file stays behind
        os._exit(1)
    raise OSError(f"injected part-write failure ({FAULT_ENV}), temp file {tmp}")


# --- the commit, on the driver ----------------------------------------------------------------


@dataclass
class PartsLedger:
    """What the workers reported: parts (by name) and each unit's size. O(parts + units)."""

    parts: dict[str, int] = field(default_factory=dict)
    ranges: dict[int, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    unit_rows: dict[int, int] = field(default_factory=dict)
    failed: int = 0

    def add(self, name: str, unit: int, first: int, rows: int, unit_rows: int,
            failed: int) -> bool:
        """Record a part; False when it was reported before (a retried task's report)."""
        if name in self.parts:
            return False
        self.parts[name] = rows
        self.ranges[unit].append((first, rows))
        self.unit_rows[unit] = unit_rows
        self.failed += failed
        return True

    @property
    def rows(self) -> int:
        return sum(self.parts.values())

    def check(self, complete: bool) -> None:
        """Each unit's rows covered exactly once by its parts (``complete``: to its end)."""
        for unit, ranges in self.ranges.items():
            at = 0
            for first, rows in sorted(ranges):
                if first != at:
                    what = "overlap" if first < at else "miss"
                    raise ClusterError(f"the parts of listing unit {unit} {what} rows at "
                                       f"{min(first, at)}: not committed")
                at = first + rows
            if complete and at != self.unit_rows[unit]:
                raise ClusterError(f"listing unit {unit} has {self.unit_rows[unit]} inputs, "
                                   f"its parts {at}: not committed")


class PartsJob:
    """The driver's side: the job folder, the ledger, commit or abort."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.ledger = PartsLedger()
        self.fs, self.job = _fs(out.job)
        self.final_fs, self.final = _fs(out.target)
        if not out.uri:
            if out.folder and os.path.exists(self.final) and not os.path.isdir(self.final):
                raise UsageError(f"{out.target} exists and is not a folder; a folder output "
                                 "needs a folder name")
            if not out.folder and os.path.isdir(self.final):
                raise UsageError(f"{out.target} is a folder: give a file name, or a folder "
                                 "name ending in / for a folder of parts")
            os.makedirs(self.job)

    def commit(self, complete: bool = True, extra: dict[str, Any] | None = None) -> None:
        """Check the parts, then put the output in place (module docstring); on failure the
        job folder is removed and the error raised."""
        try:
            self.ledger.check(complete)
            self._check_present()
            manifest = self._manifest(extra or {})
            if not self.out.folder:
                self._merge()
            elif self.out.uri:
                self._publish_uri(manifest)
            else:
                self._publish_folder(manifest)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if not self.out.uri:
            shutil.rmtree(self.job, ignore_errors=True)
            return
        with contextlib.suppress(OSError):  # pyarrow's I/O errors are OSErrors
            self.fs.delete_dir(self.job)

    def _listing(self) -> dict[str, Any]:
        import pyarrow.fs as pafs

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.job, allow_not_found=True))
        except OSError as exc:
            raise ClusterError(f"cannot list the job folder {self.out.job}: {exc}") from None
        return {os.path.basename(i.path): i for i in infos if i.type == pafs.FileType.File}

    def _check_present(self) -> None:
        found = self._listing()
        missing = [n for n in self.ledger.parts if n not in found]
        if missing:
            raise ClusterError(
                f"{len(missing)} of {len(self.ledger.parts)} parts the workers wrote are not "
                f"in {self.out.job} as the driver sees it (e.g. {missing[0]}): on a cluster, "
                "--output must be on a filesystem every node shares, or a URI (s3://…/)")
        if not self.out.uri:  # what a worker that died mid-write left, and unreported parts
            for name in found:
                if name not in self.ledger.parts:
                    os.unlink(os.path.join(self.job, name))

    def _manifest(self, extra: dict[str, Any]) -> bytes:
        parts = [{"name": n, "rows": r} for n, r in sorted(self.ledger.parts.items())]
        doc = {"format": self.out.fmt, "rows": self.ledger.rows, "failed": self.ledger.failed,
               "columns": list(columns(self.out.labels, self.out.reject)), **extra,
               "parts": parts}
        return json.dumps(doc, indent=1).encode("utf-8")

    def _publish_folder(self, manifest: bytes) -> None:
        write_part(self.out.job, MANIFEST, manifest)
        os.chmod(self.job, 0o777 & ~_umask())
        old = None
        if os.path.isdir(self.final):
            old = f"{self.job}.old"
            os.replace(self.final, old)
        os.replace(self.job, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _publish_uri(self, manifest: bytes) -> None:
        from concurrent.futures import ThreadPoolExecutor

        def copy(name: str) -> None:  # server-side on S3: no bytes through the driver
            self.fs.copy_file(f"{self.job}/{name}", f"{self.final}/{name}")

        names = sorted(self.ledger.parts)
        try:
            with ThreadPoolExecutor(COPY_THREADS) as pool:
                list(pool.map(copy, names))
            with self.final_fs.open_output_stream(f"{self.final}/{MANIFEST}") as out:
                out.write(manifest)
        except BaseException:
            for name in names:  # a failed commit takes back what it copied
                with contextlib.suppress(OSError):
                    self.final_fs.delete_file(f"{self.final}/{name}")
            raise
        self.abort()  # the job prefix

    def _merge(self) -> None:
        from cifarkit._io import atomic_path

        names = sorted(self.ledger.parts)
        with atomic_path(self.final) as tmp:
            if self.out.fmt == "parquet":
                _merge_parquet([os.path.join(self.job, n) for n in names], tmp,
                               prediction_schema(self.out.labels, self.out.reject))
            else:
                _merge_text([os.path.join(self.job, n) for n in names], tmp,
                            self.out.fmt == "csv", columns(self.out.labels, self.out.reject))
        shutil.rmtree(self.job, ignore_errors=True)


def _merge_parquet(paths: Iterable[str], into: Any, schema: Any) -> None:
    import pyarrow.parquet as pq

    with pq.ParquetWriter(os.fspath(into), schema) as writer:
        for path in paths:
            writer.write_table(pq.read_table(path))


def _merge_text(paths: Iterable[str], into: Any, csv: bool, header: Iterable[str]) -> None:
    with open(into, "wb") as out:
        if csv:
            out.write((",".join(header) + "\n").encode("utf-8"))
        for path in paths:
            with open(path, "rb") as part:
                if csv:
                    part.readline()  # each part's own header
                shutil.copyfileobj(part, out, 1 << 20)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


__all__ = ["FAULT_ENV", "MANIFEST", "Output", "PartsJob", "PartsLedger", "encode_part",
           "is_uri", "output_for", "part_name", "write_part"]
