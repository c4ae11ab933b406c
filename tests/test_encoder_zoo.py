"""Every Keras Application as an encoder: taps at their strides at odd sizes, output stride 16 and 8 by
dilation, other channel counts with the pretrained first kernel adapted, freezing, depth, and the
preprocessing each application's weights expect.

By default each family's smallest member runs (random weights, tiny odd inputs); every other encoder is
marked `matrix` and runs on demand (`pytest -m matrix tests/test_encoder_zoo.py`).
"""

import math

import keras
import numpy as np
import pytest

import kerazoo
from kerazoo import layers
from kerazoo.encoders import (ENCODERS, STRIDES, adapt_first_kernel, build_application, build_encoder,
                              feature_strides, input_multiple, spec_taps, tap_stride)
from kerazoo.encoders.graph import PREPROCESSING_LAYERS
from encoder_sizes import SMALLEST_OF_EACH_FAMILY

pytestmark = pytest.mark.usefixtures("fresh_keras_state")  # tests/conftest.py

# What issue 19 lists: every Keras Applications constructor of Keras 3.15.
EXPECTED_ENCODERS = {
    "vgg16", "vgg19", "resnet50", "resnet101", "resnet152", "resnet50v2", "resnet101v2", "resnet152v2",
    "mobilenet", "mobilenetv2", "mobilenetv3small", "mobilenetv3large",
    *(f"efficientnetb{member}" for member in range(8)),
    *(f"efficientnetv2{member}" for member in ("b0", "b1", "b2", "b3", "s", "m", "l")),
    *(f"convnext_{member}" for member in ("tiny", "small", "base", "large", "xlarge")),
    "densenet121", "densenet169", "densenet201", "xception", "inceptionv3", "inceptionresnetv2",
    "nasnetmobile", "nasnetlarge",
}
# The smallest member of each family runs by default.
FAST = SMALLEST_OF_EACH_FAMILY
ODD_SIZE = (67, 101)


def heavy(name):
    """The mark of a case that is not in the default run. Every encoder beyond each family's smallest is
    `matrix` (run on demand, `pytest -m matrix tests/test_encoder_zoo.py`): on 2 cores the 93 cases took
    over 20 minutes, half of CI's slow step; benchmarks/combinations.py builds every model on them too."""
    return pytest.mark.matrix


def every_encoder(fast=FAST):
    return [pytest.param(name, marks=() if name in fast else heavy(name)) for name in ENCODERS.names()]


def padded(size, multiple=32):
    return math.ceil(size / multiple) * multiple


def on_any_size(encoder, multiple, in_channels=3):
    """The encoder behind the padding the models put in front of it."""
    inputs = keras.Input((None, None, in_channels))
    return keras.Model(inputs, encoder(layers.PadToMultiple(multiple)(inputs)))


def random_images(in_channels=3, size=ODD_SIZE, seed=0):
    return np.random.default_rng(seed).normal(size=(1, *size, in_channels)).astype("float32")


def test_every_keras_application_is_an_encoder():
    assert set(kerazoo.list_encoders()) == EXPECTED_ENCODERS
    public = {getattr(keras.applications, name) for name in dir(keras.applications) if name[:1].isupper()}
    assert {spec.constructor for _, spec in ENCODERS.items()} == public
    assert {ENCODERS.get(name).family for name in FAST} == {spec.family for _, spec in ENCODERS.items()}


