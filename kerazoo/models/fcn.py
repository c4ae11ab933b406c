"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer and Darrell, 2015)."""

import keras

from kerazoo import layers
from kerazoo.encoders import build_encoder
from kerazoo.models.blocks import model_input
from kerazoo.models.heads import output_activation, score_conv

FCN_STRIDES = {"fcn32s": 32, "fcn16s": 16, "fcn8s": 8}


def build_fcn(
    spec,
    num_classes,
    output_stride=8,
    encoder_weights=None,
    in_channels=3,
    input_shape=None,
    activation=None,
    freeze_encoder=False,
    encoder_bn_momentum=None,
    dropout=0.5,
):
    """FCN with skip fusion down to `output_stride` (32, 16 or 8).

    On VGG encoders fc6 and fc7 become 7x7x4096 and 1x1x4096 convolutions with dropout, as in the
    paper; other encoders score their stride-32 features directly. Scores from the stride-16 (pool4)
    and stride-8 (pool3) features are fused by addition after 2x upsampling, and the last upsampling
    goes back to the input size. Every upsampling is a learnable transposed convolution initialised to
    bilinear interpolation. The paper pads the input by 100 pixels and crops; here the input is padded
    to a multiple of 32 and the output cropped back, which gives the same alignment without the
    wasted border.

    Args:
        spec: the encoder's `EncoderSpec`.
        num_classes: number of classes scored by the score layers.
        output_stride: 32 (FCN-32s), 16 (FCN-16s) or 8 (FCN-8s).
        encoder_bn_momentum: momentum of the encoder's BatchNormalization layers (None keeps Keras
            Applications' value).
        dropout: dropout rate after fc6 and fc7 (VGG only).
        Other arguments: see `kerazoo.create_model`.
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32; got {output_stride!r}")
    skip8, skip16 = spec.fcn_skip_layers or spec.feature_layers[2:4]
    inputs = model_input(input_shape, in_channels)
    x = layers.EncoderPreprocessing(spec.preprocessing, name="preprocessing")(inputs)
    x = layers.PadToMultiple(spec.output_stride, name="pad_to_stride")(x)
    encoder = build_encoder(
        spec, in_channels, encoder_weights, trainable=not freeze_encoder,
        tap_layers=(skip8, skip16, spec.feature_layers[-1]), bn_momentum=encoder_bn_momentum,
    )
    pool3, pool4, x = encoder(x)
    if spec.fully_connected_head:
        x = keras.layers.Conv2D(4096, 7, padding="same", activation="relu", name="fc6")(x)
        x = keras.layers.Dropout(dropout, name="drop6")(x)
        x = keras.layers.Conv2D(4096, 1, activation="relu", name="fc7")(x)
        x = keras.layers.Dropout(dropout, name="drop7")(x)
    x = score_conv(num_classes, name="score_fr")(x)
    if output_stride <= 16:
        x = layers.BilinearConv2DTranspose(num_classes, 2, name="upscore2")(x)
        x = keras.layers.Add(name="fuse_pool4")([x, score_conv(num_classes, name="score_pool4")(pool4)])
    if output_stride == 8:
        x = layers.BilinearConv2DTranspose(num_classes, 2, name="upscore_pool4")(x)
        x = keras.layers.Add(name="fuse_pool3")([x, score_conv(num_classes, name="score_pool3")(pool3)])
    x = layers.BilinearConv2DTranspose(num_classes, output_stride, name=f"upscore{output_stride}")(x)
    x = layers.CropToReference(name="crop_to_input")([x, inputs])
    outputs = output_activation(activation)(x)
    return keras.Model(inputs, outputs, name=f"fcn{output_stride}s_{spec.name}")
