"""A Keras Application rebuilt from its functional config, the same layers and weights, made regular.

Keras Applications differ in ways a decoder should not see. Rewriting the config, never the Keras code,
`regular_config` makes every one of them:
- take any input size and channel count (the input layer is (None, None, C); NASNet, which wires its
  cells from static shapes, is constructed at a static size first);
- name its layers the same in every session: Keras names unnamed layers from a global counter
  ("conv2d_97" after other models were built), so auto-named layers are renumbered in the order they
  were created, as a fresh session would name them;
- leave its preprocessing to the model: leading `Rescaling` / `Normalization` layers (EfficientNet's,
  ConvNeXt's, MobileNetV3's) are dropped and the spec states the mode they implemented;
- compute every feature map at exactly ceil(input / stride): a 'valid' convolution or pooling whose
  window is larger than its stride and that no `ZeroPadding2D` feeds (Inception, Xception, NASNet's
  stem) shrinks the map by a few pixels, so it becomes 'same' (the same weights; borders see zeros);
- export cleanly: ConvNeXt's depthwise convolutions, `Conv2D(groups=channels)`, which Keras runs
  through an XLA-compiled function on CPU that tf2onnx cannot convert (a PartitionedCall node), become
  `DepthwiseConv2D` (the kernel is the same numbers, transposed: see `transfer_weights`), and its
  `Activation("gelu")` layers kerazoo's `GELU` (written with erf, not erfc, which ONNX lacks).
`rebuild` builds the rewritten config and copies the weights layer by layer.
"""

import copy
import re

import keras

from kerazoo.encoders.weights import transfer_weights
from kerazoo.layers.activations import GELU

PREPROCESSING_LAYERS = ("Rescaling", "Normalization")
SPATIAL_LAYERS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D", "AveragePooling2D")
PADDING_LAYERS = ("ZeroPadding2D",)
_AUTO_NAME = re.compile(r"(?P<prefix>[a-z0-9_]+?)(?:_(?P<number>\d+))?")


def _snake_case(class_name):
    """Keras' auto-name prefix for a class name (Conv2D -> conv2d, ZeroPadding2D -> zero_padding2d)."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def inbound_names(layer_config):
    """Names of the layers whose outputs `layer_config` (one entry of a functional config) consumes."""
    names = []

    def visit(value):
        if isinstance(value, dict):
            if value.get("class_name") == "__keras_tensor__":
                names.append(value["config"]["keras_history"][0])
            else:
                for item in value.values():
                    visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)

    visit(layer_config.get("inbound_nodes", []))
    return names


def _replace_history(value, mapping):
    """`value` (nodes of a functional config) with every tensor's source layer renamed by `mapping`."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            history = list(value["config"]["keras_history"])
            history[0] = mapping.get(history[0], history[0])
            return {**value, "config": {**value["config"], "keras_history": history}}
        return {key: _replace_history(item, mapping) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_replace_history(item, mapping) for item in value]
    return value


def rename_layers(config, mapping):
    """The functional `config` with layers renamed by `mapping` (old name -> new name), wiring included."""
    config = copy.deepcopy(config)
    for layer in config["layers"]:
        new = mapping.get(layer["name"], layer["name"])
        layer["name"] = layer["config"]["name"] = new
        layer["inbound_nodes"] = _replace_history(layer["inbound_nodes"], mapping)
    for key in ("input_layers", "output_layers"):
        config[key] = _rename_endpoints(config[key], mapping)
    return config


def _rename_endpoints(endpoints, mapping):
    if endpoints and isinstance(endpoints[0], str):  # a single [name, node, index]
        return [mapping.get(endpoints[0], endpoints[0]), *endpoints[1:]]
    return [_rename_endpoints(endpoint, mapping) for endpoint in endpoints]


