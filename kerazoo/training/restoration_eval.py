"""Evaluation and prediction for restoration models (denoising, super-resolution), next to the classical
baselines on the same images.

Kept apart from `kerazoo.training.evaluation`, whose figures (IoU, G, C from one confusion matrix) and pictures
(colour masks) are segmentation's: restoration scores each image on its own (PSNR/SSIM per image, then
the mean, as the papers' tables do) and compares methods, so it shares little beyond loading a model.

The field's conventions: every output (model and baselines) is rounded and clipped to 8 bits before
scoring; PSNR and SSIM on grey, or on Y of BT.601 YCbCr for colour, data range 255; super-resolution
crops `scale` pixels of border. The noise is seeded per image by `(seed, image index)` (see
`kerazoo.data.load`), so a Set12 figure is reproducible.

Baselines: "noisy" (the degraded input itself) and "bm3d" (Dabov et al., through the `bm3d` package:
`pip install "kerazoo[baselines]"`) for denoising; "bicubic" (MATLAB's `imresize`,
`kerazoo.data.imresize_numpy`) for super-resolution.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from kerazoo.tasks import RESTORATION_TASKS

__all__ = ["BASELINES", "RESTORATION_TASKS", "baseline", "before_after_image", "checkpoint_task",
           "evaluate_restoration", "export_samples", "print_restoration_report", "restoration_table", "restore_files"]

# The classical methods each task is compared with; the first ones are the defaults of `evaluate_restoration`.
BASELINES = {"denoise": ("noisy", "bm3d"), "super_resolution": ("bicubic",)}


def to_uint8(image) -> np.ndarray:
    """Pixels rounded and clipped to 8 bits: what the field scores."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)


def checkpoint_task(checkpoint) -> str:
    """The task of a checkpoint without building it: a model's `task`, a `.keras` file's config.json,
    or a preset's metadata ("segmentation" when none is recorded)."""
    import keras

    if isinstance(checkpoint, keras.Model):
        return getattr(checkpoint, "task", "segmentation")
    if str(checkpoint).endswith(".keras"):
        try:
            with zipfile.ZipFile(checkpoint) as archive:
                config = json.loads(archive.read("config.json"))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return "segmentation"  # loading it later gives the real error
        return (config.get("config") or {}).get("task", "segmentation")
    from kerazoo.zoo import preset_metadata

    metadata = preset_metadata(str(checkpoint))
    return metadata.get("task") or metadata.get("model", {}).get("task", "segmentation")


def _bm3d(noisy, sigma):
    try:
        import bm3d
    except ImportError:
        raise ImportError('the "bm3d" baseline needs the bm3d package: pip install "kerazoo[baselines]" '
                          '(or pass baselines without "bm3d")') from None
    unit = np.asarray(noisy, dtype=np.float64) / 255.0
    if unit.shape[-1] == 3:
        denoised = bm3d.bm3d_rgb(unit, sigma / 255.0)
    else:
        denoised = bm3d.bm3d(unit[..., 0], sigma / 255.0)[..., None]
    return denoised * 255.0


def baseline(name: str, degraded: np.ndarray, *, noise_sigma: float | None = None, scale: int | None = None):
    """A classical method's output for one degraded image (H, W, C), 8-bit rounded.

    Args:
        name: "noisy" (the input itself), "bm3d" (needs `noise_sigma`) or "bicubic" (needs `scale`).
        degraded: the model's input, 0..255 pixels.
        noise_sigma: the noise level on the 0..255 scale (BM3D is told the true sigma, as in its paper).
        scale: the super-resolution factor.

    Returns:
        uint8 (H, W, C), or (scale*H, scale*W, C) for "bicubic".
    """
    if name == "noisy":
        return to_uint8(degraded)
    if name == "bm3d":
        return to_uint8(_bm3d(degraded, noise_sigma))
    if name == "bicubic":
        from kerazoo.data import imresize_numpy

        return to_uint8(imresize_numpy(np.asarray(degraded, np.float64), scale))
    valid = sorted({b for names in BASELINES.values() for b in names})
    raise ValueError(f"Unknown baseline {name!r}; valid: {', '.join(valid)}")


