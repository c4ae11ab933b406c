"""kerazoo.layers against NumPy references, hand-worked examples, save/load and TFLite/ONNX lowering."""

import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerazoo import layers
from kerazoo.layers import pooling

# Any backend's tensor (a torch tensor that tracks gradients too) as a NumPy array.
to_numpy = keras.ops.convert_to_numpy


def reference_max_pool_with_argmax(x, pool, tie_tolerance=1e-5):
    """NumPy reference: 'same'-style pooling of non-overlapping windows; the first value in row-major
    order within `tie_tolerance` (relative) of the window's maximum is selected."""
    batch, height, width, channels = x.shape
    ph, pw = pool
    out_h, out_w = -(-height // ph), -(-width // pw)
    pooled = np.zeros((batch, out_h, out_w, channels), x.dtype)
    indices = np.zeros((batch, out_h, out_w, channels), np.int32)
    for b, i, j, c in np.ndindex(batch, out_h, out_w, channels):
        window = [(r * pw + s, x[b, i * ph + r, j * pw + s, c]) for r in range(ph) for s in range(pw)
                  if i * ph + r < height and j * pw + s < width]
        best = max(value for _, value in window)
        threshold = best - tie_tolerance * abs(best)
        index, value = next((index, value) for index, value in window if value >= threshold)
        pooled[b, i, j, c], indices[b, i, j, c] = value, index
    return pooled, indices


def reference_unpool(values, indices, pool, out_hw):
    batch, height, width, channels = values.shape
    ph, pw = pool
    out = np.zeros((batch, height * ph, width * pw, channels), values.dtype)
    for b, i, j, c in np.ndindex(values.shape):
        r, s = divmod(int(indices[b, i, j, c]), pw)
        out[b, i * ph + r, j * pw + s, c] = values[b, i, j, c]
    return out[:, : out_hw[0], : out_hw[1]]


@pytest.mark.parametrize("shape", [(2, 6, 8, 3), (1, 5, 7, 2), (1, 1, 1, 1), (2, 9, 4, 1)])
@pytest.mark.parametrize("pool", [(2, 2), (3, 2)])
def test_max_pool_with_argmax_matches_numpy(shape, pool):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    pooled, indices = layers.MaxPoolingWithArgmax2D(pool)(x)
    ref_pooled, ref_indices = reference_max_pool_with_argmax(x, pool)
    np.testing.assert_array_equal(to_numpy(pooled), ref_pooled)
    np.testing.assert_array_equal(to_numpy(indices), ref_indices)
    assert keras.backend.standardize_dtype(indices.dtype) == "int32"


def test_max_pool_ties_go_to_first_in_row_major_order():
    # Window [[1, 5], [5, 5]]: the first 5 is at row 0, column 1, index 1.
    x = np.array([[1, 5], [5, 5]], "float32").reshape(1, 2, 2, 1)
    pooled, indices = layers.MaxPoolingWithArgmax2D(2)(x)
    assert float(pooled[0, 0, 0, 0]) == 5.0 and int(indices[0, 0, 0, 0]) == 1
    # All equal: index 0.
    _, indices = layers.MaxPoolingWithArgmax2D(2)(np.zeros((1, 2, 2, 1), "float32"))
    assert int(indices[0, 0, 0, 0]) == 0


def test_near_ties_within_the_tolerance_go_to_the_first():
    # 1.000001 and 1.0 differ by 1e-6 relative: a tie at the default 1e-5, not at 0 or 1e-7.
    x = np.array([[1.0, 1.000001], [0, 0]], "float32").reshape(1, 2, 2, 1)
    pooled, indices = layers.MaxPoolingWithArgmax2D(2)(x)
    assert int(indices[0, 0, 0, 0]) == 0 and float(pooled[0, 0, 0, 0]) == 1.0
    for exact in (0.0, 1e-7):
        pooled, indices = layers.MaxPoolingWithArgmax2D(2, tie_tolerance=exact)(x)
        assert int(indices[0, 0, 0, 0]) == 1 and float(pooled[0, 0, 0, 0]) == np.float32(1.000001)
    # Negative maxima: the tolerance is relative to |max|, so -1.000001 ties with -1.0 too.
    negative = np.array([[-1.000001, -1.0], [-5, -5]], "float32").reshape(1, 2, 2, 1)
    assert int(layers.MaxPoolingWithArgmax2D(2)(negative)[1][0, 0, 0, 0]) == 0
    assert int(layers.MaxPoolingWithArgmax2D(2, tie_tolerance=0)(negative)[1][0, 0, 0, 0]) == 1
    # Training compares exactly.
    _, indices = layers.MaxPoolingWithArgmax2D(2)(x, training=True)
    assert int(indices[0, 0, 0, 0]) == 1
    layer = layers.MaxPoolingWithArgmax2D(2, tie_tolerance=1e-6)
    assert layers.MaxPoolingWithArgmax2D.from_config(layer.get_config()).tie_tolerance == 1e-6
    with pytest.raises(ValueError, match="tie_tolerance"):
        layers.MaxPoolingWithArgmax2D(2, tie_tolerance=-1)


def test_max_pool_odd_edge_never_points_outside_the_input():
    # A 3x3 input: the bottom-right window holds only one real pixel, which must win even when negative.
    x = -np.arange(1, 10, dtype="float32").reshape(1, 3, 3, 1)
    pooled, indices = layers.MaxPoolingWithArgmax2D(2)(x)
    np.testing.assert_array_equal(to_numpy(pooled)[0, :, :, 0], [[-1, -3], [-7, -9]])
    np.testing.assert_array_equal(to_numpy(indices)[0, :, :, 0], [[0, 0], [0, 0]])


def test_max_unpooling_hand_worked_example():
    x = np.array([[1, 2, 0, 0], [3, 4, 0, 9], [0, 8, 5, 5], [7, 0, 5, 6]], "float32").reshape(1, 4, 4, 1)
    pooled, indices = layers.MaxPoolingWithArgmax2D(2)(x)
    np.testing.assert_array_equal(to_numpy(pooled)[0, :, :, 0], [[4, 9], [8, 6]])
    np.testing.assert_array_equal(to_numpy(indices)[0, :, :, 0], [[3, 3], [1, 3]])
    restored = to_numpy(layers.MaxUnpooling2D(2)([pooled, indices]))[0, :, :, 0]
    expected = [[0, 0, 0, 0], [0, 4, 0, 9], [0, 8, 0, 0], [0, 0, 0, 6]]
    np.testing.assert_array_equal(restored, expected)


@pytest.mark.parametrize("shape", [(2, 6, 8, 3), (1, 5, 7, 2), (1, 9, 11, 1)])
def test_max_unpooling_matches_numpy_and_restores_odd_sizes(shape):
    x = np.random.default_rng(1).normal(size=shape).astype("float32")
    pooled, indices = layers.MaxPoolingWithArgmax2D(2)(x)
    restored = layers.MaxUnpooling2D(2)([pooled, indices, x])
    assert tuple(restored.shape) == shape
    expected = reference_unpool(to_numpy(pooled), to_numpy(indices), (2, 2), shape[1:3])
    np.testing.assert_array_equal(to_numpy(restored), expected)
    # Every pooled maximum sits back at its own position in the input.
    mask = to_numpy(restored) != 0
    np.testing.assert_array_equal(to_numpy(restored)[mask], x[mask])


def test_unpooling_gradient_flows_to_pooled_values():
    x = tf.constant(np.random.default_rng(2).normal(size=(1, 5, 5, 2)).astype("float32"))
    pool, unpool = layers.MaxPoolingWithArgmax2D(2), layers.MaxUnpooling2D(2)
    with tf.GradientTape() as tape:
        tape.watch(x)
        pooled, indices = pool(x)
        tape.watch(pooled)
        out = unpool([pooled, indices, x])
        loss = tf.reduce_sum(out * 3.0)
    grad_pooled, grad_x = tape.gradient(loss, [pooled, x])
    np.testing.assert_allclose(grad_pooled.numpy(), 3.0)
    # Through the pooling, exactly one input position per window gets the gradient: the argmax.
    assert int(np.count_nonzero(grad_x.numpy())) == int(np.prod(pooled.shape))


def test_bed_of_nails_hand_worked_example():
    x = np.array([[1, 2], [3, 4]], "float32").reshape(1, 2, 2, 1)
    out = to_numpy(layers.BedOfNailsUpSampling2D(2)(x))[0, :, :, 0]
    np.testing.assert_array_equal(out, [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]])
    out = to_numpy(layers.BedOfNailsUpSampling2D((1, 3))(x))[0, :, :, 0]
    np.testing.assert_array_equal(out, [[1, 0, 0, 2, 0, 0], [3, 0, 0, 4, 0, 0]])


