"""DilatedConv2D against keras.layers.Conv2D, the reference (the keras.ops path).

Both layers get the same weights and inputs; outputs and gradients must agree. On TensorFlow the dilated
layer must run as one Conv2D op with its dilations (no SpaceToBatchND around a dense convolution).
Save/load, TFLite and ONNX: `all_layers_model` in tests/test_layers.py uses it.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerazoo
from kerazoo.layers import DilatedConv2D

pytestmark = pytest.mark.usefixtures("fresh_keras_state")  # tests/conftest.py

TOLERANCES = {"float32": 1e-4, "mixed_bfloat16": 3e-2}  # relative to each tensor's largest magnitude


def _pair(**options):
    reference, dilated = keras.layers.Conv2D(**options), DilatedConv2D(**options)
    for layer in (reference, dilated):
        layer.build((None, None, None, 5))
    dilated.set_weights(reference.get_weights())
    return reference, dilated


def _step(layer, x):
    """Output and gradients w.r.t. the input, kernel and bias of sum(output * fixed weights)."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        output = tf.cast(layer(x), "float32")
        projection = tf.constant(np.random.default_rng(2).normal(size=output.shape), "float32")
        loss = tf.reduce_sum(output * projection)
    return [np.asarray(tf.cast(t, "float32")) for t in [output, *tape.gradient(loss, [x, *layer.trainable_weights])]]


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("rate, padding, size", [
    (2, "same", (13, 18)), (6, "same", (9, 16)), (18, "same", (16, 16)), (3, "valid", (15, 17)), ((2, 4), "same", (11, 12)),
])
def test_outputs_and_gradients_match_keras(policy, rate, padding, size):
    keras.mixed_precision.set_global_policy(policy)
    reference, dilated = _pair(filters=7, kernel_size=3, dilation_rate=rate, padding=padding)
    x = np.random.default_rng(0).normal(size=(2, *size, 5)).astype("float32")
    for expected, found in zip(_step(reference, x), _step(dilated, x), strict=True):
        assert found.shape == expected.shape
        np.testing.assert_allclose(found, expected, rtol=0, atol=TOLERANCES[policy] * np.abs(expected).max())


def _op_types(layer, shape=(1, None, None, 5)):
    function = tf.function(lambda x: layer(x)).get_concrete_function(tf.TensorSpec(shape, tf.float32))
    return [op.type for op in function.graph.get_operations()]


def test_tensorflow_runs_one_dilated_conv2d_op():
    reference, dilated = _pair(filters=4, kernel_size=3, dilation_rate=6, padding="same")
    assert "SpaceToBatchND" in _op_types(reference)  # what Keras' path does, and what this layer avoids
    ops = _op_types(dilated)
    assert "SpaceToBatchND" not in ops and ops.count("Conv2D") == 1


@pytest.mark.parametrize("options", [
    dict(dilation_rate=1),  # nothing to dilate
    dict(dilation_rate=2, groups=5, filters=5),  # grouped: Keras' path
])
def test_falls_back_to_the_keras_path_where_the_direct_op_does_not_apply(options):
    options = {"filters": 4, "kernel_size": 3, "padding": "same", **options}
    reference, dilated = _pair(**options)
    assert _op_types(dilated) == _op_types(reference)
    x = np.random.default_rng(3).normal(size=(1, 9, 10, 5)).astype("float32")
    np.testing.assert_allclose(np.asarray(dilated(x)), np.asarray(reference(x)), atol=1e-6)


def test_deeplabv3_atrous_branches_use_it():
    model = kerazoo.create_model("deeplabv3", encoder="mobilenetv2", num_classes=3, decoder_filters=8)
    atrous = [layer for layer in model.layers if layer.name.startswith("aspp_atrous") and
              not layer.name.endswith(("_bn", "_relu"))]
    assert atrous and all(isinstance(layer, DilatedConv2D) for layer in atrous)
    assert sorted(layer.dilation_rate[0] for layer in atrous) == [6, 12, 18]
