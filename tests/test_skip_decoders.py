"""The skip-connection decoders: U-Net++, FPN, LinkNet, SegFormer's MLP decoder and U-Net's attention gates.

Each on MobileNetV2 (weights=None) at odd sizes: size in = size out, one training step reaches every decoder
weight, `.keras` round trip, mixed precision, every task; the structure each paper prescribes; parameter
counts against segmentation_models_pytorch; TFLite (builtin ops) and ONNX export with parity.
"""

import gc
import os

import keras
import numpy as np
import pytest

import kerazoo
from kerazoo import layers
from kerazoo.models.unet import attention_gate
from kerazoo.models.unetplusplus import deep_supervision_model

ODD_SIZE = (37, 53)
# Small widths keep the default run fast; the topology is the defaults'.
SMALL = {
    "unetplusplus": {"decoder_filters": (16, 16, 8, 8, 8)},
    "fpn": {"pyramid_filters": 32, "segmentation_filters": 32},
    "linknet": {"final_filters": 8},
    "segformer": {"embedding_filters": 32},
    "unet": {"decoder_filters": (16, 16, 8, 8, 8)},
}
CASES = [
    ("unetplusplus", {}),
    ("unetplusplus", {"deep_supervision": True}),
    ("fpn", {}),
    ("fpn", {"normalization": "batch"}),
    ("linknet", {}),
    ("segformer", {}),
    ("unet", {"attention": True}),
]
CASE_IDS = [name + "".join(f"-{key}={value}" for key, value in options.items()) for name, options in CASES]


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()
    gc.collect()


def build(name, options=None, **kwargs):
    arguments = {"encoder": "mobilenetv2", "num_classes": 3, **SMALL[name], **(options or {}), **kwargs}
    return kerazoo.create_model(name, **arguments)


def images(count=2, size=ODD_SIZE, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(count, *size, channels)).astype("float32")


def decoder_variables(model):
    """The model's trainable variables outside the encoder, by path."""
    encoder = next(layer for layer in model.layers if layer.name.endswith("_encoder"))
    encoder_ids = {id(variable) for variable in encoder.trainable_variables}
    return {variable.path: variable for variable in model.trainable_variables if id(variable) not in encoder_ids}


@pytest.mark.parametrize("name, options", CASES, ids=CASE_IDS)
def test_odd_size_training_step_and_save_load(name, options, tmp_path):
    model = build(name, options)
    x = images()
    masks = (x[..., 0] > 127).astype("int32")
    outputs = model(x)
    assert outputs.shape == (2, *ODD_SIZE, 3) and outputs.dtype == "float32"
    for key, value in options.items():
        assert model.get_config()[key] == value

    # One step moves every decoder weight: no branch of the decoder is cut off from the loss.
    before = {path: np.array(variable) for path, variable in decoder_variables(model).items()}
    # Eagerly: on a 2-image batch tracing the step costs several times the step itself.
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)
    loss = model.train_on_batch(x, masks)
    assert np.isfinite(loss)
    unchanged = [path for path, variable in decoder_variables(model).items()
                 if np.array_equal(before[path], np.array(variable))]
    assert not unchanged, unchanged

    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), np.asarray(model(x, training=False)))


@pytest.mark.parametrize("name", ["unetplusplus", "fpn", "linknet", "segformer"])
def test_any_size_comes_back(name):
    model = build(name)
    for size in [(1, 1), (31, 33), (65, 96)]:
        assert model(np.zeros((1, *size, 3), "float32")).shape == (1, *size, 3)


