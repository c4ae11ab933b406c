"""PSPNet (Zhao, Shi, Qi, Wang, Jia. Pyramid Scene Parsing Network. CVPR 2017) on every registered encoder."""

import keras

from kerazoo.models.blocks import conv_bn_relu, model_input, segmentation_task
from kerazoo.models.pyramid_blocks import (PYRAMID_BINS, check_positive_int, check_positive_ints, check_rate,
                                           encoder_taps, pyramid_pooling, scored_output)


def build_pspnet(
    spec,
    num_classes,
    encoder_weights=None,
    in_channels=3,
    input_shape=None,
    activation=None,
    freeze_encoder=False,
    encoder_bn_momentum=None,
    output_stride=8,
    encoder_depth=5,
    bins=PYRAMID_BINS,
    decoder_filters=512,
    fuse_kernel_size=3,
    dropout=0.1,
    task=None,
):
    """PSPNet: the pyramid pooling module on the encoder's deepest features, a 3x3 convolution, scores.

    As the paper: the whole encoder runs dilated at `output_stride` 8; its deepest features are pooled
    into 1x1, 2x2, 3x3 and 6x6 bins, each level reduced by a 1x1 convolution to 1/len(bins) of the
    feature channels (batch norm, ReLU) and resized back bilinearly; the concatenation with the features
    goes through a 3x3 convolution of 512 filters (batch norm, ReLU), dropout 0.1 and a 1x1 score
    convolution, whose scores are upsampled bilinearly to the input. Pooling works at any run-time
    size (`layers.BinAveragePooling2D`), so any input height and width work.

    segmentation_models_pytorch's PSPNet stops its encoder after the stride-8 stage instead
    (encoder_depth=3, no dilation): much lighter, without the deep features the paper pools; `encoder_depth=3`
    gives that here.

    Args:
        spec: the encoder's `EncoderSpec`.
        num_classes: output channels of the head.
        output_stride: 8 (the paper's), 16 or 32: the stride the encoder's last stages run at (dilated).
        encoder_depth: 5 (the whole encoder), 4 or 3: the encoder ends at stride 2 ** encoder_depth.
        bins: the pyramid levels, bins per side (the paper's 1, 2, 3, 6).
        decoder_filters: filters of the convolution after the pyramid (the paper's 512).
        fuse_kernel_size: kernel size of that convolution: the paper's 3, or segmentation_models_pytorch's 1
            (with encoder_depth=3 that 3x3 convolution costs about four times the encoder's FLOPs).
        dropout: dropout rate before the score convolution (the paper's 0.1).
        encoder_bn_momentum: momentum of the encoder's BatchNormalization layers (None keeps Keras').
        task: a `kerazoo.tasks.Task` (input scaling and head); None is segmentation.
        Other arguments: see `kerazoo.create_model`.
    """
    bins = check_positive_ints(bins, "bins")
    check_positive_int(decoder_filters, "decoder_filters")
    check_positive_int(fuse_kernel_size, "fuse_kernel_size")
    check_rate(dropout, "dropout")
    task = task or segmentation_task(num_classes, in_channels, activation)
    inputs = model_input(input_shape, in_channels)
    reference = x = task.preprocess(inputs, spec.preprocessing)
    (x,), (stride,) = encoder_taps(x, spec, (2**encoder_depth,), in_channels, encoder_weights, freeze_encoder,
                                   encoder_bn_momentum, output_stride=output_stride, encoder_depth=encoder_depth)
    level_filters = max(1, x.shape[-1] // len(bins))
    x = pyramid_pooling(x, bins, level_filters, name="pyramid")
    x = conv_bn_relu(x, decoder_filters, kernel_size=fuse_kernel_size, name="pyramid_fuse")
    x = keras.layers.Dropout(dropout, name="pyramid_dropout")(x)
    outputs = scored_output(x, task, stride, reference, inputs)
    return keras.Model(inputs, outputs, name=f"pspnet_{spec.name}")
