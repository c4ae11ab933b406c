"""What `export` measured: one `ExportedFile` per file, gathered in an `ExportReport`; and its errors."""

import dataclasses
import os


class ExportError(RuntimeError):
    """An export that cannot be written, does not load or run in its runtime, or misses its parity contract."""


class UnsupportedOpsError(ExportError):
    """A TFLite conversion that needs TensorFlow ops with no TFLite builtin.

    Attributes:
        ops: {op type: sorted names of the layers that emit it} (empty layer lists when unknown).
        summary: one line naming the ops and layers, for notes.
    """

    def __init__(self, ops):
        self.ops = ops
        found = [f"{op} (in layer {_names(layers)})" if layers else op for op, layers in sorted(ops.items())]
        self.summary = "TFLite conversion needs TensorFlow ops that are not TFLite builtins: " + "; ".join(found)
        super().__init__(self.summary + ". kerazoo never enables SELECT_TF_OPS (Flex): rewrite the layer with "
                         "builtin-friendly ops.")


class ConversionError(ExportError):
    """A converter failure that names no unsupported op; `summary` is its first line."""

    def __init__(self, message):
        self.summary = (message.strip().splitlines() or ["conversion failed"])[0][:200]
        super().__init__(message)


class InsufficientMemoryError(ExportError):
    """An export that would need more memory than the machine has free, raised before it starts.

    Attributes:
        needed_bytes: the estimate of what the conversion needs.
        available_bytes: what was free.
    """

    def __init__(self, message, needed_bytes, available_bytes):
        self.needed_bytes, self.available_bytes = needed_bytes, available_bytes
        super().__init__(message)


def _names(layers):
    shown = ", ".join(repr(n) for n in layers[:6])
    return shown + (f" and {len(layers) - 6} more" if len(layers) > 6 else "")


@dataclasses.dataclass
class ExportedFile:
    """One exported file and what was measured on it.

    Attributes:
        format: "saved_model", "tflite" or "onnx".
        variant: numeric variant: "float32", "float16", "dynamic" (dynamic-range int8) or "int8".
        path: file (or SavedModel directory) written, or None when conversion failed.
        size_bytes: bytes on disk (a SavedModel directory: all its files; ONNX: with its external data).
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
        psnr: restoration models with clean sample targets: the file's mean PSNR (dB, 8-bit outputs).
        psnr_drop: the Keras model's PSNR minus the file's (dB; int8's is the quantization loss).
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
    psnr: float | None = None
    psnr_drop: float | None = None

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

    HEADERS = ("file", "variant", "size", "convert", "max |diff| (rel.)", "argmax agree / PSNR drop", "latency",
               "ops", "status")

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
                format_size(f.size_bytes),
                "-" if f.convert_s is None else f"{f.convert_s:.1f} s",
                "-" if f.max_abs_diff is None else f"{f.max_abs_diff:.2e} ({f.relative_diff:.1e})",
                _agreement(f),
                "-" if f.latency_ms is None else f"{f.latency_ms:.1f} ms",
                (f"{len(f.ops)}: {', '.join(f.ops)}" if full_ops else str(len(f.ops))) if f.ops else "-",
                "ok" if f.ok and f.passed else ("ok (no contract)" if f.ok else f"FAILED: {f.error}"),
            ])
        return rows

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


def _agreement(exported):
    """The argmax agreement, or for a restoration model held to PSNR its drop from the Keras model's."""
    if exported.psnr_drop is not None:
        return f"{exported.psnr_drop:+.3f} dB ({exported.psnr:.2f})"
    return "-" if exported.argmax_agreement is None else f"{exported.argmax_agreement:.4f}"


def format_size(size):
    """Bytes as KiB or MiB text; "-" for None."""
    if size is None:
        return "-"
    return f"{size / 2**20:.2f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"


def path_size(path):
    """Bytes of a file, or of every file under a directory."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)
    return os.path.getsize(path)