def test_an_encoder_without_a_stride_2_tap_leaves_that_level_without_skip():
    # ConvNeXt's stem patchifies straight to stride 4: U-Net++'s level 0 and LinkNet's stride-2 block have no
    # encoder features to take.
    x = images(1)
    nested = build("unetplusplus", encoder="convnext_tiny")
    assert nested(x).shape == (1, *ODD_SIZE, 3)
    names = {layer.name for layer in nested.layers}
    assert "x_0_1_concat" not in names  # X^{0,1}: the upsampled X^{1,0} alone
    assert len(nested.get_layer("x_0_2_concat").input) == 2  # up(X^{1,1}) and X^{0,1}, no X^{0,0}
    assert nested.get_layer("x_0_1_conv2").filters == SMALL["unetplusplus"]["decoder_filters"][3]
    assert len(nested.get_layer("x_1_1_concat").input) == 2  # stride 4 has its encoder features
    linknet = build("linknet", encoder="convnext_tiny")
    assert linknet(x).shape == (1, *ODD_SIZE, 3)
    names = {layer.name for layer in linknet.layers}
    assert "decoder_stage3_link" not in names and "decoder_stage2_link" in names
    stage3_input = linknet.get_layer("decoder_stage3_reduce").input.shape[-1]
    assert linknet.get_layer("decoder_stage3_expand").filters == stage3_input  # keeps the width


@pytest.mark.parametrize("name, options", CASES, ids=CASE_IDS)
def test_mixed_precision_outputs_stay_float32(name, options):
    keras.config.set_dtype_policy("mixed_float16")
    model = build(name, options, activation="softmax")
    outputs = model(images(1))
    assert outputs.dtype == "float32"
    assert any(isinstance(layer, keras.layers.Conv2D) and layer.compute_dtype == "float16"
               for layer in model.layers)
    np.testing.assert_allclose(np.asarray(outputs).sum(-1), 1.0, atol=1e-3)


# Every decoder with every task; deep supervision and attention gates where they change the path to the head.
TASK_CASES = [pytest.param(name, {}, task, id=f"{name}-{task}")
              for name in ("unetplusplus", "fpn", "linknet", "segformer")
              for task in ("denoise", "super_resolution", "depth")]
TASK_CASES += [pytest.param("unetplusplus", {"deep_supervision": True}, task,
                            id=f"unetplusplus-deep_supervision-{task}") for task in ("denoise", "super_resolution")]
TASK_CASES += [pytest.param("unet", {"attention": True}, "super_resolution", id="unet-attention-super_resolution")]


@pytest.mark.parametrize("name, options, task", TASK_CASES)
def test_every_task(name, options, task):
    channels = 1 if task == "denoise" else 3
    model = build(name, options, num_classes=None, task=task, in_channels=channels)
    x = images(1, channels=channels)
    outputs = np.asarray(model(x))
    scale = 2 if task == "super_resolution" else 1
    expected_channels = 1 if task == "depth" else channels
    assert outputs.shape == (1, ODD_SIZE[0] * scale, ODD_SIZE[1] * scale, expected_channels)
    assert model.task == task and model.scale == scale
    if task == "depth":
        assert (outputs >= 0).all()  # softplus: metres
    else:
        # A global residual: the model returns its input (upsampled for super-resolution) plus a correction.
        assert model.get_layer("input_minus_noise" if task == "denoise" else "upsample_plus_detail") is not None


# --- Structure after each paper ----------------------------------------------------------------------


def encoder_channels(model):
    """The channels of the encoder's outputs, in tap order."""
    encoder = next(layer for layer in model.layers if layer.name.endswith("_encoder"))
    return [output.shape[-1] for output in encoder.outputs]


@pytest.mark.parametrize("nested_filters", ["encoder", "decoder"])
def test_unetplusplus_nodes_concatenate_every_earlier_node_of_their_level(nested_filters):
    decoder_filters = (24, 16, 8, 8, 4)
    model = build("unetplusplus", nested_filters=nested_filters, decoder_filters=decoder_filters)
    widths = encoder_channels(model)  # levels 0..4: strides 2..32
    nodes = [(level, column) for column in range(1, 5) for level in range(5 - column)]
    assert len(nodes) == 10
    for level, column in nodes:
        concat = model.get_layer(f"x_{level}_{column}_concat")
        # The upsampled node below, then X^{i,0} (the encoder) .. X^{i,j-1}.
        assert len(concat.input) == column + 1, (level, column)
        outer = level + column == 4
        expected = decoder_filters[3 - level] if outer or nested_filters == "decoder" else widths[level]
        assert model.get_layer(f"x_{level}_{column}_conv2").filters == expected, (level, column)
        sources = [tensor._keras_history.operation.name for tensor in concat.input[2:]]
        assert sources == [f"x_{level}_{k}_conv2_relu" for k in range(1, column)], (level, column)
    assert model.get_layer("decoder_final_conv2").filters == decoder_filters[-1]