UPSAMPLED = {  # [[1, 2], [3, 4]] doubled by each method, worked by hand
    "nearest": [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]],
    # half-pixel centres: output pixel k samples input position (k + 0.5) / 2 - 0.5, clamped at the edges
    "bilinear": [[1, 1.25, 1.75, 2], [1.5, 1.75, 2.25, 2.5], [2.5, 2.75, 3.25, 3.5], [3, 3.25, 3.75, 4]],
    "bed_of_nails": [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]],
}


@pytest.mark.parametrize("method", sorted(UPSAMPLED) + ["transpose"])
def test_decoder_upsample_methods_hand_worked(method):
    """kerazoo's decoder wiring: each `upsampling=` name gives its own operation."""
    from kerazoo.models.blocks import upsample

    inputs = keras.Input((2, 2, 1))
    model = keras.Model(inputs, upsample(inputs, 1, method))
    x = np.array([[1, 2], [3, 4]], "float32").reshape(1, 2, 2, 1)
    out = to_numpy(model(x))[0, :, :, 0]
    if method == "transpose":  # a learnable 2x2 stride-2 kernel: each input pixel times the kernel, plus bias
        kernel, bias = (to_numpy(w) for w in model.layers[-1].weights)
        expected = np.kron(x[0, :, :, 0], kernel[:, :, 0, 0]) + bias[0]
        np.testing.assert_allclose(out, expected, rtol=1e-6)
    else:
        np.testing.assert_allclose(out, UPSAMPLED[method], rtol=1e-6)
    with pytest.raises(ValueError, match="bed_of_nails"):
        upsample(inputs, 1, "cubic")


