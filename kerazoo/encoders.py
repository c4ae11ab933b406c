"""Encoders: Keras Applications backbones, described once in a spec table.

An `EncoderSpec` states facts about the encoder itself: which layer holds its features at each
stride, which layer is the output of its pooling into that stride (when it pools in a separate layer),
its plain convolution stages (VGG), its fully connected classifier as convolutions, and how it wants
its pixels preprocessed. Decoders pick the taps they need from these facts; they never test the
encoder's name, and the spec names no decoder.
"""

import dataclasses
import os
import types
from typing import Callable, Mapping, NamedTuple

import keras
import numpy as np

from kerazoo import layers
from kerazoo.utils.registry import Registry

STRIDES = (2, 4, 8, 16, 32)
# Encoders' own BatchNormalization layers become `layers.BatchNormalization` (fused) (same names, weights):
# one fused kernel per layer on TensorFlow. benchmarks/batch_norm.py turns it off to measure the gain.
FUSE_BATCH_NORM = True


class ConvStage(NamedTuple):
    """One stage of plain 3x3 convolutions that ends in 2x2 max pooling (a VGG block)."""

    convolutions: int
    filters: int


class ClassifierConvolution(NamedTuple):
    """A fully connected classifier layer as the convolution it equals on a feature map.

    `kernel_size` is the spatial extent the layer saw (VGG's first one, fc6, sees pool5's 7x7 at
    224x224), `filters` its units.
    """

    kernel_size: int
    filters: int


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """What kerazoo knows about one encoder.

    Attributes:
        name: registry name, e.g. "resnet50".
        constructor: the `keras.applications` function.
        features: stride (2, 4, 8, 16, 32) -> name of the layer whose output is the deepest feature
            map at that stride, i.e. the last one before the encoder downsamples again.
        preprocessing: `EncoderPreprocessing` mode: "caffe" or "tf".
        pooled_features: stride -> name of a separate pooling layer whose output enters that stride
            (VGG: block1_pool .. block5_pool; ResNet: only its stem's pool1_pool at stride 4). Strides
            reached by strided convolutions have no entry; MobileNetV2 has none at all.
        conv_stages: the encoder's plain convolution stages in order, each a `ConvStage` ending in
            2x2 max pooling (VGG16: 2, 2, 3, 3, 3 convolutions of 64 .. 512 filters); empty for
            encoders built of residual or inverted-residual blocks.
        classifier: the encoder's fully connected classifier layers (dropped with include_top=False)
            as `ClassifierConvolution`s (VGG: 7x7x4096 and 1x1x4096); empty for encoders whose
            classifier is global pooling and one dense layer.
    """

    name: str
    constructor: Callable
    features: Mapping[int, str]
    preprocessing: str
    pooled_features: Mapping[int, str] = dataclasses.field(default_factory=dict)
    conv_stages: tuple = ()
    classifier: tuple = ()

    def __post_init__(self):
        if tuple(sorted(self.features)) != STRIDES:
            raise ValueError(f"EncoderSpec {self.name!r}: features must map each of the strides {STRIDES} "
                             f"to a layer name; got strides {tuple(sorted(self.features))}")
        unknown = sorted(set(self.pooled_features) - set(STRIDES))
        if unknown:
            raise ValueError(f"EncoderSpec {self.name!r}: pooled_features strides must be among {STRIDES}; "
                             f"got {unknown}")
        # Read-only views: a spec is shared by every model built on the encoder.
        object.__setattr__(self, "features", types.MappingProxyType(dict(self.features)))
        object.__setattr__(self, "pooled_features", types.MappingProxyType(dict(self.pooled_features)))
        object.__setattr__(self, "conv_stages", tuple(ConvStage(*stage) for stage in self.conv_stages))
        object.__setattr__(self, "classifier", tuple(ClassifierConvolution(*layer) for layer in self.classifier))

    def __hash__(self):
        return hash(self.name)  # the mappings are unhashable; the registry name identifies a spec

    @property
    def output_stride(self):
        """The stride of the deepest features (32 for every registered encoder)."""
        return max(self.features)

    def feature_names(self, strides=STRIDES):
        """The `features` layer names at `strides`, in that order (default: 2, 4, 8, 16, 32)."""
        return tuple(self.features[stride] for stride in strides)


def _vgg_spec(name, constructor, stage_convolutions):
    last = {stage: f"block{stage}_conv{count}" for stage, count in enumerate(stage_convolutions, start=1)}
    return EncoderSpec(
        name=name,
        constructor=constructor,
        # Stage n+1 runs at the stride pool n reached; the stride-32 map is pool5 itself.
        features={2: last[2], 4: last[3], 8: last[4], 16: last[5], 32: "block5_pool"},
        preprocessing="caffe",
        pooled_features={stride: f"block{stage}_pool" for stage, stride in enumerate(STRIDES, start=1)},
        conv_stages=tuple(zip(stage_convolutions, (64, 128, 256, 512, 512))),
        classifier=((7, 4096), (1, 4096)),
    )


ENCODERS = Registry("encoder")

ENCODERS.register("vgg16", _vgg_spec("vgg16", keras.applications.VGG16, (2, 2, 3, 3, 3)))
ENCODERS.register("vgg19", _vgg_spec("vgg19", keras.applications.VGG19, (2, 2, 4, 4, 4)))
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
            features={
                2: "conv1_relu",
                4: "conv2_block3_out",
                8: f"conv3_block{_stage3_blocks}_out",
                16: f"conv4_block{_stage4_blocks}_out",
                32: "conv5_block3_out",
            },
            preprocessing="caffe",
            # The stem max-pools to stride 4; strides 8, 16 and 32 come from strided convolutions.
            pooled_features={4: "pool1_pool"},
        ),
    )
ENCODERS.register(
    "mobilenetv2",
    EncoderSpec(
        name="mobilenetv2",
        constructor=keras.applications.MobileNetV2,
        features={
            2: "block_1_expand_relu",
            4: "block_3_expand_relu",
            8: "block_6_expand_relu",
            16: "block_13_expand_relu",
            32: "out_relu",
        },
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
    """A Keras model from raw-size preprocessed images to the encoder's taps (features at strides 2..32).

    Args:
        spec: an `EncoderSpec`.
        in_channels: number of input channels.
        encoder_weights: None, "imagenet" or a weights file path.
        trainable: False freezes the encoder (BatchNormalization then runs in inference mode).
        tap_layers: layer names to output instead of `spec.feature_names()` (strides 2..32).
        bn_momentum: momentum for the encoder's BatchNormalization layers; None keeps Keras Applications'.

    Returns:
        A `keras.Model` named "<name>_encoder" whose outputs follow `tap_layers`.
    """
    application = build_application(spec, in_channels, encoder_weights)
    if bn_momentum is not None:
        set_batch_norm_momentum(application, bn_momentum)
    if FUSE_BATCH_NORM:
        application = layers.fuse_batch_norm(application)
    names = tuple(tap_layers or spec.feature_names())
    outputs = [application.get_layer(name).output for name in names]
    encoder = keras.Model(application.inputs, outputs, name=f"{spec.name}_encoder")
    encoder.trainable = trainable
    return encoder
