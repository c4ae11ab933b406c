"""Restoration on the command line: training by task, evaluation next to the baselines, prediction pictures.

Fast cases run on tiny image folders laid out like train400/set12 and t91/set5 under a temp data root;
the `data` cases measure the real Set12 and Set5 against published figures.
"""

import json

import numpy as np
import pytest
from PIL import Image

import kerazoo
from kerazoo import cli
from kerazoo.training import evaluation, restoration_eval
from kerazoo.data import imresize_numpy
from kerazoo.training.config import TrainConfig
from kerazoo.training.train import train

from optional_extras import require_extra


def smooth_image(height, width, channels, seed):
    """Smooth random pictures (sums of low-frequency waves): what a denoiser and a bicubic can work on."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    planes = []
    for _ in range(channels):
        fy, fx, phase = rng.uniform(0.5, 3, 3)
        planes.append(128 + 90 * np.sin(2 * np.pi * (fy * y + fx * x) + phase))
    return np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)


def save(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)


@pytest.fixture
def data_root(tmp_path):
    """train400/ and set12/ (grey), t91/ (RGB) and set5/image_SRF_2/ (MATLAB-style LR/HR pairs)."""
    root = tmp_path / "data"
    for index in range(4):
        save(smooth_image(48, 48, 1, index), root / "train400" / f"test_{index:03d}.png")
        save(smooth_image(40, 40, 3, 10 + index), root / "t91" / f"t{index}.png")
    for index in range(2):
        save(smooth_image(32, 24 + 8 * index, 1, 20 + index), root / "set12" / f"{index + 1:02d}.png")
        high = smooth_image(32, 24 + 8 * index, 3, 30 + index)
        low = restoration_eval.to_uint8(imresize_numpy(high.astype(np.float64), 1 / 2))
        save(high, root / "set5" / "image_SRF_2" / f"img_{index:03d}_SRF_2_HR.png")
        save(low, root / "set5" / "image_SRF_2" / f"img_{index:03d}_SRF_2_LR.png")
    return root


def tiny(**arguments):
    return kerazoo.create_model("segnet_basic", filters=4, depth=2, **arguments)


def y_channel(rgb):
    """BT.601 luma on the 16..235 scale, as MATLAB's rgb2ycbcr (written out, not taken from kerazoo)."""
    rgb = rgb.astype(np.float64)
    return 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255


def reference_scores(output, clean, crop=0):
    skimage_metrics = require_extra("skimage.metrics", "dev")
    output, clean = np.asarray(output, np.float64), np.asarray(clean, np.float64)
    if clean.shape[-1] == 3:
        output, clean = y_channel(output), y_channel(clean)
    else:
        output, clean = output.reshape(clean.shape)[..., 0], clean[..., 0]
    if crop:
        output, clean = output[crop:-crop, crop:-crop], clean[crop:-crop, crop:-crop]
    return (skimage_metrics.peak_signal_noise_ratio(clean, output, data_range=255),
            skimage_metrics.structural_similarity(clean, output, data_range=255, gaussian_weights=True, sigma=1.5,
                                                  use_sample_covariance=False))


def test_train_config_takes_tasks_and_their_options():
    config = TrainConfig(dataset="train400", noise_sigma=(0, 55), patch_size=32)
    assert config.task_name == "denoise" and config.monitor == ("val_psnr", "max")
    assert TrainConfig(dataset="depth_scenes").monitor == ("val_rmse", "min")
    assert TrainConfig().monitor == ("val_mean_iou", "max")  # segmentation as before
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    sr = TrainConfig(dataset="t91", task="super_resolution", model="unet_paper", scale=2)
    assert sr.create_model_arguments(0, 3)["scale"] == 2 and sr.create_model_arguments(0, 3)["task"] == "super_resolution"
    assert sr.create_model_arguments(0, 3)["num_classes"] is None  # the task's default, not the catalogue's 0
    with pytest.raises(ValueError, match="does not match data set 'camvid'.*train400"):
        TrainConfig(dataset="camvid", task="denoise")
    with pytest.raises(ValueError, match="noise_sigma.*super_resolution"):
        TrainConfig(dataset="t91", noise_sigma=25)
    with pytest.raises(ValueError, match="scale must be one of"):
        TrainConfig(dataset="t91", scale=5)
    with pytest.raises(ValueError, match="Unknown task 'deblur'"):
        TrainConfig(dataset="t91", task="deblur")
    with pytest.raises(ValueError, match="class_weights apply to segmentation"):
        TrainConfig(dataset="train400", class_weights="median_frequency")


def test_train_flags_give_the_task_options():
    parse = cli.build_parser().parse_args
    config = cli.train_config_from_args(parse(
        ["train", "--task", "denoise", "--dataset", "train400", "--noise-sigma", "0,55", "--patch-size", "32",
         "--patches-per-image", "8", "--channels", "1", "--option", "residual=False"]))
    assert (config.task, config.noise_sigma, config.patch_size, config.patches_per_image, config.channels) == (
        "denoise", (0.0, 55.0), 32, 8, 1)
    assert config.model_options == {"residual": False}
    with pytest.raises(SystemExit):
        parse(["train", "--noise-sigma", "a,b,c"])


