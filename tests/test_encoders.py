"""Encoder specs describe taps; FCN, SegNet and U-Net pick from them and keep their topology.

The spec's facts are checked against the Keras Applications models themselves, and the taps now derived
from the graph against the six specs that were written by hand before (`HAND_WRITTEN`).

`encoder_topologies.json` holds a fingerprint (layer names and types, parameter count, hashes of the
full config and of every weight's path and shape) of each model x encoder built by the code *before*
the specs were rewritten (main at d47d044). The refactor must not change any of them: presets and
checkpoints load by layer name and shape. Re-record only for an intended topology change, or when a
Keras upgrade (recorded with 3.15.1) adds config keys while the layers and weights hashes still match:
`PYTHONPATH=$PWD python tests/test_encoders.py --record`.
"""

import gc
import hashlib
import json
import pathlib
import sys

import keras
import pytest

from kerazoo.encoders import ENCODERS, STRIDES, EncoderSpec
from kerazoo.models.fcn import build_fcn, skip_layers
from kerazoo.models.segnet import build_segnet
from kerazoo.models.unet import build_unet

TOPOLOGIES = pathlib.Path(__file__).with_name("encoder_topologies.json")
TINY_SHAPE = (64, 96, 3)
NUM_CLASSES = 3
# By default FCN runs on one encoder of each kind (pooling, residual, inverted residual); the larger
# members of the same families are marked slow.
FAST_FCN_ENCODERS = ("vgg16", "resnet50", "mobilenetv2")


# The specs as they were typed by hand (main at 2a6aaa3), before the taps were derived from the graph.
HAND_WRITTEN = {
    "vgg16": ({2: "block2_conv2", 4: "block3_conv3", 8: "block4_conv3", 16: "block5_conv3", 32: "block5_pool"},
              {2: "block1_pool", 4: "block2_pool", 8: "block3_pool", 16: "block4_pool", 32: "block5_pool"}),
    "vgg19": ({2: "block2_conv2", 4: "block3_conv4", 8: "block4_conv4", 16: "block5_conv4", 32: "block5_pool"},
              {2: "block1_pool", 4: "block2_pool", 8: "block3_pool", 16: "block4_pool", 32: "block5_pool"}),
    **{name: ({2: "conv1_relu", 4: "conv2_block3_out", 8: f"conv3_block{stage3}_out",
               16: f"conv4_block{stage4}_out", 32: "conv5_block3_out"}, {4: "pool1_pool"})
       for name, stage3, stage4 in (("resnet50", 4, 6), ("resnet101", 4, 23), ("resnet152", 8, 36))},
    "mobilenetv2": ({2: "block_1_expand_relu", 4: "block_3_expand_relu", 8: "block_6_expand_relu",
                     16: "block_13_expand_relu", 32: "out_relu"}, {}),
}
# The encoders whose model topologies encoder_topologies.json recorded.
RECORDED_ENCODERS = sorted(HAND_WRITTEN)


def topology_cases():
    cases = [(f"fcn{stride}s", encoder) for stride in (8, 16, 32) for encoder in RECORDED_ENCODERS]
    cases += [("segnet", "vgg16"), ("segnet", "vgg19")]
    cases += [("unet", encoder) for encoder in RECORDED_ENCODERS]
    return cases


def build(model, encoder):
    """The model built by its builder (not `create_model`, whose wrapper is another workstream's)."""
    keras.backend.clear_session()  # auto-generated names (the encoder's input layer) start afresh
    spec = ENCODERS.get(encoder)
    arguments = dict(num_classes=NUM_CLASSES, input_shape=TINY_SHAPE, encoder_weights=None)
    if model.startswith("fcn"):
        return build_fcn(spec, output_stride=int(model[3:-1]), **arguments)
    return {"segnet": build_segnet, "unet": build_unet}[model](spec, **arguments)


def _sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(model):
    """What a checkpoint or preset depends on: layers, their wiring and configs, weight paths and shapes."""
    weights = "\n".join(f"{weight.path} {tuple(weight.shape)}" for weight in model.weights)
    return {
        "parameters": int(model.count_params()),
        "layers": [f"{layer.name}:{type(layer).__name__}" for layer in model.layers],
        "output_shape": list(model.output.shape),
        "config_sha256": _sha256(json.dumps(model.get_config(), sort_keys=True, default=str)),
        "weights_sha256": _sha256(weights),
    }


pytestmark = pytest.mark.usefixtures("fresh_keras_state")  # tests/conftest.py


@pytest.mark.parametrize(
    "model, encoder",
    [
        pytest.param(model, encoder, id=f"{model}-{encoder}",
                     marks=pytest.mark.slow if model.startswith("fcn") and encoder not in FAST_FCN_ENCODERS else ())
        for model, encoder in topology_cases()
    ],
)
def test_topology_is_unchanged_by_the_spec_rewrite(model, encoder):
    expected = json.loads(TOPOLOGIES.read_text())[f"{model}-{encoder}"]
    actual = fingerprint(build(model, encoder))
    assert actual["layers"] == expected["layers"]
    assert actual["parameters"] == expected["parameters"]
    assert actual["output_shape"] == expected["output_shape"]
    assert actual["weights_sha256"] == expected["weights_sha256"], "a weight's path or shape changed"
    assert actual["config_sha256"] == expected["config_sha256"], "a layer's config or wiring changed"


SLOW_ENCODERS = ("resnet101", "resnet152", "vgg19")


def encoder_params():
    return [pytest.param(name, marks=pytest.mark.slow if name in SLOW_ENCODERS else ()) for name in RECORDED_ENCODERS]


