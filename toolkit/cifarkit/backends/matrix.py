"""The "runs in" matrix of one model file: every runtime's top-1, agreement with onnxruntime
and batch-1 latency, on the images given (for the model card); for a model with a ``score``
output, also how far each runtime's score is from onnxruntime's (``score_agreement``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.errors import CifarkitError, ProviderError


@dataclass
class RunsIn:
    runtime: str
    version: str | None
    status: str  # "ok" | "unavailable" (not installed) | "failed" (cannot run the file)
    reason: str | None = None
    file: str | None = None  # the file the runtime ran (a .tflite for litert)
    threads: int | None = None
    n_images: int | None = None
    top1: float | None = None
    agreement: float | None = None  # top-1 agreement with onnxruntime, 0–1
    max_abs_diff: float | None = None  # max |Δp| against onnxruntime
    p50_ms_batch1: float | None = None
    # The model's score output (None without one): max |Δscore| against onnxruntime, and
    # whether every image is within SCORE_RTOL of its scale (``score_agreement``).
    score_max_abs_diff: float | None = None
    score_agrees: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def agreement(probs: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(top-1 agreement 0–1, max |Δp|) of two probability arrays of the same images."""
    agree = float(np.mean(probs.argmax(1) == reference.argmax(1)))
    diff = float(np.max(np.abs(probs.astype(np.float64) - reference))) if len(probs) else 0.0
    return agree, diff


#: Scores are not probabilities: two runtimes agree on an image when |Δscore| <= SCORE_RTOL ·
#: (1 + |onnxruntime's score|). 1 %: export's block score is a sum of standardised parts
#: (held-out deviation ≈ 1.4), and its whitening magnifies float32 rounding: fp32 files
#: differed by 1–3e-3 between runtimes (fastnet-relu), int8 files by 0.04–0.11 (each
#: runtime's own int8 arithmetic; their probabilities differ too).
SCORE_RTOL = 1e-2


def score_agreement(score: np.ndarray, reference: np.ndarray) -> tuple[float, bool]:
    """(max |Δscore|, every image within ``SCORE_RTOL`` of its scale) of two score outputs of
    the same images."""
    ref = np.asarray(reference, np.float64)
    diff = np.abs(np.asarray(score, np.float64) - ref)
    if not len(diff):
        return 0.0, True
    return float(diff.max()), bool(np.all(diff <= SCORE_RTOL * (1 + np.abs(ref))))


def matrix(
    path: str | os.PathLike[str],
    images: np.ndarray,
    labels: np.ndarray,
    runtimes: Sequence[str] | None = None,
    *,
    threads: int | None = None,
    warmup: int = 5,
    duration: float = 0.5,
) -> list[RunsIn]:
    """One ``RunsIn`` per runtime (default: all registered) for the model file ``path``.
    onnxruntime on the CPU is the reference (its row has agreement 1). A runtime that is not
    installed or cannot run the file gets a row with its reason instead of numbers."""
    from cifarkit.backends import REFERENCE, RUNTIMES, get_runtime
    from cifarkit.measure.latency import make_batch, measure

    path = Path(path)
    names = list(runtimes or RUNTIMES)
    ref_model = get_runtime(REFERENCE).open(path, threads=threads)
    with ref_model:
        reference, ref_score = ref_model.predict_scored(images)
    one = make_batch(images, 1)
    labels = np.asarray(labels)
    rows = []
    for name in names:
        rt = get_runtime(name)
        row = RunsIn(name, rt.version(), "ok")
        why = rt.problem()
        if why is not None:
            row.status, row.reason = "unavailable", why
            rows.append(row)
            continue
        try:
            model = rt.open(path, threads=threads)
        except ProviderError as exc:
            row.status, row.reason = "unavailable", str(exc)
        except CifarkitError as exc:
            row.status, row.reason = "failed", str(exc)
        else:
            with model:
                # onnxruntime's own row: the reference run already has its outputs
                probs, score = ((reference, ref_score) if name == REFERENCE
                                else model.predict_scored(images))
                stats = measure(lambda m=model: m.run_batch(one), batch_size=1, warmup=warmup,
                                duration=duration)
            row.file, row.threads, row.n_images = os.fspath(model.path), model.threads, len(probs)
            row.top1 = float(np.mean(probs.argmax(1) == labels))
            row.agreement, row.max_abs_diff = agreement(probs, reference)
            row.p50_ms_batch1 = stats.p50_ms
            if score is not None and ref_score is not None:
                row.score_max_abs_diff, row.score_agrees = score_agreement(score, ref_score)
        rows.append(row)
    return rows


def runs_in_markdown(rows: Sequence[RunsIn | dict[str, Any]]) -> list[str]:
    """The model card's "runs in" table (Markdown lines) from ``matrix`` rows or their
    dicts; a model with a score output gets its max |Δscore| beside |Δp|, marked where it
    is out of ``SCORE_RTOL``."""
    lines = ["| runtime | version | top-1 | agreement with onnxruntime (max \\|Δp\\|) | "
             "batch 1 p50 |", "|---|---|---:|---:|---:|"]
    for r in rows:
        d = r.to_dict() if isinstance(r, RunsIn) else dict(r)
        if d["status"] != "ok":
            why = (d.get("reason") or "").replace("|", "\\|")
            lines.append(f"| {d['runtime']} | {d.get('version') or '—'} | {d['status']}: {why} "
                         "| | |")
            continue
        score = ("" if d.get("score_max_abs_diff") is None
                 else f"; score {d['score_max_abs_diff']:.2g}"
                 + ("" if d.get("score_agrees") else " (differs)"))
        lines.append(
            f"| {d['runtime']} | {d.get('version') or '—'} | {100 * d['top1']:.2f} % | "
            f"{100 * d['agreement']:.2f} % ({d['max_abs_diff']:.2g}{score}) | "
            f"{d['p50_ms_batch1']:.3g} ms |"
        )
    return lines
