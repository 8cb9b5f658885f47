"""Writers: prediction rows → a table, CSV, JSONL or Parquet output, committed atomically.

    with open_writer("jsonl", target=Path("preds.jsonl")) as out:
        for pred in rows:
            out.add(pred)          # committed on success; on any failure nothing is left

Every writer has the same life: ``add`` rows, ``flush`` (after each batch, so a stream shows
rows as they finish), then ``commit`` or ``abort``. With a ``target`` the output is written
under a temporary name beside it (``.NAME.XXXX``) and renamed over it by ``commit``; ``abort``
removes the temporary file, and so does a ``commit`` that fails half-way (the error is
raised after the clean-up): a failed run leaves neither a partial file nor a temp file, and
an existing file of that name is left as it was. Without a target, text goes to a stream
(``None``: whatever ``sys.stdout`` is at write time, so a progress display that redirects it
keeps the rows above itself). The row encodings are ``rows``'s.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from cifarkit.engines.rows import Prediction, prediction_schema, predictions_to_table
from cifarkit.errors import UsageError

FORMATS = ("table", "csv", "jsonl", "parquet")
TABLE_BLOCK = 200  # rows per rendered table block (a table streams in blocks)
PART_ROWS = 1_000_000  # rows per part file of a parquet folder
ROW_GROUP = 65_536  # rows buffered before a parquet row group is written
#: Renders a block of rows as text; the flag says whether it is the first block (header).
TableRender = Callable[[list[Prediction], bool], str]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Writer:
    """The writer interface; ``with`` commits on success and aborts on an exception."""

    rows = 0

    def add(self, pred: Prediction) -> None:
        raise NotImplementedError

    def flush(self) -> None:  # noqa: B027 - most writers have nothing buffered
        pass

    def _finish(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        """Write what is left and put the output under its final name. If that fails, the
        temporary output is removed before the error is raised."""
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop everything written (the final name is left as it was)."""

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class TextWriter(Writer):
    """Text rows to a temp file beside ``target`` (renamed on commit) or to ``stream``."""

    def __init__(self, target: str | os.PathLike[str] | None = None,
                 stream: TextIO | None = None) -> None:
        self.target = Path(target) if target is not None else None
        self._tmp: Path | None = None
        self._file: TextIO | None = None
        self._stream = stream
        if self.target is not None:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.target.name}.",
                                       suffix=self.target.suffix, dir=self.target.parent)
            self._tmp = Path(tmp)
            # Outputs are UTF-8 by contract (rows hold only valid text), whatever the locale.
            self._file = open(fd, "w", encoding="utf-8", newline="")  # noqa: SIM115

    def write(self, text: str) -> None:
        (self._file or self._stream or sys.stdout).write(text)

    def flush(self) -> None:
        (self._file or self._stream or sys.stdout).flush()

    def _finish(self) -> None:
        self.flush()
        if self._file is None or self._tmp is None or self.target is None:
            return
        self._file.close()
        os.chmod(self._tmp, 0o666 & ~_umask())  # mkstemp made it 0600
        os.replace(self._tmp, self.target)
        self._tmp = None

    def abort(self) -> None:
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
            self._tmp = None


class CsvWriter(TextWriter):
    """CSV with a header row (``rows.columns``); RFC 4180 quoting, ``\\n`` line ends."""

    def __init__(self, target: str | os.PathLike[str] | None = None,
                 stream: TextIO | None = None, *, labels: bool = False,
                 reject: bool = False) -> None:
        from cifarkit.engines.rows import columns

        super().__init__(target, stream)
        self.labels, self.reject = labels, reject
        self._csv = csv.writer(self, lineterminator="\n")
        self._csv.writerow(columns(labels, reject))

    def add(self, pred: Prediction) -> None:
        self._csv.writerow(pred.csv_row(self.labels, self.reject))
        self.rows += 1


class JsonlWriter(TextWriter):
    """One JSON object per line (``Prediction.as_dict``), non-ASCII text kept as UTF-8."""

    def add(self, pred: Prediction) -> None:
        self.write(json.dumps(pred.as_dict(), ensure_ascii=False) + "\n")
        self.rows += 1