def _check_baselines(task, baselines):
    if baselines is None:
        return BASELINES[task]
    baselines = (baselines,) if isinstance(baselines, str) else tuple(baselines)
    wrong = [b for b in baselines if b not in BASELINES[task]]
    if wrong:
        raise ValueError(f"baseline(s) {', '.join(map(repr, wrong))} do not apply to {task!r}; valid: "
                         f"{', '.join(BASELINES[task])}")
    return baselines


def _resolve_dataset(checkpoint, task, dataset):
    """The data set to measure on: the given one, else the one that measures the trained-on set."""
    from kerazoo import data as kz_data
    from kerazoo.training.evaluation import _trained_dataset

    dataset = dataset or _trained_dataset(checkpoint)
    if dataset is None:
        serving = [n for n in kz_data.list_datasets() if kz_data.DATASETS[n].task == task]
        raise ValueError(f"No data set known for {checkpoint}: pass dataset= (for {task!r}: {', '.join(serving)})")
    if dataset not in kz_data.DATASETS:
        raise ValueError(f"Unknown data set {dataset!r}; available: {', '.join(kz_data.list_datasets())}")
    info = kz_data.DATASETS[dataset]
    if info.task != task:
        raise ValueError(f"{dataset!r} is a {info.task!r} data set; this is a {task!r} model")
    return info.eval_dataset or dataset


def _check_degradation(model, task, noise_sigma, scale):
    if task == "denoise":
        if scale is not None:
            raise ValueError("scale applies to super-resolution models; this is a denoiser (pass noise_sigma)")
        sigma = 25.0 if noise_sigma is None else noise_sigma
        if isinstance(sigma, (tuple, list)) or isinstance(sigma, bool) or not float(sigma) >= 0:
            raise ValueError(f"evaluation takes one noise_sigma >= 0 (0..255 scale), got {noise_sigma!r}")
        return float(sigma), None
    if noise_sigma is not None:
        raise ValueError("noise_sigma applies to denoisers; this is a super-resolution model (pass scale)")
    if scale is not None and scale != model.scale:
        raise ValueError(f"this model super-resolves by {model.scale}; got scale={scale!r}")
    return None, model.scale


def _scores(image, clean, crop):
    from kerazoo.metrics import psnr, ssim

    return {"psnr": float(psnr(image, clean, crop_border=crop)), "ssim": float(ssim(image, clean, crop_border=crop))}


