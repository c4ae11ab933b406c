"""Tiled inference against whole-image inference for the shipped presets, and a very large image's memory.

    python benchmarks/tiled_inference.py agreement --data-dir ../shared/data [--json out.json]
    python benchmarks/tiled_inference.py big --size 4000x6000 --tile 512 --batch-size 4 --out /tmp/big.png

`agreement`: each preset on real images at its own scale, whole-image (`segment` / `restore` without tiles)
against tiled (`tile=...`, overlap 0.25, Gaussian blend): argmax agreement for segmentation, PSNR between
the tiled and the whole uint8 results for restoration, over all pixels and away from the borders
(`--border` input pixels cut from each side; the scale times that at the output). Also each one's score
against the ground truth both ways (mIoU, or PSNR as `kerazoo evaluate` measures it).

`big`: one large image (sums of waves plus noise, or `--image` resized to `--size`) through
`set5_sr_x4_unet.restore(image, tile=..., out=...)`, the result streamed to a PNG; prints the wall time,
the peak resident memory of the process (`resource.getrusage`) and the sizes a whole float32 result would
have taken.
"""

import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import kerazoo  # noqa: E402
from kerazoo import data as kz_data  # noqa: E402
from kerazoo.cli import image_size  # noqa: E402
from kerazoo.metrics import confusion_matrix_scores, psnr  # noqa: E402

# preset -> its tile size in `agreement` (overlap 0.25 by default)
SETTINGS = {
    "camvid_segnet_basic": 96,  # CamVid val at the model's 176x240: 3 x 4 tiles
    "membrane_unet_mobilenetv2": 256,  # 512x512 EM images: 3 x 3 tiles
    "set12_denoise_sigma25_unet": 128,  # Set12 at sigma 25: 256x256 and 512x512
    "set5_sr_x4_unet": 32,  # Set5 x4 LR images, 57..128 pixels a side
}


def _inner(array, border):
    return array[border:-border, border:-border] if border else array


def _segmentation(name, model, tile, data_dir, border, overlap, blend):
    info = kz_data.DATASETS["camvid" if name.startswith("camvid") else "membrane"]
    size = model.input_size
    pairs = kz_data.load(info.name, info.val_split, data_dir=data_dir, batch_size=None, image_size=size,
                         augment=False, shuffle=False)
    same = total = same_inner = total_inner = 0
    confusion = {"whole": 0, "tiled": 0}
    k = info.num_classes
    for image, mask in pairs:
        image, mask = np.asarray(image), np.asarray(mask)[..., 0] if np.ndim(mask) == 3 else np.asarray(mask)
        whole = model.segment(image)
        tiled = model.segment(image, tile=tile, overlap=overlap, blend=blend)
        same, total = same + int((whole == tiled).sum()), total + whole.size
        same_inner += int((_inner(whole, border) == _inner(tiled, border)).sum())
        total_inner += _inner(whole, border).size
        keep = (mask >= 0) & (mask < k) & (mask != (-1 if info.ignore_class is None else info.ignore_class))
        for key, labels in (("whole", whole), ("tiled", tiled)):
            confusion[key] = confusion[key] + np.bincount(mask[keep].astype(np.int64) * k + labels[keep],
                                                          minlength=k * k).reshape(k, k)
    return {"data": f"{info.name} {info.val_split} at {size[0]}x{size[1]}", "tile": tile,
            "agreement": same / total, "agreement_inner": same_inner / total_inner,
            "miou_whole": confusion_matrix_scores(confusion["whole"])["mean_iou"],
            "miou_tiled": confusion_matrix_scores(confusion["tiled"])["mean_iou"]}


