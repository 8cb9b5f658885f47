"""Parity: the same images through the reference (the Keras model, or the source ONNX file)
and an exported file; max |Δprob| and top-1 agreement (``cifarkit.backends.agreement``, as
every "runs in" row), and the fp32 gate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cifarkit.backends.matrix import agreement
from cifarkit.errors import ExportError

#: The fp32 gate (issue 3): an export that misses either is refused.
FP32_MAX_ABS_DIFF = 1e-4
FP32_MIN_AGREEMENT = 1.0
#: The number of test images compared by default (fewer if the data has fewer).
DEFAULT_PARITY_IMAGES = 1000


@dataclass(frozen=True)
class ParityReport:
    images: int
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    #: True when the images were random pixels (no CIFAR-10 data was available).
    synthetic: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        what = "synthetic images" if self.synthetic else "test images"
        return (f"max |Δprob| {self.max_abs_diff:.2e}, top-1 agreement "
                f"{self.top1_agreement:.2%} on {self.images} {what}")


def predict_keras(model: Any, x: np.ndarray, batch_size: int = 250,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Probabilities from the Keras model in inference mode (raw 0–255 float32 input)."""
    out = []
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size].astype(np.float32)
        out.append(np.asarray(model(batch, training=False), dtype=np.float32))
        if progress:
            progress(min(start + batch_size, len(x)), len(x))
    if out:
        return np.concatenate(out)
    return np.zeros((0, int(model.outputs[0].shape[-1])), np.float32)


def compare(reference: np.ndarray, candidate: np.ndarray, synthetic: bool) -> ParityReport:
    if reference.shape != candidate.shape:
        raise ExportError(
            f"parity: Keras gave {reference.shape}, ONNX gave {candidate.shape}"
        )
    agree, max_diff = agreement(candidate, reference)
    mean_diff = np.abs(reference.astype(np.float64) - candidate).mean() if len(reference) else 0
    return ParityReport(
        images=int(len(reference)),
        max_abs_diff=max_diff,
        mean_abs_diff=float(mean_diff),
        top1_agreement=agree,
        synthetic=synthetic,
    )


def require_fp32_parity(report: ParityReport, where: str = "model.fp32.onnx",
                        reference: str = "the Keras model") -> None:
    """Raise ``ExportError`` with the numbers unless fp32 parity meets the gate."""
    if report.max_abs_diff <= FP32_MAX_ABS_DIFF and report.top1_agreement >= FP32_MIN_AGREEMENT:
        return
    raise ExportError(
        f"{where} does not match {reference}: {report.summary()} (needs max |Δprob| ≤ "
        f"{FP32_MAX_ABS_DIFF:g} and 100% agreement). Nothing was written"
    )
