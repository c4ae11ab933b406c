"""Encoders: Keras Applications backbones, described once in a spec table.

Every fact a decoder needs about an encoder lives in its `EncoderSpec`: where its features at each
stride are, how it wants its pixels preprocessed, and (for the decoders that need them) its VGG block
structure. Decoders read the spec; they never test the encoder's name.
"""

import dataclasses
import os
from typing import Callable

import keras
import numpy as np

from kerazoo.registry import Registry

STRIDES = (2, 4, 8, 16, 32)


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """What kerazoo knows about one encoder.

    Attributes:
        name: registry name, e.g. "resnet50".
        constructor: the `keras.applications` function.
        feature_layers: layer names of the deepest feature map at strides 2, 4, 8, 16, 32.
        preprocessing: `EncoderPreprocessing` mode: "caffe" or "tf".
        fcn_skip_layers: layers FCN takes its stride-8 and stride-16 skips from, when they differ from
            `feature_layers` (VGG: pool3 and pool4, as in Long et al.).
        fully_connected_head: True for VGG, whose fc6/fc7 FCN turns into 7x7 and 1x1 convolutions.
        conv_blocks: convolutions per block for VGG-style encoders (SegNet mirrors them); None otherwise.
    """

    name: str
    constructor: Callable
    feature_layers: tuple
    preprocessing: str
    fcn_skip_layers: tuple | None = None
    fully_connected_head: bool = False
    conv_blocks: tuple | None = None

    @property
    def output_stride(self):
        return STRIDES[-1]


ENCODERS = Registry("encoder")

ENCODERS.register(
    "vgg16",
    EncoderSpec(
        name="vgg16",
        constructor=keras.applications.VGG16,
        feature_layers=("block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3", "block5_pool"),
        preprocessing="caffe",
        fcn_skip_layers=("block3_pool", "block4_pool"),
        fully_connected_head=True,
        conv_blocks=(2, 2, 3, 3, 3),
    ),
)
ENCODERS.register(
    "vgg19",
    EncoderSpec(
        name="vgg19",
        constructor=keras.applications.VGG19,
        feature_layers=("block2_conv2", "block3_conv4", "block4_conv4", "block5_conv4", "block5_pool"),
        preprocessing="caffe",
        fcn_skip_layers=("block3_pool", "block4_pool"),
        fully_connected_head=True,
        conv_blocks=(2, 2, 4, 4, 4),
    ),
)
for _name, _constructor, _stage3_blocks, _stage4_blocks in (
    ("resnet50", keras.applications.ResNet50, 4, 6),
    ("resnet101", keras.applications.ResNet101, 4, 23),
    ("resnet152", keras.applications.ResNet152, 8, 36),
):
    ENCODERS.register(
        _name,
        EncoderSpec(
            name=_name,
            constructor=_constructor,
            feature_layers=(
                "conv1_relu",
                "conv2_block3_out",
                f"conv3_block{_stage3_blocks}_out",
                f"conv4_block{_stage4_blocks}_out",
                "conv5_block3_out",
            ),
            preprocessing="caffe",
        ),
    )
ENCODERS.register(
    "mobilenetv2",
    EncoderSpec(
        name="mobilenetv2",
        constructor=keras.applications.MobileNetV2,
        feature_layers=(
            "block_1_expand_relu",
            "block_3_expand_relu",
            "block_6_expand_relu",
            "block_13_expand_relu",
            "out_relu",
        ),
        preprocessing="tf",
    ),
)


def list_encoders():
    """Names of the registered encoders."""
    return ENCODERS.names()


def get_encoder_spec(name):
    """The `EncoderSpec` registered as `name`; raises a ValueError listing close matches."""
    return ENCODERS.get(name)


def _check_weights(encoder_weights):
    if encoder_weights is None or encoder_weights == "imagenet":
        return
    if not isinstance(encoder_weights, (str, os.PathLike)) or not os.path.isfile(encoder_weights):
        raise ValueError(
            "encoder_weights must be None, 'imagenet' or the path of an existing weights file "
            f"(as keras.applications accepts); got {encoder_weights!r}"
        )


