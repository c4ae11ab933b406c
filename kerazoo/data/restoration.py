"""Paired restoration data: `(degraded, clean)` made from folders of clean images.

Training (`patch_size` set) cuts random patches, `patches_per_image` per image per epoch, applies one
of the 8 dihedral transforms (flips and rot90) and degrades them on the fly from a stateless seed.
Evaluation (`patch_size=None`) yields whole images in file order with a fixed noise seed per image,
so that a figure is reproducible. Super-resolution crops each HR image to a multiple of `scale` and
shrinks it once with MATLAB's bicubic `imresize` (`kerazoo.data.imresize`), rounded to 8 bits like
the published LR files; training patches are cut aligned (LR patch p at (y, x), HR patch scale * p at
(scale * y, scale * x)). Ready-made pairs in the Set5 layout (`image_SRF_{s}/*_{HR,LR}.png`) are read
as they are.

Vocabulary (shared by `kerazoo.data.load`, the catalogue's `task_options` and the CLI):
    noise_sigma: Gaussian noise standard deviation on the 0..255 scale, or `(low, high)` for blind.
    scale: Super-resolution factor, 2, 3 or 4.
    patch_size: Side of the model's input patch (the LR patch for super-resolution; the target is
        `scale * patch_size`); None for whole images.
    patches_per_image: Patches cut from each image per epoch.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from kerazoo.data.degradations import add_gaussian_noise, check_noise_sigma, check_scale
from kerazoo.data.folders import DataValidationError, _list_images, _natural_key
from kerazoo.data.imresize import imresize_numpy
from kerazoo.utils.images import PIL_MODES, UnreadableImageError, read_image

__all__ = ["ImageSet", "denoise_pairs", "read_image_folder", "read_sr_pairs", "shrink_images",
           "super_resolution_pairs"]



def _check_channels(channels) -> int:
    if channels not in PIL_MODES:
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    return int(channels)


def _read_image(path: Path, channels: int) -> np.ndarray:
    try:
        return read_image(path, channels)
    except UnreadableImageError as error:
        raise DataValidationError(str(error)) from error


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """Images of any sizes held in memory, with their names (file stems), in a fixed order.

    Attributes:
        images: uint8 `(H, W, C)` arrays.
        names: One name per image.
    """

    images: tuple[np.ndarray, ...]
    names: tuple[str, ...]

    def __post_init__(self):
        if not self.images:
            raise DataValidationError("An image set needs at least one image")
        if len(self.images) != len(self.names):
            raise ValueError(f"{len(self.images)} images but {len(self.names)} names")

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return [image.shape[:2] for image in self.images]

    def as_tensors(self):
        """The images as one flat uint8 tensor plus `(offset, height, width)` rows, for graph-side slicing."""
        flat = np.concatenate([image.ravel() for image in self.images])
        counts = [image.size for image in self.images]
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        table = np.array([(o, h, w) for o, (h, w) in zip(offsets, self.sizes)], dtype=np.int64)
        return tf.constant(flat), tf.constant(table)


def _take(flat, table, index, channels):
    offset, height, width = tf.unstack(table[index])
    return tf.reshape(flat[offset: offset + height * width * channels], tf.stack([height, width, channels]))


def read_image_folder(folder: str | os.PathLike, channels: int = 3) -> ImageSet:
    """Reads every image of a folder (natural file order), converted to grey (1) or RGB (3)."""
    channels = _check_channels(channels)
    paths = _list_images(Path(folder), "Image")
    return ImageSet(tuple(_read_image(p, channels) for p in paths), tuple(p.stem for p in paths))


def read_sr_pairs(folder: str | os.PathLike, scale: int, channels: int = 3) -> tuple[ImageSet, ImageSet]:
    """Reads ready-made LR/HR pairs in the Set5 layout: `<folder>/image_SRF_<scale>/<stem>_{LR,HR}.png`.

    Returns:
        `(low_resolution, high_resolution)` image sets in the same order, named by the shared stem.

    Raises:
        DataValidationError: a missing partner or an HR image that is not `scale` times its LR.
    """
    scale, channels = check_scale(scale), _check_channels(channels)
    pair_folder = Path(folder) / f"image_SRF_{scale}"
    paths = _list_images(pair_folder, f"x{scale} pair")
    high = {p.name[: -len("_HR.png")]: p for p in paths if p.name.endswith("_HR.png")}
    low = {p.name[: -len("_LR.png")]: p for p in paths if p.name.endswith("_LR.png")}
    if not high or set(high) != set(low):
        raise DataValidationError(
            f"{pair_folder} must hold <name>_HR.png and <name>_LR.png pairs; unpaired: "
            f"{sorted(set(high) ^ set(low)) or 'no *_HR.png files'}")
    stems = sorted(high, key=lambda stem: _natural_key(Path(stem)))
    lr = ImageSet(tuple(_read_image(low[s], channels) for s in stems), tuple(stems))
    hr = ImageSet(tuple(_read_image(high[s], channels) for s in stems), tuple(stems))
    for stem, small, big in zip(stems, lr.images, hr.images):
        if big.shape[:2] != (scale * small.shape[0], scale * small.shape[1]):
            raise DataValidationError(f"{stem}: HR {big.shape[:2]} is not {scale} x LR {small.shape[:2]}")
    return lr, hr


def _check_patches(images: ImageSet, patch_size, patches_per_image, minimum_side):
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive integer or None (whole images), got {patch_size!r}")
    if isinstance(patches_per_image, bool) or not isinstance(patches_per_image, int) or patches_per_image < 1:
        raise ValueError(f"patches_per_image must be a positive integer, got {patches_per_image!r}")
    small = [(name, size) for name, size in zip(images.names, images.sizes) if min(size) < minimum_side]
    if small:
        fits = min(min(size) for size in images.sizes) * patch_size // minimum_side
        raise DataValidationError(
            f"patch_size={patch_size} needs images of at least {minimum_side}x{minimum_side} pixels; "
            f"{len(small)} are smaller, e.g. {small[:3]} (height, width). The largest patch_size that "
            f"fits every image is {fits}.")


def _dihedral(image, k):
    """One of the 8 flips/rotations of a square patch: rot90 k % 4 times, then a mirror when k >= 4."""
    image = tf.image.rot90(image, k % 4)
    return tf.cond(k >= 4, lambda: tf.reverse(image, [1]), lambda: image)


def _patch_indices(count, patches_per_image, shuffle, seed):
    indices = tf.data.Dataset.range(count).repeat(patches_per_image)
    if shuffle:
        indices = indices.shuffle(count * patches_per_image, seed=seed, reshuffle_each_iteration=True)
    # One fresh seed pair per patch per epoch, reproducible from `seed`.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip(indices, seeds)


def _finish(ds, batch_size, drop_remainder):
    if batch_size is not None:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def _check_batchable(images: ImageSet, batch_size):
    if batch_size not in (None, 1) and len(set(images.sizes)) > 1:
        raise DataValidationError(
            f"Whole images have {len(set(images.sizes))} different sizes (e.g. {sorted(set(images.sizes))[:3]}); "
            "pass batch_size=1 or None to evaluate them, or patch_size=... to cut patches")


def denoise_pairs(
    images: ImageSet,
    *,
    noise_sigma: float | tuple[float, float] = 25.0,
    patch_size: int | None = 48,
    patches_per_image: int = 64,
    batch_size: int | None = 8,
    augment: bool = True,
    shuffle: bool = True,
    seed: int = 0,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """`(noisy, clean)` pairs: clean pixels plus Gaussian noise, not clipped (as DnCNN).

    Args:
        images: Clean images (`read_image_folder`).
        noise_sigma: Sigma on the 0..255 scale, or `(low, high)`: one sigma drawn per patch (blind).
        patch_size: Patch side; None yields whole images in order, each with the fixed noise seed
            `(seed, image index)`, so a figure is reproducible (then augment and shuffle are ignored).
        patches_per_image: Random patches per image per epoch.
        batch_size: Examples per batch; None for single examples.
        augment: Apply a random dihedral transform (flips and rot90) to each patch.
        shuffle: Shuffle patches across images, each epoch differently.
        seed: Seed of patch positions, transforms, shuffling and noise.
        drop_remainder: Drop the last partial batch.

    Returns:
        `tf.data.Dataset` of `(noisy float32 (B, H, W, C), clean float32 (B, H, W, C))`, 0..255 scale
        (noisy not clipped).
    """
    check_noise_sigma(noise_sigma)
    flat, table = images.as_tensors()
    channels = images.images[0].shape[-1]
    if patch_size is None:
        _check_batchable(images, batch_size)

        def whole(index):
            clean = tf.cast(_take(flat, table, index, channels), tf.float32)
            return add_gaussian_noise(clean, noise_sigma, tf.stack([tf.cast(seed, tf.int64), index])), clean

        ds = tf.data.Dataset.range(len(images.images)).map(whole, num_parallel_calls=tf.data.AUTOTUNE)
        return _finish(ds, batch_size, drop_remainder)
    _check_patches(images, patch_size, patches_per_image, patch_size)

    def patch(index, example_seed):
        crop_seed, flip_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(example_seed, 3))
        image = _take(flat, table, index, channels)
        clean = tf.image.stateless_random_crop(image, [patch_size, patch_size, channels], crop_seed)
        if augment:
            clean = _dihedral(clean, tf.random.stateless_uniform([], flip_seed, 0, 8, tf.int32))
        clean = tf.ensure_shape(tf.cast(clean, tf.float32), [patch_size, patch_size, channels])
        return add_gaussian_noise(clean, noise_sigma, noise_seed), clean

    ds = _patch_indices(len(images.images), patches_per_image, shuffle, seed)
    ds = ds.map(patch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _finish(ds, batch_size, drop_remainder)


def shrink_images(high: ImageSet, scale: int) -> tuple[ImageSet, ImageSet]:
    """Crops each HR image to a multiple of `scale` and shrinks it with MATLAB's bicubic (8-bit LR).

    Returns:
        `(low_resolution, cropped_high_resolution)`.
    """
    scale = check_scale(scale)
    cropped = tuple(image[: image.shape[0] - image.shape[0] % scale, : image.shape[1] - image.shape[1] % scale]
                    for image in high.images)
    too_small = [n for n, image in zip(high.names, cropped) if min(image.shape[:2]) < scale]
    if too_small:
        raise DataValidationError(f"Images smaller than scale={scale}: {too_small[:5]}")
    low = tuple(imresize_numpy(image, 1 / scale) for image in cropped)
    return ImageSet(low, high.names), ImageSet(cropped, high.names)


def super_resolution_pairs(
    high: ImageSet,
    *,
    scale: int = 4,
    low: ImageSet | None = None,
    patch_size: int | None = 16,
    patches_per_image: int = 64,
    batch_size: int | None = 8,
    augment: bool = True,
    shuffle: bool = True,
    seed: int = 0,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """`(low_resolution, high_resolution)` pairs for super-resolution by `scale`.

    Args:
        high: HR images; without `low`, each is cropped to a multiple of `scale` and shrunk once with
            MATLAB's bicubic (`shrink_images`).
        scale: 2, 3 or 4.
        low: Ready-made LR images (e.g. `read_sr_pairs`), each exactly `1/scale` of its HR image.
        patch_size: LR patch side (the HR patch is `scale * patch_size`), cut aligned; None yields
            whole images in order (then augment and shuffle are ignored).
        patches_per_image, batch_size, augment, shuffle, seed, drop_remainder: As in `denoise_pairs`.

    Returns:
        `tf.data.Dataset` of `(lr float32 (B, h, w, C), hr float32 (B, scale*h, scale*w, C))`, 0..255.
    """
    scale = check_scale(scale)
    low, high = shrink_images(high, scale) if low is None else (low, high)
    for name, small, big in zip(high.names, low.images, high.images):
        if big.shape[:2] != (scale * small.shape[0], scale * small.shape[1]):
            raise DataValidationError(f"{name}: HR {big.shape[:2]} is not {scale} x LR {small.shape[:2]}")
    low_flat, low_table = low.as_tensors()
    high_flat, high_table = high.as_tensors()
    channels = high.images[0].shape[-1]

    def pair(index):
        return (tf.cast(_take(low_flat, low_table, index, channels), tf.float32),
                tf.cast(_take(high_flat, high_table, index, channels), tf.float32))

    if patch_size is None:
        _check_batchable(high, batch_size)
        ds = tf.data.Dataset.range(len(high.images)).map(pair, num_parallel_calls=tf.data.AUTOTUNE)
        return _finish(ds, batch_size, drop_remainder)
    _check_patches(low, patch_size, patches_per_image, patch_size)
    big = scale * patch_size

    def patch(index, example_seed):
        row_seed, column_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(example_seed, 3))
        lr, hr = pair(index)
        limits = tf.shape(lr)[:2] - patch_size + 1
        y = tf.random.stateless_uniform([], row_seed, 0, limits[0], tf.int32)
        x = tf.random.stateless_uniform([], column_seed, 0, limits[1], tf.int32)
        lr = tf.slice(lr, [y, x, 0], [patch_size, patch_size, channels])
        hr = tf.slice(hr, [scale * y, scale * x, 0], [big, big, channels])
        if augment:
            k = tf.random.stateless_uniform([], flip_seed, 0, 8, tf.int32)
            lr, hr = _dihedral(lr, k), _dihedral(hr, k)
        return tf.ensure_shape(lr, [patch_size, patch_size, channels]), tf.ensure_shape(hr, [big, big, channels])

    ds = _patch_indices(len(high.images), patches_per_image, shuffle, seed)
    ds = ds.map(patch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _finish(ds, batch_size, drop_remainder)
