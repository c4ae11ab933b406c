"""tf.data input pipelines: folders, TFDS, downloads and synthetic defaults, for every task.

Segmentation loaders yield `(image, mask)`: images float32 `(H, W, C)` with raw values 0..255 (the
model normalises them itself), masks int32 `(H, W)` holding class labels, never one-hot. Restoration
sets (`task` "denoise", "super_resolution") yield `(degraded, clean)` float32 0..255 (see
`restoration.py`), depth sets `(image, depth in metres, 0 = unknown)` (see `depth.py`). Named data
sets are entries of `DATASETS` (`catalog.py`): each carries its task, loader, splits, classes,
colours, default size and download manifest, and `load` dispatches through the entry.
"""

from __future__ import annotations

import os
from typing import Mapping

import tensorflow as tf

from kerazoo.data.augment import AugmentConfig, augment_pair, resize_pair
from kerazoo.data.catalog import DATASETS, RESTORATION_TASKS, TASKS, DatasetInfo, list_datasets
from kerazoo.data.class_weights import class_pixel_counts, median_frequency_weights
from kerazoo.data.folders import DataValidationError, FolderSource, scan_folders
from kerazoo.data import loaders
from kerazoo.data.loaders import MEMBRANE_VAL_SLICES
from kerazoo.data.paths import DataNotFoundError, data_home, resolve_data_dir
from kerazoo.data.pipeline import CACHE_LIMIT_BYTES, build_pipeline
from kerazoo.utils.sizes import height_width
from kerazoo.data.shapes import generate_shapes
from kerazoo.data.degradations import add_gaussian_noise, bicubic_downsample, crop_to_multiple
from kerazoo.data.depth import generate_depth_scenes
from kerazoo.data.imresize import imresize_numpy, imresize_tf
from kerazoo.data.restoration import (ImageSet, denoise_pairs, read_image_folder, read_sr_pairs,
                                      super_resolution_pairs)
from kerazoo.data.sources import download_dataset, load_manifest
from kerazoo.data.task_loading import RESTORATION_OPTIONS, image_names, load_depth, load_restoration

__all__ = [
    "AugmentConfig", "DATASETS", "DataNotFoundError", "DataValidationError", "DatasetInfo",
    "FolderSource", "ImageSet", "MEMBRANE_VAL_SLICES", "TASKS", "add_gaussian_noise", "augment_pair",
    "bicubic_downsample", "class_pixel_counts", "crop_to_multiple", "data_home", "denoise_pairs",
    "download_dataset", "generate_depth_scenes", "generate_shapes", "image_names", "imresize_numpy",
    "imresize_tf", "list_datasets", "load", "load_folders", "load_manifest", "median_frequency_weights",
    "read_image_folder", "read_sr_pairs", "resize_pair", "resolve_data_dir", "scan_folders",
    "super_resolution_pairs",
]


def _augment_config(augment, split, info: DatasetInfo | None = None) -> AugmentConfig | None:
    if augment is None:
        augment = split == "train"
    if augment is True:
        return AugmentConfig(**info.augment) if info is not None else AugmentConfig()
    if augment is False:
        return None
    if isinstance(augment, AugmentConfig):
        return augment
    raise TypeError(f"augment must be None, a bool or an AugmentConfig, got {augment!r}")


def _check_size(image_size):
    return None if image_size is None else height_width(image_size, "image_size")


def _from_source(source: FolderSource, *, image_size, batch_size, augment, shuffle, seed, cache,
                 drop_remainder):
    if image_size is None and batch_size not in (None, 1) and len(set(source.sizes)) > 1:
        raise DataValidationError(
            f"Images have {len(set(source.sizes))} different sizes (e.g. {sorted(set(source.sizes))[:3]}, "
            "height x width); pass image_size=(height, width) or batch_size=1 to batch them")
    if cache == "auto":
        cache = source.nbytes <= CACHE_LIMIT_BYTES
    return build_pipeline(source.raw_dataset(), channels=source.channels, image_size=image_size,
                          batch_size=batch_size, augment=augment, shuffle=shuffle, seed=seed,
                          cache=cache, drop_remainder=drop_remainder)


