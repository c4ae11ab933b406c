"""Depth data: `(image, depth)` pairs from NYU Depth V2 (TFDS) or a synthetic scene generator.

Images are float32 `(H, W, 3)` on the 0..255 scale; depth is float32 `(H, W, 1)` in metres, 0 where
it is unknown (sensor holes), which losses and metrics ignore. Resizing keeps that rule: depth is
resized with nearest neighbours, so a hole never blends into a valid depth.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["depth_pipeline", "generate_depth_scenes", "nyu_depth_v2"]

_SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
# kerazoo split names -> TFDS split names of nyu_depth_v2 (it has "train" and "validation").
_NYU_SPLITS = {"train": "train", "val": "validation", "validation": "validation"}


def _scene(rng, height, width, max_boxes, max_depth):
    """One scene: a floor seen by a pinhole camera (tilted by a roll), a back wall and boxes on the floor."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    focal = rng.uniform(0.8, 1.2) * width  # pixels
    camera_height = rng.uniform(1.0, 1.6)  # metres above the floor
    # The horizon's row, tilted across the image by a small camera roll.
    horizon = rng.uniform(0.25, 0.5) * height + rng.uniform(-0.15, 0.15) * (xx - width / 2)
    wall = rng.uniform(0.5, 0.9) * max_depth
    below = yy - horizon
    floor = np.where(below > 0.5, focal * camera_height / np.maximum(below, 0.5), np.inf)
    depth = np.minimum(floor, wall)
    albedo = np.where((floor < wall)[..., None], rng.uniform(0.4, 1.0, 3), rng.uniform(0.4, 1.0, 3))
    for _ in range(rng.integers(0, max_boxes + 1)):
        distance = rng.uniform(1.0, wall - 0.5)
        centre = int(rng.integers(0, width))
        bottom = horizon[0, centre] + focal * camera_height / distance  # where it stands on the floor
        size_x = focal * rng.uniform(0.3, 0.8) / distance
        size_y = focal * rng.uniform(0.3, 1.0) / distance
        inside = (np.abs(xx - centre) <= size_x / 2) & (yy <= bottom) & (yy >= bottom - size_y) & (depth > distance)
        depth[inside] = distance
        albedo[inside] = rng.uniform(0.3, 1.0, 3)
    # Shading falls with distance, as from a light at the camera; a little texture noise on top.
    shade = 0.25 + 0.75 * np.exp(-depth / (0.6 * max_depth))
    image = 255 * albedo * shade[..., None] + rng.normal(0, 3, (height, width, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8), depth.astype(np.float32)


def generate_depth_scenes(
    num_examples: int,
    image_size: tuple[int, int] = (64, 64),
    seed: int = 0,
    split: str = "train",
    max_boxes: int = 3,
    missing_fraction: float = 0.02,
    max_depth: float = 10.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draws indoor-like scenes with exact depth: a floor plane, a back wall and boxes standing on it.

    The floor's depth follows a pinhole camera above a plane (`f * camera_height / rows below the
    horizon`), rolled by a few degrees; the image is shaded from the depth, so that depth can be
    learnt from it. A fraction of pixels are holes (depth 0), as in Kinect data.

    Args:
        num_examples: Number of scenes.
        image_size: `(height, width)`, at least 8x8.
        seed: Seed; each split draws from its own stream.
        split: "train", "val" or "test".
        max_boxes: Each scene gets 0..max_boxes boxes.
        missing_fraction: Fraction of pixels whose depth is unknown (0).
        max_depth: The far limit of the scene in metres (walls stand at 0.5..0.9 of it).

    Returns:
        `(images uint8 (N, H, W, 3), depths float32 (N, H, W, 1) in metres, 0 = unknown)`.
    """
    if split not in _SPLIT_STREAMS:
        raise ValueError(f"depth scenes have splits {sorted(_SPLIT_STREAMS)}, got split={split!r}")
    if num_examples < 1 or max_boxes < 0 or not 0 <= missing_fraction < 1 or max_depth <= 2:
        raise ValueError("need num_examples >= 1, max_boxes >= 0, 0 <= missing_fraction < 1 and max_depth > 2; "
                         f"got {num_examples}, {max_boxes}, {missing_fraction}, {max_depth}")
    height, width = image_size
    if min(height, width) < 8:
        raise ValueError(f"image_size must be at least 8x8, got {image_size}")
    rng = np.random.default_rng([seed, _SPLIT_STREAMS[split]])
    images = np.empty((num_examples, height, width, 3), np.uint8)
    depths = np.empty((num_examples, height, width, 1), np.float32)
    for i in range(num_examples):
        images[i], depth = _scene(rng, height, width, max_boxes, max_depth)
        depth[rng.random((height, width)) < missing_fraction] = 0.0
        depths[i, ..., 0] = depth
    return images, depths


def nyu_depth_v2(split: str = "train", data_dir=None, download: bool = True) -> tf.data.Dataset:
    """NYU Depth V2 through tensorflow_datasets: RGB uint8 480x640 with depth float32 480x640 in metres.

    Args:
        split: "train", "val" (TFDS' "validation"), or any TFDS split string such as "train[:1%]".
        data_dir: TFDS data directory; None uses TFDS' default.
        download: Let TFDS download and prepare the data (about 32 GB) when it is not there yet.

    Returns:
        Dataset of `(image uint8 (H, W, 3), depth float32 (H, W, 1))`.
    """
    from kerazoo.data.tfds_source import _import_tfds

    tfds = _import_tfds()
    ds = tfds.load("nyu_depth_v2", split=_NYU_SPLITS.get(split, split),
                   data_dir=None if data_dir is None else str(data_dir), download=download, shuffle_files=False)

    def to_pair(example):
        image, depth = example["image"], tf.cast(example["depth"], tf.float32)
        depth = tf.reshape(depth, tf.concat([tf.shape(depth)[:2], [1]], 0))
        tf.debugging.assert_equal(tf.shape(image)[:2], tf.shape(depth)[:2],
                                  message="nyu_depth_v2: image and depth sizes differ")
        return image, depth

    return ds.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def depth_pipeline(
    raw: tf.data.Dataset,
    *,
    image_size: tuple[int, int] | None,
    batch_size: int | None,
    augment: bool,
    shuffle: bool,
    seed: int,
    cache: bool = False,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Resizes (image bilinear, depth nearest), flips left-right at random when `augment`, and batches.

    Args:
        raw: Dataset of `(image (H, W, 3), depth (H, W) or (H, W, 1))`.
        image_size: Output `(height, width)`; None keeps each example's size.
        batch_size: Examples per batch; None leaves the dataset unbatched.
        augment: Mirror image and depth together, half of the time (seeded).
        shuffle: Shuffle examples, each epoch differently.
        seed: Seed of shuffling and flips.
        cache: Cache the decoded examples in memory.
        drop_remainder: Drop the last partial batch.

    Returns:
        `tf.data.Dataset` of `(image float32 (B, H, W, 3) 0..255, depth float32 (B, H, W, 1) metres)`.
    """
    ds = raw.cache() if cache else raw
    if shuffle:
        count = int(ds.cardinality())
        ds = ds.shuffle(count if count > 0 else 1024, seed=seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    height, width = (None, None) if image_size is None else image_size

    def transform(pair, example_seed):
        image, depth = tf.cast(pair[0], tf.float32), tf.cast(pair[1], tf.float32)
        depth = tf.reshape(depth, tf.concat([tf.shape(image)[:2], [1]], 0))
        if image_size is not None:
            image = tf.image.resize(image, image_size, "bilinear", antialias=True)
            depth = tf.image.resize(depth, image_size, "nearest")
        if augment:
            mirror = tf.random.stateless_uniform([], example_seed) < 0.5
            image = tf.where(mirror, tf.reverse(image, [1]), image)
            depth = tf.where(mirror, tf.reverse(depth, [1]), depth)
        return tf.ensure_shape(image, [height, width, 3]), tf.ensure_shape(depth, [height, width, 1])

    ds = tf.data.Dataset.zip(ds, seeds).map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if batch_size is not None:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
