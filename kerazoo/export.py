"""Export to SavedModel, TFLite (LiteRT) and ONNX, verified against the Keras model.

`export` writes each requested file, reloads it in its own runtime (TensorFlow for SavedModel,
`ai_edge_litert`'s interpreter for TFLite, onnxruntime for ONNX), runs it on sample inputs and
compares with the Keras model: maximum absolute difference (also relative to the output range), argmax
agreement per pixel, the ops the file uses, its size, conversion time and latency. The results come
back as an `ExportReport`, printed as a table.

Rules the writers keep, each learned the hard way (see ../shared/MEASURED.md):
- SavedModel goes through `tf.Module` + `tf.saved_model.save`; `keras.Model.export` stores every
  variable twice.
- TFLite uses builtin ops only, never SELECT_TF_OPS: a model that needs a TensorFlow (Flex) op fails
  with an `ExportError` that names the op and the layer that emits it.
- The in-graph argmax is `tf.math.argmax` in the serving function: `keras.ops.argmax` on floats lowers
  to Bitcast/BitwiseAnd, which TFLite rejects and tf2onnx writes as an invalid ONNX graph.
- An ONNX file counts only once `onnx.checker` accepts it and onnxruntime loads and runs it.

This module uses TensorFlow directly: exporting is TensorFlow-backend-only by nature.
"""

import dataclasses
import json
import os
import re
import shutil
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from kerazoo.layers import MaxUnpooling2D

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZE_MODES = ("float16", "dynamic", "int8")
IO_DTYPES = ("float32", "int8", "uint8")
SIGNATURE_KEY = "serving_default"
INPUT_NAME = "image"
METADATA_NAME = "kerazoo"  # name of the metadata buffer embedded in .tflite files

# Parity contract, per numeric variant. None: measured and reported, not enforced.
CONTRACTS = {
    "float32": {"max_relative_diff": 1e-4, "min_agreement": 0.999},
    "float16": {"max_relative_diff": None, "min_agreement": 0.99},
    "dynamic": {"max_relative_diff": None, "min_agreement": None},
    "int8": {"max_relative_diff": None, "min_agreement": None},
}


class ExportError(RuntimeError):
    """An export that cannot be written, does not load or run in its runtime, or misses its parity contract."""


@dataclasses.dataclass
class ExportedFile:
    """One exported file and what was measured on it.

    Attributes:
        format: "saved_model", "tflite" or "onnx".
        variant: numeric variant: "float32", "float16", "dynamic" (dynamic-range int8) or "int8".
        path: file (or SavedModel directory) written, or None when conversion failed.
        size_bytes: bytes on disk (a SavedModel directory: all its files).
        convert_s: seconds spent converting and writing.
        ops: sorted op types the file contains (TFLite builtins, ONNX op types, TensorFlow ops).
        max_abs_diff: largest absolute difference from the Keras outputs (None with argmax outputs).
        relative_diff: `max_abs_diff` divided by the Keras output range (max - min).
        argmax_agreement: fraction of pixels whose argmax class matches the Keras model's.
        near_tie_fraction: fraction of pixels whose Keras top-2 score margin is below `max_abs_diff`,
            where a flipped argmax is within the file's numeric error (random-weight models have many).
        latency_ms: median milliseconds per batch-1 inference in the file's runtime.
        passed: whether the file met its parity contract; None when the variant has no contract.
        error: why the file failed (conversion, loading, running or parity), else None.
        notes: anything worth knowing (fallbacks taken, input/output types).
    """

    format: str
    variant: str
    path: str | None = None
    size_bytes: int | None = None
    convert_s: float | None = None
    ops: tuple = ()
    max_abs_diff: float | None = None
    relative_diff: float | None = None
    argmax_agreement: float | None = None
    near_tie_fraction: float | None = None
    latency_ms: float | None = None
    passed: bool | None = None
    error: str | None = None
    notes: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        """True when the file was written, ran, and did not miss a contract."""
        return self.error is None and self.passed is not False


