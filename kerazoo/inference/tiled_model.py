"""Tiled inference for the zoo's models: what `ZooModel.segment`, `restore` and `predict_depth` call with `tile=`.

A model's facts that tiling needs: its stride (tiles start on its pooling grid), its scale (a
super-resolver's output is stitched at the output's size), whether it takes any size (a static model
takes tiles of its one size only), and how it predicts a batch (`predict_on_batch`, the compiled
function, traced once for the one tile shape).

Tiles run at the image's own resolution: a model trained at an `input_size` is not resized to it
(the point of tiling is to see a large image at its own scale), so resize an image yourself first when
the model was trained on smaller pictures of the same scenes.
"""

from __future__ import annotations

import os
from typing import Callable

import keras
import numpy as np

from kerazoo.inference.tiles import tiled_predict
from kerazoo.inference.tta import check_tta, with_tta

__all__ = ["model_stride", "run_tiled"]

# Layers that halve (or divide) height and width along the network, read by `model_stride`.
_POOLING = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)


def model_stride(model: keras.Model) -> int:
    """The multiple of height and width the model computes on: its stride (output stride of the encoder).

    The largest `PadToMultiple` in the model (encoder models pad to their output stride inside), else
    the product of its poolings' sizes (SegNet-Basic: 2 ** depth), else 1 (fully convolutional).
    """
    from kerazoo.layers import MaxPoolingWithArgmax2D, PadToMultiple

    layers = list(_walk(model))
    multiples = [layer.multiple for layer in layers if isinstance(layer, PadToMultiple)]
    if multiples:
        return max(multiples)
    stride = 1
    for layer in layers:
        if isinstance(layer, (MaxPoolingWithArgmax2D,) + _POOLING):
            size = layer.pool_size
            stride *= int(max(size) if isinstance(size, (tuple, list)) else size)
    return stride


def _walk(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _walk(layer)


def _images(images, in_channels):
    """(list of HxWxC arrays in their own dtype, 'single' | 'batch' | 'list')."""
    if isinstance(images, (list, tuple)):
        kind, items = "list", list(images)
    else:
        array = images if isinstance(images, np.ndarray) else np.asarray(images)
        kind, items = ("batch", list(array)) if array.ndim == 4 else ("single", [array])
    checked = []
    for index, image in enumerate(items):
        image = image if isinstance(image, np.ndarray) else np.asarray(image)
        if image.ndim == 2 and in_channels == 1:
            image = image[..., None]
        if image.ndim != 3 or image.shape[-1] != in_channels or min(image.shape[:2]) < 1:
            raise ValueError(f"image {index} has shape {image.shape}; the model takes HxWx{in_channels} raw pixels")
        checked.append(image)
    return checked, kind


def run_tiled(model, images, finalize: Callable[[np.ndarray], np.ndarray], *, tile, overlap: float = 0.25,
              blend: str = "gaussian", tta: str | None = None, batch_size: int = 8,
              out: str | os.PathLike | None = None, progress: bool | None = None):
    """Tiled (and optionally test-time augmented) inference of a `ZooModel` on each image.

    Args:
        model: a `ZooModel`.
        images: one HxWxC array, a batch NxHxWxC or a list of arrays of different sizes (raw pixels;
            uint8 stays uint8 until each tile is read).
        finalize: turns float32 blended outputs into results (labels, uint8 pixels, depths).
        tile, overlap, blend: see `kerazoo.inference.tiles.iter_tiled_strips`.
        tta: None, "flip" or "d4" (each batch of tiles; see `kerazoo.inference.tta`).
        batch_size: tiles per model call.
        out: write the one image's result to this ".png" or ".npy" file, strip by strip, and return the path.
        progress: a progress bar over the tiles; None shows it on a terminal.

    Returns:
        Results in the form the images came in (one array, a stacked array, a list), or the path of `out`.
    """
    if tile is None:
        raise ValueError("out= writes a tiled result strip by strip; pass tile= as well (e.g. tile=512)")
    check_tta(tta)
    arrays, kind = _images(images, model.in_channels)
    if out is not None and kind != "single":
        raise ValueError(f"out= takes the result of one image; got {len(arrays)} images")
    static = tuple(model.input_shape[1:3])
    stride = model_stride(model)
    if None not in static:
        if (tuple(tile) if isinstance(tile, (tuple, list)) else (tile, tile)) != static:
            raise ValueError(f"this model was built for {static} inputs only; pass tile={static} "
                             "(or build it with input_shape=None to take any size)")
        small = [index for index, image in enumerate(arrays)
                 if image.shape[0] < static[0] or image.shape[1] < static[1]]
        if small:
            raise ValueError(f"image {small[0]} is {arrays[small[0]].shape[:2]}, smaller than the {static} tiles of "
                             "this fixed-size model")
    predict = with_tta(lambda batch: keras.ops.convert_to_numpy(model.predict_on_batch(batch)), tta,
                       any_size=None in static)
    results = [tiled_predict(image, predict, tile=tile, overlap=overlap, blend=blend, stride=stride,
                             scale=model.scale, batch_size=batch_size, finalize=finalize, out=out, progress=progress)
               for image in arrays]
    if kind == "single":
        return results[0]
    return np.stack(results) if kind == "batch" else results
