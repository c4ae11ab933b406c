"""Activations written so that every exporter maps them to a builtin."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerazoo")
class GELU(keras.layers.Layer):
    """The exact GELU, x * Phi(x) = x / 2 * (1 + erf(x / sqrt(2))), written with erf.

    `keras.activations.gelu` computes the same function, but TensorFlow writes it with erfc, which
    tf2onnx turns into an ONNX op that does not exist ("Erfc"); written with erf, tf2onnx emits Erf and
    TFLite's converter still fuses it into its GELU builtin. ConvNeXt's encoders use this layer in place
    of `Activation("gelu")` (same numbers, within float rounding).
    """

    def call(self, inputs):
        return 0.5 * inputs * (1.0 + ops.erf(inputs * (1.0 / math.sqrt(2.0))))

    def compute_output_shape(self, input_shape):
        return input_shape
