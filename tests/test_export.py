"""Tests of kerazoo.export: every file is reloaded in its runtime and compared with the Keras model."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerazoo
from kerazoo.export import CONTRACTS, ExportedFile, ExportError, ExportReport, export, read_tflite_metadata
from kerazoo.export import FORMATS, WRITERS, InsufficientMemoryError, declared_tie_policy
from kerazoo.export import onnx as onnx_export  # the module (kerazoo.export is the function)
from kerazoo.export.parity import check_parity
from kerazoo.export.serving import images_from

pytest.importorskip("tf2onnx")
onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter

CLASSES = ["sky", "road", "car"]


@pytest.fixture(autouse=True)
def seeded():
    """Random weights give near-tied logits; fixed seeds keep the argmax contracts deterministic."""
    keras.utils.set_random_seed(0)


def images(count, height, width, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(count, height, width, channels)).astype("float32")


def small_segnet_basic():
    return kerazoo.create_model("segnet_basic", num_classes=3, filters=8, depth=2)


def small_unet(**options):
    return kerazoo.create_model("unet", encoder="mobilenetv2", num_classes=3, decoder_filters=(32, 16, 16, 8, 8),
                                **options)


def tflite_interpreter(path):
    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    return interpreter


# --------------------------------------------------------------------------------------------------
# SegNet-Basic on an odd size (37x45): every format and every TFLite variant, strict contracts.


@pytest.fixture(scope="module")
def segnet_export(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("segnet_basic"))
    keras.utils.set_random_seed(0)  # module fixtures run before the per-test seed: seed here, whatever ran before
    model = small_segnet_basic()
    pairs = tf.data.Dataset.from_tensor_slices(
        (images(8, 37, 45), np.zeros((8, 37, 45), dtype="int32"))
    ).batch(4)  # (image, mask) batches, as a training pipeline gives them
    report = export(model, out_dir, quantize=(None, "float16", "dynamic", "int8"), representative_data=pairs,
                    class_names=CLASSES, latency_runs=2, verbose=False)  # strict: any failure raises
    return model, out_dir, report


def test_every_format_written_and_within_contract(segnet_export):
    _, out_dir, report = segnet_export
    assert report.ok and report.sample_shape == (2, 37, 45, 3)
    written = {(f.format, f.variant) for f in report.files}
    assert written == {("saved_model", "float32"), ("tflite", "float32"), ("tflite", "float16"),
                       ("tflite", "dynamic"), ("tflite", "int8"), ("onnx", "float32")}
    for f in report.files:
        assert os.path.exists(f.path) and f.size_bytes > 0 and f.convert_s > 0 and f.latency_ms > 0
        assert f.ops and 0 <= f.argmax_agreement <= 1
        if f.variant == "float32":
            assert f.relative_diff <= 1e-4 and f.argmax_agreement >= 0.999 and f.passed
        elif f.variant == "float16":
            assert f.argmax_agreement >= 0.99 and f.passed
        else:
            assert f.passed is None and f.max_abs_diff is not None  # measured, no contract
    assert os.path.exists(os.path.join(out_dir, "export_report.json"))
    assert "segnet_basic.tflite" in report.to_markdown()


def test_tflite_is_builtin_only_with_dynamic_batch(segnet_export):
    model, out_dir, report = segnet_export
    for variant in ("float32", "float16", "dynamic", "int8"):
        exported = report.get("tflite", variant)
        assert not any(op.startswith(("CUSTOM", "FLEX")) for op in exported.ops), exported.ops
        interpreter = tflite_interpreter(exported.path)
        signature = interpreter.get_input_details()[0]["shape_signature"]
        assert list(signature) == [-1, -1, -1, 3]  # batch, height and width all resizable
    # Batch 3 at another odd size, after a resize: the same numbers as Keras.
    interpreter = Interpreter(model_path=report.get("tflite").path)
    batch = images(3, 21, 30, seed=5)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, batch.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, batch)
    interpreter.invoke()
    output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(output, model(batch), atol=1e-4)


def test_int8_file_is_integer_inside(segnet_export):
    _, _, report = segnet_export
    exported = report.get("tflite", "int8")
    assert "QUANTIZE" in exported.ops
    # A dynamic-range file also holds int8 weights and a QUANTIZE op; only a full-integer file runs its
    # convolutions on int8 activations, so every CONV_2D's input, weights and output must be int8.
    interpreter = tflite_interpreter(exported.path)
    dtypes = {d["index"]: d["dtype"] for d in interpreter.get_tensor_details()}
    convolutions = [op for op in interpreter._get_ops_details() if op["op_name"] == "CONV_2D"]
    assert convolutions
    for op in convolutions:
        activation, kernel = op["inputs"][:2]
        assert dtypes[activation] == dtypes[kernel] == np.int8, op
        assert all(dtypes[index] == np.int8 for index in op["outputs"]), op
    dynamic = tflite_interpreter(report.get("tflite", "dynamic").path)
    dynamic_dtypes = {d["index"]: d["dtype"] for d in dynamic.get_tensor_details()}
    assert any(dynamic_dtypes[op["inputs"][0]] == np.float32
               for op in dynamic._get_ops_details() if op["op_name"] == "CONV_2D")  # the check tells them apart
    assert report.get("tflite", "int8").size_bytes < report.get("tflite", "float32").size_bytes


def test_saved_model_signature_and_single_copy_of_variables(segnet_export):
    model, out_dir, report = segnet_export
    loaded = tf.saved_model.load(os.path.join(out_dir, "saved_model"))
    serve = loaded.signatures["serving_default"]
    spec = serve.structured_input_signature[1]["image"]
    assert spec.shape.as_list() == [None, None, None, 3] and spec.dtype == tf.float32
    batch = images(1, 40, 33, seed=3)
    np.testing.assert_allclose(serve(image=tf.constant(batch))["scores"], model(batch), atol=1e-4)
    variables_dir = os.path.join(out_dir, "saved_model", "variables")
    stored = sum(os.path.getsize(os.path.join(variables_dir, n)) for n in os.listdir(variables_dir))
    weight_bytes = sum(np.asarray(w).nbytes for w in model.weights)
    assert stored < 1.5 * weight_bytes  # keras' model.export would store every variable twice
    with open(os.path.join(out_dir, "saved_model", "assets.extra", "kerazoo.json")) as handle:
        assert json.load(handle)["class_names"] == CLASSES


def test_onnx_is_valid_with_named_dynamic_axes(segnet_export):
    model, _, report = segnet_export
    exported = report.get("onnx")
    onnx_model = onnx.load(exported.path)
    onnx.checker.check_model(onnx_model, full_check=True)
    dims = [d.dim_param for d in onnx_model.graph.input[0].type.tensor_type.shape.dim[:3]]
    assert dims == ["batch", "height", "width"]
    assert json.loads({p.key: p.value for p in onnx_model.metadata_props}["kerazoo"])["class_names"] == CLASSES
    session = onnxruntime.InferenceSession(exported.path, providers=["CPUExecutionProvider"])
    batch = images(2, 19, 52, seed=4)
    np.testing.assert_allclose(session.run(None, {"image": batch})[0], model(batch), atol=1e-4)


def test_class_names_metadata_embedded_and_sidecar(segnet_export):
    _, out_dir, report = segnet_export
    path = report.get("tflite", "int8").path
    embedded = read_tflite_metadata(path)
    assert embedded["class_names"] == CLASSES and embedded["quantize"] == "int8"
    with open(path.replace(".tflite", ".json")) as handle:
        assert json.load(handle)["class_names"] == CLASSES
    tflite_interpreter(path)  # the metadata buffer does not disturb the runtime


def test_zoo_model_carries_its_classes_and_trained_size_into_the_files(tmp_path):
    model = kerazoo.create_model("segnet_basic", num_classes=3, filters=8, depth=2, class_names=CLASSES,
                                 class_colors=[(0, 0, 0), (255, 0, 0), (0, 255, 0)], input_size=(24, 32))
    report = export(model, str(tmp_path), formats=("tflite",), latency_runs=0, verbose=False)
    embedded = read_tflite_metadata(report.get("tflite").path)
    assert embedded["class_names"] == CLASSES  # no class_names argument: the model's own
    assert embedded["class_colors"] == [[0, 0, 0], [255, 0, 0], [0, 255, 0]]
    assert embedded["trained_input_size"] == [24, 32]


# --------------------------------------------------------------------------------------------------
# Mobile options: argmax in the graph, uint8 pixels, integer interfaces.


def test_unet_mobilenetv2_argmax_output_uint8_input(tmp_path):
    model = small_unet()
    calibration = images(4, 32, 48)
    report = export(model, str(tmp_path), formats=("tflite", "onnx"), quantize=("float32", "int8"),
                    representative_data=calibration, argmax_output=True, uint8_input=True, latency_runs=1,
                    verbose=False)
    expected = np.argmax(model(np.round(calibration[:2])), axis=-1)
    for f in report.files:
        assert "Bitcast" not in f.ops and "BitwiseAnd" not in f.ops and "BITCAST" not in f.ops
    float_file = report.get("tflite")
    assert "ARG_MAX" in float_file.ops and float_file.argmax_agreement >= 0.999
    interpreter = tflite_interpreter(float_file.path)
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    assert interpreter.get_output_details()[0]["dtype"] == np.int32
    assert report.get("tflite", "int8").argmax_agreement > 0.5  # measured; random weights tie often
    session = onnxruntime.InferenceSession(report.get("onnx").path, providers=["CPUExecutionProvider"])
    classes = session.run(None, {"image": np.round(calibration[:2]).astype("uint8")})[0]
    assert classes.dtype == np.int32 and np.mean(classes == expected) >= 0.999


def _run_integer_interface(path, batch):
    """Runs a .tflite file with an integer input as an app does, independently of kerazoo's runners: raw pixels
    quantised with the input's scale and zero point, one image at a time (a full-integer file may fix the batch
    at 1). Returns (the raw outputs stacked, the input's details, the output's details)."""
    interpreter = Interpreter(model_path=path)
    input_detail, output_detail = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = input_detail["quantization"]
    limits = np.iinfo(input_detail["dtype"])
    outputs = []
    for image in batch:
        interpreter.resize_tensor_input(input_detail["index"], (1, *image.shape))
        interpreter.allocate_tensors()
        quantised = np.clip(np.round(image / scale + zero_point), limits.min, limits.max).astype(input_detail["dtype"])
        interpreter.set_tensor(input_detail["index"], quantised[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(output_detail["index"])[0])
    return np.stack(outputs), input_detail, output_detail


def _takes_raw_pixels(input_detail):
    """The integer input spans the model's raw 0..255 pixels (value = scale * (q - zero_point))."""
    scale, zero_point = input_detail["quantization"]
    limits = np.iinfo(input_detail["dtype"])
    lowest, highest = scale * (limits.min - zero_point), scale * (limits.max - zero_point)
    return abs(lowest) <= 1 and abs(highest - 255) <= 1


