"""The fastest CPU inference path per exported format, against the physical limit (benchmarks/INFERENCE.md).

    KERAS_BACKEND=tensorflow python benchmarks/inference.py [--encoders mobilenetv2 resnet50] [--rounds 3]

U-Net (random weights, 12 classes, 256x256) per encoder, exported once by `kerazoo.export`, then timed in
one process on the same input: Keras (the model inside a `tf.function`), LiteRT float32 with LiteRT's own
thread default and with kerazoo's (one per physical core), LiteRT int8, ONNX Runtime with its default
session and with `kerazoo.export.onnx_session`'s tuned one, and OpenVINO (float32, and bfloat16 for
reference). Before the table: each ONNX Runtime session option alone, and LiteRT's thread counts.

The machine is shared: runners are timed round-robin (`--rounds` rounds of `--runs` timed calls, median
of the round medians), so that a change in load falls on every runner alike. Compare ratios of one run.
Batch-1 % of peak = forward FLOPs (TensorFlow's profiler) / latency / the float32 matmul peak
(`kerazoo.bench.benchmark.measure_peak_flops`); the physical limit of a batch-1 forward is FLOPs / peak.
"""

import argparse
import os
import statistics
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerazoo  # noqa: E402
from kerazoo.bench.benchmark import Case, forward_flops, measure_peak_flops  # noqa: E402
from kerazoo.export import TFLiteRunner, onnx_runner, openvino_runner, physical_cores  # noqa: E402
from kerazoo.utils.timing import median_ms  # noqa: E402

IMAGE_SIZE = (256, 256)
NUM_CLASSES = 12
BATCH_SIZES = (1, 8)
# Each ONNX Runtime option alone on top of the default session: the evidence for `onnx_session`.
ORT_OPTIONS = {
    "default": {},
    "intra_op_num_threads=physical cores": {"intra_op_num_threads": "cores"},
    "intra_op_num_threads=1": {"intra_op_num_threads": 1},
    "allow_spinning=0": {"config": {"session.intra_op.allow_spinning": "0"}},
    "graph_optimization_level=EXTENDED": {"graph_optimization_level": "ORT_ENABLE_EXTENDED"},
    "execution_mode=PARALLEL": {"execution_mode": "ORT_PARALLEL"},
    "enable_cpu_mem_arena=False": {"enable_cpu_mem_arena": False},
    "tuned (onnx_session)": "tuned",
}


def ort_option_runner(path, option):
    """A runner of the .onnx file with one session option set (ORT_OPTIONS), or the tuned session."""
    import onnxruntime

    if option == "tuned":
        return onnx_runner(path)
    options = onnxruntime.SessionOptions()
    for key, value in option.items():
        if key == "config":
            for entry, setting in value.items():
                options.add_session_config_entry(entry, setting)
        elif key == "graph_optimization_level":
            options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, value)
        elif key == "execution_mode":
            options.execution_mode = getattr(onnxruntime.ExecutionMode, value)
        else:
            setattr(options, key, physical_cores() if value == "cores" else value)
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def litert_runner(path, num_threads):
    runner = TFLiteRunner(path, num_threads=num_threads)
    if runner.static_batch:
        return None
    return runner


def round_robin(runners, batch, rounds, runs):
    """{name: median over `rounds` of each round's median ms}; runners are taken in turn each round."""
    medians = {name: [] for name in runners}
    prepared = {name: (run.prepare(batch) if isinstance(run, TFLiteRunner) else batch) for name, run in runners.items()}
    for _ in range(rounds):
        for name, run in runners.items():
            call = (lambda r=run, x=prepared[name]: r.invoke(x)) if isinstance(run, TFLiteRunner) else (
                lambda r=run, x=prepared[name]: r(x))
            medians[name].append(median_ms(call, runs, warmup=1))
    return {name: statistics.median(values) for name, values in medians.items()}


def export_files(model, out_dir):
    """{format label: path} of the files kerazoo.export writes for the benchmark."""
    calibration = np.random.default_rng(1).uniform(0, 255, (8, *IMAGE_SIZE, 3)).astype("float32")
    report = kerazoo.export(model, out_dir, formats=["tflite", "onnx", "openvino"], quantize=[None, "int8"],
                            representative_data=calibration, num_calibration=8, latency_runs=0, strict=False,
                            verbose=False)
    files = {}
    for exported in report.files:
        label = exported.format + ("_int8" if exported.variant == "int8" else "")
        if exported.error:
            print(f"  {label}: {exported.error}")
        if exported.path:
            files[label] = exported.path
    return files


