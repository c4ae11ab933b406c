"""UPerNet (Xiao, Liu, Zhou, Jiang, Sun. Unified Perceptual Parsing for Scene Understanding. ECCV 2018)."""

import keras

from kerazoo.models.blocks import conv_bn_relu, model_input, segmentation_task
from kerazoo.models.pyramid_blocks import (PYRAMID_BINS, check_positive_int, check_positive_ints, encoder_taps,
                                           pyramid_pooling, scored_output, upsample_features)

FPN_STRIDES = (4, 8, 16, 32)


def build_upernet(
    spec,
    num_classes,
    encoder_weights=None,
    in_channels=3,
    input_shape=None,
    activation=None,
    freeze_encoder=False,
    encoder_bn_momentum=None,
    bins=PYRAMID_BINS,
    pyramid_filters=512,
    decoder_filters=256,
    task=None,
):
    """UPerNet's semantic head: pyramid pooling on the stride-32 features, FPN top-down fusion, fuse at stride 4.

    As the authors' implementation (CSAILVision/semantic-segmentation-pytorch, `UPerNet`): the stride-32
    features go through the pyramid pooling module (`pyramid_filters` per level, 1x1 conv, batch norm,
    ReLU) and a 3x3 convolution to `decoder_filters`; the stride-16, 8 and 4 features each get a 1x1
    lateral convolution; top-down, each level adds the bilinear 2x upsample of the level above and goes
    through a 3x3 convolution; all four levels are upsampled to stride 4, concatenated and fused by a
    3x3 convolution; a 1x1 convolution scores them and the scores are upsampled by 4 to the input.
    Every convolution has batch norm and ReLU. The input is padded to a multiple of 32 inside and the
    output cropped back, so any height and width work.

    Args:
        spec: the encoder's `EncoderSpec`.
        num_classes: output channels of the head.
        bins: the pyramid levels, bins per side (1, 2, 3, 6).
        pyramid_filters: filters of each pyramid level's 1x1 convolution (the authors' 512).
        decoder_filters: channels of the FPN and the fusion (the authors' 256).
        encoder_bn_momentum: momentum of the encoder's BatchNormalization layers (None keeps Keras').
        task: a `kerazoo.tasks.Task` (input scaling and head); None is segmentation.
        Other arguments: see `kerazoo.create_model`.
    """
    bins = check_positive_ints(bins, "bins")
    check_positive_int(pyramid_filters, "pyramid_filters")
    check_positive_int(decoder_filters, "decoder_filters")
    task = task or segmentation_task(num_classes, in_channels, activation)
    inputs = model_input(input_shape, in_channels)
    reference = x = task.preprocess(inputs, spec.preprocessing)
    features, strides = encoder_taps(x, spec, FPN_STRIDES, in_channels, encoder_weights, freeze_encoder,
                                     encoder_bn_momentum)
    top = pyramid_pooling(features[-1], bins, pyramid_filters, name="pyramid")
    top = conv_bn_relu(top, decoder_filters, kernel_size=3, name="pyramid_fuse")
    levels = [top]  # deepest first
    for feature, stride, above_stride in zip(features[-2::-1], strides[-2::-1], strides[::-1]):
        lateral = conv_bn_relu(feature, decoder_filters, kernel_size=1, name=f"fpn_lateral{stride}")
        above = upsample_features(levels[-1], above_stride // stride, name=f"fpn_upsample{stride}")
        levels.append(keras.layers.Add(name=f"fpn_add{stride}")([lateral, above]))
    finest = strides[0]
    fused = [top]
    for level, stride in zip(levels[1:], strides[-2::-1]):
        fused.append(conv_bn_relu(level, decoder_filters, kernel_size=3, name=f"fpn_conv{stride}"))
    fused = [upsample_features(level, stride // finest, name=f"fuse_upsample{stride}")
             for level, stride in zip(fused, strides[::-1])]
    x = keras.layers.Concatenate(name="fuse_concat")(fused[::-1])  # finest first, as the authors
    x = conv_bn_relu(x, decoder_filters, kernel_size=3, name="fuse_conv")
    outputs = scored_output(x, task, finest, reference, inputs)
    return keras.Model(inputs, outputs, name=f"upernet_{spec.name}")
