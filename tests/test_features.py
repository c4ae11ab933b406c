"""Features that had no test of their own: each test here fails when the feature it names breaks.

encoder_bn_momentum, TensorBoard logs, `kerazoo train --devices mirrored`, the README's parameter table,
`kerazoo benchmark`, `kerazoo export` (--input-size, --opset, a preset name), `kerazoo evaluate` with a
preset name. Tiny sizes and random weights; command-line tests run `python -m kerazoo.cli` in a child
process, as a user would.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import kerazoo
from kerazoo.training.train import train

from readme_tables import models_by_encoder

REPO = Path(__file__).resolve().parents[1]
TINY_SEGNET = dict(filters=4, kernel_size=3, depth=2)
TINY = dict(model_options=TINY_SEGNET, dataset="shapes", image_size=(32, 32), num_examples=16, val_examples=16,
            batch_size=8, tensorboard=False, verbose=0)


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}


def _kerazoo(*argv, timeout=600):
    """Runs `kerazoo ARGV` in a child process; returns it after asserting it succeeded."""
    run = subprocess.run([sys.executable, "-m", "kerazoo.cli", *map(str, argv)], env=_env(), capture_output=True,
                         text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout + run.stderr
    return run



# encoder_bn_momentum


def _batch_norms(layer):
    """Every BatchNormalization inside `layer`, nested models included, in build order."""
    found = []
    for inner in getattr(layer, "layers", []):
        if isinstance(inner, keras.layers.BatchNormalization):
            found.append(inner)
        found += _batch_norms(inner)
    return found


def _tiny_unet(**options):
    keras.utils.set_random_seed(0)
    return kerazoo.create_model("unet", encoder="mobilenetv2", num_classes=2, input_shape=(32, 32, 3),
                                encoder_weights=None, decoder_filters=(8, 8, 8, 8, 8), **options)


def test_encoder_bn_momentum_reaches_the_encoder_and_its_moving_statistics():
    tuned, default = _tiny_unet(encoder_bn_momentum=0.5), _tiny_unet()
    default.set_weights(tuned.get_weights())
    encoder = [bn for bn in _batch_norms(tuned) if not bn.name.startswith("decoder")]
    decoder = [bn for bn in _batch_norms(tuned) if bn.name.startswith("decoder")]
    assert len(encoder) > 10 and decoder
    assert all(bn.momentum == 0.5 for bn in encoder)
    default_momentum = _batch_norms(default)[0].momentum  # Keras Applications' own (0.999 for MobileNetV2)
    assert default_momentum != 0.5
    assert all(bn.momentum == keras.layers.BatchNormalization().momentum for bn in decoder)  # decoder untouched

    # One training-mode pass from the same weights on the same batch: the first encoder batch norm sees the
    # same batch mean m in both models and its moving mean moves from 0 to (1 - momentum) * m.
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    moved = []
    for model in (tuned, default):
        model(x, training=True)
        moved.append(np.asarray(_batch_norms(model)[0].moving_mean))
    assert np.abs(moved[0]).max() > 0
    np.testing.assert_allclose(moved[0] * (1 - default_momentum), moved[1] * (1 - 0.5), rtol=1e-3, atol=1e-7)


# TensorBoard


def _scalar_tags(directory):
    import tensorflow as tf

    tags = set()
    for path in Path(directory).glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_train_writes_tensorboard_scalars(tmp_path):
    train("segnet_basic", epochs=2, output_dir=tmp_path, **{**TINY, "tensorboard": True})
    logs = tmp_path / "tensorboard"
    assert {"epoch_loss", "epoch_mean_iou", "epoch_learning_rate"} <= _scalar_tags(logs / "train")
    assert {"epoch_loss", "epoch_mean_iou"} <= _scalar_tags(logs / "validation")


def test_train_without_tensorboard_writes_no_logs(tmp_path):
    train("segnet_basic", epochs=1, output_dir=tmp_path, **TINY)
    assert not (tmp_path / "tensorboard").exists()


# `kerazoo train --devices mirrored`

_MIRRORED_CLI = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from kerazoo import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def test_cli_train_devices_mirrored_uses_both_logical_cpus(tmp_path):
    script = tmp_path / "two_cpus.py"
    script.write_text(_MIRRORED_CLI)
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, str(script), "train", "--model", "segnet_basic", "--option", "filters=4",
         "--option", "kernel_size=3", "--option", "depth=2", "--dataset", "shapes", "--image-size", "32x32",
         "--num-examples", "16", "--epochs", "1", "--batch-size", "8", "--devices", "mirrored", "--no-tensorboard",
         "--verbose", "2", "--output-dir", str(out)],
        env=_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 replicas" in run.stdout
    devices = json.loads((out / "run.json").read_text())["resolved"]["devices"]
    assert len(devices) == 2 and all("cpu" in device.lower() for device in devices), devices


# README's "Models x encoders" table


README_TABLE = models_by_encoder()
# By default the light models on the first six encoders and the own topologies are built; the rest of those six is
# slow, and the other encoders' cells (hundreds of builds, benchmarks/combinations.py makes them) are `matrix`.
FIRST_ENCODERS = {None, "mobilenetv2", "resnet50", "resnet101", "resnet152", "vgg16", "vgg19"}


def _built_count_case(key):
    millions, _, _ = README_TABLE[key]
    if key[1] not in FIRST_ENCODERS:
        return pytest.param(*key, marks=pytest.mark.matrix)
    return key if millions < 10 else pytest.param(*key, marks=pytest.mark.slow)


def test_readme_parameter_table_lists_exactly_the_valid_combinations():
    from kerazoo.models import model_encoders

    # Every model on every encoder it can take (the own topologies in their row), and nothing else.
    expected = {(name, encoder) for name in kerazoo.list_models() for encoder in (model_encoders(name) or [None])}
    assert set(README_TABLE) == expected


def test_readme_parameter_table_is_the_committed_measurement():
    """The README's table is what benchmarks/combinations.py measured (benchmarks/combinations.json), not edited
    by hand: parameters, and the export mark of each exported combination."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import combinations
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    saved = json.loads((REPO / "benchmarks" / "combinations.json").read_text())
    readme = (REPO / "README.md").read_text()
    assert combinations.with_readme_table(readme, combinations.readme_table(saved["rows"])) == readme
    exported = [row for row in saved["rows"] if "export" in row]
    assert exported, "no exported combination in benchmarks/combinations.json"
    for row in exported:
        key = (row["model"], None if row["encoder"] == combinations.OWN_TOPOLOGY else row["encoder"])
        assert README_TABLE[key][2] == ("✓" if combinations.exported_ok(row) else "✗"), key


