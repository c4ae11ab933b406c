"""OpenVINO writer (optional extra `kerazoo[openvino]`): an IR pair `<name>.xml` + `<name>.bin`.

The IR is converted by `openvino.convert_model` from the job's serving function, the TensorFlow
concrete function the SavedModel also stores. That is the route Keras' own
`model.export(format="openvino")` takes on the TensorFlow backend (it hands a `tf.function` to
`convert_model`), but on kerazoo's serving function, so the file keeps its interface: input "image",
output "scores" or "classes" (`argmax_output`), uint8 input, dynamic batch, height and width, and the
metadata (in the IR's rt_info under "kerazoo", and in a JSON sidecar). Converting from the ONNX file
instead gave the same max |diff| on a tiny U-Net and SegNet-Basic (probe, 2026-12-02), but needs the
ONNX export first; this route needs TensorFlow, so the format is written on the TensorFlow backend.

Weights are saved in float32 (`compress_to_fp16=False`: `save_model` halves them by default), and the
runner asks the CPU plugin for float32 arithmetic (it picks bfloat16 on CPUs that have it), so the file
is held to the float32 parity contract like SavedModel and ONNX.
"""

import json
import os
import shutil
import tempfile
import time

from kerazoo.export.parity import check_parity
from kerazoo.export.report import ExportError
from kerazoo.export.runners import openvino_runner, run_and_time
from kerazoo.utils.files import atomic_write_text

EXTRA = "pip install 'kerazoo[openvino]'"
_FRAMEWORK_OPS = ("Parameter", "Result", "Constant")


def check_openvino(model, name):
    """Raises `ExportError` naming the extra when OpenVINO is not installed (before anything is written)."""
    try:
        import openvino  # noqa: F401
    except ImportError as error:
        raise ExportError(f"the openvino export format of {name!r} needs OpenVINO, which is not installed "
                          f"({error}); install the extra: {EXTRA}") from error


def write_openvino(job, exported):
    """Writes `<name>.xml` + `<name>.bin` (and `<name>.openvino.json`), runs it on OpenVINO's CPU plugin,
    checks parity."""
    import openvino

    start = time.perf_counter()
    ov_model = openvino.convert_model(job.concrete_function)
    ov_model.set_rt_info(json.dumps(job.metadata), ["kerazoo"])
    exported.ops = tuple(sorted({op.get_type_name() for op in ov_model.get_ordered_ops()} - set(_FRAMEWORK_OPS)))
    path = os.path.join(job.out_dir, f"{job.stem}.xml")
    written = _save(openvino, ov_model, path)
    del ov_model
    atomic_write_text(os.path.join(job.out_dir, f"{job.stem}.openvino.json"), json.dumps(job.metadata, indent=2))
    exported.convert_s = time.perf_counter() - start
    exported.path, exported.size_bytes = path, sum(os.path.getsize(p) for p in written)
    exported.notes.append(f"OpenVINO {openvino.__version__} IR, float32 weights; run with INFERENCE_PRECISION_HINT f32")
    outputs, exported.latency_ms = run_and_time(openvino_runner(path), job.feed, job.options.latency_runs)
    check_parity(exported, job.reference, outputs, job.options.argmax_output, job.tie_policy, job.targets)


def _save(openvino, ov_model, path):
    """Saves the IR in a staging directory beside `path`, then moves the .bin and the .xml into place
    (the .xml last: a reader that finds it finds its weights); returns the paths written."""
    staging = tempfile.mkdtemp(dir=os.path.dirname(path) or ".", prefix=".openvino.", suffix=".partial")
    try:
        staged = os.path.join(staging, os.path.basename(path))
        openvino.save_model(ov_model, staged, compress_to_fp16=False)
        weights = os.path.splitext(path)[0] + ".bin"
        os.replace(os.path.splitext(staged)[0] + ".bin", weights)
        os.replace(staged, path)
        return [path, weights]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_openvino_metadata(path):
    """The kerazoo metadata stored in an OpenVINO IR's rt_info (a dict), or None when it has none."""
    import openvino

    ov_model = openvino.Core().read_model(str(path))
    if not ov_model.has_rt_info(["kerazoo"]):
        return None
    return json.loads(ov_model.get_rt_info(["kerazoo"]).astype(str))