def evaluate_restoration(checkpoint, *, dataset: str | None = None, noise_sigma: float | None = None,
                         scale: int | None = None, baselines: Sequence[str] | None = None,
                         data_dir: str | os.PathLike | None = None, seed: int = 0,
                         num_images: int | None = None, keep_outputs: bool = False, tta: str | None = None) -> dict:
    """Per-image PSNR/SSIM of a restoration model and of the classical baselines on the same images.

    Args:
        checkpoint: a `.keras` file, a preset (name, directory or URI) or a denoising or
            super-resolution `ZooModel`.
        dataset: a restoration set; default: the set that measures the one it was trained on
            (train400 -> set12, t91 -> set5). A training set is replaced by its `eval_dataset`.
        noise_sigma: denoising: the noise level (default 25).
        scale: super-resolution: must be the model's own (the default).
        baselines: classical methods to compare (`BASELINES[task]`; default all of them, () for none).
        data_dir: the data root, as for `kerazoo.data.load`.
        seed: the noise seed (each image's noise comes from `(seed, image index)`).
        num_images: measure the first N images only.
        keep_outputs: also return the 8-bit pictures under `outputs` (method -> list of arrays, one per
            image, plus "degraded" and "clean"), for showing them; not JSON-ready.
        tta: test-time augmentation of the model: None, "flip" or "d4" (`ZooModel.restore`).

    Returns:
        A JSON-ready dict: `checkpoint`, `dataset`, `task`, `noise_sigma`, `scale`, `channels`, `seed`,
        `methods` ("model" first), `images` (one `{"name", <method>: {"psnr", "ssim"}}` per image),
        `mean` (method -> mean psnr and ssim), `seconds` (method -> wall time) and `tta`.
    """
    import keras

    from kerazoo import data as kz_data
    from kerazoo.training.evaluation import load_model

    model = load_model(checkpoint)
    task = getattr(model, "task", None)
    if task not in RESTORATION_TASKS:
        raise ValueError(f"evaluate_restoration takes a denoising or super-resolution model; this one's task "
                         f"is {task!r}")
    baselines = _check_baselines(task, baselines)
    noise_sigma, scale = _check_degradation(model, task, noise_sigma, scale)
    if num_images is not None and (not isinstance(num_images, int) or num_images < 1):
        raise ValueError(f"num_images must be a positive int or None, got {num_images!r}")
    dataset = _resolve_dataset(checkpoint, task, dataset)
    info = kz_data.DATASETS[dataset]
    options = {"noise_sigma": noise_sigma} if task == "denoise" else {"scale": scale}
    pairs = kz_data.load(dataset, info.val_split, data_dir=data_dir, batch_size=None, augment=False, shuffle=False,
                         seed=seed, channels=model.in_channels, **options)
    names = kz_data.image_names(dataset, data_dir=data_dir, scale=scale)
    methods = ("model",) + tuple(baselines)
    seconds = dict.fromkeys(methods, 0.0)
    outputs = {key: [] for key in ("degraded", "clean") + methods}
    rows = []
    crop = scale or 0
    for index, (degraded, clean) in enumerate(pairs):
        if num_images is not None and index >= num_images:
            break
        degraded, clean = np.asarray(degraded), np.asarray(clean)
        row = {"name": names[index] if index < len(names) else str(index)}
        for method in methods:
            start = time.perf_counter()
            if method == "model":
                output = model.restore(degraded, tta=tta)
                output = output[..., None] if output.ndim == 2 else output
            else:
                output = baseline(method, degraded, noise_sigma=noise_sigma, scale=scale)
            seconds[method] += time.perf_counter() - start
            row[method] = _scores(output, clean, crop)
            outputs[method].append(output)
        outputs["degraded"].append(degraded)
        outputs["clean"].append(clean)
        rows.append(row)
    if not rows:
        raise ValueError(f"{dataset} gave no images")
    mean = {m: {k: float(np.mean([r[m][k] for r in rows])) for k in ("psnr", "ssim")} for m in methods}
    where = model.name if isinstance(checkpoint, keras.Model) else str(checkpoint)
    report = {"checkpoint": where, "dataset": dataset, "split": info.val_split, "task": task,
              "noise_sigma": noise_sigma, "scale": scale, "channels": model.in_channels, "seed": seed,
              "methods": list(methods), "images": rows, "mean": mean, "seconds": seconds, "tta": tta}
    if keep_outputs:
        report["outputs"] = outputs
    return report


def export_samples(dataset: str, *, noise_sigma: float | None = None, scale: int | None = None,
                   channels: int | None = None, data_dir=None, count: int = 2, seed: int = 0):
    """Evaluation pairs for `kerazoo.export`'s PSNR contract: the first `count` images of a restoration
    set, cropped (top-left) to their common size so that they form one batch.

    Returns:
        (degraded float32 (count, h, w, C), clean float32 (count, scale*h, scale*w, C)).
    """
    from kerazoo import data as kz_data

    info = kz_data.DATASETS[dataset]
    options = {"noise_sigma": noise_sigma} if info.task == "denoise" else {"scale": scale}
    pairs = kz_data.load(dataset, info.val_split, data_dir=data_dir, batch_size=None, augment=False,
                         shuffle=False, seed=seed, channels=channels, **options)
    pairs = [(np.asarray(low), np.asarray(high)) for low, high in pairs.take(count)]
    factor = pairs[0][1].shape[0] // pairs[0][0].shape[0]
    height = min(low.shape[0] for low, _ in pairs)
    width = min(low.shape[1] for low, _ in pairs)
    degraded = np.stack([low[:height, :width] for low, _ in pairs])
    clean = np.stack([high[:factor * height, :factor * width] for _, high in pairs])
    return degraded.astype(np.float32), clean.astype(np.float32)


