"""The pyramid-pooling decoders (deeplabv3, deeplabv3plus, pspnet, upernet) and their run-time-size layers.

Layers against NumPy references; each decoder on MobileNetV2 (random weights, small decoder widths) at odd
sizes: shapes, a `.keras` round trip, a training step, mixed precision, every task, and export to TFLite
(builtin ops only) and ONNX with parity through `kerazoo.export`. The full decoder x task matrix, the other
exports and the counts against segmentation_models_pytorch are marked slow.
"""

import gc
import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import kerazoo
from kerazoo.layers import AnySizeUpSampling2D
from kerazoo.layers.pyramid import BilinearResizeToReference, BinAveragePooling2D

DECODERS = ("deeplabv3", "deeplabv3plus", "pspnet", "upernet")
# Narrow decoders keep the default run fast; the defaults are what the slow and parameter tests build.
SMALL = {
    "deeplabv3": {"decoder_filters": 16},
    "deeplabv3plus": {"decoder_filters": 16, "low_level_filters": 8},
    "pspnet": {"decoder_filters": 16},
    "upernet": {"decoder_filters": 16, "pyramid_filters": 8},
}
ODD_SIZE = (45, 67)


def images(count, height, width, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(count, height, width, channels)).astype("float32")


def small_model(name, **kwargs):
    return kerazoo.create_model(name, encoder="mobilenetv2", **{"num_classes": 3, **SMALL[name], **kwargs})


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")
    gc.collect()


# --- Layers: NumPy references --------------------------------------------------------------------------------


def adaptive_average_pool_reference(x, bins):
    """PyTorch's AdaptiveAvgPool2d: bin i covers [floor(i * n / bins), ceil((i + 1) * n / bins))."""
    out = np.zeros((x.shape[0], bins, bins, x.shape[3]), np.float64)
    for i in range(bins):
        top, bottom = i * x.shape[1] // bins, -(-(i + 1) * x.shape[1] // bins)
        for j in range(bins):
            left, right = j * x.shape[2] // bins, -(-(j + 1) * x.shape[2] // bins)
            out[:, i, j] = x[:, top:bottom, left:right].mean(axis=(1, 2))
    return out


def bilinear_resize_reference(x, height, width):
    """Half-pixel-centre bilinear resize with clamped edges, one axis after the other."""
    def along(x, axis, size):
        n = x.shape[axis]
        source = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, n - 1)
        weight = (source - low).reshape([-1 if a == axis else 1 for a in range(4)])
        return np.take(x, low, axis=axis) * (1 - weight) + np.take(x, high, axis=axis) * weight

    return along(along(x.astype(np.float64), 1, height), 2, width)


