"""VGG16 transfer and fine-tuning: caffe preprocessing, weights files, feature caching, phases.

ImageNet weights cannot be downloaded here, so the pipeline runs with random initialisation
and with weights files the tests write in the layout Keras distributes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifarkit.errors import ModelError, UsageError
from cifarkit.models import create_model
from cifarkit.models.vgg import WEIGHTS_FILE
from cifarkit.train import train
from tests.conftest import write_folders

CONV = ("block1_conv1", "block2_conv2", "block3_conv3", "block4_conv3")
BLOCK5 = ("block5_conv1", "block5_conv2", "block5_conv3")


def write_keras_vgg16_h5(path, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """A VGG16 no-top weights file in Keras's distributed layout (legacy HDF5: one group per
    layer, ``layer_names``/``weight_names`` attributes); returns the weights written."""
    import h5py
    import keras

    keras.utils.set_random_seed(seed)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    written = {}
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode() for layer in base.layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.0.8"
        for layer in base.layers:
            group = f.create_group(layer.name)
            values = layer.get_weights()
            names = [f"{layer.name}_{k}_1:0".encode() for k in ("W", "b")][: len(values)]
            group.attrs["weight_names"] = np.array(names, dtype="S")
            for name, value in zip(names, values, strict=True):
                group.create_dataset(name, data=value)
            if values:
                written[layer.name] = values
    return written


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / WEIGHTS_FILE
    return path, write_keras_vgg16_h5(path)


@pytest.fixture
def tiny_data(tmp_path):
    # 40 training images (seed recipe: 30 train + 10 validation), 20 test images.
    return write_folders(tmp_path / "data", train_per_class=4, test_per_class=2)


def _base_weights(model, name):
    return model.get_layer("vgg16").get_layer(name).get_weights()


# --- preprocessing --------------------------------------------------------------------------


def test_known_pixel_maps_to_its_caffe_value_after_upsampling():
    import keras

    model = create_model("vgg16-transfer", weights=None, image_size=64)
    pre = keras.Model(model.input, model.get_layer("imagenet_mean").output)
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[...] = [255, 0, 10]  # raw RGB, as the exported graph receives it
    out = np.asarray(pre(image.astype(np.float32)))
    assert out.shape == (1, 64, 64, 3)
    # BGR, minus ImageNet's BGR means, at every upsampled position.
    np.testing.assert_allclose(out.reshape(-1, 3),
                               np.tile([10 - 103.939, 0 - 116.779, 255 - 123.68], (64 * 64, 1)),
                               rtol=1e-6)


# --- weights --------------------------------------------------------------------------------


def test_keras_distributed_h5_loads_by_path(weights_file):
    path, written = weights_file
    model = create_model("vgg16-transfer", weights=str(path))
    for name in (*CONV, *BLOCK5):
        for got, want in zip(_base_weights(model, name), written[name], strict=True):
            np.testing.assert_array_equal(got, want)


def test_imagenet_weights_come_from_the_keras_cache(weights_file, tmp_path, monkeypatch):
    path, written = weights_file
    home = tmp_path / "keras-home"
    (home / "models").mkdir(parents=True)
    (home / "models" / WEIGHTS_FILE).write_bytes(path.read_bytes())
    monkeypatch.setenv("KERAS_HOME", str(home))
    model = create_model("vgg16-transfer")  # weights="imagenet"; downloads are off in tests
    np.testing.assert_array_equal(_base_weights(model, "block5_conv3")[0],
                                  written["block5_conv3"][0])


def test_offline_imagenet_weights_error_says_where_to_put_the_file(monkeypatch, tmp_path):
    import os

    import keras

    cache = os.path.join(os.environ["KERAS_HOME"], "models")
    with pytest.raises(ModelError) as err:
        create_model("vgg16-transfer")
    message = str(err.value)
    assert "not in Keras's cache" in message and f"{WEIGHTS_FILE} in {cache}" in message
    assert "--weights PATH" in message
    # With downloads allowed but no network, the download's failure reads the same way.
    monkeypatch.delenv("CIFARKIT_NO_DOWNLOAD")

    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(ModelError, match=rf"could not download.*name resolution.*{WEIGHTS_FILE}"):
        create_model("vgg16-finetune")
    # And through `train`, before anything is written.
    data = write_folders(tmp_path / "data", train_per_class=1, test_per_class=1)
    with pytest.raises(ModelError, match="--weights PATH"):
        train("vgg16-transfer", data=data, out=tmp_path / "run", epochs=1)
    assert not (tmp_path / "run").exists()


# --- feature caching ------------------------------------------------------------------------


def test_feature_and_head_models_share_the_full_models_layers():
    from cifarkit.train.transfer import compute_features, split_at

    model = create_model("vgg16-transfer", weights=None)
    features, head = split_at(model)
    assert features.output_shape == (None, 1, 1, 512)
    x = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3)).astype(np.uint8)
    full = np.asarray(model.predict(x.astype(np.float32), verbose=0))
    f = compute_features(features, x, batch_size=3)  # 3 + 3 + 1
    np.testing.assert_allclose(np.asarray(head.predict(f, verbose=0)), full, atol=1e-6)
    mirrored = compute_features(features, x, batch_size=4, flip=True)
    np.testing.assert_allclose(
        mirrored, np.asarray(features.predict(x[:, :, ::-1].astype(np.float32), verbose=0)),
        rtol=1e-5, atol=1e-5)
    # Shared weights: changing the head changes the full model.
    fc1 = head.get_layer("fc1")
    kernel, bias = fc1.get_weights()
    fc1.set_weights([kernel, bias + 1.0])
    assert not np.allclose(np.asarray(model.predict(x.astype(np.float32), verbose=0)), full)


def test_cached_batches_flip_half_the_examples():
    from cifarkit.train.transfer import CachedFeatureBatches

    n = 1000
    plain = np.zeros((n, 1, 1, 1), np.float32)
    mirrored = np.ones((n, 1, 1, 1), np.float32)
    ds = CachedFeatureBatches(plain, mirrored, np.eye(n, dtype=np.float32), 128, seed=0)
    xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
    assert len(ds) == 8
    seen = np.argmax(np.concatenate(ys), axis=1)
    assert sorted(seen) == list(range(n))  # every example once per epoch, shuffled
    assert 0.4 < np.concatenate(xs).mean() < 0.6
    assert not plain.any()  # the cache itself is never modified


def test_transfer_computes_features_once_and_saves_the_end_to_end_model(
    tiny_data, tmp_path, monkeypatch
):
    import keras

    import cifarkit.train.transfer as transfer

    calls = []
    real = transfer.compute_features

    def spy(features, x, **kwargs):
        calls.append((len(x), kwargs.get("flip", False)))
        return real(features, x, **kwargs)

    monkeypatch.setattr(transfer, "compute_features", spy)
    events = []
    result = train("vgg16-transfer", "seed", data=tiny_data, weights="none", epochs=3,
                   out=tmp_path / "run", progress=lambda e, i: events.append((e, i)))
    # Train and validation features once each, for three epochs: no mirror set (no flips).
    assert calls == [(30, False), (10, False)]
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    cache = meta["feature_cache"]
    assert cache["used"] and cache["images"] == 40 and cache["shape"] == [1, 1, 512]
    assert cache["seconds"] > 0 and not cache["mirrored"]
    assert meta["phases"] == [{"name": "head", "epochs": 3, "on": "cached features",
                               "trainable_params": 267_786}]
    assert meta["image_size"] == 32 and meta["epochs"] == 3 and len(meta["epoch_seconds"]) == 3
    assert [e for e, _ in events].count("epoch_end") == 3
    assert [i["done"] for e, i in events if e == "features"][-1] == 40
    # model.keras is the whole model: raw RGB in, probabilities out, same test accuracy.
    model = keras.saving.load_model(tmp_path / "run" / "model.keras", safe_mode=True)
    assert model.input_shape == (None, 32, 32, 3) and model.count_params() == 14_982_474
    from cifarkit.data import load_dataset

    ds = load_dataset(tiny_data)
    probs = np.asarray(model.predict(ds.x_test.astype(np.float32), verbose=0))
    assert float(np.mean(probs.argmax(1) == ds.y_test)) == result.test_accuracy


def test_cached_head_phase_keeps_flips_and_notes_dropped_translations(tiny_data, tmp_path):
    # The default recipe flips and translates: flips come from a mirror-image feature set.
    result = train("vgg16-transfer", "default", data=tiny_data, weights="none", epochs=1,
                   batch_size=8, val_split=0.25, image_size=64, out=tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["feature_cache"]["images"] == 30 * 2 + 10 and meta["feature_cache"]["mirrored"]
    assert meta["feature_cache"]["shape"] == [2, 2, 512] and meta["image_size"] == 64
    assert any("±4 px translations not applied" in n for n in result.notes)
    assert meta["notes"] == result.notes


def test_no_feature_cache_trains_through_the_frozen_base(tiny_data, tmp_path, weights_file):
    path, written = weights_file
    train("vgg16-transfer", "seed", data=tiny_data, weights=str(path), epochs=1,
          feature_cache=False, out=tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["feature_cache"] == {"used": False} and meta["phases"][0]["on"] == "images"
    import keras

    model = keras.saving.load_model(tmp_path / "run" / "model.keras", safe_mode=True)
    np.testing.assert_array_equal(_base_weights(model, "block5_conv1")[0],
                                  written["block5_conv1"][0])  # frozen means frozen


# --- fine-tuning ----------------------------------------------------------------------------


def test_finetune_trains_the_head_then_block5_only_and_resumes_in_phase_2(
    tiny_data, tmp_path, weights_file
):
    """One run, interrupted as block5's phase starts, then resumed: the phases, what each
    trains, and that resuming does not redo phase 1 (one run checks both: each VGG16
    fine-tuning costs a VGG16 build and training)."""
    import keras

    path, written = weights_file
    out = tmp_path / "run"
    phases, seen = [], []

    def stop_in_block5_phase(event, info):
        seen.append(event)
        if event == "phase":
            phases.append(info)
        if event == "epoch_begin" and seen.count("phase") == 2:
            raise KeyboardInterrupt

    first = train("vgg16-finetune", "seed", data=tiny_data, weights=str(path), epochs=1,
                  finetune_epochs=2, finetune_lr=1e-3, out=out, progress=stop_in_block5_phase)
    assert first.interrupted and len(first.epoch_seconds) == 1
    assert [(p["phase"], p["name"], p["cached"]) for p in phases] == [
        (1, "head", True), (2, "block5", False)]
    events = []
    # The phase lengths (and the learning rate) are the interrupted run's unless given again.
    second = train("vgg16-finetune", "seed", data=tiny_data, weights=str(path), epochs=1,
                   out=out, resume=True, progress=lambda e, i: events.append(e))
    assert not second.interrupted and len(second.epoch_seconds) == 3
    assert "features" not in events and events.count("epoch_end") == 2

    meta = json.loads((out / "run.json").read_text())
    assert meta["feature_cache"]["used"]
    head, block5 = meta["phases"]
    assert (head["name"], block5["name"]) == ("head", "block5")
    assert head["trainable_params"] == 267_786 and head["on"] == "cached features"
    assert block5["trainable_params"] == 267_786 + 3 * 2_359_808
    assert block5["trainable_layers"] == list(BLOCK5) and block5["lr"] == 1e-3
    assert meta["finetune"]["schedule"] == "cosine" and meta["finetune"]["nesterov"]
    assert meta["epochs"] == 3 and len(meta["epoch_seconds"]) == 3

    model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    trainable = {w.path.split("/")[-2] for w in model.trainable_weights}
    assert trainable == {*BLOCK5, "fc1", "predictions"}
    for name in CONV:  # blocks 1–4: exactly the file's weights
        for got, want in zip(_base_weights(model, name), written[name], strict=True):
            np.testing.assert_array_equal(got, want)
    for name in BLOCK5:  # block5: moved, and only a little (low learning rate)
        kernel = _base_weights(model, name)[0]
        assert not np.array_equal(kernel, written[name][0]), name
        np.testing.assert_allclose(kernel, written[name][0], atol=1e-2)


def test_vgg_options_are_checked(tiny_data, tmp_path):
    with pytest.raises(UsageError, match="--image-size must be between 16 and 512"):
        train("cnn", data=tiny_data, out=tmp_path / "a", image_size=600)
    with pytest.raises(UsageError, match=r"--image-size must be in \[32, 224\]"):
        train("vgg16-transfer", data=tiny_data, out=tmp_path / "b", image_size=16)
    with pytest.raises(UsageError, match="--finetune-epochs: only for vgg16-finetune"):
        train("vgg16-transfer", data=tiny_data, out=tmp_path / "c", finetune_epochs=2)
    with pytest.raises(UsageError, match="--finetune-lr must be positive"):
        train("vgg16-finetune", data=tiny_data, out=tmp_path / "d", finetune_lr=0.0)


def test_cli_offline_weights_and_option_errors(tmp_path):
    from tests.test_cli_foundation import run_cli

    data = write_folders(tmp_path / "data", train_per_class=1, test_per_class=1)
    res = run_cli("train", "vgg16-finetune", "--data", str(data), "--out", str(tmp_path / "r"))
    assert res.returncode == 4 and "Traceback" not in res.stderr
    assert "not in Keras's cache" in res.stderr and WEIGHTS_FILE in res.stderr
    # (--image-size's range, a UsageError like any other on the CLI: test_vgg_options_are_checked)
