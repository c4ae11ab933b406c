"""The shipped restoration presets: listed with their task, and their recorded figures reproduce."""

import json
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import kerazoo
from kerazoo.data import imresize_numpy
from kerazoo.metrics import psnr
from kerazoo.training.train import model_for_dataset

ZOO = Path(kerazoo.__file__).parent / "zoo" / "shipped"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "preset_recipes"))


def test_list_presets_tells_a_super_resolver_from_a_segmenter():
    tasks = {preset.name: preset.task for preset in kerazoo.list_presets()}
    assert {tasks[name] for name in SR_PRESETS} == {"super_resolution"}
    assert {tasks[name] for name in DENOISE_PRESETS} == {"denoise"}
    assert tasks["camvid_segnet_basic"] == "segmentation"
    metadata = json.loads((ZOO / "set5_sr_x4_unet" / "metadata.json").read_text())
    assert (metadata["task"], metadata["scale"], metadata["channels"]) == ("super_resolution", 4, 3)
    metadata = json.loads((ZOO / "set12_denoise_sigma25_unet" / "metadata.json").read_text())
    assert (metadata["task"], metadata["noise_sigma"], metadata["channels"]) == ("denoise", 25, 1)


def test_readme_gives_each_restoration_presets_recorded_figures():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = {cells[0].strip("` "): cells[3] for cells in
            (line.strip().strip("|").split("|") for line in readme.splitlines() if line.startswith("| `set"))}
    restoration = [preset for preset in kerazoo.list_presets() if preset.task != "segmentation"]
    assert sorted(rows) == sorted(preset.name for preset in restoration)
    for preset in restoration:
        metadata = json.loads((ZOO / preset.name / "metadata.json").read_text())
        metrics, sigma = metadata["metrics"], metadata["evaluation"].get("noise_sigma", metadata.get("noise_sigma"))
        psnr_key, ssim_key = (f"psnr_sigma{sigma}", f"ssim_sigma{sigma}") if sigma else ("psnr", "ssim")
        assert rows[preset.name].strip() == f"**{metrics[psnr_key]:.2f}** / {metrics[ssim_key]:.3f}", preset.name


def _shipped_and_measured(name, dataset, shared_data_dir):
    """(data directory, the preset's recorded metrics, its figures measured now by preset_recipes/reproduce.py)."""
    from reproduce import RECIPES, evaluation_figures

    data_dir = shared_data_dir(dataset)
    model = kerazoo.from_preset(name, offline=True)
    recorded = json.loads((ZOO / name / "metadata.json").read_text())["metrics"]
    return data_dir, recorded, evaluation_figures(model, RECIPES[name], data_dir)


# Published Set5 figures (Y, `scale`-pixel border): bicubic, SRCNN (Dong et al., TPAMI 2016) and FSRCNN (Dong, Loy,
# Tang, ECCV 2016).
PUBLISHED_BICUBIC = {2: 33.66, 3: 30.39, 4: 28.42}
SRCNN = {2: 36.66, 3: 32.75, 4: 30.48}
FSRCNN = {2: 37.05, 3: 33.18, 4: 30.72}
SR_PRESETS = {"set5_sr_x4_unet": 4, "set5_sr_x2_edsr": 2, "set5_sr_x3_edsr": 3, "set5_sr_x4_edsr": 4}


@pytest.mark.data
@pytest.mark.parametrize("name", sorted(SR_PRESETS))
def test_super_resolution_preset_reproduces_its_set5_figures_and_beats_bicubic(name, shared_data_dir):
    data_dir, recorded, measured = _shipped_and_measured(name, "set5", shared_data_dir)
    scale = SR_PRESETS[name]
    assert measured["psnr"] == pytest.approx(recorded["psnr"], abs=0.01)
    assert measured["ssim"] == pytest.approx(recorded["ssim"], abs=0.001)
    # The baseline, computed independently of the model: MATLAB-style bicubic of the published LR files.
    bicubic = []
    for low, high in kerazoo.data.load("set5", "test", scale=scale, batch_size=1, data_dir=data_dir):
        high = np.round(high.numpy()[0]).astype(np.uint8)
        bicubic.append(psnr(imresize_numpy(np.round(low.numpy()[0]).astype(np.uint8), scale), high,
                            crop_border=scale))
    assert np.mean(bicubic) == pytest.approx(PUBLISHED_BICUBIC[scale], abs=0.05)
    assert measured["psnr"] > np.mean(bicubic) + 1.5
    if name.endswith("_edsr"):
        assert measured["psnr"] > SRCNN[scale]


@pytest.mark.data
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_presets_with_self_ensemble_beat_fsrcnn(scale, shared_data_dir):
    """EDSR+'s geometric self-ensemble (Lim et al.): the 8 flips and rotations averaged, `restore(tta="d4")`."""
    from reproduce import RECIPES, evaluation_figures

    name = f"set5_sr_x{scale}_edsr"
    model = kerazoo.from_preset(name, offline=True)
    ensemble = evaluation_figures(model, RECIPES[name], shared_data_dir("set5"), tta="d4")
    single = json.loads((ZOO / name / "metadata.json").read_text())["metrics"]["psnr"]
    assert ensemble["psnr"] > max(FSRCNN[scale], single)


