"""The ONNX runtime side of cifarkit: sessions, providers, batching, streaming prediction.

Imports neither TensorFlow nor (until a session is created) onnxruntime, so commands built
on it start fast.

    from cifarkit.runtime import Classifier, predict_files
    with Classifier(resolve_model("cnn-batchnorm:int8"), provider="cpu") as clf:
        probs = clf.predict_proba(images)          # uint8 [N, 32, 32, 3] → float32 [N, 10]
        for pred in predict_files(clf, ["photos/"]):
            print(pred.path, pred.label, pred.confidence)
"""

from cifarkit.runtime.classifier import CIFAR10_CLASSES, PREFERRED_BATCH, Classifier
from cifarkit.runtime.inputs import InputItem, count_inputs, iter_inputs
from cifarkit.runtime.models import exported_dir, list_exported, resolve_model
from cifarkit.runtime.predict import (
    DEFAULT_BATCH,
    Prediction,
    PredictStats,
    default_workers,
    folder_label,
    predict_files,
)
from cifarkit.runtime.providers import (
    INSTALL_HINTS,
    PROVIDERS,
    available_providers,
    physical_cores,
    provider_options,
    provider_problem,
)

__all__ = [
    "CIFAR10_CLASSES",
    "DEFAULT_BATCH",
    "INSTALL_HINTS",
    "PREFERRED_BATCH",
    "PROVIDERS",
    "Classifier",
    "InputItem",
    "PredictStats",
    "Prediction",
    "available_providers",
    "count_inputs",
    "default_workers",
    "exported_dir",
    "folder_label",
    "iter_inputs",
    "list_exported",
    "physical_cores",
    "predict_files",
    "provider_options",
    "provider_problem",
    "resolve_model",
]