def test_train_denoiser_monitors_psnr_on_the_evaluation_set(data_root):
    result = train(TrainConfig(model="segnet_basic", model_options={"filters": 4, "depth": 2}, dataset="train400",
                               data_dir=str(data_root), noise_sigma=25, patch_size=16, patches_per_image=2,
                               epochs=1, batch_size=4, output_dir=str(data_root.parent / "run")),
                   tensorboard=False, verbose=0)
    run = json.loads((result.output_dir / "run.json").read_text())
    assert run["task"] == "denoise" and run["monitor"] == ["val_psnr", "max"] and run["eval_dataset"] == "set12"
    assert run["task_options"]["noise_sigma"] == 25 and run["create_model"]["task"] == "denoise"
    # val_psnr is the mean PSNR of the checkpoint's (unrounded) outputs over set12 at sigma 25.
    model = evaluation.load_model(result.best_path)
    pairs = kerazoo.data.load("set12", "test", data_dir=data_root, batch_size=None, noise_sigma=25)
    expected = np.mean([reference_scores(model(np.asarray(noisy)[None])[0], np.asarray(clean))[0]
                        for noisy, clean in pairs])
    assert result.best["val_psnr"] == pytest.approx(expected, abs=0.01)


def test_evaluate_scores_the_model_and_baselines_like_scikit_image(data_root):
    require_extra("bm3d", "baselines")
    model = tiny(task="denoise", in_channels=1)
    report = restoration_eval.evaluate_restoration(model, dataset="set12", noise_sigma=30, data_dir=data_root)
    assert report["methods"] == ["model", "noisy", "bm3d"] and [r["name"] for r in report["images"]] == ["01", "02"]
    pairs = list(kerazoo.data.load("set12", "test", data_dir=data_root, batch_size=None, noise_sigma=30))
    for row, (noisy, clean) in zip(report["images"], pairs):
        noisy, clean = np.asarray(noisy), np.asarray(clean)
        rounded = np.clip(np.rint(noisy), 0, 255)
        assert row["noisy"]["psnr"] == pytest.approx(reference_scores(rounded, clean)[0], abs=1e-4)
        assert row["noisy"]["ssim"] == pytest.approx(reference_scores(rounded, clean)[1], abs=1e-4)
        assert row["model"]["psnr"] == pytest.approx(reference_scores(model.restore(noisy), clean)[0], abs=1e-4)
        assert row["bm3d"]["psnr"] > row["noisy"]["psnr"] + 3  # BM3D denoises a smooth picture
    assert report["mean"]["noisy"]["psnr"] == pytest.approx(np.mean([r["noisy"]["psnr"] for r in report["images"]]))
    with pytest.raises(ValueError, match="'bicubic'.*valid: noisy, bm3d"):
        restoration_eval.evaluate_restoration(model, dataset="set12", baselines=["bicubic"], data_dir=data_root)
    with pytest.raises(ValueError, match="'t91' is a 'super_resolution' data set"):
        restoration_eval.evaluate_restoration(model, dataset="t91", data_dir=data_root)


def test_evaluate_super_resolution_crops_the_border_and_scores_y(data_root):
    model = tiny(task="super_resolution", scale=2)
    report = restoration_eval.evaluate_restoration(model, dataset="t91", data_dir=data_root)  # -> its eval set
    assert report["dataset"] == "set5" and report["methods"] == ["model", "bicubic"] and report["scale"] == 2
    low, high = kerazoo.data.read_sr_pairs(data_root / "set5", 2)
    first_low = np.asarray(Image.open(data_root / "set5/image_SRF_2/img_000_SRF_2_LR.png"))
    first_high = np.asarray(Image.open(data_root / "set5/image_SRF_2/img_000_SRF_2_HR.png"))
    bicubic = np.clip(np.rint(imresize_numpy(first_low.astype(np.float64), 2)), 0, 255)
    psnr, ssim = reference_scores(bicubic, first_high, crop=2)
    assert report["images"][0]["bicubic"]["psnr"] == pytest.approx(psnr, abs=1e-4)
    assert report["images"][0]["bicubic"]["ssim"] == pytest.approx(ssim, abs=1e-4)
    with pytest.raises(ValueError, match="super-resolves by 2; got scale=4"):
        restoration_eval.evaluate_restoration(model, dataset="set5", scale=4, data_dir=data_root)