def test_deep_supervision_averages_four_branches_and_trains_them_one_by_one():
    model = build("unetplusplus", {"deep_supervision": True})
    view = deep_supervision_model(model)
    x = images()
    branches = [np.asarray(output) for output in view(x)]
    assert len(branches) == 4 and all(branch.shape == (2, *ODD_SIZE, 3) for branch in branches)
    # Segmentation logits: the model's output is the mean of the branches' (Zhou et al.'s accurate mode).
    np.testing.assert_allclose(np.asarray(model(x)), np.mean(branches, axis=0), rtol=1e-5, atol=1e-5)
    assert not np.allclose(branches[0], branches[3])  # four different heads, not one repeated

    # The paper's loss: one per branch. Training the view trains the model's own (shared) layers.
    before = np.array(model.get_layer("deep_supervision_1_scores").kernel)
    view.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), run_eagerly=True)
    masks = (x[..., 0] > 127).astype("int32")
    losses = view.train_on_batch(x, [masks] * 4)
    assert len(losses) == 5 and np.isfinite(losses).all()  # the total, then one per branch
    assert not np.array_equal(before, np.array(model.get_layer("deep_supervision_1_scores").kernel))

    with pytest.raises(ValueError, match="deep_supervision=True"):
        deep_supervision_model(build("unetplusplus"))


def test_fpn_branch_depth_per_level_and_normalization():
    model = build("fpn")
    blocks = {stride: sorted(layer.name for layer in model.layers
                             if layer.name.startswith(f"segmentation_p{stride}_") and layer.name.endswith("_conv"))
              for stride in (4, 8, 16, 32)}
    # Kirillov et al.: one 3x3 block per 2x upsampling until stride 4; the stride-4 level takes one block.
    assert {stride: len(names) for stride, names in blocks.items()} == {4: 1, 8: 1, 16: 2, 32: 3}
    assert all(model.get_layer(name).filters == 32 for names in blocks.values() for name in names)
    for stride in (4, 8, 16, 32):
        assert model.get_layer(f"fpn_lateral{stride}").kernel_size == (1, 1)
        assert model.get_layer(f"fpn_lateral{stride}").filters == 32
    group_norms = [layer for layer in model.layers if isinstance(layer, keras.layers.GroupNormalization)]
    assert len(group_norms) == 7 and all(layer.groups == 32 for layer in group_norms)
    assert isinstance(model.get_layer("segmentation_sum"), keras.layers.Add)
    assert len(model.get_layer("segmentation_sum").input) == 4
    batch = build("fpn", normalization="batch")
    assert not any(isinstance(layer, keras.layers.GroupNormalization) for layer in batch.layers)
    assert isinstance(batch.get_layer("segmentation_p32_block0_bn"), keras.layers.BatchNormalization)


