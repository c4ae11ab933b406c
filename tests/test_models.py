"""Every registered model x encoder: shapes on odd sizes, training, save/load, mixed precision; paper figures."""

import os

import keras
import numpy as np
import pytest

import kerazoo
from kerazoo.models.model import ZooModel
from kerazoo.models import model_encoder_pairs, model_encoders
from encoder_sizes import SMALLEST_OF_EACH_FAMILY

# Small odd size that every encoder model must give back (padding to stride 32 happens inside).
ODD_SIZE = (45, 67)
# unet_paper uses valid convolutions: 188 is its smallest valid size (output 4).
UNET_PAPER_SIZE, UNET_PAPER_OUTPUT = (188, 204), (4, 20)

ALL_COMBINATIONS = model_encoder_pairs()


def test_model_encoder_pairs_follow_the_registries():
    assert len(ALL_COMBINATIONS) == sum(len(model_encoders(name)) or 1 for name in kerazoo.list_models())
    on_vgg16 = model_encoder_pairs(["vgg16"])
    assert ("segnet", "vgg16") in on_vgg16 and ("segnet_basic", None) in on_vgg16  # own topologies stay
    assert {encoder for _, encoder in on_vgg16} == {"vgg16", None}
    assert {name for name, _ in on_vgg16} == set(kerazoo.list_models())  # every model takes VGG16 or none


# The default run covers every model and every encoder at least once; the full matrix is marked slow.
FAST_COMBINATIONS = {
    ("fcn8s", "vgg16"), ("fcn16s", "mobilenetv2"), ("fcn32s", "resnet50"),
    ("unet", "mobilenetv2"), ("unet", "resnet50"), ("unet", "vgg19"),
    ("unet", "vgg16"), ("segnet", "vgg16"), ("segnet_basic", None), ("unet_paper", None),
}
# The deep ResNets take minutes to train even on tiny inputs; by default they are built and run forward.
FAST_FORWARD_COMBINATIONS = FAST_COMBINATIONS | {("unet", "resnet101"), ("unet", "resnet152")}


# The slow suite (CI) runs a representative slice: every model on MobileNetV2, and U-Net on each encoder family's
# smallest member (tests/encoder_sizes.py; test_encoder_zoo checks every encoder on its own). The rest of the cross (several hundred builds of up to 350M parameters, hours on 2 cores)
# is marked `matrix`: `pytest -m matrix tests/test_models.py`, or benchmarks/combinations.py for builds only.
SLICE_ENCODER = "mobilenetv2"
SLOW_COMBINATIONS = {(name, encoder) for name, encoder in ALL_COMBINATIONS
                     if encoder is None or encoder == SLICE_ENCODER or (name == "unet" and encoder in SMALLEST_OF_EACH_FAMILY)}


def matrix(fast=FAST_COMBINATIONS):
    def marks(key):
        if key in fast:
            return ()
        return pytest.mark.slow if key in SLOW_COMBINATIONS else pytest.mark.matrix

    return [pytest.param(name, encoder, id=f"{name}-{encoder}", marks=marks((name, encoder)))
            for name, encoder in ALL_COMBINATIONS]


def build(name, encoder, num_classes=2, **kwargs):
    if name == "unet_paper":
        return kerazoo.create_model(name, num_classes=num_classes, input_shape=(*UNET_PAPER_SIZE, 1), **kwargs)
    return kerazoo.create_model(name, encoder=encoder, num_classes=num_classes, **kwargs)