def test_int8_integer_interface(tmp_path):
    model = small_segnet_basic()
    batch = images(3, 24, 24, seed=7)  # not the calibration images
    reference = np.asarray(model(batch))
    report = export(model, str(tmp_path), formats="tflite", quantize="int8", representative_data=images(6, 24, 24),
                    io_dtype="uint8", latency_runs=0, verbose=False)
    exported = report.get("tflite", "int8")
    outputs, input_detail, output_detail = _run_integer_interface(exported.path, batch)
    assert input_detail["dtype"] == np.uint8 and output_detail["dtype"] == np.uint8 and outputs.dtype == np.uint8
    assert _takes_raw_pixels(input_detail), input_detail["quantization"]
    # Dequantised with the output's scale and zero point, the scores are the Keras model's (int8 rounding aside;
    # measured: argmax agreement 0.94, mean |diff| 0.9% of the score range, at seeds 0-2 0.92-0.94 and 0.9-1.3%).
    scale, zero_point = output_detail["quantization"]
    scores = (outputs.astype(np.float64) - zero_point) * scale
    span = reference.max() - reference.min()
    assert np.mean(np.abs(scores - reference)) / span < 0.04
    assert np.mean(scores.argmax(-1) == reference.argmax(-1)) > 0.8
    assert exported.argmax_agreement > 0.8 and exported.relative_diff < 0.5  # the report measured the same file
    # With the argmax in the graph the output stays int32 classes; only the input is integer.
    report = export(model, str(tmp_path / "argmax"), formats="tflite", quantize="int8",
                    representative_data=images(6, 24, 24), io_dtype="int8", argmax_output=True, latency_runs=0,
                    verbose=False)
    classes, input_detail, output_detail = _run_integer_interface(report.get("tflite", "int8").path, batch)
    assert input_detail["dtype"] == np.int8 and output_detail["dtype"] == np.int32
    assert _takes_raw_pixels(input_detail), input_detail["quantization"]
    assert classes.shape == reference.shape[:3] and np.mean(classes == reference.argmax(-1)) > 0.8


