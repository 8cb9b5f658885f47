"""The prediction row: one ``Prediction`` per input, and every encoding of it, in one place.

Columns, the same in every format and both engines (CSV header, JSONL keys, Parquet/Arrow
fields), in this order:

    path        the input as named (a file path or a URI), always valid UTF-8: the bytes of a
                name that are not UTF-8 are written ``\\xNN`` (backslash, x, two hex digits)
    label       the top class; empty when the input failed
    index       its output column (int32)
    confidence  its probability (float32)
    top_k       the k best classes, best first (CSV: ``label:p;label:p``; JSONL/Parquet: a list
                of ``{label, confidence}``)
    error       why the input has no prediction; empty when it has one
    reason      the error's category (``ImageError.reason``: ``unreadable``, ``not-an-image``,
                ``corrupt``, ``unsupported``, ``missing-codec``, ``too-large``; ``no-match`` for
                a glob that matches nothing, ``decoder-crash`` for a decoder that died or raised
                on the file); empty when the input has a prediction (JSONL leaves it out)
    warnings    what the file caused while it decoded (Pillow's warnings, libtiff's, how deep
                pixel values were scaled): CSV one cell joined by ``; ``, JSONL/Parquet a list
                of strings (JSONL leaves the key out when there are none); the table shows a
                ``⚠`` and the summary counts them
    backend     the backend that ran the model (``onnxruntime``, ``openvino``, …); empty on error
    provider    where it ran: onnxruntime's execution provider (``cpu``, ``cuda``, …), ``cpu``
                for the other backends (they run on the CPU); empty on error
    path_bytes  the exact bytes of the name, base64 (RFC 4648), only when they are not valid
                UTF-8, i.e. only when ``path`` is not the name itself; empty otherwise (JSONL
                leaves the key out)
    score, rejected   with ``--reject`` (``engines.reject``): the "like my classes" score of
                the row (the top probability unless the model's rule names another) and
                whether it is under the threshold; a rejected row's ``label`` is ``unknown``,
                its ``index`` and ``confidence`` empty, its ``top_k`` kept. Empty on error
                rows (JSONL leaves them out there)
    true_label, correct   with ``labels_from_folders`` (JSONL: only on rows whose folder names
                a class); a rejected row is not ``correct``

So every output is valid UTF-8 that pandas, DuckDB and jq read, a non-UTF-8 name costs no
row, and ``base64.b64decode(path_bytes)`` gives back the name that ``path`` only shows.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cifarkit.engines.reject import UNKNOWN, Rejection
from cifarkit.errors import UsageError

PARQUET_EXTRA = 'pip install "cifarkit[parquet]" (or "cifarkit[ray]")'
BASE_COLUMNS = ("path", "label", "index", "confidence", "top_k", "error", "reason", "warnings",
                "backend", "provider", "path_bytes")
WARNING_SEP = "; "  # between a row's warnings in its CSV cell
# Reasons of the engines' own, beside the decoder's (``data.causes.REASONS``).
NO_MATCH = "no-match"  # a glob pattern that matches no file
DECODER_CRASH = "decoder-crash"  # the decoder died on the file, or raised something unforeseen
REJECT_COLUMNS = ("score", "rejected")
LABEL_COLUMNS = ("true_label", "correct")


def columns(labels: bool = False, reject: bool = False) -> tuple[str, ...]:
    """The row's columns, in order (``reject``: with ``score`` and ``rejected``; ``labels``:
    with ``true_label`` and ``correct``)."""
    return BASE_COLUMNS + (REJECT_COLUMNS if reject else ()) + (LABEL_COLUMNS if labels else ())


# --- names that are not UTF-8 --------------------------------------------------------------


def name_bytes(name: str) -> bytes:
    """The bytes of a name as the OS gave it (Python keeps undecodable bytes as lone
    surrogates, ``surrogateescape``)."""
    try:
        return os.fsencode(name)
    except UnicodeEncodeError:  # a lone surrogate that did not come from the OS (e.g. JSON)
        return name.encode("utf-8", "surrogatepass")


def safe_text(text: str) -> str:
    """``text`` as valid UTF-8 text: undecodable bytes written ``\\xNN``; valid text as is."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return name_bytes(text).decode("utf-8", "backslashreplace")


