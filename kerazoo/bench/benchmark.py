"""Speed and memory harness: training images/s, inference latency per format and batch size, peak
memory and FLOPs, per model x encoder x input size, with segmentation-models-pytorch side by side.

    kerazoo benchmark --model unet --encoder resnet50 --image-size 256x256 --option upsampling=nearest --peer
    kerazoo.bench.benchmark.run([Case("unet", "resnet50", (256, 256), (("upsampling", "nearest"),))], peer=True)

kerazoo trains in each Keras dtype policy of `PRECISIONS` (float32, mixed_bfloat16); the peer runs in each
of its modes (`kerazoo.bench.peer.PEER_MODES`: float32 eager, bf16 autocast, torch.compile), and each kerazoo
precision is compared with the peer's fastest mode of the same precision class.

Every measurement (the machine's peak, training, each inference format, each peer side) runs in a
fresh process, so that its peak resident memory is its own and no runtime's thread pools or caches
help another. Times are medians over `runs` timed steps after `warmup` untimed ones. The machines
here are shared and noisy: compare figures of one run (the ratios), not figures of different runs.

FLOPs are counted per forward pass of one image by the framework's own counter (TensorFlow's
profiler for kerazoo, `torch.utils.flop_counter` for the peer); a multiply-add counts 2. Training
FLOPs are taken as 3x the forward pass (the backward pass costs about twice the forward). The
fraction of peak divides achieved FLOP/s by the machine's measured peak: a float32 4096^3 matrix
product in TensorFlow, median of 10.
"""

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from kerazoo.utils.cpu import bfloat16_support, cpu_kind  # noqa: E402
from kerazoo.bench.tables import markdown  # noqa: E402,F401  (the tables: kerazoo.bench.benchmark.markdown)
from kerazoo.utils.files import atomic_write_text  # noqa: E402
from kerazoo.utils.timing import median_ms, timed_runs  # noqa: E402

FORMATS = ("keras", "tflite_float32", "tflite_int8", "onnx")
# kerazoo.export's file for each format: (export format, TFLite quantize variant)
_EXPORTED = {"tflite_float32": ("tflite", None), "tflite_int8": ("tflite", "int8"), "onnx": ("onnx", None)}
TRAINING_FLOPS_PER_FORWARD = 3
PRECISIONS = ("float32", "mixed_bfloat16")  # Keras dtype policies kerazoo is measured in


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmarked configuration: `create_model(model, encoder=..., **options)` at `image_size`.

    Args:
        model: a name from `kerazoo.list_models()`.
        encoder: an encoder name, or None for a model with its own topology.
        image_size: (height, width) of the input.
        options: (key, value) pairs passed to `create_model`, e.g. (("upsampling", "nearest"),).
    """

    model: str
    encoder: str | None
    image_size: tuple
    options: tuple = ()

    @property
    def label(self):
        options = "".join(f", {key}={value}" for key, value in self.options)
        encoder = f"/{self.encoder}" if self.encoder else ""
        return f"{self.model}{encoder} {self.image_size[0]}x{self.image_size[1]}{options}"

    def create_model(self, num_classes):
        from kerazoo.models import create_model

        kwargs = dict(self.options)
        if self.encoder:
            kwargs["encoder"] = self.encoder
        return create_model(self.model, num_classes=num_classes, **kwargs)


def cases(models, encoders, image_sizes, options=()):
    """The valid cases of models x encoders x image sizes (an encoder a model does not take is skipped;
    a model with its own topology appears once per size)."""
    from kerazoo.encoders import ENCODERS
    from kerazoo.models import MODELS

    for encoder in encoders:
        ENCODERS.get(encoder)  # an unknown name is an error, not a silently empty benchmark
    found = []
    for model in models:
        entry = MODELS.get(model)
        model_encoders = [e for e in encoders if e in entry.encoders] if entry.encoders else [None]
        for encoder in model_encoders:
            for size in image_sizes:
                found.append(Case(model, encoder, tuple(size), tuple(options)))
    if not found:
        raise ValueError(f"no valid case: models {list(models)} take none of the encoders {list(encoders)}")
    return found


# ----------------------------------------------------------------------------------------------------
# Measurements, each run in a fresh process by `_in_fresh_process`


def peak_rss_mib():
    """Peak resident memory of this process so far, MiB (Linux reports KiB).

    A measurement reports this peak and what it added to the peak its imports had already reached
    (the framework runtime itself: TensorFlow, torch).
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


