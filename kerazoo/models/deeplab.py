"""DeepLabV3 (Chen et al., 2017) and DeepLabV3+ (Chen et al., 2018) on every registered encoder."""

import keras

from kerazoo import layers
from kerazoo.layers.pyramid import BilinearResizeToReference, BinAveragePooling2D
from kerazoo.models.blocks import conv_bn_relu, model_input, segmentation_task
from kerazoo.models.pyramid_blocks import (check_choice, check_positive_int, check_positive_ints, check_rate,
                                           encoder_taps, scored_output, upsample_features)

DEEPLAB_OUTPUT_STRIDES = (8, 16)
# The papers' atrous rates at output stride 16; at 8 they double (Chen et al. 2017, section 4.1).
RATES_AT_STRIDE_16 = (6, 12, 18)


def atrous_rates_for(output_stride):
    """The papers' ASPP rates at `output_stride`: (6, 12, 18) at 16, (12, 24, 36) at 8."""
    check_choice(output_stride, DEEPLAB_OUTPUT_STRIDES, "output_stride")
    return tuple(rate * 16 // output_stride for rate in RATES_AT_STRIDE_16)


def _conv3x3(x, filters, dilation_rate=1, separable=False, name=None):
    """3x3 convolution (optionally depthwise separable, as DeepLabV3+ on Xception), batch norm, ReLU."""
    convolution = keras.layers.SeparableConv2D if separable else layers.DilatedConv2D
    x = convolution(filters, 3, padding="same", dilation_rate=dilation_rate, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def aspp(x, rates, filters=256, separable=False, dropout=0.1):
    """Atrous spatial pyramid pooling (Chen et al. 2017, section 3.3) on the encoder's deepest features.

    Five branches of `filters` channels, each with batch norm and ReLU: a 1x1 convolution, 3x3
    convolutions at each atrous rate, and image pooling (the mean over height and width, a 1x1
    convolution, broadcast back to the map's run-time size). Concatenated, projected by a 1x1
    convolution, then dropout.
    """
    branches = [conv_bn_relu(x, filters, kernel_size=1, name="aspp_conv1x1")]
    for index, rate in enumerate(rates, start=1):
        branches.append(_conv3x3(x, filters, rate, separable, name=f"aspp_atrous{index}"))
    pooled = BinAveragePooling2D(1, name="aspp_image_pool")(x)
    pooled = conv_bn_relu(pooled, filters, kernel_size=1, name="aspp_image_conv")
    branches.append(BilinearResizeToReference(name="aspp_image_broadcast")([pooled, x]))
    x = keras.layers.Concatenate(name="aspp_concat")(branches)
    x = conv_bn_relu(x, filters, kernel_size=1, name="aspp_projection")
    return keras.layers.Dropout(dropout, name="aspp_dropout")(x)


def _check_deeplab_options(output_stride, atrous_rates, decoder_filters, dropout):
    check_choice(output_stride, DEEPLAB_OUTPUT_STRIDES, "output_stride")
    rates = atrous_rates_for(output_stride) if atrous_rates is None else check_positive_ints(atrous_rates,
                                                                                              "atrous_rates")
    check_positive_int(decoder_filters, "decoder_filters")
    check_rate(dropout, "dropout")
    return rates


def build_deeplabv3(
    spec,
    num_classes,
    encoder_weights=None,
    in_channels=3,
    input_shape=None,
    activation=None,
    freeze_encoder=False,
    encoder_bn_momentum=None,
    output_stride=16,
    atrous_rates=None,
    decoder_filters=256,
    separable=False,
    dropout=0.1,
    task=None,
):
    """DeepLabV3: ASPP on the encoder's deepest features, scored and upsampled bilinearly to the input.

    The encoder's last stages run dilated at `output_stride` (16 or 8) instead of striding to 32. ASPP
    (see `aspp`) follows, then a 1x1 score convolution whose output is upsampled bilinearly by the
    output stride. The input is padded to a multiple of the output stride inside and the output cropped
    back, so any height and width work.

    Args:
        spec: the encoder's `EncoderSpec`.
        num_classes: output channels of the head.
        output_stride: 16 (default, as the paper trains) or 8.
        atrous_rates: the ASPP rates; None takes the paper's (6, 12, 18) at stride 16, (12, 24, 36) at 8.
        decoder_filters: channels of every ASPP branch and the projection (the paper's 256).
        separable: depthwise separable 3x3 atrous convolutions (as DeepLabV3+ on Xception).
        dropout: dropout rate after the ASPP projection.
        encoder_bn_momentum: momentum of the encoder's BatchNormalization layers (None keeps Keras').
        task: a `kerazoo.tasks.Task` (input scaling and head); None is segmentation.
        Other arguments: see `kerazoo.create_model`.
    """
    rates = _check_deeplab_options(output_stride, atrous_rates, decoder_filters, dropout)
    task = task or segmentation_task(num_classes, in_channels, activation)
    inputs = model_input(input_shape, in_channels)
    reference = x = task.preprocess(inputs, spec.preprocessing)
    (x,), (stride,) = encoder_taps(x, spec, (32,), in_channels, encoder_weights, freeze_encoder,
                                   encoder_bn_momentum, output_stride=output_stride)
    x = aspp(x, rates, decoder_filters, separable, dropout)
    outputs = scored_output(x, task, stride, reference, inputs)
    return keras.Model(inputs, outputs, name=f"deeplabv3_{spec.name}")


def build_deeplabv3plus(
    spec,
    num_classes,
    encoder_weights=None,
    in_channels=3,
    input_shape=None,
    activation=None,
    freeze_encoder=False,
    encoder_bn_momentum=None,
    output_stride=16,
    atrous_rates=None,
    decoder_filters=256,
    low_level_filters=48,
    separable=False,
    dropout=0.1,
    task=None,
):
    """DeepLabV3+: DeepLabV3's ASPP and a decoder that refines it with the encoder's stride-4 features.

    After ASPP (see `build_deeplabv3`) the features are upsampled bilinearly to stride 4 and
    concatenated with a 1x1 projection (48 channels, batch norm, ReLU) of the encoder's stride-4
    features; two 3x3 convolutions of 256 filters refine them, a 1x1 convolution scores them, and the
    scores are upsampled bilinearly by 4 to the input's size (Chen et al. 2018, section 3.1).

    Args:
        low_level_filters: channels of the stride-4 projection (the paper's 48).
        separable: depthwise separable 3x3 convolutions in ASPP and the decoder (the paper's Xception
            model; segmentation_models_pytorch's default).
        Others: see `build_deeplabv3` and `kerazoo.create_model`.
    """
    rates = _check_deeplab_options(output_stride, atrous_rates, decoder_filters, dropout)
    check_positive_int(low_level_filters, "low_level_filters")
    task = task or segmentation_task(num_classes, in_channels, activation)
    inputs = model_input(input_shape, in_channels)
    reference = x = task.preprocess(inputs, spec.preprocessing)
    (low_level, x), (low_stride, stride) = encoder_taps(
        x, spec, (4, 32), in_channels, encoder_weights, freeze_encoder, encoder_bn_momentum,
        output_stride=output_stride)
    x = aspp(x, rates, decoder_filters, separable, dropout)
    x = upsample_features(x, stride // low_stride, name="upsample_aspp")
    low_level = conv_bn_relu(low_level, low_level_filters, kernel_size=1, name="decoder_low_level")
    x = keras.layers.Concatenate(name="decoder_concat")([x, low_level])
    x = _conv3x3(x, decoder_filters, separable=separable, name="decoder_conv1")
    x = _conv3x3(x, decoder_filters, separable=separable, name="decoder_conv2")
    outputs = scored_output(x, task, low_stride, reference, inputs)
    return keras.Model(inputs, outputs, name=f"deeplabv3plus_{spec.name}")
