"""BatchNorm recalibration: statistics of clean inputs, dropout off, layer by layer."""

from __future__ import annotations

import json

import keras
import numpy as np

from cifarkit.data import load_dataset
from cifarkit.data.splits import stratified_split
from cifarkit.train import RECIPES, train
from cifarkit.train.recalibrate import recalibrate_batchnorm
from tests.conftest import write_folders


def _bn_input_stats(model, layer_name, x):
    layer = model.get_layer(layer_name)
    a = keras.ops.convert_to_numpy(
        keras.Model(model.inputs[0], layer.input)(x.astype(np.float32), training=False))
    axes = tuple(range(a.ndim - 1))
    return a.astype(np.float64).mean(axes), a.astype(np.float64).var(axes)


def test_recalibration_matches_inference_statistics_layer_by_layer():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, name="c1"),
        keras.layers.BatchNormalization(name="bn1"),
        keras.layers.Dropout(0.5, name="drop"),
        keras.layers.Conv2D(5, 3, name="c2"),
        keras.layers.BatchNormalization(name="bn2"),
    ])
    x = np.random.default_rng(0).uniform(0, 255, (1203, 8, 8, 3))  # not a multiple of 500
    assert recalibrate_batchnorm(model, x) == ["bn1", "bn2"]
    for name in ("bn1", "bn2"):  # bn2's input depends on bn1's new statistics
        mean, var = _bn_input_stats(model, name, x)
        layer = model.get_layer(name)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean), mean,
                                   rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance), var,
                                   rtol=1e-4, atol=1e-3)
    # In inference mode, BN's output is now standardised over x (up to gamma/beta = 1/0).
    out = keras.ops.convert_to_numpy(model(x.astype(np.float32), training=False))
    np.testing.assert_allclose(out.mean((0, 1, 2)), 0, atol=1e-3)
    np.testing.assert_allclose(out.std((0, 1, 2)), 1, atol=1e-2)


def test_default_recipe_saves_recalibrated_statistics(tmp_path):
    assert RECIPES["default"].bn_recalibration == 5000 and not RECIPES["seed"].bn_recalibration
    data = write_folders(tmp_path / "data", train_per_class=12, test_per_class=3)
    train("cnn-batchnorm", "default", data=data, epochs=2, batch_size=16,
          out=tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["hyperparameters"]["bn_recalibration"] == 5000
    model = keras.saving.load_model(tmp_path / "run" / "model.keras", compile=False)
    # The saved (best-epoch) statistics are those of the whole (small) training split.
    ds = load_dataset(data)
    keep, _ = stratified_split(ds.y_train, RECIPES["default"].val_split, seed=0)
    for name in ("block1_bn", "block2_bn", "fc1_bn"):
        mean, var = _bn_input_stats(model, name, ds.x_train[keep])
        layer = model.get_layer(name)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean), mean,
                                   rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance), var,
                                   rtol=1e-3, atol=1e-3)
