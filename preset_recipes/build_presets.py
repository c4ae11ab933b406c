"""Turns trained checkpoints into the presets shipped in kerazoo/zoo/shipped/, with measured metrics.

For each recipe: evaluate the checkpoint on its validation split, write a float16 preset, evaluate
that too, and ship float16 only when it changes no metric by more than 0.05 points (else float32).
The metrics written into metadata.json are those of the shipped file, with the command that
reproduces them.

    python preset_recipes/build_presets.py --runs /work/runs --data-dir ../shared/data [--only NAME]

The training commands are in each recipe (and in the preset's metadata); see benchmarks/REAL_DATA.md.
"""

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

import kerazoo
from kerazoo.training import evaluation

ZOO = Path(kerazoo.__file__).resolve().parent / "zoo" / "shipped"
TOLERANCE = 0.0005  # 0.05 points of G, C, mIoU or any class IoU
RESTORATION_TOLERANCE_DB = 0.01  # float16 storage may move no PSNR by more than this

RECIPES = {
    "membrane_unet_mobilenetv2": {
        "run": "membrane_unet_mobilenetv2_long",
        "description": "U-Net (decoder 64-32-24-16-8) on a MobileNetV2 encoder trained from scratch on the ISBI 2012 "
                       "membrane slices 0-19 at their own 512x512, 100 epochs in mixed_bfloat16; grayscale "
                       "input, classes membrane / cell.",
        "train_command": "kerazoo train --model unet --encoder mobilenetv2 --option decoder_filters=64,32,24,16,8 "
                         "--option encoder_bn_momentum=0.9 --dataset membrane --data-dir ../shared/data "
                         "--image-size 512x512 --epochs 100 --batch-size 4 --optimizer adam --learning-rate 1e-3 "
                         "--schedule cosine --mixed-precision mixed_bfloat16 "
                         "--output-dir runs/membrane_unet_mobilenetv2_long",
        "license": "Weights: Apache-2.0, as kerazoo. Data: ISBI 2012 EM segmentation challenge (Cardona et al. 2010), "
                   "for research use.",
    },
    "membrane_unet_paper16": {
        "run": "membrane_unet_paper16",
        "description": "U-Net as Ronneberger et al. (two 3x3 convolutions a level, no batch norm, same padding) with "
                       "16 filters at the first level (the paper's has 64), trained from scratch on the ISBI 2012 "
                       "membrane slices 0-19 at their own 512x512, 400 epochs in mixed_bfloat16; grayscale input, "
                       "classes membrane / cell.",
        "train_command": "kerazoo train --model unet_paper --option filters=16 --option padding=same "
                         "--dataset membrane --data-dir ../shared/data --image-size 512x512 --epochs 400 "
                         "--batch-size 4 --optimizer adam --learning-rate 1e-3 --schedule cosine "
                         "--mixed-precision mixed_bfloat16 --output-dir runs/membrane_unet_paper16",
        "license": "Weights: Apache-2.0, as kerazoo. Data: ISBI 2012 EM segmentation challenge (Cardona et al. 2010), "
                   "for research use.",
    },
    "camvid_segnet_basic": {
        "run": "camvid_segnet_basic_long",
        "description": "SegNet-Basic with 32 filters (the paper's has 64), 7x7 kernels, trained from scratch on the "
                       "367 CamVid train images at 176x240 for 48 epochs in mixed_bfloat16 with median-frequency "
                       "class weights; 11 classes, void ignored.",
        "train_command": "kerazoo train --model segnet_basic --option filters=32 --dataset camvid "
                         "--data-dir ../shared/data --image-size 176x240 --epochs 48 --batch-size 4 --optimizer adam "
                         "--learning-rate 1e-3 --schedule cosine --class-weights median_frequency "
                         "--mixed-precision mixed_bfloat16 --output-dir runs/camvid_segnet_basic_long",
        "license": "Weights: Apache-2.0, as kerazoo. Data: CamVid (Brostow et al. 2008), for research use.",
    },
}


def scores(report):
    flat = {"global_accuracy": report["global_accuracy"], "class_average_accuracy": report["class_average_accuracy"],
            "mean_iou": report["mean_iou"]}
    flat.update({f"iou_{name}": value for name, value in report["per_class_iou"].items() if value is not None})
    return {key: round(float(value), 4) for key, value in flat.items()}