@pytest.mark.parametrize("name", encoder_params())
def test_taps_derived_from_the_graph_are_the_hand_written_ones(name):
    features, pooled = HAND_WRITTEN[name]
    spec = ENCODERS.get(name)
    assert dict(spec.features) == features
    assert dict(spec.pooled_features) == pooled


@pytest.mark.parametrize("name", encoder_params())
def test_spec_states_the_applications_own_taps_stages_and_classifier(name):
    """Every fact of the spec read off the Keras Applications model with its classifier (224x224)."""
    spec = ENCODERS.get(name)
    application = spec.constructor(include_top=True, weights=None)
    size = application.input.shape[1]
    maps = [layer for layer in application.layers if len(layer.output.shape) == 4]
    for stride in STRIDES:
        at_stride = [layer.name for layer in maps if layer.output.shape[1] == size // stride]
        assert spec.features[stride] == at_stride[-1], f"stride {stride}: deepest is {at_stride[-1]}"
    pooling = {
        size // layer.output.shape[1]: layer.name
        for layer in maps if isinstance(layer, keras.layers.MaxPooling2D)
    }
    assert dict(spec.pooled_features) == pooling  # every separate pooling, and nothing else

    stages, convolutions = [], []
    for layer in maps:
        if isinstance(layer, keras.layers.Conv2D):
            convolutions.append(layer.filters)
        elif isinstance(layer, keras.layers.MaxPooling2D):
            stages.append((len(convolutions), convolutions[-1]))
            convolutions = []
    plain = not any(isinstance(layer, keras.layers.Add) for layer in application.layers)
    assert spec.conv_stages == (tuple(stages) if plain else ())

    hidden = [layer for layer in application.layers
              if isinstance(layer, keras.layers.Dense) and layer is not application.layers[-1]]
    extents = [application.get_layer("flatten").input.shape[1] if hidden else None] + [1] * (len(hidden) - 1)
    assert spec.classifier == tuple((extent, layer.units) for extent, layer in zip(extents, hidden))


def test_vgg_facts_read_as_the_papers_state_them():
    vgg16 = ENCODERS.get("vgg16")
    assert [stage.convolutions for stage in vgg16.conv_stages] == [2, 2, 3, 3, 3]
    assert [(layer.kernel_size, layer.filters) for layer in vgg16.classifier] == [(7, 4096), (1, 4096)]
    assert (vgg16.features[8], vgg16.pooled_features[8]) == ("block4_conv3", "block3_pool")
    assert sum(stage.convolutions for stage in ENCODERS.get("vgg19").conv_stages) == 16


def test_fcn_fuses_pooled_taps_where_the_encoder_pools_and_stride_features_elsewhere():
    assert skip_layers(ENCODERS.get("vgg16")) == ("block3_pool", "block4_pool")  # pool3, pool4 (Long et al.)
    for name in ("resnet50", "mobilenetv2"):  # no pooling layer at strides 8 and 16
        spec = ENCODERS.get(name)
        assert skip_layers(spec) == (spec.features[8], spec.features[16])


def _fed_by(model, layer_name):
    """The encoder tap (layer name inside the nested encoder) that feeds `layer_name`, from the saved config."""
    config = next(layer for layer in model.get_config()["layers"] if layer["name"] == layer_name)
    source, _, index = config["inbound_nodes"][0]["args"][0]["config"]["keras_history"]
    return model.get_layer(source).get_config()["output_layers"][index][0]


def test_fcn16s_fuses_pool4_only_and_upsamples_16x():
    model = build("fcn16s", "vgg16")
    names = {layer.name for layer in model.layers}
    assert {"fc6", "fc7", "score_fr", "upscore2", "score_pool4", "fuse_pool4", "upscore16"} <= names
    assert not names & {"score_pool3", "fuse_pool3", "upscore_pool4", "upscore8", "upscore32"}
    assert _fed_by(model, "score_pool4") == "block4_pool"
    final = model.get_layer("upscore16")
    assert isinstance(final, keras.layers.Conv2DTranspose) and final.strides == (16, 16)
    assert final.input.shape[1:3] == (TINY_SHAPE[0] // 16, TINY_SHAPE[1] // 16)
    assert model.get_layer("upscore2").strides == (2, 2)
    assert model.output.shape[1:] == (*TINY_SHAPE[:2], NUM_CLASSES)
    fcn8s = build("fcn8s", "vgg16")  # the same checks tell FCN-8s apart
    assert "fuse_pool3" in {layer.name for layer in fcn8s.layers}
    assert _fed_by(fcn8s, "score_pool3") == "block3_pool"
    assert fcn8s.get_layer("upscore8").strides == (8, 8)


def test_segnet_names_the_missing_stages_and_the_valid_encoders():
    with pytest.raises(ValueError, match=r"'resnet50' has none\. Valid encoders: vgg16, vgg19"):
        build_segnet(ENCODERS.get("resnet50"), num_classes=2)


def test_spec_rejects_an_unknown_preprocessing_mode():
    with pytest.raises(ValueError, match=r"preprocessing must be one of \('caffe', 'tf', 'torch'\); got 'bgr'"):
        EncoderSpec(name="custom", constructor=keras.applications.VGG16, preprocessing="bgr")


def test_spec_is_read_only():
    spec = ENCODERS.get("vgg16")
    with pytest.raises(TypeError):
        spec.features[8] = "block3_pool"
    assert hash(spec) == hash(ENCODERS.get("vgg16"))


def _record():
    from kerazoo.utils.files import atomic_write_text

    topologies = {}
    for model, encoder in topology_cases():
        topologies[f"{model}-{encoder}"] = fingerprint(build(model, encoder))
        print(model, encoder, topologies[f"{model}-{encoder}"]["parameters"], flush=True)
        gc.collect()
    atomic_write_text(TOPOLOGIES, json.dumps(topologies, indent=1) + "\n")


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    _record()
