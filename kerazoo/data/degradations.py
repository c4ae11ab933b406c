"""Seeded degradations made on the fly inside tf.data: Gaussian noise and bicubic downsampling.

Every function takes clean float pixels on the 0..255 scale and a stateless seed (an int32/int64
tensor of shape (2,)), so that a pipeline gives the same pairs for the same seed in any order and in
graph mode. Noise is added without clipping to 0..255, as DnCNN trains and tests: the degraded
input may hold values below 0 and above 255.
"""

from __future__ import annotations

import numbers

import tensorflow as tf

from kerazoo.data.imresize import imresize_tf

__all__ = ["SCALES", "add_gaussian_noise", "bicubic_downsample", "check_noise_sigma", "check_scale",
           "crop_to_multiple"]

SCALES = (2, 3, 4)


def check_noise_sigma(noise_sigma) -> tuple[float, float]:
    """Validates a noise level: a number (fixed sigma) or `(low, high)` (sigma uniform per image).

    Returns:
        `(low, high)`; equal for a fixed sigma.
    """
    if isinstance(noise_sigma, numbers.Real) and not isinstance(noise_sigma, bool):
        low = high = float(noise_sigma)
    elif isinstance(noise_sigma, (tuple, list)) and len(noise_sigma) == 2 and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in noise_sigma):
        low, high = float(noise_sigma[0]), float(noise_sigma[1])
    else:
        raise ValueError(f"noise_sigma must be a number (e.g. 25) or a (low, high) range for blind "
                         f"denoising (e.g. (0, 55)), on the 0..255 scale; got {noise_sigma!r}")
    if not 0 <= low <= high:
        raise ValueError(f"noise_sigma must satisfy 0 <= low <= high, got {noise_sigma!r}")
    return low, high


def check_scale(scale) -> int:
    """Validates a super-resolution factor: one of `SCALES`."""
    if isinstance(scale, bool) or scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    return int(scale)


def add_gaussian_noise(image, noise_sigma, seed) -> tf.Tensor:
    """Adds white Gaussian noise, not clipped (DnCNN's protocol).

    Args:
        image: float `(H, W, C)` or `(B, H, W, C)` pixels on the 0..255 scale.
        noise_sigma: Standard deviation on the 0..255 scale, or `(low, high)`: one sigma drawn
            uniformly per call (blind denoising; with a batch, one sigma for the whole batch).
        seed: Stateless seed, shape (2,).

    Returns:
        float32 `image + sigma * N(0, 1)`, the same shape as `image`.
    """
    low, high = check_noise_sigma(noise_sigma)
    image = tf.cast(image, tf.float32)
    seed = tf.cast(seed, tf.int64)
    sigma_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    sigma = low if low == high else tf.random.stateless_uniform([], sigma_seed, low, high)
    return image + sigma * tf.random.stateless_normal(tf.shape(image), noise_seed)


def crop_to_multiple(image, scale: int) -> tf.Tensor:
    """Crops the bottom and right edges so that height and width are multiples of `scale` (the SR convention)."""
    shape = tf.shape(image)
    return image[: shape[0] - shape[0] % scale, : shape[1] - shape[1] % scale]


def bicubic_downsample(image, scale: int, *, round_to_uint8: bool = True) -> tf.Tensor:
    """Shrinks by `scale` with MATLAB's bicubic `imresize` (antialiased), as the published SR sets.

    Args:
        image: `(H, W, C)` pixels on the 0..255 scale with H and W multiples of `scale` (see
            `crop_to_multiple`).
        scale: 2, 3 or 4.
        round_to_uint8: Round and clip to 0..255 as MATLAB does for uint8 images (the published LR
            files are 8-bit); False keeps the exact float result.

    Returns:
        float32 `(H / scale, W / scale, C)`.
    """
    scale = check_scale(scale)
    shape = tf.shape(image)
    tf.debugging.assert_equal(shape[:2] % scale, 0, message=f"image size must be a multiple of scale {scale}")
    low = imresize_tf(image, 1.0 / scale)
    return tf.clip_by_value(tf.round(low), 0.0, 255.0) if round_to_uint8 else low
