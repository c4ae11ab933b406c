"""Where tiled results go: an array in memory, or a file written strip by strip.

A strip is a run of finished rows (rows, W[, C]) of the result, top to bottom. Writing them to a file
as they come keeps only one strip in memory: a ".png" is streamed row by row through pypng (PIL encodes
a PNG from a whole image in memory, in 4 bytes per RGB pixel), a ".npy" goes into a memory-mapped file.
Both are written to a temp file beside the target and renamed onto it at the end (`kerazoo.utils.files`), so
a failed or interrupted run leaves nothing half-written.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from kerazoo.utils.files import atomic_path

__all__ = ["OUTPUT_SUFFIXES", "collect_strips", "write_strips"]

OUTPUT_SUFFIXES = (".png", ".npy")


def collect_strips(strips: Iterable[np.ndarray]) -> np.ndarray:
    """The strips stacked into one array (rows first)."""
    strips = list(strips)
    if not strips:
        raise ValueError("no rows to collect")
    return np.concatenate(strips, axis=0)


def _first(strips):
    iterator = iter(strips)
    try:
        first = next(iterator)
    except StopIteration:
        raise ValueError("no rows to write") from None
    return first, itertools.chain([first], iterator)


def write_strips(path: str | os.PathLike, strips: Iterable[np.ndarray], *, height: int, width: int) -> Path:
    """Writes strips of rows into `path`, holding one strip at a time; atomically (temp file + rename).

    Args:
        path: ".png" (uint8 strips: (rows, W) grey, (rows, W, 1) grey, (rows, W, 3) RGB or (rows, W, 4)
            RGBA) or ".npy" (any dtype and trailing shape).
        strips: arrays (rows, width, ...) whose rows add up to `height`, all of one dtype and trailing shape.
        height, width: the result's size.

    Returns:
        `path`.

    Raises:
        ValueError: for another suffix, a PNG of non-uint8 values or of an unsupported channel count, or
            strips that do not add up to (height, width).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"out={str(path)!r}: the file must end in {' or '.join(OUTPUT_SUFFIXES)}")
    first, strips = _first(strips)
    if first.ndim < 2 or first.shape[1] != width:
        raise ValueError(f"strips must be (rows, {width}, ...); got {first.shape}")
    if suffix == ".png":
        channels = 1 if first.ndim == 2 else first.shape[-1]
        if first.dtype != np.uint8 or first.ndim > 3 or channels not in (1, 3, 4):
            raise ValueError(f"out={str(path)!r}: a PNG takes uint8 grey, RGB or RGBA; these results are "
                             f"{first.dtype} with shape (rows, {width}{', ' + str(channels) if first.ndim == 3 else ''}"
                             f"): write a .npy file instead")
    with atomic_path(path) as tmp:
        if suffix == ".png":
            _write_png(tmp, strips, height, width, channels, first.shape[1:])
        else:
            _write_npy(tmp, strips, height, first.dtype, first.shape[1:])
    return path


def _checked_rows(strips, height, trailing, dtype):
    """Each strip after checking it continues the result; raises when the rows do not add up to height."""
    written = 0
    for strip in strips:
        if strip.shape[1:] != trailing or strip.dtype != dtype:
            raise ValueError(f"strip of {strip.dtype} {strip.shape} after strips of {dtype} (rows, *{trailing})")
        if written + len(strip) > height:
            raise ValueError(f"strips add up to more than {height} rows")
        yield written, strip
        written += len(strip)
    if written != height:
        raise ValueError(f"strips add up to {written} rows, not {height}")


def _write_png(path, strips, height, width, channels, trailing):
    import png  # pypng: writes a PNG from an iterator of rows

    def rows():
        for _, strip in _checked_rows(strips, height, trailing, np.dtype(np.uint8)):
            yield from strip.reshape(len(strip), -1)

    writer = png.Writer(width, height, greyscale=channels == 1, alpha=channels == 4, bitdepth=8)
    with open(path, "wb") as file:
        writer.write(file, rows())


def _write_npy(path, strips, height, dtype, trailing):
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(height,) + tuple(trailing))
    try:
        for start, strip in _checked_rows(strips, height, tuple(trailing), dtype):
            array[start:start + len(strip)] = strip
        array.flush()
    finally:
        del array