def canonical_names(config):
    """{old: new} for auto-named layers, renumbered as a fresh Keras session would have named them.

    A layer is auto-named when its name is its class's snake-case name, optionally with "_<n>". Within
    each prefix the old numbers keep their order (they count creation), and restart from none, 1, 2...
    """
    by_prefix = {}
    for layer in config["layers"]:
        match = _AUTO_NAME.fullmatch(layer["name"])
        prefix = _snake_case(layer["class_name"])
        if match and match.group("prefix") == prefix:
            by_prefix.setdefault(prefix, []).append((int(match.group("number") or 0), layer["name"]))
    mapping = {}
    for prefix, found in by_prefix.items():
        for index, (_, name) in enumerate(sorted(found)):
            mapping[name] = prefix if index == 0 else f"{prefix}_{index}"
    taken = {layer["name"] for layer in config["layers"]} - set(mapping)
    clash = sorted(set(mapping.values()) & taken)
    if clash:  # a named layer already holds a canonical name: leave the names as they are
        return {}
    return {old: new for old, new in mapping.items() if old != new}


def endpoint_names(endpoints):
    """Layer names of a functional config's "input_layers" or "output_layers"."""
    if endpoints and isinstance(endpoints[0], str):  # a single [name, node, index]
        return [endpoints[0]]
    return [name for endpoint in endpoints for name in endpoint_names(endpoint)]


def _consumers(config):
    consumers = {layer["name"]: [] for layer in config["layers"]}
    for layer in config["layers"]:
        for name in inbound_names(layer):
            consumers[name].append(layer["name"])
    return consumers


def _strip_preprocessing(config):
    """Drops the leading chain of `Rescaling` / `Normalization` layers after the input; returns True if any."""
    layers = {layer["name"]: layer for layer in config["layers"]}
    consumers = _consumers(config)
    input_name = endpoint_names(config["input_layers"])[0]
    dropped, current = [], input_name
    while len(consumers[current]) == 1 and layers[consumers[current][0]]["class_name"] in PREPROCESSING_LAYERS:
        current = consumers[current][0]
        dropped.append(current)
    if not dropped:
        return False
    for layer in config["layers"]:
        layer["inbound_nodes"] = _replace_history(layer["inbound_nodes"], {dropped[-1]: input_name})
    config["layers"] = [layer for layer in config["layers"] if layer["name"] not in dropped]
    return True