def _restoration(name, model, tile, data_dir, border, overlap, blend):
    task = model.task
    dataset, options = ("set12", {"noise_sigma": 25.0}) if task == "denoise" else ("set5", {"scale": model.scale})
    pairs = kz_data.load(dataset, kz_data.DATASETS[dataset].val_split, data_dir=data_dir, batch_size=None,
                         augment=False, shuffle=False, seed=0, channels=model.in_channels, **options)
    crop = model.scale if task == "super_resolution" else 0
    between, between_inner, whole_scores, tiled_scores = [], [], [], []
    for degraded, clean in pairs:
        degraded, clean = np.asarray(degraded), np.asarray(clean)
        whole = model.restore(degraded)
        tiled = model.restore(degraded, tile=tile, overlap=overlap, blend=blend)
        whole, tiled = (a[..., None] if a.ndim == 2 else a for a in (whole, tiled))
        out_border = border * model.scale
        # Between the two results: over all channels (not Y), an infinite PSNR for identical images.
        between.append(float(psnr(tiled, whole, y_channel=False)))
        between_inner.append(float(psnr(_inner(tiled, out_border), _inner(whole, out_border), y_channel=False)))
        whole_scores.append(float(psnr(whole, clean, crop_border=crop)))
        tiled_scores.append(float(psnr(tiled, clean, crop_border=crop)))
    return {"data": f"{dataset} ({'sigma 25' if task == 'denoise' else f'x{model.scale}'})", "tile": tile,
            "psnr_tiled_vs_whole": float(np.mean(between)), "psnr_tiled_vs_whole_inner": float(np.mean(between_inner)),
            "min_psnr_tiled_vs_whole": float(np.min(between)),
            "psnr_whole": float(np.mean(whole_scores)), "psnr_tiled": float(np.mean(tiled_scores))}


def agreement(args):
    results = {}
    for name in args.presets:
        model = kerazoo.from_preset(name)
        measure = _segmentation if model.task == "segmentation" else _restoration
        start = time.perf_counter()
        results[name] = measure(name, model, args.tile or SETTINGS[name], args.data_dir, args.border,
                                args.overlap, args.blend)
        results[name]["seconds"] = time.perf_counter() - start
        print(name, json.dumps(results[name]), flush=True)
    return results


def _synthetic(height, width, seed=0):
    """Smooth waves plus noise, uint8 RGB, built a band of rows at a time (no float copy of the whole)."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.uint8)
    x = np.arange(width) / width
    for top in range(0, height, 500):
        y = np.arange(top, min(top + 500, height))[:, None] / height
        planes = [128 + 80 * np.sin(2 * np.pi * (3 * y + (c + 2) * x) + c) for c in range(3)]
        band = np.stack(planes, -1) + rng.normal(0, 12, (len(y), width, 3))
        image[top:top + len(y)] = np.clip(band, 0, 255).astype(np.uint8)
    return image


def big(args):
    from PIL import Image

    height, width = args.size
    if args.image:
        with Image.open(args.image) as picture:
            image = np.asarray(picture.convert("RGB").resize((width, height), Image.BICUBIC))
    else:
        image = _synthetic(height, width)
    model = kerazoo.from_preset("set5_sr_x4_unet")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    path = model.restore(image, tile=args.tile, overlap=args.overlap, blend=args.blend, batch_size=args.batch_size,
                         out=args.out, progress=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux -> GiB
    out_h, out_w = height * model.scale, width * model.scale
    result = {"input": [height, width], "output": [out_h, out_w], "tile": args.tile, "overlap": args.overlap,
              "batch_size": args.batch_size, "seconds": seconds, "peak_rss_gib": peak,
              "peak_rss_before_inference_gib": rss_before, "png_bytes": os.path.getsize(path),
              "whole_float32_result_gib": out_h * out_w * 3 * 4 / 2**30,
              "whole_uint8_result_gib": out_h * out_w * 3 / 2**30}
    print(json.dumps(result), flush=True)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    agree = commands.add_parser("agreement")
    agree.add_argument("--data-dir", default=None)
    agree.add_argument("--presets", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    agree.add_argument("--tile", type=int, default=None, help="default: each preset's in SETTINGS")
    agree.add_argument("--border", type=int, default=16, help="input pixels left out at each side for *_inner")
    large = commands.add_parser("big")
    large.add_argument("--size", type=image_size, default=(4000, 6000), metavar="HxW")
    large.add_argument("--image", default=None, help="an image to resize to --size (default: synthetic)")
    large.add_argument("--tile", type=int, default=512)
    large.add_argument("--batch-size", type=int, default=4)
    large.add_argument("--out", default="big_x4.png")
    for sub in (agree, large):
        sub.add_argument("--overlap", type=float, default=0.25)
        sub.add_argument("--blend", default="gaussian")
        sub.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    result = agreement(args) if args.command == "agreement" else big(args)
    if args.json:
        from kerazoo.training.evaluation import write_json

        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