@pytest.mark.parametrize("name", every_encoder())
def test_taps_lie_at_their_strides_and_any_size_gives_them_exactly(name):
    spec = ENCODERS.get(name)
    taps = spec_taps(spec)
    # ConvNeXt patchifies its input straight to stride 4; every other family computes at every stride.
    assert set(spec.features) == (set(STRIDES) - {2} if spec.family == "convnext" else set(STRIDES))
    for stride, layer_name in spec.features.items():
        assert taps.levels[layer_name] == stride, f"{layer_name} is not at stride {stride}"
    for stride, layer_name in spec.pooled_features.items():
        assert taps.levels[layer_name] == stride
    encoder = build_encoder(spec)
    assert len(encoder.outputs) == len(feature_strides(spec))
    outputs = on_any_size(encoder, input_multiple())(random_images())
    expected = [(padded(ODD_SIZE[0]) // stride, padded(ODD_SIZE[1]) // stride) for stride in feature_strides(spec)]
    assert [tuple(output.shape[1:3]) for output in outputs] == expected
    assert all(np.isfinite(keras.ops.convert_to_numpy(output)).all() for output in outputs)


@pytest.mark.parametrize("name, output_stride", [
    pytest.param(name, output_stride, marks=() if (name, output_stride) in {
        ("resnet50", 8), ("mobilenetv2", 16), ("convnext_tiny", 16), ("densenet121", 16), ("xception", 16),
        ("efficientnetb0", 8)} else heavy(name),
        id=f"{name}-os{output_stride}")
    for name in ENCODERS.names() for output_stride in (16, 8)
])
def test_output_stride_dilates_the_last_stages_and_keeps_their_weights(name, output_stride):
    spec = ENCODERS.get(name)
    encoder = build_encoder(spec, output_stride=output_stride)
    outputs = on_any_size(encoder, input_multiple(output_stride))(random_images())
    size = (padded(ODD_SIZE[0], output_stride), padded(ODD_SIZE[1], output_stride))
    expected = [tuple(side // tap_stride(stride, output_stride) for side in size) for stride in feature_strides(spec)]
    assert [tuple(output.shape[1:3]) for output in outputs] == expected
    assert all(np.isfinite(keras.ops.convert_to_numpy(output)).all() for output in outputs)
    dilated = [layer for layer in _leaves(encoder) if max(getattr(layer, "dilation_rate", (1,))) > 1]
    assert dilated, "no convolution was dilated"
    # Dilation changes no weight's shape: the published (output stride 32) weights load as they are.
    encoder.set_weights(build_encoder(spec).get_weights())


def _leaves(model):
    for layer in model.layers:
        yield from _leaves(layer) if isinstance(layer, keras.Model) else (layer,)


@pytest.mark.parametrize("output_stride", [16, pytest.param(8, marks=pytest.mark.slow)])
def test_dilated_resnet_computes_the_strided_features_at_every_position(output_stride):
    """DeepLab's identity: where the strided network samples (even positions of each dilated stage), the
    dilated one gives exactly its features; in between it fills in."""
    spec = ENCODERS.get("resnet50")
    strided = build_encoder(spec, tap_layers=spec.feature_names((16, 32)))
    dilated = build_encoder(spec, tap_layers=spec.feature_names((16, 32)), output_stride=output_stride)
    dilated.set_weights(strided.get_weights())
    images = random_images(size=(64, 96))
    pairs = zip((16, 32), strided.predict(images, verbose=0), dilated.predict(images, verbose=0))
    for stride, expected, actual in pairs:
        step = stride // tap_stride(stride, output_stride)
        assert actual.shape[1:3] == (expected.shape[1] * step, expected.shape[2] * step)
        np.testing.assert_allclose(actual[:, ::step, ::step], expected, rtol=1e-4, atol=1e-4)
    assert np.abs(actual[:, 1::step, 1::step] - expected).max() > 1e-2  # the positions in between are new


@pytest.mark.parametrize("name, encoder_depth, strides", [
    ("resnet50", 3, (2, 4, 8)), ("resnet50", 4, (2, 4, 8, 16)), ("convnext_tiny", 3, (4, 8)),
])
def test_encoder_depth_ends_the_encoder_at_its_deepest_tap(name, encoder_depth, strides):
    spec = ENCODERS.get(name)
    assert feature_strides(spec, encoder_depth) == strides
    encoder = build_encoder(spec, encoder_depth=encoder_depth)
    outputs = on_any_size(encoder, input_multiple(encoder_depth=encoder_depth))(random_images())
    assert [output.shape[1] for output in outputs] == [padded(ODD_SIZE[0], 2**encoder_depth) // s for s in strides]
    assert encoder.count_params() < build_encoder(spec).count_params()  # later stages are not built


def _weights_file(spec, tmp_path):
    """A stand-in for downloaded ImageNet weights: a random application's `save_weights`."""
    size = spec.static_size
    application = spec.constructor(include_top=False, weights=None, input_shape=(size, size, 3))
    path = tmp_path / f"{spec.name}.weights.h5"
    application.save_weights(path)
    return path


@pytest.mark.parametrize("name, in_channels", [
    pytest.param(name, in_channels, marks=() if (name, in_channels) in {
        ("convnext_tiny", 4), ("efficientnetb0", 1), ("mobilenetv3small", 4)} else heavy(name),
        id=f"{name}-{in_channels}ch")
    for name in ENCODERS.names() for in_channels in (1, 4) if in_channels == 4 or name in FAST
])
def test_pretrained_weights_load_into_other_channel_counts_with_the_first_kernel_adapted(name, in_channels,
                                                                                          tmp_path):
    spec = ENCODERS.get(name)
    path = _weights_file(spec, tmp_path)
    rgb = build_application(spec, encoder_weights=str(path))
    encoder = build_encoder(spec, in_channels=in_channels, encoder_weights=str(path))
    rgb_weights = {layer.name: layer.get_weights() for layer in _leaves(rgb) if layer.weights}
    first = True
    for layer in _leaves(encoder):
        if not layer.weights:
            continue
        expected = rgb_weights[layer.name]
        if first:  # the first layer with weights is the first convolution
            assert isinstance(layer, keras.layers.Conv2D) and layer.kernel.shape[-2] == in_channels
            expected = [adapt_first_kernel(expected[0], in_channels)] + expected[1:]
            first = False
        for actual, wanted in zip(layer.get_weights(), expected, strict=True):
            np.testing.assert_allclose(actual, wanted, err_msg=layer.name)
    outputs = on_any_size(encoder, input_multiple(), in_channels)(random_images(in_channels))
    assert outputs[-1].shape[1:3] == (padded(ODD_SIZE[0]) // 32, padded(ODD_SIZE[1]) // 32)


def test_a_frozen_encoder_has_no_trainable_weights_and_runs_batch_norm_in_inference_mode():
    spec = ENCODERS.get("mobilenetv3small")  # batch norm, and no dropout (EfficientNet's would differ)
    encoder = build_encoder(spec, trainable=False)
    assert encoder.trainable_weights == [] and encoder.non_trainable_weights
    images = random_images(size=(32, 32))
    np.testing.assert_allclose(encoder([images], training=True)[-1], encoder([images], training=False)[-1], atol=1e-5)
    trainable = build_encoder(spec)
    assert len(trainable.trainable_weights) > 0


def test_unet_on_an_encoder_without_a_stride_2_tap_takes_any_size():
    model = kerazoo.create_model("unet", encoder="convnext_tiny", num_classes=1, activation="sigmoid",
                                 input_shape=(67, 91, 3))
    assert "decoder_stage3_concat" not in {layer.name for layer in model.layers}  # no stride-2 skip
    output = model.predict(np.random.default_rng(0).uniform(0, 255, (1, 67, 91, 3)), verbose=0)
    assert output.shape == (1, 67, 91, 1) and np.all((output >= 0) & (output <= 1))


def test_layer_names_are_the_same_in_every_session():
    spec = ENCODERS.get("mobilenetv3small")
    keras.backend.clear_session()
    fresh = [layer.name for layer in build_application(spec).layers]
    spec.constructor(include_top=False, weights=None)  # moves Keras' auto-name counters on
    again = [layer.name for layer in build_application(spec).layers]
    assert again == fresh
    assert "activation_17" in fresh  # auto-named, numbered as a fresh session numbers them


def test_valid_padding_becomes_same_only_where_it_would_shrink_the_map():
    application = build_application(ENCODERS.get("xception"))
    assert application.get_layer("block1_conv1").padding == "same"  # 3x3 stride 2 'valid' in Keras
    assert application.get_layer("block1_conv1").strides == (2, 2)
    vgg = build_application(ENCODERS.get("vgg16"))
    assert vgg.get_layer("block1_pool").padding == "valid"  # 2x2 stride 2 fits exactly


@pytest.mark.parametrize("output_stride, encoder_depth, in_channels, message", [
    (12, 5, 3, r"output_stride must be one of \(8, 16, 32\); got 12"),
    (32, 6, 3, r"encoder_depth must be one of \(3, 4, 5\) .*got 6"),
    (32, 5, 0, r"in_channels must be a positive int; got 0"),
])
def test_bad_arguments_name_the_valid_values(output_stride, encoder_depth, in_channels, message):
    with pytest.raises(ValueError, match=message):
        build_encoder(ENCODERS.get("mobilenetv2"), in_channels=in_channels, output_stride=output_stride,
                      encoder_depth=encoder_depth)


# The applications' own preprocessing: their `preprocess_input`, or the layers they build in.
PREPROCESS_INPUT = {
    "vgg16": keras.applications.vgg16, "vgg19": keras.applications.vgg19, "resnet50": keras.applications.resnet,
    "resnet50v2": keras.applications.resnet_v2, "mobilenet": keras.applications.mobilenet,
    "mobilenetv2": keras.applications.mobilenet_v2, "densenet121": keras.applications.densenet,
    "xception": keras.applications.xception, "inceptionv3": keras.applications.inception_v3,
    "inceptionresnetv2": keras.applications.inception_resnet_v2, "nasnetmobile": keras.applications.nasnet,
}
# EfficientNet (v1) is missing: its built-in normalisation takes its statistics from the ImageNet file.
# EfficientNetV2-S scales by 1/128 where "tf" scales by 1/127.5: at most 255 * (1/127.5 - 1/128) = 0.0078 apart.
BUILT_IN = {"mobilenetv3small": 1e-5, "convnext_tiny": 1e-4, "efficientnetv2b0": 1e-4,
            "efficientnetv2s": 255 * (1 / 127.5 - 1 / 128) + 1e-5}


@pytest.mark.parametrize("name", sorted(PREPROCESS_INPUT) + [
    pytest.param(name, marks=pytest.mark.slow if name == "efficientnetv2s" else ()) for name in BUILT_IN])
def test_preprocessing_mode_is_what_the_applications_weights_expect(name):
    spec = ENCODERS.get(name)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    ours = keras.ops.convert_to_numpy(layers.EncoderPreprocessing(spec.preprocessing)(pixels))
    if name in PREPROCESS_INPUT:
        np.testing.assert_allclose(ours, PREPROCESS_INPUT[name].preprocess_input(pixels.copy()), rtol=1e-5, atol=1e-4)
        return
    application = spec.constructor(include_top=False, weights=None, input_shape=(32, 32, 3))
    chain = []
    for layer in application.layers[1:]:
        if type(layer).__name__ not in PREPROCESSING_LAYERS:
            break
        chain.append(layer)
    assert chain, "no built-in preprocessing"
    theirs = pixels
    for layer in chain:
        theirs = layer(theirs)
    # EfficientNetV2-S/M/L scale by 1/128 where "tf" scales by 1/127.5: within 0.4 % of the [-1, 1] range.
    np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(theirs), atol=BUILT_IN[name])


def test_built_in_preprocessing_is_left_to_the_model():
    spec = ENCODERS.get("efficientnetb0")
    kinds = {type(layer).__name__ for layer in build_application(spec).layers}
    assert not kinds & set(PREPROCESSING_LAYERS)
    constructed = {type(layer).__name__ for layer in spec.constructor(include_top=False, weights=None).layers}
    assert set(PREPROCESSING_LAYERS) <= constructed


@pytest.mark.parametrize("name", ["convnext_tiny", "efficientnetb0", "mobilenetv3small"])
def test_the_regular_application_computes_what_keras_builds(name):
    """Stripping the built-in preprocessing and running ConvNeXt's grouped convolutions as depthwise ones
    change no number: fed what Keras' preprocessing layers give, the regular encoder gives Keras' output."""
    from kerazoo.encoders import construct
    from kerazoo.encoders.graph import rebuild, regular_config

    spec = ENCODERS.get(name)
    keras_application = construct(spec)
    config, mapping, changed = regular_config(keras_application, 3)
    assert changed
    regular = rebuild(config, keras_application, mapping)
    built_in = [layer for layer in keras_application.layers[1:4] if type(layer).__name__ in PREPROCESSING_LAYERS]
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    preprocessed = keras.Model(keras_application.input, built_in[-1].output).predict(pixels, verbose=0)
    np.testing.assert_allclose(regular.predict(preprocessed, verbose=0),
                               keras_application.predict(pixels, verbose=0), rtol=1e-5, atol=1e-5)
