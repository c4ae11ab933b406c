"""Data sets read through tensorflow_datasets (the optional `[data]` extra), imported lazily."""

from __future__ import annotations

import tensorflow as tf

__all__ = ["oxford_iiit_pet"]

# kerazoo split names -> TFDS split names; Oxford-IIIT Pet has only "train" and "test".
_PET_SPLITS = {"train": "train", "val": "test", "test": "test"}


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "This data set is read with tensorflow_datasets, which is not installed; "
            "install it with `pip install 'kerazoo[data]'`."
        ) from error
    return tfds


def oxford_iiit_pet(split: str = "train", data_dir=None, download: bool = True) -> tf.data.Dataset:
    """Oxford-IIIT Pet images with trimap masks shifted from 1..3 to 0..2.

    Args:
        split: "train", "val" / "test" (both the TFDS "test" split), or any TFDS split string
            such as "train[:80%]".
        data_dir: TFDS data directory; None uses TFDS' default (~/tensorflow_datasets).
        download: Let TFDS download and prepare the data when it is not there yet.

    Returns:
        Dataset of `(image uint8 (H, W, 3), mask uint8 (H, W))` in TFDS order.
    """
    tfds = _import_tfds()
    ds = tfds.load("oxford_iiit_pet", split=_PET_SPLITS.get(split, split),
                   data_dir=None if data_dir is None else str(data_dir),
                   download=download, shuffle_files=False)

    def to_pair(example):
        mask = tf.cast(example["segmentation_mask"], tf.int32)
        mask = tf.reshape(mask, tf.shape(mask)[:2])
        tf.debugging.assert_equal(tf.shape(example["image"])[:2], tf.shape(mask),
                                  message="oxford_iiit_pet: image and mask sizes differ")
        tf.debugging.assert_equal(
            tf.reduce_all((mask >= 1) & (mask <= 3)), True,
            message="oxford_iiit_pet: trimap values outside 1..3")
        return example["image"], tf.cast(mask - 1, tf.uint8)

    return ds.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