PEAK_MATMUL_SIZES = (1024, 2048, 3072, 4096)


def measure_peak_flops(sizes=PEAK_MATMUL_SIZES, runs=10):
    """TensorFlow's float32 matrix-product rate: GFLOP/s of a size^3 product at each of `sizes` (median of
    `runs`), and the best of them. One size alone can sit below what another kernel reaches (an AVX2 CPU read
    82 GFLOP/s at 4096 and then saw inference at 156% of it); `run` takes the best over sizes and libraries."""
    import tensorflow as tf

    by_size = {}
    for size in sizes:
        a = tf.random.uniform((size, size))
        b = tf.random.uniform((size, size))
        product = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))  # reduce: the result is read back
        median = statistics.median(timed_runs(lambda: product().numpy(), runs, warmup=2))
        by_size[str(size)] = 2 * size**3 / median / 1e9
    best = max(by_size, key=by_size.get)
    return {"peak_gflops": by_size[best], "matmul_size": int(best), "by_size": by_size, "library": "tensorflow"}


def best_peak(peaks):
    """The highest of several libraries' peaks ({library: measure_peak_flops-like dict or {"error": ...}})."""
    measured = {library: peak for library, peak in peaks.items() if "error" not in peak}
    if not measured:
        raise RuntimeError(f"no peak could be measured: {peaks}")
    library = max(measured, key=lambda name: measured[name]["peak_gflops"])
    return {**measured[library], "library": library}


def forward_flops(model, image_size, channels=3):
    """FLOPs of one forward pass of one image, counted by TensorFlow's profiler on the traced graph."""
    import tensorflow as tf

    spec = tf.TensorSpec((1, *image_size, channels), tf.float32)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)


