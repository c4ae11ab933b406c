"""Encoders: every Keras Application as a backbone with taps at strides 2 .. 32.

`EncoderSpec` (spec.py) states the facts that cannot be read off the graph; the table of applications
(applications.py) registers one spec per encoder; the taps are derived from the application's own
graph (taps.py); the application is rebuilt regular (graph.py), with its first kernel adapted to other
channel counts (weights.py) and dilation instead of its last strides on request (dilation.py).

The contract decoders build on (`build_encoder`):
- taps: `spec.features[s]` is the deepest layer at stride s in (2, 4, 8, 16, 32); a stride the
  encoder never computes at is absent (ConvNeXt's stem goes straight to stride 4: no 2).
  `feature_strides(spec, encoder_depth)` lists the strides an encoder of that depth outputs.
- encoder_depth d in 3..5: the encoder ends at its stride-2**d tap (later stages are not built).
- output_stride 32, 16 or 8: with 16, the stage that ran at stride 32 runs dilated at stride 16, and
  its tap, still keyed 32 ("the stride-32 tap"), has stride 16; with 8 the taps keyed 16 and 32 both
  have stride 8. `tap_stride(s, output_stride)` is the actual stride: min(s, output_stride).
- inputs: any height and width that are multiples of `input_multiple(output_stride, encoder_depth)`
  give taps of exactly (height / stride, width / stride); models pad to it and crop back.
"""

import keras

from kerazoo.encoders.applications import ENCODERS, register
from kerazoo.encoders.build import build_application, construct, spec_taps
from kerazoo.encoders.dilation import OUTPUT_STRIDES
from kerazoo.encoders.spec import ClassifierConvolution, ConvStage, EncoderSpec
from kerazoo.encoders.taps import STRIDES
from kerazoo.encoders.weights import adapt_first_kernel, check_weights
from kerazoo.layers import BatchNormalization, fuse_batch_norm

__all__ = [
    "ENCODERS", "STRIDES", "OUTPUT_STRIDES", "ENCODER_DEPTHS", "FUSE_BATCH_NORM", "EncoderSpec", "ConvStage",
    "ClassifierConvolution", "adapt_first_kernel", "build_application", "build_encoder", "check_weights",
    "construct", "feature_strides", "get_encoder_spec", "input_multiple", "list_encoders", "register",
    "set_batch_norm_momentum", "spec_taps", "tap_stride",
]

ENCODER_DEPTHS = (3, 4, 5)
# Encoders' own BatchNormalization layers become `layers.BatchNormalization` (fused) (same names, weights):
# one fused kernel per layer on TensorFlow. benchmarks/batch_norm.py turns it off to measure the gain.
FUSE_BATCH_NORM = True


def list_encoders():
    """Names of the registered encoders."""
    return ENCODERS.names()


def get_encoder_spec(name):
    """The `EncoderSpec` registered as `name`; raises a ValueError listing close matches."""
    return ENCODERS.get(name)


def _check_depth(encoder_depth):
    if encoder_depth not in ENCODER_DEPTHS or isinstance(encoder_depth, bool):
        raise ValueError(f"encoder_depth must be one of {ENCODER_DEPTHS} (stages, deepest stride 2**depth); "
                         f"got {encoder_depth!r}")


def feature_strides(spec, encoder_depth=5):
    """The strides (keys of `spec.features`) an encoder of `encoder_depth` stages outputs, shallow first.

    ConvNeXt has no stride 2: (4, 8, 16, 32) at depth 5, (4, 8) at depth 3.
    """
    _check_depth(encoder_depth)
    return tuple(stride for stride in STRIDES[:encoder_depth] if stride in spec.features)


def tap_stride(stride, output_stride=32):
    """The actual stride of the tap keyed `stride` in an encoder built with `output_stride`."""
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}; got {output_stride!r}")
    return min(stride, output_stride)


def input_multiple(output_stride=32, encoder_depth=5):
    """What input height and width must be multiples of for exact taps: min(output_stride, 2**depth)."""
    _check_depth(encoder_depth)
    return tap_stride(2**encoder_depth, output_stride)


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


def _leaves(model):
    for layer in model.layers:
        yield from _leaves(layer) if isinstance(layer, keras.Model) else (layer,)


def _output_of(model, name):
    """The output of the layer or operation `name` (ConvNeXt's taps are `+` operations, not layers)."""
    for operation in model.operations:
        if operation.name == name:
            return operation.output
    raise ValueError(f"encoder {model.name!r} has no layer {name!r}")


def build_encoder(spec, in_channels=3, encoder_weights=None, trainable=True, tap_layers=None,
                  bn_momentum=None, output_stride=32, encoder_depth=5):
    """A Keras model from preprocessed images to the encoder's taps.

    Args:
        spec: an `EncoderSpec`.
        in_channels: number of input channels (pretrained weights adapt the first kernel).
        encoder_weights: None, "imagenet" or a weights file path.
        trainable: False freezes the encoder (BatchNormalization then runs in inference mode).
        tap_layers: layer names to output instead of the taps at `feature_strides(spec, encoder_depth)`.
        bn_momentum: momentum for the encoder's BatchNormalization layers; None keeps Keras Applications'.
        output_stride: 32, 16 or 8. Below 32, the stages beyond it keep its resolution and dilate their
            convolutions (DeepLab); their taps keep their keys (see `tap_stride`).
        encoder_depth: 3, 4 or 5 stages: the encoder ends at its stride-2**depth tap.

    Returns:
        A `keras.Model` named "<name>_encoder" whose outputs follow `tap_layers`, by default one per
        stride of `feature_strides(spec, encoder_depth)`, shallow first. An input of height and width
        multiples of `input_multiple(output_stride, encoder_depth)` gives each tap keyed s the size
        input / tap_stride(s, output_stride).
    """
    _check_depth(encoder_depth)
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}; got {output_stride!r}")
    # Stages past the encoder's depth are not built, so there is nothing to dilate beyond it.
    effective_stride = output_stride if output_stride < 2**encoder_depth else max(OUTPUT_STRIDES)
    application = build_application(spec, in_channels, encoder_weights, effective_stride,
                                    batch_norm=BatchNormalization if FUSE_BATCH_NORM else None)
    if bn_momentum is not None:
        set_batch_norm_momentum(application, bn_momentum)
    if FUSE_BATCH_NORM and any(type(layer) is keras.layers.BatchNormalization for layer in _leaves(application)):
        application = fuse_batch_norm(application)  # built by Keras, not rebuilt from its config
    names = tuple(tap_layers or spec.feature_names(feature_strides(spec, encoder_depth)))
    outputs = [_output_of(application, name) for name in names]
    encoder = keras.Model(application.inputs, outputs, name=f"{spec.name}_encoder")
    encoder.trainable = trainable
    return encoder