class DynamicPad(keras.layers.Layer):
    """Pads by amounts computed from the input size: the converter then forgets the channel count.

    This is how PadToMultiple was first written; TFLite's CONV_2D cannot take the result with
    dynamic height and width.
    """

    def call(self, inputs):
        pad = (4 - keras.ops.shape(inputs)[1] % 4) % 4
        return keras.ops.pad(inputs, [[0, 0], [0, pad], [0, pad], [0, 0]])


def test_static_size_fallback_is_reported(tmp_path):
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(2, 3, padding="same", name="after_pad")(DynamicPad(name="dynamic_pad")(inputs))
    model = keras.Model(inputs, outputs)
    report = export(model, str(tmp_path), formats=("tflite",), quantize=(None, "float16"),
                    sample_inputs=images(2, 12, 20), latency_runs=0, verbose=False)
    for exported in report.files:
        assert exported.passed
        signature = list(tflite_interpreter(exported.path).get_input_details()[0]["shape_signature"])
        assert signature == [-1, 12, 20, 3]  # height and width fixed, batch still dynamic
        assert any("static height x width 12x20" in note and "Conv2D (in layer 'after_pad')" in note
                   for note in exported.notes), exported.notes


def test_unet_converts_with_dynamic_sizes(tmp_path):
    report = export(small_unet(), str(tmp_path), formats=("tflite",), sample_inputs=images(2, 32, 48),
                    latency_runs=0, verbose=False)
    exported = report.get("tflite")
    signature = list(tflite_interpreter(exported.path).get_input_details()[0]["shape_signature"])
    assert exported.passed and signature == [-1, -1, -1, 3] and not exported.notes


