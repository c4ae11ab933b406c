"""Reading image files with PIL: one reader for the data loaders, the restoration sets and `kerazoo predict`."""

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# "L" is ITU-R BT.601 luma on the full 0..255 range.
PIL_MODES = {1: "L", 3: "RGB"}


class UnreadableImageError(ValueError):
    """An image file that PIL cannot open or decode; the message names the file."""


def read_image(path, channels: int) -> np.ndarray:
    """The pixels of an image file as uint8 (H, W, channels), converted to grey (1) or RGB (3).

    Raises:
        ValueError: for a channel count other than 1 or 3.
        UnreadableImageError: naming the file, when it cannot be read.
    """
    if channels not in PIL_MODES:
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB); got {channels!r}")
    path = Path(path.decode() if isinstance(path, bytes) else path)
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert(PIL_MODES[channels]), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise UnreadableImageError(f"Cannot read image {path}: {error}") from error
    return array.reshape(array.shape[:2] + (channels,))


def read_label_image(path) -> np.ndarray:
    """The values of a label image (8-bit grey or palette indices) as int32 (H, W), unconverted."""
    path = Path(path.decode() if isinstance(path, bytes) else path)
    try:
        with Image.open(path) as image:
            return np.asarray(image, dtype=np.int32)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise UnreadableImageError(f"Cannot read label image {path}: {error}") from error


def resize_image(image, size):
    """An image resized to `size` (height, width) as training and inference both do: bilinear, antialiased
    (it matters when large photos are shrunk), clipped to 0..255, float32.

    The one resize of the project: the data pipeline resizes training images with it, and `ZooModel.segment` /
    `predict_depth` resize images to the trained size with it, so a model sees the same pixels in both. It runs on
    TensorFlow (always installed: tf.data feeds every backend) and takes a tensor or a NumPy array.
    """
    import tensorflow as tf

    resized = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear", antialias=True)
    return tf.clip_by_value(resized, 0.0, 255.0)
