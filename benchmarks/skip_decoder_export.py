"""Exports each skip-connection decoder (MobileNetV2 or --encoder, random weights, 3 classes) to TFLite
(float32, float16, int8) and ONNX at an odd size (67x91) through `kerazoo.export`; prints each file's parity.

    PYTHONPATH=$PWD python benchmarks/skip_decoder_export.py [--cases 0,2] [--encoder NAME] [--out-dir DIR]

Figures recorded in benchmarks/SKIP_DECODERS.md.
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerazoo  # noqa: E402
from kerazoo.export import export  # noqa: E402

CASES = [("fpn", {}), ("segformer", {}), ("linknet", {}), ("unet", {"attention": True}), ("unetplusplus", {}),
         ("unetplusplus", {"deep_supervision": True}), ("fpn", {"normalization": "batch"})]
SIZE = (67, 91)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", help="comma-separated indices into CASES (default: all)")
    parser.add_argument("--encoder", default="mobilenetv2", help="the encoder every case is built on")
    parser.add_argument("--out-dir", default=None, help="where the files go (default: a temporary folder)")
    args = parser.parse_args()
    cases = [CASES[int(i)] for i in args.cases.split(",")] if args.cases else CASES
    out_root = args.out_dir or tempfile.mkdtemp(prefix="skip_decoder_export_")
    calibration = np.random.default_rng(0).uniform(0, 255, (4, *SIZE, 3)).astype("float32")
    for name, options in cases:
        keras.utils.set_random_seed(0)
        model = kerazoo.create_model(name, encoder=args.encoder, num_classes=3, **options)
        start = time.time()
        out_dir = os.path.join(out_root, "_".join([name, args.encoder, *options]))
        report = export(model, out_dir, formats=("tflite", "onnx"), quantize=(None, "float16", "int8"),
                        representative_data=calibration, latency_runs=0, verbose=False, strict=False)
        print("==", name, args.encoder, options, f"{time.time() - start:.0f}s", "report notes", report.notes,
              flush=True)
        for exported in report.files:
            print("  ", exported.format, exported.variant, "passed", exported.passed, "rel", exported.relative_diff,
                  "agree", exported.argmax_agreement, "notes", exported.notes, "error", (exported.error or "")[:300],
                  "non-builtin", [op for op in exported.ops if op.startswith(("FLEX", "CUSTOM"))], flush=True)
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
