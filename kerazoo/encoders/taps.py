"""An encoder's taps, read off its own graph.

`stride_levels` follows each layer's output size at a static probe size: a layer computing at
input / s has level s (1 for the input, 2 .. 32 after each downsampling); padding layers take the level
of what they pad, and maps of size 1 (squeeze-and-excitation) or without space (global pooling) have
none. The graph has been made regular first (`kerazoo.encoders.graph`), so every map is exactly
input / s.

The tap at stride s (`derive_taps`) is the deepest layer at level s that every path to the deeper
levels passes through: the last layer before the encoder downsamples again (ResNet's conv2_block3_out,
MobileNetV2's block_13_expand_relu, VGG's block5_conv3 and its block5_pool at 32). Padding layers are
never taps. NASNet's cells each take the two previous cells' outputs, so no single layer at a stride
carries everything; there the tap is the deepest merge (its last cell's concatenation).
"""

import collections
import dataclasses
import types
from typing import Mapping

import keras

from kerazoo.encoders.graph import PADDING_LAYERS, inbound_names

STRIDES = (2, 4, 8, 16, 32)
PROBE_SIZE = 512
POOLING_LAYERS = ("MaxPooling2D", "AveragePooling2D")
MERGE_LAYERS = ("Add", "Concatenate")


@dataclasses.dataclass(frozen=True)
class Taps:
    """What the graph says about an encoder.

    Attributes:
        features: stride -> the deepest layer at that stride that every deeper path passes through.
        pooled_features: stride -> a pooling layer through which every path enters that stride.
        levels: layer name -> its stride (None: no spatial map), for dilation.
    """

    features: Mapping[int, str]
    pooled_features: Mapping[int, str]
    levels: Mapping[str, int | None]


def _graph(model):
    """(layer configs by name in config order, {name: inbound names}, input names) of a functional model."""
    config = model.get_config()
    layers = {layer["name"]: layer for layer in config["layers"]}
    inbound = {name: inbound_names(layer) for name, layer in layers.items()}
    inputs = [name for name, layer in layers.items() if layer["class_name"] == "InputLayer"]
    return layers, inbound, inputs


def stride_levels(model, probe_size=PROBE_SIZE):
    """{layer name: stride of its output} for a functional `model`, from output sizes at `probe_size`.

    A layer whose output is not exactly probe_size / stride for a stride in 1..32 has the level of its
    first input when it pads (ZeroPadding2D) and None otherwise (1x1 squeeze-and-excitation maps,
    global pooling, dense layers).
    """
    layers, inbound, _ = _graph(model)
    # Operations, not only layers: ConvNeXt's residual sums are `+` on tensors, not Add layers.
    spatial = [operation for operation in model.operations if len(operation.output.shape) == 4]
    probe = keras.Model(model.inputs, [layer.output for layer in spatial])
    probed = probe(keras.Input((probe_size, probe_size, model.input.shape[-1])))
    sizes = {layer.name: tensor.shape[1] for layer, tensor in zip(spatial, probed)}
    levels = {}
    for name, layer in layers.items():  # config order is topological
        size = sizes.get(name)
        level = probe_size // size if size and probe_size % size == 0 else None
        if layer["class_name"] in PADDING_LAYERS or (level is not None and level not in (1, *STRIDES)):
            level = levels[inbound[name][0]] if layer["class_name"] in PADDING_LAYERS else None
        levels[name] = level
    return levels


def _depths(layers, inbound):
    """Longest path from an input to each layer (config order is topological)."""
    depth = {}
    for name in layers:
        depth[name] = 1 + max((depth[source] for source in inbound[name]), default=-1)
    return depth


def _reaches(inbound, inputs, removed, targets):
    """Whether a path from the inputs reaches any of `targets` without passing through `removed`."""
    consumers = collections.defaultdict(list)
    for name, sources in inbound.items():
        for source in sources:
            consumers[source].append(name)
    seen, queue = set(inputs), collections.deque(inputs)
    while queue:
        for consumer in consumers[queue.popleft()]:
            if consumer == removed or consumer in seen:
                continue
            if consumer in targets:
                return True
            seen.add(consumer)
            queue.append(consumer)
    return False


def derive_taps(model, probe_size=PROBE_SIZE):
    """The `Taps` of a regular functional encoder `model` (see the module docstring)."""
    layers, inbound, inputs = _graph(model)
    levels = stride_levels(model, probe_size)
    depth = _depths(layers, inbound)
    features, pooled = {}, {}
    for stride in STRIDES:
        candidates = sorted(
            (name for name, level in levels.items()
             if level == stride and layers[name]["class_name"] not in PADDING_LAYERS + ("InputLayer",)),
            key=lambda name: depth[name], reverse=True,
        )
        if not candidates:
            continue  # the encoder skips this stride (a stride-4 stem)
        deeper = {name for name, level in levels.items() if level is not None and level > stride}
        dominators = [name for name in candidates if not _reaches(inbound, inputs, name, deeper)]
        merges = [name for name in candidates if layers[name]["class_name"] in MERGE_LAYERS]
        features[stride] = (dominators or merges or candidates)[0]
        at_or_deeper = {name for name, level in levels.items() if level is not None and level >= stride}
        for name in candidates:
            entering = levels[inbound[name][0]] if inbound[name] else None
            if (layers[name]["class_name"] in POOLING_LAYERS and entering is not None and entering < stride
                    and not _reaches(inbound, inputs, name, at_or_deeper - {name})):
                pooled[stride] = name
    return Taps(types.MappingProxyType(features), types.MappingProxyType(pooled), types.MappingProxyType(levels))
