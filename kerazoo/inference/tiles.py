"""Tiled (sliding-window) inference: large images in overlapping tiles, blended back into one output.

After MONAI's `sliding_window_inference` and pytorch-toolbelt's `ImageSlicer`/`TileMerger`: the image is
cut into overlapping tiles of one shape, the tiles run in batches through a "predict a batch" callable,
and each tile's output is added into the result under a weight map (a Gaussian with sigma = tile / 8, as
MONAI's, or a constant), then divided by the summed weights.

Three choices of this module:
- Tiles start at multiples of the model's stride (its pooling grid), so a tile sees its pixels on the
  same grid as whole-image inference. A side longer than the tile is covered up to the next multiple
  of the stride; the few rows or columns past the image are mirrored (reflect) and cropped away after.
  A side no longer than the tile is one tile of the image's own length, which the model pads itself.
- Each tile gives up a margin of a quarter of the overlap at its edges inside the image: those pixels
  are context only (zero weight), since their outputs saw the tile's padding instead of the image.
  A model whose receptive field reaches at most that margin (spans at most half the overlap) therefore
  gives exactly its whole-image output; the rest of the overlap is blended.
- Outputs are finalised in horizontal strips, top to bottom, as soon as no later tile touches them,
  so only about one row of tiles is held in float32 (`iter_tiled_strips`); `tiled_predict` collects
  the strips or writes them to a file (`kerazoo.inference.outputs`).

Everything here is NumPy around the callable, so it works with any Keras backend (or any model).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Iterator

import numpy as np

from kerazoo.utils.progress import progress_bar as _progress_bar

__all__ = ["BLENDS", "AxisPlan", "blend_window", "check_blend", "check_overlap", "check_tile", "iter_tiled_strips",
           "plan_axis", "tiled_predict"]

BLENDS = ("gaussian", "constant")
# MONAI's default: sigma = 0.125 x the tile's side; the edge of a tile weighs exp(-8) of its centre.
GAUSSIAN_SIGMA_SCALE = 0.125
# Finished rows are handed out in strips of about this many bytes of float32 (a few hundred rows of a
# wide image), so that finalising a strip (rounding, argmax) costs little memory next to the band.
STRIP_BYTES = 32 * 2**20


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_tile(tile, stride: int = 1) -> tuple[int, int]:
    """Validates a tile size: an int (square) or (height, width), positive multiples of `stride`.

    Returns:
        (height, width).

    Raises:
        ValueError: naming the bad value and the nearest valid sizes.
    """
    if not _is_int(stride) or stride < 1:
        raise ValueError(f"stride must be a positive int; got {stride!r}")
    pair = (tile, tile) if _is_int(tile) else tuple(tile) if isinstance(tile, (tuple, list)) else ()
    if len(pair) != 2 or not all(_is_int(side) and side > 0 for side in pair):
        raise ValueError(f"tile must be a positive int or (height, width) of positive ints; got {tile!r}")
    for side in pair:
        if side % stride:
            below, above = (side // stride) * stride, (side // stride + 1) * stride
            valid = f"{below} or {above}" if below else str(above)
            raise ValueError(f"tile {side} is not a multiple of the model's stride {stride}: use {valid}")
    return int(pair[0]), int(pair[1])


def check_overlap(overlap) -> float:
    """Validates the overlap, a fraction of the tile in [0, 1)."""
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float, np.floating)) or not 0 <= overlap < 1:
        raise ValueError(f"overlap must be a fraction of the tile in [0, 1), e.g. 0.25; got {overlap!r}")
    return float(overlap)


def check_blend(blend) -> str:
    """Validates the blend: one of `BLENDS`."""
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {', '.join(map(repr, BLENDS))}; got {blend!r}")
    return blend


@dataclasses.dataclass(frozen=True)
class AxisPlan:
    """Where the tiles lie along one axis.

    Attributes:
        length: the image's length along the axis.
        tile: the tiles' length (the image's own length when it is no longer than the tile).
        starts: each tile's first pixel, increasing; the last tile ends at `padded`.
        margin: context pixels each tile gives up at an edge inside the image.
    """

    length: int
    tile: int
    starts: tuple[int, ...]
    margin: int

    @property
    def padded(self) -> int:
        """Where the last tile ends: `length`, or the next multiple of the stride past it."""
        return self.starts[-1] + self.tile

    def margins(self, index: int) -> tuple[int, int]:
        """(before, after): the margin at each edge of tile `index` that lies inside the image, else 0."""
        return (self.margin if index > 0 else 0, self.margin if index < len(self.starts) - 1 else 0)


def plan_axis(length: int, tile: int, overlap: float, stride: int = 1) -> AxisPlan:
    """Tiles of `tile` pixels along an axis of `length`, overlapping by at least `overlap` of a tile.

    The overlap in pixels is rounded up to a multiple of `stride`, so every tile starts on the stride's
    grid; the last tile ends at `length` rounded up to the stride. A `length` no longer than `tile`
    gives one tile of that length.

    Raises:
        ValueError: when the overlap, rounded up to the stride, leaves no room to advance.
    """
    overlap = check_overlap(overlap)
    if length <= tile:
        return AxisPlan(length, length, (0,), 0)
    overlap_pixels = stride * math.ceil(overlap * tile / stride)
    if overlap_pixels >= tile:
        raise ValueError(f"overlap {overlap:g} of a {tile}-pixel tile rounds up to {overlap_pixels} pixels at the "
                         f"model's stride {stride}, the whole tile: use a tile of at least {overlap_pixels + stride} "
                         f"or an overlap of at most {(tile - stride) / tile:.3g}")
    step = tile - overlap_pixels
    end = stride * math.ceil(length / stride)
    starts = list(range(0, end - tile, step)) + [end - tile]
    return AxisPlan(length, tile, tuple(starts), overlap_pixels // 4)


def blend_window(size: int, blend: str = "gaussian", before: int = 0, after: int = 0) -> np.ndarray:
    """One axis of a tile's weight map: float32 `(size,)`, zero on `before` and `after` margin pixels.

    "gaussian" is exp(-d^2 / (2 sigma^2)) of each pixel centre's distance d from the tile's centre, with
    sigma = size / 8 (the 2-D map is the outer product of two of these); "constant" is 1.
    """
    check_blend(blend)
    if blend == "gaussian":
        distance = np.arange(size, dtype=np.float64) + 0.5 - size / 2
        window = np.exp(-0.5 * (distance / (GAUSSIAN_SIGMA_SCALE * size)) ** 2)
    else:
        window = np.ones(size)
    window[:before] = 0
    window[size - after:] = 0
    return window.astype(np.float32)


def _read_tile(image: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """image[top:top+height, left:left+width] as float32, mirrored (reflect) past the bottom and right."""
    part = np.asarray(image[top:top + height, left:left + width], dtype=np.float32)
    short_h, short_w = height - part.shape[0], width - part.shape[1]
    if short_h or short_w:
        part = np.pad(part, ((0, short_h), (0, short_w), (0, 0)), mode="reflect")
    return part


class _StripAccumulator:
    """Weighted sums of tile outputs over a band of rows that moves down as rows are finalised.

    The band is allocated once, `capacity` rows high (the most rows any batch keeps open), and shifted
    up in place as rows are finalised, so memory stays at one band whatever the image's height.
    """

    def __init__(self, capacity: int, width: int):
        self.capacity, self.width = capacity, width
        self.top = 0  # the image row held in the band's first row
        self.values = None  # (capacity, width, channels) float32 sums of weight x output
        self.weights = np.zeros((capacity, width), np.float32)

    def add(self, top: int, left: int, output: np.ndarray, weight: np.ndarray) -> None:
        if self.values is None:
            self.values = np.zeros((self.capacity, self.width, output.shape[-1]), np.float32)
        rows = slice(top - self.top, top - self.top + output.shape[0])
        columns = slice(left, left + output.shape[1])
        self.values[rows, columns] += output * weight[..., None]
        self.weights[rows, columns] += weight

    def pop(self, until: int, width: int) -> Iterator[np.ndarray]:
        """Yields the weighted means of rows [top, until), cropped to `width` columns, in strips of about
        `STRIP_BYTES` of float32 (so finalising them needs little more memory); the band then moves past them."""
        count = until - self.top
        if count <= 0:
            return
        step = max(1, STRIP_BYTES // (4 * width * self.values.shape[-1]))
        for first in range(0, count, step):
            rows = slice(first, min(first + step, count))
            weights = self.weights[rows, :width, None]
            if not np.all(weights > 0):  # the margins are less than half the overlap, so this cannot happen
                raise RuntimeError("tiling left pixels without weight; please report this with the image size")
            yield self.values[rows, :width] / weights
        for band in (self.values, self.weights):
            band[:-count] = band[count:]
            band[-count:] = 0
        self.top = until


def _band_rows(tiles, rows: AxisPlan, batch_size: int, height: int) -> int:
    """The most rows any batch of `tiles` (row-major) keeps open between finalised rows and its lowest tile."""
    most, final = 0, 0
    for first in range(0, len(tiles), batch_size):
        bottom = max(rows.starts[i] + rows.tile for i, _ in tiles[first:first + batch_size])
        most = max(most, bottom - final)
        following = first + batch_size
        final = max(final, min(rows.starts[tiles[following][0]] if following < len(tiles) else height, height))
    return most


def progress_bar(enabled):
    """A tile-progress bar on stderr, or None when disabled (`kerazoo.utils.progress`)."""
    return _progress_bar(enabled, unit="items")


def _check_image(image) -> np.ndarray:
    """An HxWxC array (HxW gets a channel axis), kept in its own dtype: tiles are converted one by one."""
    image = image if isinstance(image, np.ndarray) else np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or min(image.shape) < 1:
        raise ValueError(f"tiled inference takes one HxWxC (or HxW) image; got shape {image.shape}")
    return image


def iter_tiled_strips(image, predict_batch: Callable[[np.ndarray], np.ndarray], *, tile, overlap: float = 0.25,
                      blend: str = "gaussian", stride: int = 1, scale: int = 1, batch_size: int = 8,
                      progress: bool | None = None) -> Iterator[np.ndarray]:
    """Runs `image` in overlapping tiles and yields the blended output in strips of rows, top to bottom.

    Args:
        image: one HxWxC (or HxW) array of raw pixels, any dtype (a uint8 array or memmap is read a tile
            at a time).
        predict_batch: takes float32 tiles (B, h, w, C) and returns outputs (B, scale*h, scale*w, K).
        tile: tile size, an int or (height, width), multiples of `stride`.
        overlap: fraction of the tile shared with each neighbour, in [0, 1).
        blend: "gaussian" or "constant" weight map.
        stride: the model's stride: tiles start on its grid.
        scale: output size over input size (a super-resolver's scale), so tiles are stitched at the
            output's scale.
        batch_size: tiles per `predict_batch` call.
        progress: a progress bar over the tiles on stderr; None shows it on a terminal.

    Yields:
        float32 strips (rows, scale*W, K); together they are the scale*H rows of the output.

    Raises:
        ValueError: for a bad argument (naming it and what would be valid), or for outputs of the wrong shape.
    """
    image = _check_image(image)
    tile_h, tile_w = check_tile(tile, stride)
    overlap, blend = check_overlap(overlap), check_blend(blend)
    for name, value in (("scale", scale), ("batch_size", batch_size)):
        if not _is_int(value) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    height, width = image.shape[:2]
    rows, columns = plan_axis(height, tile_h, overlap, stride), plan_axis(width, tile_w, overlap, stride)
    windows_y = [blend_window(rows.tile * scale, blend, *(scale * m for m in rows.margins(i)))
                 for i in range(len(rows.starts))]
    windows_x = [blend_window(columns.tile * scale, blend, *(scale * m for m in columns.margins(j)))
                 for j in range(len(columns.starts))]
    tiles = [(i, j) for i in range(len(rows.starts)) for j in range(len(columns.starts))]
    expected = (rows.tile * scale, columns.tile * scale)
    accumulator = _StripAccumulator(scale * _band_rows(tiles, rows, batch_size, height), columns.padded * scale)
    with progress_bar(progress) as bar:
        task = bar.add_task(f"{len(tiles)} tiles of {rows.tile}x{columns.tile}", total=len(tiles)) if bar else None
        for first in range(0, len(tiles), batch_size):
            chunk = tiles[first:first + batch_size]
            batch = np.stack([_read_tile(image, rows.starts[i], columns.starts[j], rows.tile, columns.tile)
                              for i, j in chunk])
            outputs = np.asarray(predict_batch(batch), dtype=np.float32)
            if outputs.ndim != 4 or outputs.shape[0] != len(chunk) or tuple(outputs.shape[1:3]) != expected:
                raise ValueError(f"predict_batch returned {outputs.shape} for tiles {batch.shape}; expected "
                                 f"({len(chunk)}, {expected[0]}, {expected[1]}, channels) at scale {scale}")
            for (i, j), output in zip(chunk, outputs):
                weight = windows_y[i][:, None] * windows_x[j][None, :]
                accumulator.add(rows.starts[i] * scale, columns.starts[j] * scale, output, weight)
            # Rows above the next tile's top are final: no later tile reaches them.
            following = first + batch_size
            final = rows.starts[tiles[following][0]] if following < len(tiles) else height
            if bar is not None:
                bar.update(task, advance=len(chunk))
            yield from accumulator.pop(min(final, height) * scale, width * scale)


def tiled_predict(image, predict_batch: Callable[[np.ndarray], np.ndarray], *, tile, overlap: float = 0.25,
                  blend: str = "gaussian", stride: int = 1, scale: int = 1, batch_size: int = 8,
                  finalize: Callable[[np.ndarray], np.ndarray] | None = None, out: str | os.PathLike | None = None,
                  progress: bool | None = None):
    """Tiled inference of one image: the blended output, or the path of the file it was written to.

    Args:
        image, predict_batch, tile, overlap, blend, stride, scale, batch_size, progress: as for
            `iter_tiled_strips`.
        finalize: turns each float32 strip of blended outputs into the result's rows (labels, uint8
            pixels, ...); None keeps the float32 outputs.
        out: write the result here instead of returning it, strip by strip (".png" for uint8 results,
            ".npy" for any; see `kerazoo.inference.outputs.write_strips`); never half-written.

    Returns:
        The result (scale*H, scale*W[, ...]) array, or the written path when `out` is given.
    """
    from kerazoo.inference.outputs import collect_strips, write_strips

    image = _check_image(image)
    strips = iter_tiled_strips(image, predict_batch, tile=tile, overlap=overlap, blend=blend, stride=stride,
                               scale=scale, batch_size=batch_size, progress=progress)
    if finalize is not None:
        strips = (finalize(strip) for strip in strips)
    if out is not None:
        return write_strips(out, strips, height=image.shape[0] * scale, width=image.shape[1] * scale)
    return collect_strips(strips)
