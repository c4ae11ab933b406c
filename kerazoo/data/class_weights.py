"""Class-balancing weights computed from integer masks."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["class_pixel_counts", "median_frequency_weights"]


def _masks_of(element):
    if isinstance(element, (tuple, list)):  # (image, mask) or (image, mask, weight)
        element = element[1]
    mask = np.asarray(element)
    if mask.ndim >= 3 and mask.shape[-1] == 1:  # (..., H, W, 1)
        mask = mask[..., 0]
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise ValueError(f"Expected masks of shape (H, W), (B, H, W) or with a trailing 1, got {mask.shape}")
    return mask


def class_pixel_counts(dataset_or_masks, num_classes: int, ignore_class: int | None = None):
    """Counts pixels per class, and pixels in the images where each class appears.

    Args:
        dataset_or_masks: A `tf.data.Dataset` or iterable of `(image, mask)` pairs or of masks
            (batched or not), or a NumPy array of masks `(N, H, W)`.
        num_classes: Number of classes.
        ignore_class: Label left out of every count.

    Returns:
        `(class_pixels, image_pixels)`, int64 arrays of shape `(num_classes,)`: pixels of class c, and
        non-ignored pixels of the images that contain class c.

    Raises:
        ValueError: a mask holds a label outside `0..num_classes - 1` other than `ignore_class`.
    """
    if isinstance(dataset_or_masks, np.ndarray):
        elements: Iterable = [dataset_or_masks]
    elif hasattr(dataset_or_masks, "as_numpy_iterator"):
        elements = dataset_or_masks.as_numpy_iterator()
    else:
        elements = dataset_or_masks
    class_pixels = np.zeros(num_classes, np.int64)
    image_pixels = np.zeros(num_classes, np.int64)
    for element in elements:
        for mask in _masks_of(element):
            labels = mask.reshape(-1).astype(np.int64)
            if ignore_class is not None:
                labels = labels[labels != ignore_class]
            if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
                bad = np.unique(labels[(labels < 0) | (labels >= num_classes)])
                raise ValueError(f"Mask labels {bad.tolist()} are outside 0..{num_classes - 1}"
                                 + (f" and not ignore_class={ignore_class}" if ignore_class is not None else ""))
            counts = np.bincount(labels, minlength=num_classes)
            class_pixels += counts
            image_pixels[counts > 0] += labels.size
    return class_pixels, image_pixels


def median_frequency_weights(dataset_or_masks, num_classes: int, ignore_class: int | None = None) -> np.ndarray:
    """SegNet's median frequency balancing (Eigen & Fergus, 2015).

    `freq(c)` is the pixels of class c divided by the pixels of the images in which c appears;
    `weight(c) = median(freq) / freq(c)`. Classes that never appear get weight 0 and are left out
    of the median. Ignored pixels count nowhere.

    Args:
        dataset_or_masks: See `class_pixel_counts`.
        num_classes: Number of classes.
        ignore_class: Label left out.

    Returns:
        float32 array of shape `(num_classes,)`, ready for `SegmentationLoss(class_weights=...)`.
    """
    class_pixels, image_pixels = class_pixel_counts(dataset_or_masks, num_classes, ignore_class)
    present = class_pixels > 0
    if not present.any():
        raise ValueError("No labelled pixels found: cannot compute class frequencies")
    freq = np.zeros(num_classes, np.float64)
    freq[present] = class_pixels[present] / image_pixels[present]
    weights = np.zeros(num_classes, np.float64)
    weights[present] = np.median(freq[present]) / freq[present]
    return weights.astype(np.float32)
