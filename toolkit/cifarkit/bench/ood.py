"""``bench --ood DIR``: how well every model × precision × backend of the sweep tells images of
other subjects (every image file under DIR, recursively; sub-folder names are ignored, so a
labelled dataset works as it is) from the in-distribution split bench runs on.

The in-distribution scores are the sweep's own probabilities of the split (``AccuracyResult``),
the out-of-distribution ones come from the same file on the same backend. Per row: AUROC,
FPR at 95 % TPR (share of DIR's images accepted when 95 % of the split's are) and the share
rejected on each side at a threshold: the model's recorded ``unknown`` rule when it has one
(``threshold_source`` "model"), else the threshold that accepts 95 % of the split's images
(``"split"``: then ``rejected_in`` is 5 % by construction, and the threshold was set on the
very images it is judged on — say so where it is reported). The score is the rule's (the
top probability without one): ``measure.ood.unknown_scores`` decides. A rule on the model's
``score`` output takes the in-distribution scores from the same accuracy pass
(``AccuracyResult.scores``) and DIR's from ``predict_scored``; a model whose rule needs that
output and has none is refused before the sweep (``check_rules``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.bench.config import AccuracyResult, Backend, BenchResult, ModelFile, Progress
from cifarkit.errors import CifarkitError, DataError, UsageError
from cifarkit.measure.ood import ACCEPTANCE, OODReport

SPLIT, MODEL = "split", "model"  # where a row's threshold came from


@dataclass
class OODImages:
    """DIR's images at the models' size, and the files that could not be decoded."""

    source: str
    images: np.ndarray
    skipped: list[str]


@dataclass
class OODRow:
    model: str
    precision: str
    provider: str
    runtime: str
    score: str  # "msp" (top probability) or the rule's score
    threshold_source: str  # MODEL or SPLIT
    report: OODReport

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "precision": self.precision, "provider": self.provider,
                "runtime": self.runtime, "score": self.score,
                "threshold_source": self.threshold_source, **self.report.to_dict()}


def image_files(folder: str | os.PathLike[str]) -> list[str]:
    """Every image file under ``folder`` (any depth, sorted; hidden names skipped)."""
    from cifarkit.data.formats import is_image_path

    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(top, f) for f in sorted(files)
                  if not f.startswith(".") and is_image_path(f)]
    return found


def load_ood(folder: str | os.PathLike[str], size: int,
             progress: Progress | None = None) -> OODImages:
    """DIR's images decoded to ``size``×``size`` by the one decoder; a file that fails is left
    out and listed (``DataError`` when none is left)."""
    from cifarkit.data.folders import decode_images

    if not Path(folder).is_dir():
        raise UsageError(f"--ood {folder}: not a folder (give a folder of images of subjects "
                         "that are none of the model's classes)")
    paths = image_files(folder)
    if not paths:
        raise DataError(f"--ood {folder}: no image files in it or its sub-folders")
    images, errors = decode_images(paths, size, progress=progress)
    bad = {i for i, _ in errors}
    if len(bad) == len(paths):
        raise DataError(f"--ood {folder}: none of its {len(paths)} image files could be "
                        f"decoded (first: {errors[0][1]})")
    keep = [i for i in range(len(paths)) if i not in bad]
    return OODImages(os.fspath(folder), images[keep], [why for _, why in errors])


def _model_file(result: BenchResult, acc: AccuracyResult) -> ModelFile:
    return next(m for m in result.models if (m.name, m.precision) == (acc.model, acc.precision))


def check_rules(models: list[ModelFile]) -> None:
    """``ModelError`` (before the sweep) for a model whose ``unknown`` rule scores with a
    ``score`` output the file does not have."""
    from cifarkit.contract import SCORE_OUTPUT, read_onnx
    from cifarkit.measure.ood import missing_score

    for mf in models:
        info = read_onnx(mf.path, uint8_only=False)
        if info.unknown is not None and info.unknown.score == SCORE_OUTPUT and \
                not info.has_score:
            raise missing_score(f"--ood: {mf.path}", None)


def _score_row(result: BenchResult, acc: AccuracyResult, ood: np.ndarray) -> OODRow:
    from cifarkit.backends import REFERENCE, open_backend
    from cifarkit.contract import read_onnx
    from cifarkit.measure.ood import evaluate, threshold_for, unknown_scores

    mf = _model_file(result, acc)
    rule = read_onnx(mf.path, uint8_only=False).unknown
    backend = Backend(acc.runtime, acc.provider if acc.runtime == REFERENCE else None)
    with open_backend(backend.name, mf.path, threads=result.config.threads) as model:
        probs_out, score_out = model.predict_scored(ood)
    score = rule.score if rule is not None else "msp"
    where = f"{mf.path} on {backend.where}"
    s_in = unknown_scores(acc.probs, score, where, acc.scores)
    s_out = unknown_scores(probs_out, score, where, score_out)
    threshold = rule.threshold if rule is not None else threshold_for(s_in, ACCEPTANCE)
    return OODRow(acc.model, acc.precision, acc.provider, acc.runtime, score,
                  MODEL if rule is not None else SPLIT, evaluate(s_in, s_out, threshold))


def run_ood(result: BenchResult, ood: OODImages,
            progress: Progress | None = None) -> list[OODRow]:
    """One ``OODRow`` per accuracy row of the sweep (model file × backend it ran on). As in
    the sweep, a runtime other than onnxruntime that fails is noted and the rest goes on."""
    from cifarkit.backends import REFERENCE

    rows = []
    for done, acc in enumerate(result.accuracy, start=1):
        try:
            rows.append(_score_row(result, acc, ood.images))
        except CifarkitError as exc:
            if acc.runtime == REFERENCE:
                raise
            result.notes.append(f"--ood: {acc.model}:{acc.precision} on {acc.runtime}: {exc}")
        if progress is not None:
            progress(done, len(result.accuracy), f"unknown images: {acc.model}:{acc.precision}")
    return rows
