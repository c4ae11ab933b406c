"""SegNet's TFLite speed: the argmax pooling formulations side by side (issue 11, part 5).

For SegNet-Basic and SegNet (VGG16, weights None) the script builds the model once with each
formulation of `MaxPoolingWithArgmax2D` / `MaxUnpooling2D` in kerazoo.layers:
  reference: strided slices, comparisons and SELECTs on int32 indices (the layers before this change);
  fast:      reshapes, unit-stride slices, MAX_POOL_2D, 0/1 masks and DEPTH_TO_SPACE (what they run now),
and times, at each batch size (all six calls in turn, round after round), the Keras model (inside a tf.function) and the float32 and full-int8
.tflite files that `kerazoo.export` writes, run in LiteRT through `TFLiteRunner` (XNNPACK, its default
threads). Medians of single calls timed by `kerazoo.utils.timing.median_ms`; random weights and inputs. All figures of one run are
taken side by side on the same (shared, noisy) machine: compare the ratios.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/segnet_tflite.py
    PYTHONPATH=$PWD .venv/bin/python benchmarks/segnet_tflite.py --models segnet_basic --image-size 128 128 --runs 3
    PYTHONPATH=$PWD .venv/bin/python benchmarks/segnet_tflite.py --layer-profile --runs 9   # one layer pair, why
"""

import argparse
import contextlib
import os
import statistics
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerazoo  # noqa: E402
from kerazoo import layers  # noqa: E402
from kerazoo.layers import pooling  # noqa: E402
from kerazoo.export import export  # noqa: E402
from kerazoo.export.runners import TFLiteRunner  # noqa: E402
from kerazoo.utils.timing import median_ms  # noqa: E402

MODELS = {"segnet_basic": {}, "segnet": {"encoder": "vgg16", "encoder_weights": None}}
FORMULATIONS = ("reference", "fast")


@contextlib.contextmanager
def formulation(name):
    """Builds, traces and converts inside use the named pooling formulation (the layers look both up
    by their module-level names at call time)."""
    saved = pooling._argmax_pool_fast, pooling._unpool_fast
    if name == "reference":
        pooling._argmax_pool_fast, pooling._unpool_fast = pooling._argmax_pool_reference, pooling._unpool_reference
    try:
        yield
    finally:
        pooling._argmax_pool_fast, pooling._unpool_fast = saved


def build(model_name, form, size, images, calibration, out_dir):
    """{format: function(batch) -> output} for the Keras model and its float32 and int8 .tflite files,
    and the int8 file's argmax agreement with the Keras model."""
    with formulation(form):
        keras.utils.set_random_seed(0)  # the same weights for both formulations
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

    Every (formulation, format) takes one call in turn, so that the load of the shared machine falls on all alike.
    """
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (max(batch_sizes + [calibration]), *size, 3)).astype("float32")
    built = {form: build(model_name, form, size, images, calibration, os.path.join(out_dir, form))
             for form in FORMULATIONS}
    times = {}
    for batch in batch_sizes:
        calls = {}
        for form, (runners, _) in built.items():
            for fmt, runner in runners.items():
                if fmt == "keras":
                    calls[form, fmt] = lambda x=tf.constant(images[:batch]), run=runner: run(x)
                elif not runner.static_batch or batch == 1:
                    calls[form, fmt] = lambda prepared=runner.prepare(images[:batch]), run=runner: run.invoke(prepared)
        samples = {key: [] for key in calls}
        for _ in range(runs):
            for key, call in calls.items():
                samples[key].append(median_ms(call, 1, warmup=1 if samples[key] else 2))
        for (form, fmt), values in samples.items():
            times[form, fmt, batch] = statistics.median(values)
    return times, {form: agreement for form, (_, agreement) in built.items()}


def convert_pair(form, shape, int8):
    """.tflite bytes of one argmax pooling + unpooling pair on (1, H, W, C) inputs, float32 or full int8."""
    with formulation(form):
        inputs = keras.Input(shape[1:], batch_size=1)
        pooled, indices = layers.MaxPoolingWithArgmax2D(2)(inputs)
        model = keras.Model(inputs, layers.MaxUnpooling2D(2)([pooled, indices, inputs]))
        function = tf.function(lambda x: model(x, training=False)).get_concrete_function(tf.TensorSpec(shape))
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if int8:
            rng = np.random.default_rng(1)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.representative_dataset = lambda: ([rng.normal(size=shape).astype("float32")] for _ in range(4))
        return converter.convert()


def layer_profile(size, channels, runs):
    """One pooling + unpooling pair in LiteRT, per formulation: median ms with XNNPACK and with the
    builtin kernels only, the ops, and (int8) the ops that still compute in float32."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    shape = (1, *size, channels)
    x = np.random.default_rng(2).normal(size=shape).astype("float32")
    print(f"\nOne MaxPoolingWithArgmax2D + MaxUnpooling2D pair, input {shape}, medians of {runs} runs, milliseconds")
    print("| formulation | variant | XNNPACK | builtin kernels only | ops | ops computing in float32 |")
    print("|---|---|---:|---:|---|---|")
    for int8 in (False, True):
        for form in FORMULATIONS:
            content = convert_pair(form, shape, int8)
            timed = []
            for resolver in (OpResolverType.AUTO, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES):
                interpreter = Interpreter(model_content=content, experimental_op_resolver_type=resolver)
                interpreter.allocate_tensors()
                interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
                timed.append(median_ms(interpreter.invoke, runs, warmup=2))
            dtypes = {d["index"]: d["dtype"] for d in interpreter.get_tensor_details()}
            details = interpreter._get_ops_details()
            names = sorted({d["op_name"] for d in details})
            floating = sorted({d["op_name"] for d in details if d["op_name"] not in ("QUANTIZE", "DELEGATE")
                               and any(dtypes[i] == np.float32 for i in d["inputs"] if i >= 0)})
            print(f"| {form} | {'int8' if int8 else 'float32'} | {timed[0]:.1f} | {timed[1]:.1f} | {', '.join(names)} | "
                  f"{', '.join(floating) if int8 else '-'} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--image-size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument("--calibration", type=int, default=8, help="int8 calibration images")
    parser.add_argument("--layer-profile", action="store_true",
                        help="only time one pooling + unpooling pair (64 channels) per formulation")
    args = parser.parse_args(argv)
    if args.layer_profile:
        layer_profile(tuple(args.image_size), 64, args.runs)
        return
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
