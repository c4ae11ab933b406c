"""Web writer (optional format "web"): a folder that any static web server serves, running the model in the
browser.

`<name>_web/` holds:

* `model.onnx`: the ONNX file, written and parity-checked by the ONNX writer (copied from `<name>.onnx`
  when "onnx" was exported in the same call, so it is converted once);
* `model.json`: the export metadata (input and output names, dtypes and shapes, class names and
  colours, trained input size) plus what the page needs: task, super-resolution scale, head
  activation, preprocessing and the runtime's version;
* `index.html`, `kerazoo_web.js`, `kerazoo_web.css`: the page. The user picks an image; the page runs
  the model client-side and shows the mask over the image (segmentation), the restored image (denoise,
  super_resolution) or a colour-mapped depth map (depth);
* `ort/`: onnxruntime-web's WebAssembly build, from the pinned npm release in the cache
  (`kerazoo.export.web_runtime`): nothing is fetched from a CDN, and the page's Content-Security-Policy
  allows its own origin only.

Serve it with e.g. `python -m http.server -d exported/<name>_web` and open http://127.0.0.1:8000/
(browsers do not run WebAssembly modules from file:// pages).

The page resizes an image to the model's fixed or trained input size when it has one (as
`ZooModel.segment` does) and otherwise runs it at its own size, scaled down when it would pass
`MAX_PIXELS` in the output. For tests it publishes `window.kerazoo`: `status` (also
`document.body.dataset.status`: "loading", "ready", "running", "done" or "error"), `metadata`, and after
a run `result` (the input tensor's data and dims, the raw output's data, dims and type, the run's
milliseconds); `window.kerazoo.run(blob)` runs an image without the file picker, and
`window.kerazoo.toBase64(typedArray)` returns the array's bytes for transfer.
"""

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

from kerazoo.export.onnx import EXTERNAL_DATA_MIN_BYTES, check_onnx_memory, weight_bytes, write_onnx
from kerazoo.export.report import ExportError, format_size, path_size
from kerazoo.export import web_runtime
from kerazoo.export.web_runtime import WebRuntimeError, fetch_web_runtime
from kerazoo.utils.download import DownloadError
from kerazoo.utils.files import atomic_directory

PAGE_DIR = Path(__file__).resolve().parent / "web_page"
PAGE_FILES = ("index.html", "kerazoo_web.js", "kerazoo_web.css")
MODEL_FILE = "model.onnx"
METADATA_FILE = "model.json"
RUNTIME_DIR = "ort"
# The page scales down images whose output would pass this many pixels (a browser tab's memory).
MAX_PIXELS = 2048 * 2048
# What a web folder takes from the ONNX file it holds when that file was exported in the same call.
_CHECKED_FIELDS = ("ops", "max_abs_diff", "relative_diff", "argmax_agreement", "near_tie_fraction", "latency_ms",
                   "passed", "psnr", "psnr_drop")


def check_web(model, name):
    """Raises `ExportError` before anything is written when the web folder cannot be: too little memory
    for the ONNX conversion, weights too large for a browser, or onnxruntime-web neither cached nor
    downloadable (it is downloaded here, once, into the cache)."""
    check_onnx_memory(model, name)
    size = weight_bytes(model)
    if size >= EXTERNAL_DATA_MIN_BYTES:
        raise ExportError(f"the web export of {name!r} ({format_size(size)} of weights) needs one ONNX file under "
                          f"{format_size(EXTERNAL_DATA_MIN_BYTES)}, which a browser tab can load; export ONNX instead")
    runtime = web_runtime.ONNXRUNTIME_WEB
    try:
        fetch_web_runtime(runtime)
    except (DownloadError, WebRuntimeError, ValueError) as error:
        raise ExportError(f"the web export of {name!r} needs {runtime.package} {runtime.version}: {error}") from error


def write_web(job, exported):
    """Writes `<name>_web/` (the ONNX file, its metadata, the page and onnxruntime-web) in one rename."""
    start = time.perf_counter()
    runtime = web_runtime.ONNXRUNTIME_WEB
    runtime_folder = fetch_web_runtime(runtime)  # cached by check_web
    folder = Path(job.out_dir) / f"{job.stem}_web"
    with atomic_directory(folder, overwrite=True) as staging:
        _write_model(job, exported, staging)
        for name in PAGE_FILES:
            shutil.copyfile(PAGE_DIR / name, staging / name)
        (staging / RUNTIME_DIR).mkdir()
        for name in runtime.names:
            shutil.copyfile(runtime_folder / name, staging / RUNTIME_DIR / name)
        (staging / METADATA_FILE).write_text(json.dumps(web_metadata(job, runtime), indent=2) + "\n")
    exported.convert_s = time.perf_counter() - start
    exported.path, exported.size_bytes = str(folder), path_size(folder)
    exported.notes.append(f"{runtime.package} {runtime.version} (WebAssembly) in {RUNTIME_DIR}/; "
                          f"parity measured on {MODEL_FILE} in onnxruntime; serve the folder: "
                          f"python -m http.server -d {folder}")


def _write_model(job, exported, staging):
    """`model.onnx` in `staging`: the ONNX file of this export when there is one, else converted and
    checked by the ONNX writer; `exported` gets its parity figures either way."""
    onnx_file = next((f for f in job.report.files if f.format == "onnx" and f.variant == "float32"), None)
    if onnx_file is not None:
        if not onnx_file.ok or onnx_file.path is None or not os.path.isfile(onnx_file.path):
            raise ExportError(f"the web folder holds the ONNX file, which failed: {onnx_file.error}")
        shutil.copyfile(onnx_file.path, staging / MODEL_FILE)
        for field in _CHECKED_FIELDS:
            setattr(exported, field, getattr(onnx_file, field))
        exported.notes.append(f"{MODEL_FILE} is {os.path.basename(onnx_file.path)}, checked above")
        return
    write_onnx(dataclasses.replace(job, out_dir=str(staging)), exported)
    os.replace(staging / f"{job.stem}.onnx", staging / MODEL_FILE)
    os.remove(staging / f"{job.stem}.json")  # the page reads model.json, written next


def web_metadata(job, runtime):
    """The export metadata plus what the page needs to show the output (a dict for model.json)."""
    model = job.model
    return {
        **job.metadata,
        # A plain keras.Model has no task: its outputs are shown as per-pixel class scores.
        "task": getattr(model, "task", "segmentation"),
        "scale": getattr(model, "scale", 1),
        "activation": getattr(model, "activation", None),
        "preprocessing": getattr(model, "preprocessing", None),
        "model_file": MODEL_FILE,
        "max_pixels": MAX_PIXELS,
        "runtime": {"package": runtime.package, "version": runtime.version, "backend": "wasm",
                    "files": [f"{RUNTIME_DIR}/{name}" for name in runtime.names]},
    }