def sample_batch(model, batch=2, seed=0, threshold=127, block=1):
    """Images and a learnable mask (pixels brighter than `threshold` are class 1) at the model's size; with
    `block` > 1 the images are random `block` x `block` squares, a mask that coarse-scoring models can fit."""
    height, width = UNET_PAPER_SIZE if model.name == "unet_paper" else ODD_SIZE
    channels = model.input.shape[-1]
    coarse = (batch, -(-height // block), -(-width // block), channels)
    images = np.random.default_rng(seed).uniform(0, 255, size=coarse).astype("float32")
    images = images.repeat(block, axis=1).repeat(block, axis=2)[:, :height, :width]
    out_h, out_w = UNET_PAPER_OUTPUT if model.name == "unet_paper" else (height, width)
    top, left = (height - out_h) // 2, (width - out_w) // 2
    masks = (images[:, top : top + out_h, left : left + out_w, 0] > threshold).astype("int32")
    return images, masks


pytestmark = pytest.mark.usefixtures("fresh_keras_state")  # tests/conftest.py


@pytest.mark.parametrize("name, encoder", matrix())
def test_shapes_training_and_save_load(name, encoder, tmp_path):
    fcn = name.startswith("fcn")
    optimizer = keras.optimizers.Adam(1e-4)
    options, threshold = {}, 127
    if fcn:
        # FCN from random weights on a 2-image batch is not a smooth problem: the deep ResNets' batch norm
        # sees 12 values per channel at stride 32, and a random VGG without batch norm passes almost no
        # signal to the score layers (measured: the loss jumps either way under any step size). So the
        # FCN head trains on a frozen encoder, without dropout, on a mask the score biases can fit too;
        # plain SGD for VGG, whose 120M fc6/fc7 weights Adam would all move by the full rate at once.
        options = {"dropout": 0.0, "freeze_encoder": True}
        threshold = 200
        if encoder.startswith("vgg"):
            optimizer = keras.optimizers.SGD(1e-3)
    block = 1
    if name in ("fpn", "segformer", "deeplabv3", "deeplabv3plus", "pspnet", "upernet"):
        # These score at stride 4 or coarser and upsample: a per-pixel noise mask leaves them only its prior to fit,
        # and Adam's first steps wobble around it (CI: DeepLabV3+ on MobileNetV2 went 0.597, 0.635, 0.614, 0.603).
        # On 16-pixel squares all six fell to 17-58% of the first loss in 4 epochs, for each of three weight draws.
        block = 16
    model = build(name, encoder, **options)
    images, masks = sample_batch(model, threshold=threshold, block=block)
    outputs = model(images)
    assert outputs.shape == (*masks.shape, 2)
    assert outputs.dtype == "float32"

    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(images, masks, epochs=4, batch_size=len(images), verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0], losses

    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(loaded.predict(images, verbose=0)),
                                  np.asarray(model.predict(images, verbose=0)))


@pytest.mark.parametrize("name, encoder", matrix(FAST_FORWARD_COMBINATIONS))
def test_mixed_precision_outputs_stay_float32(name, encoder):
    keras.config.set_dtype_policy("mixed_float16")
    model = build(name, encoder, num_classes=3, activation="softmax")
    images, _ = sample_batch(model, batch=1)
    outputs = model(images)
    assert outputs.dtype == "float32"
    assert model.get_layer("block1_conv1" if name == "segnet" else model.layers[-2].name).compute_dtype == "float16"
    np.testing.assert_allclose(np.asarray(outputs).sum(-1), 1.0, atol=1e-3)


@pytest.mark.parametrize("size", [(1, 1), (31, 33), (64, 96), (97, 250)])
def test_any_size_comes_back(size):
    model = kerazoo.create_model("unet", encoder="mobilenetv2", num_classes=2, decoder_filters=(16, 16, 8, 8, 8))
    assert model(np.zeros((1, *size, 3), "float32")).shape == (1, *size, 2)
    segnet = kerazoo.create_model("segnet_basic", num_classes=2)
    assert segnet(np.zeros((1, *size, 3), "float32")).shape == (1, *size, 2)


# The papers' parameter counts, and ours (21 classes for FCN as in PASCAL VOC; SegNet 12 as on CamVid).
PAPER_PARAMETERS = [
    ("fcn8s", "vgg16", 21, 134_000_000, 0.01),  # Long et al.: "134M"
    ("unet_paper", None, 2, 31_030_000, 0.001),  # Ronneberger et al.: 31.03M (as counted by later reimplementations)
    ("segnet", "vgg16", 12, 29_500_000, 0.01),  # Badrinarayanan et al.: 29.5M
    ("segnet_basic", None, 12, 1_425_000, 0.01),  # SegNet paper table: 1.425M
]


@pytest.mark.parametrize("name, encoder, classes, expected, tolerance", PAPER_PARAMETERS)
def test_parameter_counts_match_the_papers(name, encoder, classes, expected, tolerance):
    kwargs = {"input_shape": (572, 572, 1)} if name == "unet_paper" else {}
    model = kerazoo.create_model(name, encoder=encoder, num_classes=classes, **kwargs)
    assert abs(model.count_params() - expected) / expected <= tolerance, model.count_params()


def test_unet_paper_gives_388_from_572():
    model = kerazoo.create_model("unet_paper", num_classes=2)
    assert model.input.shape[1:] == (572, 572, 1)
    assert model.output.shape[1:] == (388, 388, 2)


def test_unet_paper_rejects_invalid_sizes_naming_the_nearest_valid_ones():
    with pytest.raises(ValueError, match=r"size 250.*\(236, 252\)"):
        kerazoo.create_model("unet_paper", num_classes=2, input_shape=(250, 252, 1))
    with pytest.raises(ValueError, match="static input size"):
        kerazoo.create_model("unet_paper", num_classes=2, input_shape=(None, None, 1))


# What each `upsampling` option must build: the layer class and its settings (blocks.upsample).
UPSAMPLING_LAYERS = {
    "transpose": (keras.layers.Conv2DTranspose, {"kernel_size": (2, 2), "strides": (2, 2)}),
    "nearest": (keras.layers.UpSampling2D, {"interpolation": "nearest", "size": (2, 2)}),
    "bilinear": (keras.layers.UpSampling2D, {"interpolation": "bilinear", "size": (2, 2)}),
    "bed_of_nails": (kerazoo.layers.BedOfNailsUpSampling2D, {"size": (2, 2)}),
}


def _upsampled_by_hand(method, x, layer):
    """NumPy reference of a 2x upsampling of x (B, H, W, C) by `method` (with the layer's weights if learnable)."""
    if method == "nearest":
        return x.repeat(2, axis=1).repeat(2, axis=2)
    if method == "bed_of_nails":
        out = np.zeros((x.shape[0], 2 * x.shape[1], 2 * x.shape[2], x.shape[3]), x.dtype)
        out[:, ::2, ::2] = x
        return out
    if method == "bilinear":
        # Half-pixel centres, edges clamped: output i samples input (i + 0.5) / 2 - 0.5.
        def along(axis, size):
            source = np.clip((np.arange(2 * size) + 0.5) / 2 - 0.5, 0, size - 1)
            low = np.floor(source).astype(int)
            high = np.minimum(low + 1, size - 1)
            weight = (source - low).reshape([-1 if a == axis else 1 for a in range(4)])
            return low, high, weight

        low, high, weight = along(1, x.shape[1])
        x = x[:, low] * (1 - weight) + x[:, high] * weight
        low, high, weight = along(2, x.shape[2])
        return x[:, :, low] * (1 - weight) + x[:, :, high] * weight
    # Transposed convolution, kernel 2, stride 2: each input pixel paints its own 2x2 block.
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in (layer.kernel, layer.bias))  # (2, 2, out, in)
    blocks = np.einsum("bhwc,ijoc->bhiwjo", x, kernel)
    b, h, _, w, _, o = blocks.shape
    return blocks.reshape(b, 2 * h, 2 * w, o) + bias


