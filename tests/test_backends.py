"""Keras-only models and training loop: a run trained on JAX loads and agrees under TensorFlow."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cifarkit.data import load_dataset
from tests.conftest import write_folders

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                reason="jax not installed (pip install -e '.[jax]')")


# fastnet-s only (its custom layers are the harder round trip); cnn-batchnorm's took 33 s of
# a suite at its 15-minute limit.
@pytest.mark.parametrize("arch", ["fastnet-s"])
def test_train_on_jax_then_load_under_tensorflow(arch, tmp_path):
    data = write_folders(tmp_path / "data", train_per_class=8, test_per_class=4)
    env = {**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "cifarkit", "train", arch, "--epochs", "2", "--batch-size", "16",
         "--data", str(data), "--out", str(tmp_path / "run")],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["device"].startswith("jax: ") and meta["versions"]["backend"] == "jax"

    # The JAX run's own probabilities for the test images, from a second JAX process …
    script = (
        "import sys, numpy as np, keras, cifarkit.models.layers\n"
        "from cifarkit.data import load_dataset\n"
        "m = keras.saving.load_model(sys.argv[1], compile=False)\n"
        "x = load_dataset(sys.argv[2]).x_test.astype(np.float32)\n"
        "np.save(sys.argv[3], keras.ops.convert_to_numpy(m.predict(x, verbose=0)))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run" / "model.keras"),
                           str(data), str(tmp_path / "jax.npy")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]

    # … and this process's, under TensorFlow: the .keras file is backend-neutral.
    import keras

    import cifarkit.models.layers  # noqa: F401  (registers the custom layers)

    assert keras.backend.backend() == "tensorflow"
    model = keras.saving.load_model(tmp_path / "run" / "model.keras", compile=False)
    ds = load_dataset(data)
    probs = model.predict(ds.x_test.astype(np.float32), verbose=0)
    np.testing.assert_allclose(probs, np.load(tmp_path / "jax.npy"), atol=1e-4)
    agree = int((probs.argmax(1) == ds.y_test).sum())
    assert abs(agree - round(meta["test_accuracy"] * len(ds.y_test))) <= 1


def test_fastnet_layers_and_optimizer_hold_on_jax():
    """BiasScaledSGD's 64× BatchNorm offsets and the level-2 TTA layers, checked by the same
    tests run in a JAX process (stateless optimizer updates, jax.numpy padding)."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": ""}
    tests = ["test_bias_scaled_sgd_speeds_up_batchnorm_offsets_only",
             "test_tta_views_match_airbench_level_2_by_hand"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fastnet.py",
         "-k", " or ".join(tests)],
        env=env, capture_output=True, text=True, timeout=600,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "3 passed" in proc.stdout  # the bias-scaler test runs with two momenta