# Published Set12 figures (grey, PSNR): BM3D (Dabov et al. 2007), as DnCNN's table gives them.
BM3D = {15: 32.37, 25: 29.97, 50: 26.72}
DENOISE_PRESETS = {"set12_denoise_sigma25_unet": 25, "set12_denoise_blind_drunet": 25,
                   **{f"set12_denoise_sigma{sigma}_drunet": sigma for sigma in (15, 25, 50)}}


@pytest.mark.data
@pytest.mark.parametrize("name", sorted(DENOISE_PRESETS))
def test_denoising_preset_reproduces_its_set12_figures_and_beats_the_noisy_input(name, shared_data_dir):
    sigma = DENOISE_PRESETS[name]
    data_dir, recorded, measured = _shipped_and_measured(name, "set12", shared_data_dir)
    assert measured["psnr"] == pytest.approx(recorded[f"psnr_sigma{sigma}"], abs=0.01)
    assert measured["ssim"] == pytest.approx(recorded[f"ssim_sigma{sigma}"], abs=0.001)
    # The noisy input itself, scored independently: 20 log10(255 / sigma) dB, a little more where 8-bit clipping
    # cuts the noise (0.6 dB at sigma 50).
    noisy = [psnr(np.clip(np.round(noisy.numpy()[0]), 0, 255), clean.numpy()[0]) for noisy, clean in
             kerazoo.data.load("set12", "test", noise_sigma=sigma, batch_size=1, data_dir=data_dir)]
    assert 0 < np.mean(noisy) - 20 * np.log10(255 / sigma) < 0.7
    assert measured["psnr"] > np.mean(noisy) + 6
    if name.endswith("_drunet") and "blind" not in name:
        assert measured["psnr"] > BM3D[sigma]


@pytest.mark.data
@pytest.mark.parametrize("sigma", [15, 50])
def test_the_blind_denoiser_beats_the_sigma25_one_away_from_25(sigma, shared_data_dir):
    from reproduce import RECIPES, evaluation_figures

    recipe = RECIPES["set12_denoise_blind_drunet"]
    assert recipe["train"]["noise_sigma"] == (0, 55)
    blind = evaluation_figures(kerazoo.from_preset("set12_denoise_blind_drunet", offline=True),
                               {**recipe, "evaluate": {**recipe["evaluate"], "noise_sigma": sigma}},
                               shared_data_dir("set12"))
    recorded = json.loads((ZOO / "set12_denoise_blind_drunet" / "metadata.json").read_text())["metrics"]
    assert blind["psnr"] == pytest.approx(recorded[f"psnr_sigma{sigma}"], abs=0.01)
    fixed = json.loads((ZOO / "set12_denoise_sigma25_drunet" / "metadata.json").read_text())["metrics"]
    assert blind["psnr"] > fixed[f"psnr_sigma{sigma}"]


# The papers' models, written here from the papers (not read from the recipes): each convolution before the
# classifier as (kernel, filters), in the order the model applies them, and whether batch norm follows each.
# SegNet-Basic (SegNet tutorial): 4 encoder and 4 decoder 7x7 convolutions of 64 filters, each with batch norm.
# U-Net (Ronneberger et al.): two 3x3 convolutions per level, 64 doubling to 1024 and back, no batch norm.
UNET_WIDTHS = (64, 64, 128, 128, 256, 256, 512, 512, 1024, 1024, 512, 512, 256, 256, 128, 128, 64, 64)
PAPER_MODELS = {
    "camvid_segnet_basic_paper": dict(convolutions=[((7, 7), 64)] * 8, batch_norm=True),
    "membrane_unet_paper": dict(convolutions=[((3, 3), width) for width in UNET_WIDTHS], batch_norm=False),
    # The shipped CPU preset: the same network at a quarter of the widths.
    "membrane_unet_paper16": dict(convolutions=[((3, 3), width // 4) for width in UNET_WIDTHS], batch_norm=False),
}


@pytest.mark.parametrize("name", list(PAPER_MODELS))
def test_paper_recipes_are_valid_train_configs_whose_models_build(name, tmp_path):
    from reproduce import SEGMENTATION_RECIPES, segmentation_config

    recipe = SEGMENTATION_RECIPES[name]["config"]
    config = segmentation_config(name, str(tmp_path), tmp_path / "run", epochs=1)
    assert config.epochs == 1 and config.dataset == recipe["dataset"] and config.model == recipe["model"]
    assert config.image_size == tuple(recipe["image_size"]) and config.model_options == recipe["model_options"]
    info = kerazoo.data.DATASETS[config.dataset]
    # Built as `kerazoo train` builds it: the data set's classes and channels, the recipe's size.
    model, _ = model_for_dataset(config, info, config.image_size)
    assert (model.num_classes, model.in_channels, model.input_size) == (info.num_classes, info.channels,
                                                                         config.image_size)
    height, width = config.image_size
    assert tuple(model.compute_output_shape((1, height, width, info.channels))) == (1, height, width,
                                                                                    info.num_classes)
    convolutions = [layer for layer in model.layers if type(layer) is keras.layers.Conv2D]
    *body, classifier = convolutions
    expected = PAPER_MODELS[name]
    assert [(layer.kernel_size, layer.filters) for layer in body] == expected["convolutions"]
    assert all(layer.padding == "same" for layer in body)
    assert (classifier.kernel_size, classifier.filters) == ((1, 1), info.num_classes)
    batch_norms = [layer for layer in model.layers if "BatchNormalization" in type(layer).__name__]
    assert len(batch_norms) == (len(body) if expected["batch_norm"] else 0)
