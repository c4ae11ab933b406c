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
from kerazoo.layers.convolution import live_taps

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
@pytest.mark.parametrize("rate, padding, size, kernel_size", [
    (2, "same", (13, 18), 3), (6, "same", (9, 16), 3), (3, "valid", (15, 17), 3), ((2, 4), "same", (11, 12), 3),
    (18, "same", (16, 16), 3),  # every tap but the centre reads padding only: a 1x1 convolution
    (12, "same", (8, 30), 3),  # rows reduced to the centre tap, columns dilated
    (2, "same", (1, 3), 5),  # a 5-tap kernel of which 1 tap reads a 1-row map
    (3, "same", (5, 4), 4),  # an even kernel, padded unevenly: its outer taps miss
    (5, "same", (1, 9), 2),  # an even kernel with no tap on the map's one row
])
def test_outputs_and_gradients_match_keras(policy, rate, padding, size, kernel_size):
    keras.mixed_precision.set_global_policy(policy)
    reference, dilated = _pair(filters=7, kernel_size=kernel_size, dilation_rate=rate, padding=padding)
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


@pytest.mark.parametrize("kernel_size, rate, size, expected", [
    (3, 6, 16, (0, 3, 6, 6)),  # every tap reaches the map
    (3, 18, 16, (1, 2, 0, 0)),  # only the centre: no padding
    (3, 16, 16, (1, 2, 0, 0)),  # offset 16 reads position i + 16 >= 16: padding
    (3, 15, 16, (0, 3, 15, 15)),
    (4, 3, 4, (1, 3, 1, 2)),  # an unevenly padded kernel (offsets -4, -1, 2, 5): the middle two
    (4, 3, 2, (0, 4, 4, 5)),  # its one live tap (offset -1) would need padding -1 after: all kept
    (3, 18, None, (0, 3, 18, 18)),  # a size known only at run time keeps them all
])
def test_live_taps(kernel_size, rate, size, expected):
    assert live_taps(kernel_size, rate, size) == expected


def test_a_rate_past_the_map_runs_a_plain_convolution_of_the_live_taps():
    _, dilated = _pair(filters=4, kernel_size=3, dilation_rate=18, padding="same")
    graph = tf.function(lambda x: dilated(x)).get_concrete_function(tf.TensorSpec((1, 16, 16, 5))).graph
    (conv,) = [op for op in graph.get_operations() if op.type == "Conv2D"]
    assert conv.inputs[1].shape.as_list() == [1, 1, 5, 4] and conv.get_attr("dilations") == [1, 1, 1, 1]


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


def test_a_static_size_with_dropped_taps_converts_to_tflite_builtins_with_parity():
    # kerazoo.export keeps height and width dynamic (every tap kept); a file traced at a fixed size drops them.
    from ai_edge_litert.interpreter import Interpreter

    from kerazoo.export.tflite import tflite_ops

    inputs = keras.Input((8, 30, 5), batch_size=1)
    outputs = DilatedConv2D(4, 3, padding="same", dilation_rate=12)(inputs)  # rows: the centre tap only
    outputs = DilatedConv2D(3, 3, padding="same", dilation_rate=18)(outputs)  # a 1x1 convolution
    model = keras.Model(inputs, outputs)
    function = tf.function(lambda x: model(x)).get_concrete_function(tf.TensorSpec((1, 8, 30, 5), tf.float32))
    content = tf.lite.TFLiteConverter.from_concrete_functions([function]).convert()
    assert set(tflite_ops(content)) <= {"PAD", "CONV_2D"}, tflite_ops(content)
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    x = np.random.default_rng(4).normal(size=(1, 8, 30, 5)).astype("float32")
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    expected = np.asarray(model(x))
    found = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(found, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
