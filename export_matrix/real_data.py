"""The shipped presets exported and scored on their real validation data, file by file.

For each preset: `kerazoo.export` writes SavedModel, TFLite (float32, float16, dynamic-range, int8
calibrated on 100 unaugmented training images) and ONNX; then every TFLite and ONNX file runs over
the whole validation split in its own runtime (ai_edge_litert, onnxruntime), one image at a time,
and its G, C and mIoU are computed from one confusion matrix, as for the Keras model. Writes
export_matrix/REAL_DATA.md and export_matrix/real_data.json.

    python export_matrix/real_data.py [--data-dir ../shared/data] [--presets camvid_segnet_basic ...]
"""

import argparse
import json
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import kerazoo
from kerazoo.export import TFLiteRunner, export, onnx_runner
from kerazoo.utils.files import atomic_write_text
from kerazoo.metrics import PerClassIoU, confusion_matrix_scores
from kerazoo.zoo import preset_metadata
from kerazoo.utils.timing import median_ms

HERE = Path(__file__).resolve().parent
VARIANTS = (None, "float16", "dynamic", "int8")


def score(run, images, masks, info, reference_labels=None):
    """G, C, mIoU of `run` over the images one at a time, its argmax agreement with `reference_labels`
    (1 when None) and its latency; returns (row, labels)."""
    metric = PerClassIoU(info.num_classes, ignore_class=info.ignore_class)
    labels = []
    for image, mask in zip(images, masks):
        scores = run(image[None])
        metric.update_state(mask[None], scores)
        labels.append(np.argmax(scores, -1)[0])
    labels = np.stack(labels)
    scores = confusion_matrix_scores(keras.ops.convert_to_numpy(metric.total_cm))
    agreement = 1.0 if reference_labels is None else float((labels == reference_labels).mean())
    row = {"global_accuracy": scores["global_accuracy"], "class_average_accuracy": scores["class_average_accuracy"],
           "mean_iou": scores["mean_iou"], "argmax_agreement": agreement,
           "median_ms": median_ms(lambda: run(images[:1]), 20, warmup=2)}
    return row, labels


def measure(name, data_dir, max_images=None):
    metadata = preset_metadata(name, offline=True)
    dataset, size = metadata["dataset"], tuple(metadata["input_size"])
    info = kerazoo.data.DATASETS[dataset]
    model = kerazoo.from_preset(name, offline=True)
    val = kerazoo.data.load(dataset, "val", data_dir=data_dir, image_size=size, batch_size=None, augment=False,
                            shuffle=False)
    if max_images:
        val = val.take(max_images)
    images = np.stack([np.asarray(image) for image, _ in val])
    masks = np.stack([np.asarray(mask) for _, mask in val])
    calibration = kerazoo.data.load(dataset, "train", data_dir=data_dir, image_size=size, batch_size=None,
                                    augment=False, shuffle=True, seed=0)
    serve = tf.function(lambda image: model(image, training=False), reduce_retracing=True)
    rows = {}
    rows["keras"], keras_labels = score(lambda image: serve(image).numpy(), images, masks, info)
    with tempfile.TemporaryDirectory() as out_dir:
        report = export(model, out_dir, formats=("tflite", "onnx"), quantize=VARIANTS, representative_data=calibration,
                        num_calibration=100, sample_inputs=images[:2], class_names=info.class_names, latency_runs=0,
                        strict=False, verbose=False)
        for exported in report.files:
            label = f"{exported.format} {exported.variant}"
            if exported.path is None:
                rows[label] = {"error": exported.error}
                continue
            runner = TFLiteRunner if exported.format == "tflite" else onnx_runner
            rows[label], _ = score(runner(exported.path), images, masks, info, keras_labels)
            rows[label]["bytes"] = exported.size_bytes
    print(name, json.dumps(rows, indent=1))
    return {"preset": name, "dataset": dataset, "input_size": list(size), "val_images": len(images), "rows": rows}


def markdown(results):
    lines = ["# Exports of the shipped presets on real validation data", "",
             "Written by `python export_matrix/real_data.py --data-dir ../shared/data`. Each file runs over the whole "
             "validation split in its own runtime (TFLite: ai_edge_litert's interpreter; ONNX: onnxruntime CPU), "
             "batch 1; int8 is full-integer with float input and output, calibrated on 100 unaugmented training "
             "images. `agree` = per-pixel argmax agreement with the Keras model; `ms` = median of 20 batch-1 runs "
             "after warm-up (2 shared CPU cores: indicative); `x Keras` = that latency over the Keras model's "
             "(called in a tf.function).", ""]
    for result in results:
        rows = result["rows"]
        keras_row = rows["keras"]
        lines += [f"## {result['preset']} ({result['dataset']} val, {result['val_images']} images at "
                  f"{result['input_size'][0]}x{result['input_size'][1]})", "",
                  "| file | size | G | C | mIoU | mIoU change | agree | ms | x Keras |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for label, row in rows.items():
            if "error" in row:
                lines.append(f"| {label} | failed: {row['error']} | | | | | | | |")
                continue
            size = f"{row['bytes'] / 2**20:.2f} MiB" if row.get("bytes") else "-"
            change = 100 * (row["mean_iou"] - keras_row["mean_iou"])
            lines.append(f"| {label} | {size} | {100 * row['global_accuracy']:.1f} | "
                         f"{100 * row['class_average_accuracy']:.1f} | {100 * row['mean_iou']:.1f} | {change:+.2f} | "
                         f"{row['argmax_agreement']:.4f} | {row['median_ms']:.1f} | "
                         f"{row['median_ms'] / keras_row['median_ms']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--presets", nargs="+", default=None)
    parser.add_argument("--max-images", type=int, default=None, help="first N val images only (default: all)")
    parser.add_argument("--out-dir", default=str(HERE), help="where real_data.json and REAL_DATA.md go")
    args = parser.parse_args()
    names = args.presets or [preset.name for preset in kerazoo.list_presets()]
    saved = Path(args.out_dir) / "real_data.json"
    # --presets measures those again and keeps the others' saved results
    kept = [result for result in json.loads(saved.read_text()) if result["preset"] not in names] \
        if args.presets and saved.exists() else []
    results = kept + [measure(name, args.data_dir, args.max_images) for name in names]
    atomic_write_text(saved, json.dumps(results, indent=1) + "\n")
    atomic_write_text(Path(args.out_dir) / "REAL_DATA.md", markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
