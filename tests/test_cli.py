"""The `kerazoo` command line (list, train, evaluate, predict, export, fetch) and the demo."""

import argparse
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

import kerazoo
import kerazoo.data
from kerazoo import cli, demo
from kerazoo.training.config import TrainConfig

from readme_tables import models_by_encoder

REPO = Path(__file__).resolve().parents[1]
TF_NOISE = ("oneDNN", "absl::InitializeLog", "cpu_feature_guard", "rebuild TensorFlow")


def _kerazoo(*argv):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    return subprocess.run([sys.executable, "-m", "kerazoo.cli", *argv], capture_output=True, text=True, timeout=300,
                          env={**env, "PYTHONPATH": str(REPO)})


def test_commands_print_no_tensorflow_log_lines_unless_verbose():
    quiet = _kerazoo("list")
    assert quiet.returncode == 0 and "segnet_basic" in quiet.stdout
    assert not [line for line in quiet.stderr.splitlines() if any(noise in line for noise in TF_NOISE)], quiet.stderr
    verbose = _kerazoo("--verbose", "list")
    assert verbose.returncode == 0 and "segnet_basic" in verbose.stdout
    assert any(noise in verbose.stderr for noise in TF_NOISE)  # what the quiet run held back, on this TensorFlow


def test_train_flags_and_config_files_give_one_train_config(tmp_path):
    parse = cli.build_parser().parse_args
    assert cli.train_config_from_args(parse(["train"])) == TrainConfig()  # the defaults live in TrainConfig
    flags = cli.train_config_from_args(parse(
        ["train", "--model", "segnet_basic", "--option", "filters=8", "--dataset", "shapes", "--image-size", "32x48",
         "--num-examples", "24", "--epochs", "3", "--mixed-precision", "--class-weights", "1,2,3,4", "--no-augment",
         "--output-dir", str(tmp_path)]))
    assert flags == TrainConfig(model="segnet_basic", model_options={"filters": 8}, dataset="shapes",
                                image_size=(32, 48), num_examples=24, epochs=3, mixed_precision="mixed_float16",
                                class_weights=(1, 2, 3, 4), augment=False, output_dir=str(tmp_path))
    # A run.json's config, with the flags given on top of it (and only those).
    run_json = tmp_path / "run.json"
    run_json.write_text(json.dumps({"dataset": "shapes", "config": flags.to_dict()}))
    again = cli.train_config_from_args(parse(["train", "--config", str(run_json), "--epochs", "7", "--seed", "3"]))
    assert again == flags.replace(epochs=7, seed=3)


def test_parsers_for_sizes_and_model_options():
    assert cli.image_size("176x240") == (176, 240)
    assert cli.image_size("64") == (64, 64)
    with pytest.raises(argparse.ArgumentTypeError, match="176x240"):
        cli.image_size("big")
    assert cli.model_option("decoder_filters=64,32,16,16,8") == ("decoder_filters", (64, 32, 16, 16, 8))
    assert cli.model_option("filters=32") == ("filters", 32)
    assert cli.model_option("upsampling=bilinear") == ("upsampling", "bilinear")
    assert cli.model_option("batch_norm=False") == ("batch_norm", False)
    with pytest.raises(argparse.ArgumentTypeError, match="key=value"):
        cli.model_option("filters")


def test_list(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "segnet_basic" in out and "mobilenetv2" in out
    # Every built-in preset is listed with its task and its main figure from its own metadata.
    for preset in kerazoo.list_presets():
        line = next(line for line in out.splitlines() if line.split()[:1] == [preset.name])
        assert preset.task in line
        keys = ["mean_iou"] if preset.task == "segmentation" else [k for k in preset.metrics if "psnr" in k]
        assert keys and all(f"{key} {preset.metrics[key]:g}" in line for key in keys)


@pytest.mark.slow
def test_list_table(capsys, monkeypatch):
    from kerazoo.models import model_encoders

    monkeypatch.setenv("COLUMNS", "160")  # rich fits the table to the terminal; room for every cell
    readme = {(model, encoder or "-"): (millions, decimals) for (model, encoder), (millions, decimals, _)
              in models_by_encoder().items()}
    columns = ["mobilenetv2", "resnet50", "vgg16"]  # one per family the first encoders came in; all: hundreds of builds
    assert cli.main(["list", "--table", "--encoders", *columns]) == 0
    row = re.compile(r"(\w+)\s*│\s*([\w-]+)\s*│\s*([\d,]+)\s*│\s*(\d+)x(\d+)x(\d+)\s*│\s*(\d+)x(\d+)x(\d+)")
    found = {}
    for line in capsys.readouterr().out.splitlines():
        match = row.search(line)
        if match:
            name, encoder, params, *sizes = match.groups()
            found[(name, encoder)] = (int(params.replace(",", "")), tuple(map(int, sizes)))
    # One row per model and encoder it can be built on, no more.
    expected = {(name, encoder or "-") for name in kerazoo.list_models() for encoder in model_encoders(name) or [None]
                if encoder is None or encoder in columns}
    assert set(found) == expected
    for key, (params, (height, width, channels, out_height, out_width, classes)) in found.items():
        # 12 classes, with the parameter counts README publishes (rounded as written there).
        millions, decimals = readme[key]
        assert abs(params / 1e6 - millions) <= 0.5 * 10**-decimals + 1e-9, (key, params)
        assert classes == 12, key
        if key == ("unet_paper", "-"):  # the paper's valid convolutions: 572x572 in, 388x388 out, 1 channel
            assert (height, width, channels, out_height, out_width) == (572, 572, 1, 388, 388)
        else:  # any size in: labels at the input's own size, an odd one on purpose
            assert (out_height, out_width) == (height, width) == demo.DEMO_SIZE and channels == 3, key


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "segnett"], "segnet"),
    (["train", "--dataset", "cityscapes"], "camvid"),
    (["train", "--model", "segnet_basic", "--option", "widht=3", "--dataset", "shapes", "--image-size", "16x16",
      "--num-examples", "8"], "filters"),
    (["evaluate", "missing/best.keras", "--dataset", "shapes"], "No checkpoint"),
    (["list", "--table", "--encoders", "resnet5"], "resnet50"),  # before any build: the unknown name and valid ones
])
def test_bad_values_exit_with_a_clear_error(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv + (["--output-dir", str(tmp_path)] if argv[0] == "train" else []))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_flag_values_are_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--schedule", "linear"])
    assert "cosine" in capsys.readouterr().err


