"""ONNX writer: tf2onnx on a graph that takes the weights as inputs, weights added back as initializers.

tf2onnx's usual path freezes every variable into a constant and copies the graph several times: FCN-8s
on VGG16 (134M parameters) was killed by the OOM killer at 24 GB, and its `large_model=True` path
peaked at 17.6 GB (MEASURED.md). Here the serving function takes the image and every variable value as
inputs (`model.stateless_call`), so tf2onnx converts a weight-free graph in about a second; the weight
inputs then become initializers (external data above `EXTERNAL_DATA_MIN_BYTES`, the 2 GB protobuf
limit). Large models are converted in a child process with a memory limit, after a memory estimate is
checked against the free memory, so a blow-up kills the child and never the caller.

An ONNX file counts only once `onnx.checker` accepts it and onnxruntime loads and runs it: tf2onnx
can write an invalid node without failing.

On the JAX and torch backends the file comes from Keras' own exporter (`model.export(format="onnx")`:
torch.onnx there, jax2onnx on JAX) with a static height and width and a dynamic batch, then goes
through the same checker, onnxruntime run and parity contract.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np

from kerazoo.export.parity import check_parity
from kerazoo.export.report import ExportError, InsufficientMemoryError, format_size
from kerazoo.export.runners import INPUT_NAME, onnx_runner, run_and_time
from kerazoo.utils.files import atomic_write_text

# Weights above this many bytes are converted in a child process (smaller ones convert in-process in
# about a second; a child costs a TensorFlow import).
CHILD_PROCESS_MIN_BYTES = 64 * 2**20
# Weights above this go to an external data file beside the .onnx (protobuf messages stop at 2 GB).
EXTERNAL_DATA_MIN_BYTES = 1800 * 2**20
# Memory the caller needs per byte of weights while it attaches, checks, saves and runs the file
# (measured: FCN-8s VGG16, 537 MB of weights, peak 2.3 GB above the built model), and what the
# converting child needs for TensorFlow and tf2onnx themselves (measured: 2.4 GB, weight-free graph).
MEMORY_PER_WEIGHT_BYTE = 6
CHILD_BASE_BYTES = 5 << 29  # 2.5 GiB
CHILD_TIMEOUT_S = 1800
WEIGHT_PREFIX = "kerazoo_weight_"


def weight_bytes(model):
    """Bytes of the model's variables."""
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.variables)


def memory_estimate(model):
    """Bytes of free memory an ONNX export of `model` needs."""
    return MEMORY_PER_WEIGHT_BYTE * weight_bytes(model) + CHILD_BASE_BYTES


def available_memory():
    """MemAvailable in bytes (Linux /proc/meminfo), else None (unknown)."""
    try:
        with open("/proc/meminfo") as handle:
            return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def check_onnx_memory(model, name):
    """Raises `InsufficientMemoryError` naming the model's size when the export would not fit in memory."""
    needed, available = memory_estimate(model), available_memory()
    if available is not None and needed > available:
        size = weight_bytes(model)
        raise InsufficientMemoryError(
            f"ONNX export of {name!r} ({model.count_params() / 1e6:.1f}M parameters, "
            f"{format_size(size)} of weights) needs about {needed / 1e9:.1f} GB of free memory; "
            f"{available / 1e9:.1f} GB is available. Free memory, or export the other formats "
            "(formats=['saved_model', 'tflite']).", needed, available)


