"""Every model x encoder the registries allow: built (random weights, 12 classes), run at an odd size, its
parameters counted; optionally exported (TFLite float32 and ONNX through `kerazoo.export`, parity checked, Flex
and custom ops counted). Writes benchmarks/combinations.json and prints the README's models x encoders table.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/combinations.py                 # every combination, builds only
    PYTHONPATH=$PWD .venv/bin/python benchmarks/combinations.py --export --encoders mobilenetv2 resnet50
    PYTHONPATH=$PWD .venv/bin/python benchmarks/combinations.py --readme        # the table, from the JSON

Each encoder runs in a child process (the large ones hold gigabytes); results are written after each encoder
(atomically), so an interrupted run keeps what it measured and the next run (without --again) goes on from there.
Nothing here is typed per model or encoder: the rows follow `kerazoo.list_models()` and `model_encoders()`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from encoders import format_millions  # benchmarks/encoders.py, beside this script: the README's way of writing counts

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

OUTPUT = Path(__file__).with_name("combinations.json")
SIZE = (67, 91)  # odd on purpose: every model pads to its stride and crops back
NUM_CLASSES = 12
OWN_TOPOLOGY = "-"  # the encoder column of models that have none


def combinations(encoders=None):
    """{encoder or OWN_TOPOLOGY: [model, ...]} from the registries."""
    import kerazoo
    from kerazoo.models import model_encoders

    chosen = {}
    for model in kerazoo.list_models():
        for encoder in model_encoders(model) or [OWN_TOPOLOGY]:
            if encoders is None or encoder in encoders:
                chosen.setdefault(encoder, []).append(model)
    return chosen


def measure(encoder, models, export_files=False):
    """Rows of one encoder (runs in the child process)."""
    import keras
    import numpy as np

    import kerazoo

    rows = []
    image = np.random.default_rng(0).uniform(0, 255, (1, *SIZE, 3)).astype("float32")
    for model_name in models:
        row = {"model": model_name, "encoder": encoder}
        start = time.perf_counter()
        try:
            keras.utils.set_random_seed(0)
            model = kerazoo.create_model(model_name, encoder=None if encoder == OWN_TOPOLOGY else encoder,
                                         num_classes=NUM_CLASSES)
            row["parameters"] = int(model.count_params())
            fixed = model.input.shape[1:3]
            sample = image if None in fixed else np.random.default_rng(0).uniform(
                0, 255, (1, *fixed, model.input.shape[-1])).astype("float32")
            output = keras.ops.convert_to_numpy(model(sample))
            expected = (*(sample.shape[1:3] if model_name != "unet_paper" else output.shape[1:3]), NUM_CLASSES)
            row["build"] = "ok" if output.shape[1:] == expected and np.isfinite(output).all() else (
                f"output {output.shape[1:]}, expected {expected}")
        except Exception as error:  # the table records what fails, and why
            row["build"] = f"{type(error).__name__}: {str(error)[:300]}"
        row["seconds"] = round(time.perf_counter() - start, 1)
        if export_files and row["build"] == "ok":
            row["export"] = export_status(model, sample)
        rows.append(row)
        keras.backend.clear_session()
    return rows


def export_status(model, sample):
    """{variant: "ok" or why not} for TFLite float32 and ONNX, each reloaded and compared with Keras."""
    from kerazoo.export import export

    status = {}
    with tempfile.TemporaryDirectory(prefix="kerazoo_combination_") as folder:
        try:
            report = export(model, folder, formats=("tflite", "onnx"), quantize=(None,), latency_runs=0,
                            verbose=False, strict=False, sample_inputs=sample)
        except Exception as error:
            return {"export": f"{type(error).__name__}: {str(error)[:300]}"}
        for exported in report.files:
            key = f"{exported.format}_{exported.variant}"
            foreign = [op for op in exported.ops if op.startswith(("FLEX", "CUSTOM"))]
            if exported.error:
                status[key] = f"error: {exported.error[:300]}"
            elif foreign:
                status[key] = f"non-builtin ops {foreign}"
            else:
                status[key] = "ok" if exported.passed else f"parity: agree {exported.argmax_agreement}"
    return status


def _cell(row):
    if row["build"] != "ok":
        return "fails"
    mark = ""
    if "export" in row:
        mark = " ✓" if all(value == "ok" for value in row["export"].values()) else " ✗"
    return format_millions(row["parameters"]) + mark


def readme_table(rows):
    """The README's table: one row per encoder (registry order), one column per model; own topologies last."""
    import kerazoo
    from kerazoo.encoders import list_encoders

    found = {(row["model"], row["encoder"]): row for row in rows}
    models = [name for name in kerazoo.list_models() if any(key[0] == name and key[1] != OWN_TOPOLOGY
                                                            for key in found)]
    lines = ["| encoder | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for encoder in [*list_encoders(), OWN_TOPOLOGY]:
        if encoder == OWN_TOPOLOGY:
            continue
        cells = [_cell(found[(model, encoder)]) if (model, encoder) in found else "" for model in models]
        if any(cells):
            lines.append(f"| {encoder} | " + " | ".join(cells) + " |")
    own = [f"{model} {_cell(row)}" for (model, encoder), row in sorted(found.items()) if encoder == OWN_TOPOLOGY]
    return "\n".join(lines) + ("\n\nOwn topologies: " + ", ".join(own) + "." if own else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoders", nargs="*", help="names (default: every encoder, and the own topologies '-')")
    parser.add_argument("--export", action="store_true", help="also export each to TFLite float32 and ONNX")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--again", action="store_true", help="measure encoders already in --output again")
    parser.add_argument("--readme", action="store_true", help="print the README table from --output; measure nothing")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="*", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(measure(arguments.child, arguments.models, arguments.export)))
        return
    from kerazoo.utils.cpu import cpu_kind
    from kerazoo.utils.files import atomic_write_text

    saved = json.loads(arguments.output.read_text()) if arguments.output.exists() else {"rows": []}
    if arguments.readme:
        print(readme_table(saved["rows"]))
        return
    rows = {(row["model"], row["encoder"]): row for row in saved["rows"]}
    chosen = combinations(set(arguments.encoders) if arguments.encoders else None)
    for index, (encoder, models) in enumerate(chosen.items(), start=1):
        done = all((model, encoder) in rows and ("export" in rows[(model, encoder)] or not arguments.export)
                   for model in models)
        if done and not arguments.again:
            continue
        print(f"[{index}/{len(chosen)}] {encoder}: {len(models)} models ...", end=" ", flush=True)
        start = time.perf_counter()
        command = [sys.executable, __file__, "--child", encoder, "--models", *models,
                   *(["--export"] if arguments.export else [])]
        child = subprocess.run(command, capture_output=True, text=True)
        if child.returncode != 0:  # a crash (out of memory, say) is recorded against every model of the encoder
            reason = f"child process exited {child.returncode}: {child.stderr[-300:]}"
            measured = [{"model": model, "encoder": encoder, "build": reason} for model in models]
        else:
            measured = json.loads(child.stdout.strip().splitlines()[-1])
        for row in measured:
            rows[(row["model"], row["encoder"])] = row
        failed = [row["model"] for row in measured if row["build"] != "ok" or
                  any(value != "ok" for value in row.get("export", {}).values())]
        print(f"{time.perf_counter() - start:.0f} s, " + (f"FAILED: {failed}" if failed else "all ok"), flush=True)
        cpu = cpu_kind()
        result = {"machine": f"{cpu['model_name']} ({cpu['kind']})", "size": list(SIZE), "num_classes": NUM_CLASSES,
                  "date": time.strftime("%Y-%m-%d"), "rows": list(rows.values())}
        atomic_write_text(arguments.output, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