def test_train_evaluate_predict(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--model", "segnet_basic", "--option", "filters=4", "--option", "kernel_size=3",
                     "--option", "depth=2", "--dataset", "shapes", "--image-size", "32x32", "--num-examples", "16",
                     "--epochs", "2", "--batch-size", "8", "--schedule", "poly", "--optimizer", "sgd",
                     "--learning-rate", "0.05", "--class-weights", "median_frequency", "--no-tensorboard",
                     "--output-dir", str(run), "--verbose", "2"]) == 0
    out = capsys.readouterr().out
    assert "segnet_basic" in out and "best val_mean_iou" in out
    assert (run / "best.keras").exists() and (run / "log.csv").exists()

    report_path = tmp_path / "eval" / "report.json"
    assert cli.main(["evaluate", str(run / "best.keras"), "--json", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "mIoU" in out and "G (global accuracy)" in out and "triangle" in out
    report = json.loads(report_path.read_text())
    assert report["dataset"] == "shapes" and report["image_size"] == [32, 32]  # taken from run.json
    assert set(report) >= {"global_accuracy", "class_average_accuracy", "mean_iou", "per_class_iou", "confusion"}

    images, _ = kerazoo.data.generate_shapes(2, image_size=(40, 48), seed=5)
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"picture{i}.png")
        Image.fromarray(image).save(paths[-1])
    assert cli.main(["predict", str(run / "best.keras"), *map(str, paths), "--out-dir", str(tmp_path / "pred")]) == 0
    for i in range(2):
        for kind in ("mask", "overlay"):
            with Image.open(tmp_path / "pred" / f"picture{i}_{kind}.png") as picture:
                assert picture.size == (48, 40) and picture.mode == "RGB"  # back at the input's size
    mask = np.asarray(Image.open(tmp_path / "pred" / "picture0_mask.png"))
    palette = {tuple(c) for c in kerazoo.data.DATASETS["shapes"].class_colors}
    assert {tuple(p) for p in mask.reshape(-1, 3)} <= palette


    exported = tmp_path / "exported"
    assert cli.main(["export", str(run / "best.keras"), "--out-dir", str(exported), "--formats", "tflite",
                     "--quantize", "float32", "int8", "--num-calibration", "4", "--latency-runs", "0"]) == 0
    report = json.loads((exported / "export_report.json").read_text())
    variants = {file["variant"]: file for file in report["files"]}
    assert set(variants) == {"float32", "int8"} and variants["float32"]["passed"]
    assert variants["int8"]["argmax_agreement"] is not None  # calibrated on the run's data set (shapes)


def test_fetch_fills_the_cache_from_an_archive(tmp_path, capsys):
    model = kerazoo.create_model("segnet_basic", num_classes=2, filters=4, depth=2, kernel_size=3)
    preset = kerazoo.save_to_preset(model, tmp_path / "tiny", {"model": {"name": "segnet_basic", "num_classes": 2,
                                                                         "filters": 4, "depth": 2, "kernel_size": 3}})
    archive = tmp_path / "tiny.tar.gz"
    digest = kerazoo.presets.archive_preset(preset, archive)
    cache = tmp_path / "cache"
    assert cli.main(["fetch", archive.as_uri(), "--sha256", digest, "--cache-dir", str(cache)]) == 0
    directory = capsys.readouterr().out.strip().splitlines()[-1]
    assert directory.startswith(str(cache))
    loaded = kerazoo.from_preset(directory, offline=True)
    x = np.random.default_rng(0).uniform(0, 255, (1, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["fetch", archive.as_uri(), "--sha256", "0" * 64, "--cache-dir", str(tmp_path / "other"), "--force"])
    assert exit_info.value.code == 2 and "sha256" in capsys.readouterr().err


def test_predict_rejects_missing_images(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["predict", str(tmp_path / "model.keras"), str(tmp_path / "nothing.png")])
    assert "nothing.png" in capsys.readouterr().err


def test_demo_writes_model_report_and_overlay(tmp_path):
    printed = io.StringIO()
    report = demo.run_demo(tmp_path, **demo.SHORT_MODE, console=Console(file=printed, width=200))
    for name in ("model.keras", "report.md", "overlay.png", "evaluation.json", "run.json"):
        assert (tmp_path / name).exists(), name
    text = (tmp_path / "report.md").read_text()
    assert "mIoU" in text and "overlay.png" in text and "## Export" in text and "same seed" in text
    low, high = demo.SHORT_MODE_BAND
    for shown in (text, printed.getvalue()):  # the report and the console give the figure beside its band
        assert f"val mIoU {100 * report['mean_iou']:.1f} %, inside the band" in shown, shown
        assert f"{low:.0f} to {high:.0f} %" in shown
    export_report = json.loads((tmp_path / "export" / "export_report.json").read_text())
    files = {(f["format"], f["variant"]): f for f in export_report["files"]}
    assert set(files) == {("tflite", "float32"), ("tflite", "int8")}  # the demo's default: the phone path
    # Float32 files compute the same segmentation. (Their max |diff| can miss the 1e-4 contract: argmax
    # unpooling is discontinuous, and a pooling window whose top two values sit at the tie tolerance's
    # edge may select another pixel in another runtime; export_matrix/REPORT.md.)
    assert all(files[key]["argmax_agreement"] >= 0.999 for key in files if key[1] == "float32"), files
    assert demo.stated_band(demo.demo_config(**demo.SHORT_MODE)) == demo.SHORT_MODE_BAND
    assert low <= 100 * report["mean_iou"] <= high  # the band measured for this mode, as demo.py says
    side, header = 64 * demo.OVERLAY_SCALE, demo.LABEL_HEIGHT
    with Image.open(tmp_path / "overlay.png") as picture:
        # 4 examples x (image, truth, prediction, overlay), a header above and a legend below
        assert picture.size == (4 * side + 3 * 4, 4 * side + 3 * 4 + 2 * header)
        pixels = np.asarray(picture)
    grid = pixels[header:header + side]
    assert np.array_equal(grid[0:side:demo.OVERLAY_SCALE, 0:side:demo.OVERLAY_SCALE],
                          grid[1:side:demo.OVERLAY_SCALE, 1:side:demo.OVERLAY_SCALE])  # nearest neighbour
    assert_labelled(pixels, side)


def assert_labelled(pixels, side):
    """Each column of the demo picture has text above it, and the legend shows every class colour."""
    info = kerazoo.data.DATASETS["shapes"]
    header, legend = pixels[:demo.LABEL_HEIGHT], pixels[-demo.LABEL_HEIGHT:]
    for column in range(4):
        strip = header[:, column * (side + 4):column * (side + 4) + side]
        assert (strip.max(axis=-1) < 128).sum() > 20, f"column {column} has no label"
    for name, color in zip(info.class_names, info.class_colors):
        assert (legend == color).all(axis=-1).sum() > 20, f"legend lacks {name}'s colour {color}"


def test_label_picture_names_columns_and_checks_their_count():
    grid = np.full((10, 3 * 20 + 2 * 4, 3), 200, np.uint8)
    picture = demo.label_picture(grid, 20, ["a"], [(255, 0, 0)], labels=("x", "y", "z"))
    assert picture.shape == (10 + 2 * demo.LABEL_HEIGHT, grid.shape[1], 3)
    assert np.array_equal(picture[demo.LABEL_HEIGHT:-demo.LABEL_HEIGHT], grid)
    with pytest.raises(ValueError, match="3 columns"):
        demo.label_picture(grid, 20, ["a"], [(255, 0, 0)], labels=("x", "y"))


def test_band_sentence_places_the_figure_against_the_band():
    config = demo.demo_config()
    low, high = demo.stated_band(config)
    assert demo.stated_band(demo.demo_config(seed=7)) == (low, high)  # the band is over seeds
    assert "inside the band" in demo.band_sentence(config, (low + 0.5) / 100)
    assert "OUTSIDE the band" in demo.band_sentence(config, (high + 1) / 100)
    assert "no measured band" in demo.band_sentence(demo.demo_config(epochs=3), 0.5)


@pytest.mark.slow
def test_demo_recipe_reaches_its_stated_band(tmp_path):
    report = demo.run_demo(tmp_path, export_formats=())
    low, high = demo.FULL_RECIPE_BAND
    assert low <= 100 * report["mean_iou"] <= high
