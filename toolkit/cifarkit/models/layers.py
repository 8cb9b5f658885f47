"""Small serializable layers used inside models, so preprocessing lives in the graph.

Registered with Keras so ``.keras`` files load in safe mode (no Lambda code).
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="cifarkit")
class ReverseChannels(keras.layers.Layer):
    """RGB ↔ BGR: reverses the last axis (caffe-style models such as VGG16 want BGR)."""

    def call(self, inputs):  # type: ignore[no-untyped-def]
        return keras.ops.flip(inputs, axis=-1)

    def compute_output_shape(self, input_shape):  # type: ignore[no-untyped-def]
        return input_shape