@pytest.mark.parametrize("upsampling", ["transpose", "nearest", "bilinear", "bed_of_nails"])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_unet_decoder_options(upsampling, batch_norm):
    decoder_filters = (32, 16, 16, 8, 4)
    model = kerazoo.create_model("unet", encoder="mobilenetv2", num_classes=4, decoder_filters=decoder_filters,
                                 upsampling=upsampling, batch_norm=batch_norm)
    assert model(np.zeros((1, 37, 41, 3), "float32")).shape == (1, 37, 41, 4)
    has_bn = any(isinstance(layer, keras.layers.BatchNormalization) and layer.name.startswith("decoder")
                 for layer in model.layers)
    assert has_bn == batch_norm
    assert model.get_layer("decoder_stage1_conv1").use_bias == (not batch_norm)  # batch norm cancels a bias
    assert model.get_layer("decoder_stage4_conv2").filters == 4
    assert model.get_config()["upsampling"] == upsampling

    # Every stage upsamples with the requested layer, not merely something that doubles the size.
    layer_class, settings = UPSAMPLING_LAYERS[upsampling]
    for stage, filters in enumerate(decoder_filters):
        layer = model.get_layer(f"decoder_stage{stage}_upsample")
        assert type(layer) is layer_class, (stage, type(layer))
        assert {key: getattr(layer, key) for key in settings} == settings, stage
        if upsampling == "transpose":
            assert layer.filters == filters

    # And it computes that method: a ramp through the stage-1 layer against a NumPy reference.
    layer = model.get_layer("decoder_stage1_upsample")
    channels = layer.kernel.shape[-1] if upsampling == "transpose" else 2
    ramp = np.arange(3 * 4 * channels, dtype="float32").reshape(1, 3, 4, channels) ** 1.5
    outputs = keras.ops.convert_to_numpy(layer(ramp))
    np.testing.assert_allclose(outputs, _upsampled_by_hand(upsampling, ramp, layer), rtol=1e-5, atol=1e-3)
    if upsampling in ("nearest", "bilinear"):  # the two interpolations differ on a ramp
        other = "bilinear" if upsampling == "nearest" else "nearest"
        assert np.abs(outputs - _upsampled_by_hand(other, ramp, layer)).max() > 1


