"""FPN with the Panoptic FPN semantic segmentation branch (Kirillov, Girshick, He and Dollar, 2019)."""

import keras

from kerazoo import layers
from kerazoo.models.blocks import model_input, segmentation_task
from kerazoo.models.skip_blocks import check_positive_int, padded_encoder_features, scores_at_input_size

PYRAMID_STRIDES = (4, 8, 16, 32)
NORMALIZATIONS = ("group", "batch")
GROUPS = 32  # Panoptic FPN's group norm


def build_fpn(
    spec,
    num_classes,
    encoder_weights=None,
    in_channels=3,
    input_shape=None,
    activation=None,
    freeze_encoder=False,
    encoder_bn_momentum=None,
    pyramid_filters=256,
    segmentation_filters=128,
    normalization="group",
    task=None,
):
    """Feature pyramid on a Keras Applications encoder, decoded by Panoptic FPN's segmentation branch.

    The pyramid: a 1x1 lateral convolution brings the encoder's features at strides 4, 8, 16 and 32 to
    `pyramid_filters` channels; top-down, each level adds the 2x nearest upsampling of the level above
    (Lin et al.). The branch: each level goes through 3x3 convolution + normalisation + ReLU blocks,
    each but the last level's followed by a 2x bilinear upsampling, until stride 4 (the stride-32 level
    takes three blocks, stride 16 two, strides 8 and 4 one); the four maps are summed, a 1x1 convolution
    scores them and the scores are upsampled 4x (bilinear) to the input. As in
    segmentation_models_pytorch, the pyramid levels have no 3x3 smoothing convolution of their own.
    The input is padded to a multiple of the output stride inside the model and the output cropped back.

    Args:
        spec: the encoder's `EncoderSpec`.
        num_classes: output channels of the head.
        pyramid_filters: channels of the pyramid (the paper's 256).
        segmentation_filters: channels of the segmentation branch (the paper's 128).
        normalization: "group" (the paper's group norm, 32 groups: batch-size independent) or "batch".
        task: a `kerazoo.tasks.Task` (input scaling and head); None is segmentation.
        Other arguments: see `kerazoo.create_model`.
    """
    check_positive_int(pyramid_filters, "pyramid_filters")
    check_positive_int(segmentation_filters, "segmentation_filters")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}; got {normalization!r}")
    if normalization == "group" and segmentation_filters % GROUPS:
        raise ValueError(f"group normalization splits segmentation_filters into {GROUPS} groups; got "
                         f"segmentation_filters={segmentation_filters} (use a multiple of {GROUPS}, or "
                         "normalization='batch')")
    task = task or segmentation_task(num_classes, in_channels, activation)
    inputs = model_input(input_shape, in_channels)
    reference = task.preprocess(inputs, spec.preprocessing)
    by_stride = padded_encoder_features(reference, spec, PYRAMID_STRIDES, in_channels, encoder_weights,
                                        freeze_encoder, encoder_bn_momentum)
    features = [by_stride[stride] for stride in PYRAMID_STRIDES]  # every registered encoder has strides 4 .. 32
    pyramid = [None] * len(features)
    for index in range(len(features) - 1, -1, -1):
        stride = PYRAMID_STRIDES[index]
        lateral = keras.layers.Conv2D(pyramid_filters, 1, name=f"fpn_lateral{stride}")(features[index])
        if index == len(features) - 1:
            pyramid[index] = lateral
        else:
            above = layers.AnySizeUpSampling2D(2, "nearest", name=f"fpn_topdown{stride}")(
                pyramid[index + 1])
            pyramid[index] = keras.layers.Add(name=f"fpn_merge{stride}")([above, lateral])
    branches = []
    for index, level in enumerate(pyramid):
        stride = PYRAMID_STRIDES[index]
        x = level
        for block in range(max(index, 1)):  # stride 4: one block; stride 2^(k+2): k blocks, each upsampling
            name = f"segmentation_p{stride}_block{block}"
            x = keras.layers.Conv2D(segmentation_filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
            x = (keras.layers.GroupNormalization(GROUPS, name=f"{name}_gn") if normalization == "group"
                 else layers.BatchNormalization(name=f"{name}_bn"))(x)
            x = keras.layers.ReLU(name=f"{name}_relu")(x)
            if index > 0:
                x = layers.AnySizeUpSampling2D(2, "bilinear", name=f"{name}_upsample")(x)
        branches.append(x)
    x = keras.layers.Add(name="segmentation_sum")(branches)
    x = scores_at_input_size(x, task.score_channels, PYRAMID_STRIDES[0], reference)
    outputs = task.head(x, inputs, scored=True)
    return keras.Model(inputs, outputs, name=f"fpn_{spec.name}")
