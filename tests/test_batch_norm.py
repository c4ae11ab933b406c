"""FusedBatchNormalization against keras.layers.BatchNormalization, the reference (the keras.ops path).

Both layers get the same weights and inputs; outputs, gradients and moving statistics must agree
(float32 to 1e-5 relative, bfloat16 to its resolution). Models built by create_model use the fused
layer, and weight files, .keras files and the shipped presets load either way.
"""

from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerazoo
from kerazoo import encoders
from kerazoo.layers import BatchNormalization as FusedBatchNormalization  # the fused one
from kerazoo.layers import fuse_batch_norm

CHANNELS = 8
# (relative, absolute) tolerances per dtype policy. bfloat16 outputs carry 8 significant bits.
TOLERANCES = {"float32": (1e-5, 1e-5), "mixed_bfloat16": (2e-2, 2e-2)}


pytestmark = pytest.mark.usefixtures("fresh_keras_state")  # tests/conftest.py


def _inputs(shape=(4, 6, 5, CHANNELS), seed=0):
    rng = np.random.default_rng(seed)
    # Per-channel means and scales of order one, as after a convolution.
    return (rng.normal(size=shape) * np.linspace(0.5, 2.0, shape[-1]) + np.linspace(-1.0, 1.0, shape[-1])).astype(
        "float32")


def _pair(momentum=0.9, **kwargs):
    """A Keras and a fused layer, built, holding the same non-trivial weights."""
    reference = keras.layers.BatchNormalization(momentum=momentum, **kwargs)
    fused = FusedBatchNormalization(momentum=momentum, **kwargs)
    rng = np.random.default_rng(1)
    weights = [rng.uniform(0.5, 1.5, CHANNELS), rng.normal(size=CHANNELS), rng.normal(size=CHANNELS) * 0.5,
               rng.uniform(0.5, 2.0, CHANNELS)]
    for layer in (reference, fused):
        layer.build((None, None, None, CHANNELS))
        layer.set_weights([w.astype("float32") for w in weights])
    return reference, fused


def _step(layer, x, training):
    """Output and gradients w.r.t. the input, gamma and beta of sum(output * fixed weights)."""
    x = tf.convert_to_tensor(x)
    projection = tf.constant(np.random.default_rng(2).normal(size=x.shape), "float32")
    with tf.GradientTape() as tape:
        tape.watch(x)
        output = layer(x, training=training)
        loss = tf.reduce_sum(tf.cast(output, "float32") * projection)
    gradients = tape.gradient(loss, [x, layer.gamma, layer.beta])
    return [np.asarray(tf.cast(t, "float32")) for t in [output] + gradients]


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("training", [True, False])
def test_outputs_gradients_and_moving_statistics_match_keras(policy, training):
    keras.mixed_precision.set_global_policy(policy)
    reference, fused = _pair()
    rtol, atol = TOLERANCES[policy]
    for step in range(3):
        x = _inputs(seed=step)
        for expected, actual, what in zip(_step(reference, x, training), _step(fused, x, training),
                                          ("output", "d/dx", "d/dgamma", "d/dbeta")):
            np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * max(1.0, np.abs(expected).max()),
                                       err_msg=f"{what} at step {step}")
    for expected, actual in zip(reference.get_weights(), fused.get_weights()):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    if training:  # the statistics moved, so the comparison above saw the update rule
        assert not np.allclose(fused.moving_mean.numpy(), _pair()[1].moving_mean.numpy())


def test_mixed_precision_keeps_float32_variables_and_bfloat16_outputs():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    _, fused = _pair()
    output = fused(_inputs(), training=True)
    assert [w.dtype for w in fused.weights] == ["float32"] * 4
    assert keras.backend.standardize_dtype(output.dtype) == "bfloat16"


