"""Paired image/mask transforms: geometry applied to both, colour to the image only.

Every random draw uses a stateless op with an explicit seed, so a pipeline built with the same
seed yields the same batches. Masks are only ever resampled by nearest neighbour.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from kerazoo.utils.images import resize_image

__all__ = ["AugmentConfig", "resize_pair", "augment_pair"]


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Which paired augmentations to apply and how strongly.

    Attributes:
        horizontal_flip: Flip left-right with probability 0.5.
        vertical_flip: Flip top-bottom with probability 0.5 (off for road scenes).
        scale_range: Random zoom relative to the smallest scale that covers the output size;
            values below 1 zoom out and reflect-pad.
        max_rotation: Largest rotation in degrees, either way; borders are filled by reflection.
        brightness: Max brightness shift as a fraction of the 0..255 range.
        contrast: Contrast factor drawn from `[1 - contrast, 1 + contrast]`.
        saturation: Saturation factor drawn from `[1 - saturation, 1 + saturation]` (RGB only).
        hue: Max hue shift, a fraction of the colour wheel (RGB only).
    """

    horizontal_flip: bool = True
    vertical_flip: bool = False
    scale_range: tuple[float, float] = (0.75, 1.5)
    max_rotation: float = 10.0
    brightness: float = 0.1
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02

    def __post_init__(self):
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {self.scale_range}")
        for field in ("max_rotation", "brightness", "contrast", "saturation", "hue"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)}")
        if self.contrast >= 1 or self.saturation >= 1 or self.hue > 0.5:
            raise ValueError("contrast and saturation must be < 1 and hue <= 0.5")


def _resize_mask(mask, size):
    return tf.image.resize(mask[..., None], size, method="nearest")[..., 0]


def resize_pair(image, mask, size):
    """Resizes an image (bilinear, float32) and its mask (nearest neighbour) to `size`.

    Args:
        image: `(H, W, C)` tensor, any numeric dtype, values 0..255.
        mask: `(H, W)` integer tensor.
        size: `(height, width)`.

    Returns:
        `(image float32 (h, w, C), mask (h, w) with mask's dtype)`.
    """
    return resize_image(image, size), _resize_mask(mask, size)


def _rotate(tensor, angle, interpolation):
    """Rotates `(H, W, C)` about its centre; reflection fills the corners."""
    shape = tf.shape(tensor)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Maps output (x, y) to input coordinates: a rotation about (cx, cy).
    transform = tf.stack([cos, -sin, cx - cos * cx + sin * cy,
                          sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0])[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tensor[None], transforms=transform, output_shape=shape[:2], fill_value=0.0,
        interpolation=interpolation, fill_mode="REFLECT")
    return out[0]


def augment_pair(image, mask, seed, size, config: AugmentConfig):
    """Applies one random paired augmentation.

    Args:
        image: `(H, W, C)` image, values 0..255 (uint8 or float).
        mask: `(H, W)` integer mask.
        seed: int32/int64 tensor of shape `(2,)`; the same seed gives the same result.
        size: Output `(height, width)`, or None to keep the input size.
        config: An `AugmentConfig`.

    Returns:
        `(image float32 (h, w, C) in 0..255, mask (h, w) with mask's dtype)`.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=9)
    image = tf.cast(image, tf.float32)
    shape = tf.shape(mask)
    in_h, in_w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    out_h, out_w = (shape[0], shape[1]) if size is None else (int(size[0]), int(size[1]))
    out_hf, out_wf = tf.cast(out_h, tf.float32), tf.cast(out_w, tf.float32)

    # Random scale, then reflect-pad if the scaled image is smaller than the output, then crop.
    low, high = config.scale_range
    cover = tf.maximum(out_hf / in_h, out_wf / in_w)
    scale = cover * tf.random.stateless_uniform([], seeds[0], low, high)
    new_h = tf.maximum(tf.cast(tf.round(in_h * scale), tf.int32), 1)
    new_w = tf.maximum(tf.cast(tf.round(in_w * scale), tf.int32), 1)
    image, mask = resize_pair(image, mask, tf.stack([new_h, new_w]))
    pad_h, pad_w = tf.maximum(out_h - new_h, 0), tf.maximum(out_w - new_w, 0)
    paddings = [[pad_h // 2, pad_h - pad_h // 2], [pad_w // 2, pad_w - pad_w // 2]]
    # SYMMETRIC (edge-including) reflection allows a pad as large as the image itself.
    image = tf.pad(image, paddings + [[0, 0]], mode="SYMMETRIC")
    mask = tf.pad(mask, paddings, mode="SYMMETRIC")
    limit = tf.stack([tf.shape(mask)[0] - out_h + 1, tf.shape(mask)[1] - out_w + 1])
    offset = tf.random.stateless_uniform([2], seeds[1], 0, tf.int32.max, dtype=tf.int32) % limit
    image = tf.slice(image, tf.stack([offset[0], offset[1], 0]), tf.stack([out_h, out_w, -1]))
    mask = tf.slice(mask, offset, tf.stack([out_h, out_w]))

    if config.max_rotation > 0:
        limit = math.radians(config.max_rotation)
        angle = tf.random.stateless_uniform([], seeds[2], -limit, limit)
        image = _rotate(image, angle, "BILINEAR")
        mask = tf.cast(_rotate(tf.cast(mask, tf.int32)[..., None], angle, "NEAREST")[..., 0], mask.dtype)

    if config.horizontal_flip:
        flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
        image = tf.cond(flip, lambda: image[:, ::-1], lambda: image)
        mask = tf.cond(flip, lambda: mask[:, ::-1], lambda: mask)
    if config.vertical_flip:
        flip = tf.random.stateless_uniform([], seeds[4]) < 0.5
        image = tf.cond(flip, lambda: image[::-1], lambda: image)
        mask = tf.cond(flip, lambda: mask[::-1], lambda: mask)

    # Colour jitter on the image only; tf.image's colour ops expect values in 0..1.
    unit = image / 255.0
    if config.brightness > 0:
        unit = tf.image.stateless_random_brightness(unit, config.brightness, seeds[5])
    if config.contrast > 0:
        unit = tf.image.stateless_random_contrast(unit, 1 - config.contrast, 1 + config.contrast, seeds[6])
    if image.shape[-1] == 3:
        if config.saturation > 0:
            unit = tf.image.stateless_random_saturation(
                tf.clip_by_value(unit, 0.0, 1.0), 1 - config.saturation, 1 + config.saturation, seeds[7])
        if config.hue > 0:
            unit = tf.image.stateless_random_hue(tf.clip_by_value(unit, 0.0, 1.0), config.hue, seeds[8])
    image = tf.clip_by_value(unit * 255.0, 0.0, 255.0)
    if size is not None:
        image = tf.ensure_shape(image, [out_h, out_w, image.shape[-1]])
        mask = tf.ensure_shape(mask, [out_h, out_w])
    return image, mask