class TableWriter(TextWriter):
    """A table in blocks of ``block`` rows, each rendered to text by ``render`` (the caller
    draws it; widths must not depend on the rows so that blocks line up)."""

    def __init__(self, render: TableRender, target: str | os.PathLike[str] | None = None,
                 stream: TextIO | None = None, *, block: int = TABLE_BLOCK) -> None:
        super().__init__(target, stream)
        self.render, self.block = render, block
        self._rows: list[Prediction] = []
        self._first = True

    def add(self, pred: Prediction) -> None:
        self._rows.append(pred)
        self.rows += 1
        if len(self._rows) >= self.block:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            self.write(self.render(self._rows, self._first))
            self._first = False
            self._rows = []
        super().flush()


def is_parquet_folder(target: str | os.PathLike[str]) -> bool:
    """The parquet output rule: a name ending in ``.parquet`` is one file, anything else a
    folder of part files."""
    return not os.fspath(target).lower().endswith(".parquet")


class ParquetWriter(Writer):
    """Rows streamed to Parquet (``rows.prediction_schema``).

    ``target`` ending in ``.parquet``: one file. Otherwise: a folder of ``part-00000.parquet``,
    … of at most ``part_rows`` rows each, written in a temp folder beside it and renamed into
    place on commit (an old folder of that name is replaced only then).
    """

    def __init__(self, target: str | os.PathLike[str], labels: bool = False, *,
                 reject: bool = False, part_rows: int = PART_ROWS,
                 row_group: int = ROW_GROUP) -> None:
        self.target = Path(target)
        self.labels, self.reject = labels, reject
        self.folder = is_parquet_folder(target)
        self.part_rows, self.row_group = part_rows, row_group
        self.schema = prediction_schema(labels, reject)  # pyarrow missing: say how to install it
        self._buffer: list[Prediction] = []
        self._writer: Any = None
        self._part_rows_written = 0
        self._parts = 0
        if self.folder and self.target.exists() and not self.target.is_dir():
            raise UsageError(f"{self.target} exists and is not a folder; parquet output "
                             "without a .parquet suffix is a folder of part files")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        prefix = f".{self.target.name}."
        if self.folder:
            self._tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=self.target.parent))
        else:
            fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".parquet", dir=self.target.parent)
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
            self._writer.write_table(predictions_to_table(rows, self.labels, self.reject))
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

    def _finish(self) -> None:
        self.flush()
        if self._writer is None:  # no rows: still a valid (empty) file / one empty part
            self._open_part()
        self._writer.close()
        self._writer = None
        if not self.folder:
            os.chmod(self._tmp, 0o666 & ~_umask())
            os.replace(self._tmp, self.target)
            return
        if self.target.exists() and not self.target.is_dir():
            raise UsageError(f"{self.target} exists and is not a folder; parquet output "
                             "without a .parquet suffix is a folder of part files")
        os.chmod(self._tmp, 0o777 & ~_umask())
        old = None
        if self.target.exists():
            old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
            os.replace(self.target, old)
        os.replace(self._tmp, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        if self.folder:
            shutil.rmtree(self._tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()


def open_writer(
    fmt: str, *, target: str | os.PathLike[str] | None = None, stream: TextIO | None = None,
    labels: bool = False, render: TableRender | None = None, reject: bool = False,
) -> Writer:
    """The writer for ``fmt`` (``FORMATS``): to ``target`` (atomically) or to ``stream``.
    ``render`` draws table blocks (``fmt == "table"``); ``labels``/``reject``: the optional
    columns (``rows.columns``)."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "parquet":
        if target is None:
            raise UsageError("--format parquet writes a file: give --output NAME.parquet (one "
                             "file) or --output FOLDER (part files)")
        return ParquetWriter(target, labels, reject=reject)
    if fmt == "csv":
        return CsvWriter(target, stream, labels=labels, reject=reject)
    if fmt == "jsonl":
        return JsonlWriter(target, stream)
    if render is None:
        raise UsageError("a table needs a renderer")
    return TableWriter(render, target, stream)


__all__ = [
    "FORMATS",
    "CsvWriter",
    "JsonlWriter",
    "ParquetWriter",
    "TableWriter",
    "TextWriter",
    "Writer",
    "is_parquet_folder",
    "open_writer",
]
