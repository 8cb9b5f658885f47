"""The seed notebook's architectures, layer for layer (``keras.Sequential``, as it built them).

Every model takes raw 0–255 pixels: a ``Rescaling(1/255)`` layer (no parameters) does the
notebook's ``x/255`` inside the graph, so exported models take uint8 images directly.
The notebook's ``Conv2D(32, 3, 3)`` is Keras-1 syntax for a 3×3 kernel with valid padding;
its summary (30×30 after the first conv, 890,410 parameters) confirms it.
"""

from __future__ import annotations

from typing import Any

from cifarkit.models.registry import check_input_size, check_num_classes, register_model

NUM_CLASSES = 10


def _head(layers: Any, num_classes: int) -> Any:
    # float32 output so mixed-precision training keeps a stable softmax.
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")


@register_model(
    "dense",
    description="MLP: Dense 2048/1024/512/256 ReLU (§2)",
    family="seed",
    notebook_accuracy="49.76% test",
)
def dense(num_classes: int = NUM_CLASSES, input_size: int = 32) -> Any:
    import keras
    from keras import layers

    check_num_classes(num_classes)
    check_input_size(input_size)
    return keras.Sequential(
        [
            keras.Input((input_size, input_size, 3), name="images"),
            layers.Rescaling(1 / 255, name="rescale"),
            layers.Flatten(name="flatten"),
            layers.Dense(2048, activation="relu", name="dense_relu_1"),
            layers.Dense(1024, activation="relu", name="dense_relu_2"),
            layers.Dense(512, activation="relu", name="dense_relu_3"),
            layers.Dense(256, activation="relu", name="dense_relu_4"),
            _head(layers, num_classes),
        ],
        name="dense",
    )


def _cnn(name: str, num_classes: int, dropout: float, batchnorm: bool, input_size: int) -> Any:
    import keras
    from keras import layers

    check_num_classes(num_classes)
    check_input_size(input_size)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")

    def regularize(tag: str) -> list[Any]:
        out = []
        if batchnorm:
            out.append(layers.BatchNormalization(name=f"{tag}_bn"))
        if dropout:
            out.append(layers.Dropout(dropout, name=f"{tag}_dropout"))
        return out

    return keras.Sequential(
        [
            keras.Input((input_size, input_size, 3), name="images"),
            layers.Rescaling(1 / 255, name="rescale"),
            layers.Conv2D(32, 3, activation="relu", name="conv1_1"),
            layers.Conv2D(32, 3, activation="relu", name="conv1_2"),
            *regularize("block1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(64, 3, activation="relu", name="conv2_1"),
            layers.Conv2D(64, 3, activation="relu", name="conv2_2"),
            *regularize("block2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dense(512, activation="relu", name="fc1"),
            *regularize("fc1"),
            _head(layers, num_classes),
        ],
        name=name,
    )


@register_model(
    "cnn",
    description="Conv32×2, Conv64×2, Dense 512 (§3.1)",
    family="seed",
    notebook_accuracy="63.61% val",
)
def cnn(num_classes: int = NUM_CLASSES, input_size: int = 32) -> Any:
    return _cnn("cnn", num_classes, dropout=0.0, batchnorm=False, input_size=input_size)


@register_model(
    "cnn-dropout",
    description="cnn + Dropout 0.25 (§3.2)",
    family="seed",
    notebook_accuracy="62.07% val",
)
def cnn_dropout(
    num_classes: int = NUM_CLASSES, dropout: float = 0.25, input_size: int = 32
) -> Any:
    return _cnn("cnn-dropout", num_classes, dropout=dropout, batchnorm=False,
                input_size=input_size)


@register_model(
    "cnn-batchnorm",
    description="cnn-dropout + BatchNorm (§3.2)",
    family="seed",
    notebook_accuracy="63.47% val",
)
def cnn_batchnorm(
    num_classes: int = NUM_CLASSES, dropout: float = 0.25, input_size: int = 32
) -> Any:
    return _cnn("cnn-batchnorm", num_classes, dropout=dropout, batchnorm=True,
                input_size=input_size)