def test_cli_evaluate_and_predict_a_restoration_checkpoint(data_root, tmp_path, capsys):
    checkpoint = tmp_path / "sr.keras"
    tiny(task="super_resolution", scale=2).save(checkpoint)
    assert restoration_eval.checkpoint_task(checkpoint) == "super_resolution"
    assert cli.main(["evaluate", str(checkpoint), "--dataset", "set5", "--data-dir", str(data_root),
                     "--json", str(tmp_path / "report.json")]) == 0
    assert "bicubic PSNR" in capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["images"]) == 2 and set(report["mean"]) == {"model", "bicubic"}
    image = data_root / "t91" / "t0.png"  # 40x40 RGB
    assert cli.main(["predict", str(checkpoint), str(image), "--output-dir", str(tmp_path / "out")]) == 0
    restored = np.asarray(Image.open(tmp_path / "out" / "t0_restored.png"))
    picture = np.asarray(Image.open(tmp_path / "out" / "t0_before_after.png"))
    assert restored.shape == (80, 80, 3) and picture.shape == (80, 80 + 4 + 80, 3)
    source = np.asarray(Image.open(image))
    np.testing.assert_array_equal(picture[::2, :80:2], source)  # the input, enlarged nearest
    np.testing.assert_array_equal(picture[:, 84:], restored)


def test_train_depth_monitors_rmse_and_a_recipe_reads_back_its_task(tmp_path):
    result = train(TrainConfig(model="segnet_basic", model_options={"filters": 4, "depth": 2}, dataset="depth_scenes",
                               image_size=(32, 32), num_examples=8, val_examples=4, epochs=1, batch_size=4,
                               output_dir=str(tmp_path / "depth")), tensorboard=False, verbose=0)
    run = json.loads((result.output_dir / "run.json").read_text())
    assert run["task"] == "depth" and run["monitor"] == ["val_rmse", "min"]
    assert {"val_rmse", "val_abs_rel", "val_delta1"} <= set(result.best)
    assert result.model.task == "depth" and result.model.num_classes == 1
    # A restoration preset's metadata gives back a config with its task and scale as fields.
    metadata = {"dataset": "t91", "input_size": None, "training": {"epochs": 3, "patch_size": 16},
                "model": {"name": "unet_paper", "task": "super_resolution", "scale": 4, "padding": "same",
                          "in_channels": 3, "num_classes": 3}}
    config = TrainConfig.from_metadata(metadata)
    assert (config.task, config.scale, config.patch_size, config.model_options) == (
        "super_resolution", 4, 16, {"padding": "same"})


def test_cli_export_holds_a_denoiser_to_psnr_on_the_evaluation_set(data_root, tmp_path):
    checkpoint = tmp_path / "dn.keras"
    tiny(task="denoise", in_channels=1).save(checkpoint)
    assert cli.main(["export", str(checkpoint), "--dataset", "train400", "--data-dir", str(data_root), "--formats",
                     "tflite", "--quantize", "float32", "int8", "--num-calibration", "4", "--latency-runs", "0",
                     "--out-dir", str(tmp_path / "exported")]) == 0
    report = json.loads((tmp_path / "exported" / "export_report.json").read_text())
    files = {f["variant"]: f for f in report["files"]}
    assert report["sample_shape"] == [2, 32, 24, 1]  # set12's two images, cropped to their common size
    assert files["float32"]["passed"] and abs(files["float32"]["psnr_drop"]) <= 0.05
    assert files["int8"]["psnr_drop"] is not None and files["int8"]["passed"] is None


def test_before_after_rejects_nothing_and_keeps_grey_as_grey():
    before = np.arange(12, dtype=np.uint8).reshape(3, 4)
    picture = restoration_eval.before_after_image(before, before, gap=2)
    assert picture.shape == (3, 10, 3) and (picture[:, 4:6] == 255).all()
    np.testing.assert_array_equal(picture[:, :4, 1], before)


@pytest.mark.data
def test_set12_bm3d_and_set5_bicubic_match_published_figures(shared_data_dir):
    require_extra("bm3d", "baselines")
    root = shared_data_dir("set12", "set5")
    denoiser = tiny(task="denoise", in_channels=1)
    report = restoration_eval.evaluate_restoration(denoiser, dataset="set12", noise_sigma=25,
                                                   data_dir=root, num_images=1)
    # Zhang et al. (DnCNN), Table 3: BM3D on C.man (Set12 01) at sigma 25 gives 29.45 dB (its own noise draw).
    assert report["images"][0]["name"] == "01" and report["images"][0]["bm3d"]["psnr"] == pytest.approx(29.45, abs=0.3)
    sr = tiny(task="super_resolution", scale=4)
    report = restoration_eval.evaluate_restoration(sr, dataset="set5", scale=4, data_dir=root)
    # Bicubic on Set5 x4, PSNR on Y with 4 pixels cropped: 28.42 dB (SRCNN, Dong et al., Table 2).
    assert report["mean"]["bicubic"]["psnr"] == pytest.approx(28.42, abs=0.05)


@pytest.mark.parametrize("write", ["segmentation", "restoration"])
def test_predicting_missing_images_names_them_before_loading_a_model(tmp_path, write):
    from kerazoo.training import evaluation, restoration_eval

    present = tmp_path / "present.png"
    present.write_bytes(b"")
    predict = evaluation.predict_files if write == "segmentation" else restoration_eval.restore_files
    with pytest.raises(FileNotFoundError, match=r"No such image file\(s\): .*missing\.png$"):
        predict("no-such-checkpoint.keras", [present, tmp_path / "missing.png"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
