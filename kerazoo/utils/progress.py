"""Progress bars (rich) for long work: downloads count bytes, tiled inference counts tiles."""

import contextlib
import sys


def progress_bar(enabled, unit="items"):
    """A context manager yielding a rich progress bar on stderr, or None when disabled.

    Args:
        enabled: True, False, or None to show it only on a terminal.
        unit: "bytes" (size, speed) or "items" (done / total, elapsed).
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn, TransferSpeedColumn)

    if unit not in ("bytes", "items"):
        raise ValueError(f"unit must be 'bytes' or 'items'; got {unit!r}")
    counts = (DownloadColumn(), TransferSpeedColumn()) if unit == "bytes" else (MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(TextColumn("{task.description}"), BarColumn(), *counts, TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True)
