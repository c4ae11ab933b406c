"""Output stride 16 or 8: the last downsamplings replaced by dilation, as DeepLab does.

Given each layer's stride (`Taps.levels`), `dilate_config` rewrites a regular functional config: every
layer that downsampled into a stride deeper than `output_stride` now keeps the resolution (strides 1),
and every convolution of those stages gets the dilation rate stride / output_stride, so it sees what it
saw before, spread over the larger map. The layer that used to downsample takes the rate of the stage
it reads (torchvision's `replace_stride_with_dilation`). The weights do not change shape: the
dilated encoder loads the undilated one's weights.

Padding follows: a `ZeroPadding2D` feeding a changed window pads symmetrically for its new extent
((kernel - 1) * rate), and a window without one becomes 'same'. Pooling layers have no dilation; a
pooling that downsampled keeps its window at stride 1. ConvNeXt's 2x2 stride-2 downsampling
convolutions become 2x2 stride-1 'same' convolutions with the previous stage's rate, as timm does.
"""

import copy

from kerazoo.encoders.graph import PADDING_LAYERS, inbound_names, window_and_strides

OUTPUT_STRIDES = (8, 16, 32)
DILATED_LAYERS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D")
NESTED_MODELS = ("Sequential", "Functional")
_STRIDED_LAYERS = DILATED_LAYERS + ("MaxPooling2D", "AveragePooling2D")


def _rate(level, output_stride):
    return max(1, level // output_stride) if level else 1


def _symmetric(total):
    return [total // 2, total - total // 2]


def _retune(layer, rate, keep_padding):
    """Sets strides 1 and `rate` on a spatial layer config; returns the padding its window now needs.

    `keep_padding`: a ZeroPadding2D feeds it, so it stays 'valid' and the caller re-pads; otherwise a
    window that downsampled becomes 'same'.
    """
    inner = layer["config"]
    window, strides = window_and_strides(layer)
    downsampled = any(stride > 1 for stride in strides)
    if downsampled:
        inner["strides"] = [1, 1]
        if not keep_padding:
            inner["padding"] = "same"
    dilated = layer["class_name"] in DILATED_LAYERS and rate > 1 and any(w > 1 for w in window)
    if dilated:
        inner["dilation_rate"] = [rate, rate]
    extent = [(w - 1) * (rate if dilated else 1) for w in window]
    return [_symmetric(total) for total in extent], downsampled or dilated


def _dilate_nested(layer, entering_rate, rate):
    """A nested Sequential (ConvNeXt's downsampling blocks): layers up to the strided one read at
    `entering_rate`, later ones at `rate`."""
    current = entering_rate
    previous = None
    for inner in layer["config"]["layers"]:
        if inner["class_name"] in _STRIDED_LAYERS:
            _, strides = window_and_strides(inner)
            keep = previous is not None and previous["class_name"] in PADDING_LAYERS
            padding, changed = _retune(inner, current, keep)
            if keep and changed:
                previous["config"]["padding"] = padding
            if any(stride > 1 for stride in strides):
                current = rate
        previous = inner


def dilate_config(config, levels, output_stride):
    """The regular functional `config` with the strides beyond `output_stride` turned into dilation.

    Args:
        config: a regular functional config (`kerazoo.encoders.graph.regular_config`).
        levels: {layer name: stride} of the undilated encoder (`Taps.levels`).
        output_stride: 8, 16 or 32 (32 returns the config unchanged).

    Raises:
        ValueError: for another output_stride, or when one ZeroPadding2D feeds windows that would
            need different paddings.
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}; got {output_stride!r}")
    config = copy.deepcopy(config)
    if output_stride == max(OUTPUT_STRIDES):
        return config
    layers = {layer["name"]: layer for layer in config["layers"]}
    new_padding = {}
    for layer in config["layers"]:
        level = levels.get(layer["name"])
        if level is None or level <= output_stride:
            continue
        sources = inbound_names(layer)
        entering = levels.get(sources[0]) if sources else None
        downsamples = entering is not None and entering < level
        rate = _rate(level, output_stride)
        if layer["class_name"] in NESTED_MODELS:
            _dilate_nested(layer, _rate(entering, output_stride) if downsamples else rate, rate)
            continue
        if layer["class_name"] not in _STRIDED_LAYERS:
            continue
        pad = next((layers[name] for name in sources if layers[name]["class_name"] in PADDING_LAYERS), None)
        padding, changed = _retune(layer, _rate(entering, output_stride) if downsamples else rate, pad is not None)
        if pad is not None and changed:
            if new_padding.setdefault(pad["name"], padding) != padding:
                raise ValueError(f"cannot dilate: {pad['name']} feeds windows that need different paddings")
    for name, padding in new_padding.items():
        layers[name]["config"]["padding"] = padding
    return config