def encode_name(name: str) -> tuple[str, str | None]:
    """``(path, path_bytes)`` for a name: the safe text, and the base64 bytes when they
    differ from it (``None`` for every valid UTF-8 name)."""
    try:
        name.encode("utf-8")
        return name, None
    except UnicodeEncodeError:
        raw = name_bytes(name)
        return raw.decode("utf-8", "backslashreplace"), base64.b64encode(raw).decode("ascii")


def decode_name(path: str, path_bytes: str | bytes | None) -> str:
    """The name ``encode_name`` encoded, as the OS would give it (``os.fsdecode``)."""
    if not path_bytes:
        return path
    return os.fsdecode(base64.b64decode(path_bytes))


# --- the row --------------------------------------------------------------------------------


@dataclass
class Prediction:
    """The result for one input. ``error`` is set (and the prediction fields empty) when it
    failed. ``path`` is the name as the OS gave it (it may hold undecodable bytes as
    surrogates: the encodings below make it valid text)."""

    path: str
    index: int | None = None
    label: str | None = None
    confidence: float | None = None
    top_k: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    true_label: str | None = None
    backend: str | None = None
    provider: str | None = None
    reason: str | None = None  # the error's category (module docstring); None when ok
    warnings: list[str] = field(default_factory=list)
    score: float | None = None  # with --reject: the row's unknown score
    rejected: bool | None = None  # with --reject: score under the threshold (label "unknown")

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def correct(self) -> bool | None:
        if self.true_label is None or not self.ok:
            return None
        return self.label == self.true_label

    @property
    def display_path(self) -> str:
        """``path`` as valid text (undecodable bytes as ``\\xNN``): what messages show."""
        return safe_text(self.path)

    def as_dict(self) -> dict[str, Any]:
        """The JSONL record (see the module docstring)."""
        path, raw = encode_name(self.path)
        out: dict[str, Any] = {
            "path": path,
            "label": self.label,
            "index": self.index,
            "confidence": None if self.confidence is None else round(self.confidence, 6),
            "top_k": [{"label": lab, "confidence": round(p, 6)} for lab, p in self.top_k],
            "error": None if self.error is None else safe_text(self.error),
            "backend": self.backend,
            "provider": self.provider,
        }
        # Only where there is something to say, as path_bytes (pandas reads a missing key as
        # NaN): a clean prediction's line stays as short as it was.
        if self.reason is not None:
            out["reason"] = self.reason
        if self.warnings:
            out["warnings"] = [safe_text(w) for w in self.warnings]
        if raw is not None:
            out["path_bytes"] = raw
        if self.rejected is not None:
            out["score"] = None if self.score is None else round(self.score, 6)
            out["rejected"] = self.rejected
        if self.true_label is not None:
            out["true_label"] = self.true_label
            out["correct"] = self.correct
        return out

    def csv_row(self, labels: bool, reject: bool = False) -> list[Any]:
        """The CSV cells, in ``columns(labels, reject)`` order (empty cells for missing
        values)."""
        path, raw = encode_name(self.path)
        row: list[Any] = [
            path, self.label or "", "" if self.index is None else self.index,
            "" if self.confidence is None else f"{self.confidence:.6f}",
            ";".join(f"{label}:{p:.6f}" for label, p in self.top_k),
            "" if self.error is None else safe_text(self.error), self.reason or "",
            WARNING_SEP.join(safe_text(w) for w in self.warnings),
            self.backend or "", self.provider or "", raw or "",
        ]
        if reject:
            row += ["" if self.score is None else f"{self.score:.6f}",
                    "" if self.rejected is None else str(self.rejected).lower()]
        if labels:
            correct = self.correct
            row += [self.true_label or "", "" if correct is None else str(correct).lower()]
        return row

    def table_cells(self) -> dict[str, Any]:
        """What a table shows (text; the renderer styles and shortens it): path, label,
        confidence (a rejected row: its score), truth, top_k (text), error, ok, correct,
        warnings (their number), rejected."""
        shown = self.score if self.rejected else self.confidence
        return {
            "path": self.display_path,
            "label": self.label or "",
            "confidence": "" if shown is None else f"{shown:.3f}",
            "truth": self.true_label or "-",
            "top_k": " ".join(f"{label} {p:.2f}" for label, p in self.top_k),
            "error": "" if self.error is None else safe_text(self.error),
            "ok": self.ok,
            "correct": self.correct,
            "warnings": len(self.warnings),
            "rejected": bool(self.rejected),
        }


