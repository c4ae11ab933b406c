"""Image/mask pairs read from folders: scanned and validated eagerly, decoded lazily by tf.data."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Mapping

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from kerazoo.data.paths import DataNotFoundError
from kerazoo.utils.images import read_image, read_label_image

__all__ = ["FolderSource", "scan_folders", "DataValidationError"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# tf.io.decode_image reads these; anything else is decoded with PIL inside the pipeline.
_TF_DECODABLE = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_MAX_LISTED = 10


class DataValidationError(ValueError):
    """Image/mask files that cannot be used as they are (unmatched, unreadable, bad labels)."""


def _natural_key(path: Path):
    # "2.png" sorts before "10.png", so numbered slices keep their order.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _list_images(folder: Path, role: str) -> list[Path]:
    if not folder.is_dir():
        raise DataNotFoundError(f"{role} folder not found: {folder}")
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                    and not p.name.startswith(".")), key=_natural_key)
    if not files:
        raise DataValidationError(
            f"{role} folder {folder} holds no image files (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return files


def _names(paths, limit=_MAX_LISTED) -> str:
    paths = list(paths)
    shown = ", ".join(str(p) for p in paths[:limit])
    return shown + (f" ... and {len(paths) - limit} more" if len(paths) > limit else "")


@dataclasses.dataclass(frozen=True)
class FolderSource:
    """Validated image/mask file pairs and how to decode them.

    Built by `scan_folders`; `raw_dataset()` yields `(image uint8 (H, W, C), mask (H, W))` with mask
    values already mapped to class labels (uint8 when every label fits, else int32).
    """

    image_paths: tuple[str, ...]
    mask_paths: tuple[str, ...]
    sizes: tuple[tuple[int, int], ...]  # (height, width) per pair
    channels: int
    lookup: np.ndarray | None  # raw mask value -> label; None keeps values as they are
    pil_images: bool
    pil_masks: bool
    mask_dtype: str

    def __len__(self):
        return len(self.image_paths)

    @property
    def nbytes(self) -> int:
        """Decoded size of all pairs as cached by the pipeline (uint8 image + mask)."""
        per_pixel = self.channels + np.dtype(self.mask_dtype).itemsize
        return int(sum(h * w * per_pixel for h, w in self.sizes))

    def raw_dataset(self) -> tf.data.Dataset:
        """Returns a dataset of decoded `(image, mask)` pairs in file order."""
        ds = tf.data.Dataset.from_tensor_slices((list(self.image_paths), list(self.mask_paths)))
        return ds.map(self.decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def decode(self, image_path, mask_path):
        """Decodes one pair of file paths (string tensors)."""
        channels = self.channels
        if self.pil_images:
            image = tf.numpy_function(lambda p: read_image(p, channels), [image_path], tf.uint8)
        else:
            image = tf.io.decode_image(tf.io.read_file(image_path), channels=channels,
                                       expand_animations=False, dtype=tf.uint8)
        image = tf.ensure_shape(image, [None, None, channels])
        if self.pil_masks:
            mask = tf.numpy_function(read_label_image, [mask_path], tf.int32)
        else:
            mask = tf.cast(tf.io.decode_image(tf.io.read_file(mask_path), channels=1,
                                              expand_animations=False)[..., 0], tf.int32)
        mask = tf.ensure_shape(mask, [None, None])
        if self.lookup is not None:
            mask = tf.gather(tf.constant(self.lookup, tf.int32), mask)
        return image, tf.cast(mask, self.mask_dtype)


def _make_lookup(value_map: Mapping[int, int] | None, values: np.ndarray):
    if value_map is None:
        return None
    size = max(max(value_map) + 1, int(values.max()) + 1 if values.size else 1)
    lookup = np.full(size, -1, np.int32)
    for src, dst in value_map.items():
        if src < 0:
            raise ValueError(f"value_map keys must be non-negative mask values, got {src}")
        lookup[src] = dst
    return lookup


def _pairs_by_stem(image_dir: Path, mask_dir: Path, mask_suffix: str, select) -> list[tuple[Path, Path]]:
    """(image, mask) paths matched by stem (mask stem = image stem + `mask_suffix`), after `select`;
    unmatched names on either side are a DataValidationError naming them."""
    images = _list_images(image_dir, "Image")
    masks = _list_images(mask_dir, "Mask")
    by_stem = {}
    for path in masks:
        by_stem.setdefault(path.stem, path)
    unmatched_images = [p for p in images if p.stem + mask_suffix not in by_stem]
    image_stems = {p.stem + mask_suffix for p in images}
    unmatched_masks = [p for p in masks if p.stem not in image_stems]
    if unmatched_images or unmatched_masks:
        parts = []
        if unmatched_images:
            parts.append(f"{len(unmatched_images)} image(s) without a mask named <stem>{mask_suffix}.* "
                         f"in {mask_dir}: {_names(p.name for p in unmatched_images)}")
        if unmatched_masks:
            parts.append(f"{len(unmatched_masks)} mask(s) without an image in {image_dir}: "
                         f"{_names(p.name for p in unmatched_masks)}")
        raise DataValidationError("Unmatched file names: " + "; ".join(parts))
    if select is not None:
        images = list(select(images))
        if not images:
            raise DataValidationError(f"No pairs selected from {image_dir}")
    return [(img, by_stem[img.stem + mask_suffix]) for img in images]


def _checked_mask(image_path: Path, mask_path: Path) -> tuple[str, np.ndarray]:
    """(PIL mode, label array) of a mask whose image and mask both read, single-channel and of the
    image's size; else a DataValidationError naming the file and what is wrong."""
    try:
        with Image.open(image_path) as img:
            image_size = img.size
            img.verify()  # reads the data and checks it (PNG CRCs, truncation) without decoding
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataValidationError(f"Unreadable image {image_path}: {error}") from error
    try:
        with Image.open(mask_path) as img:
            mode = img.mode
            mask = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataValidationError(f"Unreadable mask {mask_path}: {error}") from error
    if mask.ndim != 2:
        raise DataValidationError(
            f"Mask {mask_path} has mode {mode} with shape {mask.shape}; masks must be single-channel "
            "label images (8-bit grayscale or palette), one integer class per pixel")
    if mask.shape[::-1] != image_size:
        raise DataValidationError(
            f"Size mismatch: image {image_path} is {image_size[0]}x{image_size[1]} but mask {mask_path} "
            f"is {mask.shape[1]}x{mask.shape[0]} (width x height)")
    return mode, mask