def ship_smallest(model, directory, metadata, float32, compared, tolerance, score, change_key):
    """Writes the preset with float16 kernels when that moves none of the `compared` scores of `float32`
    (the checkpoint's) by more than `tolerance`, else with float32 ones; metadata records the shipped
    file's scores, and the largest change under metadata["evaluation"][change_key]. `score(model)`
    measures a model. Returns (directory, shipped scores, largest change)."""
    with tempfile.TemporaryDirectory() as scratch:
        candidate = kerazoo.save_to_preset(model, Path(scratch) / directory.name, {**metadata, "metrics": float32},
                                           weights_dtype="float16")
        float16 = score(kerazoo.from_preset(str(candidate)))
    worst = max(abs(float16[key] - float32[key]) for key in compared)
    dtype = "float16" if worst <= tolerance else "float32"
    metrics = float16 if dtype == "float16" else float32
    metadata["evaluation"][change_key] = round(worst, 4)
    print(f"{directory.name}: shipping {dtype} weights")
    return kerazoo.save_to_preset(model, directory, {**metadata, "metrics": metrics}, weights_dtype=dtype,
                                  overwrite=True), metrics, worst


def build(name, recipe, runs, data_dir, zoo_dir=ZOO):
    run_dir = Path(runs) / recipe["run"]
    run = json.loads((run_dir / "run.json").read_text())
    model = evaluation.load_model(run_dir / "best.keras")
    evaluate = dict(dataset=run["dataset"], data_dir=data_dir, image_size=tuple(run["image_size"]))
    float32 = scores(evaluation.evaluate_checkpoint(model, **evaluate))

    # The model's arguments; class names, colours and input size have keys of their own in the metadata.
    arguments = {key: value for key, value in run["create_model"].items()
                 if value is not None and key not in ("class_names", "class_colors", "input_size")}
    metadata = {
        "model": arguments,
        "dataset": run["dataset"],
        "input_size": run["image_size"],
        "description": recipe["description"],
        "license": recipe["license"],
        "training": {"command": recipe["train_command"], **run["config"], "resolved": run["resolved"],
                     "best_epoch": run["result"]["best"]["epoch"] + 1,
                     "wall_seconds": round(run["result"]["wall_seconds"]),
                     "hardware": "2-core CPU shared with other jobs, tensorflow-cpu 2.21"},
        "evaluation": {"command": f"kerazoo evaluate {name} --data-dir ../shared/data --image-size "
                                  f"{'x'.join(map(str, run['image_size']))}", "split": "val",
                       "image_size": run["image_size"], "float32_checkpoint_metrics": float32},
    }
    directory, metrics, worst = ship_smallest(
        model, Path(zoo_dir) / name, metadata, float32, list(float32), TOLERANCE,
        lambda preset: scores(evaluation.evaluate_checkpoint(preset, **evaluate)), "float16_storage_max_metric_change")
    print(f"{name}: float16 storage moves the metrics by up to {100 * worst:.2f} points")
    shipped = kerazoo.from_preset(str(directory), offline=True)
    images = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, model.input.shape[-1])).astype("float32")
    agreement = (np.argmax(shipped(images), -1) == np.argmax(model(images), -1)).mean()
    print(f"{name}: {directory} ({(directory / 'model.weights.h5').stat().st_size / 1e6:.2f} MB), mIoU "
          f"{100 * metrics['mean_iou']:.1f}, argmax agreement with the checkpoint on noise {agreement:.4f}")


RESTORATION_LICENSES = {
    "set12_denoise_sigma25_unet": "Weights: Apache-2.0, as kerazoo. Data: train400 (BSD crops, as DnCNN's "
                                  "training codes distribute them), for research use.",
    "set5_sr_x4_unet": "Weights: Apache-2.0, as kerazoo. Data: T91 (Yang et al. 2010), for research use.",
    **{f"set5_sr_x{scale}_edsr": "Weights: Apache-2.0, as kerazoo. Data: T91 (Yang et al. 2010), for research use."
       for scale in (2, 3, 4)},
    **{f"set12_denoise_{noise}_drunet": "Weights: Apache-2.0, as kerazoo. Data: train400 (BSD crops, as DnCNN's "
                                         "training codes distribute them), for research use."
       for noise in ("sigma15", "sigma25", "sigma50", "blind")},
}
RESTORATION_SIGMAS = (15, 25, 50)  # Set12 is reported at these, as DnCNN's table


