"""Evaluation (per-class IoU, G, C, mIoU) and prediction pictures (colour masks, overlays).

The figures follow the SegNet paper: G is global pixel accuracy, C the mean of per-class recall
over the classes present in the masks, mIoU the mean IoU over the classes seen in masks or
predictions; pixels of the data set's `ignore_class` count nowhere. They all come from one
confusion matrix accumulated over the whole split (not averaged over batches).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

import kerazoo.models  # noqa: E402,F401  (registers the custom layers for loading)
from kerazoo import data as kz_data  # noqa: E402
from kerazoo.utils.files import atomic_path, atomic_write_text  # noqa: E402
from kerazoo.metrics import PerClassIoU, confusion_matrix_scores  # noqa: E402
from kerazoo.models.model import ZooModel, model_num_classes  # noqa: E402
from kerazoo.tasks.heads import scores_to_labels  # noqa: E402
from kerazoo.utils.images import read_image  # noqa: E402

__all__ = [
    "colorize", "comparison_image", "confusion_matrix", "evaluate", "evaluate_checkpoint", "load_model",
    "load_run", "overlay", "predict_files", "predict_labels", "print_report", "report_table", "write_json",
]

IGNORE_COLOR = (0, 0, 0)


def _is_keras_file(checkpoint) -> bool:
    return str(checkpoint).endswith(".keras")


def load_run(checkpoint: str | os.PathLike) -> dict:
    """The `run.json` that `kerazoo.training.train.train` wrote beside a `.keras` checkpoint ({} if none), or
    for a preset (name, directory or URI) its data set and input size.

    Only the data set's name is read from it by `evaluate_checkpoint` and `predict_files`: a model from
    `create_model` carries its class names, colours and input size itself."""
    if _is_keras_file(checkpoint):
        path = Path(checkpoint).with_name("run.json")
        return json.loads(path.read_text()) if path.exists() else {}
    from kerazoo.zoo import preset_metadata

    metadata = preset_metadata(str(checkpoint))
    return {"dataset": metadata.get("dataset"), "image_size": metadata.get("input_size")}


def _trained_dataset(checkpoint) -> str | None:
    """The data set a checkpoint was trained on, from its run.json or preset metadata (None if unknown)."""
    if isinstance(checkpoint, keras.Model):
        return None
    return load_run(checkpoint).get("dataset")


def _trained_size(model, checkpoint):
    """The (height, width) a model was trained at: its own `input_size`; for models that do not carry
    it (plain Keras models, checkpoints trained without it), the run.json's or preset's record."""
    if isinstance(model, ZooModel) and model.input_size:
        return model.input_size
    recorded = load_run(checkpoint).get("image_size") if not isinstance(checkpoint, keras.Model) else None
    return tuple(recorded) if recorded else None


def _segments(model) -> bool:
    """Whether `model` labels images itself (a segmentation ZooModel); plain Keras models are called."""
    return isinstance(model, ZooModel) and model.head == "segmentation"


def load_model(checkpoint: str | os.PathLike | keras.Model) -> keras.Model:
    """Loads a `.keras` file (without its optimizer) or a preset (name, directory or URI) for
    inference, or returns a model as it is."""
    if isinstance(checkpoint, keras.Model):
        return checkpoint
    if not _is_keras_file(checkpoint):
        from kerazoo.zoo import from_preset

        return from_preset(str(checkpoint))
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}")
    return keras.saving.load_model(path, compile=False)


def confusion_matrix(model: keras.Model, dataset: Iterable, num_classes: int,
                     ignore_class: int | None = None, tta: str | None = None) -> np.ndarray:
    """Accumulates the confusion matrix (rows true, columns predicted) of `model` over `dataset`.

    A segmentation `ZooModel` labels each batch with `model.segment` (resized to its trained input
    size and back to the masks' size inside); a plain Keras model is called on the batch as it is.

    Args:
        model: Segmentation model giving `(B, H, W, K)` logits or probabilities.
        dataset: Batches of `(image, mask)`.
        num_classes: K.
        ignore_class: Label skipped in the masks.
        tta: test-time augmentation for a segmentation `ZooModel`: None, "flip" or "d4" (`model.segment`).

    Returns:
        int64 array `(num_classes, num_classes)`.
    """
    if tta is not None and not _segments(model):
        raise ValueError(f"tta={tta!r} needs a kerazoo segmentation model (ZooModel.segment); this is a plain "
                         "Keras model")
    if _segments(model):
        confusion = np.zeros((num_classes, num_classes), np.int64)
        for images, masks in dataset:
            labels = model.segment(np.asarray(images), tta=tta).reshape(-1)
            truth = np.asarray(masks).reshape(-1).astype(np.int64)
            keep = (truth >= 0) & (truth < num_classes) & (truth != (-1 if ignore_class is None else ignore_class))
            confusion += np.bincount(truth[keep] * num_classes + labels[keep],
                                     minlength=num_classes ** 2).reshape(num_classes, num_classes)
        return confusion
    metric = PerClassIoU(num_classes, ignore_class=ignore_class)

    @tf.function(reduce_retracing=True)
    def update(images, masks):
        metric.update_state(masks, model(images, training=False))

    for images, masks in dataset:
        update(images, masks)
    return np.asarray(keras.ops.convert_to_numpy(metric.total_cm), dtype=np.int64)


def evaluate(model: keras.Model, dataset: Iterable, *, num_classes: int, ignore_class: int | None = None,
             class_names: Sequence[str] | None = None, tta: str | None = None) -> dict:
    """Scores a model on a dataset of `(image, mask)` batches (`tta`: see `confusion_matrix`).

    Returns:
        A JSON-ready dict: `global_accuracy` (G), `class_average_accuracy` (C), `mean_iou`,
        `per_class_iou` (class name -> IoU, None for classes never seen), `class_pixels`
        (true pixels per class), `confusion` (list of lists) and `seconds`.
    """
    class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    start = time.perf_counter()
    confusion = confusion_matrix(model, dataset, num_classes, ignore_class, tta)
    scores = confusion_matrix_scores(confusion)
    per_class = [None if np.isnan(v) else float(v) for v in scores["per_class_iou"]]
    return {
        "global_accuracy": scores["global_accuracy"],
        "class_average_accuracy": scores["class_average_accuracy"],
        "mean_iou": scores["mean_iou"],
        "per_class_iou": dict(zip(class_names, per_class)),
        "class_pixels": dict(zip(class_names, confusion.sum(axis=1).tolist())),
        "num_classes": num_classes,
        "ignore_class": ignore_class,
        "confusion": confusion.tolist(),
        "seconds": time.perf_counter() - start,
    }


def _default_split(dataset: str) -> str:
    return kz_data.DATASETS[dataset].val_split


def evaluate_checkpoint(checkpoint: str | os.PathLike | keras.Model, *, dataset: str | None = None,
                        split: str | None = None, data_dir: str | os.PathLike | None = None,
                        image_size: tuple[int, int] | None = None, batch_size: int = 4,
                        num_examples: int | None = None, tta: str | None = None) -> dict:
    """Loads a checkpoint and evaluates it on a named data set.

    The images and masks are read at `image_size`, default: the size the model was trained at
    (`model.input_size`), else the data set's. A `ZooModel` resizes them to its training size and its
    labels back to the masks' size itself (`model.segment`), so `image_size=(360, 480)` scores CamVid
    at its native resolution. The data set defaults to the one in the preset's metadata or the
    run.json beside a .keras file. `tta` ("flip" or "d4") averages the logits over flips (and
    rotations) of each image (`kerazoo.inference.tta`).

    Returns:
        The `evaluate` report plus `checkpoint`, `dataset`, `split`, `image_size` (of the masks scored),
        `model_input_size` (what the model ran at; None: the data's size) and `tta`.
    """
    dataset = dataset or _trained_dataset(checkpoint)
    if dataset is None:
        raise ValueError(f"No data set known for {checkpoint}: pass dataset= (one of "
                         f"{', '.join(kz_data.list_datasets())})")
    if dataset not in kz_data.DATASETS:
        raise ValueError(f"Unknown data set {dataset!r}; available: {', '.join(kz_data.list_datasets())}")
    info = kz_data.DATASETS[dataset]
    split = split or _default_split(dataset)
    model = load_model(checkpoint)
    image_size = tuple(image_size) if image_size is not None else _trained_size(model, checkpoint) or info.image_size
    num_classes = model_num_classes(model) or info.num_classes
    if max(num_classes, 2) != info.num_classes:
        raise ValueError(f"The model has {num_classes} classes but {dataset} has {info.num_classes}")
    class_names = (model.class_names if isinstance(model, ZooModel) else None) or info.class_names
    data = kz_data.load(dataset, split, data_dir=data_dir, batch_size=batch_size, image_size=image_size,
                        augment=False, shuffle=False, num_examples=num_examples)
    report = evaluate(model, data, num_classes=info.num_classes, ignore_class=info.ignore_class,
                      class_names=class_names, tta=tta)
    where = str(checkpoint) if not isinstance(checkpoint, keras.Model) else model.name
    model_size = model.input_size if _segments(model) else None
    return {"checkpoint": where, "dataset": dataset, "split": split, "image_size": list(image_size),
            "model_input_size": list(model_size) if model_size else None, "tta": tta, **report}


def report_table(report: dict, title: str | None = None):
    """A rich table: one row per class (IoU, pixels), then G, C and mIoU in percent."""
    from rich.table import Table

    if title is None and "dataset" in report:
        title = f"{report.get('checkpoint', 'model')} on {report['dataset']} {report.get('split', '')}".strip()
    table = Table(title=title)
    table.add_column("class")
    table.add_column("IoU %", justify="right")
    table.add_column("pixels", justify="right")
    for name, iou in report["per_class_iou"].items():
        table.add_row(name, "-" if iou is None else f"{100 * iou:.1f}", f"{report['class_pixels'][name]:,}")
    table.add_section()
    for label, key in (("G (global accuracy)", "global_accuracy"), ("C (class-average accuracy)",
                       "class_average_accuracy"), ("mIoU", "mean_iou")):
        table.add_row(label, f"{100 * report[key]:.1f}", "")
    return table


def print_report(report: dict) -> None:
    """Prints `report_table(report)` to the terminal."""
    from rich.console import Console

    Console().print(report_table(report))


def write_json(report: dict, path: str | os.PathLike) -> Path:
    """Writes a report as JSON through a temp file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    return path


def predict_labels(model: keras.Model, images: np.ndarray, batch_size: int = 4) -> np.ndarray:
    """Class labels `(N, H, W)` int32 for images `(N, H, W, C)` of raw 0..255 pixels.

    A segmentation `ZooModel` labels them with `model.segment` (at its trained size inside); a plain
    Keras model is called on them as they are.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    if _segments(model):
        return model.segment(images, batch_size=batch_size)
    labels = []
    for start in range(0, len(images), batch_size):
        scores = keras.ops.convert_to_numpy(model(images[start:start + batch_size], training=False))
        labels.append(scores_to_labels(scores))
    return np.concatenate(labels)


def colorize(labels: np.ndarray, class_colors: Sequence[Sequence[int]],
             ignore_color: Sequence[int] = IGNORE_COLOR) -> np.ndarray:
    """RGB uint8 picture `(..., 3)` of a label map; labels outside the palette get `ignore_color`."""
    labels = np.asarray(labels)
    palette = np.array(list(class_colors) + [ignore_color], dtype=np.uint8)
    index = np.where((labels >= 0) & (labels < len(class_colors)), labels, len(class_colors))
    return palette[index]


def overlay(image: np.ndarray, labels: np.ndarray, class_colors: Sequence[Sequence[int]],
            alpha: float = 0.5) -> np.ndarray:
    """Blends the colour mask over the image (grayscale images are shown in gray): uint8 RGB."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    mixed = (1 - alpha) * image + alpha * colorize(labels, class_colors).astype(np.float32)
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


def comparison_image(images, true_masks, predicted, class_colors, alpha: float = 0.5,
                     ignore_class: int | None = None) -> np.ndarray:
    """A grid with one row per example: image | true mask | predicted mask | overlay (uint8 RGB)."""
    rows = []
    for image, truth, pred in zip(images, true_masks, predicted):
        image = np.asarray(image, dtype=np.float32)
        rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
        truth = np.asarray(truth)
        if ignore_class is not None:
            truth = np.where(truth == ignore_class, -1, truth)
        tiles = [np.clip(rgb, 0, 255).astype(np.uint8), colorize(truth, class_colors),
                 colorize(pred, class_colors), overlay(image, pred, class_colors, alpha)]
        gap = np.full((rgb.shape[0], 4, 3), 255, np.uint8)
        rows.append(np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2], gap, tiles[3]], axis=1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-1], axis=0)


