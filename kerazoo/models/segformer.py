"""SegFormer's all-MLP decoder (Xie, Wang, Yu, Anandkumar, Alvarez and Luo, 2021) on any encoder."""

import keras

from kerazoo import layers
from kerazoo.models.blocks import conv_bn_relu, model_input, segmentation_task
from kerazoo.models.skip_blocks import check_positive_int, padded_encoder_features, scores_at_input_size

MLP_STRIDES = (4, 8, 16, 32)


def build_segformer(
    spec,
    num_classes,
    encoder_weights=None,
    in_channels=3,
    input_shape=None,
    activation=None,
    freeze_encoder=False,
    encoder_bn_momentum=None,
    embedding_filters=256,
    dropout=0.1,
    task=None,
):
    """SegFormer's all-MLP decoder on a Keras Applications encoder.

    The encoder's features at strides 4, 8, 16 and 32 each go through a linear layer (a 1x1
    convolution with bias) to `embedding_filters` channels and are upsampled (bilinear) to stride 4;
    the four are concatenated, fused by a 1x1 convolution with batch norm and ReLU, passed through
    dropout, scored by a 1x1 convolution and the scores upsampled 4x (bilinear) to the input size.
    Xie et al. pair the decoder with their Mix Transformer; here it runs on any registered encoder
    (no Mix Transformer is registered). The input is padded to a multiple of the output stride inside
    the model and the output cropped back.

    Args:
        spec: the encoder's `EncoderSpec`.
        num_classes: output channels of the head.
        embedding_filters: the decoder's embedding width (256 for MiT-B0/B1 in the paper, 768 for B2..B5).
        dropout: dropout rate before the classifier (the paper's 0.1); 0 turns it off.
        task: a `kerazoo.tasks.Task` (input scaling and head); None is segmentation.
        Other arguments: see `kerazoo.create_model`.
    """
    check_positive_int(embedding_filters, "embedding_filters")
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a rate in [0, 1); got {dropout!r}")
    task = task or segmentation_task(num_classes, in_channels, activation)
    inputs = model_input(input_shape, in_channels)
    reference = task.preprocess(inputs, spec.preprocessing)
    by_stride = padded_encoder_features(reference, spec, MLP_STRIDES, in_channels, encoder_weights, freeze_encoder,
                                        encoder_bn_momentum)
    features = [by_stride[stride] for stride in MLP_STRIDES]  # every registered encoder has strides 4 .. 32
    embedded = []
    for stride, feature in zip(MLP_STRIDES, features):
        x = keras.layers.Conv2D(embedding_filters, 1, name=f"mlp_linear{stride}")(feature)
        factor = stride // MLP_STRIDES[0]
        if factor > 1:
            x = layers.AnySizeUpSampling2D(factor, "bilinear", name=f"mlp_upsample{stride}")(x)
        embedded.append(x)
    # Deepest first, as in the reference implementation (the order only permutes the fuse weights).
    x = keras.layers.Concatenate(name="mlp_concat")(embedded[::-1])
    x = conv_bn_relu(x, embedding_filters, kernel_size=1, name="mlp_fuse")
    if dropout:
        x = keras.layers.Dropout(dropout, name="mlp_dropout")(x)
    x = scores_at_input_size(x, task.score_channels, MLP_STRIDES[0], reference)
    outputs = task.head(x, inputs, scored=True)
    return keras.Model(inputs, outputs, name=f"segformer_{spec.name}")
