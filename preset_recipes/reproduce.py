"""Runs a preset's recipe end to end: build, train, measure against time, keep the best weights.

    python preset_recipes/reproduce.py set12_denoise_sigma25_unet --data-dir ../shared/data --output-dir runs/NAME
    python preset_recipes/reproduce.py --list

Each recipe fixes the model, the data, the schedule (in steps, so a run is the same on any machine)
and the figure it is judged by. Every `eval_every` steps the run measures that figure on the
evaluation set as the field does (whole images, 8-bit rounded outputs, fixed noise seed) and appends
it to `progress.csv` with the elapsed time: PSNR against training time, to plan a longer run. The
best weights go to `best.keras`; `run.json` holds the recipe, the measurements and the machine.
A GPU finishes every recipe here in minutes; a 2-core CPU takes the wall time stated in the preset.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

# The papers' segmentation recipes, sized so that a GPU finishes each in about 10 minutes, and the CPU recipes of
# shipped presets; `kerazoo.train` runs them (TrainConfig fields), so a run's run.json and best.keras are those of
# `kerazoo train`.
SEGMENTATION_RECIPES = {
    "camvid_segnet_basic_paper": {
        "description": "SegNet-Basic as the SegNet tutorial trains it: 64 filters, 7x7 kernels, 4 levels, batch "
                       "norm, CamVid at its own 360x480, median-frequency class weights, void ignored.",
        "config": {"model": "segnet_basic", "model_options": {"filters": 64, "kernel_size": 7},
                   "dataset": "camvid", "image_size": (360, 480), "epochs": 150, "batch_size": 8,
                   "optimizer": "adam", "learning_rate": 1e-3, "schedule": "cosine",
                   "class_weights": "median_frequency"},
        "published": "CamVid test split: G 82.8, C 62.3, mIoU 46.3 (SegNet tutorial)",
    },
    "membrane_unet_paper": {
        "description": "U-Net as Ronneberger et al. (64 filters at the first level) with same padding, on the ISBI "
                       "2012 membrane slices at their own 512x512, with the data set's augmentation.",
        "config": {"model": "unet_paper", "model_options": {"padding": "same"}, "dataset": "membrane",
                   "image_size": (512, 512), "epochs": 120, "batch_size": 4, "optimizer": "adam",
                   "learning_rate": 1e-4, "schedule": "cosine"},
        "published": "ISBI 2012 membranes: pixel error 0.0611 (U-Net paper)",
    },
    "membrane_unet_paper16": {
        "description": "The preset membrane_unet_paper16: the paper's U-Net with 16 filters at the first level (a "
                       "sixteenth of its compute), same padding, 400 epochs at 512x512 in mixed_bfloat16: a CPU run.",
        "config": {"model": "unet_paper", "model_options": {"filters": 16, "padding": "same"}, "dataset": "membrane",
                   "image_size": (512, 512), "epochs": 400, "batch_size": 4, "optimizer": "adam",
                   "learning_rate": 1e-3, "schedule": "cosine", "mixed_precision": "mixed_bfloat16"},
        "published": "ISBI 2012 membranes: pixel error 0.0611 (U-Net paper)",
    },
}

RECIPES = {
    "set12_denoise_sigma25_unet": {
        "description": "Grey denoiser at sigma 25: U-Net (Ronneberger et al., same padding, first level 32 "
                       "filters) predicting the noise (global residual), trained on train400 patches.",
        "model": {"name": "unet_paper", "padding": "same", "filters": 32, "task": "denoise", "in_channels": 1},
        "train": {"dataset": "train400", "noise_sigma": 25, "patch_size": 64, "patches_per_image": 32,
                  "batch_size": 16},
        "evaluate": {"dataset": "set12", "split": "test", "noise_sigma": 25},
        "loss": "L1Loss",
        "learning_rate": 1e-3,
        "steps": 3000,
        "eval_every": 300,
    },
    "set5_sr_x4_unet": {
        "description": "RGB super-resolver at x4: U-Net (same padding, first level 32 filters) on the low-"
                       "resolution image, ending in depth-to-space over a bilinear upsample (global residual), "
                       "trained on T91 patches.",
        "model": {"name": "unet_paper", "padding": "same", "filters": 32, "task": "super_resolution", "scale": 4,
                  "in_channels": 3},
        "train": {"dataset": "t91", "scale": 4, "patch_size": 16, "patches_per_image": 64, "batch_size": 32},
        "evaluate": {"dataset": "set5", "split": "test", "scale": 4},
        "loss": "L1Loss",
        "learning_rate": 1e-3,
        "steps": 6000,
        "eval_every": 500,
    },
}
# EDSR (32 filters, 8 residual blocks, 0.17M parameters) at x2, x3 and x4: every layer runs on the low-resolution
# image, so one recipe serves each scale. x2 and x3 train twice as long: at 12,000 steps they stopped at 36.92 and
# 33.11 dB, short of FSRCNN's 37.05 and 33.18 (docs/zoo.md).
EDSR_STEPS = {2: (24000, 2000), 3: (24000, 2000), 4: (12000, 1000)}  # scale: (steps, eval_every)
for _scale, (_steps, _eval_every) in EDSR_STEPS.items():
    RECIPES[f"set5_sr_x{_scale}_edsr"] = {
        "description": f"RGB super-resolver at x{_scale}: EDSR (Lim et al.; 32 filters, 8 residual blocks) on the "
                       "low-resolution image, depth-to-space over a bilinear upsample (global residual), trained on "
                       "T91 patches.",
        "model": {"name": "edsr", "filters": 32, "num_blocks": 8, "task": "super_resolution", "scale": _scale,
                  "in_channels": 3},
        "train": {"dataset": "t91", "scale": _scale, "patch_size": 16, "patches_per_image": 64, "batch_size": 32},
        "evaluate": {"dataset": "set5", "split": "test", "scale": _scale},
        "loss": "L1Loss",
        "learning_rate": 1e-3,
        "steps": _steps,
        "eval_every": _eval_every,
    }

# DRUNet (32 filters at the first of three scales, 1 residual block per scale, 0.56M parameters) at each noise level
# of DnCNN-S's table; one recipe, the noise level its only change. Trained in bfloat16 where the CPU has it natively
# (about 1.5x faster than float32 on an AVX512_BF16 CPU); measured and shipped in float32.
for _sigma in (15, 25, 50):
    RECIPES[f"set12_denoise_sigma{_sigma}_drunet"] = {
        "description": f"Grey denoiser at sigma {_sigma}: DRUNet (Zhang et al.; 32 filters, 3 scales, 1 residual "
                       "block per scale, no noise-level map) predicting the noise (global residual), trained on "
                       "train400 patches.",
        "model": {"name": "drunet", "filters": 32, "num_blocks": 1, "levels": 3, "task": "denoise",
                  "in_channels": 1},
        "train": {"dataset": "train400", "noise_sigma": _sigma, "patch_size": 64, "patches_per_image": 32,
                  "batch_size": 16},
        "evaluate": {"dataset": "set12", "split": "test", "noise_sigma": _sigma},
        "loss": "L1Loss",
        "learning_rate": 1e-3,
        "mixed_precision": "auto",
        "steps": 10000,
        "eval_every": 1000,
    }
# The same DRUNet, blind: each patch's sigma drawn uniformly in [0, 55] (DnCNN-B's range), measured at sigma 25.
RECIPES["set12_denoise_blind_drunet"] = {
    **RECIPES["set12_denoise_sigma25_drunet"],
    "description": "Blind grey denoiser, sigma drawn in [0, 55] per patch: DRUNet (Zhang et al.; 32 filters, 3 "
                   "scales, 1 residual block per scale, no noise-level map) predicting the noise (global residual), "
                   "trained on train400 patches.",
    "train": {**RECIPES["set12_denoise_sigma25_drunet"]["train"], "noise_sigma": (0, 55)},
    "steps": 12000,
    "eval_every": 1500,
}


def segmentation_config(name, data_dir, output_dir, epochs=None):
    """The `TrainConfig` of a segmentation recipe (`epochs` overrides the recipe's, for a trial run)."""
    from kerazoo.training.config import TrainConfig

    fields = dict(SEGMENTATION_RECIPES[name]["config"])
    if epochs is not None:
        fields["epochs"] = epochs
    return TrainConfig(**fields, data_dir=data_dir, output_dir=str(output_dir))


def evaluation_figures(model, recipe, data_dir, tta=None):
    """Mean PSNR/SSIM (dB; Y channel and `scale` border for SR) of 8-bit outputs on the evaluation set; `tta` as
    `model.restore` takes it ("d4": the 8 flips and rotations averaged, EDSR+'s self-ensemble)."""
    import kerazoo
    from kerazoo.metrics import psnr, ssim

    options = dict(recipe["evaluate"])
    dataset = kerazoo.data.load(options.pop("dataset"), options.pop("split"), data_dir=data_dir, batch_size=1,
                                **options)
    crop = recipe["evaluate"].get("scale", 0)
    psnrs, ssims = [], []
    for degraded, clean in dataset:
        restored = model.restore(degraded.numpy()[0].astype(np.uint8) if "scale" in recipe["evaluate"]
                                 else np.asarray(degraded[0]), tta=tta)
        target = np.round(clean.numpy()[0]).astype(np.uint8)
        psnrs.append(float(psnr(restored, target, crop_border=crop)))
        ssims.append(float(ssim(restored, target, crop_border=crop)))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "images": len(psnrs)}


