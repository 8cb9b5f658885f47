"""``bench --corruptions N``: accuracy under the CIFAR-10-C corruptions (noise, blur, weather,
digital; severities 1–5) of every model × precision, on N stratified images of the split.

The corrupted images are made once per (corruption, severity) from a fixed seed
(``cifarkit.data.corruptions``), so every model sees the same pixels and two runs give the
same table. Models run in onnxruntime on the CPU: robustness belongs to the weights, and the
backends agree on clean images (the runtime matrix).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cifarkit.bench.config import BenchResult, Progress


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


def run_corruptions(result: BenchResult, n_images: int, seed: int,
                    progress: Progress | None = None) -> list[CorruptionRow]:
    """The corruption table of every model file in ``result``."""
    from cifarkit.backends import Classifier
    from cifarkit.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt
    from cifarkit.data.splits import stratified_subset

    idx = stratified_subset(result.labels, n_images, seed)
    x, y = result.images[idx], result.labels[idx]
    classifiers = {mf.label: Classifier(mf.path, "cpu") for mf in result.models}
    rows = {mf.label: CorruptionRow(mf.name, mf.precision, 0.0) for mf in result.models}
    try:
        for label, clf in classifiers.items():
            rows[label].clean = float(np.mean(clf.predict(x) == y))
        total, done = len(CORRUPTIONS) * len(SEVERITIES), 0
        for name in CORRUPTIONS:
            for severity in SEVERITIES:
                xc = corrupt(x, name, severity, seed)
                for label, clf in classifiers.items():
                    acc = float(np.mean(clf.predict(xc) == y))
                    rows[label].accuracy.setdefault(name, []).append(acc)
                done += 1
                if progress:
                    progress(done, total, f"corruptions: {name} {severity}")
    finally:
        for clf in classifiers.values():
            clf.close()
    return list(rows.values())