def test_fcn_structure_follows_the_paper():
    model = kerazoo.create_model("fcn8s", encoder="vgg16", num_classes=21)
    assert model.get_layer("fc6").kernel.shape == (7, 7, 512, 4096)
    assert model.get_layer("fc7").kernel.shape == (1, 1, 4096, 4096)
    assert model.get_layer("score_pool3").kernel.shape == (1, 1, 256, 21)  # pool3, not conv4_3
    assert model.get_layer("score_pool4").kernel.shape == (1, 1, 512, 21)
    upscore8 = model.get_layer("upscore8")
    assert upscore8.kernel.shape == (16, 16, 21, 21) and upscore8.strides == (8, 8)
    np.testing.assert_allclose(np.asarray(upscore8.kernel)[:, :, 3, 3], kerazoo.layers.bilinear_kernel(16, 1)[:, :, 0, 0])
    assert not np.asarray(upscore8.kernel)[:, :, 3, 4].any()
    fcn32 = kerazoo.create_model("fcn32s", encoder="resnet50", num_classes=5)
    assert "fc6" not in [layer.name for layer in fcn32.layers]
    assert fcn32.get_layer("upscore32").kernel.shape == (64, 64, 5, 5)


def test_segnet_unpools_with_the_matching_encoder_indices():
    model = kerazoo.create_model("segnet", encoder="vgg16", num_classes=12)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len([c for c in convs if not c.name.endswith("_decoder") and c.name != "head_conv"]) == 13
    assert len(convs) == 26  # 13 encoder + 12 decoder + classifier
    for block in range(1, 6):
        unpool = model.get_layer(f"block{block}_unpool")
        values, indices, reference = unpool._inbound_nodes[0].input_tensors
        assert indices._keras_history.operation.name == f"block{block}_pool"
        assert reference.shape[-1] == model.get_layer(f"block{block}_conv1").filters