def write_onnx(job, exported):
    """Writes `<name>.onnx` (+ `.onnx.data` for large weights), checks it, runs it in onnxruntime."""
    start = time.perf_counter()
    if keras.backend.backend() == "tensorflow":
        onnx_model = _attach_weights(_convert_weight_free_graph(job), job.model)
        how = f"opset {job.options.opset}"
    else:
        onnx_model = _export_with_keras(job)
        how = f"opset {job.options.opset}, Keras' exporter on {keras.backend.backend()} (static height and width)"
    _name_dynamic_axes(onnx_model)
    import onnx

    onnx.helper.set_model_props(onnx_model, {"kerazoo": json.dumps(job.metadata)})
    exported.ops = tuple(sorted({node.op_type for node in onnx_model.graph.node}))
    path = os.path.join(job.out_dir, f"{job.stem}.onnx")
    external = weight_bytes(job.model) >= EXTERNAL_DATA_MIN_BYTES
    written = _save_checked(onnx_model, path, external)
    del onnx_model  # the weights are on disk now; the runtime reads them from there
    atomic_write_text(os.path.splitext(path)[0] + ".json", json.dumps(job.metadata, indent=2))
    exported.convert_s = time.perf_counter() - start
    exported.path, exported.size_bytes = path, sum(os.path.getsize(p) for p in written)
    exported.notes.append(how + (f"; weights in {os.path.basename(written[1])}" if external else ""))
    outputs, exported.latency_ms = run_and_time(onnx_runner(path), job.feed, job.options.latency_runs)
    check_parity(exported, job.reference, outputs, job.options.argmax_output, job.tie_policy, job.targets)


def _export_with_keras(job):
    """The ONNX model from Keras' own `model.export(format="onnx")` (JAX, torch backends), loaded in memory.

    torch.onnx takes no dynamic height and width here, so the file takes the sample size (batch dynamic).
    """
    import onnx

    backend = keras.backend.backend()
    model = job.model
    if job.options.argmax_output:  # the argmax inside the graph, as the TensorFlow path puts it
        inputs = keras.Input(shape=job.samples.shape[1:], name=INPUT_NAME)
        model = keras.Model(inputs, keras.ops.cast(keras.ops.argmax(model(inputs), axis=-1), "int32"))
    signature = [keras.InputSpec(shape=(None, *job.samples.shape[1:]), dtype="float32", name=INPUT_NAME)]
    with tempfile.TemporaryDirectory(prefix="kerazoo_onnx_") as work_dir:
        path = os.path.join(work_dir, "model.onnx")
        try:
            model.export(path, format="onnx", input_signature=signature, opset_version=job.options.opset,
                         verbose=False)
        except ImportError as error:  # JAX needs jax2onnx
            raise ExportError(f"ONNX export on the {backend} backend needs a package that is missing ({error}); "
                              "install it, or export ONNX with KERAS_BACKEND=torch or tensorflow") from error
        return onnx.load(path)  # external data, if torch wrote any, is read in now


def _convert_weight_free_graph(job):
    """The ONNX model of the serving function with the weights as graph inputs."""
    import tensorflow as tf
    import tf2onnx

    from kerazoo.export import onnx_child

    function, _ = job.module.weights_as_inputs_function(job.input_spec)
    concrete = function.get_concrete_function()
    input_names = [t.name for t in concrete.inputs if t.dtype != tf.resource]
    output_names = [t.name for t in concrete.outputs if t.dtype != tf.resource]
    spec = {"name": concrete.name.decode() if isinstance(concrete.name, bytes) else str(concrete.name),
            "input_names": input_names, "output_names": output_names, "opset": job.options.opset,
            "tensors_to_rename": tf2onnx.convert.tensor_names_from_structed(concrete, input_names, output_names)}
    with tf.device("/cpu:0"):
        graph_def = tf2onnx.tf_loader.from_function(concrete, input_names, output_names)
    if weight_bytes(job.model) < CHILD_PROCESS_MIN_BYTES:
        return onnx_child.convert(graph_def, spec)
    return convert_in_child(graph_def, spec, child_memory_limit(job.model), job.stem)


def child_memory_limit(model):
    """Resident bytes the converting child may reach: what is free beyond the caller's own need."""
    available = available_memory()
    if available is None:
        return None
    return max(CHILD_BASE_BYTES, available - MEMORY_PER_WEIGHT_BYTE * weight_bytes(model))


