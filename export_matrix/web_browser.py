"""The shipped presets exported with formats=["web"] and run by their page in headless Chromium.

For each preset: `kerazoo.export` writes `<name>_web/` (parity-checked in onnxruntime on the same image);
the page is served on 127.0.0.1 and fed one real image through its file input (Playwright, Debian's
chromium); the tensor the page fed onnxruntime-web and the raw output it got are read back and compared
with onnxruntime in Python on that same tensor: per-pixel argmax agreement (segmentation) or PSNR
(restoration: 8-bit rounded outputs, Y channel, `scale` border pixels cropped, as `kerazoo evaluate`).
End to end, the page is also compared with the Keras model on the original image (`segment` and
`restore`, which resize with TensorFlow where the page resizes with the canvas). Writes
export_matrix/WEB.md, export_matrix/web.json and a screenshot of the first preset's page.

    python export_matrix/web_browser.py [--data-dir ../shared/data] [--screenshot docs/images/web_demo.png]

Needs `pip install 'kerazoo[web]'`, `apt-get install chromium` and `kerazoo fetch onnxruntime-web`.
"""

import argparse
import json
import os
import tempfile
from pathlib import Path

import keras
import numpy as np
import onnxruntime
from PIL import Image

import kerazoo
from kerazoo.export import export
from kerazoo.export.web_browser import run_in_browser
from kerazoo.export.web_runtime import ONNXRUNTIME_WEB
from kerazoo.metrics import psnr
from kerazoo.utils.files import atomic_write_text

HERE = Path(__file__).resolve().parent
PRESETS = ("camvid_segnet_basic", "membrane_unet_mobilenetv2", "set12_denoise_sigma25_unet", "set5_sr_x4_unet")


def sample(preset, data_dir):
    """(the image file the page is fed, its pixels, the clean target or None, what it is)."""
    if preset == "camvid_segnet_basic":
        path = data_dir / "camvid" / "val" / "0016E5_07959.png"
        return path, np.asarray(Image.open(path).convert("RGB")), None, "CamVid val 0016E5_07959 (360x480)"
    if preset == "membrane_unet_mobilenetv2":
        path = data_dir / "membrane" / "image" / "20.png"
        return path, np.asarray(Image.open(path).convert("L")), None, "ISBI membrane slice 20 (512x512, held out)"
    if preset == "set12_denoise_sigma25_unet":
        clean = np.asarray(Image.open(data_dir / "set12" / "01.png").convert("L"), dtype=np.float32)
        noisy = np.clip(np.rint(clean + np.random.default_rng(0).normal(0, 25, clean.shape)), 0, 255).astype(np.uint8)
        return noisy, noisy, clean, "Set12 01 + Gaussian noise sigma 25 (seed 0), 8-bit PNG"
    folder = data_dir / "set5" / "image_SRF_4"
    low = np.asarray(Image.open(folder / "img_001_SRF_4_LR.png").convert("RGB"))
    high = np.asarray(Image.open(folder / "img_001_SRF_4_HR.png").convert("RGB"), dtype=np.float32)
    return folder / "img_001_SRF_4_LR.png", low, high, "Set5 img_001 x4 LR -> HR"


def batch(pixels):
    """(1, H, W, C) float32."""
    pixels = np.asarray(pixels, dtype=np.float32)
    return (pixels[..., None] if pixels.ndim == 2 else pixels)[None]


