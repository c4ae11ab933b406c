"""Training: TrainConfig, checkpoints, logs, resumption after SIGKILL, MirroredStrategy, mixed precision,
evaluation, and the lazy `import kerazoo`."""

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import kerazoo
import kerazoo.data
from kerazoo.training import evaluation
from kerazoo import cli
from kerazoo.training.config import TrainConfig
from kerazoo.training.train import BestCheckpoint, make_optimizer, make_strategy, train

REPO = Path(__file__).resolve().parents[1]
# The smallest SegNet-Basic that still exercises argmax pooling and unpooling.
TINY = dict(model_options=dict(filters=4, kernel_size=3, depth=2), dataset="shapes", image_size=(32, 32),
            num_examples=16, val_examples=16, batch_size=8, tensorboard=False, verbose=0)


def _csv_epochs(path):
    with open(path) as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_train_writes_best_checkpoint_logs_and_run_json(tmp_path):
    result = train("segnet_basic", epochs=2, output_dir=tmp_path, **TINY)
    assert result.best_path == tmp_path / "best.keras" and result.best_path.exists()
    assert _csv_epochs(tmp_path / "log.csv") == [0, 1]
    assert len(result.history["val_mean_iou"]) == 2
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["val_mean_iou"] == pytest.approx(max(result.history["val_mean_iou"]))
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["create_model"] == {"name": "segnet_basic", "encoder": None, "num_classes": 4,
                                   "encoder_weights": None, "in_channels": 3, "filters": 4, "kernel_size": 3,
                                   "depth": 2, "class_names": ["background", "circle", "square", "triangle"],
                                   "class_colors": [[0, 0, 0], [230, 25, 75], [60, 180, 75], [0, 130, 200]],
                                   "input_size": [32, 32]}
    assert run["dataset"] == "shapes" and run["result"]["wall_seconds"] > 0
    assert TrainConfig.from_dict(run["config"]) == result.config  # run.json reproduces the run
    assert result.config == TrainConfig(model="segnet_basic", epochs=2, output_dir=str(tmp_path),
                                        **{k: v for k, v in TINY.items() if k not in ("tensorboard", "verbose")})
    assert not (tmp_path / "backup").exists()  # deleted once training finished
    assert not list(tmp_path.glob(".*tmp*"))  # nothing half-written left behind
    restored = keras.saving.load_model(result.best_path, compile=False)
    assert restored.output.shape[-1] == 4


def test_median_frequency_class_weights_are_recorded(tmp_path):
    train("segnet_basic", epochs=1, output_dir=tmp_path, class_weights="median_frequency", **TINY)
    weights = json.loads((tmp_path / "run.json").read_text())["resolved"]["class_weights"]
    masks = kerazoo.data.load("shapes", "train", batch_size=8, image_size=(32, 32), augment=False,
                              shuffle=False, num_examples=16)
    assert weights == pytest.approx(kerazoo.data.median_frequency_weights(masks, 4).tolist())


