"""Blocks shared by the skip-connection decoders (U-Net++, FPN, LinkNet, SegFormer's MLP decoder)."""

import keras

from kerazoo import layers
from kerazoo.encoders import build_encoder, feature_strides


def padded_encoder_features(x, spec, strides, in_channels, encoder_weights, freeze_encoder, encoder_bn_momentum):
    """Pads preprocessed images to a multiple of the encoder's output stride and returns its features.

    Padding inside the model makes every feature map exactly `input / stride` large (rounded up), so
    decoders upsample by fixed factors and add or concatenate without size checks; the caller crops
    the output back to the input with `layers.CropToReference`.

    Args:
        x: preprocessed images (what `task.preprocess` returned).
        spec: the encoder's `EncoderSpec`.
        strides: the strides whose features the decoder takes (e.g. (4, 8, 16, 32)).
        in_channels, encoder_weights, freeze_encoder, encoder_bn_momentum: see `kerazoo.create_model`.

    Returns:
        A dict stride -> feature tensor for the strides the encoder has (ConvNeXt has no stride 2: its
        stem patchifies straight to stride 4); a decoder treats an absent stride as a stage without skip.
    """
    available = tuple(stride for stride in strides if stride in feature_strides(spec))
    x = layers.PadToMultiple(spec.output_stride, name="pad_to_stride")(x)
    encoder = build_encoder(spec, in_channels, encoder_weights, trainable=not freeze_encoder,
                            tap_layers=spec.feature_names(available), bn_momentum=encoder_bn_momentum)
    features = encoder(x)
    return dict(zip(available, features if isinstance(features, (list, tuple)) else [features]))


def scores_at_input_size(x, score_channels, factor, reference, name="decoder_scores"):
    """1x1 scores of features at stride `factor`, bilinearly upsampled by `factor` and cropped to `reference`.

    Panoptic FPN and SegFormer score at stride 4 and upsample the scores, not the features: the 1x1
    convolution commutes with the interpolation, and upsampling `score_channels` costs far less than
    upsampling 128 or 256 feature channels. The caller finishes with `task.head(x, inputs, scored=True)`.
    """
    x = keras.layers.Conv2D(score_channels, 1, name=name)(x)
    if factor > 1:
        x = layers.AnySizeUpSampling2D(factor, "bilinear", name=f"{name}_upsample")(x)
    return layers.CropToReference(name="crop_to_input")([x, reference])


def check_positive_int(value, name):
    """Raises a ValueError naming `name` unless `value` is a positive int."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value
