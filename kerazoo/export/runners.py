"""Runners: each exported format run in its own runtime, as an app would, and timed the one way
(`kerazoo.timing.median_ms`). The benchmark and export/real_data.py use the same runners."""

import numpy as np

from kerazoo.timing import median_ms

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "image"


class TFLiteRunner:
    """Runs batches of raw pixels (float32, B x H x W x C) through a .tflite file in LiteRT, as an app
    would: the input is resized to each batch's shape, an integer input is quantised and an integer
    output dequantised, so every variant takes and returns what the Keras model does."""

    def __init__(self, model_path=None, model_content=None, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=None if model_path is None else str(model_path),
                                       model_content=model_content, num_threads=num_threads)
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


def onnx_runner(path):
    """A function running batches of raw float32 pixels through an .onnx file in onnxruntime (CPU)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


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