def convert_in_child(graph_def, spec, memory_limit, model_name, script=None):
    """Runs `onnx_child.py` on `graph_def` in a fresh process; returns the ONNX ModelProto.

    The child is killed when its resident memory passes `memory_limit` bytes (None: no limit) or it
    runs past `CHILD_TIMEOUT_S`; either, or any death of the child, raises `ExportError` here.
    """
    import onnx

    script = script or os.path.join(os.path.dirname(os.path.abspath(__file__)), "onnx_child.py")
    with tempfile.TemporaryDirectory(prefix="kerazoo_onnx_") as work_dir:
        with open(os.path.join(work_dir, "graph.pb"), "wb") as handle:
            handle.write(graph_def.SerializeToString())
        with open(os.path.join(work_dir, "job.json"), "w") as handle:
            json.dump(spec, handle)
        with open(os.path.join(work_dir, "stderr.txt"), "w+") as stderr:
            child = subprocess.Popen([sys.executable, script, work_dir], stdout=subprocess.DEVNULL, stderr=stderr)
            peak, reason = _watch(child, memory_limit)
            stderr.seek(0)
            tail = stderr.read()[-2000:]
        if reason or child.returncode != 0:
            how = reason or (f"killed by signal {-child.returncode}" if child.returncode < 0
                             else f"exited with status {child.returncode}")
            raise ExportError(f"the ONNX conversion process of {model_name!r} {how} (peak {peak / 1e9:.2f} GB); "
                              f"the caller is unharmed. Its last output:\n{tail}")
        return onnx.load(os.path.join(work_dir, "model.onnx"))


def _watch(child, memory_limit, interval_s=0.1):
    """Waits for `child`, killing it above `memory_limit` resident bytes or after `CHILD_TIMEOUT_S`;
    returns (peak resident bytes seen, why it was killed or None)."""
    peak, deadline = 0, time.monotonic() + CHILD_TIMEOUT_S
    while child.poll() is None:
        rss = _resident_bytes(child.pid)
        peak = max(peak, rss)
        reason = None
        if memory_limit is not None and rss > memory_limit:
            reason = f"passed its memory limit of {memory_limit / 1e9:.2f} GB and was killed"
        elif time.monotonic() > deadline:
            reason = f"ran past {CHILD_TIMEOUT_S} s and was killed"
        if reason:
            child.kill()
            child.wait()
            return peak, reason
        time.sleep(interval_s)
    return peak, None


def _resident_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as handle:
            return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS:"))
    except (OSError, StopIteration, ValueError):
        return 0


def _attach_weights(onnx_model, model):
    """Turns the weight inputs of `onnx_model` into initializers holding `model`'s variable values;
    weights no node reads (tf2onnx folds some away) are left out."""
    from onnx import numpy_helper

    variables = model.trainable_variables + model.non_trainable_variables
    used = {name for node in onnx_model.graph.node for name in node.input}
    inputs = list(onnx_model.graph.input)
    del onnx_model.graph.input[:]
    for value in inputs:
        if not value.name.startswith(WEIGHT_PREFIX):
            onnx_model.graph.input.append(value)
        elif value.name in used:
            array = np.asarray(variables[int(value.name[len(WEIGHT_PREFIX):])].numpy())
            onnx_model.graph.initializer.append(numpy_helper.from_array(array, value.name))
    return onnx_model


def _save_checked(onnx_model, path, external):
    """Saves `onnx_model` to `path` (weights in `path + ".data"` when `external`) once `onnx.checker`
    accepts it; returns the paths written. Nothing is left at `path` when the check fails."""
    import onnx

    staging = tempfile.mkdtemp(dir=os.path.dirname(path) or ".", prefix=".onnx.", suffix=".partial")
    try:
        name = os.path.basename(path)
        staged = os.path.join(staging, name)
        data_name = name + ".data"
        onnx.save_model(onnx_model, staged, save_as_external_data=external, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
        onnx.checker.check_model(staged, full_check=True)  # by path: works past 2 GB
        written = [path]
        if external:
            os.replace(os.path.join(staging, data_name), path + ".data")
            written.append(path + ".data")
        os.replace(staged, path)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _name_dynamic_axes(onnx_model):
    """Names the dynamic axes of every graph input and output batch/height/width."""
    axis_names = {0: "batch", 1: "height", 2: "width"}
    for value in list(onnx_model.graph.input) + list(onnx_model.graph.output):
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_param") or not dim.HasField("dim_value"):
                if axis in axis_names:
                    dim.dim_param = axis_names[axis]