def test_bilinear_transposed_conv_interpolates_like_fcn():
    kernel = layers.bilinear_kernel(4, 1)[:, :, 0, 0]
    np.testing.assert_allclose(kernel[0], [0.0625, 0.1875, 0.1875, 0.0625])
    np.testing.assert_allclose(kernel.sum(), 4.0)  # factor**2: each output gets unit total weight
    up = layers.BilinearConv2DTranspose(2, factor=2)
    x = np.random.default_rng(3).normal(size=(1, 5, 6, 2)).astype("float32")
    y = to_numpy(up(x))
    assert y.shape == (1, 10, 12, 2)
    # A constant image stays constant away from the border; channels do not mix.
    const = to_numpy(up(np.ones((1, 5, 6, 2), "float32")))
    np.testing.assert_allclose(const[:, 2:-2, 2:-2], 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="square kernel with as many output as input channels"):
        layers.BilinearInitializer()((4, 4, 3, 2))


def test_pad_to_multiple_and_crop_back():
    x = np.random.default_rng(4).normal(size=(1, 33, 70, 2)).astype("float32")
    padded = to_numpy(layers.PadToMultiple(32)(x))
    assert padded.shape == (1, 64, 96, 2)
    np.testing.assert_array_equal(padded[:, :33, :70], x)
    assert not padded[:, 33:].any() and not padded[:, :, 70:].any()
    np.testing.assert_array_equal(to_numpy(layers.CropToReference()([padded, x])), x)
    centre = to_numpy(layers.CropToReference("center")([padded, np.zeros((1, 60, 90, 1))]))
    np.testing.assert_array_equal(centre, padded[:, 2:62, 3:93])


def test_preprocessing_modes_match_keras_applications():
    x = np.random.default_rng(5).uniform(0, 255, size=(2, 4, 5, 3)).astype("float32")
    caffe = to_numpy(layers.EncoderPreprocessing("caffe")(x))
    np.testing.assert_allclose(caffe, keras.applications.vgg16.preprocess_input(x.copy()), atol=1e-4)
    tf_mode = to_numpy(layers.EncoderPreprocessing("tf")(x))
    np.testing.assert_allclose(tf_mode, keras.applications.mobilenet_v2.preprocess_input(x.copy()), atol=1e-5)
    torch_mode = to_numpy(layers.EncoderPreprocessing("torch")(x))
    np.testing.assert_allclose(torch_mode, keras.applications.densenet.preprocess_input(x.copy()), atol=1e-5)
    grey = to_numpy(layers.EncoderPreprocessing("torch")(x[..., :1]))
    np.testing.assert_allclose(grey, (x[..., :1] / 255 - 0.449) / 0.226, atol=1e-5)  # the channels' means


