"""MATLAB's `imresize` (bicubic, antialiased when shrinking), in NumPy and in TensorFlow.

The low-resolution images that super-resolution papers publish (Set5, Set14, ...) were made with
MATLAB's `imresize(hr, 1/scale, 'bicubic')`: Keys' cubic kernel with a = -0.5, widened by `1/scale`
when shrinking (antialiasing), pixel centres aligned as `u = x / scale + 0.5 * (1 - 1 / scale)`,
borders mirrored (symmetric padding), rows resized before columns, and uint8 input rounded back to
uint8. `imresize_numpy` follows MATLAB's `contributions` routine step by step; `imresize_tf` computes
the same weights as dense matrices so that it runs inside tf.data with image sizes unknown in advance.
Neither `tf.image.resize(..., "bicubic", antialias=True)` (a = -0.5 too, but a different support
and border rule) nor PIL's bicubic (a = -0.5, no mirrored borders) reproduces MATLAB to the grey level;
the README gives the measured gaps on Set5.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

__all__ = ["cubic_kernel", "imresize_numpy", "imresize_tf", "output_size"]

_KERNEL_WIDTH = 4.0  # the cubic kernel's support, in input pixels, before antialiasing widens it


def cubic_kernel(x):
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's `cubic`); works on NumPy and tf tensors."""
    absx = abs(x)
    absx2, absx3 = absx * absx, absx * absx * absx
    inner = (1.5 * absx3 - 2.5 * absx2 + 1.0) * _as_float(absx <= 1.0)
    outer = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * _as_float((absx > 1.0) & (absx <= 2.0))
    return inner + outer


def _as_float(mask):
    return tf.cast(mask, tf.float64) if tf.is_tensor(mask) else mask.astype(np.float64)


def output_size(size: int, scale: float) -> int:
    """MATLAB's output length for a scale factor: `ceil(size * scale)`."""
    return int(math.ceil(size * scale - 1e-9))


def _check_scale(scale):
    if not scale > 0:
        raise ValueError(f"scale must be > 0 (e.g. 1/4 to shrink by 4, 2 to enlarge), got {scale!r}")


def _contributions(in_length: int, out_length: int, scale: float, antialias: bool):
    """Weights `(out, P)` and 0-based input indices `(out, P)` of each output pixel (MATLAB's routine)."""
    width = _KERNEL_WIDTH / scale if (scale < 1 and antialias) else _KERNEL_WIDTH
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based, may run past either border
    distance = u[:, None] - indices
    weights = scale * cubic_kernel(scale * distance) if (scale < 1 and antialias) else cubic_kernel(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])  # symmetric borders
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    return weights, indices


def _resize_axis_numpy(array, axis, out_length, scale, antialias):
    weights, indices = _contributions(array.shape[axis], out_length, scale, antialias)
    moved = np.moveaxis(array, axis, 0)
    gathered = moved[indices]  # (out, P, ...)
    out = np.einsum("op,op...->o...", weights, gathered)
    return np.moveaxis(out, 0, axis)


def imresize_numpy(image: np.ndarray, scale: float, *, antialias: bool = True) -> np.ndarray:
    """Resizes like MATLAB's `imresize(image, scale, 'bicubic')`.

    Args:
        image: `(H, W)` or `(H, W, C)` array; uint8 input gives uint8 output (rounded and clipped, as
            MATLAB does), any other dtype gives float64 (neither rounded nor clipped).
        scale: Factor applied to height and width, e.g. `1/4` to shrink by 4; output sizes are
            `ceil(H * scale)`, `ceil(W * scale)`.
        antialias: Widen the kernel when shrinking (MATLAB's default `'Antialiasing', true`).

    Returns:
        The resized image.
    """
    _check_scale(scale)
    out = np.asarray(image, dtype=np.float64)
    for axis in (0, 1):  # equal scales: MATLAB resizes rows (dimension 1) first
        out = _resize_axis_numpy(out, axis, output_size(image.shape[axis], scale), scale, antialias)
    if image.dtype == np.uint8:
        return np.clip(np.round(out), 0, 255).astype(np.uint8)
    return out


def _weight_matrix_tf(in_length, out_length, scale: float, antialias: bool):
    """Dense `(out, in)` float64 matrix of MATLAB's weights, for a length known only at run time."""
    width = _KERNEL_WIDTH / scale if (scale < 1 and antialias) else _KERNEL_WIDTH
    taps = int(math.ceil(width)) + 2
    x = tf.range(1, out_length + 1, dtype=tf.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = tf.floor(u - width / 2)
    indices = left[:, None] + tf.range(taps, dtype=tf.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * cubic_kernel(scale * distance) if (scale < 1 and antialias) else cubic_kernel(distance)
    weights /= tf.reduce_sum(weights, axis=1, keepdims=True)
    period = 2 * in_length
    wrapped = tf.math.floormod(tf.cast(indices, tf.int32) - 1, period)
    mirrored = tf.where(wrapped < in_length, wrapped, period - 1 - wrapped)
    # Taps that mirror onto the same input pixel add up (scatter_nd sums duplicate indices).
    rows = tf.broadcast_to(tf.range(out_length)[:, None], tf.shape(mirrored))
    return tf.scatter_nd(tf.stack([rows, mirrored], -1), weights, tf.stack([out_length, in_length]))


def imresize_tf(image, scale: float, *, antialias: bool = True) -> tf.Tensor:
    """`imresize_numpy` in TensorFlow ops, graph-friendly (sizes may be unknown until run time).

    Args:
        image: `(H, W, C)` tensor, any numeric dtype; computed in float64.
        scale: Factor applied to height and width (a Python number).
        antialias: Widen the kernel when shrinking, as MATLAB does by default.

    Returns:
        float32 `(ceil(H * scale), ceil(W * scale), C)`, neither rounded nor clipped (round and clip
        to match MATLAB's uint8 output).
    """
    _check_scale(scale)
    image = tf.cast(image, tf.float64)
    shape = tf.shape(image)
    out_height = tf.cast(tf.math.ceil(tf.cast(shape[0], tf.float64) * scale - 1e-9), tf.int32)
    out_width = tf.cast(tf.math.ceil(tf.cast(shape[1], tf.float64) * scale - 1e-9), tf.int32)
    rows = _weight_matrix_tf(shape[0], out_height, scale, antialias)
    cols = _weight_matrix_tf(shape[1], out_width, scale, antialias)
    out = tf.einsum("oh,hwc->owc", rows, image)
    out = tf.einsum("pw,owc->opc", cols, out)
    return tf.cast(out, tf.float32)
