"""The export matrix: every zoo model x every export format, checked and written to export_matrix/REPORT.md.

Each model (on its default encoder, plus U-Net on MobileNetV2) is built with random weights
(weights=None) at a small size and exported by `kerazoo.export.export` to SavedModel, TFLite
(float32, float16, dynamic-range int8, full int8) and ONNX. Every file is reloaded and run in its
own runtime and compared with the Keras model. Each model runs in two subprocesses (SavedModel and
TFLite, then ONNX), so that one crash or out-of-memory does not lose the rest and a VGG16 FCN never
holds the TFLite converter and the ONNX conversion at once; its files are deleted once measured.

Usage:
    python export_matrix/matrix.py                     # every model, writes export_matrix/REPORT.md
    python export_matrix/matrix.py --models segnet_basic unet_mobilenetv2 --report /tmp/REPORT.md
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

HEIGHT, WIDTH = 64, 96
NUM_CLASSES = 5
VARIANTS = [
    ("saved_model", "float32"),
    ("tflite", "float32"),
    ("tflite", "float16"),
    ("tflite", "dynamic"),
    ("tflite", "int8"),
    ("onnx", "float32"),
]


READING_THE_MISSES = [
    "- **SegNet float32**: `MaxPoolingWithArgmax2D` counts values within 1e-5 (relative) of a window's "
    "maximum as ties at inference, so that equal or nearly equal values, which runtimes round differently, "
    "unpool to the same pixel everywhere; without it SegNet-Basic's float32 TFLite file missed the contract.",
    "- **float16 on deep random networks** (SegNet-VGG16): float16 weights carry ~5e-4 "
    "relative error; summed over 3x3x512 or 7x7x64 inputs of random sign, it reaches a few % of the small "
    "output range of an untrained network, and most pixels are near-ties (see `near-ties`). The U-Net and "
    "FCN rows, random as well, keep >= 0.999.",
    "- **unet_paper**: a 188x188 input gives a 4x4 output, so 2 samples are 32 pixels and one flipped "
    "pixel is 0.969 agreement.",
    "- **ONNX of FCN (VGG16, 134M parameters)**: converted from a weight-free graph (weights as inputs, "
    "added back as initializers) in a memory-limited child process; a frozen-graph tf2onnx conversion "
    "was killed at 24 GB.",
]


def entries():
    """(label, create_model kwargs, input size) for every matrix row."""
    import kerazoo
    from kerazoo.models import MODELS

    rows = []
    for name in kerazoo.list_models():
        entry = MODELS.get(name)
        label = f"{name} ({entry.default_encoder})" if entry.default_encoder else name
        kwargs = dict(name=name, num_classes=NUM_CLASSES)
        size = (HEIGHT, WIDTH)
        if name == "unet_paper":
            size = (188, 188)  # the smallest valid size of the valid-convolution U-Net
            kwargs["input_shape"] = (188, 188, 1)
        rows.append((name, label, kwargs, size))
        if name == "unet":
            rows.append(("unet_mobilenetv2", "unet (mobilenetv2)",
                         dict(name="unet", encoder="mobilenetv2", num_classes=NUM_CLASSES), size))
    return rows


# Formats exported together in one subprocess.
GROUPS = {"tf": ("saved_model", "tflite"), "onnx": ("onnx",)}


def run_one(key, out_json, group="tf"):
    """Exports one matrix row's `group` of formats (in this process) and writes its results as JSON."""
    import numpy as np

    import kerazoo
    from kerazoo.export import export
    from kerazoo.utils.files import atomic_write_text

    (_, label, kwargs, size), = [row for row in entries() if row[0] == key]
    import keras

    keras.utils.set_random_seed(0)  # random weights, but the same ones in every run: near-ties stay put
    model = kerazoo.create_model(**kwargs)
    channels = model.input_shape[-1]
    rng = np.random.default_rng(0)
    calibration = rng.uniform(0, 255, size=(16, *size, channels)).astype("float32")
    with tempfile.TemporaryDirectory(prefix=f"kerazoo_matrix_{key}_") as out_dir:
        report = export(
            model, out_dir, formats=GROUPS[group],
            quantize=("float32", "float16", "dynamic", "int8"), representative_data=calibration,
            sample_inputs=calibration[:2], strict=False, latency_runs=5, verbose=False,
            class_names=[f"class_{i}" for i in range(NUM_CLASSES)],
        )
    keras_latency, notes = report.keras_latency_ms, list(report.notes)
    files = [
        {k: getattr(f, k) for k in ("format", "variant", "size_bytes", "convert_s", "max_abs_diff",
                                    "relative_diff", "argmax_agreement", "near_tie_fraction", "latency_ms",
                                    "passed", "error", "notes")} | {"ops": list(f.ops), "ok": f.ok}
        for f in report.files
    ]
    result = {"key": key, "label": label, "params": model.count_params(), "size": size,
              "keras_latency_ms": keras_latency, "notes": notes, "files": files}
    atomic_write_text(out_json, json.dumps(result, indent=2))


def _cell(result):
    if result is None:
        return "not run"
    if result.get("error") and result.get("argmax_agreement") is None:
        return "FAIL: " + result["error"].splitlines()[0][:120].replace("|", "\\|")
    size = result["size_bytes"] / 2**20
    if result["relative_diff"] is not None:
        parity = f"rel {result['relative_diff']:.0e}, agree {result['argmax_agreement']:.4f}"
    else:
        parity = f"agree {result['argmax_agreement']:.4f}"
    status = "ok" if result["passed"] else ("MISSED contract" if result["passed"] is False else "ok*")
    if result["passed"] is False and result.get("near_tie_fraction"):
        parity += f", near-ties {result['near_tie_fraction']:.2f}"
    fallback = " (static HxW)" if any("static" in note for note in result["notes"]) else ""
    return f"{status}{fallback}: {parity}; {size:.1f} MiB; {result['latency_ms']:.1f} ms"


