"""The catalogue of known data sets: class names, colours and the ignored label."""

from __future__ import annotations

import dataclasses

__all__ = ["DatasetInfo", "DATASETS", "list_datasets"]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Facts about a segmentation data set that the loaders, losses and metrics share.

    Attributes:
        name: Name used by `kerazoo.data.load`.
        num_classes: Number of real classes; labels are `0..num_classes - 1`.
        class_names: One name per class.
        class_colors: One RGB triple per class, for colouring predicted masks.
        ignore_class: Label of "void" pixels that losses and metrics skip, or None.
            It may equal `num_classes` (CamVid's void is 11 for 11 classes).
        channels: Image channels: 3 for RGB, 1 for grayscale.
        source: Where the examples come from: "folders", "tfds" or "synthetic".
        image_size: Default `(height, width)` fed to the model; None keeps the native size.
        description: One line for `list_datasets`-style listings.
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
    val_split: str = "val"      # the split that training validates on and evaluation defaults to
    synthetic: bool = False     # generated in memory: takes num_examples, needs no files

    def __post_init__(self):
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")
        if len(self.class_colors) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_colors)} colours for {self.num_classes} classes")


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
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
            description="CamVid road scenes as used by SegNet: 11 classes + void (11), 480x360 RGB; splits train/val",
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
            description="Oxford-IIIT Pet trimaps via tensorflow_datasets (pip install kerazoo[data]); splits train/test",
            val_split="test",
        ),
    )
}


def list_datasets() -> list[str]:
    """Returns the names accepted by `kerazoo.data.load`, sorted."""
    return sorted(DATASETS)
