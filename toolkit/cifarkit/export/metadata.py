"""The ONNX ``metadata_props`` that make a bare ``.onnx`` file self-describing.

Keys (all values are strings; JSON where noted). ``cifarkit.contract`` reads ``class_names``,
``image_size``, ``preprocess`` and ``input_description``:

- ``class_names``        JSON list of the class names, index = output column
- ``image_size``         S of the input ``[batch, S, S, 3]``
- ``preprocess``         how an image file becomes S×S (``cifarkit.contract.DEFAULT_PREPROCESS``
                         unless the source said otherwise)
- ``architecture``       registry name (``cnn-batchnorm``) or the Keras model's name
- ``precision``          ``fp32`` | ``fp16`` | ``int8``
- ``input_description``  / ``output_description``: the contract in words
- ``accuracy``           top-1 on ``accuracy_images`` test images of ``accuracy_data``
                         (absent when no real data was available)
- ``source_file``, ``source_sha256``: the ``.keras`` the file was made from
- ``versions``           JSON: tensorflow, keras, tf2onnx, onnx, onnxruntime, … versions
- ``exported_at``        UTC time, ISO 8601
- ``opset``, ``cifarkit_version``
- ``training``           JSON: what ``run.json`` says (command, recipe, epochs, seed, data,
                         training time, …), when known
- ``parity``             JSON: max |Δprob| and top-1 agreement vs the Keras model
- ``parity_reference``   what parity compared against (the Keras model, or the source file)
- ``portability``        JSON (fp32 only): the portability rewrites and the simplifier used
- ``derived_from``       JSON, re-exports of an ONNX file only: that file, its SHA-256, and
                         the ``.keras`` it came from
- ``quantization``       JSON (int8 only): format, types, calibration
- ``calibration``        JSON: ``temperature`` folded before the Softmax (fitted on this
                         precision's own logits), ``fitted_on``, ``images``, ``folded`` (how),
                         ``held_out`` and ``test`` (ECE/NLL/Brier ``_before``/``_after``;
                         ``test`` also the share its unknown threshold accepts)
- ``unknown``            JSON: ``score`` (``msp`` or ``score``, see ``cifarkit.contract``),
                         ``threshold``, ``acceptance``, ``fitted_on``

Reading needs only ``onnx`` (no TensorFlow).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any


def input_description(image_size: int = 32) -> str:
    return (f"images: uint8 [batch, {image_size}, {image_size}, 3], RGB, raw pixels 0-255, "
            "channels last; all preprocessing (scaling, mean subtraction, channel order) is "
            "inside the graph")


def output_description(n_classes: int = 10) -> str:
    return (f"probabilities: float32 [batch, {n_classes}], softmax over class_names (rows sum "
            "to 1)")


#: Keys whose values are JSON documents (decoded by :func:`read_metadata`).
JSON_KEYS = frozenset({"class_names", "versions", "training", "parity", "quantization",
                       "portability", "derived_from", "calibration", "unknown"})
#: run.json keys copied into the ``training`` entry: enough to rerun the training
#: (``command``, ``seed``, ``hyperparameters``) and to know what data and time it took.
TRAINING_KEYS = ("arch", "recipe", "command", "epochs", "seed", "data_source", "data",
                 "weights", "mixed_precision", "params", "test_accuracy", "test_loss",
                 "val_split", "val_accuracy", "best_epoch", "hyperparameters", "device",
                 "train_seconds", "finished_utc", "versions")


def tool_versions() -> dict[str, str]:
    """Versions of the libraries that shaped the export (those importable)."""
    import importlib
    import platform

    from cifarkit import __version__

    versions = {"cifarkit": __version__, "python": platform.python_version()}
    for module in ("numpy", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime",
                   "onnxconverter_common", "onnxslim"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        versions[module.replace("_", "-")] = str(getattr(mod, "__version__", "unknown"))
    return versions


def dist_version(dist: str) -> str:
    """The installed version of a distribution ("unknown" when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def training_summary(run_info: dict[str, Any]) -> dict[str, Any]:
    return {k: run_info[k] for k in TRAINING_KEYS if k in run_info}


def set_metadata(proto: Any, props: dict[str, Any]) -> None:
    """Replace ``proto.metadata_props`` with ``props`` (non-strings JSON-encoded, None dropped)."""
    del proto.metadata_props[:]
    for key, value in props.items():
        if value is None:
            continue
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def read_metadata(path: str | os.PathLike[str] | Any) -> dict[str, Any]:
    """``metadata_props`` of an ONNX file (or ModelProto), JSON values decoded."""
    if hasattr(path, "metadata_props"):
        proto = path
    else:
        import onnx

        proto = onnx.load(os.fspath(path), load_external_data=False)
    out: dict[str, Any] = {}
    for entry in proto.metadata_props:
        value: Any = entry.value
        if entry.key in JSON_KEYS:
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        elif entry.key == "accuracy":
            with contextlib.suppress(ValueError):
                value = float(value)
        out[entry.key] = value
    return out
