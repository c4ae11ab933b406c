"""Export to SavedModel, TFLite (LiteRT) and ONNX, verified against the Keras model.

`export` writes each requested file through its format's writer (`writers.WRITERS`), reloads it in its
own runtime (TensorFlow for SavedModel, `ai_edge_litert`'s interpreter for TFLite, onnxruntime for ONNX),
runs it on sample inputs and compares with the Keras model: maximum absolute difference (also relative
to the output range), argmax agreement per pixel, the ops the file uses, its size, conversion time and
latency. The results come back as an `ExportReport`, printed as a table.

Modules: `report` (ExportReport, ExportedFile, errors), `serving` (the float32 model, serving function,
samples, metadata: an `ExportJob`), `parity` (contracts, declared tie policies), `runners` (each
format in its runtime, timed by `kerazoo.utils.timing`), `writers` (the registry) and one module per format:
`saved_model`, `tflite`, `onnx` (with `onnx_child`, the converting child process).

Rules the writers keep, each learned the hard way (measured on these exporters; see the README's Export section):
- SavedModel goes through `tf.Module` + `tf.saved_model.save`; `keras.Model.export` stores every
  variable twice.
- TFLite uses builtin ops only, never SELECT_TF_OPS: a model that needs a TensorFlow (Flex) op fails
  with an `ExportError` that names the op and the layer that emits it.
- The in-graph argmax is `tf.math.argmax` in the serving function: `keras.ops.argmax` on floats lowers
  to Bitcast/BitwiseAnd, which TFLite rejects and tf2onnx writes as an invalid ONNX graph.
- ONNX converts a weight-free graph (weights as inputs, then initializers): a frozen FCN-VGG16 killed
  the caller at 24 GB. Large models convert in a memory-limited child process.
- An ONNX file counts only once `onnx.checker` accepts it and onnxruntime loads and runs it.

This package uses TensorFlow directly. SavedModel and TFLite need the TensorFlow backend; on JAX and torch
ONNX comes from Keras' own exporter (see `onnx`), and asking for another format raises an `ExportError`
that names the backend that can write it.
"""

import json
import os
import sys
import types

import kerazoo.models  # noqa: F401  (registers kerazoo's classes: exported models are often loaded first)
from kerazoo.export.parity import CONTRACTS, TIE_POLICIES, declared_tie_policy
from kerazoo.export.report import (
    ConversionError, ExportedFile, ExportError, ExportReport, InsufficientMemoryError, UnsupportedOpsError,
)
from kerazoo.export.runners import (
    INPUT_NAME, SIGNATURE_KEY, TFLiteRunner, onnx_runner, onnx_session, openvino_runner, physical_cores,
)
from kerazoo.export.serving import ExportOptions, float32_model, prepare_job
from kerazoo.export.tflite import METADATA_NAME, read_tflite_metadata
from kerazoo.export.writers import FORMATS, WRITERS, Writer, check_backend
from kerazoo.utils.files import atomic_write_text

QUANTIZE_MODES = ("float16", "dynamic", "int8")
IO_DTYPES = ("float32", "int8", "uint8")

__all__ = [
    "CONTRACTS", "FORMATS", "INPUT_NAME", "IO_DTYPES", "METADATA_NAME", "QUANTIZE_MODES", "SIGNATURE_KEY",
    "TIE_POLICIES", "WRITERS", "ConversionError", "ExportError", "ExportReport", "ExportedFile",
    "InsufficientMemoryError", "TFLiteRunner", "UnsupportedOpsError", "Writer", "declared_tie_policy", "export",
    "onnx_runner", "onnx_session", "openvino_runner", "physical_cores", "read_tflite_metadata",
]


