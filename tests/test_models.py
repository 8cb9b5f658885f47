"""The model registry: the notebook's architectures, exactly, and the VGG16 plumbing."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cifarkit.errors import ModelError, UsageError
from cifarkit.models import create_model, get_model_info, list_models

# Parameter counts from the notebook's model summaries.
EXPECTED = {
    "dense": (9_050_378, 9_050_378),
    "cnn": (890_410, 890_410),
    "cnn-dropout": (890_410, 890_410),
    "cnn-batchnorm": (892_842, 891_626),
    "vgg16-transfer": (14_982_474, 267_786),
    "vgg16-finetune": (14_982_474, 267_786),
}


def _trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_parameter_counts_match_the_notebook(name):
    kwargs = {"weights": None} if get_model_info(name).pretrained else {}
    model = create_model(name, **kwargs)
    total, trainable = EXPECTED[name]
    assert model.count_params() == total
    assert _trainable(model) == trainable
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 10)
    # Readable layer names throughout: no Keras auto-names like "conv2d_3".
    auto = re.compile(r"^(conv2d|dense|dropout|max_pooling2d|batch_normalization)(_\d+)?$")
    assert not [layer.name for layer in model.layers if auto.match(layer.name)]


def test_registry_lists_and_suggests():
    assert set(EXPECTED) <= set(list_models())
    assert list_models("cnn*") == ["cnn", "cnn-dropout", "cnn-batchnorm"]
    with pytest.raises(UsageError, match="Did you mean 'cnn-batchnorm'"):
        create_model("cnn-batchnom")
    with pytest.raises(UsageError, match="unknown architecture"):
        create_model("resnet9000")


def test_models_take_raw_pixels_and_output_probabilities():
    model = create_model("cnn")
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (4, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert model.get_layer("rescale").scale == pytest.approx(1 / 255)


def test_vgg_preprocessing_is_caffe_style_inside_the_graph():
    import keras

    model = create_model("vgg16-transfer", weights=None)
    pre = keras.Model(model.input, model.get_layer("imagenet_mean").output)
    pixel = np.zeros((1, 32, 32, 3), np.float32)
    pixel[..., :] = [255.0, 0.0, 10.0]  # RGB
    out = np.asarray(pre(pixel))[0, 0, 0]
    # BGR order, ImageNet means subtracted: exactly keras.applications.vgg16.preprocess_input.
    np.testing.assert_allclose(out, [10 - 103.939, 0 - 116.779, 255 - 123.68], rtol=1e-6)
    ref = keras.applications.vgg16.preprocess_input(pixel.copy())[0, 0, 0]
    np.testing.assert_allclose(out, ref, rtol=1e-6)


def test_vgg_upsampling_and_block5_unfreezing():
    from cifarkit.models.vgg import unfreeze_block5

    model = create_model("vgg16-finetune", weights=None, image_size=64)
    assert model.get_layer("upsample").output.shape[1:3] == (64, 64)
    assert model.get_layer("vgg16").output.shape[1:3] == (2, 2)
    assert unfreeze_block5(model) == 3
    trainable_base = [w.path for w in model.get_layer("vgg16").trainable_weights]
    assert trainable_base and all("block5" in p for p in trainable_base)


def test_vgg_weights_errors_say_where_to_put_the_file(tmp_path):
    with pytest.raises(ModelError, match="not found.*vgg16_weights_tf_dim_ordering"):
        create_model("vgg16-transfer", weights=str(tmp_path / "missing.h5"))
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ModelError, match="could not load"):
        create_model("vgg16-transfer", weights=str(bad))


def test_vgg_weights_file_round_trip(tmp_path):
    # A weights file in Keras's distributed layout (conv base, no top) loads by path.
    import keras

    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_notop.weights.h5"
    base.save_weights(path)
    model = create_model("vgg16-transfer", weights=str(path))
    got = model.get_layer("vgg16").get_layer("block1_conv1").get_weights()[0]
    np.testing.assert_array_equal(got, base.get_layer("block1_conv1").get_weights()[0])


def test_builders_check_arguments():
    with pytest.raises(ValueError):
        create_model("cnn", num_classes=1)
    with pytest.raises(ValueError):
        create_model("cnn-dropout", dropout=1.5)
    with pytest.raises(ValueError):
        create_model("vgg16-transfer", weights=None, image_size=16)


@pytest.mark.parametrize("name", [n for n in list_models() if n != "fastnet-l"])
def test_every_architecture_builds_for_any_size_and_class_count(name):
    kwargs = {"weights": None} if name.startswith("vgg") else {}
    model = create_model(name, num_classes=3, input_size=48, **kwargs)
    assert tuple(model.input_shape) == (None, 48, 48, 3)
    x = np.random.default_rng(0).integers(0, 256, (2, 48, 48, 3)).astype("float32")
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    with pytest.raises(UsageError, match="--image-size must be between"):
        create_model(name, num_classes=3, input_size=8, **kwargs)