def _pair(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def window_and_strides(layer_config):
    """(kernel or pool size, strides) of a spatial layer's config, each a (height, width) pair."""
    inner = layer_config["config"]
    window = inner.get("kernel_size", inner.get("pool_size"))
    return _pair(window), _pair(inner.get("strides") or window)


def _same_padding_where_valid_shrinks(config):
    """'valid' windows larger than their stride, fed by no ZeroPadding2D, become 'same'; True if any did."""
    layers = {layer["name"]: layer for layer in config["layers"]}
    changed = False
    for layer in config["layers"]:
        if layer["class_name"] not in SPATIAL_LAYERS or layer["config"].get("padding") != "valid":
            continue
        window, strides = window_and_strides(layer)
        fed_by_padding = any(layers[name]["class_name"] in PADDING_LAYERS for name in inbound_names(layer))
        if any(w > s for w, s in zip(window, strides)) and not fed_by_padding:
            layer["config"]["padding"] = "same"
            changed = True
    return changed


def _depthwise_where_grouped(config):
    """`Conv2D(groups=filters)` layers become the `DepthwiseConv2D` they are; True if any did."""
    renamed_keys = {"kernel_initializer": "depthwise_initializer", "kernel_regularizer": "depthwise_regularizer",
                    "kernel_constraint": "depthwise_constraint"}
    dropped_keys = ("filters", "groups", "lora_rank", "lora_alpha")
    changed = False
    for layer in config["layers"]:
        inner = layer["config"]
        if layer["class_name"] != "Conv2D" or inner.get("groups", 1) == 1 or inner["groups"] != inner["filters"]:
            continue
        layer["class_name"] = "DepthwiseConv2D"
        layer["config"] = {renamed_keys.get(key, key): value for key, value in inner.items() if key not in dropped_keys}
        layer["config"]["depth_multiplier"] = 1
        changed = True
    return changed


def _gelu_with_erf(config):
    """`Activation("gelu")` layers become `kerazoo.layers.GELU`; True if any did."""
    changed = False
    for layer in config["layers"]:
        if layer["class_name"] == "Activation" and layer["config"].get("activation") == "gelu":
            layer.update(module=GELU.__module__, class_name=GELU.__name__,
                         registered_name=keras.saving.get_registered_name(GELU))
            layer["config"] = {key: layer["config"][key] for key in ("name", "trainable", "dtype")}
            changed = True
    return changed


def with_input_channels(config, in_channels):
    """A copy of the regular functional `config` whose input takes `in_channels` channels."""
    config = copy.deepcopy(config)
    _any_size_input(config, in_channels)
    return config


def with_batch_norm(config, layer_class):
    """A copy of `config` whose `keras.layers.BatchNormalization` layers (nested ones too) are `layer_class`,
    a registered subclass with the same config (kerazoo's fused batch norm)."""
    config = copy.deepcopy(config)
    target = {"module": layer_class.__module__, "class_name": layer_class.__name__,
              "registered_name": keras.saving.get_registered_name(layer_class)}

    def visit(layers):
        for layer in layers:
            if layer["class_name"] == "BatchNormalization" and layer.get("module") == "keras.layers":
                layer.update(target)
            elif layer["class_name"] in ("Sequential", "Functional"):
                visit(layer["config"]["layers"])

    visit(config["layers"])
    return config


def _any_size_input(config, in_channels):
    """Input layers of any size: the model's with `in_channels`, and those of nested models (ConvNeXt's
    Sequential stem and downsampling blocks) with the channels of what feeds them."""
    changed = False
    inputs = set(endpoint_names(config["input_layers"]))
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            changed |= _set_input_shape(layer, in_channels)
        elif layer["class_name"] in ("Sequential", "Functional"):
            fed_by_input = bool(set(inbound_names(layer)) & inputs)
            for inner in layer["config"]["layers"]:
                if inner["class_name"] == "InputLayer":
                    channels = in_channels if fed_by_input else inner["config"]["batch_shape"][-1]
                    changed |= _set_input_shape(inner, channels)
    return changed


def _set_input_shape(input_layer, channels):
    shape = [None, None, None, channels]
    changed = list(input_layer["config"]["batch_shape"]) != shape
    input_layer["config"]["batch_shape"] = shape
    return changed


def _drop_build_configs(value):
    """Removes recorded build shapes: layers then build from the tensors they are called on."""
    if isinstance(value, dict):
        return {key: _drop_build_configs(item) for key, item in value.items() if key != "build_config"}
    if isinstance(value, (list, tuple)):
        return [_drop_build_configs(item) for item in value]
    return value


def regular_config(application, in_channels):
    """The functional config of `application` made regular (see the module docstring).

    Returns:
        (config, mapping, changed): the new config, {old layer name: new name} for renamed layers, and
        whether anything differs from the application's own config.
    """
    config = application.get_config()
    mapping = canonical_names(config)
    config = rename_layers(config, mapping)
    changed = bool(mapping)
    changed |= _strip_preprocessing(config)
    changed |= _same_padding_where_valid_shrinks(config)
    changed |= _depthwise_where_grouped(config)
    changed |= _gelu_with_erf(config)
    changed |= _any_size_input(config, in_channels)
    return _drop_build_configs(config), mapping, changed


def rebuild(config, source, mapping=None, in_channels=3):
    """A model built from `config` with the weights of `source`, layer by layer.

    Args:
        config: a functional config derived from `source`'s (layers renamed by `mapping`, some dropped).
        source: the model whose weights are copied.
        mapping: {source layer name: layer name in config} for renamed layers.
        in_channels: input channels of `config`; the first convolution's kernel is adapted from
            `source`'s when they differ (see `adapt_first_kernel`).
    """
    model = keras.Model.from_config(copy.deepcopy(config))  # from_config consumes its argument
    transfer_weights(source, model, in_channels, mapping or {})
    return model
