"""Runners: each exported format run in its own runtime, as an app would, and timed the one way
(`kerazoo.utils.timing.median_ms`). The benchmark and export_matrix/real_data.py use the same runners.

Each runner defaults to the fastest CPU settings measured on these machines (benchmarks/INFERENCE.md):
one thread per physical core this process may run on (`physical_cores`), and for ONNX Runtime the
session options of `onnx_session`.
"""

import numpy as np

from kerazoo.utils.cpu import physical_cores
from kerazoo.utils.timing import median_ms

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "image"
OPENVINO_PRECISIONS = ("f32", "bf16", "f16")  # the CPU plugin's INFERENCE_PRECISION_HINT values
AUTO = "auto"  # a runner's thread count: one per physical core available (`physical_cores`)


def _threads(num_threads):
    """The thread count a runner passes to its runtime: "auto" -> `physical_cores()`; None (the runtime's
    own default) and positive ints as given; anything else is a ValueError naming the valid values."""
    if num_threads == AUTO:
        return physical_cores()
    if num_threads is None or (isinstance(num_threads, int) and not isinstance(num_threads, bool) and num_threads > 0):
        return num_threads
    raise ValueError(f"num_threads must be 'auto', None (the runtime's default) or a positive int; got {num_threads!r}")


class TFLiteRunner:
    """Runs batches of raw pixels (float32, B x H x W x C) through a .tflite file in LiteRT, as an app
    would: the input is resized to each batch's shape, an integer input is quantised and an integer
    output dequantised, so every variant takes and returns what the Keras model does."""

    def __init__(self, model_path=None, model_content=None, num_threads=AUTO):
        """Loads the file (`model_path`) or flatbuffer bytes (`model_content`).

        `num_threads`: "auto" (the default) runs XNNPACK on one thread per physical core available
        (`physical_cores`); None leaves it to LiteRT, which runs one thread here; an int is used as given.
        """
        from ai_edge_litert.interpreter import Interpreter

        self.num_threads = _threads(num_threads)
        self.interpreter = Interpreter(model_path=None if model_path is None else str(model_path),
                                       model_content=model_content, num_threads=self.num_threads)
        self._shape = None

    @property
    def static_batch(self):
        """True when the file takes one image at a time (its batch dimension is fixed to 1)."""
        return self.interpreter.get_input_details()[0]["shape_signature"][0] == 1

    def prepare(self, batch):
        """`batch` as the file's input: the input resized to its shape, values cast (quantised) to its type."""
        detail = self.interpreter.get_input_details()[0]
        if self._shape != batch.shape:
            self.interpreter.resize_tensor_input(detail["index"], batch.shape, strict=False)
            self.interpreter.allocate_tensors()
            self._shape = batch.shape
        scale, zero_point = detail["quantization"]
        if np.issubdtype(detail["dtype"], np.integer) and scale:
            info = np.iinfo(detail["dtype"])
            batch = np.clip(np.round(batch / scale + zero_point), info.min, info.max)
        return batch.astype(detail["dtype"])

    def invoke(self, prepared):
        """Runs a `prepare`d batch; returns the output, dequantised when it is an integer tensor."""
        self.interpreter.set_tensor(self.interpreter.get_input_details()[0]["index"], prepared)
        self.interpreter.invoke()
        detail = self.interpreter.get_output_details()[0]
        output = self.interpreter.get_tensor(detail["index"])
        scale, zero_point = detail["quantization"]
        if np.issubdtype(output.dtype, np.integer) and scale:
            output = (output.astype("float32") - zero_point) * scale
        return output

    def __call__(self, batch):
        return self.invoke(self.prepare(batch))


def onnx_session(path, tuned=True, num_threads=AUTO):
    """An onnxruntime `InferenceSession` of the .onnx file at `path` on the CPU execution provider.

    With `tuned` (the default), the options measured fastest on these machines (benchmarks/INFERENCE.md):
    - `intra_op_num_threads` = `num_threads`, by default the physical cores this process may run on:
      ONNX Runtime's own default counts the machine's cores, which oversubscribes under an affinity mask.
    - `session.intra_op.allow_spinning` = "0": idle pool threads sleep instead of spinning; on a loaded
      CPU a spinning thread takes the core another process (or a training run) needs, and latency grew.
    - `graph_optimization_level` = ORT_ENABLE_ALL (also ORT's default): it adds the NCHWc layout
      transforms that EXTENDED lacks, the larger share of the convolution speed.
    - `execution_mode` = ORT_SEQUENTIAL (the default): an encoder-decoder is one chain of ops, so
      ORT_PARALLEL only adds scheduling cost.
    - `enable_cpu_mem_arena` stays on: without it every run allocates its activations anew.
    `tuned=False` gives ONNX Runtime's defaults, for comparison.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if tuned:
        options.intra_op_num_threads = _threads(num_threads)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.enable_cpu_mem_arena = True
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_runner(path, tuned=True, num_threads=AUTO):
    """A function running batches of raw float32 pixels through an .onnx file in onnxruntime (CPU),
    in the session `onnx_session(path, tuned, num_threads)` builds."""
    session = onnx_session(path, tuned, num_threads)
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def openvino_runner(path, num_threads=AUTO, precision="f32"):
    """A function running batches of raw pixels through an OpenVINO IR (.xml + .bin) on the CPU plugin.

    `precision` is the CPU plugin's INFERENCE_PRECISION_HINT: "f32" by default, because the plugin
    otherwise computes in bfloat16 on CPUs that have it (AVX512-BF16, AMX), which misses the float32
    parity contract; "bf16" asks for that speed knowingly. PERFORMANCE_HINT is LATENCY (one request at a
    time), with `num_threads` inference threads (by default one per physical core available).
    """
    if precision not in OPENVINO_PRECISIONS:
        raise ValueError(f"precision must be one of {OPENVINO_PRECISIONS}; got {precision!r}")
    import openvino

    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
    threads = _threads(num_threads)
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = openvino.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    return lambda batch: request.infer({0: batch}).to_tuple()[0].copy()


def saved_model_runner(path, output_name):
    """(a function running batches through a SavedModel's serving signature, the sorted ops it uses)."""
    import tensorflow as tf

    function = tf.saved_model.load(str(path)).signatures[SIGNATURE_KEY]
    graph_def = function.graph.as_graph_def()
    ops = {node.op for node in graph_def.node}
    for library_function in graph_def.library.function:
        ops.update(node.op for node in library_function.node_def)
    run = lambda batch: function(**{INPUT_NAME: tf.constant(batch)})[output_name].numpy()  # noqa: E731
    return run, tuple(sorted(ops))


def run_and_time(run, samples, latency_runs, prepare=None):
    """(outputs of `run` on `samples`, median batch-1 milliseconds over `latency_runs` or None).

    `prepare` turns a batch into the runner's input once, so that the timing leaves the conversion out.
    """
    outputs = run(samples)
    single = prepare(samples[:1]) if prepare else samples[:1]
    return outputs, median_ms(lambda: run(single), latency_runs)


def run_tflite(content, samples, latency_runs):
    """(outputs, latency) of a .tflite flatbuffer on `samples`; a static-batch file runs image by image."""
    runner = TFLiteRunner(model_content=content)
    if runner.static_batch:
        outputs = np.concatenate([runner(samples[i : i + 1]) for i in range(len(samples))])
    else:
        outputs = runner(samples)
    single = runner.prepare(samples[:1])
    return outputs, median_ms(lambda: runner.invoke(single), latency_runs)