class StepTimes(keras.callbacks.Callback):
    """Records each training step's wall time."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        float(logs["loss"])  # wait for the step's result
        self.seconds.append(time.perf_counter() - self._start)


def _random_batch(batch_size, image_size, num_classes, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch_size, *image_size, 3)).astype("float32")
    masks = rng.integers(0, num_classes, (batch_size, *image_size)).astype("int32")
    return images, masks


def keras_training(case, num_classes, batch_size, warmup, runs, precision="float32", inference_batch_sizes=()):
    """Training step time of `model.fit` (Adam, cross-entropy) on one in-memory batch, repeated, under the
    Keras dtype policy `precision`; and, for each of `inference_batch_sizes`, the latency of the same model
    called in a `tf.function` (so that mixed_bfloat16 inference is measured too)."""
    import tensorflow as tf

    keras.mixed_precision.set_global_policy(precision)  # this process is fresh: nothing else sees it
    baseline_mib = peak_rss_mib()
    model = case.create_model(num_classes)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, masks = _random_batch(batch_size, case.image_size, num_classes)
    data = tf.data.Dataset.from_tensors((images, masks)).repeat()
    timer = StepTimes()
    model.fit(data, epochs=1, steps_per_epoch=warmup + runs, verbose=0, shuffle=False, callbacks=[timer])
    steps = timer.seconds[warmup:]
    step = statistics.median(steps)
    call = tf.function(lambda x: model(x, training=False))
    latency = {}
    for inference_batch in inference_batch_sizes:
        batch = tf.constant(_random_batch(inference_batch, case.image_size, num_classes, seed=2)[0])
        latency[str(inference_batch)] = median_ms(lambda: call(batch).numpy(), runs, warmup)
    return {
        "precision": precision,
        "first_step_seconds": timer.seconds[0],
        "step_seconds": step,
        "step_seconds_all": steps,
        "images_per_second": batch_size / step,
        "inference_latency_ms": latency,
        "peak_rss_mib": peak_rss_mib(),
        "added_rss_mib": peak_rss_mib() - baseline_mib,
        "params": model.count_params(),
        "forward_flops": forward_flops(model, case.image_size),
    }


def keras_export(case, num_classes, out_dir, fmt):
    """Builds the model (random weights, seeded) and writes it in format `fmt`; returns the file's path,
    size and notes, or its error. A file that missed its parity contract is still timed (the reason goes
    to its notes): the benchmark measures speed, `kerazoo.export` judges parity."""
    from kerazoo.export import export

    keras.utils.set_random_seed(0)
    model = case.create_model(num_classes)
    out_dir = Path(out_dir)
    if fmt == "keras":
        path = out_dir / "model.keras"
        model.save(path)
        return {"path": str(path), "size_bytes": path.stat().st_size, "notes": []}
    export_format, variant = _EXPORTED[fmt]
    images, _ = _random_batch(8, case.image_size, num_classes, seed=1)
    report = export(model, out_dir / fmt, formats=[export_format], quantize=variant,
                            representative_data=images, num_calibration=8, latency_runs=0, strict=False,
                            verbose=False)
    (exported,) = report.files
    if exported.path is None:
        return {"error": exported.error or "not written"}
    notes = list(exported.notes) + ([f"parity: {exported.error}"] if exported.error else [])
    return {"path": exported.path, "size_bytes": exported.size_bytes, "notes": notes}


def _keras_runner(path):
    import tensorflow as tf

    import kerazoo.layers  # noqa: F401  (registers every kerazoo class, ZooModel included, for loading)

    model = keras.models.load_model(path)
    call = tf.function(lambda x: model(x, training=False))
    return lambda batch: call(tf.constant(batch)).numpy()


def inference_latency(fmt, path, image_size, batch_sizes, warmup, runs, threads):
    """Median latency (ms) per batch size of one exported file in its own runtime."""
    from kerazoo.export import TFLiteRunner, onnx_runner

    baseline_mib = peak_rss_mib()
    runner = {"keras": lambda: _keras_runner(path), "onnx": lambda: onnx_runner(path, num_threads=threads)}.get(
        fmt, lambda: TFLiteRunner(path, num_threads=threads))()
    latency, errors = {}, {}
    for batch_size in batch_sizes:
        if batch_size != 1 and getattr(runner, "static_batch", False):
            errors[str(batch_size)] = "the file has a static batch of 1"
            continue
        images, _ = _random_batch(batch_size, image_size, 2, seed=2)
        latency[str(batch_size)] = median_ms(lambda: runner(images), runs, warmup)
    return {"latency_ms": latency, "errors": errors, "peak_rss_mib": peak_rss_mib(),
            "added_rss_mib": peak_rss_mib() - baseline_mib}


def _in_fresh_process(function, *args):
    """Runs `function(*args)` in a new spawned process and returns its result.

    Raises:
        RuntimeError: the process died (e.g. killed for memory) before returning.
    """
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        try:
            return pool.submit(function, *args).result()
        except concurrent.futures.process.BrokenProcessPool as error:
            raise RuntimeError(f"the process running {function.__name__} died (out of memory?)") from error


# ----------------------------------------------------------------------------------------------------
# The harness


def _fraction(flops_per_second, peak_gflops):
    return flops_per_second / (peak_gflops * 1e9)


def _training_fraction(training, forward_flops, peak_gflops):
    return _fraction(training["images_per_second"] * TRAINING_FLOPS_PER_FORWARD * forward_flops, peak_gflops)


def run_case(case, peak_gflops, num_classes=12, formats=FORMATS, batch_sizes=(1, 8), train_batch_size=4,
             warmup=3, runs=10, threads=None, peer=False, log=print, precisions=PRECISIONS,
             peer_modes=None, peer_runner=None):
    """Measures one case (and its peer when asked); returns a JSON-ready dict.

    `peer_runner` (default `kerazoo.bench.peer.run_in_subprocess`) takes the peer's arguments and `peer_modes`
    and returns {"description", "modes": {mode: measured or {"error"}}}; tests give a fake one.
    """
    from kerazoo.bench import peer as peer_module

    peer_modes = tuple(peer_modes or peer_module.PEER_MODES)
    peer_runner = peer_runner or peer_module.run_in_subprocess
    threads = threads or os.cpu_count()
    result = {"case": case.label, "model": case.model, "encoder": case.encoder,
              "image_size": list(case.image_size), "options": dict(case.options), "num_classes": num_classes}
    by_precision = {}
    for precision in precisions:
        log(f"[{case.label}] training, batch {train_batch_size}, {precision}")
        measured = _in_fresh_process(keras_training, case, num_classes, train_batch_size, warmup, runs, precision,
                                     batch_sizes)
        measured["fraction_of_peak"] = _training_fraction(measured, measured["forward_flops"], peak_gflops)
        by_precision[precision] = measured
    training = by_precision[precisions[0]]
    flops = training["forward_flops"]
    result.update(params=training["params"], forward_gflops=flops / 1e9, training=training,
                  precisions=by_precision)

    inference = {}
    with tempfile.TemporaryDirectory(prefix="kerazoo-benchmark-") as out_dir:
        for fmt in formats:
            # One format failing (a conversion killed for memory, say) is reported; the others go on.
            log(f"[{case.label}] {fmt}: writing, then inference at batch sizes {list(batch_sizes)}")
            try:
                file = _in_fresh_process(keras_export, case, num_classes, out_dir, fmt)
                if "error" in file:
                    inference[fmt] = {"error": file["error"]}
                    continue
                measured = _in_fresh_process(inference_latency, fmt, file["path"], case.image_size,
                                             batch_sizes, warmup, runs, threads)
            except RuntimeError as error:
                inference[fmt] = {"error": str(error)}
                continue
            measured.update(size_bytes=file["size_bytes"], notes=file["notes"])
            measured["fraction_of_peak"] = {
                batch: _fraction(int(batch) * flops / (ms / 1000), peak_gflops)
                for batch, ms in measured["latency_ms"].items()}
            inference[fmt] = measured
    result["inference"] = inference

    if peer:
        reason = peer_module.unavailable_reason(case)
        if reason:
            result["peer"] = {"skipped": reason}
            log(f"[{case.label}] peer skipped: {reason}")
        else:
            log(f"[{case.label}] peer: {peer_module.describe(case)}, modes {', '.join(peer_modes)}")
            counterpart = peer_runner(case, num_classes, train_batch_size, batch_sizes, warmup, runs, threads,
                                      peer_modes)
            for measured in counterpart["modes"].values():
                if "error" not in measured:
                    measured["training"]["fraction_of_peak"] = _training_fraction(
                        measured["training"], measured["forward_flops"], peak_gflops)
            result["peer"] = counterpart
            result["peer_ratio"] = peer_ratios(result)
    return result


# kerazoo's dtype policy -> the peer's precision class it is compared with
PRECISION_CLASS = {"float32": "float32", "mixed_bfloat16": "bfloat16"}


def peer_ratios(result):
    """kerazoo / peer time ratios (< 1: kerazoo is faster), each kerazoo precision against the peer's fastest
    mode of the same precision class.

    Returns:
        {kerazoo precision: {"training_step": {"ratio", "peer_mode"}, "inference_batch<b>": {...}}}; a
        precision whose class no peer mode ran in is absent.
    """
    from kerazoo.bench.peer import best_modes

    best = best_modes(result["peer"]["modes"])
    ratios = {}
    for precision, measured in result["precisions"].items():
        peer_best = best.get(PRECISION_CLASS.get(precision))
        if not peer_best:
            continue
        ours = {"training_step": measured["step_seconds"],
                **{f"inference_batch{b}": ms for b, ms in measured["inference_latency_ms"].items()}}
        ratios[precision] = {key: {"ratio": value / peer_best[key][1], "peer_mode": peer_best[key][0]}
                             for key, value in ours.items() if key in peer_best}
    return ratios


def run(case_list, num_classes=12, formats=FORMATS, batch_sizes=(1, 8), train_batch_size=4, warmup=3, runs=10,
        threads=None, peer=False, json_path=None, markdown_path=None, log=print, precisions=PRECISIONS,
        peer_modes=None, peer_runner=None):
    """Benchmarks every case; prints a Markdown table, writes JSON and Markdown when paths are given.

    kerazoo trains in each Keras dtype policy of `precisions`; the peer runs in each of `peer_modes`
    (default: every mode of `kerazoo.bench.peer.PEER_MODES`) through `peer_runner` (tests give a fake one).

    Returns:
        The results dict: machine, settings, peak GFLOP/s and one entry per case.
    """
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown benchmark format {fmt!r}; valid: {', '.join(FORMATS)}")
    if warmup < 1 or runs < 1:
        raise ValueError(f"warmup and runs must be >= 1; got warmup={warmup}, runs={runs}")
    if train_batch_size < 1 or not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch sizes must be >= 1; got train_batch_size={train_batch_size}, "
                         f"batch_sizes={list(batch_sizes)}")
    precisions = tuple(precisions)
    unknown = [p for p in precisions if p not in PRECISION_CLASS]
    if unknown or not precisions:
        raise ValueError(f"unknown precisions {unknown or list(precisions)}; valid: {', '.join(PRECISION_CLASS)}")
    bfloat16 = bfloat16_support()
    if "mixed_bfloat16" in precisions:
        log(bfloat16.describe())
    log("measuring the machine's peak (float32 matmul at several sizes; torch's too with the peer)")
    peaks = {"tensorflow": _in_fresh_process(measure_peak_flops)}
    if peer:
        from kerazoo.bench.peer import peak_in_subprocess

        peaks["torch"] = peak_in_subprocess(PEAK_MATMUL_SIZES, runs=10, threads=threads)
    peak = best_peak(peaks)
    results = {
        "machine": {"processor": platform.processor() or platform.machine(), "cpu": cpu_kind(),
                    "cpu_count": os.cpu_count(),
                    "python": platform.python_version(), "bfloat16": bfloat16.describe(), **_versions(peer)},
        "settings": {"num_classes": num_classes, "formats": list(formats), "batch_sizes": list(batch_sizes),
                     "train_batch_size": train_batch_size, "warmup": warmup, "runs": runs,
                     "threads": threads or os.cpu_count(), "precisions": list(precisions)},
        "peak_gflops": peak["peak_gflops"],
        "peak": {"best": peak["library"], **peaks},
        "cases": [],
    }
    for case in case_list:
        results["cases"].append(run_case(case, peak["peak_gflops"], num_classes, formats, batch_sizes,
                                         train_batch_size, warmup, runs, threads, peer, log, precisions,
                                         peer_modes, peer_runner))
    table = markdown(results)
    log(table)
    if json_path:
        _write_text(json_path, json.dumps(results, indent=2) + "\n")
    if markdown_path:
        _write_text(markdown_path, table)
    return results


def _versions(peer):
    from importlib import metadata

    names = ["keras", "tensorflow", "tensorflow-cpu", "ai-edge-litert", "onnxruntime", "tf2onnx"]
    if peer:
        names += ["torch", "segmentation-models-pytorch"]
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _write_text(path, text):
    atomic_write_text(path, text)  # creates the parent folder