def restoration_scores(model, recipe, data_dir):
    """The preset's figures: Set12 at each sigma for a denoiser, Set5 at its scale for a super-resolver."""
    from reproduce import evaluation_figures

    if "noise_sigma" not in recipe["evaluate"]:
        figures = evaluation_figures(model, recipe, data_dir)
        return {"psnr": round(figures["psnr"], 3), "ssim": round(figures["ssim"], 4)}
    scores = {}
    for sigma in RESTORATION_SIGMAS:
        figures = evaluation_figures(model, {**recipe, "evaluate": {**recipe["evaluate"], "noise_sigma": sigma}},
                                     data_dir)
        scores.update({f"psnr_sigma{sigma}": round(figures["psnr"], 3), f"ssim_sigma{sigma}": round(figures["ssim"], 4)})
    return scores


def build_restoration(name, runs, data_dir, zoo_dir=ZOO):
    """A restoration preset from a `preset_recipes/reproduce.py` run: its best weights, measured float32 and as stored."""
    from reproduce import RECIPES as REPRODUCE

    recipe = REPRODUCE[name]
    run_dir = Path(runs) / name
    run = json.loads((run_dir / "run.json").read_text())
    model = evaluation.load_model(run_dir / "best.keras")
    float32 = restoration_scores(model, recipe, data_dir)
    evaluate = recipe["evaluate"]
    option = f"--noise-sigma {evaluate['noise_sigma']}" if "noise_sigma" in evaluate else f"--scale {evaluate['scale']}"
    metadata = {
        "dataset": recipe["train"]["dataset"],
        "description": recipe["description"],
        "license": RESTORATION_LICENSES[name],
        "task": recipe["model"]["task"],
        "channels": recipe["model"]["in_channels"],
        # What it was trained for: one sigma, or [low, high] for a blind denoiser; its figure is at evaluate's.
        **{key: recipe["train"][key] for key in ("noise_sigma", "scale") if key in evaluate},
        "training": {"command": f"python preset_recipes/reproduce.py {name} --data-dir ../shared/data", "recipe": recipe,
                     "steps": run["steps"], "best_steps": run["best"]["steps"],
                     "train_seconds": run["train_seconds"], "precision": run.get("precision", "float32"),
                     "psnr_against_time": run["history"],
                     "hardware": f"{run['machine']['cpus']}, 2 cores shared with other jobs, tensorflow-cpu 2.21"},
        "evaluation": {"command": f"kerazoo evaluate {name} --dataset {evaluate['dataset']} {option} "
                                  "--data-dir ../shared/data",
                       "dataset": evaluate["dataset"], "split": evaluate["split"],
                       **{key: evaluate[key] for key in ("noise_sigma", "scale") if key in evaluate},
                       "convention": "8-bit rounded outputs; grey, or Y of BT.601 YCbCr for colour; data range "
                                     "255; super-resolution crops `scale` border pixels; noise seeded per image",
                       "float32_checkpoint_metrics": float32},
    }
    directory, metrics, worst = ship_smallest(
        model, Path(zoo_dir) / name, metadata, float32, [key for key in float32 if key.startswith("psnr")],
        RESTORATION_TOLERANCE_DB, lambda preset: restoration_scores(preset, recipe, data_dir),
        "float16_storage_max_psnr_change_db")
    print(f"{name}: float16 storage moves PSNR by up to {worst:.3f} dB")
    print(f"{name}: {directory} ({(directory / 'model.weights.h5').stat().st_size / 1e6:.2f} MB), {metrics}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="runs", help="directory holding the training runs")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--only", choices=sorted(RECIPES) + sorted(RESTORATION_LICENSES), default=None)
    parser.add_argument("--zoo-dir", default=str(ZOO), help="where the presets go (default: the package's zoo)")
    args = parser.parse_args()
    for name, recipe in RECIPES.items():
        if args.only in (None, name):
            build(name, recipe, args.runs, args.data_dir, args.zoo_dir)
    for name in RESTORATION_LICENSES:
        if args.only in (None, name):
            build_restoration(name, args.runs, args.data_dir, args.zoo_dir)
    shutil.rmtree(ZOO / "__pycache__", ignore_errors=True)


if __name__ == "__main__":
    main()