def restoration_table(report: dict, title: str | None = None):
    """A rich table: one row per image, PSNR (dB) and SSIM per method, then the mean."""
    from rich.table import Table

    if title is None:
        degradation = (f"sigma {report['noise_sigma']:g}" if report["task"] == "denoise" else f"x{report['scale']}")
        title = f"{report['checkpoint']} on {report['dataset']} ({degradation}, seed {report['seed']})"
    table = Table(title=title)
    table.add_column("image")
    for method in report["methods"]:
        table.add_column(f"{method} PSNR", justify="right")
        table.add_column(f"{method} SSIM", justify="right")
    for row in report["images"]:
        table.add_row(row["name"], *[f"{row[m][k]:.{2 if k == 'psnr' else 4}f}" for m in report["methods"]
                                     for k in ("psnr", "ssim")])
    table.add_section()
    mean = report["mean"]
    table.add_row("mean", *[f"{mean[m][k]:.{2 if k == 'psnr' else 4}f}" for m in report["methods"]
                            for k in ("psnr", "ssim")])
    return table


def print_restoration_report(report: dict) -> None:
    """Prints `restoration_table(report)` to the terminal."""
    from rich.console import Console

    Console().print(restoration_table(report))


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    image = image[..., None] if image.ndim == 2 else image
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def before_after_image(before: np.ndarray, after: np.ndarray, gap: int = 4) -> np.ndarray:
    """input | output side by side (uint8 RGB); a smaller input (super-resolution) is enlarged by
    repeating pixels (nearest), so its pixels stay visible."""
    before, after = _rgb(to_uint8(before)), _rgb(to_uint8(after))
    factor_h, factor_w = after.shape[0] // before.shape[0], after.shape[1] // before.shape[1]
    if (factor_h, factor_w) != (1, 1):
        before = np.repeat(np.repeat(before, factor_h, axis=0), factor_w, axis=1)
    height = max(before.shape[0], after.shape[0])
    canvas = np.full((height, before.shape[1] + gap + after.shape[1], 3), 255, np.uint8)
    canvas[:before.shape[0], :before.shape[1]] = before
    canvas[:after.shape[0], before.shape[1] + gap:] = after
    return canvas


def restore_files(checkpoint, images: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *, tile=None,
                  overlap: float = 0.25, blend: str = "gaussian", tta: str | None = None) -> list[Path]:
    """Writes `<stem>_restored.png` and `<stem>_before_after.png` (input | output) for each image file.

    With `tile`, only `<stem>_restored.png`, streamed to the file strip by strip
    (`ZooModel.restore(..., out=)`), so a large image's result is never held in memory whole.

    Args:
        checkpoint: a `.keras` file, a preset or a denoising / super-resolution `ZooModel`.
        images: image files of any size (read as grey or RGB, as the model takes them).
        out_dir: output folder (created).
        tile, overlap, blend, tta: tiled inference and test-time augmentation (`ZooModel.restore`).

    Returns:
        The written paths.
    """
    from kerazoo.training.evaluation import existing_files, load_model, save_png
    from kerazoo.utils.images import read_image

    paths = existing_files(images)
    model = load_model(checkpoint)
    if getattr(model, "task", None) not in RESTORATION_TASKS:
        raise ValueError(f"restore_files takes a denoising or super-resolution model; this one's task is "
                         f"{getattr(model, 'task', None)!r}")
    written = []
    for path in paths:
        image = read_image(path, model.in_channels)
        if tile is not None:
            written.append(model.restore(image, tile=tile, overlap=overlap, blend=blend, tta=tta,
                                         out=Path(out_dir) / f"{path.stem}_restored.png"))
            continue
        restored = model.restore(image, tta=tta)
        written.append(save_png(restored, Path(out_dir) / f"{path.stem}_restored.png"))
        written.append(save_png(before_after_image(image, restored), Path(out_dir) / f"{path.stem}_before_after.png"))
    return written