def test_regression_head_and_activations():
    images = np.random.default_rng(0).uniform(0, 255, (2, 33, 35, 3)).astype("float32")
    outputs = {}
    for activation in (None, "tanh"):  # neither is a segmentation activation: both need head="regression"
        model = kerazoo.create_model("unet", encoder="mobilenetv2", num_classes=1, head="regression",
                                     activation=activation, decoder_filters=(16, 16, 8, 8, 8))
        assert model.head == "regression" and model.activation == activation
        assert (model.get_config()["head"], model.get_config()["activation"]) == ("regression", activation)
        if activation is None:
            # A fresh decoder gives outputs near 0, where tanh(x) ~ x: scale the head to reach |x| = 2.
            head = model.get_layer("head_conv")
            head.kernel.assign(head.kernel * (2 / np.abs(keras.ops.convert_to_numpy(model(images))).max()))
            weights = model.get_weights()
        else:
            model.set_weights(weights)
        outputs[activation] = keras.ops.convert_to_numpy(model(images))
        assert outputs[activation].shape == (2, 33, 35, 1)
    # Real-valued outputs: negative values appear, which no softmax or sigmoid head could give ...
    assert outputs[None].min() < -0.1 and outputs[None].max() > 0, (outputs[None].min(), outputs[None].max())
    # ... and the activation is the one asked for, applied to the same linear outputs.
    np.testing.assert_allclose(outputs["tanh"], np.tanh(outputs[None]), rtol=1e-5, atol=1e-6)
    for activation in ("tanh", "linear", "relu"):
        with pytest.raises(ValueError, match=r"activation for head='segmentation' must be one of .*got '" + activation):
            kerazoo.create_model("unet", encoder="mobilenetv2", num_classes=1, activation=activation)
    binary = kerazoo.create_model("segnet_basic", num_classes=1, activation="sigmoid")
    assert binary.output.shape[-1] == 1 and binary.head == "segmentation"


def test_in_channels_other_than_three():
    model = kerazoo.create_model("unet", encoder="resnet50", num_classes=2, in_channels=1)
    assert model(np.zeros((1, 40, 40, 1), "float32")).shape == (1, 40, 40, 2)
    model = kerazoo.create_model("segnet", encoder="vgg16", num_classes=2, in_channels=4)
    assert model(np.zeros((1, 40, 40, 4), "float32")).shape == (1, 40, 40, 2)


def test_pretrained_weights_file_adapts_the_first_convolution(tmp_path):
    reference = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(None, None, 3))
    rng = np.random.default_rng(0)
    reference.set_weights([rng.normal(size=w.shape).astype("float32") for w in reference.get_weights()])
    path = os.path.join(tmp_path, "mobilenetv2.weights.h5")
    reference.save_weights(path)

    grey = kerazoo.create_model("unet", encoder="mobilenetv2", num_classes=2, in_channels=1, encoder_weights=path)
    encoder = grey.get_layer("mobilenetv2_encoder")
    rgb_kernel = np.asarray(reference.get_layer("Conv1").kernel)
    np.testing.assert_allclose(np.asarray(encoder.get_layer("Conv1").kernel), rgb_kernel.sum(axis=2, keepdims=True),
                               rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(encoder.get_layer("block_16_project").kernel),
                                  np.asarray(reference.get_layer("block_16_project").kernel))
    # Grey input through the adapted model equals the RGB model on the grey image replicated thrice.
    rgb = kerazoo.create_model("unet", encoder="mobilenetv2", num_classes=2, encoder_weights=path)
    np.testing.assert_array_equal(np.asarray(rgb.get_layer("mobilenetv2_encoder").get_layer("Conv1").kernel), rgb_kernel)
    image = rng.uniform(0, 255, size=(1, 32, 32, 1)).astype("float32")
    features_grey = grey.get_layer("mobilenetv2_encoder")(grey.get_layer("preprocessing")(image))[-1]
    features_rgb = rgb.get_layer("mobilenetv2_encoder")(rgb.get_layer("preprocessing")(np.repeat(image, 3, -1)))[-1]
    np.testing.assert_allclose(np.asarray(features_grey), np.asarray(features_rgb), rtol=1e-3, atol=1e-3)

    four = kerazoo.create_model("fcn8s", encoder="mobilenetv2", num_classes=2, in_channels=4, encoder_weights=path)
    kernel = np.asarray(four.get_layer("mobilenetv2_encoder").get_layer("Conv1").kernel)
    np.testing.assert_allclose(kernel[:, :, 3], rgb_kernel[:, :, 0] * 0.75, rtol=1e-6)


