"""The encoder table: every registered encoder built (random weights), its parameters, its taps per stride,
its separate poolings, its preprocessing, and whether output strides 16 and 8 build and give taps of the
promised sizes.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/encoders.py                       # all, writes encoders.json
    PYTHONPATH=$PWD .venv/bin/python benchmarks/encoders.py --encoders resnet50 convnext_tiny --markdown
    PYTHONPATH=$PWD .venv/bin/python benchmarks/encoders.py --models fcn32s fcn16s fcn8s unet   # + model sizes

Each encoder runs in a child process (the large ones hold gigabytes); results are written after each one
(atomically), so an interrupted run keeps what it measured and `--resume` goes on from there.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

OUTPUT = Path(__file__).with_name("encoders.json")
# Encoders whose model sizes the README's first table already lists.
README_ENCODERS = ("mobilenetv2", "resnet50", "resnet101", "resnet152", "vgg16", "vgg19")
PROBE = (64, 96)


def measure(name, models=()):
    """One encoder's row (runs in the child process); `models`: also count these models' parameters."""
    import keras
    import numpy as np

    import kerazoo

    from kerazoo.encoders import (ENCODERS, build_application, build_encoder, feature_strides, spec_taps,
                                  tap_stride)

    spec = ENCODERS.get(name)
    start = time.perf_counter()
    taps = spec_taps(spec)  # one build of the regular application, its graph read
    build_seconds = time.perf_counter() - start
    row = {
        "encoder": name, "family": spec.family, "parameters": build_application(spec).count_params(),
        "build_seconds": round(build_seconds, 1), "preprocessing": spec.preprocessing,
        "taps": {str(stride): layer for stride, layer in taps.features.items()},
        "pooled": {str(stride): layer for stride, layer in taps.pooled_features.items()},
        "output_strides": {},
    }
    keras.backend.clear_session()
    images = np.zeros((1, *PROBE, 3), "float32")
    for output_stride in (32, 16, 8):
        try:
            encoder = build_encoder(spec, output_stride=output_stride)
            shapes = [tuple(output.shape[1:3]) for output in encoder.predict(images, verbose=0)]
            expected = [(PROBE[0] // tap_stride(s, output_stride), PROBE[1] // tap_stride(s, output_stride))
                        for s in feature_strides(spec)]
            row["output_strides"][str(output_stride)] = "ok" if shapes == expected else f"sizes {shapes}"
        except Exception as error:  # the table records what fails, and why
            row["output_strides"][str(output_stride)] = f"{type(error).__name__}: {str(error)[:200]}"
        keras.backend.clear_session()
    row["models"] = {}
    for model in models:  # 12 classes, as the README's table
        row["models"][model] = kerazoo.create_model(model, encoder=name, num_classes=12).count_params()
        keras.backend.clear_session()
    return row


def markdown(rows):
    lines = ["| encoder | parameters | taps at strides 2 / 4 / 8 / 16 / 32 | output stride 16, 8 | preprocessing |",
             "|---|---:|---|---|---|"]
    for row in rows:
        taps = " / ".join(f"`{row['taps'][str(s)]}`" if str(s) in row["taps"] else "(none)" for s in (2, 4, 8, 16, 32))
        strides = ", ".join(row["output_strides"].get(s, "?") for s in ("16", "8"))
        lines.append(f"| {row['encoder']} | {row['parameters'] / 1e6:.2f}M | {taps} | {strides} | "
                     f"{row['preprocessing']} |")
    return "\n".join(lines)


def model_tables(rows, skip=()):
    """README tables of model parameters (12 classes), one per encoder family, for encoders not in `skip`."""
    families = {}
    for row in rows:
        if row["models"] and row["encoder"] not in skip:
            families.setdefault(row["family"], []).append(row)
    tables = []
    for members in families.values():
        models = list(members[0]["models"])
        lines = ["| model | " + " | ".join(row["encoder"] for row in members) + " |",
                 "|---|" + "---|" * len(members)]
        for model in models:
            cells = [format_millions(row["models"][model]) for row in members]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def format_millions(count):
    """As the README writes parameter counts: 3 significant figures, in millions."""
    millions = count / 1e6
    return f"{millions:.2f}M" if millions < 10 else f"{millions:.1f}M"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoders", nargs="*", help="names (default: every registered encoder)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--resume", action="store_true", help="keep the rows already in --output")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown at the end")
    parser.add_argument("--readme", action="store_true",
                        help="print, from --output, the README's encoder table and model tables, and measure nothing")
    parser.add_argument("--models", nargs="*", default=[], help="also count these models' parameters (12 classes)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(measure(arguments.child, arguments.models)))
        return
    from kerazoo.encoders import list_encoders
    from kerazoo.utils.files import atomic_write_text

    names = arguments.encoders or list_encoders()
    if arguments.readme:
        rows = {row["encoder"]: row for row in json.loads(arguments.output.read_text())}
        ordered = [rows[name] for name in names if name in rows]
        print(markdown(ordered) + "\n\n" + model_tables(ordered, skip=README_ENCODERS))
        return
    rows = {}
    if arguments.resume and arguments.output.exists():
        rows = {row["encoder"]: row for row in json.loads(arguments.output.read_text())}
    for index, name in enumerate(names, start=1):
        if name in rows:
            continue
        print(f"[{index}/{len(names)}] {name} ...", end=" ", flush=True)
        start = time.perf_counter()
        command = [sys.executable, __file__, "--child", name, "--models", *arguments.models]
        child = subprocess.run(command, capture_output=True, text=True)
        if child.returncode != 0:
            print(f"failed:\n{child.stderr[-2000:]}", flush=True)
            continue
        rows[name] = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{rows[name]['parameters'] / 1e6:.1f}M parameters, {time.perf_counter() - start:.0f} s, "
              f"output strides {rows[name]['output_strides']}", flush=True)
        atomic_write_text(arguments.output, json.dumps(list(rows.values()), indent=1) + "\n")
    if arguments.markdown:
        print(markdown([rows[name] for name in names if name in rows]))


if __name__ == "__main__":
    main()