def load_folders(
    image_dir: str | os.PathLike,
    mask_dir: str | os.PathLike,
    *,
    num_classes: int | None = None,
    value_map: Mapping[int, int] | None = None,
    ignore_class: int | None = None,
    channels: int = 3,
    mask_suffix: str = "",
    batch_size: int | None = 8,
    image_size: tuple[int, int] | None = None,
    augment: bool | AugmentConfig = False,
    shuffle: bool = False,
    seed: int = 0,
    cache: bool | str = "auto",
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Loads image/mask pairs matched by file stem from two folders.

    All files are checked before the dataset is returned: missing or empty folders, unmatched
    names, unreadable files, image/mask size mismatches and mask labels out of range raise errors
    that name the files.

    Args:
        image_dir: Folder of images (PNG, JPEG, BMP, GIF; TIFF/WebP through PIL).
        mask_dir: Folder of single-channel label images with the same stems.
        num_classes: Valid labels are `0..num_classes - 1`; None skips the upper bound.
        value_map: Raw mask value -> label, e.g. `{0: 0, 255: 1}`; unmapped values are errors.
        ignore_class: Extra label allowed in masks (void), skipped by losses and metrics.
        channels: 3 for RGB, 1 for grayscale images.
        mask_suffix: Mask stem = image stem + suffix.
        batch_size: Batch size; None for single examples.
        image_size: Output `(height, width)`; None keeps the native size.
        augment: True for the default `AugmentConfig`, or a config; False for none.
        shuffle: Shuffle each epoch (reproducibly from `seed`).
        seed: Seed for shuffling and augmentation.
        cache: "auto" caches decoded pairs in memory when they fit under 2 GiB; True/False/file prefix.
        drop_remainder: Drop the last partial batch.

    Returns:
        `tf.data.Dataset` of `(image float32 (B, H, W, C) 0..255, mask int32 (B, H, W))`.
    """
    source = scan_folders(image_dir, mask_dir, channels=channels, num_classes=num_classes,
                          ignore_class=ignore_class, value_map=value_map, mask_suffix=mask_suffix)
    return _from_source(source, image_size=_check_size(image_size), batch_size=batch_size,
                        augment=_augment_config(augment, "train" if augment else "val"),
                        shuffle=shuffle, seed=seed, cache=cache, drop_remainder=drop_remainder)


def load(
    name: str,
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    batch_size: int | None = 8,
    image_size: tuple[int, int] | None = None,
    augment: bool | AugmentConfig | None = None,
    shuffle: bool | None = None,
    seed: int = 0,
    cache: bool | str = "auto",
    num_examples: int | None = None,
    drop_remainder: bool = False,
    download: bool = True,
    noise_sigma: float | tuple[float, float] | None = None,
    scale: int | None = None,
    patch_size: int | None = None,
    patches_per_image: int | None = None,
    channels: int | None = None,
) -> tf.data.Dataset:
    """Loads a named data set as a `tf.data.Dataset` of `(input, target)` batches.

    Segmentation sets give `(image, mask)`, restoration sets `(degraded, clean)`, depth sets
    `(image, depth)`; `DATASETS[name].task` says which.

    Args:
        name: One of `list_datasets()`: segmentation "camvid", "membrane", "shapes",
            "oxford_iiit_pet"; denoising "train400", "set12"; super-resolution "t91", "set5";
            depth "depth_scenes", "nyu_depth_v2".
        split: One of `DATASETS[name].splits` ("test" for TFDS; camvid accepts any
            `<split>/<split>annot` pair).
        data_dir: Root holding `camvid/`, `membrane/`; else `$KERAZOO_DATA`, else `~/.keras/datasets`.
            A missing data set with a download manifest is downloaded there first (see `download`).
            For "oxford_iiit_pet" it is the TFDS data directory (None: TFDS' default).
        batch_size: Batch size; None for single examples.
        image_size: Output `(height, width)`; None uses `DATASETS[name].image_size`.
        augment: None augments the train split only; True/False, or an `AugmentConfig`.
        shuffle: None shuffles the train split only.
        seed: Seed for generation, shuffling and augmentation: equal seeds give equal batches.
        cache: "auto" caches decoded files in memory when they fit; True/False/file prefix.
        num_examples: Synthetic data sets ("shapes", "depth_scenes") only: number of images
            (default 256 train, 64 otherwise).
        drop_remainder: Drop the last partial batch.
        download: Download a missing data set (sha256-checked, see `download_dataset`; TFDS for
            "oxford_iiit_pet"). `KERAZOO_OFFLINE=1` forbids it as well.
        noise_sigma: Denoising only: Gaussian sigma on the 0..255 scale, or `(low, high)` (blind);
            default from `DATASETS[name].task_options` (25).
        scale: Super-resolution only: 2, 3 or 4 (default 4).
        patch_size: Restoration only: side of the input patch (LR patch for super-resolution);
            default 48 for denoising and 32/24/16 at x2/x3/x4 on the train split, whole images on
            the others (batch_size=1 or None then, when sizes differ).
        patches_per_image: Restoration only: patches per image per epoch (default 64).
        channels: Restoration only: 1 (grey) or 3 (RGB); default `DATASETS[name].channels`.

    Returns:
        Segmentation: `(image float32 (B, H, W, C) in 0..255, mask int32 (B, H, W))` with C = 1 for
        membrane and 3 otherwise. Restoration: `(degraded float32 (B, h, w, C), clean float32
        (B, H, W, C))` in 0..255 (noise not clipped). Depth: `(image float32 (B, H, W, 3),
        depth float32 (B, H, W, 1))`.

    Raises:
        ValueError: unknown name or split.
        DataNotFoundError: the data folder is missing and may not be downloaded (the message says
            where it looked and how to get it).
        DownloadError: the download failed; nothing was kept.
        DataValidationError: bad files (see `load_folders`).
    """
    info = DATASETS.get(name)
    task_options = dict(noise_sigma=noise_sigma, scale=scale, patch_size=patch_size,
                        patches_per_image=patches_per_image, channels=channels)
    given = sorted(key for key, value in task_options.items() if value is not None)
    if given and info.task not in RESTORATION_TASKS:
        raise ValueError(f"{', '.join(given)} apply to restoration data sets "
                         f"({[n for n in list_datasets() if DATASETS[n].task in RESTORATION_TASKS]}), "
                         f"not to {name!r} (task {info.task!r})")
    if num_examples is not None and not info.synthetic:
        raise ValueError(f"num_examples applies to synthetic data sets only "
                         f"({[n for n in list_datasets() if DATASETS[n].synthetic]}), not {name!r}")
    if info.task in RESTORATION_TASKS:
        if image_size is not None:
            raise ValueError(f"{name!r} is a {info.task} data set: it takes patch_size=..., not image_size")
        return load_restoration(info, split, data_dir=data_dir, download=download, batch_size=batch_size,
                                augment=augment, shuffle=shuffle, seed=seed, drop_remainder=drop_remainder,
                                **task_options)
    image_size = _check_size(image_size if image_size is not None else info.image_size)
    if info.task == "depth":
        return load_depth(info, split, data_dir=data_dir, download=download, num_examples=num_examples,
                          image_size=image_size, batch_size=batch_size, augment=augment, shuffle=shuffle,
                          seed=seed, cache=cache, drop_remainder=drop_remainder)
    common = dict(image_size=image_size, batch_size=batch_size, augment=_augment_config(augment, split, info),
                  shuffle=split == "train" if shuffle is None else shuffle, seed=seed,
                  drop_remainder=drop_remainder)
    raw = loaders.load_raw(info, split, data_dir=data_dir, download=download, num_examples=num_examples,
                           image_size=image_size, seed=seed)
    if isinstance(raw, FolderSource):
        return _from_source(raw, cache=cache, **common)
    # In-memory and TFDS record sources read quickly; caching them (full-size photos for TFDS) is opt-in.
    return build_pipeline(raw, channels=info.channels, cache=cache if cache != "auto" else False, **common)