def test_segnet_takes_its_encoder_convolutions_from_the_vgg_weights(tmp_path):
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    path = os.path.join(tmp_path, "vgg16.weights.h5")
    vgg.save_weights(path)
    model = kerazoo.create_model("segnet", encoder="vgg16", num_classes=3, encoder_weights=path, freeze_encoder=True)
    for name in ("block1_conv1", "block3_conv2", "block5_conv3"):
        np.testing.assert_array_equal(np.asarray(model.get_layer(name).kernel), np.asarray(vgg.get_layer(name).kernel))
        assert not model.get_layer(name).trainable
    assert model.get_layer("block5_conv3_decoder").trainable


def test_freeze_encoder():
    model = kerazoo.create_model("unet", encoder="mobilenetv2", num_classes=2, freeze_encoder=True)
    encoder = model.get_layer("mobilenetv2_encoder")
    assert not encoder.trainable and not encoder.trainable_weights
    assert model.get_layer("decoder_stage0_conv1").trainable and model.trainable_weights


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "unte"}, r"Unknown model 'unte'\. Did you mean 'unet'"),
        ({"name": "unet", "encoder": "resnet51"}, r"cannot use encoder 'resnet51'.*resnet50"),
        ({"name": "segnet", "encoder": "resnet50"}, r"cannot use encoder 'resnet50'.*vgg16, vgg19"),
        ({"name": "unet_paper", "encoder": "vgg16"}, "fixed topology"),
        ({"name": "unet", "num_classes": 0}, "num_classes must be a positive int; got 0"),
        ({"name": "unet", "activation": "relu"}, "activation for head='segmentation'"),
        ({"name": "unet", "head": "depth"}, "head must be one of"),
        ({"name": "unet", "decoder_filter": (1, 2, 3, 4, 5)}, r"Unknown option 'decoder_filter'.*decoder_filters"),
        ({"name": "unet", "decoder_filters": (8, 8)}, "decoder_filters must be 5 positive ints"),
        ({"name": "unet", "upsampling": "cubic"}, "upsampling must be one of"),
        ({"name": "unet", "encoder_weights": "missing.h5"}, "encoder_weights must be None, 'imagenet' or the path"),
        ({"name": "unet", "in_channels": 1, "input_shape": (32, 32, 3)}, "has 3 channels but in_channels=1"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    kwargs = {"encoder": "mobilenetv2", **kwargs} if kwargs["name"] == "unet" else kwargs
    with pytest.raises(ValueError, match=message):
        kerazoo.create_model(**kwargs)


def test_registries_list_what_is_registered():
    assert set(kerazoo.list_models()) == {"fcn8s", "fcn16s", "fcn32s", "unet", "unet_paper", "segnet", "segnet_basic",
                                          "deeplabv3", "deeplabv3plus", "pspnet", "upernet",
                                          "unetplusplus", "fpn", "linknet", "segformer", "edsr", "drunet"}
    assert set(kerazoo.list_encoders()) == {  # every Keras Applications constructor (issue 19)
        "vgg16", "vgg19", "resnet50", "resnet101", "resnet152", "resnet50v2", "resnet101v2", "resnet152v2",
        "mobilenet", "mobilenetv2", "mobilenetv3small", "mobilenetv3large", "xception", "inceptionv3",
        "inceptionresnetv2", "densenet121", "densenet169", "densenet201", "nasnetmobile", "nasnetlarge",
        *(f"efficientnetb{member}" for member in range(8)),
        *(f"efficientnetv2{member}" for member in ("b0", "b1", "b2", "b3", "s", "m", "l")),
        *(f"convnext_{member}" for member in ("tiny", "small", "base", "large", "xlarge")),
    }


# --- ZooModel: the model carries its arguments and its task ----------------------------------------------

TINY_SEGNET = dict(num_classes=3, filters=4, depth=2, class_names=["sky", "road", "car"],
                   class_colors=[(0, 0, 255), (128, 64, 128), (255, 0, 0)], input_size=(16, 24))


def test_zoo_model_config_holds_the_create_model_arguments_at_top_level():
    model = kerazoo.create_model("unet", encoder="mobilenetv2", num_classes=3, in_channels=1,
                                 decoder_filters=(8, 8, 8, 8, 8), class_names=["a", "b", "c"], input_size=(32, 48))
    assert isinstance(model, ZooModel)
    config = model.get_config()
    assert {key: config[key] for key in ("name", "encoder", "num_classes", "in_channels", "head", "activation")} == {
        "name": "unet", "encoder": "mobilenetv2", "num_classes": 3, "in_channels": 1, "head": "segmentation",
        "activation": None}
    assert config["decoder_filters"] == [8, 8, 8, 8, 8] and config["upsampling"] == "transpose"  # defaults too
    assert config["class_names"] == ["a", "b", "c"] and config["input_size"] == [32, 48]
    assert config["preprocessing"]["normalization"] == "tf"
    assert "layers" not in config  # not a functional graph: the arguments rebuild it
    assert (model.num_classes, model.head, model.input_size, model.config_name) == (3, "segmentation", (32, 48), "unet")


def test_zoo_model_keras_file_round_trip_keeps_outputs_and_attributes(tmp_path, monkeypatch):
    model = kerazoo.create_model("segnet_basic", **TINY_SEGNET)
    path = tmp_path / "tiny.keras"
    model.save(path)
    # Loading rebuilds through create_model with encoder_weights=None: no download can happen.
    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: pytest.fail("download attempted"))
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is ZooModel
    images = np.random.default_rng(0).uniform(0, 255, (2, 16, 24, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(images)), keras.ops.convert_to_numpy(model(images)))
    for attribute in ("num_classes", "head", "class_names", "class_colors", "input_size", "activation"):
        assert getattr(loaded, attribute) == getattr(model, attribute), attribute
    assert loaded.get_config() == model.get_config()