@dataclasses.dataclass
class ExportReport:
    """What `export` wrote and measured.

    Attributes:
        model_name: the Keras model's name.
        out_dir: the directory the files were written to.
        files: one `ExportedFile` per written (or attempted) file.
        sample_shape: shape of the sample inputs parity was measured on.
        keras_latency_ms: median batch-1 latency of the Keras model in a `tf.function`, for reference.
        notes: model-level notes (e.g. a mixed-precision model exported through a float32 twin).
    """

    model_name: str
    out_dir: str
    files: list = dataclasses.field(default_factory=list)
    sample_shape: tuple = ()
    keras_latency_ms: float | None = None
    notes: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        return all(f.ok for f in self.files)

    def failures(self):
        """The files that failed, with their errors."""
        return [f for f in self.files if not f.ok]

    def get(self, format, variant="float32"):
        """The `ExportedFile` for `format` and `variant`, or KeyError."""
        for exported in self.files:
            if exported.format == format and exported.variant == variant:
                return exported
        raise KeyError(f"no {format} {variant} file in this report")

    def rows(self, full_ops=True):
        """Table rows (lists of strings): file, variant, size, time, parity, latency, ops, status."""
        rows = []
        for f in self.files:
            rows.append([
                os.path.relpath(f.path, self.out_dir) if f.path else f.format,
                f.variant,
                _format_size(f.size_bytes),
                "-" if f.convert_s is None else f"{f.convert_s:.1f} s",
                "-" if f.max_abs_diff is None else f"{f.max_abs_diff:.2e} ({f.relative_diff:.1e})",
                "-" if f.argmax_agreement is None else f"{f.argmax_agreement:.4f}",
                "-" if f.latency_ms is None else f"{f.latency_ms:.1f} ms",
                (f"{len(f.ops)}: {', '.join(f.ops)}" if full_ops else str(len(f.ops))) if f.ops else "-",
                "ok" if f.ok and f.passed else ("ok (no contract)" if f.ok else f"FAILED: {f.error}"),
            ])
        return rows

    HEADERS = ("file", "variant", "size", "convert", "max |diff| (rel.)", "argmax agree", "latency", "ops", "status")

    def to_markdown(self):
        lines = ["| " + " | ".join(self.HEADERS) + " |", "|" + "---|" * len(self.HEADERS)]
        for row in self.rows():
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
        return "\n".join(lines)

    def to_dict(self):
        return dataclasses.asdict(self)

    def print(self, console=None):
        """Prints the report as a rich table."""
        from rich.console import Console
        from rich.table import Table

        title = f"kerazoo export: {self.model_name} (samples {tuple(self.sample_shape)}"
        title += f", Keras {self.keras_latency_ms:.1f} ms)" if self.keras_latency_ms is not None else ")"
        table = Table(title=title)
        for header in self.HEADERS:
            table.add_column(header, overflow="fold")
        for row in self.rows(full_ops=False):
            table.add_row(*row)
        console = console or Console(width=max(Console().width, 150))
        console.print(table)
        for f in self.files:
            if f.ops:
                console.print(f"ops of {f.format} {f.variant}: {', '.join(f.ops)}", highlight=False)
        for note in self.notes + [f"{f.format} {f.variant}: {n}" for f in self.files for n in f.notes]:
            console.print(f"note: {note}")

    def __str__(self):
        return f"kerazoo export of {self.model_name} to {self.out_dir}\n{self.to_markdown()}"


def _format_size(size):
    if size is None:
        return "-"
    return f"{size / 2**20:.2f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"


def _path_size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)
    return os.path.getsize(path)


# ----------------------------------------------------------------------------------------------------
# Model preparation


def _all_layers(model):
    """Every layer of `model`, nested models' layers included."""
    layers = []
    for layer in model.layers:
        layers.append(layer)
        if isinstance(layer, keras.Model):
            layers.extend(_all_layers(layer))
    return layers


