"""The presets shipped inside the package: they load offline by name, are small, and still score on the real
validation images what their metadata says (zoo/build_presets.py measured it)."""

import json

import keras
import numpy as np
import pytest

import kerazoo
from kerazoo import evaluation
from kerazoo.presets import preset_metadata

SHIPPED = ["camvid_segnet_basic", "membrane_unet_mobilenetv2"]


def test_shipped_presets_are_listed_with_metrics():
    listed = {preset.name: preset for preset in kerazoo.list_presets()}
    for name in SHIPPED:
        assert name in listed, sorted(listed)
        preset = listed[name]
        assert {"global_accuracy", "class_average_accuracy", "mean_iou"} <= set(preset.metrics)
        assert preset.evaluation_command.startswith(f"kerazoo evaluate {name}")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_preset_loads_offline_and_is_small(name, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAZOO_HOME", str(tmp_path))  # an empty cache: the package itself must suffice
    metadata = preset_metadata(name, offline=True)
    assert metadata["weights_bytes"] < 8e6, metadata["weights_bytes"]
    model = kerazoo.from_preset(name, offline=True)
    assert model.class_names == tuple(metadata["class_names"]) and model.input_size == tuple(metadata["input_size"])
    channels = metadata["model"].get("in_channels", 3)
    height, width = metadata["input_size"]
    outputs = model(np.full((1, height, width, channels), 128.0, "float32"))
    assert outputs.shape == (1, height, width, len(metadata["class_names"]))
    assert not list(tmp_path.iterdir())  # nothing was downloaded or cached


@pytest.mark.data
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_preset_scores_its_metadata_on_real_validation_data(name, shared_data_dir):
    metadata = preset_metadata(name, offline=True)
    data_dir = shared_data_dir(metadata["dataset"])
    # The metrics were measured on images and masks resized to the training size (the command says so).
    assert f"--image-size {'x'.join(map(str, metadata['input_size']))}" in metadata["evaluation"]["command"]
    report = evaluation.evaluate_checkpoint(name, data_dir=data_dir, image_size=tuple(metadata["input_size"]))
    for key in ("global_accuracy", "class_average_accuracy", "mean_iou"):
        assert report[key] == pytest.approx(metadata["metrics"][key], abs=0.002), (key, report[key])
    assert report["image_size"] == report["model_input_size"] == metadata["input_size"]


def test_new_num_classes_from_a_shipped_preset_keeps_the_encoder(caplog):
    with caplog.at_level("WARNING", logger="kerazoo.presets"):
        model = kerazoo.from_preset("membrane_unet_mobilenetv2", num_classes=3, offline=True)
    assert "kept the pretrained weights except 1 layer(s)" in caplog.text, caplog.text
    shipped = kerazoo.from_preset("membrane_unet_mobilenetv2", offline=True)
    assert model.output.shape[-1] == 3
    name = "mobilenetv2_encoder"
    for new, old in zip(model.get_layer(name).weights, shipped.get_layer(name).weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(new), keras.ops.convert_to_numpy(old))


def test_predict_and_evaluate_use_the_models_own_attributes_without_run_json(tmp_path, capsys):
    from PIL import Image

    from kerazoo.cli import main

    colors = [(10, 20, 30), (200, 0, 0), (0, 200, 0), (0, 0, 200)]
    model = kerazoo.create_model("segnet_basic", num_classes=4, filters=4, depth=2, input_size=(32, 32),
                                 class_names=["none", "circle", "square", "triangle"], class_colors=colors)
    model.save(tmp_path / "tiny.keras")
    assert not (tmp_path / "run.json").exists()
    rng = np.random.default_rng(0)
    paths = []
    for index, size in enumerate(((45, 67), (20, 30))):
        paths.append(tmp_path / f"image{index}.png")
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(paths[-1])
    assert main(["predict", str(tmp_path / "tiny.keras"), *map(str, paths), "--out-dir", str(tmp_path / "out")]) == 0
    for path, size in zip(paths, ((45, 67), (20, 30))):
        mask = np.asarray(Image.open(tmp_path / "out" / f"{path.stem}_mask.png"))
        assert mask.shape == (*size, 3)
        expected = np.array(colors, np.uint8)[model.segment(np.asarray(Image.open(path)))]
        np.testing.assert_array_equal(mask, expected)  # the model's own colours, at the image's size
    capsys.readouterr()
    report_path = tmp_path / "report.json"
    assert main(["evaluate", str(tmp_path / "tiny.keras"), "--dataset", "shapes", "--image-size", "48x48",
                 "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["model_input_size"] == [32, 32] and report["image_size"] == [48, 48]
    assert list(report["per_class_iou"]) == ["none", "circle", "square", "triangle"]  # the model's class names
    assert "none" in capsys.readouterr().out
