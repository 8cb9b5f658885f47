"""``bench --corruptions N``: accuracy under the CIFAR-10-C corruptions of every model ×
precision, on N stratified images of the split (``cifarkit.measure.robustness``). Models run
in onnxruntime on the CPU: robustness belongs to the weights, and the backends agree on clean
images (the runtime matrix).
"""

from __future__ import annotations

from cifarkit.bench.config import BenchResult, Progress
from cifarkit.measure.robustness import CorruptionRow, corruption_table

__all__ = ["CorruptionRow", "run_corruptions"]


def run_corruptions(result: BenchResult, n_images: int, seed: int,
                    progress: Progress | None = None) -> list[CorruptionRow]:
    """The corruption table of every model file in ``result``."""
    from cifarkit.backends import Classifier
    from cifarkit.data.splits import stratified_subset

    idx = stratified_subset(result.labels, n_images, seed)
    classifiers = {mf.label: Classifier(mf.path, "cpu") for mf in result.models}
    try:
        models = {mf.label: (mf.name, mf.precision, classifiers[mf.label].predict)
                  for mf in result.models}
        rows = corruption_table(models, result.images[idx], result.labels[idx], seed, progress)
    finally:
        for clf in classifiers.values():
            clf.close()
    return list(rows.values())