def benchmark_case(encoder, peak_gflops, rounds, runs):
    """Prints the option sweeps and the per-format table of one U-Net encoder; returns its rows."""
    keras.utils.set_random_seed(0)
    case = Case("unet", encoder, IMAGE_SIZE)
    model = case.create_model(NUM_CLASSES)
    flops = forward_flops(model, IMAGE_SIZE)
    limit_ms = flops / (peak_gflops * 1e9) * 1000
    print(f"\n## U-Net {encoder} {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}: {flops / 1e9:.2f} GFLOP per image, "
          f"physical limit at batch 1: {limit_ms:.1f} ms")
    with tempfile.TemporaryDirectory(prefix="kerazoo_inference_") as out_dir:
        files = export_files(model, out_dir)
        single = np.random.default_rng(2).uniform(0, 255, (1, *IMAGE_SIZE, 3)).astype("float32")

        print("\nONNX Runtime, one option at a time (batch 1, ms):")
        sweep = round_robin({label: ort_option_runner(files["onnx"], option) for label, option in ORT_OPTIONS.items()},
                            single, rounds, runs)
        for label, ms in sweep.items():
            print(f"  {label:38s} {ms:8.1f}  ({ms / sweep['default']:.2f} of default)")

        print("\nLiteRT threads (batch 1, ms):")
        thread_runners = {f"{kind} num_threads={threads}": litert_runner(files[key], threads)
                          for kind, key in (("float32", "tflite"), ("int8", "tflite_int8"))
                          for threads in (None, 1, physical_cores())}
        for label, ms in round_robin({k: v for k, v in thread_runners.items() if v}, single, rounds, runs).items():
            print(f"  {label:38s} {ms:8.1f}")
        del sweep, thread_runners

        call = tf.function(lambda x: model(x, training=False))
        runners = {
            "keras (tf.function)": lambda batch: call(tf.constant(batch)).numpy(),
            "tflite_float32, LiteRT default threads": litert_runner(files["tflite"], None),
            "tflite_float32, tuned": litert_runner(files["tflite"], "auto"),
            "tflite_int8, tuned": litert_runner(files["tflite_int8"], "auto"),
            "onnx, default session": onnx_runner(files["onnx"], tuned=False),
            "onnx, tuned": onnx_runner(files["onnx"]),
        }
        if "openvino" in files:
            runners["openvino float32, tuned"] = openvino_runner(files["openvino"])
            runners["openvino bfloat16 (not float32)"] = openvino_runner(files["openvino"], precision="bf16")
        table = {}
        for batch_size in BATCH_SIZES:
            batch = np.random.default_rng(2).uniform(0, 255, (batch_size, *IMAGE_SIZE, 3)).astype("float32")
            usable = {name: run for name, run in runners.items() if run is not None and not (
                batch_size > 1 and getattr(run, "static_batch", False))}
            for name, ms in round_robin(usable, batch, rounds, runs).items():
                table.setdefault(name, {})[batch_size] = ms
    best = min(ms[1] for name, ms in table.items() if "int8" not in name and "bfloat16" not in name)
    print("\n| runtime | batch 1 ms | batch 8 ms/image | batch 1 % of peak | x physical limit | / best float32 |")
    print("|---|---|---|---|---|---|")
    for name, ms in table.items():
        per_image = f"{ms[8] / 8:.1f}" if 8 in ms else "-"
        print(f"| {name} | {ms[1]:.1f} | {per_image} | {100 * limit_ms / ms[1]:.0f}% | {ms[1] / limit_ms:.2f} | "
              f"{ms[1] / best:.2f} |")
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=["mobilenetv2", "resnet50"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"physical cores available: {physical_cores()}; load average {os.getloadavg()[0]:.2f}")
    peak = measure_peak_flops()["peak_gflops"]
    print(f"float32 matmul peak (TensorFlow, 4096^3): {peak:.0f} GFLOP/s")
    for encoder in args.encoders:
        benchmark_case(encoder, peak, args.rounds, args.runs)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
