"""SegNet's TFLite speed: the argmax pooling formulations side by side (issue 11, part 5).

For SegNet-Basic and SegNet (VGG16, weights None) the script builds the model once with each
formulation of `MaxPoolingWithArgmax2D` / `MaxUnpooling2D` in kerazoo.layers:
  reference: strided slices, comparisons and SELECTs on int32 indices (the layers before this change);
  fast:      reshapes, unit-stride slices, MAX_POOL_2D, 0/1 masks and DEPTH_TO_SPACE (what they run now),
and times, at each batch size (the two formulations' calls alternating), the Keras model (inside a tf.function) and the float32 and full-int8
.tflite files that `kerazoo.export` writes, run in LiteRT through `TFLiteRunner` (XNNPACK, its default
threads). Medians of single calls timed by `kerazoo.timing.median_ms`; random weights and inputs. All figures of one run are
taken side by side on the same (shared, noisy) machine: compare the ratios.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/segnet_tflite.py
    PYTHONPATH=$PWD .venv/bin/python benchmarks/segnet_tflite.py --models segnet_basic --image-size 128 --runs 3
"""

import argparse
import contextlib
import os
import statistics
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerazoo  # noqa: E402
from kerazoo import layers  # noqa: E402
from kerazoo.export import export  # noqa: E402
from kerazoo.export.runners import TFLiteRunner  # noqa: E402
from kerazoo.timing import median_ms  # noqa: E402

MODELS = {"segnet_basic": {}, "segnet": {"encoder": "vgg16", "encoder_weights": None}}
FORMULATIONS = ("reference", "fast")


@contextlib.contextmanager
def formulation(name):
    """Builds, traces and converts inside use the named pooling formulation (the layers look both up
    by their module-level names at call time)."""
    saved = layers._argmax_pool_fast, layers._unpool_fast
    if name == "reference":
        layers._argmax_pool_fast, layers._unpool_fast = layers._argmax_pool_reference, layers._unpool_reference
    try:
        yield
    finally:
        layers._argmax_pool_fast, layers._unpool_fast = saved


def build(model_name, form, size, images, calibration, out_dir):
    """{format: function(batch) -> output} for the Keras model and its float32 and int8 .tflite files,
    and the int8 file's argmax agreement with the Keras model."""
    with formulation(form):
        model = kerazoo.create_model(model_name, num_classes=12, input_shape=(*size, 3), **MODELS[model_name])
        # Traced here, inside the formulation, once for every batch size.
        spec = tf.TensorSpec((None, *size, 3), tf.float32)
        forward = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
        report = export(model, out_dir, formats=("tflite",), quantize=(None, "int8"),
                        representative_data=images[:calibration], sample_inputs=images[:2],
                        latency_runs=0, strict=False, verbose=False)
    runs = {"keras": forward}
    agreement = None
    for exported in report.files:
        if exported.path is None:
            print(f"  {model_name} {form} tflite {exported.variant} failed: {exported.error}")
            continue
        runner = TFLiteRunner(model_path=exported.path)
        runs[f"tflite_{exported.variant}"] = runner
        if exported.variant == "int8":
            agreement = exported.argmax_agreement
    return runs, agreement


def measure(model_name, size, batch_sizes, runs, calibration, out_dir):
    """{(formulation, format, batch): median ms}, {formulation: int8 argmax agreement}.

    The formulations' runs alternate call by call, so that the load of the shared machine falls on both alike.
    """
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (max(batch_sizes + [calibration]), *size, 3)).astype("float32")
    built = {form: build(model_name, form, size, images, calibration, os.path.join(out_dir, form))
             for form in FORMULATIONS}
    times = {}
    for fmt in ("keras", "tflite_float32", "tflite_int8"):
        for batch in batch_sizes:
            calls = {}
            for form, (runners, _) in built.items():
                runner = runners.get(fmt)
                if runner is None or (fmt != "keras" and runner.static_batch and batch != 1):
                    continue
                if fmt == "keras":
                    x = tf.constant(images[:batch])
                    calls[form] = lambda x=x, run=runner: run(x)
                else:
                    prepared = runner.prepare(images[:batch])
                    calls[form] = lambda prepared=prepared, run=runner: run.invoke(prepared)
            samples = {form: [] for form in calls}
            for _ in range(runs):
                for form, call in calls.items():
                    samples[form].append(median_ms(call, 1, warmup=1 if samples[form] else 2))
            for form, values in samples.items():
                times[form, fmt, batch] = statistics.median(values)
    return times, {form: agreement for form, (_, agreement) in built.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--image-size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument("--calibration", type=int, default=8, help="int8 calibration images")
    args = parser.parse_args(argv)
    rows = []
    for model_name in args.models:
        with tempfile.TemporaryDirectory() as out_dir:
            times, agreement = measure(model_name, tuple(args.image_size), args.batch_sizes, args.runs,
                                       args.calibration, out_dir)
        for form in FORMULATIONS:
            for batch in args.batch_sizes:
                row = {fmt: times.get((form, fmt, batch)) for fmt in ("keras", "tflite_float32", "tflite_int8")}
                rows.append((model_name, form, batch, row, agreement[form]))
                print(model_name, form, batch, row, agreement[form], flush=True)
    print(f"\n{args.image_size[0]}x{args.image_size[1]}, medians of {args.runs} runs, milliseconds")
    print("| model | formulation | batch | keras | tflite float32 | tflite int8 | float32 / keras | "
          "best float32 / int8 | int8 argmax agreement |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    cell = lambda value: "-" if value is None else f"{value:.1f}"  # noqa: E731
    for model_name, form, batch, row, agreement in rows:
        floats = [v for v in (row["keras"], row["tflite_float32"]) if v is not None]
        tflite, int8 = row["tflite_float32"], row["tflite_int8"]
        ratio = f"{tflite / row['keras']:.2f}" if tflite else "-"
        speedup = f"{min(floats) / int8:.2f}" if int8 else "-"
        agree = agreement
        print(f"| {model_name} | {form} | {batch} | {cell(row['keras'])} | {cell(tflite)} | {cell(int8)} | {ratio} | "
              f"{speedup} | {'-' if agree is None else f'{agree:.3f}'} |")


if __name__ == "__main__":
    main()