@pytest.mark.parametrize("model, encoder", [_built_count_case(key) for key in sorted(README_TABLE, key=str)])
def test_readme_parameter_table_matches_the_built_models(model, encoder):
    millions, decimals, _ = README_TABLE[(model, encoder)]
    built = kerazoo.create_model(model, encoder=encoder, num_classes=12)
    count = built.count_params()
    del built
    keras.backend.clear_session()
    assert abs(count / 1e6 - millions) <= 0.5 * 10 ** -decimals + 1e-9, (model, encoder, count)


# `kerazoo benchmark`


@pytest.mark.benchmark  # about 2 min: the peak matmul and the fresh processes
def test_cli_benchmark_writes_json_and_markdown(tmp_path):
    json_path, markdown_path = tmp_path / "bench.json", tmp_path / "bench.md"
    _kerazoo("benchmark", "--model", "segnet_basic", "--option", "filters=4", "--option", "kernel_size=3",
             "--option", "depth=2", "--image-size", "32x32", "--num-classes", "2", "--formats", "keras",
             "--batch-sizes", "1", "--train-batch-size", "1", "--warmup", "1", "--runs", "1",
             "--json", json_path, "--markdown", markdown_path)
    results = json.loads(json_path.read_text())
    (case,) = results["cases"]
    assert case["case"] == "segnet_basic 32x32, filters=4, kernel_size=3, depth=2"
    assert case["params"] == kerazoo.create_model("segnet_basic", num_classes=2, **TINY_SEGNET).count_params()
    assert case["inference"]["keras"]["latency_ms"]["1"] > 0
    assert f"| {case['case']} | keras |" in markdown_path.read_text()


# `kerazoo export`: --input-size, --opset


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_run")
    return train("segnet_basic", epochs=1, output_dir=out, **TINY).best_path


def test_cli_export_input_size_and_opset_reach_the_files(tmp_path, tiny_checkpoint):
    import onnx
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "exported"
    _kerazoo("export", tiny_checkpoint, "--out-dir", out, "--formats", "tflite", "onnx", "--input-size", "40x48",
             "--opset", "15", "--latency-runs", "0")
    (onnx_path,) = out.glob("*.onnx")
    proto = onnx.load(str(onnx_path))
    assert {entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")} == {15}
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [40, 48, 3], dims
    (tflite_path,) = out.glob("*.tflite")
    shape = Interpreter(model_path=str(tflite_path)).get_input_details()[0]["shape"]
    assert list(shape[1:]) == [40, 48, 3]


# A preset name where a checkpoint goes


@pytest.mark.data
def test_cli_evaluate_and_export_take_a_preset_name(tmp_path, shared_data_dir):
    data = shared_data_dir("camvid")
    report_path = tmp_path / "report.json"
    run = _kerazoo("evaluate", "camvid_segnet_basic", "--data-dir", data, "--json", report_path)
    report = json.loads(report_path.read_text())
    metadata = kerazoo.presets.preset_metadata("camvid_segnet_basic", offline=True)
    assert report["dataset"] == "camvid" and report["split"] == "val"
    # The preset's recorded validation scores, reproduced from its name alone.
    assert report["mean_iou"] == pytest.approx(metadata["metrics"]["mean_iou"], abs=5e-4)
    assert "mIoU" in run.stdout or "mean" in run.stdout.lower()

    out = tmp_path / "exported"
    _kerazoo("export", "camvid_segnet_basic", "--out-dir", out, "--formats", "tflite", "--latency-runs", "0")
    (tflite_path,) = out.glob("*.tflite")
    from ai_edge_litert.interpreter import Interpreter

    shape = Interpreter(model_path=str(tflite_path)).get_input_details()[0]["shape_signature"]
    assert shape[-1] == 3
