"""Encoder weights: which sources are valid, the first kernel adapted to other channel counts, and the
copy of weights from one build of an encoder into another."""

import os

import keras
import numpy as np


def check_weights(encoder_weights):
    """Raises a ValueError unless `encoder_weights` is None, "imagenet" or an existing file."""
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


def _leaves(model):
    """The layers of `model` in order, nested models opened (ConvNeXt's stem is a Sequential)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaves(layer)
        else:
            yield layer


def _pairs(source, target, mapping):
    """(source leaf, target leaf) pairs: top-level layers matched by name, nested models by position."""
    for source_layer in source.layers:
        name = mapping.get(source_layer.name, source_layer.name)
        if not source_layer.weights or name not in {layer.name for layer in target.layers}:
            continue  # no weights, or a layer the rewrite dropped (built-in preprocessing)
        target_layer = target.get_layer(name)
        if isinstance(source_layer, keras.Model):
            yield from zip(_leaves(source_layer), _leaves(target_layer))
        else:
            yield source_layer, target_layer


def transfer_weights(source, target, in_channels=3, mapping=None):
    """Copies weights from `source` into `target`, adapting the first convolution's input channels.

    Args:
        source: a model, usually a Keras Application with pretrained weights.
        target: the same encoder built again (another channel count, dilated, layers renamed).
        in_channels: `target`'s input channels; the first convolution's kernel goes through
            `adapt_first_kernel` when `source` has another count.
        mapping: {source layer name: target layer name} for renamed layers.
    """
    adapted_first = False
    for source_layer, target_layer in _pairs(source, target, mapping or {}):
        weights = source_layer.get_weights()
        if not weights:
            continue
        if not adapted_first and isinstance(source_layer, keras.layers.Conv2D):
            if weights[0].shape[-2] != in_channels:
                weights = [adapt_first_kernel(weights[0], in_channels)] + weights[1:]
            adapted_first = True
        if isinstance(source_layer, keras.layers.Conv2D) and isinstance(target_layer, keras.layers.DepthwiseConv2D):
            # Conv2D(groups=C) holds (h, w, 1, C); DepthwiseConv2D the same numbers as (h, w, C, 1).
            weights = [np.swapaxes(weights[0], -1, -2)] + weights[1:]
        target_layer.set_weights(weights)