def test_moving_variance_averages_the_biased_batch_variance():
    # 2 x 2 x 2 = 8 values per channel: the unbiased variance would be 8 / 7 times larger.
    x = _inputs(shape=(2, 2, 2, CHANNELS))
    layer = FusedBatchNormalization(momentum=0.0)
    layer(x, training=True)
    flat = x.reshape(-1, CHANNELS)
    np.testing.assert_allclose(layer.moving_variance.numpy(), flat.var(axis=0, ddof=0), rtol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), flat.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_momentum_weights_old_and_batch_statistics_as_keras_does():
    x = _inputs()
    layer = FusedBatchNormalization(momentum=0.75, moving_mean_initializer="ones")
    layer(x, training=True)
    flat = x.reshape(-1, CHANNELS)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.75 + 0.25 * flat.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.75 + 0.25 * flat.var(axis=0), rtol=1e-5)


def test_frozen_layer_normalises_with_moving_statistics_even_in_training():
    reference, fused = _pair()
    fused.trainable = False
    x = _inputs()
    before = fused.get_weights()
    output = np.asarray(fused(x, training=True))
    np.testing.assert_allclose(output, np.asarray(reference(x, training=False)), rtol=1e-5, atol=1e-5)
    for old, new in zip(before, fused.get_weights()):
        np.testing.assert_array_equal(old, new)


def _traced_ops(layer, x, training):
    graph = tf.function(lambda t: layer(t, training=training)).get_concrete_function(
        tf.TensorSpec(x.shape, x.dtype)).graph
    return {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tensorflow_runs_one_fused_kernel(dtype, training):
    layer = FusedBatchNormalization()
    x = tf.cast(_inputs(), dtype)
    layer(x)
    assert "FusedBatchNormV3" in _traced_ops(layer, x, training)


@pytest.mark.parametrize("case", ["mask", "three_dims", "channels_first", "other_backend"])
def test_falls_back_to_the_keras_path_where_fusing_does_not_apply(case):
    x = _inputs()
    kwargs, call_kwargs, patch = {}, {}, mock.patch.object(keras.backend, "backend", keras.backend.backend)
    if case == "mask":
        call_kwargs["mask"] = tf.ones(x.shape[:-1], "bool")
    elif case == "three_dims":
        x = x.reshape(4, 30, CHANNELS)
    elif case == "channels_first":
        x = np.moveaxis(x, -1, 1).copy()
        kwargs["axis"] = 1
    else:  # JAX, torch: FusedBatchNormalization is Keras' layer
        patch = mock.patch.object(keras.backend, "backend", lambda: "jax")
    reference, fused = keras.layers.BatchNormalization(**kwargs), FusedBatchNormalization(**kwargs)
    with patch:
        traced = tf.function(lambda t: fused(t, training=True, **call_kwargs))
        graph = traced.get_concrete_function(tf.TensorSpec(x.shape, "float32")).graph
        assert "FusedBatchNormV3" not in {op.type for op in graph.get_operations()}
        np.testing.assert_allclose(np.asarray(traced(x)), np.asarray(reference(x, training=True, **call_kwargs)),
                                   rtol=1e-5, atol=1e-5)


def test_config_and_weight_paths_are_keras_own():
    kwargs = dict(momentum=0.9, epsilon=1.001e-5, center=False, name="stage_bn")
    reference, fused = keras.layers.BatchNormalization(**kwargs), FusedBatchNormalization(**kwargs)
    for layer in (reference, fused):
        layer.build((None, 4, 4, CHANNELS))
    assert fused.get_config() == reference.get_config()
    assert [w.path for w in fused.weights] == [w.path for w in reference.weights]


def _unfused_twin(model):
    """`model` rebuilt with keras.layers.BatchNormalization wherever it has FusedBatchNormalization."""

    def clone_layer(layer):
        if isinstance(layer, FusedBatchNormalization):
            return keras.layers.BatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=clone_layer)


def _small_segnet():
    return kerazoo.create_model("segnet_basic", num_classes=3, filters=8, kernel_size=3, depth=2,
                                input_shape=(16, 24, 3))


def test_create_model_fuses_decoder_and_encoder_batch_norm():
    model = kerazoo.create_model("unet", encoder="mobilenetv2", num_classes=2, input_shape=(32, 32, 3))
    encoder = model.get_layer("mobilenetv2_encoder")
    for part in (model, encoder):
        batch_norms = [layer for layer in part.layers if isinstance(layer, keras.layers.BatchNormalization)]
        assert batch_norms and all(type(layer) is FusedBatchNormalization for layer in batch_norms)


