"""Blocks shared by the pyramid-pooling decoders (DeepLab, PSPNet, UPerNet): the encoder's taps at an
output stride, the pyramid pooling module, and the ending that scores at low resolution and upsamples."""

import keras

from kerazoo import encoders, layers
from kerazoo.layers.pyramid import BilinearResizeToReference, BinAveragePooling2D, InterleavedBilinearUpsampling
from kerazoo.models.blocks import conv_bn_relu
from kerazoo.tasks.heads import score_conv

OUTPUT_STRIDES = encoders.OUTPUT_STRIDES
ENCODER_DEPTHS = encoders.ENCODER_DEPTHS
PYRAMID_BINS = (1, 2, 3, 6)  # Zhao et al.'s pyramid levels


def check_choice(value, choices, name):
    """Raises a ValueError naming `name`, the bad value and the valid ones, unless value is one of choices."""
    if isinstance(value, bool) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")


def check_positive_ints(values, name, count=None):
    """`values` as a tuple of positive ints (`count` of them when given), or a ValueError naming `name`."""
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if (not values or (count is not None and len(values) != count)
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)):
        wanted = f"{count} positive ints" if count else "a non-empty sequence of positive ints"
        raise ValueError(f"{name} must be {wanted}; got {values!r}")
    return values


def check_positive_int(value, name):
    """`value` if it is a positive int, else a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


def check_rate(value, name):
    """A dropout rate in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a float in [0, 1); got {value!r}")
    return float(value)


def encoder_taps(x, spec, strides, in_channels=3, encoder_weights=None, freeze_encoder=False,
                 encoder_bn_momentum=None, output_stride=32, encoder_depth=5):
    """Pads `x` for the encoder, runs it and returns its taps keyed `strides` with their actual strides.

    With `output_stride` below 32 the encoder's last stages run dilated at that stride (DeepLab, PSPNet);
    `encoder_depth` 3 or 4 ends it after the stride-8 or stride-16 stage (later stages are not built).
    See `kerazoo.encoders.build_encoder` for the contract.

    Args:
        x: the preprocessed input (B, H, W, C), any height and width.
        spec: the encoder's `EncoderSpec`.
        strides: tap keys (4, 8, 16, 32) to return, each at most 2 ** encoder_depth.
        Others: see the model builders.

    Returns:
        (list of tap tensors, tuple of their actual strides): the tap keyed s has stride
        min(s, output_stride) and exactly the padded input's size divided by that.
    """
    check_choice(output_stride, OUTPUT_STRIDES, "output_stride")
    check_choice(encoder_depth, ENCODER_DEPTHS, "encoder_depth")
    x = layers.PadToMultiple(encoders.input_multiple(output_stride, encoder_depth), name="pad_to_stride")(x)
    encoder = encoders.build_encoder(spec, in_channels, encoder_weights, trainable=not freeze_encoder,
                                     tap_layers=spec.feature_names(strides), bn_momentum=encoder_bn_momentum,
                                     output_stride=output_stride, encoder_depth=encoder_depth)
    taps = encoder(x)
    taps = list(taps) if isinstance(taps, (list, tuple)) else [taps]
    return taps, tuple(encoders.tap_stride(stride, output_stride) for stride in strides)


def pyramid_pooling(x, bins, filters, name):
    """Zhao et al.'s pyramid pooling module: x and, per bin count, pooled, 1x1 conv + BN + ReLU, resized back.

    The pooled levels are resized bilinearly to x's size and concatenated with x (channels:
    x's + len(bins) * filters). Works at any run-time size (`BinAveragePooling2D`).
    """
    levels = [x]
    for bins_per_side in bins:
        pooled = BinAveragePooling2D(bins_per_side, name=f"{name}_pool{bins_per_side}")(x)
        pooled = conv_bn_relu(pooled, filters, kernel_size=1, name=f"{name}_conv{bins_per_side}")
        levels.append(BilinearResizeToReference(name=f"{name}_resize{bins_per_side}")([pooled, x]))
    return keras.layers.Concatenate(name=f"{name}_concat")(levels)


def upsample_features(x, factor, name):
    """Bilinear upsampling by an integer factor (1 returns x)."""
    return x if factor == 1 else InterleavedBilinearUpsampling(factor, name=name)(x)


def scored_output(x, task, stride, reference, inputs):
    """Scores features at `stride` with a 1x1 conv, upsamples the scores bilinearly to the input, applies the head.

    Scores (a few channels) are upsampled rather than features (hundreds): the papers' order, and the
    same result for a 1x1 conv, which commutes with bilinear interpolation.
    """
    x = score_conv(task.score_channels, name="head_conv")(x)
    x = upsample_features(x, stride, name="upsample_scores")
    x = layers.CropToReference(name="crop_to_input")([x, reference])
    return task.head(x, inputs, scored=True)