def scan_folders(
    image_dir: str | os.PathLike,
    mask_dir: str | os.PathLike,
    *,
    channels: int = 3,
    num_classes: int | None = None,
    ignore_class: int | None = None,
    value_map: Mapping[int, int] | None = None,
    mask_suffix: str = "",
    select=None,
) -> FolderSource:
    """Pairs images with masks by file stem and checks every pair before any training starts.

    Args:
        image_dir: Folder of images.
        mask_dir: Folder of single-channel label images (8-bit grayscale or palette PNGs).
        channels: Image channels to decode (3 = RGB, 1 = grayscale).
        num_classes: Labels must lie in `0..num_classes - 1` (or equal `ignore_class`);
            None only checks that labels are non-negative.
        ignore_class: Label allowed in masks and skipped by losses and metrics.
        value_map: Raw mask value -> label (e.g. `{0: 0, 255: 1}`); raw values missing from the map
            are an error. None keeps the raw values.
        mask_suffix: Mask stem = image stem + suffix (e.g. "_L" for "0001_L.png").
        select: Optional callable `list[Path] -> list[Path]` applied to the sorted, matched image
            paths (used for deterministic train/val splits of one folder).

    Returns:
        A `FolderSource`.

    Raises:
        DataNotFoundError: a folder is missing.
        DataValidationError: empty folder, unmatched names, unreadable files, size mismatch,
            colour masks or labels out of range; the message names the files and values.
    """
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    pairs = _pairs_by_stem(image_dir, mask_dir, mask_suffix, select)

    sizes, bad_values, all_values = [], [], set()
    pil_images = any(p.suffix.lower() not in _TF_DECODABLE for p, _ in pairs)
    pil_masks = False
    for image_path, mask_path in pairs:
        mode, mask = _checked_mask(image_path, mask_path)
        # tf.io.decode_image agrees with PIL only for plain 8-bit grayscale PNG/BMP; palette,
        # 1-bit and 16-bit masks are decoded with PIL so labels are read, not colours.
        pil_masks |= mode != "L" or mask_path.suffix.lower() not in (".png", ".bmp")
        values = np.unique(mask)
        all_values.update(int(v) for v in values)
        sizes.append(tuple(mask.shape))
        if value_map is not None:
            unmapped = [int(v) for v in values if int(v) not in value_map]
            if unmapped:
                bad_values.append((mask_path, unmapped, "not in value_map"))
                continue
            values = np.array([value_map[int(v)] for v in values])
        valid = values >= 0
        if num_classes is not None:
            valid &= values < num_classes
        if ignore_class is not None:
            valid |= values == ignore_class
        if not valid.all():
            bad_values.append((mask_path, [int(v) for v in values[~valid]], "outside the class range"))
    if bad_values:
        allowed = f"0..{num_classes - 1}" if num_classes is not None else "non-negative labels"
        if ignore_class is not None:
            allowed += f" or ignore_class={ignore_class}"
        listed = "; ".join(f"{path}: {values} ({why})" for path, values, why in bad_values[:_MAX_LISTED])
        more = f" ... and {len(bad_values) - _MAX_LISTED} more files" if len(bad_values) > _MAX_LISTED else ""
        raise DataValidationError(f"Mask values must be {allowed}; bad values in {listed}{more}")

    lookup = _make_lookup(value_map, np.array(sorted(all_values)))
    labels = set(value_map[v] for v in all_values) if value_map is not None else all_values
    top = max(labels | ({ignore_class} if ignore_class is not None else set()) | {0})
    mask_dtype = "uint8" if top <= 255 and min(labels | {0}) >= 0 else "int32"
    return FolderSource(
        image_paths=tuple(str(p) for p, _ in pairs),
        mask_paths=tuple(str(m) for _, m in pairs),
        sizes=tuple(sizes),
        channels=channels,
        lookup=lookup,
        pil_images=pil_images,
        pil_masks=pil_masks,
        mask_dtype=mask_dtype,
    )