def save_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Saves a uint8 array as PNG through a temp file and a rename."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(array, dtype=np.uint8)).save(tmp, format="PNG")
    return path


def existing_files(images: Sequence[str | os.PathLike]) -> list[Path]:
    """`images` as paths, after checking that every one is a file (the error names those that are not)."""
    paths = [Path(p) for p in images]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"No such image file(s): {', '.join(missing)}")
    return paths


def _palette(model, dataset, num_classes):
    """Class colours: the model's own, else the named (or trained-on) data set's, else a fixed palette."""
    if isinstance(model, ZooModel) and model.class_colors:
        return model.class_colors
    if dataset is not None:
        if dataset not in kz_data.DATASETS:
            raise ValueError(f"Unknown data set {dataset!r}; available: {', '.join(kz_data.list_datasets())}")
        return kz_data.DATASETS[dataset].class_colors
    rng = np.random.default_rng(0)  # fixed, so the same class always gets the same colour
    return [tuple(int(c) for c in rng.integers(40, 256, 3)) for _ in range(max(num_classes or 2, 2))]


def predict_files(checkpoint: str | os.PathLike | keras.Model, images: Sequence[str | os.PathLike],
                  out_dir: str | os.PathLike, *, dataset: str | None = None,
                  class_colors: Sequence[Sequence[int]] | None = None,
                  image_size: tuple[int, int] | None = None, alpha: float = 0.5, tile=None, overlap: float = 0.25,
                  blend: str = "gaussian", tta: str | None = None) -> list[Path]:
    """Writes `<stem>_mask.png` (colour mask) and `<stem>_overlay.png` for each input image.

    A `ZooModel` labels each image at the image's own size, resizing to its trained input size
    inside (`model.segment`), and colours the labels with its own `class_colors`. For a plain Keras
    model the image is resized to `image_size` (when given) and the labels back (nearest).

    Args:
        checkpoint: A `.keras` file, a preset (name, directory or URI) or a model.
        images: Image files.
        out_dir: Output folder (created).
        dataset: Name whose `class_colors` to use when the model has none (default: the run's data set).
        class_colors: Explicit palette; wins over the model's and `dataset`.
        image_size: `(height, width)` to resize images to for a model that does not carry its input
            size (default: the run's training size); a ZooModel with one resizes inside.
        alpha: Mask opacity in the overlay.
        tile, overlap, blend, tta: a kerazoo model only: tiled inference at each image's own resolution
            and test-time augmentation (`ZooModel.segment`).

    Returns:
        The written paths.
    """
    paths = existing_files(images)
    model = load_model(checkpoint)
    if (tile is not None or tta is not None) and not _segments(model):
        raise ValueError("tiling and tta need a kerazoo segmentation model (ZooModel.segment); this is a plain "
                         "Keras model")
    num_classes = model_num_classes(model)
    if class_colors is None:
        has_own = isinstance(model, ZooModel) and model.class_colors
        class_colors = _palette(model, None if has_own else dataset or _trained_dataset(checkpoint), num_classes)
    if isinstance(model, ZooModel) and model.input_size:
        image_size = None  # the model resizes to its own input size inside
    else:
        image_size = image_size or _trained_size(model, checkpoint)
    channels = int(model.input.shape[-1])
    out_dir = Path(out_dir)
    written = []
    for path in paths:
        image = read_image(path, channels)
        height, width = image.shape[:2]
        model_input = image
        if image_size is not None and tuple(image_size) != (height, width):
            resized = Image.fromarray(image[..., 0] if channels == 1 else image).resize(
                (image_size[1], image_size[0]), Image.BILINEAR)
            model_input = np.asarray(resized)
            model_input = model_input[..., None] if channels == 1 else model_input
        if tile is not None or tta is not None:
            labels = model.segment(image, tile=tile, overlap=overlap, blend=blend, tta=tta)
        else:
            labels = predict_labels(model, model_input[None])[0]
        if labels.shape != (height, width):
            labels = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((width, height), Image.NEAREST))
        written.append(save_png(colorize(labels, class_colors), out_dir / f"{path.stem}_mask.png"))
        written.append(save_png(overlay(image, labels, class_colors, alpha), out_dir / f"{path.stem}_overlay.png"))
    return written
