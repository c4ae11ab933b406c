"""Restoration and depth models: the task argument of create_model, its heads, methods and export."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerazoo
from kerazoo import layers
from kerazoo.tasks import list_tasks


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(0)


def pixels(count, height, width, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(count, height, width, channels)).astype("float32")


def small(name="segnet_basic", **arguments):
    """Tiny models: SegNet-Basic, EDSR and DRUNet (no encoder) or U-Net on MobileNetV2 with narrow decoders."""
    if name == "segnet_basic":
        return kerazoo.create_model(name, filters=8, depth=2, **arguments)
    if name == "unet":
        return kerazoo.create_model(name, encoder="mobilenetv2", decoder_filters=(16, 8, 8, 8, 8), **arguments)
    if name == "unet_paper":
        return kerazoo.create_model(name, padding="same", **arguments)
    if name in ("edsr", "drunet"):
        return kerazoo.create_model(name, filters=8, num_blocks=2, **arguments)
    return kerazoo.create_model(name, encoder="mobilenetv2", **arguments)


def zero_last_layers(model, names):
    """Zeroes the weights of the named layers: the network then predicts no noise / no detail."""
    for name in names:
        layer = model.get_layer(name)
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])


def numpy_depth_to_space(x, block):
    batch, height, width, depth = x.shape
    channels = depth // block**2
    x = x.reshape(batch, height, width, block, block, channels).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, height * block, width * block, channels)


# --------------------------------------------------------------------------------------------------
# The new layers, against independent references.


@pytest.mark.parametrize("block", [2, 3, 4])
def test_depth_to_space_matches_numpy(block):
    x = np.random.default_rng(1).normal(size=(2, 5, 7, 2 * block**2)).astype("float32")
    np.testing.assert_array_equal(np.asarray(layers.DepthToSpace(block)(x)), numpy_depth_to_space(x, block))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bilinear_upsampling_matches_tf_resize_at_odd_sizes(scale):
    x = pixels(2, 7, 9)
    expected = tf.image.resize(x, (7 * scale, 9 * scale), method="bilinear").numpy()
    np.testing.assert_allclose(np.asarray(layers.BilinearUpsampling(scale)(x)), expected, atol=2e-4)


def test_new_layers_validate_arguments():
    with pytest.raises(ValueError, match="block_size must be an int >= 2; got 1"):
        layers.DepthToSpace(1)
    with pytest.raises(ValueError, match="scale must be an int >= 2; got 1.5"):
        layers.BilinearUpsampling(1.5)
    with pytest.raises(ValueError, match="channels divisible by 4; got 6"):
        layers.DepthToSpace(2)(np.zeros((1, 2, 2, 6), "float32"))


# --------------------------------------------------------------------------------------------------
# Shapes: every family takes every task at any size.


FAMILIES = ["segnet_basic", "unet", "fcn8s", "unet_paper", "edsr", "drunet"]
ENCODER_FAMILIES = ("unet", "fcn8s")  # MobileNetV2 builds take seconds: one fast case each, the rest slow
FAST_SR = {("unet", "subpixel"), ("fcn8s", "transpose")}
SR_CASES = [
    pytest.param(name, upsampler, scale, id=f"{name}-{upsampler}-x{scale}",
                 marks=pytest.mark.slow if name in ENCODER_FAMILIES and (name, upsampler) not in FAST_SR else ())
    for name in FAMILIES for upsampler, scale in [("subpixel", 3), ("transpose", 2), ("bilinear", 4)]
]


@pytest.mark.parametrize("name, upsampler, scale", SR_CASES)
def test_super_resolver_returns_scale_times_any_size(name, upsampler, scale):
    model = small(name, task="super_resolution", scale=scale, upsampler=upsampler, in_channels=1)
    output = model(pixels(1, 19, 23, channels=1))
    assert tuple(output.shape) == (1, 19 * scale, 23 * scale, 1)
    assert output.dtype == "float32"


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow if name == "unet" else ())
                                  for name in FAMILIES])
def test_denoiser_and_depth_keep_the_size(name):
    channels = 1 if name == "unet_paper" else 3
    denoiser = small(name, task="denoise", in_channels=channels)
    assert tuple(denoiser(pixels(2, 21, 30, channels)).shape) == (2, 21, 30, channels)
    if channels == 3:
        depth = small(name, task="depth")
        prediction = np.asarray(depth(pixels(1, 21, 30)))
        assert prediction.shape == (1, 21, 30, 1) and (prediction > 0).all()  # softplus: metres, positive


def test_channels_default_to_input_and_depth_to_one():
    assert small(task="denoise", in_channels=1).num_classes == 1
    assert small(task="super_resolution").num_classes == 3
    assert small(task="depth").num_classes == 1
    grey_to_rgb = small(task="super_resolution", in_channels=1, num_classes=3, residual=False)
    assert tuple(grey_to_rgb(pixels(1, 8, 8, 1)).shape) == (1, 16, 16, 3)


def test_restoration_scales_pixels_to_unit_and_depth_keeps_encoder_preprocessing():
    restorer = small(task="denoise")
    layer = restorer.get_layer("preprocessing")
    assert isinstance(layer, keras.layers.Rescaling) and layer.get_config()["scale"] == pytest.approx(1 / 255)
    assert restorer.preprocessing["normalization"].startswith("scale by 0.00392")
    depth = small(task="depth")
    assert depth.get_layer("preprocessing").get_config()["mode"] == "tf"  # what segmentation uses


# --------------------------------------------------------------------------------------------------
# Global residuals, checked against the formula with the network's prediction zeroed.


def test_denoise_residual_is_input_minus_predicted_noise():
    model = small(task="denoise")
    zero_last_layers(model, ["head_conv"])
    x = pixels(2, 13, 17)
    np.testing.assert_allclose(np.asarray(model(x)), x, atol=1e-4)  # no predicted noise: the input itself
    plain = small(task="denoise", residual=False)
    zero_last_layers(plain, ["head_conv"])
    np.testing.assert_array_equal(np.asarray(plain(x)), 0.0)


@pytest.mark.parametrize("upsampler, head_layer", [("subpixel", "head_conv"), ("transpose", "head_upsample"),
                                                   ("bilinear", "head_conv")])
def test_super_resolution_residual_is_bilinear_upsample_plus_detail(upsampler, head_layer):
    model = small(task="super_resolution", scale=3, upsampler=upsampler)
    zero_last_layers(model, [head_layer])
    x = pixels(1, 11, 14)
    expected = tf.image.resize(x, (33, 42), method="bilinear").numpy()
    np.testing.assert_allclose(np.asarray(model(x)), expected, atol=2e-3)


# --------------------------------------------------------------------------------------------------
# The model's methods.


def test_restore_returns_uint8_rounded_and_clipped_at_each_size():
    model = small(task="super_resolution", scale=2, in_channels=1)
    zero_last_layers(model, ["head_conv"])
    flat = np.full((5, 7), 100.4, "float32")
    bright = np.full((6, 9), 300.0, "float32")
    restored = model.restore([flat, bright])
    assert [r.shape for r in restored] == [(10, 14), (12, 18)] and all(r.dtype == np.uint8 for r in restored)
    assert (restored[0] == 100).all() and (restored[1] == 255).all()
    batch = model.restore(np.stack([flat[:, :5], flat[:, 2:]])[..., None])
    assert batch.shape == (2, 10, 10)
    rgb = small(task="denoise")
    assert rgb.restore(pixels(1, 9, 11)[0]).shape == (9, 11, 3)


def test_predict_depth_in_metres_at_image_size():
    model = small(task="depth", input_size=(32, 32))
    images = [pixels(1, 20, 28)[0], pixels(1, 40, 24, seed=1)[0]]
    depths = model.predict_depth(images)
    assert [d.shape for d in depths] == [(20, 28), (40, 24)]
    assert all(d.dtype == np.float32 and (d > 0).all() for d in depths)
    # Each image goes to the trained 32x32 (bilinear, antialiased, as training resizes), through the model,
    # and its depth back to the image's size (bilinear): the same steps with TensorFlow's resize.
    for image, depth in zip(images, depths):
        at_input = tf.clip_by_value(tf.image.resize(image, (32, 32), method="bilinear", antialias=True), 0, 255)
        output = model.predict_on_batch(at_input[None])[0]
        expected = tf.image.resize(output, image.shape[:2], method="bilinear")[..., 0].numpy()
        np.testing.assert_allclose(depth, expected, rtol=1e-4, atol=1e-5)
    # Metres as the head gives them, not rescaled: a head that says softplus(bias) = 2.5 everywhere gives 2.5 m.
    head = model.get_layer("head_conv")
    kernel, bias = head.get_weights()
    head.set_weights([np.zeros_like(kernel), np.full_like(bias, np.log(np.expm1(2.5)))])
    for depth in model.predict_depth(images):
        np.testing.assert_allclose(depth, 2.5, rtol=1e-5)


def test_each_method_names_the_right_one():
    with pytest.raises(ValueError, match=r"'denoise' model: use restore\(\)"):
        small(task="denoise").segment(pixels(1, 8, 8))
    with pytest.raises(ValueError, match=r"'depth' model: use predict_depth\(\)"):
        small(task="depth").restore(pixels(1, 8, 8))
    with pytest.raises(ValueError, match=r"'segmentation' model: use segment\(\)"):
        small(num_classes=3).predict_depth(pixels(1, 8, 8))


# --------------------------------------------------------------------------------------------------
# Config and .keras round trips, defaults of the task.


@pytest.mark.parametrize("task, options", [("denoise", dict(residual=False, in_channels=1)),
                                           ("super_resolution", dict(scale=4, upsampler="transpose")),
                                           ("super_resolution", dict(scale=3, in_channels=1)),
                                           ("depth", dict(activation="relu"))])
def test_keras_round_trip_keeps_task_options_and_outputs(task, options, tmp_path):
    model = small(task=task, **options)
    config = model.get_config()
    assert config["task"] == task
    for key, value in options.items():
        assert config[key] == value
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config() == config and loaded.task == task
    x = pixels(1, 13, 10, model.in_channels)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-3)


def test_segmentation_stays_the_default():
    model = small(num_classes=3)
    assert model.task == "segmentation" and model.head == "segmentation" and model.num_classes == 3
    assert "scale" not in model.get_config() and "residual" not in model.get_config()
    assert list_tasks() == ("segmentation", "denoise", "super_resolution", "depth")


def _y_psnr_by_hand(prediction, target, crop):
    """Mean PSNR over images on BT.601 Y (MATLAB's rgb2ycbcr), `crop` pixels cut from each side (NumPy only)."""
    def luma(rgb):
        return 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255

    cut = (slice(None), slice(crop, -crop), slice(crop, -crop))
    errors = (luma(prediction.astype(np.float64))[cut] - luma(target.astype(np.float64))[cut]) ** 2
    return np.mean(10 * np.log10(255.0**2 / errors.mean(axis=(1, 2))))


def test_default_loss_and_metrics_train_one_step():
    model = small(task="super_resolution", scale=2)
    spec = model.task_spec
    model.compile(optimizer="adam", loss=spec.default_loss(), metrics=spec.default_metrics(), run_eagerly=True)
    low, high = pixels(2, 8, 8), pixels(2, 16, 16, seed=1)
    # fit's one step reports the loss and metrics of the outputs before its update (training mode, batch norm on
    # the batch's statistics); this call computes the same outputs.
    predicted = keras.ops.convert_to_numpy(model(low, training=True)).astype(np.float64)
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    history = model.fit(low, high, epochs=1, batch_size=2, verbose=0).history
    # The super-resolution defaults: L1 in units of 255; PSNR and SSIM on Y with the scale (2) cut from the border.
    assert history["loss"][0] == pytest.approx(np.mean(np.abs(predicted - high)) / 255, rel=1e-4)
    assert history["psnr"][0] == pytest.approx(_y_psnr_by_hand(predicted, high, crop=2), abs=1e-3)
    assert history["ssim"][0] == pytest.approx(np.mean(kerazoo.metrics.ssim(predicted, high, crop_border=2)), abs=1e-4)
    changed = [not np.array_equal(b, keras.ops.convert_to_numpy(w)) for b, w in zip(before, model.trainable_weights)]
    assert all(changed), f"{changed.count(False)} of {len(changed)} weights did not train"


@pytest.mark.parametrize("arguments, message", [
    (dict(task="deblur"), "Unknown task 'deblur'.*Valid tasks: .*denoise"),
    (dict(task="super_resolution", scale=5), r"scale must be one of \(2, 3, 4\); got 5"),
    (dict(task="super_resolution", upsampler="bicubic"), "upsampler must be one of .*'subpixel'.*got 'bicubic'"),
    (dict(task="denoise", num_classes=1), "global residual .* needs as many output as input channels"),
    (dict(task="denoise", head="segmentation"), "regression head of its own|has a regression head"),
    (dict(task="depth", activation="sigmoid"), r"activation for task='depth' must be one of \('softplus', 'relu'\)"),
    (dict(task="denoise", scale=2), "Unknown option 'scale' .* Valid options: .*residual"),
])
def test_bad_task_arguments_name_the_valid_ones(arguments, message):
    with pytest.raises(ValueError, match=message):
        small(**arguments)


def test_valid_unet_paper_refuses_a_restoration_task_naming_the_fix():
    with pytest.raises(ValueError, match="padding='same'"):
        kerazoo.create_model("unet_paper", task="denoise", input_shape=(188, 188, 1))


# --------------------------------------------------------------------------------------------------
# Export: depth-to-space and the bilinear residual stay TFLite builtins.


def test_super_resolver_tflite_export_is_builtin_only(tmp_path):
    from kerazoo.export import export

    model = small(task="super_resolution", scale=2, in_channels=1)
    report = export(model, str(tmp_path), formats="tflite", sample_inputs=pixels(2, 12, 16, 1), latency_runs=0,
                    verbose=False)
    exported = report.get("tflite")
    assert exported.passed, exported
    assert "DEPTH_TO_SPACE" in exported.ops and "TRANSPOSE_CONV" in exported.ops, exported.ops
    assert not any(op.startswith(("CUSTOM", "FLEX")) for op in exported.ops), exported.ops


@pytest.mark.slow
def test_super_resolver_exports_to_every_format_within_contract(tmp_path):
    from kerazoo.export import export

    model = small(task="super_resolution", scale=3)
    report = export(model, str(tmp_path), formats=("saved_model", "tflite", "onnx"), quantize=(None, "int8"),
                    representative_data=pixels(4, 12, 16), latency_runs=0, verbose=False)
    assert report.ok, report.failures()
    assert "DEPTH_TO_SPACE" in report.get("tflite", "int8").ops