# --------------------------------------------------------------------------------------------------
# Failures are loud.


@keras.saving.register_keras_serializable(package="kerazoo_tests")
class FlexArgmaxPool(keras.layers.Layer):
    """Pools with tf.nn.max_pool_with_argmax: a TensorFlow op with no TFLite builtin."""

    def call(self, inputs):
        return tf.nn.max_pool_with_argmax(inputs, 2, 2, "SAME")[0]


def test_flex_op_raises_naming_op_and_layer(tmp_path):
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(2, 1, name="head")(FlexArgmaxPool(name="flex_pool")(inputs))
    model = keras.Model(inputs, outputs)
    with pytest.raises(ExportError, match=r"MaxPoolWithArgmax \(in layer 'flex_pool'\)"):
        export(model, str(tmp_path), formats="tflite", verbose=False)


class KerasFloatArgmax(keras.layers.Layer):
    """keras.ops.argmax on floats: lowers to Bitcast/BitwiseAnd on TensorFlow (see MEASURED.md)."""

    def call(self, inputs):
        return keras.ops.cast(keras.ops.expand_dims(keras.ops.argmax(inputs, axis=-1), -1), "float32")


def test_invalid_onnx_and_non_builtin_argmax_are_caught(tmp_path):
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, KerasFloatArgmax(name="keras_argmax")(keras.layers.Conv2D(3, 1)(inputs)))
    report = export(model, str(tmp_path), formats=("tflite", "onnx"), sample_inputs=images(1, 8, 8), strict=False,
                    latency_runs=0, verbose=False)
    assert "BitwiseAnd (in layer 'keras_argmax')" in report.get("tflite").error
    # tf2onnx writes the file without complaint; the checker is what refuses it.
    assert "Bitcast" in report.get("onnx").error and report.get("onnx").path is None


def test_failures_recorded_when_not_strict(tmp_path):
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(FlexArgmaxPool(name="flex_pool")(inputs)))
    report = export(model, str(tmp_path), formats=("tflite", "onnx"), strict=False, latency_runs=0, verbose=False)
    assert not report.ok
    assert "MaxPoolWithArgmax" in report.get("tflite").error
    assert report.get("onnx").ok  # ONNX has MaxPool with indices: that format still succeeds