def test_linknet_blocks_reduce_upsample_expand_and_add_the_skip():
    model = build("linknet")
    widths = encoder_channels(model)  # strides 2, 4, 8, 16, 32
    incoming = widths[-1]
    for stage, skip_width in enumerate([*widths[-2::-1], None]):
        name = f"decoder_stage{stage}"
        assert model.get_layer(f"{name}_reduce").filters == incoming // 4
        upsample = model.get_layer(f"{name}_upsample")
        assert isinstance(upsample, keras.layers.Conv2DTranspose)
        assert (upsample.kernel_size, upsample.strides, upsample.filters) == ((3, 3), (2, 2), incoming // 4)
        expanded = model.get_layer(f"{name}_expand").filters
        assert expanded == (skip_width if skip_width is not None else 8)
        if skip_width is not None:
            assert isinstance(model.get_layer(f"{name}_link"), keras.layers.Add)  # added, not concatenated
        incoming = expanded
    assert not any(isinstance(layer, keras.layers.Concatenate) for layer in model.layers)


def test_segformer_embeds_four_levels_and_fuses_them():
    model = build("segformer", embedding_filters=24)
    for stride in (4, 8, 16, 32):
        linear = model.get_layer(f"mlp_linear{stride}")
        assert (linear.kernel_size, linear.filters, linear.use_bias) == ((1, 1), 24, True)
    assert model.get_layer("mlp_concat").output.shape[-1] == 4 * 24
    assert model.get_layer("mlp_fuse").kernel_size == (1, 1) and model.get_layer("mlp_fuse").filters == 24
    assert model.get_layer("mlp_dropout").rate == pytest.approx(0.1)
    assert "mlp_dropout" not in {layer.name for layer in build("segformer", dropout=0.0).layers}


def _upsampled_by_hand(x, factors, interpolation):
    """NumPy reference: nearest repeats; bilinear samples input position (i + 0.5) / factor - 0.5 of each
    output pixel i, clamped to the edges (what tf.image.resize gives)."""
    for axis, factor in zip((1, 2), factors):
        if interpolation == "nearest":
            x = x.repeat(factor, axis=axis)
            continue
        size = x.shape[axis]
        source = np.clip((np.arange(factor * size) + 0.5) / factor - 0.5, 0, size - 1)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, size - 1)
        weight = (source - low).reshape([-1 if a == axis else 1 for a in range(4)])
        x = np.take(x, low, axis=axis) * (1 - weight) + np.take(x, high, axis=axis) * weight
    return x


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("size", [2, 3, 4, 8, (2, 3)])
def test_any_size_upsampling_matches_numpy(size, interpolation):
    layer = layers.AnySizeUpSampling2D(size, interpolation)
    factors = (size, size) if isinstance(size, int) else size
    for shape in [(2, 5, 7, 3), (1, 1, 1, 2), (1, 2, 9, 1)]:
        x = np.random.default_rng(1).normal(size=shape).astype("float32")
        np.testing.assert_allclose(np.asarray(layer(x)), _upsampled_by_hand(x, factors, interpolation),
                                   rtol=1e-5, atol=1e-5)
    restored = layers.AnySizeUpSampling2D.from_config(layer.get_config())
    assert (restored.size, restored.interpolation) == (factors, interpolation)
    with pytest.raises(ValueError, match="interpolation must be one of.*got 'bicubic'"):
        layers.AnySizeUpSampling2D(2, "bicubic")


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("size", [2, 4, (2, 3)])
def test_bilinear_resize_kernel_at_a_known_size_equals_the_slices_at_a_run_time_size(size, policy):
    """The TensorFlow fast path (ResizeBilinear, a height and width known when traced) against the slice
    formulation (the reference, what a run-time size and kerazoo.export get): outputs and input gradients."""
    import tensorflow as tf

    keras.mixed_precision.set_global_policy(policy)
    try:
        layer = layers.AnySizeUpSampling2D(size, "bilinear")
        factors = (size, size) if isinstance(size, int) else size
        x = tf.constant(np.random.default_rng(5).normal(size=(2, 5, 7, 3)).astype("float32"))
        projection = tf.constant(np.random.default_rng(6).normal(size=(2, 5 * factors[0], 7 * factors[1], 3)),
                                 "float32")

        def output_and_gradient(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.cast(layer(tf.cast(x, layer.compute_dtype)), "float32")
                loss = tf.reduce_sum(y * projection)
            return y, tape.gradient(loss, x)

        results = {}
        for name, shape in (("known", (2, 5, 7, 3)), ("run_time", (2, None, None, 3))):
            function = tf.function(output_and_gradient, input_signature=[tf.TensorSpec(shape, tf.float32)])
            op_types = {op.type for op in function.get_concrete_function().graph.get_operations()}
            assert ("ResizeBilinear" in op_types) == (name == "known"), (name, op_types)
            results[name] = [np.asarray(t) for t in function(x)]
        tolerance = 1e-5 if policy == "float32" else 2e-2
        for found, expected in zip(results["known"], results["run_time"], strict=True):
            np.testing.assert_allclose(found, expected, rtol=0, atol=tolerance * np.abs(expected).max())
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.tensorflow_only
def test_any_size_upsampling_converts_to_tflite_builtins_at_dynamic_sizes_and_to_onnx():
    """A convolution after the upsampling needs its static channel count, which UpSampling2D loses on TF."""
    import tensorflow as tf

    from ai_edge_litert.interpreter import Interpreter

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(layers.AnySizeUpSampling2D(2, "nearest")(inputs))
    outputs = keras.layers.Conv2D(2, 1)(layers.AnySizeUpSampling2D(4, "bilinear")(x))
    model = keras.Model(inputs, outputs)
    function = tf.function(lambda image: model(image, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec((1, None, None, 3), tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops allowed
    interpreter = Interpreter(model_content=converter.convert())
    for size in ((5, 7), (8, 3)):
        x = np.random.default_rng(2).normal(size=(1, *size, 3)).astype("float32")
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        assert out.shape == (1, size[0] * 8, size[1] * 8, 2)
        np.testing.assert_allclose(out, np.asarray(model(x)), atol=1e-4)

    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    tf2onnx = pytest.importorskip("tf2onnx")
    proto, _ = tf2onnx.convert.from_function(
        function, input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32, name="image")], opset=17)
    onnx.checker.check_model(proto, full_check=True)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(3).normal(size=(2, 6, 9, 3)).astype("float32")
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x})[0], np.asarray(model(x)), atol=1e-4)


