"""The writer registry: one writer per format, each `write(job, exported)` filling an `ExportedFile`."""

import dataclasses
from collections.abc import Callable

import keras

from kerazoo.export.onnx import check_onnx_memory, write_onnx
from kerazoo.export.openvino import check_openvino, write_openvino
from kerazoo.export.report import ExportError
from kerazoo.export.saved_model import write_saved_model
from kerazoo.export.tflite import write_tflite
from kerazoo.export.web import check_web, write_web
from kerazoo.utils.registry import Registry


@dataclasses.dataclass(frozen=True)
class Writer:
    """How one format is written.

    Attributes:
        write: `write(job, exported)`: writes the file, runs it in its runtime, fills `exported`.
        quantizable: whether the format has the TFLite numeric variants (else float32 only).
        preflight: `preflight(model, name)`, run for every requested format before any file is written: raises
            `ExportError` when the format cannot be written (e.g. too little memory), or None.
        backends: the Keras backends the format is written from.
        default: whether `export` writes it when no formats are named (optional extras are not).
    """

    write: Callable
    quantizable: bool = False
    preflight: Callable | None = None
    backends: tuple = ("tensorflow",)
    default: bool = True

    def variants(self, requested):
        """The numeric variants this format writes, of those `requested`."""
        return tuple(requested) if self.quantizable else ("float32",)


WRITERS = Registry("export format")  # in writing order
WRITERS.register("saved_model", Writer(write_saved_model))
WRITERS.register("tflite", Writer(write_tflite, quantizable=True))
# TensorFlow through tf2onnx; JAX and torch through Keras' own exporter (see kerazoo.export.onnx).
WRITERS.register("onnx", Writer(write_onnx, preflight=check_onnx_memory, backends=("tensorflow", "jax", "torch")))
# Optional extra kerazoo[openvino]; from the TensorFlow serving function (see kerazoo.export.openvino).
WRITERS.register("openvino", Writer(write_openvino, preflight=check_openvino, default=False))
# A folder for a static web server: the ONNX file run in onnxruntime-web by a page (see kerazoo.export.web).
# After "onnx", whose file it reuses when both are asked for.
WRITERS.register("web", Writer(write_web, preflight=check_web, backends=("tensorflow", "jax", "torch"), default=False))
FORMATS = tuple(name for name in WRITERS if WRITERS[name].default)  # what `export` writes by default


def check_backend(formats, uint8_input=False):
    """Raises `ExportError` when the running Keras backend cannot write one of `formats`, saying which can."""
    backend = keras.backend.backend()
    unable = [fmt for fmt in formats if backend not in WRITERS[fmt].backends]
    if unable:
        able = [fmt for fmt in WRITERS if backend in WRITERS[fmt].backends]
        needed = sorted({b for fmt in unable for b in WRITERS[fmt].backends})
        raise ExportError(
            f"{', '.join(unable)} export needs the {' or '.join(needed)} backend (KERAS_BACKEND={needed[0]}); "
            f"Keras runs on {backend!r} here, which exports {', '.join(able) or 'nothing'}. Save the model "
            "(.keras or a preset) and export it in a process with KERAS_BACKEND=tensorflow.")
    if uint8_input and backend != "tensorflow":
        raise ExportError(f"uint8_input needs the tensorflow backend (KERAS_BACKEND=tensorflow); Keras runs on "
                          f"{backend!r} here")