@pytest.mark.parametrize("size", [(1, 1), (2, 9), (5, 7), (6, 12), (13, 3)])
@pytest.mark.parametrize("bins", [1, 2, 3, 6])
def test_bin_average_pooling_matches_adaptive_pooling_at_any_size(size, bins):
    x = np.random.default_rng(1).normal(size=(2, *size, 4)).astype("float32")
    pooled = keras.ops.convert_to_numpy(BinAveragePooling2D(bins)(x))
    np.testing.assert_allclose(pooled, adaptive_average_pool_reference(x, bins), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("source, target", [((1, 1), (5, 7)), ((2, 2), (9, 4)), ((3, 3), (3, 3)), ((6, 6), (13, 20)),
                                            ((4, 5), (2, 3))])
def test_bilinear_resize_to_reference_matches_the_reference(source, target):
    x = np.random.default_rng(2).normal(size=(2, *source, 3)).astype("float32")
    reference = np.zeros((2, *target, 1), "float32")
    resized = keras.ops.convert_to_numpy(BilinearResizeToReference()([x, reference]))
    np.testing.assert_allclose(resized, bilinear_resize_reference(x, *target), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_bilinear_upsampling_of_features_matches_the_reference(scale):
    """The decoders' feature and score upsampling (`AnySizeUpSampling2D`, bilinear) at the factors they use."""
    x = np.random.default_rng(3).normal(size=(2, 5, 7, 6)).astype("float32")
    upsampled = keras.ops.convert_to_numpy(AnySizeUpSampling2D(scale, interpolation="bilinear")(x))
    np.testing.assert_allclose(upsampled, bilinear_resize_reference(x, 5 * scale, 7 * scale), rtol=1e-5, atol=1e-5)


def test_pyramid_layers_take_run_time_sizes_and_reject_bad_arguments():
    inputs = keras.Input((None, None, 4))
    pooled = BinAveragePooling2D(3)(inputs)
    assert tuple(pooled.shape) == (None, 3, 3, 4)
    resized = BilinearResizeToReference()([pooled, inputs])
    assert tuple(resized.shape) == (None, None, None, 4)
    model = keras.Model(inputs, AnySizeUpSampling2D(2, interpolation="bilinear")(resized))
    for size in [(1, 1), (7, 10)]:
        assert model(np.zeros((1, *size, 4), "float32")).shape == (1, 2 * size[0], 2 * size[1], 4)
    with pytest.raises(ValueError, match="bins must be a positive int; got 0"):
        BinAveragePooling2D(0)


# --- Each decoder on MobileNetV2 ------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=DECODERS)
def decoder(request):
    """(name, model) with small decoder widths, built once per decoder for the tests below."""
    keras.utils.set_random_seed(0)
    yield request.param, small_model(request.param)
    keras.backend.clear_session()
    gc.collect()


@pytest.mark.parametrize("size", [(1, 1), (31, 33), ODD_SIZE, (67, 91)])
def test_output_has_the_input_size(decoder, size):
    name, model = decoder
    assert model(images(1, *size)).shape == (1, *size, 3), name


def test_save_and_load_give_the_same_outputs(decoder, tmp_path):
    name, model = decoder
    path = os.path.join(tmp_path, f"{name}.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    batch = images(2, *ODD_SIZE)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded.predict(batch, verbose=0)),
                                  keras.ops.convert_to_numpy(model.predict(batch, verbose=0)))
    assert loaded.get_config() == model.get_config()


# A layer of each decoder's own pyramid that a training step must reach through the run-time-size layers.
PYRAMID_LAYERS = {"deeplabv3": "aspp_image_conv", "deeplabv3plus": "aspp_image_conv", "pspnet": "pyramid_conv6",
                  "upernet": "pyramid_conv3"}


def test_one_training_step_updates_the_pyramid_and_the_encoder(decoder):
    name, model = decoder
    batch = images(2, *ODD_SIZE, seed=4)
    masks = (batch[..., 0] > 127).astype("int32")
    watched = {layer: model.get_layer(layer).kernel for layer in (PYRAMID_LAYERS[name], "head_conv")}
    encoder_kernel = model.get_layer("mobilenetv2_encoder").get_layer("Conv1").kernel
    before = {key: keras.ops.convert_to_numpy(value) for key, value in {**watched, "encoder": encoder_kernel}.items()}
    # Eager: one step without tracing the training function (the shapes were checked above).
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)
    loss = model.train_on_batch(batch, masks)
    assert np.isfinite(loss)
    after = {key: keras.ops.convert_to_numpy(value) for key, value in {**watched, "encoder": encoder_kernel}.items()}
    for key in before:
        assert np.all(np.isfinite(after[key])), key
        assert not np.allclose(before[key], after[key]), f"{name}: {key} did not move"


@pytest.mark.parametrize("name", DECODERS)
def test_mixed_precision_outputs_stay_float32(name):
    keras.config.set_dtype_policy("mixed_float16")
    model = small_model(name, activation="softmax")
    outputs = model(images(1, *ODD_SIZE))
    assert outputs.dtype == "float32"
    assert model.get_layer(PYRAMID_LAYERS[name]).compute_dtype == "float16"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs).sum(-1), 1.0, atol=1e-3)