def adapt_first_kernel(rgb_kernel, in_channels):
    """Adapts an RGB convolution kernel (..., 3, filters) to `in_channels` input channels.

    One channel gets the sum of the RGB slices (a grey image then gives the response the RGB net gave
    to grey); other counts repeat R, G, B cyclically and rescale by 3 / in_channels so that the
    response to a constant image keeps its magnitude (the convention of timm and
    segmentation_models_pytorch).
    """
    if in_channels == 3:
        return rgb_kernel
    if in_channels == 1:
        return rgb_kernel.sum(axis=-2, keepdims=True)
    repeats = [rgb_kernel[..., i % 3, :] for i in range(in_channels)]
    return np.stack(repeats, axis=-2) * (3.0 / in_channels)


def _transfer_weights(source, target, in_channels):
    """Copies weights layer by layer (matched by name), adapting the first convolution's input channels."""
    adapted_first = False
    for source_layer in source.layers:
        weights = source_layer.get_weights()
        if not weights:
            continue
        target_layer = target.get_layer(source_layer.name)
        if not adapted_first and isinstance(source_layer, keras.layers.Conv2D):
            weights = [adapt_first_kernel(weights[0], in_channels)] + weights[1:]
            adapted_first = True
        target_layer.set_weights(weights)


def build_application(spec, in_channels=3, encoder_weights=None):
    """The Keras Applications model of `spec` without its top, for any input size and channel count.

    `encoder_weights`: None, "imagenet" (Keras Applications' own download) or a weights file path.
    With in_channels other than 3 and pretrained weights, the first convolution's kernel is adapted
    from the RGB one (see `adapt_first_kernel`).
    """
    _check_weights(encoder_weights)
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int; got {in_channels!r}")
    if in_channels == 3 or encoder_weights is None:
        return spec.constructor(include_top=False, weights=encoder_weights, input_shape=(None, None, in_channels))
    application = spec.constructor(include_top=False, weights=None, input_shape=(None, None, in_channels))
    rgb = spec.constructor(include_top=False, weights=encoder_weights, input_shape=(None, None, 3))
    _transfer_weights(rgb, application, in_channels)
    return application


def set_batch_norm_momentum(model, momentum):
    """Sets the momentum of every BatchNormalization layer in `model` (a value in [0, 1)).

    Keras Applications' MobileNetV2 uses 0.999. Trained from scratch, its activations' variances
    shrink by orders of magnitude within a few hundred steps; moving statistics that lag behind
    (measured here: even with 0.99 after 300 steps) make inference-mode outputs meaningless. 0.9 keeps up.
    """
    if not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
        raise ValueError(f"encoder_bn_momentum must be a float in [0, 1) or None; got {momentum!r}")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)


def build_encoder(spec, in_channels=3, encoder_weights=None, trainable=True, tap_layers=None,
                  bn_momentum=None):
    """A Keras model from raw-size preprocessed images to the encoder's features at strides 2..32.

    Args:
        spec: an `EncoderSpec`.
        in_channels: number of input channels.
        encoder_weights: None, "imagenet" or a weights file path.
        trainable: False freezes the encoder (BatchNormalization then runs in inference mode).
        tap_layers: layer names to output instead of `spec.feature_layers`.
        bn_momentum: momentum for the encoder's BatchNormalization layers; None keeps Keras Applications'.

    Returns:
        A `keras.Model` named "<name>_encoder" whose outputs follow `tap_layers`.
    """
    application = build_application(spec, in_channels, encoder_weights)
    if bn_momentum is not None:
        set_batch_norm_momentum(application, bn_momentum)
    names = tuple(tap_layers or spec.feature_layers)
    outputs = [application.get_layer(name).output for name in names]
    encoder = keras.Model(application.inputs, outputs, name=f"{spec.name}_encoder")
    encoder.trainable = trainable
    return encoder