@pytest.mark.parametrize("weights_file", ["model.weights.h5", "model.keras"])
def test_files_saved_with_either_batch_norm_load_into_the_other(tmp_path, weights_file):
    fused = _small_segnet()
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 24, 3)).astype("float32")
    fused(x, training=True)  # moves the statistics off their initial values
    plain = _unfused_twin(fused)
    assert not any(isinstance(layer, FusedBatchNormalization) for layer in plain.layers)
    for source, target in ((fused, plain), (plain, _small_segnet())):
        path = tmp_path / f"{type(source).__name__}-{weights_file}"
        source.save_weights(path) if weights_file.endswith(".weights.h5") else source.save(path)
        target.load_weights(path)
        np.testing.assert_allclose(np.asarray(target(x, training=False)), np.asarray(fused(x, training=False)),
                                   rtol=1e-5, atol=1e-5)
    reloaded = keras.saving.load_model(tmp_path / f"ZooModel-{weights_file}") if weights_file.endswith(".keras") \
        else None
    if reloaded is not None:
        assert any(type(layer) is FusedBatchNormalization for layer in reloaded.layers)


def test_training_under_freeze_encoder_matches_keras():
    def build():
        keras.utils.set_random_seed(0)
        return kerazoo.create_model("unet", encoder="mobilenetv2", num_classes=2, input_shape=(32, 32, 3),
                                    freeze_encoder=True)

    fused = build()
    with mock.patch.object(encoders, "FUSE_BATCH_NORM", False):
        reference = build()
    reference = _unfused_twin(reference)  # the decoder's layers too
    reference.set_weights(fused.get_weights())
    frozen_before = fused.get_layer("mobilenetv2_encoder").get_weights()
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32"), rng.integers(0, 2, (2, 32, 32)).astype("int32")
    for model in (fused, reference):
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(True))
        for _ in range(2):
            model.train_on_batch(x, y)
    # Scaled to each weight's largest value: Keras' variance, E[x^2] - E[x]^2, rounds off at large means.
    for expected, actual in zip(reference.get_weights(), fused.get_weights()):
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(expected).max()))
    for before, after in zip(frozen_before, fused.get_layer("mobilenetv2_encoder").get_weights()):
        np.testing.assert_array_equal(before, after)  # frozen: statistics too
    assert not np.allclose(fused.get_layer("head_conv").get_weights()[0],
                           build().get_layer("head_conv").get_weights()[0])  # the decoder did train


def test_fuse_batch_norm_keeps_names_weights_and_outputs():
    application = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(None, None, 3))
    fused = fuse_batch_norm(application)
    assert [layer.name for layer in fused.layers] == [layer.name for layer in application.layers]
    assert [w.path for w in fused.weights] == [w.path for w in application.weights]
    assert sum(type(layer) is FusedBatchNormalization for layer in fused.layers) == 52
    x = _inputs(shape=(1, 32, 32, 3))
    np.testing.assert_allclose(np.asarray(fused(x)), np.asarray(application(x)), rtol=1e-5, atol=1e-5)


def test_shipped_preset_reproduces_its_keras_outputs():
    model = kerazoo.from_preset("camvid_segnet_basic", offline=True)
    assert any(type(layer) is FusedBatchNormalization for layer in model.layers)
    # The same graph and trained weights with Keras' own batch-norm layers (the keras.ops path).
    def with_keras_batch_norm(layer):
        if type(layer) is FusedBatchNormalization:
            return keras.layers.BatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    reference = keras.models.clone_model(model, clone_function=with_keras_batch_norm)
    reference.set_weights(model.get_weights())
    assert any(type(layer) is keras.layers.BatchNormalization for layer in reference.layers)
    assert not any(type(layer) is FusedBatchNormalization for layer in reference.layers)
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 128, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(x, training=False)), np.asarray(reference(x, training=False)),
                               rtol=1e-5, atol=1e-4)