"""VGG16 transfer learning (notebook §4), with ImageNet's preprocessing inside the graph.

VGG16's ImageNet weights expect caffe-style input: BGR channel order and the ImageNet mean
subtracted from 0–255 pixels. The notebook fed 0–1 RGB pixels, which wastes the weights.
Here the graph does RGB→BGR and mean subtraction itself (and optional upsampling, since a
32×32 input leaves block5 with a 1×1 map), so the model still takes raw RGB 0–255 pixels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cifarkit.errors import ModelError
from cifarkit.models.registry import register_model

#: ImageNet channel means in BGR order, as ``keras.applications.vgg16.preprocess_input``.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _weights_hint() -> str:
    home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return (
        f"Put Keras's {WEIGHTS_FILE} in {Path(home) / 'models'}, pass --weights PATH to that "
        "file, or use --weights none for random initialisation"
    )


def _conv_base(weights: str | None, image_size: int) -> Any:
    import keras

    if weights not in (None, "imagenet"):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ModelError(f"VGG16 weights file {path} not found. {_weights_hint()}")
        weights = os.fspath(path)
    try:
        base = keras.applications.VGG16(
            include_top=False, weights=weights, input_shape=(image_size, image_size, 3)
        )
    except ModelError:
        raise
    except Exception as exc:  # offline download, corrupt or mismatched .h5
        what = "download ImageNet weights" if weights == "imagenet" else f"load {weights}"
        raise ModelError(
            f"could not {what} for VGG16 ({type(exc).__name__}: {exc}). {_weights_hint()}"
        ) from None
    base.name = "vgg16"
    return base


def _vgg16(name: str, num_classes: int, weights: str | None, image_size: int) -> Any:
    import keras
    from keras import layers

    from cifarkit.models.layers import ReverseChannels

    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if not 32 <= image_size <= 224:
        raise ValueError(f"image_size must be in [32, 224], got {image_size}")
    if isinstance(weights, str) and weights.lower() == "none":
        weights = None
    base = _conv_base(weights, image_size)
    base.trainable = False

    inputs = keras.Input((32, 32, 3), name="images")
    x = inputs
    if image_size != 32:
        x = layers.Resizing(image_size, image_size, interpolation="bilinear", name="upsample")(x)
    x = ReverseChannels(name="rgb_to_bgr")(x)
    x = layers.Rescaling(1.0, offset=[-m for m in IMAGENET_MEAN_BGR], name="imagenet_mean")(x)
    # training=False keeps the frozen base in inference mode even while fine-tuning.
    x = base(x, training=False)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(512, activation="relu", name="fc1")(x)
    outputs = layers.Dense(
        num_classes, activation="softmax", dtype="float32", name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name=name)


@register_model(
    "vgg16-transfer",
    description="frozen VGG16 conv base (ImageNet) → Flatten → Dense 512 → 10 (notebook §4)",
    family="vgg",
    notebook_accuracy="55.33% val",
    pretrained="imagenet",
)
def vgg16_transfer(
    num_classes: int = 10, weights: str | None = "imagenet", image_size: int = 32
) -> Any:
    return _vgg16("vgg16-transfer", num_classes, weights, image_size)


@register_model(
    "vgg16-finetune",
    description="vgg16-transfer, then block5 unfrozen at a low learning rate",
    family="vgg",
    notebook_accuracy="described, never run",
    pretrained="imagenet",
)
def vgg16_finetune(
    num_classes: int = 10, weights: str | None = "imagenet", image_size: int = 32
) -> Any:
    return _vgg16("vgg16-finetune", num_classes, weights, image_size)


def unfreeze_block5(model: Any) -> int:
    """Make VGG16's block5 trainable (the rest stays frozen); return the layers unfrozen."""
    base = model.get_layer("vgg16")
    base.trainable = True
    n = 0
    for layer in base.layers:
        layer.trainable = layer.name.startswith("block5")
        n += int(layer.trainable and bool(layer.weights))
    return n
