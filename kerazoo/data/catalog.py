"""The catalogue of known data sets: each entry says how to load it, its splits, classes, colours,
default size and where to download it, so that no caller tests data-set names.

This module imports nothing of kerazoo but the `Registry`: `kerazoo.data.loaders` reads it, and runs the
loader an entry names.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from kerazoo.utils.registry import Registry

__all__ = ["DatasetInfo", "DATASETS", "RESTORATION_TASKS", "TASKS", "list_datasets"]

# The data side's task names (kerazoo.tasks holds the same names with the models, which data must not load).
TASKS = ("segmentation", "denoise", "super_resolution", "depth")
RESTORATION_TASKS = ("denoise", "super_resolution")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Facts about a data set that the loaders, losses and metrics share.

    Restoration and depth data sets have no classes: `num_classes=0`, empty names and colours.

    Attributes:
        name: Name used by `kerazoo.data.load`.
        num_classes: Number of real classes; labels are `0..num_classes - 1`.
        class_names: One name per class.
        class_colors: One RGB triple per class, for colouring predicted masks.
        ignore_class: Label of "void" pixels that losses and metrics skip, or None.
            It may equal `num_classes` (CamVid's void is 11 for 11 classes).
        channels: Image channels: 3 for RGB, 1 for grayscale.
        source: Where the examples come from: "folders", "tfds", "synthetic", or "pairs" (ready-made
            LR/HR pairs in the Set5 layout, `image_SRF_{scale}/<name>_{LR,HR}.png`).
        image_size: Default `(height, width)` fed to the model; None keeps the native size.
        description: One line for `list_datasets`-style listings.
        val_split: The split that training validates on and evaluation defaults to.
        synthetic: Generated in memory: takes `num_examples`, needs no files.
        splits: The split names `kerazoo.data.load` accepts.
        loader: the name of the function in `kerazoo.data.loaders` that loads it (`load_raw` runs it), returning a
            `FolderSource` or a `tf.data.Dataset` of raw `(image, mask)` pairs; `(image, depth)` pairs for
            depth; None for restoration sets, whose folder is read by `kerazoo.data.restoration`.
        download: Manifest of files to download (a name in `kerazoo/data/manifests/` or a JSON path),
            or None when the data cannot be downloaded by kerazoo.
        augment: `AugmentConfig` keyword arguments for the default training augmentation.
        task: The task the data set serves, one of `TASKS`.
        task_options: Defaults of the task's options for `kerazoo.data.load` (restoration:
            `noise_sigma`, `scale`, `patch_size`, `patches_per_image`).
        eval_dataset: The data set that measures a model trained on this one (train400 -> set12,
            t91 -> set5), or None when `val_split` serves.
    """

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    class_colors: tuple[tuple[int, int, int], ...]
    ignore_class: int | None
    channels: int
    source: str
    image_size: tuple[int, int] | None
    description: str
    val_split: str = "val"
    synthetic: bool = False
    splits: tuple[str, ...] = ("train", "val")
    loader: str | None = None
    download: str | None = None
    augment: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    task: str = "segmentation"
    task_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    eval_dataset: str | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"{self.name}: task {self.task!r} is not one of {TASKS}")
        if self.val_split not in self.splits:
            raise ValueError(f"{self.name}: val_split {self.val_split!r} is not one of splits {self.splits}")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")
        if len(self.class_colors) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_colors)} colours for {self.num_classes} classes")


