"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer and Darrell, 2015)."""

import keras

from kerazoo import layers
from kerazoo.encoders import build_encoder
from kerazoo.models.blocks import model_input, segmentation_task
from kerazoo.tasks.heads import score_conv

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
    task=None,
):
    """FCN with skip fusion down to `output_stride` (32, 16 or 8).

    The encoder's classifier convolutions (`spec.classifier`; VGG's fc6 and fc7 as 7x7x4096 and
    1x1x4096 convolutions) follow its stride-32 features, each with dropout, as in the paper; encoders
    without one score their stride-32 features directly. FCN-16s adds scores from the stride-16 tap
    (pool4), FCN-8s also from the stride-8 tap (pool3), each fused by addition after 2x upsampling; the
    last upsampling goes back to the input size. Every upsampling is a learnable transposed
    convolution initialised to bilinear interpolation. The paper pads the input by 100 pixels and
    crops; here the input is padded to a multiple of 32 and the output cropped back, which gives the
    same alignment without the wasted border.

    Args:
        spec: the encoder's `EncoderSpec`; see `skip_layers` for the taps FCN takes.
        num_classes: number of classes scored by the score layers.
        output_stride: 32 (FCN-32s), 16 (FCN-16s) or 8 (FCN-8s).
        encoder_bn_momentum: momentum of the encoder's BatchNormalization layers (None keeps Keras
            Applications' value).
        dropout: dropout rate after each classifier convolution (encoders with a classifier only).
        task: a `kerazoo.tasks.Task` (input scaling and head); None is segmentation. The score layers
            have its `score_channels` (the classes for segmentation) and its head follows them.
        Other arguments: see `kerazoo.create_model`.
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32; got {output_stride!r}")
    task = task or segmentation_task(num_classes, in_channels, activation)
    num_classes = task.score_channels
    skip8, skip16 = skip_layers(spec)
    inputs = model_input(input_shape, in_channels)
    reference = x = task.preprocess(inputs, spec.preprocessing)
    x = layers.PadToMultiple(spec.output_stride, name="pad_to_stride")(x)
    encoder = build_encoder(
        spec, in_channels, encoder_weights, trainable=not freeze_encoder,
        tap_layers=(skip8, skip16, spec.features[spec.output_stride]), bn_momentum=encoder_bn_momentum,
    )
    pool3, pool4, x = encoder(x)
    # Caffe's names: fc6 and fc7 follow VGG's five convolution stages.
    for number, convolution in enumerate(spec.classifier, start=6):
        # 1x1 keeps "valid" padding (same result): the saved config stays what it was.
        padding = "same" if convolution.kernel_size > 1 else "valid"
        x = keras.layers.Conv2D(convolution.filters, convolution.kernel_size, padding=padding, activation="relu",
                                name=f"fc{number}")(x)
        x = keras.layers.Dropout(dropout, name=f"drop{number}")(x)
    x = score_conv(num_classes, name="score_fr")(x)
    if output_stride <= 16:
        x = layers.BilinearConv2DTranspose(num_classes, 2, name="upscore2")(x)
        x = keras.layers.Add(name="fuse_pool4")([x, score_conv(num_classes, name="score_pool4")(pool4)])
    if output_stride == 8:
        x = layers.BilinearConv2DTranspose(num_classes, 2, name="upscore_pool4")(x)
        x = keras.layers.Add(name="fuse_pool3")([x, score_conv(num_classes, name="score_pool3")(pool3)])
    x = layers.BilinearConv2DTranspose(num_classes, output_stride, name=f"upscore{output_stride}")(x)
    x = layers.CropToReference(name="crop_to_input")([x, reference])
    outputs = task.head(x, inputs, scored=True)
    return keras.Model(inputs, outputs, name=f"fcn{output_stride}s_{spec.name}")


def skip_layers(spec):
    """The encoder layers FCN fuses at strides 8 and 16.

    The outputs of the encoder's pooling into those strides where it pools in a separate layer (VGG:
    pool3 and pool4, as in Long et al.), else its deepest features at those strides.
    """
    return tuple(spec.pooled_features.get(stride, spec.features[stride]) for stride in (8, 16))