# Each decoder with one of the other tasks by default (all four tasks covered); the full matrix is slow.
TASK_CASES = [("deeplabv3", "denoise"), ("deeplabv3plus", "super_resolution"), ("pspnet", "depth"),
              ("upernet", "regression")]


def _task_matrix():
    return [pytest.param(name, task, marks=() if (name, task) in TASK_CASES else pytest.mark.slow)
            for name in DECODERS for task in ("denoise", "super_resolution", "depth", "regression")]


@pytest.mark.parametrize("name, task", _task_matrix())
def test_every_task_works(name, task):
    height, width = 29, 35
    if task == "regression":  # segmentation's regression head: 2 real outputs per pixel
        model = small_model(name, num_classes=2, head="regression")
        expected = (1, height, width, 2)
    elif task == "super_resolution":
        model = small_model(name, task=task, num_classes=None, in_channels=1, scale=3)
        expected = (1, 3 * height, 3 * width, 1)
    else:
        model = small_model(name, task=task, num_classes=None)
        expected = (1, height, width, 3 if task == "denoise" else 1)
    assert model.get_config()["task"] == ("segmentation" if task == "regression" else task)
    outputs = keras.ops.convert_to_numpy(model(images(1, height, width, model.in_channels)))
    assert outputs.shape == expected and outputs.dtype == np.float32
    assert np.all(np.isfinite(outputs))
    if task == "depth":
        assert np.all(outputs > 0)  # softplus: metres are positive


# --- Options: output stride, atrous rates, encoder depth, clear errors ---------------------------------------


def _dilation(model, layer):
    return tuple(model.get_layer(layer).get_config()["dilation_rate"])


def _feature_size(model, layer, size):
    """Height and width of `layer`'s output for an input of `size`."""
    probe = keras.Model(model.input, model.get_layer(layer).output)
    return tuple(probe(images(1, *size)).shape[1:3])


def test_aspp_rates_and_feature_size_follow_the_output_stride():
    at_16 = small_model("deeplabv3")
    assert at_16.get_config()["output_stride"] == 16
    assert [_dilation(at_16, f"aspp_atrous{i}") for i in (1, 2, 3)] == [(6, 6), (12, 12), (18, 18)]
    assert _feature_size(at_16, "aspp_concat", (67, 91)) == (5, 6)  # padded to 80 x 96, over 16
    at_8 = small_model("deeplabv3plus", output_stride=8)
    assert at_8.get_config()["output_stride"] == 8
    assert [_dilation(at_8, f"aspp_atrous{i}") for i in (1, 2, 3)] == [(12, 12), (24, 24), (36, 36)]
    assert _feature_size(at_8, "aspp_concat", (67, 91)) == (9, 12)  # padded to 72 x 96, over 8
    assert _feature_size(at_8, "decoder_concat", (67, 91)) == (18, 24)  # the stride-4 features
    chosen = small_model("deeplabv3", atrous_rates=(2, 4, 6, 8), separable=True)
    assert [_dilation(chosen, f"aspp_atrous{i}") for i in (1, 2, 3, 4)] == [(2, 2), (4, 4), (6, 6), (8, 8)]
    assert isinstance(chosen.get_layer("aspp_atrous1"), keras.layers.SeparableConv2D)
    assert chosen(images(1, 19, 23)).shape == (1, 19, 23, 3)


def test_pspnet_runs_its_pyramid_at_stride_8():
    assert _feature_size(small_model("pspnet"), "pyramid_concat", (67, 91)) == (9, 12)  # dilated, as the paper
    assert _feature_size(small_model("pspnet", output_stride=32), "pyramid_concat", (67, 91)) == (3, 3)


def test_pspnet_encoder_depth_3_ends_the_encoder_at_stride_8():
    model = small_model("pspnet", encoder_depth=3)
    assert _feature_size(model, "pyramid_concat", (67, 91)) == (9, 12)
    spec = kerazoo.encoders.get_encoder_spec("mobilenetv2")
    encoder = model.get_layer("mobilenetv2_encoder")
    built = {layer.name for layer in encoder.layers}
    assert spec.features[8] in built
    assert spec.features[16] not in built and spec.features[32] not in built  # later stages are not built
    stride8_channels = encoder.get_layer(spec.features[8]).output.shape[-1]
    assert model.get_layer("pyramid_conv1").filters == stride8_channels // 4  # levels get 1/len(bins) each
    assert model(images(1, *ODD_SIZE)).shape == (1, *ODD_SIZE, 3)


