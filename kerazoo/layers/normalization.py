"""Batch normalization on TensorFlow's fused kernel (FusedBatchNormV3), with Keras' layer as its reference."""

import keras
from keras import ops


# Input dtypes tf.raw_ops.FusedBatchNormV3 takes (its statistics and parameters stay float32).
_FUSED_DTYPES = ("float32", "bfloat16", "float16")


# cuDNN's lower bound on epsilon; a smaller one keeps the keras.ops path on every device.
_FUSED_MIN_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable(package="kerazoo")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` that runs as one fused kernel on the TensorFlow backend.

    Keras 3 normalises in several ops on TensorFlow (moments, then `tf.nn.batch_normalization`, with
    float32 casts around bfloat16 inputs); this layer calls `FusedBatchNormV3` (what
    `tf.compat.v1.nn.fused_batch_norm` wraps), which takes float32 and bfloat16 inputs as they are.
    Weights (gamma, beta, moving_mean, moving_variance, kept in float32 under mixed precision), their
    paths and the config are Keras', so weight files load into either class. The class keeps Keras'
    name on purpose: `.weights.h5` and `.keras` files key each layer's weights by its class name
    ("batch_normalization_3"), so another name would not load Keras-built checkpoints. It trains like Keras:
    batch statistics (the biased variance) normalise, and the moving statistics follow
    `moving = moving * momentum + batch * (1 - momentum)`; inference, or `trainable=False`, uses the
    moving statistics.

    Anywhere the fused kernel does not apply, `keras.layers.BatchNormalization.call` runs: other
    backends, inputs that are not 4-D with the channels last, masks, `synchronized`, `renorm`, other
    dtypes, an epsilon below 1.001e-5.
    """

    def _fused_applies(self, inputs, training, mask):
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.synchronized
            and not self.renorm
            and self.epsilon >= _FUSED_MIN_EPSILON
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and keras.backend.standardize_dtype(inputs.dtype) in _FUSED_DTYPES
            and (training is None or isinstance(training, bool))  # a Python flag, as Keras' `if training` needs
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused_applies(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # only on the TensorFlow backend

        channels = inputs.shape[-1]
        # The kernel takes float32 parameters and statistics whatever the variables' dtype (float32
        # under mixed precision; bfloat16 under a plain "bfloat16" policy), as Keras computes in float32.
        as_float32 = lambda variable: ops.cast(variable, "float32")  # noqa: E731
        gamma = as_float32(self.gamma) if self.scale else ops.ones((channels,), "float32")
        beta = as_float32(self.beta) if self.center else ops.zeros((channels,), "float32")
        moving_mean, moving_variance = as_float32(self.moving_mean), as_float32(self.moving_variance)
        fused = dict(x=inputs, scale=gamma, offset=beta, epsilon=self.epsilon, data_format="NHWC")
        if training and self.trainable:
            empty = tf.constant([], "float32")
            outputs, mean, unbiased_variance = tf.raw_ops.FusedBatchNormV3(
                mean=empty, variance=empty, is_training=True, **fused)[:3]
            # The kernel normalises with the biased variance but returns the unbiased one (n / (n - 1)
            # times larger); Keras averages the biased one into moving_variance.
            count = ops.cast(ops.size(inputs) // channels, "float32")
            variance = unbiased_variance * ops.maximum(count - 1.0, 0.0) / count
            new_mean = moving_mean * self.momentum + mean * (1.0 - self.momentum)
            new_variance = moving_variance * self.momentum + variance * (1.0 - self.momentum)
            self.moving_mean.assign(ops.cast(new_mean, self.moving_mean.dtype))
            self.moving_variance.assign(ops.cast(new_variance, self.moving_variance.dtype))
        else:
            outputs = tf.raw_ops.FusedBatchNormV3(mean=moving_mean, variance=moving_variance, is_training=False,
                                                  **fused)[0]
        return ops.cast(outputs, self.compute_dtype)


def fuse_batch_norm(model):
    """A copy of functional `model` whose `keras.layers.BatchNormalization` layers are kerazoo's fused one.

    Layer names, configs (trainable included) and weights are kept, so weight files and checkpoints of
    `model` load into the copy and back. Used on Keras Applications encoders, whose own batch-norm
    layers are Keras'.
    """

    def clone_layer(layer):
        if type(layer) is keras.layers.BatchNormalization:
            return BatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    # New inputs under the old names: clone_model would otherwise auto-name them.
    inputs = [keras.Input(**{key: layer.get_config()[key] for key in ("batch_shape", "dtype", "name")})
              for layer in model.layers if isinstance(layer, keras.layers.InputLayer)]
    inputs = inputs[0] if len(inputs) == 1 and not isinstance(model.input, (list, tuple, dict)) else inputs
    fused = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone_layer)
    fused.set_weights(model.get_weights())
    return fused
