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
from cifarkit.models.registry import check_input_size, check_num_classes, register_model

#: ImageNet channel means in BGR order, as ``keras.applications.vgg16.preprocess_input``.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/vgg16/{WEIGHTS_FILE}"
WEIGHTS_MD5 = "6d6bbae143d832006294945121d1f1fc"  # the checksum Keras itself checks


def keras_weights_cache() -> Path:
    """Where Keras caches downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    # Read at call time: Keras fixes its own home when it is first imported.
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def _weights_hint() -> str:
    return (
        f"Put Keras's {WEIGHTS_FILE} in {keras_weights_cache()}, pass --weights PATH to that "
        "file, or use --weights none for random initialisation"
    )


def resolve_weights(weights: str | None) -> str | None:
    """The .h5 file to load for ``weights`` (``None``: random init), or a :class:`ModelError`.

    ``"imagenet"`` is Keras's cached file, downloaded into the cache first unless
    ``$CIFARKIT_NO_DOWNLOAD`` is set; anything else is a path to such a file.
    """
    if weights is None or weights.lower() == "none":
        return None
    if weights == "imagenet":
        cached = keras_weights_cache() / WEIGHTS_FILE
        if cached.is_file():
            return os.fspath(cached)
        if os.environ.get("CIFARKIT_NO_DOWNLOAD"):
            raise ModelError(
                f"VGG16's ImageNet weights are not in Keras's cache ({cached}) and downloads "
                f"are off ($CIFARKIT_NO_DOWNLOAD). {_weights_hint()}"
            )
        import keras

        try:
            return os.fspath(keras.utils.get_file(
                WEIGHTS_FILE, WEIGHTS_URL, cache_subdir="models",
                cache_dir=os.fspath(cached.parent.parent), file_hash=WEIGHTS_MD5,
            ))
        except Exception as exc:  # offline, proxy, checksum mismatch
            raise ModelError(
                f"could not download VGG16's ImageNet weights from {WEIGHTS_URL} "
                f"({type(exc).__name__}: {exc}). {_weights_hint()}"
            ) from None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelError(f"VGG16 weights file {path} not found. {_weights_hint()}")
    return os.fspath(path)


def _conv_base(weights: str | None, image_size: int) -> Any:
    import keras

    path = resolve_weights(weights)
    try:
        base = keras.applications.VGG16(
            include_top=False, weights=path, input_shape=(image_size, image_size, 3)
        )
    except Exception as exc:  # corrupt or mismatched .h5
        raise ModelError(
            f"could not load {path} as VGG16 weights ({type(exc).__name__}: {exc}). "
            f"{_weights_hint()}"
        ) from None
    base.name = "vgg16"
    return base


def _vgg16(name: str, num_classes: int, weights: str | None, image_size: int | None,
           input_size: int) -> Any:
    import keras
    from keras import layers

    from cifarkit.models.layers import ReverseChannels

    check_num_classes(num_classes)
    check_input_size(input_size)
    image_size = input_size if image_size is None else image_size
    # VGG16's five 2× pools need 32 pixels; past 224 (ImageNet's size) only memory grows.
    if not 32 <= input_size <= image_size <= 224:
        raise ValueError(f"image_size must be in [32, 224] and at least the input size "
                         f"{input_size}, got {image_size}")
    base = _conv_base(weights, image_size)
    base.trainable = False

    inputs = keras.Input((input_size, input_size, 3), name="images")
    x = inputs
    if image_size != input_size:
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
    description="frozen ImageNet VGG16 + Dense 512 (§4)",
    family="vgg",
    notebook_accuracy="55.33% val",
    pretrained="imagenet",
)
def vgg16_transfer(
    num_classes: int = 10, weights: str | None = "imagenet", image_size: int | None = None,
    input_size: int = 32,
) -> Any:
    return _vgg16("vgg16-transfer", num_classes, weights, image_size, input_size)


@register_model(
    "vgg16-finetune",
    description="vgg16-transfer, then block5 fine-tuned",
    family="vgg",
    notebook_accuracy="not run",
    pretrained="imagenet",
    # Phase 2 of ``cifarkit train``: block5 + head, Nesterov SGD (momentum 0.9) with cosine
    # decay from 1e-4, 500x below the default recipe's peak, so ImageNet's block5 filters
    # are adjusted rather than overwritten (the notebook's "very low learning rate").
    train_defaults={"finetune_epochs": 5, "finetune_lr": 1e-4},
)
def vgg16_finetune(
    num_classes: int = 10, weights: str | None = "imagenet", image_size: int | None = None,
    input_size: int = 32,
) -> Any:
    return _vgg16("vgg16-finetune", num_classes, weights, image_size, input_size)


def unfreeze_block5(model: Any) -> int:
    """Make VGG16's block5 trainable (the rest stays frozen); return the layers unfrozen."""
    base = model.get_layer("vgg16")
    base.trainable = True
    n = 0
    for layer in base.layers:
        layer.trainable = layer.name.startswith("block5")
        n += int(layer.trainable and bool(layer.weights))
    return n
