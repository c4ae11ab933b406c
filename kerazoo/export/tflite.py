"""TFLite (LiteRT) writer: builtin ops only, never SELECT_TF_OPS; float32, float16, dynamic-range and
full-integer variants; the metadata embedded as a flatbuffer metadata buffer and in a JSON sidecar."""

import json
import os
import re
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from kerazoo.export.parity import all_layers, check_parity
from kerazoo.export.report import ConversionError, ExportError, UnsupportedOpsError
from kerazoo.export.runners import INPUT_NAME, run_tflite
from kerazoo.export.serving import images_from
from kerazoo.utils.files import atomic_write_bytes, atomic_write_text

METADATA_NAME = "kerazoo"  # name of the metadata buffer embedded in .tflite files


def write_tflite(job, exported):
    """Converts the job's model to the `exported.variant` .tflite file, runs it in LiteRT, checks parity.

    Signatures are tried most dynamic first (see `_signatures`); a fallback is noted with the reason
    the more dynamic one failed, and a height x width fallback holds for the job's later variants.
    """
    variant, options = exported.variant, job.options
    representative, calibration = None, []
    if variant == "int8":
        calibration = list(images_from(options.representative_data, options.num_calibration))
        if not calibration:
            raise ExportError("representative_data yielded no images")
        if options.uint8_input:
            calibration = [np.clip(np.round(image), 0, 255).astype("uint8") for image in calibration]

        def representative():
            for image in calibration:
                yield [image]

    start = time.perf_counter()
    content, errors = None, []
    for index, (function, note) in enumerate(_signatures(job, variant)):
        if index < job.state.get("tflite_first_signature", 0):  # an earlier variant showed this one fails
            continue
        try:
            content = _convert(job, function, variant, representative)
        except ExportError as error:
            errors.append(error)
            continue
        if note:
            if errors:
                job.state["tflite_fallback_reason"] = errors[-1].summary
            if index == 1:  # the height/width fallback holds for every variant; skip the retry
                job.state["tflite_first_signature"] = 1
            exported.notes.append(f"{note}; the more dynamic signature failed: {job.state['tflite_fallback_reason']}")
        break
    if content is None:
        raise errors[0]  # the most dynamic attempt's error names the op and layer
    metadata = {**job.metadata, "quantize": variant}
    content = embed_tflite_metadata(content, metadata)
    stem = job.stem if variant == "float32" else f"{job.stem}_{variant}"
    path = os.path.join(job.out_dir, f"{stem}.tflite")
    atomic_write_bytes(path, content)
    atomic_write_text(os.path.splitext(path)[0] + ".json", json.dumps(metadata, indent=2))
    exported.convert_s = time.perf_counter() - start
    exported.path, exported.size_bytes = path, os.path.getsize(path)
    exported.ops = tflite_ops(content)
    if variant == "int8":
        exported.notes.append(f"interface: input {'uint8' if options.uint8_input else options.io_dtype}, "
                              f"output {'int32' if options.argmax_output else options.io_dtype}; "
                              f"calibrated on {len(calibration)} images")
    outputs, exported.latency_ms = run_tflite(content, job.feed, options.latency_runs)
    check_parity(exported, job.reference, outputs, options.argmax_output, job.tie_policy, job.targets)


def _signatures(job, variant):
    """Yields (concrete function, note) to try for TFLite, most dynamic first, with the note a fallback earns."""
    yield job.concrete_function, None
    _, height, width, channels = job.input_spec.shape
    sample_height, sample_width = job.samples.shape[1:3]
    if height is None or width is None:
        # Dynamic paddings (PadToMultiple) leave MLIR with unknown channel dims that TFLite's CONV_2D
        # cannot take; a static height and width avoids it. The batch stays dynamic.
        spec = tf.TensorSpec((None, sample_height, sample_width, channels), job.input_spec.dtype, name=INPUT_NAME)
        yield (job.module.function_for(spec).get_concrete_function(),
               f"static height x width {sample_height}x{sample_width}, dynamic batch")
    if variant == "int8":
        # Full-integer calibration needs static shapes where a layer (UpSampling2D) loses them.
        spec = tf.TensorSpec((1, sample_height, sample_width, channels), job.input_spec.dtype, name=INPUT_NAME)
        yield (job.module.function_for(spec).get_concrete_function(),
               f"static shape 1x{sample_height}x{sample_width}x{channels}")


def _convert(job, concrete_function, variant, representative):
    """The .tflite bytes of `concrete_function`, or an `ExportError` naming the unsupported ops."""
    options = job.options
    # With the module as trackable object the converter takes its SavedModel path, which needs about
    # a third of the memory of the deprecated graph-freezing path (2.6 GB vs 1.0 GB for SegNet-VGG16).
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete_function], job.module)
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
        if options.io_dtype != "float32":
            if not options.uint8_input:  # a uint8-pixel input is integer already
                converter.inference_input_type = tf.as_dtype(options.io_dtype)
            if not options.argmax_output:  # in-graph argmax gives int32 classes, nothing to quantize
                converter.inference_output_type = tf.as_dtype(options.io_dtype)
    with _CapturedStderr() as captured:
        try:
            return converter.convert()
        except Exception as error:  # ConverterError and friends; the op locations go to stderr only
            failure = error
    raise converter_error(f"{failure}\n{captured.read()}", concrete_function, job.model) from failure


def converter_error(message, concrete_function, model):
    """The converter's message (with its stderr) as an `UnsupportedOpsError` naming the non-builtin ops
    and their layers, or a `ConversionError` when it names none."""
    ops = set()
    for listed in re.findall(r"(?:TF Select ops|Flex ops): ([\w, ]+)", message):
        ops.update(name.strip() for name in listed.split(",") if name.strip())
    ops.update(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", message))
    if not ops:
        return ConversionError(f"TFLite conversion failed:\n{message[:4000]}")
    # Nested models (an encoder) are named only when no layer inside them is.
    layer_names = {layer.name for layer in all_layers(model) if not isinstance(layer, keras.Model)}
    model_names = {layer.name for layer in all_layers(model) if isinstance(layer, keras.Model)}

    def layers_in(op_path):
        names = [c for part in op_path.split("/") for c in (part, re.sub(r"_\d+$", "", part))]
        return {n for n in names if n in layer_names} or {n for n in names if n in model_names}

    # The converter's locations name the exact ops that failed: fused["Conv2D:", callsite("a/b/c@fn"...
    failing = [(op_type, path.split("@")[0])
               for op_type, path in re.findall(r'fused\["(\w+):", (?:callsite\()?"([^"]+)"', message)]
    found = {}
    for op_name in ops:
        layers = set()
        for op_type, op_path in failing:
            if op_type == op_name:
                layers |= layers_in(op_path)
        if not layers:  # no location in the message: every layer whose graph has the op
            for graph_op in concrete_function.graph.get_operations():
                if graph_op.type == op_name:
                    layers |= layers_in(graph_op.name)
        found[op_name] = sorted(layers)
    return UnsupportedOpsError(found)


def tflite_ops(content):
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


def embed_tflite_metadata(content, metadata):
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


class _CapturedStderr:
    """Captures file descriptor 2 (where the converter's C++ code writes its diagnostics)."""

    def __enter__(self):
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile(mode="w+b")
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc_info):
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        return False

    def read(self):
        self._file.seek(0)
        text = self._file.read().decode(errors="replace")
        self._file.close()
        return text