@pytest.mark.parametrize("kwargs, message", [
    ({"class_names": ["a", "b"]}, "2 class_names for num_classes=3"),
    ({"class_colors": [(0, 0, 0)] * 2 + [(0, 0, 300)]}, "0..255"),
    ({"input_size": (16,)}, "input_size must be"),
    ({"input_size": (16, 24), "input_shape": (32, 32, 3)}, "disagrees with the static input_shape"),
    ({"head": "regression", "class_names": ["a", "b", "c"]}, "class_names are for head='segmentation'"),
])
def test_task_attributes_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kerazoo.create_model("segnet_basic", num_classes=3, filters=4, depth=2, **kwargs)


def _reference_labels(model, image):
    """NumPy/TF reference of segment(): resize to input_size, run, resize the logits back, argmax."""
    import tensorflow as tf

    resized = tf.clip_by_value(tf.image.resize(image[None], model.input_size, "bilinear", antialias=True), 0, 255)
    logits = keras.ops.convert_to_numpy(model(resized.numpy()))
    back = tf.image.resize(logits, image.shape[:2], "bilinear").numpy()[0]
    return back.argmax(-1)


def test_segment_returns_labels_at_each_image_size_resizing_inside():
    keras.utils.set_random_seed(0)
    model = kerazoo.create_model("segnet_basic", **TINY_SEGNET)
    rng = np.random.default_rng(0)
    odd = [rng.uniform(0, 255, size).astype("float32") for size in ((37, 53, 3), (16, 24, 3), (9, 70, 3))]
    labels = model.segment(odd, batch_size=2)
    assert [label.shape for label in labels] == [(37, 53), (16, 24), (9, 70)]
    assert all(label.dtype == np.int32 for label in labels)
    for image, label in zip(odd, labels):
        np.testing.assert_array_equal(label, _reference_labels(model, image))
    single = model.segment(odd[0])
    np.testing.assert_array_equal(single, labels[0])
    batch = model.segment(np.stack([odd[0], odd[0]]))
    assert batch.shape == (2, 37, 53)
    # Without an input size the model runs each image as it comes.
    free = kerazoo.create_model("segnet_basic", **dict(TINY_SEGNET, input_size=None))
    free.set_weights(model.get_weights())
    direct = keras.ops.convert_to_numpy(free(odd[1][None]))[0].argmax(-1)
    np.testing.assert_array_equal(free.segment(odd[1]), direct)
    with pytest.raises(ValueError, match=r"3 \(RGB\) channels; got 1 \(grey\)"):
        model.segment(np.zeros((8, 8, 1), "float32"))