def _replace_policies(config):
    """Returns `config` with every non-float32 float dtype policy replaced by float32."""
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            name = config.get("config", {}).get("name", "float32")
            if name != "float32" and name.startswith(("mixed_", "float16", "bfloat16")):
                return {**config, "config": {**config["config"], "name": "float32"}}
            return config
        return {key: _replace_policies(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_replace_policies(value) for value in config]
    return config


def _float32_model(model, mixed_precision):
    """The model to export: `model` itself, or a float32 twin of a reduced-precision model.

    TFLite builtins and the parity contract assume float32 compute, so a model built under
    "mixed_float16" (or "mixed_bfloat16") is rebuilt from its config with float32 policies and given
    the same weights (its variables are float32 already).
    """
    policies = sorted({layer.dtype_policy.name for layer in _all_layers(model)})
    reduced = [p for p in policies if p != "float32"]
    if not reduced:
        return model, []
    if mixed_precision == "error":
        raise ExportError(
            f"Model {model.name!r} computes with dtype policies {reduced}; export needs float32 compute. "
            "Pass mixed_precision='float32' to export a float32 twin with the same weights, or rebuild the "
            "model under keras.mixed_precision.set_global_policy('float32')."
        )
    if mixed_precision != "float32":
        raise ValueError(f"mixed_precision must be 'float32' or 'error'; got {mixed_precision!r}")
    config = _replace_policies(keras.saving.serialize_keras_object(model))
    twin = keras.saving.deserialize_keras_object(config)
    twin.set_weights([np.asarray(w, dtype="float32") for w in model.get_weights()])
    return twin, [f"model uses dtype policies {reduced}: exported a float32 twin with the same weights; "
                  "parity is measured against that twin"]


class _ModelHolder:
    """Keeps the Keras model out of tf.Module's object tracking (a plain object is not tracked)."""

    def __init__(self, model):
        self.model = model


class _ServingModule(tf.Module):
    """Holds the model's variables (saved once) and the serving function.

    The module tracks the TensorFlow variables under the Keras variables, not the Keras model: with
    the model tracked, the TFLite converter keeps every weight as a VAR_HANDLE/READ_VARIABLE resource
    that nothing initialises (NaN outputs), whereas plain tf.Variables are frozen into constants.
    """

    def __init__(self, model, input_spec, argmax_output, output_name):
        super().__init__()
        self.tf_variables = [variable.value for variable in model.variables]
        self._holder = _ModelHolder(model)
        self.input_spec = input_spec
        self._argmax_output, self._output_name = argmax_output, output_name
        self.serve = self.function_for(input_spec)

    def function_for(self, input_spec):
        """A serving tf.function with signature `input_spec` (TFLite may need a more static one)."""
        model, argmax_output, output_name = self._holder.model, self._argmax_output, self._output_name

        @tf.function(input_signature=[input_spec])
        def serve(image):
            scores = model(tf.cast(image, tf.float32), training=False)
            if argmax_output:
                # tf.math.argmax, not keras.ops.argmax: the latter lowers to Bitcast/BitwiseAnd on floats.
                return {output_name: tf.math.argmax(scores, axis=-1, output_type=tf.int32)}
            return {output_name: tf.cast(scores, tf.float32)}

        return serve


# ----------------------------------------------------------------------------------------------------
# Data


def _images_from(data, limit):
    """Yields up to `limit` single images (1, H, W, C) as float32 from an array, a tf.data dataset of
    images or (image, mask) pairs, dicts with an "image" key, or any iterable of those."""
    if data is None:
        return
    if isinstance(data, np.ndarray) or tf.is_tensor(data):
        data = [np.asarray(data)]
    count = 0
    for element in data:
        if isinstance(element, dict):
            element = element["image"] if "image" in element else next(iter(element.values()))
        elif isinstance(element, (tuple, list)):
            element = element[0]
        array = np.asarray(element, dtype="float32")
        batch = array[None] if array.ndim == 3 else array
        if batch.ndim != 4:
            raise ValueError(f"images must be (H, W, C) or (B, H, W, C); got shape {array.shape}")
        for image in batch:
            yield image[None]
            count += 1
            if count >= limit:
                return


def _sample_inputs(model, sample_inputs, representative_data, input_size, rng_seed=0):
    """Float32 sample images (B, H, W, C) parity is measured on."""
    if sample_inputs is not None:
        samples = np.asarray(sample_inputs, dtype="float32")
        return samples[None] if samples.ndim == 3 else samples
    images = list(_images_from(representative_data, 2))
    images = [image for image in images if image.shape == images[0].shape] if images else []
    if images:
        return np.concatenate(images)
    _, height, width, channels = model.input_shape
    if input_size is not None:
        height, width = input_size
    rng = np.random.default_rng(rng_seed)
    return rng.uniform(0, 255, size=(2, height or 64, width or 64, channels)).astype("float32")


# ----------------------------------------------------------------------------------------------------
# Writers


def _flex_error(message, concrete_function, model):
    """Turns a converter error into an ExportError naming the non-builtin ops and their layers."""
    ops = set()
    for listed in re.findall(r"(?:TF Select ops|Flex ops): ([\w, ]+)", message):
        ops.update(name.strip() for name in listed.split(",") if name.strip())
    ops.update(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", message))
    # Nested models (an encoder) are named only when no layer inside them is.
    layer_names = {layer.name for layer in _all_layers(model) if not isinstance(layer, keras.Model)}
    model_names = {layer.name for layer in _all_layers(model) if isinstance(layer, keras.Model)}

    def layers_in(op_path):
        names = [c for part in op_path.split("/") for c in (part, re.sub(r"_\d+$", "", part))]
        return {n for n in names if n in layer_names} or {n for n in names if n in model_names}

    # The converter's locations name the exact ops that failed: fused["Conv2D:", callsite("a/b/c@fn"...
    failing = [(op_type, path.split("@")[0])
               for op_type, path in re.findall(r'fused\["(\w+):", (?:callsite\()?"([^"]+)"', message)]
    found = []
    for op_name in sorted(ops):
        layers = set()
        for op_type, op_path in failing:
            if op_type == op_name:
                layers |= layers_in(op_path)
        if not layers:  # no location in the message: every layer whose graph has the op
            for graph_op in concrete_function.graph.get_operations():
                if graph_op.type == op_name:
                    layers |= layers_in(graph_op.name)
        names = sorted(layers)
        shown = ", ".join(repr(n) for n in names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        found.append(f"{op_name} (in layer {shown})" if names else op_name)
    if not found:
        return ExportError(f"TFLite conversion failed:\n{message[:4000]}")
    return ExportError(
        "TFLite conversion needs TensorFlow ops that are not TFLite builtins: "
        + "; ".join(found)
        + ". kerazoo never enables SELECT_TF_OPS (Flex): rewrite the layer with builtin-friendly ops."
    )


def _tflite_ops(content):
    """Sorted builtin (and custom) op names used by a .tflite flatbuffer."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(content, 0)
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    used = set()
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            code = model.OperatorCodes(subgraph.Operators(o).OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = names.get(builtin, str(builtin))
            if name == "CUSTOM":
                name = f"CUSTOM:{code.CustomCode().decode()}"
            used.add(name)
    return tuple(sorted(used))


def _embed_tflite_metadata(content, metadata):
    """Adds `metadata` (a dict) as a JSON metadata buffer named "kerazoo" to a .tflite flatbuffer."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = (model.metadata or []) + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_tflite_metadata(path):
    """The kerazoo metadata dict embedded in a .tflite file, or None.

    Args:
        path: a .tflite file written by `export`.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    with open(path, "rb") as handle:
        content = handle.read()
    model = schema.Model.GetRootAsModel(content, 0)
    for m in range(model.MetadataLength()):
        entry = model.Metadata(m)
        if entry.Name().decode() == METADATA_NAME:
            return json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode())
    return None


def _convert_tflite(module, concrete_function, model, variant, representative, io_dtype, float_input, float_output):
    # With the module as trackable object the converter takes its SavedModel path, which needs about
    # a third of the memory of the deprecated graph-freezing path (2.6 GB vs 1.0 GB for SegNet-VGG16).
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete_function], module)
    # Builtins only, never SELECT_TF_OPS: a model that needs a TensorFlow op must fail here, loudly.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = representative
        if io_dtype != "float32":
            if float_input:  # a uint8-pixel input is integer already
                converter.inference_input_type = tf.as_dtype(io_dtype)
            if float_output:  # in-graph argmax gives int32 classes, nothing to quantize
                converter.inference_output_type = tf.as_dtype(io_dtype)
    with _captured_stderr() as captured:
        try:
            return converter.convert()
        except Exception as error:  # ConverterError and friends; the op locations go to stderr only
            failure = error
    raise _flex_error(f"{failure}\n{captured.read()}", concrete_function, model) from failure


class _captured_stderr:
    """Captures file descriptor 2 (where the converter's C++ code writes its diagnostics)."""

    def __enter__(self):
        import sys
        import tempfile

        sys.stderr.flush()
        self._file = tempfile.TemporaryFile(mode="w+b")
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc_info):
        import sys

        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        return False

    def read(self):
        self._file.seek(0)
        text = self._file.read().decode(errors="replace")
        self._file.close()
        return text


def _onnx_rename_dynamic_axes(onnx_model):
    """Names the dynamic axes of every graph input and output batch/height/width."""
    axis_names = {0: "batch", 1: "height", 2: "width"}
    for value in list(onnx_model.graph.input) + list(onnx_model.graph.output):
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_param") or not dim.HasField("dim_value"):
                if axis in axis_names:
                    dim.dim_param = axis_names[axis]


# ----------------------------------------------------------------------------------------------------
# Runners: each returns (outputs for `samples`, median batch-1 latency in ms)


def _median_ms(run, runs):
    if runs <= 0:
        return None
    run()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _run_saved_model(path, output_name, samples, latency_runs):
    function = tf.saved_model.load(path).signatures[SIGNATURE_KEY]
    ops = set()
    graph_def = function.graph.as_graph_def()
    ops.update(node.op for node in graph_def.node)
    for library_function in graph_def.library.function:
        ops.update(node.op for node in library_function.node_def)
    outputs = function(**{INPUT_NAME: tf.constant(samples)})[output_name].numpy()
    single = tf.constant(samples[:1])
    latency = _median_ms(lambda: function(**{INPUT_NAME: single}), latency_runs)
    return outputs, latency, tuple(sorted(ops))


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


def _run_tflite(content, samples, latency_runs):
    runner = TFLiteRunner(model_content=content)
    if runner.static_batch:  # a static-batch file runs one image at a time
        outputs = np.concatenate([runner(samples[i : i + 1]) for i in range(len(samples))])
    else:
        outputs = runner(samples)
    single = runner.prepare(samples[:1])
    latency = _median_ms(lambda: runner.invoke(single), latency_runs)
    return outputs, latency


def _run_onnx(path, samples, latency_runs):
    run = onnx_runner(path)
    outputs = run(samples)
    single = samples[:1]
    latency = _median_ms(lambda: run(single), latency_runs)
    return outputs, latency


# ----------------------------------------------------------------------------------------------------
# Parity


def _has_argmax_unpooling(model):
    return any(isinstance(layer, MaxUnpooling2D) for layer in _all_layers(model))


def _parity(exported, reference, outputs, argmax_output, argmax_unpooling=False):
    """Fills the parity fields of `exported` and checks its contract.

    With `argmax_unpooling` (SegNet), the max-|diff| half of the float32 contract is reported, not
    enforced: a pooling window whose two largest values are within rounding of each other unpools to
    a neighbouring pixel in another runtime (or in Keras itself, eager against tf.function), so a few
    values move by a whole activation while every pixel's class agrees. Agreement stays enforced.
    """
    outputs = np.asarray(outputs)
    if outputs.shape[:3] != reference.shape[:3]:
        raise ExportError(f"output shape {outputs.shape} differs from the Keras model's {reference.shape}")
    if argmax_output:
        expected = reference
        exported.argmax_agreement = float(np.mean(outputs == expected))
    else:
        if outputs.shape != reference.shape:
            raise ExportError(f"output shape {outputs.shape} differs from the Keras model's {reference.shape}")
        diff = float(np.max(np.abs(outputs.astype("float64") - reference)))
        span = float(np.max(reference) - np.min(reference)) or 1.0
        exported.max_abs_diff, exported.relative_diff = diff, diff / span
        exported.argmax_agreement = float(np.mean(np.argmax(outputs, -1) == np.argmax(reference, -1)))
        if reference.shape[-1] > 1:
            top2 = np.sort(reference, axis=-1)[..., -2:]
            exported.near_tie_fraction = float(np.mean(top2[..., 1] - top2[..., 0] < diff))
    contract = CONTRACTS[exported.variant]
    checks = []
    if contract["max_relative_diff"] is not None and exported.relative_diff is not None:
        within = exported.relative_diff <= contract["max_relative_diff"]
        message = f"relative max |diff| {exported.relative_diff:.2e} > {contract['max_relative_diff']:.0e}"
        if within or not argmax_unpooling:
            checks.append((within, message))
        else:
            exported.notes.append(f"{message}: reported, not enforced (argmax unpooling moves near-tied values "
                                  "by a pixel between runtimes); argmax agreement is enforced")
    if contract["min_agreement"] is not None:
        checks.append((exported.argmax_agreement >= contract["min_agreement"],
                       f"argmax agreement {exported.argmax_agreement:.4f} < {contract['min_agreement']}"))
    if not checks:
        exported.passed = None
        return
    failed = [message for passed, message in checks if not passed]
    exported.passed = not failed
    if failed:
        exported.error = "parity contract missed: " + "; ".join(failed)
        if exported.near_tie_fraction:
            exported.error += f" ({exported.near_tie_fraction:.4f} of pixels are near-ties within the file's error)"


# ----------------------------------------------------------------------------------------------------
# The entry point


def export(
    model,
    out_dir,
    formats=FORMATS,
    quantize=None,
    representative_data=None,
    sample_inputs=None,
    class_names=None,
    argmax_output=False,
    uint8_input=False,
    io_dtype="float32",
    input_size=None,
    opset=17,
    num_calibration=100,
    latency_runs=10,
    mixed_precision="float32",
    strict=True,
    verbose=True,
):
    """Exports `model` to SavedModel, TFLite and/or ONNX, and checks every file against the model.

    Every file takes raw pixels (B, H, W, C), like the Keras model, through one input named "image",
    and returns one output: "scores" (B, H, W, num_classes) float32, or "classes" (B, H, W) int32 with
    `argmax_output=True`. The batch is dynamic in every format, and so are height and width when the
    model's input shape leaves them None (unless `input_size` fixes them).

    Each file is reloaded in its own runtime and run on `sample_inputs`; the report gives its maximum
    absolute difference from the Keras outputs (and that difference relative to the output range),
    the argmax agreement per pixel, the ops it uses, its size, conversion time and batch-1 latency.
    Parity contract: float32 files (SavedModel, ONNX, float32 TFLite) within 1e-4 of the output range
    and >= 0.999 argmax agreement; float16 TFLite >= 0.99 agreement; dynamic-range and int8 TFLite
    measured and reported only. For models with argmax unpooling (SegNet) the float32 max |diff| is
    reported in the file's notes, not enforced (see `_parity`); agreement is.

    Args:
        model: a `keras.Model` from images (B, H, W, C) to per-pixel outputs (B, H', W', K).
        out_dir: directory to write into (created). Files: `saved_model/`, `<name>.tflite`,
            `<name>_<quantize>.tflite`, `<name>.onnx`, each with a `.json` metadata sidecar
            (SavedModel: `saved_model/assets.extra/kerazoo.json`), and `export_report.json`.
        formats: any of "saved_model", "tflite", "onnx".
        quantize: the TFLite numeric variants to write: None (float32 only), "float16", "dynamic"
            (dynamic-range int8 weights) or "int8" (full integer, needs `representative_data`) for that
            one variant, or a sequence of variants (None or "float32" in it means the float32 file).
            SavedModel and ONNX stay float32.
        representative_data: calibration images for int8: a NumPy array (N, H, W, C), a tf.data
            dataset of images or (image, mask) pairs (batched or not), or an iterable of those.
        sample_inputs: images (B, H, W, C) raw pixels for the parity check; by default the first two
            representative images, else two uniform-random images of the model's size (64x64 when free).
        class_names: optional list of class names, stored as metadata in every file.
        argmax_output: put the per-pixel argmax inside the graph; the output becomes int32 classes.
        uint8_input: the files take uint8 pixels (cast to float32 inside), as a camera frame comes.
        io_dtype: interface of the int8 TFLite file: "float32" (quantize inside), "int8" or "uint8".
        input_size: (height, width) to fix in the signatures; None keeps the model's (dynamic) sizes.
            When a TFLite conversion fails with dynamic sizes, it is retried with the sample inputs'
            height and width (batch still dynamic), and for int8 with a static batch of 1; the
            fallback and the reason are in the file's notes. Calibration images must then have
            the sample size. A model that cannot even be traced with dynamic sizes (keras'
            UpSampling2D "bilinear" in 3.15) is exported at the sample size, noted in the report.
        opset: ONNX opset.
        num_calibration: number of representative images used for int8 calibration.
        latency_runs: timed runs (median) per file; 0 skips latency.
        mixed_precision: what to do with a model built under a reduced-precision dtype policy:
            "float32" exports a float32 twin with the same weights (noted in the report), "error" raises.
        strict: raise `ExportError` when any file fails (conversion, checker, runtime, parity contract);
            with False, failures are recorded in the report and the other formats still run.
        verbose: print the report as a rich table.

    Returns:
        An `ExportReport`.

    Raises:
        ExportError: a conversion, validation or parity failure (with `strict=True`), e.g. a model
            that needs a TensorFlow op with no TFLite builtin; the message names the op and layer.
        ValueError: invalid arguments.
    """
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"Unknown export format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if quantize is None:
        variants = ["float32"]
    elif isinstance(quantize, str):
        variants = [quantize]
    else:
        variants = ["float32" if q is None else q for q in quantize]
    for variant in variants:
        if variant not in ("float32",) + QUANTIZE_MODES:
            raise ValueError(f"quantize must be None or one of {QUANTIZE_MODES}; got {variant!r}")
    if "int8" in variants and "tflite" in formats and representative_data is None:
        raise ValueError("quantize='int8' needs representative_data (images or a tf.data dataset) to calibrate")
    if io_dtype not in IO_DTYPES:
        raise ValueError(f"io_dtype must be one of {IO_DTYPES}; got {io_dtype!r}")
    if len(model.outputs) != 1:
        raise ValueError(f"export supports models with one output; {model.name!r} has {len(model.outputs)}")

    os.makedirs(out_dir, exist_ok=True)
    exported_model, model_notes = _float32_model(model, mixed_precision)
    report = ExportReport(model_name=model.name, out_dir=out_dir, notes=model_notes)

    _, height, width, channels = exported_model.input_shape
    if input_size is not None:
        height, width = input_size
    input_dtype = tf.uint8 if uint8_input else tf.float32
    output_name = "classes" if argmax_output else "scores"
    samples = _sample_inputs(exported_model, sample_inputs, representative_data, input_size)
    module = _ServingModule(
        exported_model, tf.TensorSpec((None, height, width, channels), input_dtype, name=INPUT_NAME),
        argmax_output, output_name,
    )
    try:
        concrete_function = module.serve.get_concrete_function()
    except Exception as error:
        if height is not None and width is not None:
            raise ExportError(f"Model {model.name!r} cannot be traced for export: {error}") from error
        # Some layers cannot be traced with unknown height and width (keras UpSampling2D "bilinear"
        # tests a symbolic size in Python); every file then takes the sample inputs' size.
        height, width = samples.shape[1:3]
        module = _ServingModule(
            exported_model, tf.TensorSpec((None, height, width, channels), input_dtype, name=INPUT_NAME),
            argmax_output, output_name,
        )
        concrete_function = module.serve.get_concrete_function()
        reason = str(error).strip().splitlines()
        layer = next((line.strip() for line in reason if "Exception encountered when calling" in line), reason[0])
        report.notes.append(f"the model cannot be traced with dynamic height and width ({layer[:200]}); "
                            f"every file takes static {height}x{width} (batch still dynamic)")
    if uint8_input:
        samples = np.clip(np.round(samples), 0, 255)
    feed = samples.astype("uint8") if uint8_input else samples
    report.sample_shape = samples.shape
    reference = np.asarray(exported_model(samples, training=False), dtype="float64")
    if exported_model is not model:
        original = np.asarray(model(samples, training=False), dtype="float64")
        agreement = float(np.mean(np.argmax(original, -1) == np.argmax(reference, -1)))
        report.notes.append(f"argmax agreement of the float32 twin with the {model.dtype_policy.name} model: "
                            f"{agreement:.4f}")
    if argmax_output:
        reference = np.argmax(reference, axis=-1)
    argmax_unpooling = _has_argmax_unpooling(model)
    keras_call = tf.function(lambda x: exported_model(x, training=False))
    single = tf.constant(samples[:1])
    report.keras_latency_ms = _median_ms(lambda: keras_call(single), latency_runs)

    metadata = {
        "model": model.name,
        "class_names": list(class_names) if class_names is not None else None,
        "input": {"name": INPUT_NAME, "dtype": "uint8" if uint8_input else "float32",
                  "layout": "NHWC", "pixels": "raw 0..255 (preprocessing is inside the model)",
                  "shape": [None, height, width, channels]},
        "output": {"name": output_name, "dtype": "int32" if argmax_output else "float32",
                   "meaning": "class index per pixel" if argmax_output else "per-pixel class scores"},
        "kerazoo_version": _kerazoo_version(),
    }

    def attempt(fmt, variant, write):
        exported = ExportedFile(format=fmt, variant=variant)
        report.files.append(exported)
        try:
            write(exported)
        except ExportError as error:
            exported.error = exported.error or str(error)
            if strict:
                raise
        except Exception as error:  # a runtime that cannot load or run the file is an export failure
            exported.error = f"{type(error).__name__}: {error}"
            if strict:
                raise ExportError(f"{fmt} {variant} export failed: {exported.error}") from error
        if strict and exported.error:
            raise ExportError(f"{fmt} {variant}: {exported.error}")

    def write_saved_model(exported):
        path = os.path.join(out_dir, "saved_model")
        shutil.rmtree(path, ignore_errors=True)
        start = time.perf_counter()
        tf.saved_model.save(module, path, signatures={SIGNATURE_KEY: concrete_function})
        os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
        with open(os.path.join(path, "assets.extra", "kerazoo.json"), "w") as handle:
            json.dump(metadata, handle, indent=2)
        exported.convert_s = time.perf_counter() - start
        exported.path, exported.size_bytes = path, _path_size(path)
        outputs, exported.latency_ms, exported.ops = _run_saved_model(path, output_name, feed, latency_runs)
        _parity(exported, reference, outputs, argmax_output, argmax_unpooling)

    fallback = {}  # what the first TFLite variant learnt about which signature converts

    def tflite_signatures(variant):
        """Signatures to try for TFLite, most dynamic first, with the note a fallback earns."""
        yield concrete_function, None
        sample_height, sample_width = samples.shape[1:3]
        if height is None or width is None:
            # Dynamic paddings (PadToMultiple) leave MLIR with unknown channel dims that TFLite's CONV_2D
            # cannot take; a static height and width avoids it. The batch stays dynamic.
            spec = tf.TensorSpec((None, sample_height, sample_width, channels), input_dtype, name=INPUT_NAME)
            yield (module.function_for(spec).get_concrete_function(),
                   f"static height x width {sample_height}x{sample_width}, dynamic batch")
        if variant == "int8":
            # Full-integer calibration needs static shapes where a layer (UpSampling2D) loses them.
            spec = tf.TensorSpec((1, sample_height, sample_width, channels), input_dtype, name=INPUT_NAME)
            yield (module.function_for(spec).get_concrete_function(),
                   f"static shape 1x{sample_height}x{sample_width}x{channels}")

    def write_tflite(variant):
        def write(exported):
            representative = None
            if variant == "int8":
                calibration = list(_images_from(representative_data, num_calibration))
                if not calibration:
                    raise ExportError("representative_data yielded no images")
                if uint8_input:
                    calibration = [np.clip(np.round(image), 0, 255).astype("uint8") for image in calibration]

                def representative():
                    for image in calibration:
                        yield [image]

            start = time.perf_counter()
            content, errors = None, []
            for index, (function, note) in enumerate(tflite_signatures(variant)):
                if index < fallback.get("start", 0):  # an earlier variant showed this signature fails
                    continue
                try:
                    content = _convert_tflite(module, function, exported_model, variant, representative, io_dtype,
                                              float_input=not uint8_input, float_output=not argmax_output)
                except ExportError as error:
                    errors.append(error)
                    continue
                if note:
                    if errors:
                        fallback["reason"] = str(errors[-1]).split(". kerazoo never")[0].splitlines()[0][:200]
                    if index == 1:  # the height/width fallback holds for every variant; skip the retry
                        fallback["start"] = 1
                    exported.notes.append(f"{note}; the more dynamic signature failed: {fallback['reason']}")
                break
            if content is None:
                raise errors[0]  # the most dynamic attempt's error names the op and layer
            content = _embed_tflite_metadata(content, {**metadata, "quantize": variant})
            stem = model.name if variant == "float32" else f"{model.name}_{variant}"
            path = os.path.join(out_dir, f"{stem}.tflite")
            with open(path, "wb") as handle:
                handle.write(content)
            _write_sidecar(path, {**metadata, "quantize": variant})
            exported.convert_s = time.perf_counter() - start
            exported.path, exported.size_bytes = path, os.path.getsize(path)
            exported.ops = _tflite_ops(content)
            if variant == "int8":
                exported.notes.append(f"interface: input {'uint8' if uint8_input else io_dtype}, "
                                      f"output {'int32' if argmax_output else io_dtype}; "
                                      f"calibrated on {len(calibration)} images")
            outputs, exported.latency_ms = _run_tflite(content, feed, latency_runs)
            _parity(exported, reference, outputs, argmax_output, argmax_unpooling)

        return write

    def write_onnx(exported):
        import onnx
        import tf2onnx

        path = os.path.join(out_dir, f"{model.name}.onnx")
        start = time.perf_counter()
        onnx_model, _ = tf2onnx.convert.from_function(
            module.serve, input_signature=[concrete_function.structured_input_signature[0][0]], opset=opset,
        )
        _onnx_rename_dynamic_axes(onnx_model)
        onnx.helper.set_model_props(onnx_model, {"kerazoo": json.dumps(metadata)})
        # tf2onnx can write an invalid node without failing: the file counts only once checked and run.
        onnx.checker.check_model(onnx_model, full_check=True)
        onnx.save(onnx_model, path)
        _write_sidecar(path, metadata)
        exported.convert_s = time.perf_counter() - start
        exported.path, exported.size_bytes = path, os.path.getsize(path)
        exported.ops = tuple(sorted({node.op_type for node in onnx_model.graph.node}))
        exported.notes.append(f"opset {opset}")
        outputs, exported.latency_ms = _run_onnx(path, feed, latency_runs)
        _parity(exported, reference, outputs, argmax_output, argmax_unpooling)

    if "saved_model" in formats:
        attempt("saved_model", "float32", write_saved_model)
    if "tflite" in formats:
        for variant in variants:
            attempt("tflite", variant, write_tflite(variant))
    if "onnx" in formats:
        attempt("onnx", "float32", write_onnx)

    with open(os.path.join(out_dir, "export_report.json"), "w") as handle:
        json.dump(report.to_dict(), handle, indent=2, default=str)
    if verbose:
        report.print()
    return report


def _write_sidecar(path, metadata):
    with open(os.path.splitext(path)[0] + ".json", "w") as handle:
        json.dump(metadata, handle, indent=2)


def _kerazoo_version():
    try:
        from importlib.metadata import version

        return version("kerazoo")
    except Exception:  # not installed (running from a checkout)
        return None