def export(
    model,
    out_dir,
    formats=FORMATS,
    quantize=None,
    representative_data=None,
    sample_inputs=None,
    sample_targets=None,
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
    measured and reported only. A model with a layer that declares `export_parity = "argmax_agreement"`
    (SegNet's argmax pooling and unpooling) has its float32 max |diff| reported in the file's notes,
    not enforced (see `kerazoo.export.parity`); agreement is.

    Before any file is written, each format checks that it can be: ONNX estimates the memory it needs
    (about 6x the weight bytes plus 2.5 GB) and raises `InsufficientMemoryError`, naming the model's
    size, when the machine has less free. Large models convert to ONNX in a child process that is
    killed, not the caller, should it pass the free memory.

    Args:
        model: a `keras.Model` from images (B, H, W, C) to per-pixel outputs (B, H', W', K).
        out_dir: directory to write into (created). Files: `saved_model/`, `<name>.tflite`,
            `<name>_<quantize>.tflite`, `<name>.onnx` (and `<name>.onnx.data` past 1.8 GB of weights),
            each with a `.json` metadata sidecar (SavedModel: `saved_model/assets.extra/kerazoo.json`),
            and `export_report.json`. Every file is written atomically.
        formats: any of "saved_model", "tflite", "onnx" (the default `FORMATS`), "openvino" (an
            OpenVINO IR, with the optional extra `kerazoo[openvino]`) and "web" (`<name>_web/`: the ONNX
            file and a page that runs it in onnxruntime-web, see `kerazoo.export.web`); the keys of `WRITERS`.
        quantize: the TFLite numeric variants to write: None (float32 only), "float16", "dynamic"
            (dynamic-range int8 weights) or "int8" (full integer, needs `representative_data`) for that
            one variant, or a sequence of variants (None or "float32" in it means the float32 file).
            SavedModel and ONNX stay float32.
        representative_data: calibration images for int8: a NumPy array (N, H, W, C), a tf.data
            dataset of images or (image, mask) pairs (batched or not), or an iterable of those.
        sample_inputs: images (B, H, W, C) raw pixels for the parity check; by default the first two
            representative images, else two uniform-random images of the model's size (64x64 when free).
        sample_targets: restoration models: the clean images for `sample_inputs` (0..255, the outputs'
            shape). Float32 files must then come within 0.05 dB PSNR of the Keras model (8-bit outputs,
            Y for colour, no border crop), and every file reports its PSNR drop; see
            `kerazoo.export.parity.TIE_POLICIES` ("psnr").
        class_names: class names stored as metadata in every file; None takes a ZooModel's own.
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
        strict: raise `ExportError` when any file fails (a format's pre-flight check, conversion,
            checker, runtime, parity contract); with False, failures are recorded in the report and
            the other formats still run.
        verbose: print the report as a rich table.

    Returns:
        An `ExportReport`.

    Raises:
        ExportError: a conversion, validation or parity failure (with `strict=True`), e.g. a model
            that needs a TensorFlow op with no TFLite builtin (`UnsupportedOpsError`, naming the op and
            layer) or too little memory for ONNX (`InsufficientMemoryError`, before anything is written).
        ValueError: invalid arguments.
    """
    formats, variants = _validated(model, formats, quantize, representative_data, io_dtype)
    check_backend(formats, uint8_input)  # SavedModel and TFLite need TensorFlow; ONNX comes from every backend
    if sample_targets is not None and sample_inputs is None:
        raise ValueError("sample_targets need the sample_inputs they are the clean images of")
    blocked = _preflight(model, formats, strict)
    exported_model, notes = float32_model(model, mixed_precision)
    options = ExportOptions(variants=variants, representative_data=representative_data, argmax_output=argmax_output,
                            uint8_input=uint8_input, io_dtype=io_dtype, opset=opset, num_calibration=num_calibration,
                            latency_runs=latency_runs, sample_targets=sample_targets)
    os.makedirs(out_dir, exist_ok=True)
    report = ExportReport(model_name=model.name, out_dir=out_dir, notes=notes)
    job = prepare_job(model, exported_model, out_dir, options, report, sample_inputs, input_size, class_names)
    for fmt in formats:
        for variant in WRITERS[fmt].variants(variants):
            _attempt(job, fmt, variant, strict, blocked.get(fmt))
    atomic_write_text(os.path.join(out_dir, "export_report.json"), json.dumps(report.to_dict(), indent=2, default=str))
    if verbose:
        report.print()
    return report


def _validated(model, formats, quantize, representative_data, io_dtype):
    """(formats in writing order, TFLite variants), or ValueError naming the bad value and the valid ones."""
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    for fmt in formats:
        WRITERS.get(fmt)  # an unknown format raises, naming the valid ones
    if quantize is None:
        variants = ("float32",)
    elif isinstance(quantize, str):
        variants = (quantize,)
    else:
        variants = tuple("float32" if q is None else q for q in quantize)
    for variant in variants:
        if variant not in ("float32",) + QUANTIZE_MODES:
            raise ValueError(f"quantize must be None or one of {QUANTIZE_MODES}; got {variant!r}")
    if "int8" in variants and "tflite" in formats and representative_data is None:
        raise ValueError("quantize='int8' needs representative_data (images or a tf.data dataset) to calibrate")
    if io_dtype not in IO_DTYPES:
        raise ValueError(f"io_dtype must be one of {IO_DTYPES}; got {io_dtype!r}")
    if len(model.outputs) != 1:
        raise ValueError(f"export supports models with one output; {model.name!r} has {len(model.outputs)}")
    return [fmt for fmt in WRITERS if fmt in formats], variants


def _preflight(model, formats, strict):
    """{format: the ExportError of its pre-flight check} for the formats that cannot be written; with
    `strict`, the first such error is raised instead, before anything is written."""
    blocked = {}
    for fmt in formats:
        if WRITERS[fmt].preflight is None:
            continue
        try:
            WRITERS[fmt].preflight(model, model.name)
        except ExportError as error:
            if strict:
                raise
            blocked[fmt] = error
    return blocked


def _attempt(job, fmt, variant, strict, blocked=None):
    """Writes one file through its writer, recording it in the job's report; with `strict` a failure raises."""
    exported = ExportedFile(format=fmt, variant=variant)
    job.report.files.append(exported)
    try:
        if blocked is not None:
            raise blocked
        WRITERS[fmt].write(job, exported)
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


class _CallableModule(types.ModuleType):
    """`kerazoo.export(...)` works whether `kerazoo.export` is this function or this package (a lazy
    `kerazoo/__init__.py`, or `import kerazoo.export` first, binds the package there)."""

    def __call__(self, *args, **kwargs):
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
