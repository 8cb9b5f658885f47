"""``fastnet``: a fast-training CIFAR-10 network after Keller Jordan's airbench94.

airbench94 (https://github.com/KellerJordan/cifar10-airbench) reaches 94 % test accuracy in
about 10 epochs. Kept here, in Keras-only code (any backend):
- a 2×2 stem convolution initialised from the eigen-decomposition of training patches
  (patch whitening, ``init_whitening``), frozen, followed by a trainable bias and GELU;
- three blocks of conv → max-pool → BatchNorm → GELU → conv → BatchNorm → GELU, widths
  64/256/256, BatchNorm without scale (the following conv absorbs it) and momentum 0.6
  in PyTorch's convention (0.4 in Keras's);
- convolutions initialised as partial identities (``PartialDirac``);
- global max pooling, a bias-free linear head scaled by 1/9;
- test-time flip augmentation inside the graph (``FlipBatch``/``MeanHalves``), so the
  exported ONNX file averages an image and its mirror with no extra code at the caller;
  ``tta=2`` (airbench's level 2, 6 views: ``TTAViews``/``TTAMerge``) adds the one-pixel
  translations, and :func:`with_tta` re-levels a trained model (``cifarkit export --tta``).
Input: raw 0–255 RGB; the CIFAR-10 mean/std normalisation is a layer of the model.
The recipe (Nesterov SGD with 64× the learning rate for BatchNorm offsets, label smoothing
0.2, alternating flips + 2 px translation, a triangular schedule, lookahead) is
``--recipe fast`` in :mod:`cifarkit.train.recipes`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cifarkit.errors import UsageError
from cifarkit.models.registry import check_input_size, check_num_classes, register_model

# Per-channel statistics of the CIFAR-10 training set (0–1 scale), as airbench uses them.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
WHITEN_WIDTH = 12  # 2×2×3 patch dimensions; the stem has twice as many (±eigenvectors)


def _fastnet(
    name: str,
    widths: tuple[int, int, int],
    num_classes: int,
    tta: int,
    bn_momentum: float,
    activation: str = "gelu",
    input_size: int = 32,
) -> Any:
    import keras
    from keras import layers

    from cifarkit.models.layers import (
        TTA_WEIGHTS,
        BiasAdd,
        FlipBatch,
        MeanHalves,
        PartialDirac,
        TTAMerge,
        TTAViews,
    )

    tta = int(tta)  # True/False: level 1/0
    if tta not in (0, *TTA_WEIGHTS):
        raise UsageError(f"test-time augmentation level must be 0, 1 or 2, got {tta}")

    check_num_classes(num_classes)
    check_input_size(input_size)
    # Any size: three 2× pools, then a global max-pool, so the head sees the same features.
    inputs = keras.Input((input_size, input_size, 3), name="images")
    mean = np.array(CIFAR_MEAN, dtype="float32")
    std = np.array(CIFAR_STD, dtype="float32")
    # (x/255 - mean)/std as a single affine layer: no weights to train or to lose.
    x = layers.Rescaling(scale=(1 / (255 * std)).tolist(), offset=(-mean / std).tolist(),
                         name="normalize")(inputs)
    # Level 1 keeps its original layers, so models saved before levels existed load as-is.
    if tta == 1:
        x = FlipBatch(name="tta_flip")(x)
    elif tta:
        x = TTAViews(tta, name="tta_views")(x)
    x = layers.Conv2D(2 * WHITEN_WIDTH, 2, padding="valid", use_bias=False, trainable=False,
                      name="whiten")(x)
    x = BiasAdd(name="whiten_bias")(x)
    x = layers.Activation(activation, name=f"whiten_{activation}")(x)
    # GELU keeps airbench's conv → pool → BN order. ReLU puts the pool last (conv → BN →
    # ReLU → pool), so each conv, its folded BN and its ReLU become one int8 convolution.
    pool_last = activation == "relu"
    for i, width in enumerate(widths, start=1):
        for j in (1, 2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False,
                              kernel_initializer=PartialDirac(), name=f"block{i}_conv{j}")(x)
            if j == 1 and not pool_last:
                x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
            x = layers.BatchNormalization(momentum=bn_momentum, epsilon=1e-12, scale=False,
                                          name=f"block{i}_bn{j}")(x)
            x = layers.Activation(activation, name=f"block{i}_{activation}{j}")(x)
            if j == 1 and pool_last:
                x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    x = layers.GlobalMaxPooling2D(name="global_pool")(x)
    x = layers.Dense(num_classes, use_bias=False, name="head")(x)
    x = layers.Rescaling(1 / 9, name="head_scale")(x)
    if tta == 1:
        x = MeanHalves(name="tta_mean")(x)
    elif tta:
        x = TTAMerge(tta, name="tta_merge")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def init_whitening(model: Any, x_train: np.ndarray, n: int = 5000, eps: float = 5e-4) -> None:
    """Set the ``whiten`` stem from the 2×2 patch covariance of ``n`` training images.

    Filters are the covariance's eigenvectors scaled by 1/sqrt(eigenvalue + eps), and their
    negatives (so GELU keeps both signs). Deterministic: the first ``n`` images are used.
    """
    layer = model.get_layer("whiten")
    norm = model.get_layer("normalize")
    x = np.asarray(x_train[:n], dtype=np.float32)
    x = x * np.asarray(norm.scale, dtype=np.float32) + np.asarray(norm.offset, dtype=np.float32)
    cov = np.zeros((4 * 3, 4 * 3))
    count, m = 0, x.shape[1] - 1  # patches per row/column at any image size
    for start in range(0, len(x), 1000):  # chunks keep the patch matrix small
        xb = x[start:start + 1000]
        # Every 2×2 patch as a row in (kh, kw, c) order, the layout of a Keras kernel.
        patches = np.stack([xb[:, dy:dy + m, dx:dx + m, :]
                            for dy in (0, 1) for dx in (0, 1)], axis=3)
        flat = patches.reshape(-1, 12).astype(np.float64)
        cov += flat.T @ flat
        count += len(flat)
    cov /= count
    eigvals, eigvecs = np.linalg.eigh(cov)  # ascending
    eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]
    filters = eigvecs / np.sqrt(eigvals + eps)  # columns: one whitening filter each
    kernel = np.concatenate([filters, -filters], axis=1).reshape(2, 2, 3, 2 * WHITEN_WIDTH)
    layer.set_weights([kernel.astype(np.float32)])


def _register(name: str, widths: tuple[int, int, int], description: str, *,
              recipe: str = "fast", activation: str = "gelu") -> None:
    """One fastnet variant in the registry: ``_fastnet`` at ``widths`` with ``activation``."""

    @register_model(name, description=description, family="fast",
                    train_defaults={"recipe": recipe}, data_init=init_whitening)
    def build(num_classes: int = 10, tta: int = 1, bn_momentum: float = 0.4,
              input_size: int = 32) -> Any:
        return _fastnet(name, widths, num_classes, tta, bn_momentum, activation=activation,
                        input_size=input_size)


_register("fastnet", (64, 256, 256), "airbench94-style, 64/256/256, flip TTA")
_register("fastnet-s", (32, 128, 128), "fastnet at half width (32/128/128)")
_register("fastnet-l", (128, 384, 384), "airbench95-style wide, 128/384/384", recipe="fast-l")
_register("fastnet-relu", (64, 256, 256), "fastnet, ReLU: int8-fused conv blocks",
          activation="relu")


def tta_level(model: Any) -> int:
    """The in-graph test-time augmentation level of a Keras model: 0 when it has none."""
    names = {layer.name: layer for layer in model.layers}
    if "tta_views" in names:
        return int(names["tta_views"].level)
    return 1 if "tta_flip" in names else 0


def with_tta(model: Any, level: int) -> Any:
    """A trained fastnet model rebuilt with test-time augmentation ``level`` (0, 1, 2), with
    the same weights. Raises ``UsageError`` for a model that is not a fastnet."""
    from cifarkit.models.registry import get_model_info, list_models

    if model.name not in list_models("fastnet*"):
        raise UsageError(
            f"--tta applies to the fastnet models (in-graph test-time augmentation); "
            f"{model.name!r} is not one")
    num_classes = int(model.get_layer("head").get_weights()[0].shape[-1])
    rebuilt = get_model_info(model.name).builder(num_classes=num_classes, tta=level,
                                                 input_size=int(model.input_shape[1]))
    for layer in rebuilt.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return rebuilt