def folder_label(path: str, classes: Iterable[str]) -> str | None:
    """The class named by the image's folder (``…/cat/x.jpg`` → ``cat``), if it is one."""
    parent = os.path.basename(os.path.dirname(path))
    return parent if parent in classes else None


def reason(message: str, path: str) -> str:
    """The error without the ``path: `` prefix the decoder puts in front (the row has it)."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def top_k_indices(probs: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest per row, largest first (ties: lower index first)."""
    if k >= probs.shape[1]:
        return np.argsort(-probs, axis=1, kind="stable")
    part = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(probs, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def make_predictions(
    paths: list[str], errors: list[str | None], probs: np.ndarray | None,
    classes: tuple[str, ...], k: int, truths: list[str | None],
    backend: str | None = None, provider: str | None = None, *,
    reasons: list[str | None] | None = None, warnings: list[Sequence[str]] | None = None,
    rejection: Rejection | None = None, score_output: np.ndarray | None = None,
) -> Iterator[Prediction]:
    """The ``Prediction`` per path (both engines build rows here): ``errors[i]`` set → an error
    row (its category ``reasons[i]``); the good paths take the rows of
    ``probs`` in order, labelled with the ``backend`` and ``provider`` that computed them.
    ``warnings[i]``: what decoding path i caused, on its row either way. ``rejection``: rows
    under its threshold answer ``unknown`` (``engines.reject``), scored from ``probs`` or
    ``score_output`` (the model's ``score`` output for the same rows), as its rule says."""
    order = top_k_indices(probs, k) if probs is not None else None
    # float32, the model's precision: the value compared is the value every format stores.
    where = f"the model on {backend}" if backend else "the model"
    scores = (rejection.scores(probs, where, score_output).astype(np.float32)
              if rejection is not None and probs is not None else None)
    reasons = reasons or [None] * len(paths)
    warnings = warnings or [()] * len(paths)
    row = 0
    for path, error, truth, why, notes in zip(paths, errors, truths, reasons, warnings,
                                              strict=True):
        if error is not None:
            yield Prediction(path, error=reason(error, path), true_label=truth,
                             reason=why, warnings=list(notes))
            continue
        assert probs is not None and order is not None
        idx = order[row]
        p = probs[row]
        pred = Prediction(
            path=path, index=int(idx[0]), label=classes[int(idx[0])],
            confidence=float(p[idx[0]]), top_k=[(classes[int(j)], float(p[j])) for j in idx],
            true_label=truth, backend=backend, provider=provider, warnings=list(notes),
        )
        if scores is not None and rejection is not None:
            _judge(pred, float(scores[row]), rejection.threshold)
        yield pred
        row += 1


def _judge(pred: Prediction, score: float, threshold: float) -> None:
    """Score ``pred``; under the threshold it answers ``unknown`` (no class chosen)."""
    pred.score, pred.rejected = score, score < threshold
    if pred.rejected:
        pred.label, pred.index, pred.confidence = UNKNOWN, None, None


# --- Arrow (Ray's blocks, Parquet) ----------------------------------------------------------


def pyarrow() -> Any:
    try:
        import pyarrow as pa
    except ImportError:
        raise UsageError(f"parquet output needs pyarrow: {PARQUET_EXTRA}") from None
    return pa


def prediction_schema(labels: bool = False, reject: bool = False) -> Any:
    """The Arrow schema of prediction rows (``columns(labels, reject)``). Confidences and
    scores are float32, the model's own precision, so rows round-trip exactly."""
    pa = pyarrow()
    text = pa.string()
    fields = [
        pa.field("path", text), pa.field("label", text), pa.field("index", pa.int32()),
        pa.field("confidence", pa.float32()),
        pa.field("top_k", pa.list_(pa.struct([
            pa.field("label", text), pa.field("confidence", pa.float32()),
        ]))),
        pa.field("error", text), pa.field("reason", text), pa.field("warnings", pa.list_(text)),
        pa.field("backend", text), pa.field("provider", text),
        pa.field("path_bytes", text),
    ]
    if reject:
        fields += [pa.field("score", pa.float32()), pa.field("rejected", pa.bool_())]
    if labels:
        fields += [pa.field("true_label", text), pa.field("correct", pa.bool_())]
    return pa.schema(fields)


def predictions_to_table(preds: list[Prediction], labels: bool = False,
                         reject: bool = False) -> Any:
    """Prediction rows as a ``pyarrow.Table`` of ``prediction_schema(labels, reject)``."""
    pa = pyarrow()
    names = [encode_name(p.path) for p in preds]
    cols: dict[str, list[Any]] = {
        "path": [path for path, _ in names],
        "label": [p.label for p in preds],
        "index": [p.index for p in preds],
        "confidence": [p.confidence for p in preds],
        "top_k": [[{"label": lab, "confidence": c} for lab, c in p.top_k] for p in preds],
        "error": [None if p.error is None else safe_text(p.error) for p in preds],
        "reason": [p.reason for p in preds],
        "warnings": [[safe_text(w) for w in p.warnings] for p in preds],
        "backend": [p.backend for p in preds],
        "provider": [p.provider for p in preds],
        "path_bytes": [raw for _, raw in names],
    }
    if reject:
        cols["score"] = [p.score for p in preds]
        cols["rejected"] = [p.rejected for p in preds]
    if labels:
        cols["true_label"] = [p.true_label for p in preds]
        cols["correct"] = [p.correct for p in preds]
    return pa.table(cols, schema=prediction_schema(labels, reject))


def predictions_from_table(table: Any) -> Iterator[Prediction]:
    """The ``Prediction`` per row of an Arrow table (or record batch) of prediction rows."""
    names = set(table.schema.names)
    for row in table.to_pylist():
        yield Prediction(
            path=decode_name(row["path"], row.get("path_bytes")),
            index=row["index"], label=row["label"], confidence=row["confidence"],
            top_k=[(t["label"], t["confidence"]) for t in row["top_k"] or []],
            error=row["error"],
            true_label=row["true_label"] if "true_label" in names else None,
            backend=row.get("backend"), provider=row.get("provider"),
            reason=row.get("reason"), warnings=list(row.get("warnings") or []),
            score=row.get("score"), rejected=row.get("rejected"),
        )


__all__ = [
    "BASE_COLUMNS",
    "DECODER_CRASH",
    "LABEL_COLUMNS",
    "NO_MATCH",
    "REJECT_COLUMNS",
    "WARNING_SEP",
    "Prediction",
    "columns",
    "decode_name",
    "encode_name",
    "folder_label",
    "make_predictions",
    "name_bytes",
    "prediction_schema",
    "reason",
    "predictions_from_table",
    "predictions_to_table",
    "safe_text",
    "top_k_indices",
]
