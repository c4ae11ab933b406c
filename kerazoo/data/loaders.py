"""One loader per catalogued data set; each `DatasetInfo.loader` names one of these, `load_raw` runs it.

A loader is called as `loader(info, split, *, data_dir, download, num_examples, image_size, seed)`
and returns either a `FolderSource` (files, scanned and validated) or a `tf.data.Dataset` of raw
`(image, mask)` pairs. TensorFlow and the folder scanner are imported inside the loaders, so that the
catalogue stays cheap to import.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MEMBRANE_VAL_SLICES", "load_raw", "camvid", "dataset_folder", "depth_scenes", "membrane", "nyu_depth_v2",
           "oxford_iiit_pet", "shapes"]

MEMBRANE_VAL_SLICES = 4
# Membrane labels are 0 (membrane) and 255 (cell); intermediate values are thresholded at 128.
_MEMBRANE_VALUE_MAP = {value: int(value >= 128) for value in range(256)}


def dataset_folder(info, data_dir, download: bool) -> Path:
    """The folder of `info`'s files under the data root, downloaded first when it is missing."""
    from kerazoo.data.sources import ensure_dataset

    return ensure_dataset(info, data_dir=data_dir, download=download)


def camvid(info, split, *, data_dir=None, download=True, **_):
    """CamVid as the SegNet tutorial lays it out: `<split>/` images beside `<split>annot/` labels."""
    from kerazoo.data.folders import scan_folders

    folder = dataset_folder(info, data_dir, download)
    available = sorted(p.name for p in folder.iterdir() if p.is_dir() and (folder / f"{p.name}annot").is_dir())
    if split not in available:
        raise ValueError(f"{info.name} has splits {available} in {folder}, got split={split!r}")
    return scan_folders(folder / split, folder / f"{split}annot", channels=info.channels,
                        num_classes=info.num_classes, ignore_class=info.ignore_class)


def membrane(info, split, *, data_dir=None, download=True, **_):
    """ISBI membranes: `image/N.png`, `label/N.png`; the last `MEMBRANE_VAL_SLICES` slices are val."""
    from kerazoo.data.folders import scan_folders

    if split not in info.splits:
        raise ValueError(f"{info.name} has splits {list(info.splits)}, got split={split!r}")

    def select(paths):  # paths arrive in natural order (0, 1, ..., 23): the last slices are val
        return paths[:-MEMBRANE_VAL_SLICES] if split == "train" else paths[-MEMBRANE_VAL_SLICES:]

    folder = dataset_folder(info, data_dir, download)
    return scan_folders(folder / "image", folder / "label", channels=info.channels, num_classes=info.num_classes,
                        value_map=_MEMBRANE_VALUE_MAP, select=select)


def shapes(info, split, *, num_examples=None, image_size=None, seed=0, **_):
    """The synthetic shapes, generated in memory (default 256 train images, 64 otherwise)."""
    import tensorflow as tf

    from kerazoo.data.shapes import generate_shapes

    count = num_examples or (256 if split == "train" else 64)
    images, masks = generate_shapes(count, image_size=image_size or info.image_size, seed=seed, split=split)
    return tf.data.Dataset.from_tensor_slices((images, masks))


def oxford_iiit_pet(info, split, *, data_dir=None, download=True, **_):
    """Oxford-IIIT Pet through tensorflow_datasets; `data_dir` is TFDS' data directory."""
    from kerazoo.data.tfds_source import oxford_iiit_pet as load_pet

    return load_pet(split, data_dir=data_dir, download=download)


def depth_scenes(info, split, *, num_examples=None, image_size=None, seed=0, **_):
    """Synthetic depth scenes, generated in memory (default 256 train scenes, 64 otherwise)."""
    import tensorflow as tf

    from kerazoo.data.depth import generate_depth_scenes

    count = num_examples or (256 if split == "train" else 64)
    images, depths = generate_depth_scenes(count, image_size=image_size or info.image_size, seed=seed, split=split)
    return tf.data.Dataset.from_tensor_slices((images, depths))


def nyu_depth_v2(info, split, *, data_dir=None, download=True, **_):
    """NYU Depth V2 through tensorflow_datasets; `data_dir` is TFDS' data directory."""
    from kerazoo.data.depth import nyu_depth_v2 as load_nyu

    return load_nyu(split, data_dir=data_dir, download=download)


def load_raw(info, split, **kwargs):
    """Runs the loader that catalogue entry `info` names (see the module docstring for the arguments)."""
    if info.loader is None:
        raise ValueError(f"{info.name} has no loader of its own (a {info.task} set is read by its task's reader)")
    return globals()[info.loader](info, split, **kwargs)