DATASETS = Registry("data set")
for _info in (
    DatasetInfo(
        name="camvid",
        num_classes=11,
        class_names=("Sky", "Building", "Pole", "Road", "Pavement", "Tree",
                     "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist"),
        # The SegNet tutorial's colours (Scripts/test_segmentation_camvid.py); void is drawn black.
        class_colors=((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128),
                      (60, 40, 222), (128, 128, 0), (192, 128, 128), (64, 64, 128),
                      (64, 0, 128), (64, 64, 0), (0, 128, 192)),
        ignore_class=11,
        channels=3,
        source="folders",
        # 360 is not a multiple of 32; 352 x 480 is the nearest size every encoder accepts.
        image_size=(352, 480),
        description="CamVid road scenes as used by SegNet: 11 classes + void (11), 480x360 RGB; "
                    "splits train/val/test",
        splits=("train", "val", "test"),
        loader="camvid",
        download="camvid",
    ),
    DatasetInfo(
        name="membrane",
        num_classes=2,
        class_names=("membrane", "cell"),
        class_colors=((0, 0, 0), (255, 255, 255)),
        ignore_class=None,
        channels=1,
        source="folders",
        image_size=(512, 512),
        description="ISBI 2012 EM membranes (U-Net paper): 24 grayscale 512x512 slices; val = last 4",
        loader="membrane",
        download="membrane",
        # EM slices have no up or down; road scenes do.
        augment={"vertical_flip": True, "brightness": 0.05, "contrast": 0.1},
    ),
    DatasetInfo(
        name="shapes",
        num_classes=4,
        class_names=("background", "circle", "square", "triangle"),
        class_colors=((0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200)),
        ignore_class=None,
        channels=3,
        source="synthetic",
        image_size=(64, 64),
        description="Synthetic coloured circles, squares and triangles on noise; no files needed",
        synthetic=True,
        splits=("train", "val", "test"),
        loader="shapes",
        augment={"vertical_flip": True, "hue": 0.0, "saturation": 0.0},
    ),
    DatasetInfo(
        name="oxford_iiit_pet",
        num_classes=3,
        # TFDS trimap values 1, 2, 3 are shifted to 0, 1, 2.
        class_names=("pet", "background", "border"),
        class_colors=((255, 200, 0), (0, 0, 0), (128, 128, 128)),
        ignore_class=None,
        channels=3,
        source="tfds",
        image_size=(128, 128),
        description="Oxford-IIIT Pet trimaps via tensorflow_datasets (pip install kerazoo[data]); "
                    "splits train/test",
        val_split="test",
        # "val" reads TFDS' test split, as before.
        splits=("train", "test", "val"),
        loader="oxford_iiit_pet",
    ),
    DatasetInfo(
        name="train400", num_classes=0, class_names=(), class_colors=(), ignore_class=None, channels=1,
        source="folders", image_size=None,
        description="DnCNN's denoising training set: 400 grey 180x180 BSD crops; noisy patches made on the fly",
        splits=("train",), val_split="train", download="train400", task="denoise",
        # DnCNN-S trains at one sigma on 40x40 patches; 48 is a multiple of 16 for the encoders.
        task_options={"noise_sigma": 25, "patch_size": 48, "patches_per_image": 64}, eval_dataset="set12",
    ),
    DatasetInfo(
        name="set12", num_classes=0, class_names=(), class_colors=(), ignore_class=None, channels=1,
        source="folders", image_size=None,
        description="Set12 denoising test set: 12 grey images, 256x256 and 512x512; noise seeded per image",
        splits=("test",), val_split="test", download="set12", task="denoise",
        task_options={"noise_sigma": 25},
    ),
    DatasetInfo(
        name="t91", num_classes=0, class_names=(), class_colors=(), ignore_class=None, channels=3,
        source="folders", image_size=None,
        description="T91 super-resolution training set (Yang et al.): 91 RGB images; LR by MATLAB bicubic",
        splits=("train",), val_split="train", download="t91", task="super_resolution",
        task_options={"scale": 4, "patches_per_image": 64}, eval_dataset="set5",
    ),
    DatasetInfo(
        name="set5", num_classes=0, class_names=(), class_colors=(), ignore_class=None, channels=3,
        source="pairs", image_size=None,
        description="Set5 super-resolution test pairs (MATLAB bicubic LR) at x2, x3, x4",
        splits=("test",), val_split="test", download="set5", task="super_resolution",
        task_options={"scale": 4},
    ),
    DatasetInfo(
        name="depth_scenes", num_classes=0, class_names=(), class_colors=(), ignore_class=None, channels=3,
        source="synthetic", image_size=(64, 64),
        description="Synthetic depth: a floor, a wall and boxes, shaded from depth (metres); no files needed",
        synthetic=True, splits=("train", "val", "test"), loader="depth_scenes", task="depth",
    ),
    DatasetInfo(
        name="nyu_depth_v2", num_classes=0, class_names=(), class_colors=(), ignore_class=None, channels=3,
        source="tfds", image_size=(240, 320),
        description="NYU Depth V2 indoor RGB-D via tensorflow_datasets (pip install kerazoo[data]), 480x640",
        splits=("train", "val"), loader="nyu_depth_v2", task="depth",
    ),
):
    DATASETS.register(_info.name, _info)


def list_datasets() -> list[str]:
    """Returns the names accepted by `kerazoo.data.load`, sorted."""
    return DATASETS.names()
