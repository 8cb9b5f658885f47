"""cifarkit.train.init: --init from shipped ONNX files, .keras files and run folders."""

from __future__ import annotations

import numpy as np
import pytest

from cifarkit.backends import Classifier
from cifarkit.errors import ModelError
from cifarkit.measure.calibration import apply_temperature
from cifarkit.models import create_model
from cifarkit.train.init import load_init, resolve_init


@pytest.mark.parametrize("name", ["fastnet-relu", "fastnet"])
def test_weights_rebuilt_from_the_shipped_onnx_give_its_probabilities(name):
    model = create_model(name, num_classes=10, tta=1)
    report = load_init(model, name, keep_head=True)
    assert report.kind == "onnx" and report.architecture == name and not report.skipped
    x = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    keras_probs = np.asarray(model(x.astype("float32"), training=False))
    with Classifier(resolve_init(name)[0]) as clf:
        onnx_probs, t = clf.predict_proba(x), clf.info.temperature
    # The file's folded temperature is export's, not a weight: Keras gives the logits' softmax.
    assert t is not None and 0.3 < t < 1  # the shipped fastnets are calibrated (sharpened)
    assert np.abs(apply_temperature(keras_probs, t) - onnx_probs).max() < 1e-5


def test_new_classes_and_size_keep_the_features_and_rebuild_the_head(tmp_path):
    model = create_model("fastnet-relu", num_classes=3, input_size=48)
    report = load_init(model, "fastnet-relu")
    assert report.skipped == {"head": "head: rebuilt for the new classes"}
    assert "whiten" in report.loaded and "block3_conv2" in report.loaded
    # A .keras file and its run folder work the same way, for any architecture.
    src = create_model("cnn-batchnorm", num_classes=10)
    (tmp_path / "run").mkdir()
    src.save(tmp_path / "run" / "model.keras")
    other = create_model("cnn-batchnorm", num_classes=4, input_size=40)
    report = load_init(other, tmp_path / "run")
    assert report.kind == "keras" and "conv1_1" in report.loaded
    assert report.skipped["predictions"].startswith("head")
    assert report.skipped["fc1"].startswith("shapes differ")  # Flatten → Dense: size-bound
    np.testing.assert_array_equal(other.get_layer("conv2_2").get_weights()[0],
                                  src.get_layer("conv2_2").get_weights()[0])


def test_bad_sources_say_what_is_accepted(tmp_path):
    with pytest.raises(ModelError, match="not a run folder"):
        resolve_init(tmp_path / "nothing")
    with pytest.raises(ModelError, match="no layer of dense matches"):
        load_init(create_model("dense", num_classes=3), "fastnet-relu")
