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


def mirror(images):  # type: ignore[no-untyped-def]
    """Left-right mirror of NHWC images, as a strided slice (step −1 on the W axis).

    Not ``keras.ops.flip``: on TensorFlow that is ``tf.reverse``, which tf2onnx lowers to
    ``ReverseSequence``, an op OpenCV DNN and tract do not implement; a strided slice
    lowers to the standard ``Slice`` with step −1. Same values, so the layers that use it
    keep their configs and trained ``.keras`` files load and export unchanged.
    """
    return images[:, :, ::-1, :]


@keras.saving.register_keras_serializable(package="cifarkit")
class FlipBatch(keras.layers.Layer):
    """Test-time flip augmentation, part 1: at inference, append the mirrored batch.

    ``[x]`` becomes ``[x; flip(x)]`` (batch doubled); :class:`MeanHalves` later averages the
    two halves. In training both are the identity, so the same ``.keras`` file trains fast
    and predicts with TTA, and the exported ONNX graph carries the TTA with it.
    """

    def call(self, inputs, training=None):  # type: ignore[no-untyped-def]
        if training:
            return inputs
        return keras.ops.concatenate([inputs, mirror(inputs)], axis=0)

    def compute_output_shape(self, input_shape):  # type: ignore[no-untyped-def]
        return input_shape


@keras.saving.register_keras_serializable(package="cifarkit")
class MeanHalves(keras.layers.Layer):
    """Test-time flip augmentation, part 2: average the logits of the two batch halves."""

    def call(self, inputs, training=None):  # type: ignore[no-untyped-def]
        if training:
            return inputs
        first, second = keras.ops.split(inputs, 2, axis=0)
        return (first + second) * 0.5

    def compute_output_shape(self, input_shape):  # type: ignore[no-untyped-def]
        return input_shape


# Weights of TTAViews' views when merged (airbench94's): level 1 averages an image and its
# mirror; level 2 gives those two ½ together and the four one-pixel translations the other ½.
TTA_WEIGHTS = {1: (0.5, 0.5), 2: (0.25, 0.125, 0.125, 0.25, 0.125, 0.125)}


class _TTALevel(keras.layers.Layer):
    """A layer configured by a test-time augmentation level (a key of ``TTA_WEIGHTS``)."""

    def __init__(self, level: int = 1, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        if level not in TTA_WEIGHTS:
            raise ValueError(f"TTA level must be one of {sorted(TTA_WEIGHTS)}, got {level!r}")
        self.level = int(level)

    def compute_output_shape(self, input_shape):  # type: ignore[no-untyped-def]
        return input_shape

    def get_config(self):  # type: ignore[no-untyped-def]
        return {**super().get_config(), "level": self.level}


@keras.saving.register_keras_serializable(package="cifarkit")
class TTAViews(_TTALevel):
    """Test-time augmentation, part 1, at any level: at inference, stack the views of the
    batch along the batch axis (:class:`TTAMerge` then weighs them back together).

    Level 1: the image and its mirror (what :class:`FlipBatch` does). Level 2 (airbench94's
    ``tta_level=2``): the image, its one-pixel translations up-left and down-right
    (reflection-padded), then the mirrors of those three: 6 views, 3× level 1's work.
    In training it is the identity.
    """

    def call(self, inputs, training=None):  # type: ignore[no-untyped-def]
        if training:
            return inputs
        ops = keras.ops
        views = [inputs]
        if self.level >= 2:
            h, w = inputs.shape[1], inputs.shape[2]
            padded = ops.pad(inputs, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
            views += [padded[:, 0:h, 0:w, :], padded[:, 2:h + 2, 2:w + 2, :]]
        views += [mirror(v) for v in views]
        return ops.concatenate(views, axis=0)


@keras.saving.register_keras_serializable(package="cifarkit")
class TTAMerge(_TTALevel):
    """Test-time augmentation, part 2: the weighted sum of :class:`TTAViews`' views' logits."""

    def call(self, inputs, training=None):  # type: ignore[no-untyped-def]
        if training:
            return inputs
        weights = TTA_WEIGHTS[self.level]
        parts = keras.ops.split(inputs, len(weights), axis=0)
        out = parts[0] * weights[0]
        for part, weight in zip(parts[1:], weights[1:], strict=True):
            out = out + part * weight
        return out


@keras.saving.register_keras_serializable(package="cifarkit")
class BiasAdd(keras.layers.Layer):
    """A trainable per-channel bias (beside a frozen convolution, e.g. the whitening stem)."""

    def build(self, input_shape):  # type: ignore[no-untyped-def]
        self.bias = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="bias")

    def call(self, inputs):  # type: ignore[no-untyped-def]
        return inputs + self.bias

    def compute_output_shape(self, input_shape):  # type: ignore[no-untyped-def]
        return input_shape


@keras.saving.register_keras_serializable(package="cifarkit")
class PartialDirac(keras.initializers.Initializer):
    """He-uniform-ish 3×3 kernels whose first ``min(in, out)`` filters start as identities.

    airbench94's trick: each conv starts close to passing its input through, which makes
    the first epochs of a short schedule productive.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def __call__(self, shape, dtype=None):  # type: ignore[no-untyped-def]
        import numpy as np

        kh, kw, cin, cout = shape
        # PyTorch's default conv init (kaiming-uniform, a=sqrt(5)): U(±1/sqrt(fan_in)).
        bound = 1.0 / np.sqrt(kh * kw * cin)
        # keras.random: seeded by keras.utils.set_random_seed when ``seed`` is None.
        w = np.array(keras.ops.convert_to_numpy(
            keras.random.uniform(shape, -bound, bound, seed=self.seed)), dtype="float32")
        n = min(cin, cout)
        w[:, :, :, :n] = 0.0
        w[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1.0
        return keras.ops.convert_to_tensor(w, dtype=dtype or "float32")

    def get_config(self):  # type: ignore[no-untyped-def]
        return {"seed": self.seed}
