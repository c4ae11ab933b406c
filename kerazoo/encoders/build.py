"""The Keras Application of a spec, built regular (and dilated), and its taps derived once per process."""

import dataclasses
import threading

import keras

from kerazoo.encoders.dilation import OUTPUT_STRIDES, dilate_config
from kerazoo.encoders.graph import rebuild, regular_config, with_batch_norm, with_input_channels
from kerazoo.encoders.taps import Taps, derive_taps
from kerazoo.encoders.weights import check_weights

_DERIVED = {}
_DERIVED_LOCK = threading.RLock()


@dataclasses.dataclass(frozen=True)
class _Derived:
    taps: Taps
    config: dict  # the regular functional config (3 channels, output stride 32)
    rewritten: bool  # whether it differs from the application as Keras builds it


def _check_in_channels(in_channels):
    if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int; got {in_channels!r}")


def construct(spec, in_channels=3, encoder_weights=None):
    """The application as Keras builds it, without its top; RGB when pretrained weights are loaded.

    The input layer is named "input_layer" whatever the session built before, so that the encoder's
    config is the same in every session.
    """
    channels = 3 if encoder_weights is not None else in_channels
    size = spec.static_size
    shape = (size, size, channels)
    application = spec.constructor(
        include_top=False, weights=encoder_weights, input_shape=shape,
        input_tensor=keras.Input(shape, name="input_layer"), **spec.constructor_kwargs,
    )
    # Given an input tensor, Keras makes a model of input lists; the same layers with one input as usual.
    return keras.Model(application.inputs[0], application.outputs[0], name=application.name)


def build_application(spec, in_channels=3, encoder_weights=None, output_stride=32, batch_norm=None):
    """The Keras Applications model of `spec` without its top, regular, for any input size.

    Regular (see `kerazoo.encoders.graph`): any size and channel count, the same layer names in every
    session, no built-in preprocessing, every map exactly ceil(input / stride). With an output_stride
    below 32 the strides beyond it become dilation (`kerazoo.encoders.dilation`).

    Args:
        spec: an `EncoderSpec`.
        in_channels: input channels; with pretrained weights and another count than 3 the first
            convolution's kernel is adapted from the RGB one (see `adapt_first_kernel`).
        encoder_weights: None, "imagenet" (Keras Applications' own download) or a weights file path.
        output_stride: 32 (as published), 16 or 8.
        batch_norm: a `keras.layers.BatchNormalization` subclass that the batch-norm layers become
            where the model is rebuilt from its config (None keeps Keras'); the application as Keras
            builds it, returned where nothing needs rebuilding, keeps Keras' layers.
    """
    check_weights(encoder_weights)
    _check_in_channels(in_channels)
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}; got {output_stride!r}")
    dilate = output_stride != max(OUTPUT_STRIDES)
    if encoder_weights is None and (in_channels != 3 or dilate or _derived(spec).rewritten):
        # Random weights: the regular config is all it takes (no Keras build to copy weights from). An
        # application that needs no rewrite is built by Keras as before (the same random weights).
        config = with_input_channels(_derived(spec).config, in_channels)
        config = dilate_config(config, spec_taps(spec).levels, output_stride)
        return keras.Model.from_config(with_batch_norm(config, batch_norm) if batch_norm else config)
    application = construct(spec, in_channels, encoder_weights)
    config, mapping, changed = regular_config(application, in_channels)
    if dilate:
        config = dilate_config(config, spec_taps(spec).levels, output_stride)
        changed = True
    if not changed:
        return application
    return rebuild(with_batch_norm(config, batch_norm) if batch_norm else config, application, mapping, in_channels)


def _derived(spec):
    with _DERIVED_LOCK:
        if spec.name not in _DERIVED:
            application = construct(spec)
            config, mapping, rewritten = regular_config(application, 3)
            regular = rebuild(config, application, mapping) if rewritten else application
            _DERIVED[spec.name] = _Derived(derive_taps(regular), config, rewritten)
        return _DERIVED[spec.name]


def spec_taps(spec):
    """The `Taps` of `spec`, derived from a random-weights build the first time they are asked for."""
    return _derived(spec).taps