def test_pspnet_fuse_kernel_size_1_is_smps_fuse_convolution():
    paper, light = small_model("pspnet", encoder_depth=3), small_model("pspnet", encoder_depth=3, fuse_kernel_size=1)
    fuse = light.get_layer("pyramid_fuse")
    assert fuse.kernel_size == (1, 1) and paper.get_layer("pyramid_fuse").kernel_size == (3, 3)
    concat_channels = light.get_layer("pyramid_concat").output.shape[-1]
    assert paper.count_params() - light.count_params() == 8 * concat_channels * fuse.filters  # 9 taps become 1
    assert light(images(1, *ODD_SIZE)).shape == (1, *ODD_SIZE, 3)


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "deeplabv3", "output_stride": 32}, r"output_stride must be one of \(8, 16\); got 32"),
    ({"name": "deeplabv3plus", "atrous_rates": (6, 0)}, "atrous_rates must be a non-empty sequence of positive ints"),
    ({"name": "deeplabv3plus", "low_level_filters": 0}, "low_level_filters must be a positive int; got 0"),
    ({"name": "pspnet", "bins": ()}, "bins must be a non-empty sequence of positive ints"),
    ({"name": "pspnet", "encoder_depth": 2}, r"encoder_depth must be one of \(3, 4, 5\); got 2"),
    ({"name": "pspnet", "dropout": 1.0}, r"dropout must be a float in \[0, 1\); got 1.0"),
    ({"name": "pspnet", "fuse_kernel_size": 0}, "fuse_kernel_size must be a positive int; got 0"),
    ({"name": "upernet", "output_stride": 16}, "Unknown option 'output_stride' for model 'upernet'"),
    # FCN's stride is its name (the registry binds it): still not an option, now that output_stride is one.
    ({"name": "fcn8s", "output_stride": 16}, "Unknown option 'output_stride' for model 'fcn8s'"),
    ({"name": "upernet", "pyramid_filters": -1}, "pyramid_filters must be a positive int; got -1"),
])
def test_bad_options_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kerazoo.create_model(encoder="mobilenetv2", num_classes=2, **kwargs)


def test_registered_on_every_encoder():
    from kerazoo.models import model_encoders

    for name in DECODERS:
        assert name in kerazoo.list_models()
        assert set(model_encoders(name)) == set(kerazoo.list_encoders())


# --- Export: TFLite builtins and ONNX with parity -------------------------------------------------------------


def _export_and_check(model, tmp_path, height, width, int8_floor=None):
    """TFLite float32 / float16 / int8 (builtin ops only) and ONNX, each reloaded and compared with Keras."""
    from kerazoo.export import export

    calibration = images(4, height, width)
    report = export(model, str(tmp_path / "tflite"), formats=("tflite",), quantize=(None, "float16", "int8"),
                    representative_data=calibration, latency_runs=0, verbose=False, strict=False)
    # A Flex op fails the conversion; float32 and float16 files must meet their parity contracts.
    assert not report.failures(), report.failures()
    assert report.get("tflite").passed and report.get("tflite", "float16").passed
    int8 = report.get("tflite", "int8")
    assert int8.argmax_agreement is not None  # converted and ran (int8 has no contract)
    if int8_floor is not None:
        assert int8.argmax_agreement >= int8_floor, int8
    # Every file keeps a dynamic height and width: no static-size fallback at tracing or conversion.
    assert not any("static" in note for note in report.notes), report.notes
    for exported in report.files:
        assert not any("static" in note for note in exported.notes), (exported.variant, exported.notes)
    from ai_edge_litert.interpreter import Interpreter

    signature = Interpreter(model_path=report.get("tflite").path).get_input_details()[0]["shape_signature"]
    assert list(signature) == [-1, -1, -1, 3]
    report = export(model, str(tmp_path / "onnx"), formats="onnx", sample_inputs=calibration[:2], latency_runs=0,
                    verbose=False)
    assert report.ok and report.get("onnx").argmax_agreement >= 0.999
    return report


