"""Turns a dataset of decoded `(image, mask)` pairs into shuffled, augmented, batched input."""

from __future__ import annotations

import tensorflow as tf

from kerazoo.data.augment import AugmentConfig, augment_pair, resize_pair

__all__ = ["build_pipeline", "CACHE_LIMIT_BYTES"]

# "auto" caching keeps decoded uint8 pairs in memory when they take less than this.
CACHE_LIMIT_BYTES = 2 * 1024**3


def _finish(image, mask, channels, size):
    image = tf.cast(image, tf.float32)
    mask = tf.cast(mask, tf.int32)
    height, width = (None, None) if size is None else size
    return tf.ensure_shape(image, [height, width, channels]), tf.ensure_shape(mask, [height, width])


def build_pipeline(
    raw: tf.data.Dataset,
    *,
    channels: int,
    image_size: tuple[int, int] | None,
    batch_size: int | None,
    augment: AugmentConfig | None,
    shuffle: bool,
    seed: int,
    cache: bool | str = False,
    shuffle_buffer: int | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Builds the input pipeline from decoded pairs.

    Order: (cache decoded pairs) -> shuffle -> resize or augment (parallel, order kept) -> batch
    -> prefetch. Randomness comes from `seed` only: shuffling is re-done each epoch and the
    augmentation seeds are re-drawn each epoch, both deterministically.

    Args:
        raw: Dataset of `(image (H, W, C) uint8/float, mask (H, W) integer)`.
        channels: C, for the static output shape.
        image_size: Output `(height, width)`; None keeps each example's size (batching then needs
            equal sizes).
        batch_size: Examples per batch; None leaves the dataset unbatched.
        augment: Paired augmentation, or None for a plain resize.
        shuffle: Shuffle the examples (each epoch differently, reproducibly).
        seed: Seed for shuffling and augmentation.
        cache: True caches in memory, a string caches to that file prefix, False does not cache.
        shuffle_buffer: Shuffle buffer size; None uses the whole dataset when its size is known
            (else 1024).
        drop_remainder: Drop the last partial batch.

    Returns:
        A `tf.data.Dataset` of `(image float32 (..., H, W, C) in 0..255, mask int32 (..., H, W))`.
    """
    ds = raw
    if cache:
        ds = ds.cache("" if cache is True else str(cache))
    if shuffle:
        if shuffle_buffer is None:
            count = int(ds.cardinality())
            shuffle_buffer = count if count > 0 else 1024
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)

    if augment is not None:
        # One fresh seed pair per example per epoch, reproducible from `seed`.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds)

        def transform(pair, example_seed):
            image, mask = augment_pair(pair[0], pair[1], example_seed, image_size, augment)
            return _finish(image, mask, channels, image_size)
    else:
        def transform(image, mask):
            if image_size is not None:
                image, mask = resize_pair(image, mask, image_size)
            return _finish(image, mask, channels, image_size)

    ds = ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if batch_size is not None:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