def test_gelu_is_the_exact_gelu():
    x = np.linspace(-6, 6, 97, dtype="float32").reshape(1, 97, 1, 1)
    reference = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    np.testing.assert_allclose(to_numpy(layers.GELU()(x)), reference, atol=1e-6)
    np.testing.assert_allclose(to_numpy(layers.GELU()(x)), to_numpy(keras.activations.gelu(x, approximate=False)),
                               atol=1e-6)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: layers.MaxPoolingWithArgmax2D(0), "pool_size"),
        (lambda: layers.MaxUnpooling2D((2, 2, 2)), "pool_size"),
        (lambda: layers.BedOfNailsUpSampling2D(-1), "size"),
        (lambda: layers.PadToMultiple(0), "multiple"),
        (lambda: layers.CropToReference("middle"), "mode"),
        (lambda: layers.EncoderPreprocessing("bgr"), "mode"),
        (lambda: layers.BilinearConv2DTranspose(3, 0), "factor"),
    ],
)
def test_bad_arguments_name_the_value(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_unpooling_rejects_indices_of_another_shape():
    values, indices = keras.Input((None, None, 4)), keras.Input((None, None, 3), dtype="int32")
    with pytest.raises(ValueError, match="indices"):
        layers.MaxUnpooling2D(2)([values, indices])


def all_layers_model(channels=3):
    """A small model that uses every custom layer, with dynamic height and width."""
    inputs = keras.Input((None, None, channels))
    x = layers.EncoderPreprocessing("caffe")(inputs)
    x = layers.PadToMultiple(4)(x)
    pooled, indices = layers.MaxPoolingWithArgmax2D(2)(x)
    y = layers.DilatedConv2D(4, 3, padding="same", dilation_rate=2)(pooled)
    pooled2, indices2 = layers.MaxPoolingWithArgmax2D(2)(y)
    up = layers.MaxUnpooling2D(2)([pooled2, indices2, y])
    skip = layers.MaxUnpooling2D(2)([keras.layers.Conv2D(3, 1)(pooled), indices, x])
    up = keras.layers.Concatenate()([layers.BedOfNailsUpSampling2D(2)(up), skip])
    up = layers.GELU()(layers.BilinearConv2DTranspose(7, 1)(up))
    out = layers.CropToReference()([up, inputs])
    return keras.Model(inputs, out)


def test_every_layer_survives_keras_save_and_load(tmp_path):
    model = all_layers_model()
    x = np.random.default_rng(6).uniform(0, 255, size=(2, 13, 18, 3)).astype("float32")
    path = os.path.join(tmp_path, "layers.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(model(x)))
    for layer in loaded.layers:
        if type(layer).__module__ == "kerazoo.layers":
            assert layer.get_config() == model.get_layer(layer.name).get_config()


def _concrete_function(model, shape):
    function = tf.function(lambda x: model(x, training=False))
    return function.get_concrete_function(tf.TensorSpec(shape, tf.float32))


def test_layers_convert_to_tflite_with_builtin_ops_only_and_match():
    from ai_edge_litert.interpreter import Interpreter

    model = all_layers_model()
    concrete = _concrete_function(model, (1, None, None, 3))  # height and width stay dynamic
    # No trackable object: with one, the converter keeps variables as uninitialised resource variables.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops allowed
    interpreter = Interpreter(model_content=converter.convert())
    for size in ((13, 18), (8, 5)):
        x = np.random.default_rng(7).uniform(0, 255, size=(1, *size, 3)).astype("float32")
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
        interpreter.allocate_tensors()
        ops = {detail["op_name"] for detail in interpreter._get_ops_details()}
        assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        np.testing.assert_allclose(out, to_numpy(model(x)), atol=1e-3)


def test_layers_convert_to_a_valid_onnx_graph_that_runs():
    import onnx
    import onnxruntime
    import tf2onnx

    model = all_layers_model()
    x = np.random.default_rng(8).uniform(0, 255, size=(2, 13, 18, 3)).astype("float32")
    function = tf.function(lambda image: model(image, training=False))
    proto, _ = tf2onnx.convert.from_function(
        function, input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32, name="image")], opset=17
    )
    onnx.checker.check_model(proto, full_check=True)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(out, to_numpy(model(x)), atol=1e-3)


# The layers run the fast formulation of argmax pooling and unpooling (TFLite/XNNPACK-friendly ops); the
# keras.ops reference formulation is kept, and the fast one must give exactly what it gives.
@pytest.mark.parametrize("pool", [(2, 2), (3, 2), (2, 3), (3, 3), (1, 1)])
@pytest.mark.parametrize("shape", [(2, 6, 8, 3), (1, 7, 9, 2), (1, 1, 1, 1)])
@pytest.mark.parametrize("tolerance", [0.0, 1e-5])
def test_fast_argmax_pooling_equals_the_reference(pool, shape, tolerance):
    rng = np.random.default_rng(sum(shape) + pool[0])
    ties = rng.integers(-2, 3, size=shape).astype("float32")  # many exact ties, zeros and negatives
    near = (1.0 + rng.integers(0, 3, size=shape) * 1e-6).astype("float32")  # ties only within the tolerance
    for x in (ties, near, rng.normal(size=shape).astype("float32") * 1e3):
        x = keras.ops.convert_to_tensor(x)  # as a layer gets it, on every backend
        fast = pooling._argmax_pool_fast(x, pool, tolerance)
        reference = pooling._argmax_pool_reference(x, pool, tolerance)
        np.testing.assert_array_equal(to_numpy(fast[0]), to_numpy(reference[0]))
        np.testing.assert_array_equal(to_numpy(fast[1]), to_numpy(reference[1]))
        assert keras.backend.standardize_dtype(fast[1].dtype) == "int32"


