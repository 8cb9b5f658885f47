"""Accuracy under the CIFAR-10-C corruptions (noise, blur, weather, digital; severities 1–5).

The corrupted images are made once per (corruption, severity) from a fixed seed
(``cifarkit.data.corruptions``), so every model sees the same pixels and two runs give the
same table. Models come in as callables ``images -> top-1 labels``: this layer runs none
itself (``bench --corruptions`` and export's card pass onnxruntime classifiers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]
Progress = Callable[[int, int, str], None]


@dataclass
class CorruptionRow:
    model: str
    precision: str
    clean: float
    #: corruption → accuracy at severities 1..5
    accuracy: dict[str, list[float]] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(np.mean([a for row in self.accuracy.values() for a in row]))

    def to_dict(self) -> dict[str, Any]:
        by_severity = np.mean(list(self.accuracy.values()), axis=0).tolist()
        return {"model": self.model, "precision": self.precision, "clean": self.clean,
                "mean": self.mean, "drop": self.clean - self.mean,
                "mean_by_severity": by_severity, "accuracy": self.accuracy}


def corruption_table(models: Mapping[str, tuple[str, str, Predict]], images: np.ndarray,
                     labels: np.ndarray, seed: int,
                     progress: Progress | None = None) -> dict[str, CorruptionRow]:
    """``label → CorruptionRow`` for ``models`` (``label → (name, precision, predict)``) on
    ``images``/``labels`` (already the subset to use)."""
    from cifarkit.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt

    rows = {label: CorruptionRow(name, precision, float(np.mean(predict(images) == labels)))
            for label, (name, precision, predict) in models.items()}
    total, done = len(CORRUPTIONS) * len(SEVERITIES), 0
    for corruption in CORRUPTIONS:
        for severity in SEVERITIES:
            xc = corrupt(images, corruption, severity, seed)
            for label, (_, _, predict) in models.items():
                acc = float(np.mean(predict(xc) == labels))
                rows[label].accuracy.setdefault(corruption, []).append(acc)
            done += 1
            if progress:
                progress(done, total, f"corruptions: {corruption} {severity}")
    return rows
