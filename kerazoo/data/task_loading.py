"""`kerazoo.data.load` for the tasks other than segmentation: restoration (denoise, super-resolution)
and depth. Each catalogue entry's `task` picks the branch; `task_options` holds its defaults."""

from __future__ import annotations

from kerazoo.data.catalog import RESTORATION_TASKS, DatasetInfo
from kerazoo.data.degradations import check_scale

__all__ = ["RESTORATION_OPTIONS", "SR_PATCH_SIZES", "image_names", "load_depth", "load_restoration",
           "restoration_options"]

RESTORATION_OPTIONS = ("noise_sigma", "scale", "patch_size", "patches_per_image", "channels")
# Default LR patch side per scale for training: every T91 image (the smallest is 78x78) fits it.
SR_PATCH_SIZES = {2: 32, 3: 24, 4: 16}
_DEFAULT_PATCHES_PER_IMAGE = 64


def _check_augment(augment, split):
    if augment is None:
        return split == "train"
    if not isinstance(augment, bool):
        raise TypeError(f"augment must be None or a bool for restoration data (flips and rot90), got {augment!r}")
    return augment


def restoration_options(info: DatasetInfo, split: str, given: dict) -> dict:
    """The restoration options for `info` and `split`: the given ones over the entry's `task_options`.

    The train split cuts patches by default; other splits yield whole images unless `patch_size` is given.
    """
    options = {key: value for key, value in info.task_options.items() if key in RESTORATION_OPTIONS}
    options.update({key: value for key, value in given.items() if value is not None})
    options.setdefault("channels", info.channels)
    if info.task == "denoise":
        if "scale" in given and given["scale"] is not None:
            raise ValueError(f"{info.name} is a denoising data set; scale applies to super_resolution data sets")
        options.pop("scale", None)
        options.setdefault("noise_sigma", 25.0)
    else:
        if given.get("noise_sigma") is not None:
            raise ValueError(f"{info.name} is a super_resolution data set; noise_sigma applies to denoising")
        options.pop("noise_sigma", None)
        options["scale"] = check_scale(options.get("scale", 4))
    if "patch_size" not in given or given["patch_size"] is None:
        default = SR_PATCH_SIZES[options["scale"]] if info.task == "super_resolution" else 48
        options["patch_size"] = options.get("patch_size", default) if split == "train" else None
    options.setdefault("patches_per_image", _DEFAULT_PATCHES_PER_IMAGE)
    return options


def load_restoration(info: DatasetInfo, split: str, *, data_dir, download, batch_size, augment, shuffle, seed,
                     drop_remainder, **given):
    """`(degraded, clean)` batches of a catalogued denoising or super-resolution data set."""
    from kerazoo.data import loaders, restoration

    if split not in info.splits:
        raise ValueError(f"{info.name} has splits {list(info.splits)}, got split={split!r}")
    options = restoration_options(info, split, given)
    folder = loaders.dataset_folder(info, data_dir, download)
    common = dict(patch_size=options["patch_size"], patches_per_image=options["patches_per_image"],
                  batch_size=batch_size, augment=_check_augment(augment, split),
                  shuffle=split == "train" if shuffle is None else shuffle, seed=seed, drop_remainder=drop_remainder)
    if info.task == "denoise":
        images = restoration.read_image_folder(folder, options["channels"])
        return restoration.denoise_pairs(images, noise_sigma=options["noise_sigma"], **common)
    if info.source == "pairs":
        low, high = restoration.read_sr_pairs(folder, options["scale"], options["channels"])
        return restoration.super_resolution_pairs(high, low=low, scale=options["scale"], **common)
    images = restoration.read_image_folder(folder, options["channels"])
    return restoration.super_resolution_pairs(images, scale=options["scale"], **common)


def image_names(name: str, split: str | None = None, *, data_dir=None, scale: int | None = None,
                download: bool = True) -> list[str]:
    """The image names (file stems) of a restoration set, in the order its whole-image split yields them.

    Args:
        name: A restoration data set ("train400", "set12", "t91", "set5").
        split: Ignored except for validation (one of the entry's splits); None takes `val_split`.
        data_dir: The data root, as for `kerazoo.data.load`.
        scale: For pair sets ("set5"): the pair folder to list (default from `task_options`).
        download: Download a missing data set first.
    """
    from kerazoo.data import loaders
    from kerazoo.data.catalog import DATASETS, list_datasets
    from kerazoo.data.folders import _list_images

    info = DATASETS[name] if name in DATASETS else None
    if info is None or info.task not in RESTORATION_TASKS:
        restoration = [n for n in list_datasets() if DATASETS[n].task in RESTORATION_TASKS]
        raise ValueError(f"image_names takes a restoration data set ({restoration}), got {name!r}")
    if split is not None and split not in info.splits:
        raise ValueError(f"{info.name} has splits {list(info.splits)}, got split={split!r}")
    folder = loaders.dataset_folder(info, data_dir, download)
    if info.source == "pairs":
        scale = check_scale(scale if scale is not None else info.task_options.get("scale", 4))
        paths = _list_images(folder / f"image_SRF_{scale}", f"x{scale} pair")
        return [p.name[: -len("_HR.png")] for p in paths if p.name.endswith("_HR.png")]
    return [p.stem for p in _list_images(folder, "Image")]


def load_depth(info: DatasetInfo, split: str, *, data_dir, download, num_examples, image_size, batch_size,
               augment, shuffle, seed, cache, drop_remainder):
    """`(image, depth)` batches of a catalogued depth data set."""
    from kerazoo.data import loaders
    from kerazoo.data.depth import depth_pipeline

    if split not in info.splits:
        raise ValueError(f"{info.name} has splits {list(info.splits)}, got split={split!r}")
    raw = loaders.load_raw(info, split, data_dir=data_dir, download=download, num_examples=num_examples,
                           image_size=image_size, seed=seed)
    return depth_pipeline(raw, image_size=image_size, batch_size=batch_size,
                          augment=_check_augment(augment, split),
                          shuffle=split == "train" if shuffle is None else shuffle, seed=seed,
                          cache=cache is True, drop_remainder=drop_remainder)