def measure(preset, data_dir, work, screenshot=None):
    model = kerazoo.from_preset(preset)
    image_file, pixels, target, what = sample(preset, data_dir)
    if not isinstance(image_file, Path):
        image_file = work / f"{preset}.png"
        Image.fromarray(pixels).save(image_file)
    targets = None if target is None else batch(target)
    report = export(model, str(work / preset), formats="web", sample_inputs=batch(pixels), sample_targets=targets,
                    latency_runs=0, verbose=False)
    exported = report.get("web")
    session = run_in_browser(exported.path, [image_file], screenshot=screenshot)
    run = session.runs[0]
    ort_session = onnxruntime.InferenceSession(str(Path(exported.path, "model.onnx")))
    expected = ort_session.run(None, {"image": run.inputs})[0]
    row = {"preset": preset, "image": what, "page_input": list(run.inputs.shape[1:3]),
           "page_ms": round(run.millis, 1), "export_passed": exported.passed,
           "other_origin_requests": [url for url in session.requests if not url.startswith(session.base_url)],
           "page_errors": session.errors,
           "max_abs_diff_vs_onnxruntime": float(np.max(np.abs(run.outputs - expected)))}
    if model.task == "segmentation":
        row["argmax_agreement_vs_onnxruntime"] = float(np.mean(run.outputs.argmax(-1) == expected.argmax(-1)))
        # End to end: the Keras model on the resize its training and `segment` use (bilinear, antialiased).
        resized = keras.ops.image.resize(batch(pixels), run.inputs.shape[1:3], interpolation="bilinear", antialias=True)
        keras_labels = np.argmax(np.asarray(model.predict_on_batch(keras.ops.clip(resized, 0.0, 255.0))), -1)
        row["argmax_agreement_vs_keras_end_to_end"] = float(np.mean(run.outputs.argmax(-1) == keras_labels))
    else:
        crop = model.scale if model.task == "super_resolution" else 0

        def score(outputs):
            return float(np.mean(psnr(np.clip(np.rint(outputs), 0, 255), targets, crop_border=crop)))

        restored = model.restore(pixels)
        row.update(psnr_page=score(run.outputs), psnr_onnxruntime=score(expected),
                   psnr_keras_restore=score(batch(restored)), psnr_input=None)
        row["psnr_difference_db"] = row["psnr_page"] - row["psnr_onnxruntime"]
        if model.task == "denoise":
            row["psnr_input"] = score(batch(pixels))
    return row


def markdown(rows):
    lines = [f"Page runs in headless Chromium (Debian's chromium, Playwright) with {ONNXRUNTIME_WEB.package} "
             f"{ONNXRUNTIME_WEB.version} (WebAssembly, one thread), compared with onnxruntime "
             f"{onnxruntime.__version__} in Python on the tensor the page fed (`python export_matrix/web_browser.py`).",
             "",
             "| preset | image | page input | browser vs onnxruntime | end to end vs Keras | max abs diff | page ms |",
             "|---|---|---|---|---|---:|---:|"]
    for row in rows:
        if "argmax_agreement_vs_onnxruntime" in row:
            same = f"argmax agreement {row['argmax_agreement_vs_onnxruntime']:.6f}"
            keras = f"argmax agreement {row['argmax_agreement_vs_keras_end_to_end']:.4f}"
        else:
            same = (f"PSNR {row['psnr_page']:.3f} vs {row['psnr_onnxruntime']:.3f} dB "
                    f"({row['psnr_difference_db']:+.4f} dB)")
            keras = f"restore() PSNR {row['psnr_keras_restore']:.3f} dB"
            if row["psnr_input"] is not None:
                keras += f" (input {row['psnr_input']:.2f} dB)"
        size = "x".join(str(v) for v in row["page_input"])
        lines.append(f"| {row['preset']} | {row['image']} | {size} | {same} | {keras} | "
                     f"{row['max_abs_diff_vs_onnxruntime']:.2e} | {row['page_ms']:.0f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("KERAZOO_DATA"))
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--screenshot", default=None, help="PNG of the first preset's page after its run")
    args = parser.parse_args()
    if not args.data_dir:
        parser.error("pass --data-dir or set KERAZOO_DATA")
    rows = []
    with tempfile.TemporaryDirectory(prefix="kerazoo_web_") as work:
        for index, preset in enumerate(args.presets):
            rows.append(measure(preset, Path(args.data_dir), Path(work), args.screenshot if index == 0 else None))
            print(json.dumps(rows[-1]))
    atomic_write_text(HERE / "web.json", json.dumps(rows, indent=2) + "\n")
    atomic_write_text(HERE / "WEB.md", "# The web export in a browser\n\n" + markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
