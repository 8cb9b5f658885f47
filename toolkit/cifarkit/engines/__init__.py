"""Predict engines: inputs (paths, globs, URIs) → one ``Prediction`` row per input.

    from cifarkit.backends import Classifier, resolve_model
    from cifarkit.engines import predict_files
    with Classifier(resolve_model("fastnet-relu:auto")) as clf:
        for pred in predict_files(clf, ["photos/"]):
            print(pred.path, pred.label, pred.confidence)

``local`` (decoder processes + one ``Classifier``) and ``ray`` (Ray Data) share the input
rules (``inputs``), the row schema and the writers.
"""

from cifarkit.engines.inputs import InputItem, count_inputs, iter_inputs
from cifarkit.engines.local import (
    DEFAULT_BATCH,
    Prediction,
    PredictStats,
    default_workers,
    folder_label,
    predict_files,
)

__all__ = [
    "DEFAULT_BATCH",
    "InputItem",
    "PredictStats",
    "Prediction",
    "count_inputs",
    "default_workers",
    "folder_label",
    "iter_inputs",
    "predict_files",
]
