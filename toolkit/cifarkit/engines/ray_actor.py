"""The Ray engine's worker side: the actor that lists a unit, decodes, infers and (with
``--output``) writes part files itself, and the one-row report it sends the driver
(``cifarkit.engines.ray`` describes the whole design; the driver side lives there).

Imported by the Ray workers; never imports Ray itself (the actor class is plain Python that
``map_batches`` instantiates once per actor).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cifarkit.engines.base import PredictRequest, PredictStats
from cifarkit.engines.inputs import InputItem
from cifarkit.engines.listing import Roots, Unit, list_unit
from cifarkit.engines.parts import Output, encode_part, is_uri, part_name, write_part
from cifarkit.engines.ray_cluster import resolve_filesystem
from cifarkit.engines.reject import Rejection
from cifarkit.engines.rows import Prediction

PART_BATCHES = 8  # batches per part file: 2,048 rows at the default batch size
READ_THREADS = 16  # object-store reads in flight per actor (URI inputs)


def model_files(request: PredictRequest) -> dict[str, bytes]:
    """The files an actor needs to open the request's model, by name: the model file, and
    the file its backend really opens when that is another (litert's ``.tflite``)."""
    from cifarkit.backends import get_runtime

    files = {request.model.name: request.model.read_bytes()}
    opened = get_runtime(request.backend).model_file(request.model)  # missing: fails here
    if opened != request.model:
        files[opened.name] = opened.read_bytes()
    return files


class Predictor:
    """One per actor: the request's model on its backend (the backend and provider checks
    run here, in the actor), then decode + infer one batch of input rows per call.

    ``mode``: ``rows`` returns the prediction rows (the library's Dataset); ``stream`` returns
    one report row holding them (Arrow IPC) with the batch's counts and skipped files (the
    CLI's stdout); ``parts`` writes the rows as part files (``parts``) and returns only the
    report: the rows never leave the worker."""

    def __init__(self, request: PredictRequest, files: dict[str, bytes], mode: str = "rows",
                 out: Output | None = None, roots: Roots | None = None,
                 rule: Rejection | None = None) -> None:
        import dataclasses

        from cifarkit.engines.base import backend_of, check_scored, open_model

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
        self.mode, self.out, self.roots = mode, out, roots or {}
        self.rule = rule  # --reject's, resolved once on the driver (base.rejection)
        check_scored(self.model, rule)
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
        from cifarkit.engines.decoding import FileResult, decode_one

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
        from cifarkit.engines.base import run_model
        from cifarkit.engines.rows import folder_label, make_predictions

        step = self.request.batch_size
        labels = self.request.labels_from_folders
        preds: list[Prediction] = []
        for at in range(0, len(paths), step):
            chunk, chunk_pre = paths[at:at + step], pre[at:at + step]
            images, results = self._decode(chunk, chunk_pre)
            probs, score = (run_model(self.model, images, self.rule) if len(images)
                            else (None, None))
            truths = [folder_label(p, self.class_set) if labels else None for p in chunk]
            preds += make_predictions(chunk, [r.error for r in results], probs, self.classes,
                                      self.k, truths, self.backend, self.provider,
                                      reasons=[r.reason for r in results],
                                      warnings=[r.warnings for r in results],
                                      rejection=self.rule, score_output=score)
        return preds

    def __call__(self, batch: Any) -> Iterator[Any]:
        """``batch``: listing units (``ray.input_dataset``: listed here, then predicted in chunks,
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
        unit = _unit_of(row)
        skipped: list[str] = []
        items = list(list_unit(unit, self.request.recursive, self.roots, skipped.append))
        step = part_rows(self.request) if self.mode == "parts" else self.request.batch_size
        for at in range(0, max(len(items), 1 if skipped else 0), step):
            where = (unit.index, at, len(items))
            yield self._output(items[at:at + step], skipped if at == 0 else [], where)

    def _output(self, items: list[InputItem], skipped: list[str],
                where: tuple[int, int, int] | None) -> Any:
        """Rows (``rows``), or a report with them (``stream``) or with the part written from
        them (``parts``; ``where``: unit, first place, unit's size)."""
        from cifarkit.engines.decoding import FileResult
        from cifarkit.engines.rows import predictions_to_table

        pre = [FileResult(it.error, it.reason) for it in items]
        preds = self._predict([it.path for it in items], pre)
        labels = self.request.labels_from_folders
        reject = self.rule is not None
        if self.mode == "rows":
            return predictions_to_table(preds, labels, reject)
        if self.mode == "stream":
            return _report(preds, skipped, where=where,
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
            parts: list[dict[str, int | str]] | None = None,
            where: tuple[int, int, int] | None = None) -> Any:
    """One row: the batch's counts (``PredictStats.counts``), its skipped files, and its rows
    (stream, with ``where`` they were in their unit: a retried call's report says the same)
    or parts (parts)."""
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
        "where": pa.array([json.dumps(where[:2]) if where else None], pa.string()),
    })


def unit_rows(units: list[Unit]) -> list[dict[str, Any]]:
    """A Dataset row per unit, as ``Predictor`` reads them (``_unit_of``); the keys as JSON:
    an ``st_ino`` may not fit an int64."""
    import json

    from cifarkit.engines.rows import encode_name

    rows = []
    for u in units:
        names = [encode_name(p) for p in u.paths]
        rows.append({"unit": u.index, "kind": u.kind, "paths": [t for t, _ in names],
                     "raw": [b for _, b in names], "key": json.dumps(u.key),
                     "prune": json.dumps(sorted(u.prune)), "no_match": u.no_match})
    return rows


def _unit_of(row: dict[str, Any]) -> Unit:
    import json

    from cifarkit.engines.rows import decode_name

    paths = tuple(decode_name(t, b) for t, b in zip(row["paths"], row["raw"], strict=True))
    key = json.loads(row["key"])
    return Unit(row["unit"], row["kind"], paths, None if key is None else tuple(key),
                frozenset(tuple(k) for k in json.loads(row["prune"])), row["no_match"])


def part_rows(request: PredictRequest) -> int:
    """Inputs per part file (and per actor call when writing parts)."""
    return request.batch_size * PART_BATCHES
