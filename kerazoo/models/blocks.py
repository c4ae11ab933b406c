"""Building blocks shared by the model builders."""

import keras

from kerazoo import layers
from kerazoo.tasks import Segmentation


def segmentation_task(num_classes, in_channels, activation):
    """The task a builder uses when called without one: segmentation (what `create_model` passes by default)."""
    return Segmentation(num_classes, in_channels, activation, "segmentation")


def check_positive_int(name, value, paper):
    """A ValueError naming `value` unless it is a positive int; `paper` is the published setting, for the message."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int (the paper's is {paper}); got {value!r}")


def model_input(input_shape, in_channels):
    """The raw-pixel input (0..255) of every kerazoo model.

    Args:
        input_shape: (height, width, channels) with None for any size, or None for (None, None, in_channels).
        in_channels: channel count; must agree with input_shape's last entry when both are given.
    """
    if input_shape is None:
        input_shape = (None, None, in_channels)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels); got {input_shape!r}")
    if input_shape[-1] != in_channels:
        raise ValueError(f"input_shape {input_shape!r} has {input_shape[-1]} channels but in_channels={in_channels}")
    for size in input_shape[:2]:
        if size is not None and (not isinstance(size, int) or size < 1):
            raise ValueError(f"input_shape sizes must be positive ints or None; got {input_shape!r}")
    return keras.Input(shape=input_shape, name="image")


def conv_bn_relu(x, filters, kernel_size=3, batch_norm=True, relu=True, padding="same", use_bias=None, name=None):
    """Convolution, optional batch normalisation, optional ReLU.

    The convolution's bias defaults to off when batch normalisation follows (it would be cancelled);
    SegNet keeps it so that VGG's pretrained biases load. Batch normalisation is
    `layers.BatchNormalization` (fused): one fused kernel on TensorFlow, Keras' own math elsewhere.
    """
    use_bias = not batch_norm if use_bias is None else use_bias
    x = keras.layers.Conv2D(filters, kernel_size, padding=padding, use_bias=use_bias, name=name)(x)
    if batch_norm:
        x = layers.BatchNormalization(name=None if name is None else f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(name=None if name is None else f"{name}_relu")(x)
    return x


UPSAMPLING = ("transpose", "nearest", "bilinear", "bed_of_nails")


def upsample(x, filters, method, name=None):
    """Doubles height and width with one of the classic upsampling methods.

    "transpose": learnable 2x2 stride-2 transposed convolution (U-Net's up-convolution) to `filters`;
    "nearest" / "bilinear": `keras.layers.UpSampling2D`; "bed_of_nails": `BedOfNailsUpSampling2D`.
    """
    if method == "transpose":
        return keras.layers.Conv2DTranspose(filters, 2, strides=2, name=name)(x)
    if method in ("nearest", "bilinear"):
        return keras.layers.UpSampling2D(2, interpolation=method, name=name)(x)
    if method == "bed_of_nails":
        return layers.BedOfNailsUpSampling2D(2, name=name)(x)
    raise ValueError(f"upsampling must be one of {UPSAMPLING}; got {method!r}")
