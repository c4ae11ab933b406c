"""The presets shipped inside the package: they load offline by name, are small, and still score on the real
validation images what their metadata says (zoo/build_presets.py measured it)."""

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
    report = evaluation.evaluate_checkpoint(name, data_dir=data_dir)
    for key in ("global_accuracy", "class_average_accuracy", "mean_iou"):
        assert report[key] == pytest.approx(metadata["metrics"][key], abs=0.002), (key, report[key])
    assert report["image_size"] == metadata["input_size"]


def test_new_num_classes_from_a_shipped_preset_keeps_the_encoder(caplog):
    with caplog.at_level("WARNING", logger="kerazoo.presets"):
        model = kerazoo.from_preset("membrane_unet_mobilenetv2", num_classes=3, offline=True)
    assert "kept the pretrained weights except 1 layer(s)" in caplog.text, caplog.text
    shipped = kerazoo.from_preset("membrane_unet_mobilenetv2", offline=True)
    assert model.output.shape[-1] == 3
    name = "mobilenetv2_encoder"
    for new, old in zip(model.get_layer(name).weights, shipped.get_layer(name).weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(new), keras.ops.convert_to_numpy(old))