def test_attention_gate_matches_the_additive_attention_formula():
    rng = np.random.default_rng(0)
    skip_value = rng.normal(size=(2, 6, 10, 4)).astype("float32")
    gating_value = rng.normal(size=(2, 3, 5, 6)).astype("float32")
    skip, gating = keras.Input((None, None, 4)), keras.Input((None, None, 6))
    gate = keras.Model([skip, gating], attention_gate(skip, gating, 5, name="gate"))
    for layer in gate.layers:  # non-zero biases, so that a missing bias would show
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(size=layer.bias.shape))
    w_x, w_g, b_g = (np.array(w) for w in (gate.get_layer("gate_skip").kernel, *gate.get_layer("gate_gating").weights))
    w_psi, b_psi = (np.array(w) for w in gate.get_layer("gate_coefficients").weights)

    # W_x: 2x2 stride-2 convolution of the skip onto the gating grid; W_g, psi: 1x1 convolutions.
    blocks = skip_value.reshape(2, 3, 2, 5, 2, 4)
    theta = np.einsum("bhiwjc,ijco->bhwo", blocks, w_x)
    phi = gating_value @ w_g[0, 0] + b_g
    alpha = 1 / (1 + np.exp(-(np.maximum(theta + phi, 0) @ w_psi[0, 0] + b_psi)))
    expected = skip_value * _upsampled_by_hand(alpha, (2, 2), "bilinear")
    actual = np.asarray(gate([skip_value, gating_value]))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
    assert 0 < alpha.min() and alpha.max() < 1


def test_unet_attention_gates_every_skip():
    model = build("unet", attention=True)
    gates = [layer.name for layer in model.layers if layer.name.endswith("_attention_apply")]
    assert gates == [f"decoder_stage{stage}_attention_apply" for stage in range(4)]  # strides 16 .. 2
    for stage in range(4):  # the gated skip, not the raw one, reaches the concatenation
        concat = model.get_layer(f"decoder_stage{stage}_concat")
        assert concat.input[1]._keras_history.operation.name == f"decoder_stage{stage}_attention_apply"
    plain = build("unet")
    assert not any("attention" in layer.name for layer in plain.layers)
    assert model.count_params() > plain.count_params()


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "unetplusplus", "nested_filters": "wide"}, "nested_filters must be one of"),
    ({"name": "unetplusplus", "deep_supervision": 1}, "deep_supervision must be True or False"),
    ({"name": "unetplusplus", "decoder_filters": (8, 8)}, "decoder_filters must be 5 positive ints"),
    ({"name": "unetplusplus", "upsampling": "cubic"}, "upsampling must be one of"),
    ({"name": "fpn", "normalization": "layer"}, "normalization must be one of"),
    ({"name": "fpn", "segmentation_filters": 48}, "segmentation_filters=48.*multiple of 32"),
    ({"name": "fpn", "pyramid_filters": 0}, "pyramid_filters must be a positive int; got 0"),
    ({"name": "linknet", "final_filters": 2.5}, "final_filters must be a positive int; got 2.5"),
    ({"name": "segformer", "embedding_filters": -1}, "embedding_filters must be a positive int"),
    ({"name": "segformer", "dropout": 1.5}, r"dropout must be a rate in \[0, 1\); got 1.5"),
    ({"name": "unet", "attention": "yes"}, "attention must be True or False; got 'yes'"),
    ({"name": "fpn", "deep_supervision": True}, r"Unknown option 'deep_supervision' for model 'fpn'"),
])
def test_bad_options_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kerazoo.create_model(encoder="mobilenetv2", num_classes=2, **kwargs)