@pytest.mark.parametrize("block", [(2, 2), (3, 3), (1, 1)])
def test_fast_unpooling_equals_the_reference(block):
    rng = np.random.default_rng(block[0])
    values = rng.normal(size=(2, 3, 5, 4)).astype("float32")
    indices = rng.integers(0, block[0] * block[1], size=values.shape).astype("int32")
    tensors = keras.ops.convert_to_tensor(values), keras.ops.convert_to_tensor(indices)
    fast = pooling._unpool_fast(*tensors, block)
    np.testing.assert_array_equal(to_numpy(fast), to_numpy(pooling._unpool_reference(*tensors, block)))
    np.testing.assert_array_equal(to_numpy(fast), reference_unpool(values, indices, block, (3 * block[0], 5 * block[1])))


@pytest.mark.tensorflow_only(reason="uses tf.GradientTape")
def test_fast_pooling_gradients_equal_the_reference():
    x = tf.constant(np.random.default_rng(9).integers(0, 3, size=(1, 6, 7, 2)).astype("float32"))
    grads = []
    for pool_fn in (pooling._argmax_pool_fast, pooling._argmax_pool_reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            pooled, _ = pool_fn(x, (2, 2), 0.0)
            loss = tf.reduce_sum(pooled * tf.range(1.0, 1.0 + pooled.shape[-1]))
        grads.append(tape.gradient(loss, x).numpy())
    np.testing.assert_array_equal(grads[0], grads[1])
    assert np.count_nonzero(grads[0]) == 1 * 3 * 4 * 2  # one input per window


@pytest.mark.tensorflow_only(reason="converts to TFLite")
def test_argmax_pooling_lowers_to_tflite_ops_without_selects_or_strided_slices():
    """The fast formulation's point: no SELECT/SELECT_V2/EQUAL/PACK (not delegated to XNNPACK, float islands in
    int8) and no strided slice with a stride other than 1 (LiteRT's slow reference kernel)."""
    from ai_edge_litert.interpreter import Interpreter
    from kerazoo.export.tflite import tflite_ops

    inputs = keras.Input((8, 10, 3), batch_size=1)
    pooled, indices = layers.MaxPoolingWithArgmax2D(2)(inputs)
    model = keras.Model(inputs, layers.MaxUnpooling2D(2)([pooled * 2.0, indices, inputs]))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([_concrete_function(model, (1, 8, 10, 3))])
    content = converter.convert()
    used = set(tflite_ops(content))
    assert not used & {"SELECT", "SELECT_V2", "EQUAL", "GREATER_EQUAL", "PACK", "GATHER", "ARG_MAX"}, used
    assert {"MAX_POOL_2D", "DEPTH_TO_SPACE"} <= used, used
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    for detail in interpreter._get_ops_details():
        if detail["op_name"] == "STRIDED_SLICE":
            strides = interpreter.get_tensor(detail["inputs"][3])
            assert (strides == 1).all(), strides
    x = np.random.default_rng(10).integers(0, 4, size=(1, 8, 10, 3)).astype("float32")  # ties
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_array_equal(out, to_numpy(model(x)))


def test_shipped_segnet_preset_gives_the_same_outputs_with_either_formulation(monkeypatch):
    import kerazoo

    # Flat 8x8 blocks make exact ties in every pooling window of the first stages.
    blocks = np.random.default_rng(11).uniform(0, 255, size=(2, 22, 30, 3)).astype("float32")
    x = np.concatenate([np.repeat(np.repeat(blocks[:1], 8, axis=1), 8, axis=2),
                        np.random.default_rng(12).uniform(0, 255, size=(1, 176, 240, 3)).astype("float32")])
    model = kerazoo.from_preset("camvid_segnet_basic")
    fast = to_numpy(model(x, training=False))
    monkeypatch.setattr(pooling, "_argmax_pool_fast", pooling._argmax_pool_reference)
    monkeypatch.setattr(pooling, "_unpool_fast", pooling._unpool_reference)
    np.testing.assert_array_equal(fast, to_numpy(model(x, training=False)))
