"""LinkNet (Chaurasia and Culurciello, 2017): a light decoder whose blocks add, not concatenate, the skips."""

import keras

from kerazoo import layers
from kerazoo.encoders import STRIDES
from kerazoo.models.blocks import conv_bn_relu, model_input, segmentation_task
from kerazoo.models.skip_blocks import check_positive_int, padded_encoder_features


def build_linknet(
    spec,
    num_classes,
    encoder_weights=None,
    in_channels=3,
    input_shape=None,
    activation=None,
    freeze_encoder=False,
    encoder_bn_momentum=None,
    final_filters=32,
    batch_norm=True,
    task=None,
):
    """LinkNet decoder on a Keras Applications encoder.

    Five decoder blocks go from stride 32 back to stride 1. A block on C channels is a 1x1 convolution
    to C/4, a 3x3 transposed convolution with stride 2 (C/4 to C/4) and a 1x1 convolution to the
    channels of the encoder's features at the new stride, each with batch norm and ReLU; those
    features are then added (LinkNet's "link"; a stride the encoder lacks, such as ConvNeXt's 2, keeps the
    block's input width and adds nothing). The last block has no skip and ends with
    `final_filters` channels, which the head scores. The input is padded to a multiple of the output
    stride inside the model and the output cropped back.

    Args:
        spec: the encoder's `EncoderSpec`.
        num_classes: output channels of the head.
        final_filters: channels of the last block (stride 1).
        batch_norm: batch normalisation after each decoder convolution.
        task: a `kerazoo.tasks.Task` (input scaling and head); None is segmentation.
        Other arguments: see `kerazoo.create_model`.
    """
    check_positive_int(final_filters, "final_filters")
    if not isinstance(batch_norm, bool):
        raise ValueError(f"batch_norm must be True or False; got {batch_norm!r}")
    task = task or segmentation_task(num_classes, in_channels, activation)
    inputs = model_input(input_shape, in_channels)
    reference = task.preprocess(inputs, spec.preprocessing)
    by_stride = padded_encoder_features(reference, spec, STRIDES, in_channels, encoder_weights, freeze_encoder,
                                        encoder_bn_momentum)
    x = by_stride[max(STRIDES)]
    for stage, stride in enumerate((16, 8, 4, 2, 1)):
        name = f"decoder_stage{stage}"
        skip = by_stride.get(stride)
        if stride == 1:
            filters = final_filters
        else:  # the skip's width; a stride the encoder lacks (ConvNeXt's 2) keeps the width and adds nothing
            filters = skip.shape[-1] if skip is not None else x.shape[-1]
        x = linknet_block(x, filters, batch_norm, name)
        if skip is not None:
            x = keras.layers.Add(name=f"{name}_link")([x, skip])
    x = layers.CropToReference(name="crop_to_input")([x, reference])
    outputs = task.head(x, inputs)
    return keras.Model(inputs, outputs, name=f"linknet_{spec.name}")


def linknet_block(x, filters, batch_norm, name):
    """LinkNet's decoder block: 1x1 to C/4, 3x3 stride-2 transposed convolution, 1x1 to `filters`."""
    reduced = max(x.shape[-1] // 4, 1)
    x = conv_bn_relu(x, reduced, kernel_size=1, batch_norm=batch_norm, name=f"{name}_reduce")
    x = keras.layers.Conv2DTranspose(reduced, 3, strides=2, padding="same", use_bias=not batch_norm,
                                     name=f"{name}_upsample")(x)
    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_upsample_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_upsample_relu")(x)
    return conv_bn_relu(x, filters, kernel_size=1, batch_norm=batch_norm, name=f"{name}_expand")
