"""The runtimes' fastest CPU settings (ONNX Runtime session options, LiteRT threads) and the optional
OpenVINO export format, on tiny models."""

import json
import os
import shutil
import subprocess

import keras
import numpy as np
import pytest

import kerazoo
from kerazoo.export import FORMATS, WRITERS, ExportError, TFLiteRunner, export, onnx_session, physical_cores
from kerazoo.export import runners
from kerazoo.export.openvino import read_openvino_metadata

from optional_extras import require_extra

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")
pytest.importorskip("ai_edge_litert.interpreter")


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(0)


def images(count, height, width, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(count, height, width, 3)).astype("float32")


def small_segnet_basic():
    return kerazoo.create_model("segnet_basic", num_classes=3, filters=8, depth=2)


def small_unet():
    return kerazoo.create_model("unet", encoder="mobilenetv2", num_classes=3, decoder_filters=(32, 16, 16, 8, 8))


@pytest.fixture(scope="module")
def unet_files(tmp_path_factory):
    """A tiny U-Net exported to ONNX and float32 TFLite, with the Keras model's outputs on two images."""
    keras.utils.set_random_seed(0)
    model = small_unet()
    samples = images(2, 64, 64)
    out_dir = tmp_path_factory.mktemp("unet")
    report = export(model, str(out_dir), formats=["tflite", "onnx"], sample_inputs=samples, latency_runs=0,
                    verbose=False)
    return {f.format: f.path for f in report.files}, samples, np.asarray(model(samples))


def test_physical_cores_counts_affinity_cpus_once_per_core():
    """Against lscpu's own topology table (CPU, core, socket), not the sysfs files the helper reads."""
    if shutil.which("lscpu") is None:
        pytest.skip("lscpu is not installed")
    table = subprocess.run(["lscpu", "-p=CPU,CORE,SOCKET"], capture_output=True, text=True, check=True).stdout
    rows = [line.split(",") for line in table.splitlines() if line and not line.startswith("#")]
    allowed = os.sched_getaffinity(0)
    expected = len({(socket, core) for cpu, core, socket in rows if int(cpu) in allowed})
    assert physical_cores() == expected
    assert 1 <= physical_cores() <= len(allowed)


def test_tuned_onnx_session_sets_the_measured_options_and_matches_the_default_session(unet_files):
    paths, samples, keras_outputs = unet_files
    tuned, default = onnx_session(paths["onnx"]), onnx_session(paths["onnx"], tuned=False)
    options = tuned.get_session_options()
    assert options.intra_op_num_threads == physical_cores()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.execution_mode == onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    assert default.get_session_options().intra_op_num_threads == 0  # ONNX Runtime's own default
    name = tuned.get_inputs()[0].name
    tuned_out = tuned.run(None, {name: samples})[0]
    np.testing.assert_allclose(tuned_out, default.run(None, {name: samples})[0], rtol=1e-5, atol=1e-5)
    span = float(np.ptp(keras_outputs))
    assert np.max(np.abs(tuned_out - keras_outputs)) <= 1e-4 * span  # and both are the Keras model's


def test_onnx_session_takes_an_explicit_thread_count(unet_files):
    assert onnx_session(unet_files[0]["onnx"], num_threads=1).get_session_options().intra_op_num_threads == 1


def test_litert_runner_defaults_to_one_thread_per_physical_core(unet_files, monkeypatch):
    paths, samples, keras_outputs = unet_files
    monkeypatch.setattr(runners, "physical_cores", lambda: 3)  # the default follows the helper, not a constant
    assert TFLiteRunner(paths["tflite"]).num_threads == 3
    assert TFLiteRunner(paths["tflite"], num_threads=None).num_threads is None  # LiteRT's own default
    monkeypatch.undo()
    runner = TFLiteRunner(paths["tflite"])
    assert runner.num_threads == physical_cores()
    np.testing.assert_allclose(runner(samples), keras_outputs, atol=1e-4 * float(np.ptp(keras_outputs)))


@pytest.mark.parametrize("bad", [0, -2, "four", 1.5, True])
def test_bad_thread_counts_name_the_valid_values(unet_files, bad):
    with pytest.raises(ValueError, match=r"num_threads must be 'auto', None .* positive int; got"):
        TFLiteRunner(unet_files[0]["tflite"], num_threads=bad)
    with pytest.raises(ValueError, match="num_threads must be"):
        onnx_session(unet_files[0]["onnx"], num_threads=bad)


def test_bad_format_names_list_openvino_and_openvino_is_not_a_default_format():
    with pytest.raises(ValueError, match=r"'tiff'.*openvino"):
        export(small_segnet_basic(), "unused", formats=["tiff"], verbose=False)
    assert "openvino" in WRITERS and "openvino" not in FORMATS


def test_missing_openvino_raises_an_error_naming_the_extra_before_writing(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    with pytest.raises(ExportError, match=r"kerazoo\[openvino\]"):
        export(small_segnet_basic(), str(tmp_path / "out"), formats=["openvino"], sample_inputs=images(1, 32, 32),
               verbose=False)
    assert not (tmp_path / "out").exists()  # the pre-flight check runs before anything is written


# --------------------------------------------------------------------------------------------------
# OpenVINO: skipped without the extra


@pytest.mark.parametrize("build, size", [(small_segnet_basic, (37, 45)), (small_unet, (64, 64))],
                         ids=["segnet_basic", "unet"])
def test_openvino_export_round_trips_with_float32_parity(tmp_path, build, size):
    openvino = require_extra("openvino", "openvino")
    model = build()
    samples = images(2, *size)
    report = export(model, str(tmp_path), formats=["openvino"], sample_inputs=samples, class_names=["a", "b", "c"],
                    latency_runs=1, verbose=False)
    exported = report.get("openvino")
    assert exported.passed and exported.error is None
    assert exported.path.endswith(".xml") and os.path.exists(exported.path[:-4] + ".bin")
    assert exported.latency_ms > 0 and "Convolution" in exported.ops
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".partial")]
    # Reloaded independently of the runner: plain OpenVINO, float32 arithmetic, another size.
    compiled = openvino.Core().compile_model(exported.path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    other = images(1, 40, 56, seed=3)
    outputs = compiled(other)[0]
    expected = np.asarray(model(other))
    assert outputs.shape == expected.shape
    assert np.max(np.abs(outputs - expected)) <= 1e-4 * float(np.ptp(expected))
    assert read_openvino_metadata(exported.path)["class_names"] == ["a", "b", "c"]
    with open(os.path.join(tmp_path, f"{model.name}.openvino.json")) as handle:
        assert json.load(handle)["class_names"] == ["a", "b", "c"]


def test_openvino_runner_rejects_an_unknown_precision(tmp_path):
    with pytest.raises(ValueError, match=r"precision must be one of \('f32', 'bf16', 'f16'\); got 'fp8'"):
        runners.openvino_runner(tmp_path / "missing.xml", precision="fp8")


def test_openvino_argmax_output_returns_the_keras_classes(tmp_path):
    require_extra("openvino", "openvino")
    model = small_unet()
    samples = images(2, 64, 64)
    report = export(model, str(tmp_path), formats=["openvino"], sample_inputs=samples, argmax_output=True,
                    latency_runs=0, verbose=False)
    exported = report.get("openvino")
    outputs = runners.openvino_runner(exported.path)(samples)
    assert outputs.dtype == np.int32 and outputs.shape == (2, 64, 64)
    assert np.mean(outputs == np.argmax(np.asarray(model(samples)), -1)) >= 0.999