def write_report(results, path, elapsed_s):
    from kerazoo.utils.files import atomic_write_text

    lines = [
        "# kerazoo export matrix",
        "",
        f"Written by `python export_matrix/matrix.py` ({time.strftime('%Y-%m-%d')}"
        + (f", {elapsed_s / 60:.0f} min" if elapsed_s else "") + "). Every zoo model "
        f"(default encoder, plus U-Net on MobileNetV2), random weights, {NUM_CLASSES} classes, input "
        f"{HEIGHT}x{WIDTH} (unet_paper: 188x188x1, its smallest valid size), exported by "
        "`kerazoo.export.export` and re-run in each file's runtime on 2 sample images: TensorFlow "
        "(SavedModel), ai_edge_litert's interpreter (TFLite), onnxruntime CPU (ONNX, opset 17).",
        "",
        "Cell: status: parity (max |diff| relative to the Keras output range, argmax agreement per "
        "pixel); file size; median batch-1 latency over 5 runs. `ok` = met its contract (float32: "
        "rel <= 1e-4 and agree >= 0.999; float16: agree >= 0.99); `ok*` = no contract (dynamic-range "
        "and full int8 are measured, not enforced); `(static HxW)` = TFLite needed a static height and "
        "width (batch still dynamic), see the notes; `MISSED contract` = the file converted and ran but "
        "missed its parity contract; near-ties = fraction of pixels whose Keras top-2 margin is below the "
        "file's max |diff| (flips there are within its numeric error). No row is skipped. All weights "
        "are random: random networks have many near-tied logits, and trained ones (not measured here) will differ.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores shared with "
        "other jobs: latencies are indicative, not benchmarks.",
        "",
        "| model | params | Keras | " + " | ".join(f"{fmt} {variant}" for fmt, variant in VARIANTS) + " |",
        "|---|---|---|" + "---|" * len(VARIANTS),
    ]
    notes = []
    for key, label, _, _ in entries():
        result = results.get(key)
        if result is None or "files" not in result:
            error = f"FAIL: {result['crash']}" if result else "not run"
            lines.append(f"| {label} | - | - | " + " | ".join([error] * len(VARIANTS)) + " |")
            continue
        by_variant = {(f["format"], f["variant"]): f for f in result["files"]}
        cells = [_cell(by_variant.get(variant)) for variant in VARIANTS]
        keras_ms = result["keras_latency_ms"]
        keras_cell = "-" if keras_ms is None else f"{keras_ms:.1f} ms"
        lines.append(f"| {label} | {result['params'] / 1e6:.1f}M | {keras_cell} | " + " | ".join(cells) + " |")
        for note in result["notes"]:
            notes.append(f"- {label}: {note}")
        for f in result["files"]:
            for note in f.get("notes", []):
                if not note.startswith(("opset", "interface:")):
                    notes.append(f"- {label}, {f['format']} {f['variant']}: {note}")
    if notes:
        lines += ["", "## Notes", ""] + notes
    lines += ["", "## Reading the misses", ""] + READING_THE_MISSES
    ops = {}
    for result in results.values():
        for f in result.get("files", []):
            if f["format"] == "tflite" and f.get("ops"):
                ops.setdefault(f["variant"], set()).update(f["ops"])
    if ops:
        lines += ["", "## TFLite ops used across the matrix (all builtins; no Flex, no custom ops)", ""]
        lines += [f"- {variant}: {', '.join(sorted(names))}" for variant, names in sorted(ops.items())]
    atomic_write_text(path, "\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", help="matrix keys (default: all)")
    parser.add_argument("--report", default=os.path.join(HERE, "REPORT.md"))
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per model")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--group", default="tf", choices=sorted(GROUPS), help=argparse.SUPPRESS)
    parser.add_argument("--from-json", help="rewrite the report from a previous run's JSON directory")
    args = parser.parse_args(argv)
    if args.one:
        run_one(args.one, args.json, args.group)
        return 0
    if args.from_json:
        results = {}
        for name in sorted(os.listdir(args.from_json)):
            with open(os.path.join(args.from_json, name)) as handle:
                result = json.load(handle)
            earlier = results.get(result["key"])
            results[result["key"]] = result if earlier is None else {**earlier, "files": earlier["files"] + result["files"]}
        write_report(results, args.report, float(results.get("_elapsed", {}).get("s", 0)))
        print(f"wrote {args.report}")
        return 0
    keys = args.models or [row[0] for row in entries()]
    results, start = {}, time.time()
    results_dir = tempfile.mkdtemp(prefix="kerazoo_matrix_")
    print(f"per-model JSON in {results_dir}", flush=True)
    for key in keys:
        print(f"== {key}", flush=True)
        parts = []
        for group in GROUPS:
            out_json = os.path.join(results_dir, f"{key}.{group}.json")
            try:
                subprocess.run([sys.executable, __file__, "--one", key, "--json", out_json, "--group", group],
                               cwd=REPO, timeout=args.timeout, check=True)
                with open(out_json) as handle:
                    parts.append(json.load(handle))
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
                parts.append({"crash": f"{group}: {type(error).__name__}"})
        crashes = [part["crash"] for part in parts if "crash" in part]
        if crashes:
            results[key] = {"crash": "; ".join(crashes)}
        else:  # one row: the first group's figures, every group's files and notes
            results[key] = {**parts[0], "files": [f for part in parts for f in part["files"]],
                            "notes": list(dict.fromkeys(n for part in parts for n in part["notes"]))}
        write_report(results, args.report, time.time() - start)  # after every model: partial runs still report
    print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, REPO)
    sys.exit(main())