# --- Against segmentation_models_pytorch ---------------------------------------------------------------

# smp 0.6.0 on ResNet-50, 12 classes: its decoder + segmentation head parameters (benchmarks/skip_decoder_params.py
# prints them; torch cannot run in a process that imported TensorFlow). Each design difference is computed
# from the layer shapes here; nothing else may differ.
SMP_DECODER_AND_HEAD = {"unetplusplus": 25_479_308, "fpn": 2_609_420, "linknet": 7_670_108, "segformer": 1_331_980}
RESNET50_WIDTHS = (64, 256, 512, 1024, 2048)  # strides 2 .. 32


def _known_differences(name):
    if name == "unetplusplus":
        return -(9 - 1) * 16 * 12  # our head is 1x1 on the 16 last channels; smp's 3x3
    if name == "linknet":
        reduced = [width // 4 for width in RESNET50_WIDTHS]
        return -sum(7 * c * c for c in reduced) - sum(reduced)  # 3x3 (paper) vs 4x4 transposed, smp's biases
    if name == "segformer":
        return -(64 * 256 + 256) - 256 * 256  # smp also embeds the stride-2 features (a fifth level)
    return 0


@pytest.mark.slow  # four ResNet-50 builds
@pytest.mark.parametrize("name", sorted(SMP_DECODER_AND_HEAD))
def test_decoder_parameters_match_smp_up_to_the_documented_differences(name):
    model = kerazoo.create_model(name, encoder="resnet50", num_classes=12)
    encoder = model.get_layer("resnet50_encoder")
    count = lambda weights: int(sum(np.prod(w.shape) for w in weights))  # noqa: E731
    decoder_and_head = count(model.trainable_weights) - count(encoder.trainable_weights)
    assert decoder_and_head == SMP_DECODER_AND_HEAD[name] + _known_differences(name)


# --- Export ------------------------------------------------------------------------------------------------

EXPORT_SIZE = (37, 45)
EXPORT_FAST = {"fpn"}


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("name, options", [
    pytest.param(name, options, id=case_id, marks=() if name in EXPORT_FAST and not options else pytest.mark.slow)
    for (name, options), case_id in zip(CASES, CASE_IDS)
])
def test_tflite_builtin_and_onnx_export_with_parity_at_dynamic_sizes(name, options, tmp_path):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    from kerazoo.export import export

    model = build(name, options)
    calibration = images(4, EXPORT_SIZE)
    quantize = (None, "int8") if name in EXPORT_FAST else None
    report = export(model, str(tmp_path), formats=("tflite", "onnx"), quantize=quantize,
                    representative_data=calibration, latency_runs=0, verbose=False)
    assert report.ok, report.failures()
    # No static-size fallback, neither at tracing (Keras' bilinear UpSampling2D cannot trace at a dynamic
    # size) nor at conversion: every file keeps a dynamic height and width (AnySizeUpSampling2D).
    assert not any("static" in note for note in report.notes), report.notes
    for exported in report.files:
        assert exported.format in ("tflite", "onnx")
        assert not any(op.startswith(("FLEX", "CUSTOM")) for op in exported.ops), exported.ops
        assert not any("static" in note for note in exported.notes), exported.notes
    tflite = report.get("tflite")
    assert tflite.passed and tflite.argmax_agreement >= 0.999 and tflite.relative_diff <= 1e-4
    from ai_edge_litert.interpreter import Interpreter

    assert list(Interpreter(model_path=tflite.path).get_input_details()[0]["shape_signature"]) == [-1, -1, -1, 3]
    assert report.get("onnx").passed
