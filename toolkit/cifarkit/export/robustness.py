"""``export --corruptions N``: the card's table of accuracy under the CIFAR-10-C corruptions.

Every exported ONNX file (the final one: calibrated where calibration ran, which leaves top-1
as it is) runs in onnxruntime on the CPU through ``cifarkit.backends``, on N stratified test
images corrupted from a fixed seed (``cifarkit.measure.robustness``), so two exports of the
same model give the same table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.export.data import subset
from cifarkit.export.metadata import dist_version
from cifarkit.measure.robustness import corruption_table

#: The distribution whose kernels make the corrupted images (``cifarkit.data.corruptions``).
LIBRARY = "imagecorruptions-imaug"


def robustness_card(files: Mapping[str, Path], name: str, x: np.ndarray, y: np.ndarray,
                    n_images: int, seed: int,
                    progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """The card's ``robustness`` entry for ``files`` (precision → ONNX file) on a stratified
    subset of ``n_images`` of ``x``/``y`` drawn with ``seed`` (the corruptions' seed too)."""
    from cifarkit.backends import Classifier
    from cifarkit.data.corruptions import CORRUPTIONS, SEVERITIES, preset_for

    idx = subset(y, n_images, seed)
    classifiers: dict[str, Classifier] = {}
    try:
        for p, path in files.items():
            classifiers[p] = Classifier(path, "cpu")
        models = {p: (name, p, clf.predict) for p, clf in classifiers.items()}
        rows = corruption_table(models, x[idx], y[idx], seed, progress)
    finally:
        for clf in classifiers.values():
            clf.close()
    return {"n_images": int(len(idx)), "seed": seed,
            "library": f"{LIBRARY} {dist_version(LIBRARY)}",
            "preset": preset_for(int(x.shape[1])), "severities": list(SEVERITIES),
            "corruptions": list(CORRUPTIONS),
            "precisions": {p: row.to_dict() for p, row in rows.items()}}