@pytest.mark.parametrize("kwargs, message", [
    (dict(model="segnet_basc"), "segnet_basic"),
    (dict(dataset="camvd"), "camvid"),
    (dict(optimizer="adamx"), "adam, adamw, sgd, rmsprop"),
    (dict(schedule="linear"), "cosine, poly, constant"),
    (dict(class_weights="inverse"), "median_frequency"),
    (dict(class_weights=[1.0, 2.0]), "4 classes"),
    (dict(mixed_precision="float16"), "mixed_float16"),
    (dict(epochs=0), "epochs must be an int >= 1, got 0"),
    (dict(batch_size=2.5), "batch_size must be an int >= 1, got 2.5"),
    (dict(learning_rate=-1), "learning_rate must be > 0, got -1"),
    (dict(image_size=(32,)), "image_size must be"),
    (dict(optimizer="adam", weight_decay=1e-4), "adamw"),
    (dict(dataset="membrane", num_examples=8), r"synthetic data sets \(.*shapes.*\) only, not .membrane."),
    (dict(model=None, encoder="vgg16"), "keras.Model"),
])
def test_train_config_names_the_bad_value_and_the_valid_ones(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_train_rejects_bad_arguments_before_writing_anything(tmp_path):
    with pytest.raises(ValueError, match="cosine, poly, constant"):
        train("segnet_basic", schedule="linear", output_dir=tmp_path / "run", **TINY)
    assert not (tmp_path / "run").exists()


def test_train_config_round_trips_through_json():
    config = TrainConfig(model="unet", encoder="mobilenetv2", model_options={"decoder_filters": [16, 8, 8, 8, 8]},
                         dataset="camvid", image_size=[64, 96], class_weights=[1] * 11, mixed_precision=True,
                         devices="/cpu:0,/cpu:1", output_dir=Path("runs/x"))
    assert config.model_options == {"decoder_filters": (16, 8, 8, 8, 8)} and config.image_size == (64, 96)
    assert config.mixed_precision == "mixed_float16" and config.class_weights == (1.0,) * 11
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    with pytest.raises(ValueError, match="Unknown TrainConfig field.*epoch.*valid: model"):
        TrainConfig.from_dict({"epoch": 3})


def test_train_config_reads_a_shipped_preset_recipe():
    metadata = kerazoo.presets.preset_metadata("camvid_segnet_basic", offline=True)  # model facts filled in
    config = TrainConfig.from_metadata(metadata)
    # The command that trained it, parsed by the CLI, is the same recipe except what train() resolved
    # (the median-frequency weights and the steps per epoch are recorded as numbers under "resolved").
    args = cli.build_parser().parse_args(metadata["training"]["command"].split()[1:])
    commanded = cli.train_config_from_args(args)
    # The preset's model options are every create_model argument (defaults filled in), a superset of the
    # command's; data_dir and output_dir are where that machine kept its data and runs.
    resolved = {"class_weights", "steps_per_epoch", "model_options"}
    differing = {f.name for f in dataclasses.fields(TrainConfig)
                 if getattr(config, f.name) != getattr(commanded, f.name)}
    assert differing <= resolved | {"output_dir", "data_dir"}, differing
    assert commanded.model_options.items() <= config.model_options.items()
    assert config.model == "segnet_basic" and config.model_options["filters"] == 32
    assert config.mixed_precision == commanded.mixed_precision == "mixed_bfloat16"
    assert config.image_size == (176, 240) and config.epochs == 48 and config.class_weights == "median_frequency"
    assert len(metadata["training"]["resolved"]["class_weights"]) == 11  # what median_frequency gave


def test_train_validates_on_the_registry_split(tmp_path, monkeypatch):
    # A data set whose validation split is "test" (as oxford_iiit_pet's) is validated on "test".
    registry = kerazoo.data.DATASETS
    monkeypatch.setitem(registry, "shapes", dataclasses.replace(registry["shapes"], val_split="test"))
    loaded = []
    real_load = kerazoo.data.load

    def recording_load(name, split="train", **kwargs):
        loaded.append((name, split, kwargs.get("num_examples")))
        return real_load(name, split, **kwargs)

    monkeypatch.setattr(kerazoo.data, "load", recording_load)
    train("segnet_basic", epochs=1, output_dir=tmp_path, **{**TINY, "num_examples": 24, "val_examples": 8})
    assert loaded == [("shapes", "train", 24), ("shapes", "test", 8)]


def _rate_at(optimizer, step):
    optimizer.iterations.assign(step)
    return float(optimizer.learning_rate)


def test_make_optimizer_schedules():
    total = 10
    # Closed forms: cosine lr * (1 + cos(pi t / T)) / 2; poly lr * (1 - t / T) ** 0.9 (DeepLab); both 0 at T.
    cosine = make_optimizer("adam", 1e-3, "cosine", total_steps=total)
    for step in (0, 3, total // 2, total):
        expected = 1e-3 * (1 + np.cos(np.pi * step / total)) / 2
        assert _rate_at(cosine, step) == pytest.approx(expected, rel=1e-5, abs=1e-9), step
    poly = make_optimizer("sgd", 0.1, "poly", total_steps=total)
    assert isinstance(poly, keras.optimizers.SGD)
    for step in (0, 3, total // 2, total):
        expected = 0.1 * (1 - step / total) ** 0.9
        assert _rate_at(poly, step) == pytest.approx(expected, rel=1e-5, abs=1e-9), step
    constant = make_optimizer("rmsprop", 0.5, "constant", total)
    assert _rate_at(constant, total) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="adamw"):
        make_optimizer("adam", 1e-3, "constant", 10, weight_decay=1e-4)


def test_make_strategy_rejects_unknown_devices():
    with pytest.raises(ValueError, match="available"):
        make_strategy(["/gpu:7"])


def test_best_checkpoint_keeps_a_better_earlier_value(tmp_path):
    model = kerazoo.create_model("segnet_basic", num_classes=2, filters=2, kernel_size=3, depth=1)
    path = tmp_path / "best.keras"
    first = BestCheckpoint(path, verbose=False)
    first.set_model(model)
    first.on_train_begin()
    first.on_epoch_end(0, {"val_mean_iou": 0.5})
    # A resumed run: a new callback instance must not replace 0.5 with a worse 0.4.
    second = BestCheckpoint(path, verbose=False)
    second.set_model(model)
    second.on_train_begin()
    mtime = path.stat().st_mtime_ns
    second.on_epoch_end(1, {"val_mean_iou": 0.4})
    assert path.stat().st_mtime_ns == mtime and second.best == 0.5
    second.on_epoch_end(2, {"val_mean_iou": 0.6})
    assert json.loads((tmp_path / "best.json").read_text())["epoch"] == 2
    with pytest.raises(KeyError, match="val_mean_iou"):
        second.on_epoch_end(3, {"loss": 1.0})


def test_mixed_precision_keeps_float32_outputs_and_restores_policy(tmp_path):
    result = train("segnet_basic", epochs=1, output_dir=tmp_path, mixed_precision="mixed_bfloat16", **TINY)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert result.model.output.dtype == "float32"
    assert any(layer.dtype_policy.name == "mixed_bfloat16" for layer in result.model.layers)


# The subprocess scripts below start their own TensorFlow, so they can configure devices first.
_RESUME_SCRIPT = """
import hashlib, json, sys, time, keras
from kerazoo.training.train import train

class Slow(keras.callbacks.Callback):  # makes each epoch last long enough to be killed inside it
    def on_train_batch_end(self, batch, logs=None):
        time.sleep(0.25)

def digest(model):
    return hashlib.sha256(b"".join(keras.ops.convert_to_numpy(w).tobytes() for w in model.weights)).hexdigest()

class Weights(keras.callbacks.Callback):  # runs after BackupAndRestore: sees the restored and the saved state
    def on_train_begin(self, logs=None):
        print("START", digest(self.model), flush=True)
    def on_epoch_end(self, epoch, logs=None):
        with open(sys.argv[2], "a") as handle:
            handle.write(json.dumps({"epoch": epoch, "weights": digest(self.model)}) + "\\n")

tiny = dict(filters=4, kernel_size=3, depth=2)
result = train("segnet_basic", model_options=tiny, dataset="shapes", image_size=(32, 32), num_examples=32,
               val_examples=16, batch_size=8, epochs=6, output_dir=sys.argv[1], tensorboard=False,
               callbacks=[Slow(), Weights()], verbose=2)
print("RESULT", json.dumps({"initial_epoch": result.initial_epoch, "epochs_run": len(result.history["loss"])}))
"""


def _script_env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}


def test_killed_run_resumes_at_the_epoch_it_stopped_in(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(_RESUME_SCRIPT)
    out = tmp_path / "out"
    weights_log = tmp_path / "weights.jsonl"
    process = subprocess.Popen([sys.executable, str(script), str(out), str(weights_log)], env=_script_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = out / "log.csv"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        # Killed inside an epoch: after two logged epochs whose weights the script also dumped (the dump runs
        # after the CSV row, so waiting for the row alone can kill between the two under load).
        logged = len(_csv_epochs(log)) if log.exists() else 0
        dumped = len(weights_log.read_text().splitlines()) if weights_log.exists() else 0
        if logged >= 2 and dumped >= logged:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed:\n" + process.stdout.read().decode()
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = _csv_epochs(log)
    assert 2 <= len(done) < 6 and (out / "backup").exists()

    saved = {entry["epoch"]: entry["weights"] for entry in map(json.loads, weights_log.read_text().splitlines())}
    rerun = subprocess.run([sys.executable, str(script), str(out), str(weights_log)], env=_script_env(),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"resuming at epoch {len(done) + 1}" in rerun.stdout
    # The resumed run starts from the weights saved at the end of the last finished epoch, not fresh ones.
    resumed_start = rerun.stdout.split("START ", 1)[1].split()[0]
    assert resumed_start == saved[len(done) - 1]
    result = json.loads(rerun.stdout.split("RESULT", 1)[1])
    assert result == {"initial_epoch": len(done), "epochs_run": 6 - len(done)}
    assert _csv_epochs(log) == [0, 1, 2, 3, 4, 5]  # no epoch repeated, none skipped
    assert not (out / "backup").exists()


_MIRRORED_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from kerazoo.training.train import train

# Plain SGD: unlike Adam, it is not invariant to the gradient's scale, so a cross-replica scaling error
# changes the loss curve. The same seed gives both runs the same weights and batches.
common = dict(model_options=dict(filters=4, kernel_size=3, depth=2), dataset="shapes", image_size=(32, 32),
              num_examples=16, val_examples=16, batch_size=8, epochs=3, optimizer="sgd", schedule="constant",
              augment=False, tensorboard=False, verbose=2)
two = train("segnet_basic", output_dir=sys.argv[1] + "/two", devices=["/cpu:0", "/cpu:1"], learning_rate=0.1,
            **common)
one = train("segnet_basic", output_dir=sys.argv[1] + "/one", learning_rate=0.1, **common)
# What a factor-2 gradient scaling error would do: the test must be able to tell it apart.
doubled = train("segnet_basic", output_dir=sys.argv[1] + "/doubled", learning_rate=0.2, **common)
print("RESULT", json.dumps({
    "replicas": len(json.load(open(sys.argv[1] + "/two/run.json"))["resolved"]["devices"]),
    "two": two.history["loss"], "one": one.history["loss"], "doubled": doubled.history["loss"],
    "best": two.best_path.exists()}))
"""


def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(_MIRRORED_SCRIPT)
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "out")], env=_script_env(),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 replicas" in run.stdout
    result = json.loads(run.stdout.split("RESULT", 1)[1])
    assert result["replicas"] == 2 and result["best"]
    # Measured: two replicas vs one device differ by <= 0.8% (per-replica batch norm sees 4 images, not 8);
    # a doubled step differs by 3-32%. 3% tells them apart.
    np.testing.assert_allclose(result["two"], result["one"], rtol=0.03)
    assert np.max(np.abs(np.subtract(result["doubled"], result["one"])) / np.array(result["one"])) > 0.1


def test_evaluate_matches_a_numpy_confusion_matrix():
    model = kerazoo.create_model("segnet_basic", num_classes=4, filters=4, kernel_size=3, depth=2)
    images, masks = kerazoo.data.generate_shapes(6, image_size=(32, 32), seed=3)
    masks = masks.astype(np.int32)
    masks[:, :2] = 9  # an ignored band
    dataset = [(images[i:i + 4].astype(np.float32), masks[i:i + 4]) for i in (0, 4)]
    report = evaluation.evaluate(model, dataset, num_classes=4, ignore_class=9,
                                 class_names=["bg", "circle", "square", "triangle"])
    predicted = evaluation.predict_labels(model, images)
    valid = masks != 9
    expected = np.zeros((4, 4), np.int64)
    np.add.at(expected, (masks[valid], predicted[valid]), 1)
    assert np.array_equal(np.array(report["confusion"]), expected)
    assert report["global_accuracy"] == pytest.approx(np.trace(expected) / expected.sum())
    assert set(report["per_class_iou"]) == {"bg", "circle", "square", "triangle"}


def test_colorize_and_overlay():
    colors = [(0, 0, 0), (255, 0, 0)]
    labels = np.array([[0, 1], [11, 1]])
    rgb = evaluation.colorize(labels, colors, ignore_color=(9, 9, 9))
    assert rgb.dtype == np.uint8 and rgb[0, 1].tolist() == [255, 0, 0] and rgb[1, 0].tolist() == [9, 9, 9]
    blended = evaluation.overlay(np.full((2, 2, 1), 100.0), labels, colors, alpha=0.5)
    assert blended.shape == (2, 2, 3) and blended[0, 1].tolist() == [178, 50, 50]
    with pytest.raises(ValueError, match="alpha"):
        evaluation.overlay(np.zeros((2, 2, 3)), labels, colors, alpha=2)


@pytest.mark.data
def test_camvid_trains_and_evaluates_with_void_ignored(tmp_path, shared_data_dir):
    data_dir = shared_data_dir("camvid")
    result = train("segnet_basic", model_options=dict(filters=4, kernel_size=3, depth=2), dataset="camvid",
                   data_dir=data_dir, image_size=(64, 96), batch_size=4, epochs=1, steps_per_epoch=2,
                   class_weights=None, output_dir=tmp_path, tensorboard=False, verbose=0)
    report = evaluation.evaluate_checkpoint(result.best_path, data_dir=data_dir, batch_size=8)
    assert report["dataset"] == "camvid" and report["split"] == "val" and report["image_size"] == [64, 96]
    # void (11) is left out: exactly the non-void pixels of the val masks are counted
    masks = np.concatenate([m.numpy() for _, m in kerazoo.data.load(
        "camvid", "val", data_dir=data_dir, image_size=(64, 96), batch_size=16, augment=False, shuffle=False)])
    assert masks.shape[0] == 101 and (masks == 11).any()
    assert sum(report["class_pixels"].values()) == int(np.count_nonzero(masks != 11))
    assert len(report["per_class_iou"]) == 11


_LAZY_SCRIPT = """
import sys, tempfile, keras
import kerazoo
heavy = ("kerazoo.data", "kerazoo.export", "tensorflow_datasets", "tf2onnx", "onnx", "ai_edge_litert")
loaded = lambda: sorted(n for n in sys.modules if n.split(".")[0] in heavy or n.startswith(heavy))
assert loaded() == [], loaded()
model = kerazoo.create_model("segnet_basic", num_classes=4, filters=4, kernel_size=3, depth=2)
kerazoo.layers.MaxUnpooling2D
assert loaded() == [], loaded()
assert callable(kerazoo.export)
from kerazoo.export import export  # the sub-module imported: kerazoo.export stays the function
assert kerazoo.export is export and callable(kerazoo.export)
print("LAZY OK")
"""

_LOAD_SCRIPT = """
import sys, keras, numpy as np
import kerazoo  # after keras: kerazoo's layers, losses and metrics are registered at once
model = keras.saving.load_model(sys.argv[1])
model.evaluate(np.zeros((1, 32, 32, 3)), np.zeros((1, 32, 32), "int32"), verbose=0)  # builds the metrics
print("LOADED", type(model.loss).__name__, [type(m).__name__ for m in model.metrics[-1].metrics])
"""


def test_import_kerazoo_is_lazy():
    run = subprocess.run([sys.executable, "-c", _LAZY_SCRIPT], env=_script_env(), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and "LAZY OK" in run.stdout, run.stdout + run.stderr


def test_a_trained_checkpoint_loads_with_its_kerazoo_loss_and_metrics(tmp_path):
    result = train("segnet_basic", epochs=1, output_dir=tmp_path, **TINY)
    run = subprocess.run([sys.executable, "-c", _LOAD_SCRIPT, str(result.best_path)], env=_script_env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "LOADED SegmentationLoss ['MeanIoU', 'PixelAccuracy']" in run.stdout