def pyramid_layers_model():
    """The run-time-size layers between strided and dilated convolutions, without an encoder: small
    enough to export in seconds, with activations of sane range (a random MobileNetV2's deep features are
    ~1e-11 and int8 rounds them to zero, so only this model gives int8 a meaningful bound)."""
    inputs = keras.Input((None, None, 3), name="image")
    x = kerazoo.layers.PadToMultiple(8)(keras.layers.Rescaling(1 / 127.5, -1.0)(inputs))
    for _ in range(3):
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    levels = [x]
    for bins in (1, 2, 3, 6):
        pooled = keras.layers.Conv2D(4, 1, activation="relu")(BinAveragePooling2D(bins)(x))
        levels.append(BilinearResizeToReference()([pooled, x]))
    x = keras.layers.Concatenate()(levels)
    x = keras.layers.Conv2D(8, 3, padding="same", dilation_rate=6, activation="relu")(x)
    x = keras.layers.Conv2D(3, 1)(AnySizeUpSampling2D(8, interpolation="bilinear")(x))
    return keras.Model(inputs, kerazoo.layers.CropToReference()([x, inputs]), name="pyramid_layers")


@pytest.mark.tensorflow_only(reason="TFLite conversion and tf2onnx need TensorFlow")
def test_pyramid_layers_export_with_parity_including_int8(tmp_path):
    # Measured: int8 agrees on 0.99 of the pixels; 0.95 leaves room for another CPU's rounding.
    _export_and_check(pyramid_layers_model(), tmp_path, *ODD_SIZE, int8_floor=0.95)


@pytest.mark.tensorflow_only(reason="TFLite conversion and tf2onnx need TensorFlow")
@pytest.mark.parametrize("name", [n if n == "pspnet" else pytest.param(n, marks=pytest.mark.slow) for n in DECODERS])
def test_exports_to_tflite_builtins_and_onnx_with_parity(name, tmp_path):
    _export_and_check(small_model(name), tmp_path, *ODD_SIZE)


# --- Parameter counts against segmentation_models_pytorch -------------------------------------------------------

SMP_DECODER_COUNT = """
import sys, segmentation_models_pytorch as smp
model = getattr(smp, sys.argv[1])("resnet50", encoder_weights=None, classes=int(sys.argv[2]))
print(sum(p.numel() for p in model.decoder.parameters()) + sum(p.numel() for p in model.segmentation_head.parameters()))
"""


@pytest.mark.slow
@pytest.mark.peer
# torch and TensorFlow crash in one process here (kerazoo/bench/peer.py): smp is found, not imported, and counts
# in a child.
@pytest.mark.skipif(importlib.util.find_spec("segmentation_models_pytorch") is None,
                    reason='needs pip install "kerazoo[peer]"')
def test_deeplabv3plus_separable_has_smps_decoder_parameter_count():
    """With separable convolutions, our DeepLabV3+ decoder and head have exactly smp's trainable parameters
    (smp runs one separable conv after ASPP and one after the concat, we two after the concat: same shapes)."""
    done = subprocess.run([sys.executable, "-c", SMP_DECODER_COUNT, "DeepLabV3Plus", "21"], capture_output=True,
                          text=True, check=True)
    smp_count = json.loads(done.stdout.strip().splitlines()[-1])
    model = kerazoo.create_model("deeplabv3plus", encoder="resnet50", num_classes=21, separable=True)
    trainable = lambda weights: int(sum(np.prod(w.shape) for w in weights))  # noqa: E731
    ours = trainable(model.trainable_weights) - trainable(model.get_layer("resnet50_encoder").trainable_weights)
    assert ours == smp_count