def run(name, data_dir, output_dir, steps=None):
    import keras

    import kerazoo
    from kerazoo.utils.cpu import auto_mixed_precision

    recipe = RECIPES[name]
    steps = steps or recipe["steps"]
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    # "mixed_precision": "auto" trains in bfloat16 where the CPU computes it natively; the weights are measured and
    # kept in a float32 twin of the model, as the preset ships them.
    policy, reason = auto_mixed_precision() if recipe.get("mixed_precision") == "auto" else (None, "float32")
    print(f"{name}: {reason}", flush=True)
    keras.mixed_precision.set_global_policy(policy or "float32")
    try:
        model = kerazoo.create_model(**recipe["model"])
    finally:  # a bad recipe must not leave the process in bfloat16
        keras.mixed_precision.set_global_policy("float32")
    kept = kerazoo.create_model(**recipe["model"]) if policy else model
    train_options = dict(recipe["train"])
    train = kerazoo.data.load(train_options.pop("dataset"), "train", data_dir=data_dir, **train_options).repeat()
    schedule = keras.optimizers.schedules.CosineDecay(recipe["learning_rate"], decay_steps=steps)
    model.compile(keras.optimizers.Adam(schedule), loss=getattr(kerazoo.losses, recipe["loss"])())
    best, history, trained, seconds = None, [], 0, 0.0
    progress = output_dir / "progress.csv"
    progress.write_text("steps,train_seconds,psnr,ssim,loss\n")
    while trained < steps:
        chunk = min(recipe["eval_every"], steps - trained)
        start = time.perf_counter()
        fit = model.fit(train, steps_per_epoch=chunk, epochs=1, verbose=0)
        seconds += time.perf_counter() - start
        trained += chunk
        if kept is not model:
            kept.set_weights(model.get_weights())
        figures = evaluation_figures(kept, recipe, data_dir)
        row = {"steps": trained, "train_seconds": round(seconds, 1), "psnr": round(figures["psnr"], 3),
               "ssim": round(figures["ssim"], 4), "loss": round(float(fit.history["loss"][-1]), 5)}
        history.append(row)
        with progress.open("a") as stream:
            stream.write(",".join(str(row[key]) for key in ("steps", "train_seconds", "psnr", "ssim", "loss")) + "\n")
        print(f"{name}: {trained}/{steps} steps, {seconds / 60:.1f} min, PSNR {row['psnr']:.2f} dB, "
              f"SSIM {row['ssim']:.4f}", flush=True)
        if best is None or row["psnr"] > best["psnr"]:
            best = row
            kept.save(output_dir / "best.keras")
    record = {"recipe": name, **recipe, "steps": steps, "precision": policy or "float32", "command": " ".join(["python"] + sys.argv),
              "train_seconds": round(seconds, 1), "history": history, "best": best,
              "machine": {"processor": platform.processor() or platform.machine(), "cpus": _cpu_name()}}
    (output_dir / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", choices=sorted(RECIPES) + sorted(SEGMENTATION_RECIPES))
    parser.add_argument("--data-dir", help="data root (default: $KERAZOO_DATA, else download)")
    parser.add_argument("--output-dir", help="default: runs/NAME")
    parser.add_argument("--steps", type=int, help="override a restoration recipe's steps (a shorter trial run)")
    parser.add_argument("--epochs", type=int, help="override a segmentation recipe's epochs (a shorter trial run)")
    parser.add_argument("--list", action="store_true", help="list the recipes")
    args = parser.parse_args(argv)
    if args.list or not args.name:
        for name, recipe in {**RECIPES, **SEGMENTATION_RECIPES}.items():
            print(f"{name}: {recipe['description']}")
        return
    output_dir = args.output_dir or f"runs/{args.name}"
    if args.name in SEGMENTATION_RECIPES:
        import kerazoo

        kerazoo.train(segmentation_config(args.name, args.data_dir, output_dir, args.epochs))
    else:
        run(args.name, args.data_dir, output_dir, args.steps)


if __name__ == "__main__":
    main()
