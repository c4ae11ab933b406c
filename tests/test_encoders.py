"""Encoder specs describe taps; FCN, SegNet and U-Net pick from them and keep their topology.

`encoder_topologies.json` holds a fingerprint (layer names and types, parameter count, hashes of the
full config and of every weight's path and shape) of each model x encoder built by the code *before*
the specs were rewritten (main at d47d044). The refactor must not change any of them: presets and
checkpoints load by layer name and shape. Re-record only for an intended topology change:
`PYTHONPATH=$PWD python tests/test_encoders.py --record`.
"""

import gc
import hashlib
import json
import pathlib
import sys

import keras
import pytest

from kerazoo.encoders import ENCODERS
from kerazoo.models.fcn import build_fcn
from kerazoo.models.segnet import build_segnet
from kerazoo.models.unet import build_unet

TOPOLOGIES = pathlib.Path(__file__).with_name("encoder_topologies.json")
TINY_SHAPE = (64, 96, 3)
NUM_CLASSES = 3
# The brief's matrix runs by default; FCN on the other encoders (large, same code path) is marked slow.
FAST_FCN_ENCODERS = ("vgg16", "resnet50", "mobilenetv2")


def topology_cases():
    cases = [(f"fcn{stride}s", encoder) for stride in (8, 16, 32) for encoder in ENCODERS.names()]
    cases += [("segnet", "vgg16"), ("segnet", "vgg19")]
    cases += [("unet", encoder) for encoder in ENCODERS.names()]
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


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    yield
    keras.backend.clear_session()
    gc.collect()  # FCN on VGG holds half a gigabyte; free it before the next case


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


def _record():
    from kerazoo.files import atomic_write_text

    topologies = {}
    for model, encoder in topology_cases():
        topologies[f"{model}-{encoder}"] = fingerprint(build(model, encoder))
        print(model, encoder, topologies[f"{model}-{encoder}"]["parameters"], flush=True)
        gc.collect()
    atomic_write_text(TOPOLOGIES, json.dumps(topologies, indent=1) + "\n")


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    _record()
