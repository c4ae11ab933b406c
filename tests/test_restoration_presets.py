"""The shipped restoration presets: listed with their task, and their recorded figures reproduce."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import kerazoo
from kerazoo.data import imresize_numpy
from kerazoo.metrics import psnr

ZOO = Path(kerazoo.__file__).parent / "zoo" / "shipped"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "preset_recipes"))


def test_list_presets_tells_a_super_resolver_from_a_segmenter():
    tasks = {preset.name: preset.task for preset in kerazoo.list_presets()}
    assert tasks["set5_sr_x4_unet"] == "super_resolution"
    assert tasks["set12_denoise_sigma25_unet"] == "denoise"
    assert tasks["camvid_segnet_basic"] == "segmentation"
    metadata = json.loads((ZOO / "set5_sr_x4_unet" / "metadata.json").read_text())
    assert (metadata["task"], metadata["scale"], metadata["channels"]) == ("super_resolution", 4, 3)
    metadata = json.loads((ZOO / "set12_denoise_sigma25_unet" / "metadata.json").read_text())
    assert (metadata["task"], metadata["noise_sigma"], metadata["channels"]) == ("denoise", 25, 1)


def _shipped_and_measured(name, dataset, shared_data_dir):
    """(data directory, the preset's recorded metrics, its figures measured now by preset_recipes/reproduce.py)."""
    from reproduce import RECIPES, evaluation_figures

    data_dir = shared_data_dir(dataset)
    model = kerazoo.from_preset(name, offline=True)
    recorded = json.loads((ZOO / name / "metadata.json").read_text())["metrics"]
    return data_dir, recorded, evaluation_figures(model, RECIPES[name], data_dir)


@pytest.mark.data
def test_super_resolution_preset_reproduces_its_set5_figure_and_beats_bicubic(shared_data_dir):
    data_dir, recorded, measured = _shipped_and_measured("set5_sr_x4_unet", "set5", shared_data_dir)
    assert measured["psnr"] == pytest.approx(recorded["psnr"], abs=0.01)
    # The baseline, computed independently of the model: MATLAB-style bicubic of the published LR files.
    bicubic = []
    for low, high in kerazoo.data.load("set5", "test", scale=4, batch_size=1, data_dir=data_dir):
        high = np.round(high.numpy()[0]).astype(np.uint8)
        bicubic.append(psnr(imresize_numpy(np.round(low.numpy()[0]).astype(np.uint8), 4), high, crop_border=4))
    assert np.mean(bicubic) == pytest.approx(28.42, abs=0.05)  # the published bicubic x4 figure on Set5
    assert measured["psnr"] > np.mean(bicubic) + 1.5


@pytest.mark.data
def test_denoising_preset_reproduces_its_set12_figure_and_beats_the_noisy_input(shared_data_dir):
    data_dir, recorded, measured = _shipped_and_measured("set12_denoise_sigma25_unet", "set12", shared_data_dir)
    assert measured["psnr"] == pytest.approx(recorded["psnr_sigma25"], abs=0.01)
    # The noisy input itself, scored independently: sigma 25 noise is about 20.2 dB on 8-bit images.
    noisy = [psnr(np.clip(np.round(noisy.numpy()[0]), 0, 255), clean.numpy()[0])
             for noisy, clean in kerazoo.data.load("set12", "test", noise_sigma=25, batch_size=1, data_dir=data_dir)]
    assert np.mean(noisy) == pytest.approx(20 * np.log10(255 / 25), abs=0.3)
    assert measured["psnr"] > np.mean(noisy) + 8


@pytest.mark.parametrize("name", ["camvid_segnet_basic_paper", "membrane_unet_paper"])
def test_paper_recipes_are_valid_train_configs_whose_models_build(name, tmp_path):
    from reproduce import SEGMENTATION_RECIPES, segmentation_config

    config = segmentation_config(name, str(tmp_path), tmp_path / "run", epochs=1)
    assert config.epochs == 1 and config.dataset == SEGMENTATION_RECIPES[name]["config"]["dataset"]
    info = kerazoo.data.DATASETS[config.dataset]
    model = kerazoo.create_model(config.model, num_classes=info.num_classes, in_channels=info.channels,
                                 **config.model_options)
    assert model.count_params() > 0
