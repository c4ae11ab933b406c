"""The writer registry: one writer per format, each `write(job, exported)` filling an `ExportedFile`."""

import dataclasses
from collections.abc import Callable

from kerazoo.export.onnx import check_onnx_memory, write_onnx
from kerazoo.export.saved_model import write_saved_model
from kerazoo.export.tflite import write_tflite


@dataclasses.dataclass(frozen=True)
class Writer:
    """How one format is written.

    Attributes:
        write: `write(job, exported)`: writes the file, runs it in its runtime, fills `exported`.
        quantizable: whether the format has the TFLite numeric variants (else float32 only).
        preflight: `preflight(model, name)`, run for every requested format before any file is written: raises
            `ExportError` when the format cannot be written (e.g. too little memory), or None.
    """

    write: Callable
    quantizable: bool = False
    preflight: Callable | None = None

    def variants(self, requested):
        """The numeric variants this format writes, of those `requested`."""
        return tuple(requested) if self.quantizable else ("float32",)


WRITERS = {
    "saved_model": Writer(write_saved_model),
    "tflite": Writer(write_tflite, quantizable=True),
    "onnx": Writer(write_onnx, preflight=check_onnx_memory),
}
FORMATS = tuple(WRITERS)