def test_mixed_precision_exports_float32_twin_or_raises(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = small_segnet_basic()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    with pytest.raises(ExportError, match="mixed_float16"):
        export(model, str(tmp_path / "error"), mixed_precision="error", verbose=False)
    report = export(model, str(tmp_path / "twin"), formats=("tflite", "onnx"), latency_runs=0, verbose=False)
    assert report.ok and any("float32 twin" in note for note in report.notes)
    # The twin is the same network: it agrees with the float16-compute model on nearly every pixel.
    twin_vs_mixed = [n for n in report.notes if n.startswith("argmax agreement of the float32 twin")]
    assert twin_vs_mixed and float(twin_vs_mixed[0].rsplit(" ", 1)[1]) >= 0.95


def test_float32_twin_of_a_zoo_model_while_mixed_policy_is_still_set():
    # A ZooModel rebuilds from create_model arguments, so the twin must not inherit the global policy.
    from kerazoo.export.serving import float32_model

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = kerazoo.create_model("segnet_basic", num_classes=3, filters=4, kernel_size=3, depth=2)
        twin, notes = float32_model(model, "float32")
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # restored for the caller
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert {layer.dtype_policy.name for layer in twin.layers} == {"float32"}
    assert notes and "float32 twin" in notes[0]


def test_invalid_arguments(tmp_path):
    model = small_segnet_basic()
    with pytest.raises(ValueError, match="Unknown export format 'coreml'"):
        export(model, str(tmp_path), formats=("coreml",))
    with pytest.raises(ValueError, match="needs representative_data"):
        export(model, str(tmp_path), formats="tflite", quantize="int8")
    with pytest.raises(ValueError, match="quantize must be"):
        export(model, str(tmp_path), quantize="int4")


# --------------------------------------------------------------------------------------------------
# Helpers, without conversion.


def test_representative_data_forms():
    array = images(5, 8, 8)
    assert [x.shape for x in images_from(array, 3)] == [(1, 8, 8, 3)] * 3
    dataset = tf.data.Dataset.from_tensor_slices((array, np.zeros((5, 8, 8)))).batch(2)
    assert len(list(images_from(dataset, 100))) == 5
    dicts = tf.data.Dataset.from_tensor_slices({"image": array, "mask": np.zeros((5, 8, 8))})
    np.testing.assert_array_equal(next(images_from(dicts, 1))[0], array[0])
    with pytest.raises(ValueError, match="images must be"):
        list(images_from(np.zeros((2, 3)), 1))


def test_parity_contract_detects_a_wrong_file():
    reference = np.random.default_rng(0).normal(size=(1, 4, 4, 3))
    good = ExportedFile("tflite", "float32")
    check_parity(good, reference, reference + 1e-7, argmax_output=False)
    assert good.passed and good.ok
    bad = ExportedFile("tflite", "float32")
    check_parity(bad, reference, reference[..., ::-1], argmax_output=False)
    assert bad.passed is False and "parity contract missed" in bad.error and not bad.ok
    int8 = ExportedFile("tflite", "int8")
    check_parity(int8, reference, reference[..., ::-1], argmax_output=False)
    assert int8.passed is None and int8.ok  # int8 is measured and reported, not enforced
    assert CONTRACTS["float16"]["min_agreement"] == 0.99
    report = ExportReport("m", "/tmp", files=[good, bad])
    assert not report.ok and report.failures() == [bad]


def test_argmax_unpooling_reports_max_diff_but_enforces_agreement():
    reference = np.random.default_rng(0).normal(size=(1, 4, 4, 3))
    moved = reference.copy()
    moved[0, 0, 0, moved[0, 0, 0].argmax()] += 0.5  # one value moved by a whole activation, same classes
    segnet_file = ExportedFile("tflite", "float32")
    check_parity(segnet_file, reference, moved, argmax_output=False, tie_policy="argmax_agreement")
    assert segnet_file.passed and segnet_file.ok
    assert any("reported, not enforced" in note for note in segnet_file.notes)
    other_file = ExportedFile("tflite", "float32")
    check_parity(other_file, reference, moved, argmax_output=False)
    assert other_file.passed is False and "relative max |diff|" in other_file.error
    flipped = ExportedFile("tflite", "float32")
    check_parity(flipped, reference, reference[..., ::-1], argmax_output=False, tie_policy="argmax_agreement")
    assert flipped.passed is False and "argmax agreement" in flipped.error


# --------------------------------------------------------------------------------------------------
# Every registered model x every format at small sizes. Fast: models with small parameter counts;
# slow: the VGG/ResNet-sized ones (FCN on VGG16 has 134M parameters).

FAST = {"segnet_basic": {"filters": 8, "depth": 3}, "edsr": {"filters": 8, "num_blocks": 2},
        "drunet": {"filters": 4, "num_blocks": 1}}
SIZES = {"unet_paper": (188, 188)}
FLOAT16_NEAR_TIE_MISSES = {("segnet", "float16")}  # (model, variant) pairs measured to miss by near-ties
# Each model on its smallest encoder: the decoder is what differs between models. The export matrix
# (export_matrix/matrix.py, one subprocess per model) covers the default encoders; FCN on VGG16 (134M
# parameters) to ONNX is tested below.
SMALLEST_ENCODER = {"fcn8s": "mobilenetv2", "fcn16s": "mobilenetv2", "fcn32s": "mobilenetv2", "unet": "mobilenetv2"}
EXPORT_CASES = [(name, SMALLEST_ENCODER.get(name)) for name in kerazoo.list_models()]


@pytest.mark.parametrize("name, encoder", [
    pytest.param(name, encoder, id=f"{name}-{encoder}", marks=() if name in FAST else pytest.mark.slow)
    for name, encoder in EXPORT_CASES
])
def test_every_registered_model_exports(name, encoder, tmp_path):
    height, width = SIZES.get(name, (37, 45) if name.startswith("segnet") else (64, 96))
    channels = 1 if name == "unet_paper" else 3
    input_shape = (height, width, channels) if name == "unet_paper" else None
    model = kerazoo.create_model(name, encoder=encoder, num_classes=3, input_shape=input_shape,
                                 **FAST.get(name, {}))
    calibration = images(4, height, width, channels)
    report = export(model, str(tmp_path), formats=("saved_model", "tflite"), quantize=(None, "float16", "int8"),
                    representative_data=calibration, latency_runs=0, verbose=False, strict=False)
    # Random-weight SegNet-VGG16 misses the float16 argmax contract (0.987 < 0.99) because ~45% of its
    # pixels are near-ties within float16's error (export_matrix/REPORT.md). Only that named miss is excused,
    # and only down to a floor: a badly wrong file still fails.
    excused = [f for f in report.failures() if (name, f.variant) in FLOAT16_NEAR_TIE_MISSES]
    assert all(f.argmax_agreement is not None and f.argmax_agreement >= 0.95 for f in excused), excused
    unexplained = [f for f in report.failures() if f not in excused]
    assert not unexplained, unexplained
    assert report.get("tflite").passed and report.get("saved_model").passed
    report = export(model, str(tmp_path / "onnx"), formats="onnx", sample_inputs=calibration[:2], latency_runs=0,
                    verbose=False)
    assert report.ok and report.get("onnx").argmax_agreement >= 0.999


@pytest.mark.slow
def test_unet_upsampling_variants_export(tmp_path):
    for upsampling in ("nearest", "bilinear", "bed_of_nails"):
        report = export(small_unet(upsampling=upsampling), str(tmp_path / upsampling), quantize=(None, "int8"),
                        representative_data=images(4, 32, 48), latency_runs=0, verbose=False)
        assert report.ok, (upsampling, report.failures())


# --------------------------------------------------------------------------------------------------
# The writer registry, the declared tie policy, large models and the ONNX child process.


def test_writer_registry_drives_export(tmp_path, monkeypatch):
    assert set(WRITERS) == {"saved_model", "tflite", "onnx", "openvino", "web"}
    assert set(FORMATS) == {"saved_model", "tflite", "onnx"}  # openvino and web are opt-in
    assert WRITERS["tflite"].variants(("float32", "int8")) == ("float32", "int8")
    assert WRITERS["onnx"].variants(("float32", "int8")) == ("float32",)  # ONNX stays float32
    written = []

    def fake_write(job, exported):
        written.append((exported.format, exported.variant, job.stem))
        exported.passed = True

    monkeypatch.setitem(WRITERS, "onnx", dataclasses.replace(WRITERS["onnx"], write=fake_write))
    report = export(small_segnet_basic(), str(tmp_path), formats="onnx", latency_runs=0, verbose=False)
    assert written == [("onnx", "float32", "segnet_basic")] and report.ok


def test_tie_policy_is_declared_by_the_argmax_layers():
    from kerazoo.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D

    assert MaxPoolingWithArgmax2D.export_parity == MaxUnpooling2D.export_parity == "argmax_agreement"
    assert declared_tie_policy(small_segnet_basic()) == "argmax_agreement"
    assert declared_tie_policy(small_unet()) == "exact"

    class LooseConv(keras.layers.Conv2D):
        export_parity = "argmax_agreement"  # any layer can declare it; export reads it, tests no class

    inputs = keras.Input((None, None, 3))
    assert declared_tie_policy(keras.Model(inputs, LooseConv(2, 1)(inputs))) == "argmax_agreement"

    class Unknown(keras.layers.Conv2D):
        export_parity = "whatever"

    with pytest.raises(ValueError, match="Unknown export_parity.*valid policies: exact, argmax_agreement"):
        declared_tie_policy(keras.Model(inputs, Unknown(2, 1)(inputs)))


def test_onnx_memory_guard_fails_first_naming_size(tmp_path, monkeypatch):
    model = small_segnet_basic()
    monkeypatch.setattr(onnx_export, "weight_bytes", lambda model: 200 * 2**30)  # looks like 200 GiB of weights
    names_size = r"ONNX export of 'segnet_basic' \(.*M parameters, 204800\.00 MiB of weights\) needs about"
    with pytest.raises(InsufficientMemoryError, match=names_size) as caught:
        export(model, str(tmp_path / "out"), formats=("saved_model", "onnx"), verbose=False)
    message = str(caught.value)
    assert "parameters" in message and "GB of free memory" in message and "GB is available" in message
    assert caught.value.needed_bytes > caught.value.available_bytes
    assert not (tmp_path / "out").exists()  # failed before anything was written
    report = export(model, str(tmp_path / "lenient"), formats=("saved_model", "onnx"), strict=False,
                    latency_runs=0, verbose=False)
    assert report.get("saved_model").ok and "free memory" in report.get("onnx").error


def small_onnx_child_export(tmp_path, **patches):
    return export(small_segnet_basic(), str(tmp_path), formats="onnx", latency_runs=0, verbose=False, **patches)


def test_onnx_in_child_process_and_external_data(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "CHILD_PROCESS_MIN_BYTES", 0)  # a small model takes the large-model path
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_MIN_BYTES", 0)
    children = []
    real = onnx_export.convert_in_child
    monkeypatch.setattr(onnx_export, "convert_in_child", lambda *a, **k: children.append(a) or real(*a, **k))
    report = small_onnx_child_export(tmp_path)
    exported = report.get("onnx")
    assert children and exported.passed and exported.relative_diff <= 1e-4
    assert os.path.exists(exported.path + ".data") and os.path.getsize(exported.path) < 100_000
    assert exported.size_bytes == os.path.getsize(exported.path) + os.path.getsize(exported.path + ".data")
    loaded = onnx.load(exported.path, load_external_data=False)
    assert not [i for i in loaded.graph.input if i.name != "image"]  # weights are initializers, not inputs


def test_caller_survives_a_child_that_dies(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "CHILD_PROCESS_MIN_BYTES", 0)
    dying = tmp_path / "dying_child.py"
    dying.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    real = onnx_export.convert_in_child
    monkeypatch.setattr(onnx_export, "convert_in_child", lambda *a: real(*a, script=str(dying)))
    with pytest.raises(ExportError, match="killed by signal 9.*caller is unharmed"):
        small_onnx_child_export(tmp_path / "killed")
    assert not (tmp_path / "killed" / "segnet_basic.onnx").exists()


def test_child_over_its_memory_limit_is_killed(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "CHILD_PROCESS_MIN_BYTES", 0)
    monkeypatch.setattr(onnx_export, "child_memory_limit", lambda model: 50 * 2**20)  # TensorFlow alone is more
    with pytest.raises(ExportError, match="passed its memory limit of 0.05 GB and was killed"):
        small_onnx_child_export(tmp_path)
    assert os.getpid() and not list(tmp_path.glob("*.onnx"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fcn8s", "fcn16s", "fcn32s"])
def test_fcn_vgg16_exports_to_onnx_with_parity(name, tmp_path):
    """134M parameters: a frozen-graph conversion was killed at 24 GB; this one peaks near 4.4 GB."""
    model = kerazoo.create_model(name, encoder="vgg16", num_classes=5, input_shape=(96, 96, 3))
    report = export(model, str(tmp_path), formats="onnx", sample_inputs=images(2, 96, 96), latency_runs=0,
                    verbose=False)
    exported = report.get("onnx")
    assert exported.passed and exported.relative_diff <= 1e-4 and exported.argmax_agreement >= 0.999
    assert exported.size_bytes > 500e6  # the weights are in the file


def _psnr(images, targets):
    """PSNR (data range 255) of 8-bit rounded grey images, written out: 10 log10(255^2 / MSE), mean over images."""
    rounded = np.clip(np.rint(images), 0, 255)
    mse = np.mean((rounded - targets) ** 2, axis=(1, 2, 3))
    return float(np.mean(10 * np.log10(255.0**2 / mse)))


def test_restoration_parity_is_held_to_psnr_against_clean_images():
    rng = np.random.default_rng(0)
    clean = rng.uniform(30, 220, size=(2, 16, 16, 1))
    reference = clean + rng.normal(0, 5, size=clean.shape)  # the Keras model's outputs
    close = ExportedFile("tflite", "float32")
    check_parity(close, reference, reference + 0.02, argmax_output=False, tie_policy="psnr", targets=clean)
    assert close.passed and close.argmax_agreement is None  # argmax over channels means nothing here
    assert close.psnr == pytest.approx(_psnr(reference + 0.02, clean), abs=1e-4)
    assert close.psnr_drop == pytest.approx(_psnr(reference, clean) - _psnr(reference + 0.02, clean), abs=1e-4)
    assert abs(close.psnr_drop) <= CONTRACTS["float32"]["max_psnr_drop"] == 0.05
    far = ExportedFile("onnx", "float32")
    check_parity(far, reference, reference + 2.0, argmax_output=False, tie_policy="psnr", targets=clean)
    assert far.passed is False and "PSNR" in far.error and far.psnr_drop > 0.05
    int8 = ExportedFile("tflite", "int8")
    check_parity(int8, reference, reference + 2.0, argmax_output=False, tie_policy="psnr", targets=clean)
    assert int8.passed is None and int8.psnr_drop > 0.05  # reported (the int8 drop), not enforced
    assert "dB" in ExportReport("m", "/tmp", files=[int8]).rows()[0][5]
    untargeted = ExportedFile("tflite", "float32")  # no clean images: the exact max |diff| contract
    check_parity(untargeted, reference, reference + 2.0, argmax_output=False, tie_policy="psnr")
    assert untargeted.passed is False and "relative max |diff|" in untargeted.error
    denoiser = kerazoo.create_model("segnet_basic", filters=4, depth=2, task="denoise", in_channels=1)
    assert declared_tie_policy(denoiser) == "psnr" and declared_tie_policy(small_segnet_basic()) == "argmax_agreement"


@pytest.mark.slow  # ~50 s: two TFLite conversions of a MobileNetV2 U-Net
def test_int8_super_resolver_keeps_depth_to_space_and_resize_builtin(tmp_path):
    # The bilinear U-Net decoder upsamples with RESIZE_BILINEAR; the sub-pixel head ends with DEPTH_TO_SPACE.
    model = kerazoo.create_model("unet", encoder="mobilenetv2", decoder_filters=(8, 8, 8, 8, 8), upsampling="bilinear",
                                 task="super_resolution", scale=2)
    low = images(2, 32, 32)
    clean = np.asarray(model(low)) + np.random.default_rng(1).normal(0, 8, size=(2, 64, 64, 3))
    report = export(model, str(tmp_path), formats="tflite", quantize=(None, "int8"), representative_data=images(4, 32, 32),
                    sample_inputs=low, sample_targets=clean, num_calibration=4, latency_runs=0, input_size=(32, 32),
                    verbose=False)
    assert report.ok, report.failures()
    float32, int8 = report.get("tflite"), report.get("tflite", "int8")
    assert float32.passed and abs(float32.psnr_drop) <= 0.05 and int8.psnr_drop is not None
    for exported in (float32, int8):
        assert "DEPTH_TO_SPACE" in exported.ops and "RESIZE_BILINEAR" in exported.ops, exported.ops
        assert not any(op.startswith(("CUSTOM", "FLEX")) for op in exported.ops), exported.ops
    assert "QUANTIZE" in int8.ops
    with pytest.raises(ValueError, match="sample_targets need the sample_inputs"):
        export(model, str(tmp_path / "x"), formats="tflite", sample_targets=clean, verbose=False)