def test_segment_is_for_segmentation_heads():
    model = kerazoo.create_model("segnet_basic", num_classes=1, filters=4, depth=2, head="regression")
    assert model.head == "regression" and model.class_names is None
    with pytest.raises(ValueError, match="head='segmentation'"):
        model.segment(np.zeros((8, 8, 3), "float32"))


def test_unet_paper_filters_sets_the_width_of_every_level():
    model = kerazoo.create_model("unet_paper", padding="same", filters=8, num_classes=2)
    widths = [model.get_layer(f"down{level}_conv1").filters for level in range(5)]
    assert widths == [8, 16, 32, 64, 128]
    assert [model.get_layer(f"up{level}_upconv").filters for level in range(4)] == [8, 16, 32, 64]
    assert kerazoo.create_model("unet_paper", padding="same").get_layer("down4_conv1").filters == 1024


def test_unet_paper_rejects_a_bad_width():
    with pytest.raises(ValueError, match="filters must be a positive int.*got 0"):
        kerazoo.create_model("unet_paper", padding="same", filters=0)


def test_training_and_inference_resize_give_the_same_pixels():
    # segment() resizes an image to the trained size with the function the data pipeline trained on.
    import tensorflow as tf

    from kerazoo.data.augment import resize_pair
    from kerazoo.models.model import _resize_image

    image = np.random.default_rng(3).uniform(0, 255, size=(37, 53, 3)).astype("float32")
    trained, _ = resize_pair(tf.constant(image), tf.zeros((37, 53), tf.int32), (24, 32))
    inferred = _resize_image(image, (24, 32))
    assert inferred.shape == (24, 32, 3)
    np.testing.assert_array_equal(np.asarray(trained), inferred)


@pytest.mark.parametrize("channels, expected", [(1, "got 1 \\(grey\\) channels.*Image.convert\\('RGB'\\)"),
                                                (4, "got 4 \\(RGBA\\) channels.*drop alpha")])
def test_wrong_channel_count_names_expected_received_and_how_to_convert(channels, expected):
    model = kerazoo.create_model("segnet_basic", num_classes=3, filters=4, depth=2)
    images = np.zeros((1, 16, 16, channels), "float32")
    message = f"takes images with 3 \\(RGB\\) channels; {expected}"
    with pytest.raises(ValueError, match=message):
        model(images)
    with pytest.raises(ValueError, match=message):
        model.predict(images, verbose=0)
    with pytest.raises(ValueError, match=message):
        model.segment(images[0])
    if channels == 1:
        with pytest.raises(ValueError, match=message):
            model.segment(images[0, ..., 0])  # HxW, no channel axis


def test_grey_model_takes_grey_images_with_or_without_channel_axis():
    model = kerazoo.create_model("segnet_basic", num_classes=2, in_channels=1, filters=4, depth=2)
    grey = np.random.default_rng(0).uniform(0, 255, size=(16, 16)).astype("float32")
    np.testing.assert_array_equal(model.segment(grey), model.segment(grey[..., None]))
    with pytest.raises(ValueError, match="takes images with 1 \\(grey\\) channels; got 3 \\(RGB\\).*convert\\('L'\\)"):
        model(np.zeros((1, 16, 16, 3), "float32"))
