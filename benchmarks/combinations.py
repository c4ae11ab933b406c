"""Every model x encoder the registries allow: built (random weights, 12 classes), run at an odd size, its
parameters counted; optionally exported (TFLite float32, float16 and int8, and ONNX through `kerazoo.export`,
parity checked, Flex and custom ops counted). Writes benchmarks/combinations.json, the README's models x encoders
table and the report export_matrix/COMBINATIONS.md.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/combinations.py                 # every combination, builds only
    PYTHONPATH=$PWD .venv/bin/python benchmarks/combinations.py --export --encoders mobilenetv2 resnet50
    PYTHONPATH=$PWD .venv/bin/python benchmarks/combinations.py --export --models unet
    PYTHONPATH=$PWD .venv/bin/python benchmarks/combinations.py --readme        # README.md's table, from the JSON
    PYTHONPATH=$PWD .venv/bin/python benchmarks/combinations.py --report        # export_matrix/COMBINATIONS.md

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
    from kerazoo.models import model_encoder_pairs

    chosen = {}
    for model, encoder in model_encoder_pairs():
        if encoders is None or (encoder or OWN_TOPOLOGY) in encoders:
            chosen.setdefault(encoder or OWN_TOPOLOGY, []).append(model)
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
            row["export"], row["export_agreement"] = export_status(model, sample)
        rows.append(row)
        keras.backend.clear_session()
    return rows


EXPORT_VARIANTS = (None, "float16", "int8")  # TFLite variants; ONNX is float32


def export_status(model, sample):
    """{file: "ok" or why not}, {file: argmax agreement}: TFLite float32/float16/int8 and ONNX, each reloaded
    and compared with Keras. "ok" = converted with builtin ops only, ran, and met its parity contract (int8
    has none: converted and ran)."""
    import numpy as np

    from kerazoo.export import export

    status, agreement = {}, {}
    calibration = np.random.default_rng(1).uniform(0, 255, (4, *sample.shape[1:])).astype("float32")
    with tempfile.TemporaryDirectory(prefix="kerazoo_combination_") as folder:
        try:
            report = export(model, folder, formats=("tflite", "onnx"), quantize=EXPORT_VARIANTS,
                            representative_data=calibration, num_calibration=len(calibration), latency_runs=0,
                            verbose=False, strict=False, sample_inputs=sample)
        except Exception as error:
            return {"export": f"{type(error).__name__}: {str(error)[:300]}"}, {}
        for exported in report.files:
            key = f"{exported.format}_{exported.variant}"
            foreign = [op for op in exported.ops if op.startswith(("FLEX", "CUSTOM"))]
            agreement[key] = exported.argmax_agreement
            if exported.error:
                status[key] = f"error: {exported.error[:300]}"
            elif foreign:
                status[key] = f"non-builtin ops {foreign}"
            elif exported.passed is False:
                status[key] = f"parity: agree {exported.argmax_agreement}"
            else:
                status[key] = "ok"
            if any("more dynamic signature failed" in note for note in exported.notes):
                status[key] += " (fixed size)"  # TFLite fell back to the sample's height and width
    return status, agreement


FORMAT_COLUMNS = ("tflite_float32", "tflite_float16", "tflite_int8", "onnx_float32")
OWN_TOPOLOGY_ROW = "own topology"  # the README's row of the models built without an encoder
REPORT = Path(__file__).parent.parent / "export_matrix" / "COMBINATIONS.md"
README = Path(__file__).parent.parent / "README.md"
README_SECTION = "## Models x encoders"


def exported_ok(row):
    """True/False once exported (every file "ok"), None when not exported."""
    if "export" not in row:
        return None
    return all(value.startswith("ok") for value in row["export"].values())


def _cell(row):
    if row["build"] != "ok":
        return "fails"
    return format_millions(row["parameters"]) + {None: "", True: " ✓", False: " ✗"}[exported_ok(row)]


def readme_table(rows):
    """The README's table: one row per encoder (registry order) and a last one for the models built without
    an encoder; one column per model (registry order)."""
    import kerazoo
    from kerazoo.encoders import list_encoders

    found = {(row["model"], row["encoder"]): row for row in rows}
    models = [name for name in kerazoo.list_models() if any(model == name for model, _ in found)]
    lines = ["| encoder | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    for encoder in [*list_encoders(), OWN_TOPOLOGY]:
        cells = [_cell(found[(model, encoder)]) if (model, encoder) in found else "" for model in models]
        if any(cells):
            lines.append(f"| {OWN_TOPOLOGY_ROW if encoder == OWN_TOPOLOGY else encoder} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def with_readme_table(text, table):
    """`text` (the README) with the first table of its models x encoders section replaced by `table`."""
    head, found, section = text.partition(README_SECTION + "\n")
    if not found:
        raise ValueError(f"README.md has no line {README_SECTION!r}")
    lines = section.split("\n")
    first = next(index for index, line in enumerate(lines) if line.startswith("|"))
    last = next((index for index in range(first, len(lines)) if not lines[index].startswith("|")), len(lines))
    return head + found + "\n".join(lines[:first] + table.split("\n") + lines[last:])


def export_report(saved):
    """The committed export matrix (export_matrix/COMBINATIONS.md): a summary, every miss with its reason,
    then one line per exported combination and file."""
    rows = saved["rows"]
    exported = [row for row in rows if "export" in row]
    built = [row for row in rows if row["build"] == "ok"]
    lines = [
        "# Every model x encoder: builds and exports",
        "",
        f"Written by `python benchmarks/combinations.py --report` from benchmarks/combinations.json ({saved['date']}, "
        f"{saved['machine']}). Each combination: random weights, {saved['num_classes']} classes, built and run at "
        f"{saved['size'][0]}x{saved['size'][1]} (odd on purpose). Exported ones: `kerazoo.export.export` to TFLite "
        "float32, float16 and int8 (calibrated on 4 random images) and ONNX float32, each file reloaded in its "
        "runtime (ai_edge_litert, onnxruntime) and compared with Keras on one image. `ok` = builtin TFLite ops "
        "only (no Flex, no custom), ran, and met its parity contract (float32: max |diff| <= 1e-4 of the output "
        "range and argmax agreement >= 0.999; float16: agreement >= 0.99; int8 has no contract, its agreement is "
        "given). `(fixed size)`: TFLite needed the sample's height and width (batch still dynamic).",
        "",
        "Reading the int8 agreement: the weights are random. Decoders that read only the deepest features of a "
        "random MobileNetV2 (DeepLabV3, PSPNet, FCN-32s) agree on almost no pixel, because those features are "
        "about 1e-11 and int8 rounds them to zero (docs/models.md, the pyramid decoders' export); the others "
        "agree on most pixels (the table). With the batch-norm statistics set from a batch (sane "
        "ranges), DeepLabV3 int8 agreed on 1.0 of the pixels and PSPNet on 0.94.",
        "",
        "Reading a float32 miss: deep random networks with identity batch-norm statistics grow large inner "
        "activations next to a small output range, so float32 rounding in another runtime shows up relative to "
        "that range. `python benchmarks/export_with_batch_statistics.py efficientnetv2m` exports U-Net on "
        "EfficientNetV2-M both ways: with random statistics TFLite float32 misses (relative 1.9e-3, agreement "
        "0.9974; ONNX 2.3e-3, 0.9972; float16 0.78), with statistics from one batch of random images every file "
        "meets its contract (TFLite float32 7.6e-7 and 1.0000, float16 0.9993, ONNX 6.7e-7 and 1.0000).",
        "EfficientNetV2-L is past that: the same command gives an output range of 1.2e5 with random statistics "
        "(3.8e4 from a batch, its stochastic depth dropping branches while the statistics are taken) and TFLite "
        "and ONNX float32 both agree with Keras on about half of the pixels either way; its int8 file aborts "
        "LiteRT (`free(): double free`) on every run. Not resolved: a trained EfficientNetV2-L is the test "
        "that would tell a runtime's fault from a random network's numbers.",
        "",
        "Reading SegNet's float16 miss on VGG16 (agreement 0.9618): the model's, not the runtime's. "
        "`python benchmarks/float16_weights_in_keras.py segnet vgg16` rounds the weights to float16 in Keras itself "
        "and agrees with the float32 model on 0.9593 of the pixels: 0.01-0.07% of the pooling indices flip and 93% "
        "of the random network's pixels are near-ties. With batch-norm statistics from a batch the TFLite float16 "
        "file agrees on 0.7691 (`benchmarks/export_with_batch_statistics.py vgg16 --model segnet`); the trained SegNet-Basic "
        "`camvid_segnet_basic` agrees on 0.9990 of CamVid val in float16 (export_matrix/REAL_DATA.md). "
        "SegNet-Basic with random weights the same way: TFLite float16 0.9747, float16 weights in Keras 0.9849 "
        "(`... float16_weights_in_keras.py segnet_basic -`; half of its pixels are near-ties); SegNet on VGG19: "
        "TFLite float16 0.9510, float16 weights in Keras 0.9436.",
        "",
        "## Summary",
        "",
        "Cells of the table: parameters with ✓ (every exported file ok), ✗ (a miss, listed below) or no mark (built "
        "and run, not exported).",
        "",
        readme_table(rows),
        "",
        f"- Built and run: {len(built)} of {len(rows)} combinations.",
        f"- Exported: {len(exported)} combinations, {sum(len(row['export']) for row in exported)} files; "
        f"every file ok: {sum(bool(exported_ok(row)) for row in exported)} combinations.",
    ]
    for column in FORMAT_COLUMNS:
        statuses = [row["export"].get(column, "missing") for row in exported]
        fixed = sum("(fixed size)" in status for status in statuses)
        lines.append(f"- {column}: {sum(status.startswith('ok') for status in statuses)} ok of {len(statuses)}"
                     + (f" ({fixed} at a fixed size)" if fixed else ""))
    misses = [(row, column, status) for row in exported for column, status in row["export"].items()
              if not status.startswith("ok")]
    misses += [(row, "build", row["build"]) for row in rows if row["build"] != "ok"]
    lines += ["", "## Misses", ""]
    lines += [f"- {row['model']} on {row['encoder']}, {column}: {' '.join(status.split())}"
              for row, column, status in misses] or ["None."]
    lines += ["", "## Exported combinations", "",
              "| model | encoder | parameters | " + " | ".join(FORMAT_COLUMNS) + " |",
              "|---|---|---:|" + "---|" * len(FORMAT_COLUMNS)]
    for row in sorted(exported, key=lambda row: (row["model"], row["encoder"])):
        cells = []
        for column in FORMAT_COLUMNS:
            status = row["export"].get(column, "missing")
            agreement = row.get("export_agreement", {}).get(column)
            cells.append(status + (f", agree {agreement:.4f}" if agreement is not None else ""))
        lines.append(f"| {row['model']} | {row['encoder']} | {format_millions(row.get('parameters', 0))} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_child(encoder, models, export):
    """Rows of `models` on `encoder`, measured in a child process. A child that crashes while exporting (a
    runtime aborting, say) is run again without exporting; its rows then say how the export ended."""
    command = [sys.executable, __file__, "--child", encoder, "--models", *models, *(["--export"] if export else [])]
    child = subprocess.run(command, capture_output=True, text=True)
    if child.returncode == 0:
        return json.loads(child.stdout.strip().splitlines()[-1])
    last_lines = [line for line in child.stderr.splitlines() if line.strip()][-2:]
    reason = f"child process exited {child.returncode}: " + " / ".join(last_lines)[-200:]
    if not export:  # a crash while building (out of memory, say) is recorded against every model of the child
        return [{"model": model, "encoder": encoder, "build": reason} for model in models]
    rows = run_child(encoder, models, export=False)
    for row in rows:
        if row["build"] == "ok":
            row["export"] = {"export": f"crashed: {reason}"}
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoders", nargs="*", help="names (default: every encoder, and the own topologies '-')")
    parser.add_argument("--export", action="store_true", help="also export each to TFLite float32 and ONNX")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--again", action="store_true", help="measure encoders already in --output again")
    parser.add_argument("--readme", action="store_true", help="rewrite README.md's table from --output; measure nothing")
    parser.add_argument("--report", action="store_true",
                        help=f"write {REPORT.relative_to(REPORT.parent.parent)} from --output; measure nothing")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="*", help="names (default: every model)")
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(measure(arguments.child, arguments.models, arguments.export)))
        return
    from kerazoo.utils.cpu import cpu_kind
    from kerazoo.utils.files import atomic_write_text

    saved = json.loads(arguments.output.read_text()) if arguments.output.exists() else {"rows": []}
    if arguments.readme:
        atomic_write_text(README, with_readme_table(README.read_text(), readme_table(saved["rows"])))
        print(f"rewrote the table of {README.name}'s section {README_SECTION!r}")
        return
    if arguments.report:
        atomic_write_text(REPORT, export_report(saved))
        print(f"wrote {REPORT}")
        return
    rows = {(row["model"], row["encoder"]): row for row in saved["rows"]}
    chosen = combinations(set(arguments.encoders) if arguments.encoders else None)
    if arguments.models:
        chosen = {encoder: [model for model in models if model in arguments.models]
                  for encoder, models in chosen.items()}
        chosen = {encoder: models for encoder, models in chosen.items() if models}
    for index, (encoder, models) in enumerate(chosen.items(), start=1):
        if not arguments.again:  # go on from what an earlier run measured
            models = [model for model in models if (model, encoder) not in rows
                      or (arguments.export and "export" not in rows[(model, encoder)])]
        if not models:
            continue
        print(f"[{index}/{len(chosen)}] {encoder}: {len(models)} models ...", end=" ", flush=True)
        start = time.perf_counter()
        if arguments.export:  # one child per model: a runtime that aborts takes only its own row down
            measured = [row for model in models for row in run_child(encoder, [model], export=True)]
        else:
            measured = run_child(encoder, models, export=False)
        for row in measured:
            rows[(row["model"], row["encoder"])] = row
        failed = [row["model"] for row in measured if row["build"] != "ok" or exported_ok(row) is False]
        print(f"{time.perf_counter() - start:.0f} s, " + (f"FAILED: {failed}" if failed else "all ok"), flush=True)
        cpu = cpu_kind()
        result = {"machine": f"{cpu['model_name']} ({cpu['kind']})", "size": list(SIZE), "num_classes": NUM_CLASSES,
                  "date": time.strftime("%Y-%m-%d"), "rows": list(rows.values())}
        atomic_write_text(arguments.output, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
