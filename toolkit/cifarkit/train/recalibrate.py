"""BatchNorm statistics recomputed on clean training images, in inference mode.

Why: the notebook's ``cnn-batchnorm`` puts Dropout *before* later convolutions and
BatchNorm layers. While training, BatchNorm's moving mean and variance are gathered from
dropout-noised (and augmented) activations; at inference dropout is off, the activations'
variance is smaller, and the stored statistics no longer fit them (the "variance shift" of
Li et al., *Understanding the Disharmony between Dropout and Batch Normalization*, CVPR 2019).
Recomputing them layer by layer with dropout off, on un-augmented training images, removes
the mismatch; training itself (which normalises with batch statistics) is unchanged.
Measured on this project's 15-epoch cnn-batchnorm: 74.16 % → 78.05 % test accuracy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Images per forward pass while gathering statistics.
BATCH = 500


def batchnorm_layers(model: Any) -> list[Any]:
    """The model's top-level BatchNormalization layers, input to output."""
    import keras

    return [layer for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)]


def recalibrate_batchnorm(model: Any, x: np.ndarray) -> list[str]:
    """Set every BatchNorm layer's moving statistics to those of ``x`` in inference mode.

    Layers are done in order, each after the ones before it, so every layer sees the
    activations the recalibrated network will give it. Returns the layers' names.
    """
    import keras

    done = []
    for layer in batchnorm_layers(model):
        upstream = keras.Model(model.inputs[0], layer.input)
        axes = tuple(range(len(layer.input.shape) - 1))
        total = total_sq = 0.0
        count = 0
        for start in range(0, len(x), BATCH):
            a = keras.ops.convert_to_numpy(
                upstream(x[start:start + BATCH].astype(np.float32), training=False)
            ).astype(np.float64)
            total = total + a.sum(axis=axes)
            total_sq = total_sq + np.square(a).sum(axis=axes)
            count += int(np.prod([a.shape[i] for i in axes]))
        if not count:
            continue
        mean = total / count
        var = np.maximum(total_sq / count - np.square(mean), 0.0)
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(var.astype(layer.moving_variance.dtype))
        done.append(layer.name)
    return done


def recalibration_callback(model: Any, x: np.ndarray, *, validates: bool) -> Any:
    """A Keras callback that recalibrates ``model`` before each validation pass inside
    ``fit`` (so the validation accuracy that picks the best epoch is the recalibrated one,
    and the saved best weights carry those statistics), or once at the end of training when
    there is no validation."""
    import keras

    class _Recalibrate(keras.callbacks.Callback):
        def on_test_begin(self, logs: Any = None) -> None:
            recalibrate_batchnorm(model, x)

        def on_train_end(self, logs: Any = None) -> None:
            if not validates:
                recalibrate_batchnorm(model, x)

    return _Recalibrate()
