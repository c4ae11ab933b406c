"""`TrainConfig`: one training recipe that `kerazoo train`, `run.json` and preset metadata share.

This module imports neither Keras nor TensorFlow at import time, so the command line can build its
parser from `OPTIMIZERS` and `SCHEDULES` cheaply; names of models and data sets are checked against
their registries when a config is made.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

from kerazoo.utils.sizes import height_width

__all__ = ["CLASS_WEIGHTING", "MIXED_PRECISION", "MONITORS", "OPTIMIZERS", "RESTORATION_FIELDS", "SCHEDULES",
           "TrainConfig"]

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("cosine", "poly", "constant")
CLASS_WEIGHTING = ("none", "median_frequency")
MIXED_PRECISION = ("mixed_float16", "mixed_bfloat16", "float32", "auto")
# The validation metric that picks the best checkpoint, per task, and whether higher is better.
MONITORS = {"segmentation": ("val_mean_iou", "max"), "denoise": ("val_psnr", "max"),
            "super_resolution": ("val_psnr", "max"), "depth": ("val_rmse", "min")}
# Fields that only restoration tasks take (`kerazoo.data.load`'s vocabulary); `scale` also reaches the model.
RESTORATION_FIELDS = ("noise_sigma", "scale", "patch_size", "patches_per_image", "channels")


def _tuple(value):
    """Lists (from JSON or the command line) become tuples, recursively, so configs compare equal."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuple(v) for v in value)
    return value


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


@dataclasses.dataclass
class TrainConfig:
    """Everything that decides a training run, validated when made.

    `to_dict()` gives plain JSON values; `TrainConfig.from_dict(d)` rebuilds an equal config, so
    `run.json`'s `"config"` and a preset's `"training"` recipe reproduce the run.

    Attributes:
        model: A name from `kerazoo.list_models()`, or None when a built `keras.Model` is passed to
            `train(..., model=...)`.
        encoder: Encoder name for encoder models (None: the model's default).
        encoder_weights: None (random init), "imagenet" or a weights file.
        model_options: Extra `create_model` options, e.g. `{"decoder_filters": (64, 32, 16, 16, 8)}`.
        dataset: A name from `kerazoo.data.list_datasets()`; its classes, channels and ignore_class
            configure the model, loss and metrics.
        data_dir: Root of the data sets (see `kerazoo.data.load`).
        image_size: `(height, width)` of training and validation images; None: the data set default.
        num_examples: Synthetic data sets only: training images (default 256).
        val_examples: Synthetic data sets only: validation images (default a quarter of
            `num_examples`, at least 16).
        augment: Augment the train split with the data set's default augmentation.
        epochs: Total epochs (also when resuming).
        batch_size: Global batch size (split over the devices).
        steps_per_epoch: Limit each epoch to this many batches (None: the whole split).
        optimizer: One of `OPTIMIZERS`; "sgd" uses momentum 0.9.
        learning_rate: Initial (peak) learning rate.
        schedule: One of `SCHEDULES`.
        weight_decay: Decoupled weight decay (adamw, sgd, rmsprop); 0 for none.
        mixed_precision: None (float32) or a Keras policy in `MIXED_PRECISION`; True means
            "mixed_float16"; "auto" picks by what the machine offers (`kerazoo.utils.cpu.auto_mixed_precision`:
            mixed_float16 on a GPU, mixed_bfloat16 on a CPU with native bfloat16, else float32) and says why.
            Outputs and losses stay float32.
        class_weights: None, "median_frequency" (computed on the train split, void ignored) or one
            weight per class.
        devices: None (one device), "mirrored"/"all", device names such as `("/cpu:0", "/cpu:1")`, or
            "multi-worker" (the processes in `TF_CONFIG`; see `kerazoo.training.distribute`).
        seed: Seed for weights, shuffling and augmentation.
        output_dir: Run directory.
        task: "segmentation", "denoise", "super_resolution" or "depth"; None: the data set's own task
            (`DATASETS[dataset].task`; "segmentation" for the segmentation sets, as before tasks existed).
            It must be the data set's task. It picks the default loss, metrics and the monitored metric
            (`MONITORS`: val PSNR for restoration, val RMSE for depth).
        noise_sigma: Denoising: sigma on the 0..255 scale, or `(low, high)` (blind); None: the data set's.
        scale: Super-resolution: 2, 3 or 4, for the data and the model; None: the data set's (4).
        patch_size: Restoration: training patch side (the LR patch for super-resolution).
        patches_per_image: Restoration: patches per image per epoch.
        channels: Restoration: 1 (grey) or 3 (RGB) for data and model; None: the data set's.
    """

    model: str | None = "unet"
    encoder: str | None = None
    encoder_weights: str | None = None
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    dataset: str = "shapes"
    data_dir: str | None = None
    image_size: tuple[int, int] | None = None
    num_examples: int | None = None
    val_examples: int | None = None
    augment: bool = True
    epochs: int = 10
    batch_size: int = 8
    steps_per_epoch: int | None = None
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "cosine"
    weight_decay: float = 0.0
    mixed_precision: str | None = None
    class_weights: str | tuple[float, ...] | None = None
    devices: str | tuple[str, ...] | None = None
    seed: int = 0
    output_dir: str = "runs/train"
    task: str | None = None
    noise_sigma: float | tuple[float, float] | None = None
    scale: int | None = None
    patch_size: int | None = None
    patches_per_image: int | None = None
    channels: int | None = None

    def __post_init__(self):
        self._normalise()
        self._check_names()
        self._check_numbers()
        self._check_dataset_options()
        self._check_task()

    def _normalise(self):
        if self.data_dir is not None:
            self.data_dir = os.fspath(self.data_dir)
        self.output_dir = os.fspath(self.output_dir)
        self.model_options = {str(k): _tuple(v) for k, v in dict(self.model_options or {}).items()}
        if isinstance(self.noise_sigma, (list, tuple)):
            self.noise_sigma = tuple(self.noise_sigma)
        if self.image_size is not None:
            self.image_size = height_width(_tuple(self.image_size), "image_size")
        if isinstance(self.mixed_precision, bool):
            self.mixed_precision = "mixed_float16" if self.mixed_precision else None
        if self.class_weights == "none":
            self.class_weights = None
        elif isinstance(self.class_weights, (list, tuple)):
            try:
                self.class_weights = tuple(float(w) for w in self.class_weights)
            except (TypeError, ValueError):
                raise ValueError(f"class_weights must be numbers, got {self.class_weights!r}") from None
        if isinstance(self.devices, (list, tuple)):
            self.devices = tuple(self.devices)
            if self.devices == ("default",):  # what run.json files before TrainConfig recorded for one device
                self.devices = None
        elif self.devices == "":
            self.devices = None

    def _check_names(self):
        from kerazoo.data.catalog import DATASETS
        from kerazoo.models import MODELS

        if self.model is not None:
            MODELS.get(self.model)
        elif self.encoder or self.encoder_weights or self.model_options:
            raise ValueError("encoder, encoder_weights and model_options apply to a model name, "
                             "not to a keras.Model passed to train()")
        DATASETS.get(self.dataset)  # an unknown name raises, naming the valid ones
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Unknown learning-rate schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if self.mixed_precision is not None and self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be a bool or one of {', '.join(MIXED_PRECISION)}; "
                             f"got {self.mixed_precision!r}")
        if isinstance(self.class_weights, str) and self.class_weights != "median_frequency":
            raise ValueError(f"Unknown class_weights {self.class_weights!r}; valid: {', '.join(CLASS_WEIGHTING)}, "
                             "or a list of one weight per class")
        num_classes = DATASETS[self.dataset].num_classes
        if isinstance(self.class_weights, tuple) and len(self.class_weights) != num_classes:
            raise ValueError(f"class_weights has {len(self.class_weights)} entries; {self.dataset} has "
                             f"{num_classes} classes")

    def _check_numbers(self):
        for name in ("epochs", "batch_size", "steps_per_epoch", "num_examples", "val_examples", "patch_size",
                     "patches_per_image"):
            value = getattr(self, name)
            if value is None and name not in ("epochs", "batch_size"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.learning_rate, (int, float)) or not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.weight_decay and self.optimizer == "adam":
            raise ValueError("weight_decay needs optimizer 'adamw', 'sgd' or 'rmsprop', not 'adam'")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an int, got {self.seed!r}")

    def _check_dataset_options(self):
        from kerazoo.data.catalog import DATASETS

        if not DATASETS[self.dataset].synthetic and (self.num_examples or self.val_examples):
            synthetic = sorted(name for name, info in DATASETS.items() if info.synthetic)
            raise ValueError(f"num_examples and val_examples apply to synthetic data sets ({', '.join(synthetic)}) "
                             f"only, not {self.dataset!r}")

    def _check_task(self):
        from kerazoo.data.catalog import DATASETS, RESTORATION_TASKS, TASKS

        if self.task is not None and self.task not in TASKS:
            raise ValueError(f"Unknown task {self.task!r}; valid tasks: {', '.join(TASKS)}")
        info = DATASETS[self.dataset]
        if self.task is not None and self.task != info.task:
            serving = sorted(name for name, entry in DATASETS.items() if entry.task == self.task)
            raise ValueError(f"task {self.task!r} does not match data set {self.dataset!r} (task {info.task!r}); "
                             f"data sets for {self.task!r}: {', '.join(serving)}")
        task = self.task_name
        given = [name for name in RESTORATION_FIELDS if getattr(self, name) is not None]
        allowed = {"denoise": ("noise_sigma", "patch_size", "patches_per_image", "channels"),
                   "super_resolution": ("scale", "patch_size", "patches_per_image", "channels")}.get(task, ())
        wrong = [name for name in given if name not in allowed]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} do(es) not apply to task {task!r} (data set {self.dataset!r}); "
                             f"it takes {', '.join(allowed) or 'none of ' + ', '.join(RESTORATION_FIELDS)}")
        if task != "segmentation" and self.class_weights is not None:
            raise ValueError(f"class_weights apply to segmentation, not to task {task!r}")
        if task in RESTORATION_TASKS and self.image_size is not None:
            raise ValueError(f"task {task!r} trains on patches: pass patch_size, not image_size")
        if "scale" in self.model_options and self.scale is not None and self.model_options["scale"] != self.scale:
            raise ValueError(f"scale={self.scale!r} and model option scale={self.model_options['scale']!r} differ; "
                             "pass one")
        if self.channels is not None and self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels!r}")
        if self.noise_sigma is not None:
            from kerazoo.data.degradations import check_noise_sigma

            check_noise_sigma(self.noise_sigma)
        if self.scale is not None:
            from kerazoo.data.degradations import check_scale

            check_scale(self.scale)

    @property
    def task_name(self) -> str:
        """The task this config trains: `task`, or the data set's own."""
        from kerazoo.data.catalog import DATASETS

        return self.task or DATASETS[self.dataset].task

    @property
    def monitor(self) -> tuple[str, str]:
        """(validation metric of the best checkpoint, "max" or "min") for this config's task."""
        return MONITORS[self.task_name]

    def data_options(self) -> dict[str, Any]:
        """The restoration options given (`RESTORATION_FIELDS` that are not None), for `kerazoo.data.load`;
        a super-resolver's `scale` given as a model option reaches the data too."""
        options = {name: getattr(self, name) for name in RESTORATION_FIELDS if getattr(self, name) is not None}
        if self.task_name == "super_resolution" and "scale" in self.model_options:
            options.setdefault("scale", self.model_options["scale"])
        return options

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON values (tuples become lists)."""
        return {field.name: _jsonable(getattr(self, field.name)) for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], ignore_unknown: bool = False) -> "TrainConfig":
        """Rebuilds a config from `to_dict()` output, e.g. `run.json`'s `"config"`.

        Args:
            data: Field name -> value; missing fields take their defaults.
            ignore_unknown: Skip keys that are not fields (a preset's `"training"` recipe also holds
                `command`, `wall_seconds`, ...); otherwise they are an error naming the valid fields.

        Returns:
            A validated `TrainConfig`.
        """
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown and not ignore_unknown:
            raise ValueError(f"Unknown TrainConfig field(s) {', '.join(unknown)}; valid: {', '.join(names)}")
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> "TrainConfig":
        """The recipe a preset was trained with, from its `metadata.json`.

        The model comes from `"model"` (`create_model`'s arguments; the data set decides `num_classes`
        and `in_channels`), the data set from `"dataset"`, the size from `"input_size"` and the rest
        from the `"training"` recipe (its other keys, such as `command`, are ignored).
        """
        if "model" not in metadata or "dataset" not in metadata:
            raise ValueError(f"preset metadata needs \"model\" and \"dataset\" to give a TrainConfig; it has "
                             f"{', '.join(sorted(metadata))}")
        # The data set decides the classes, channels, class names and colours; the size comes next.
        derived = ("name", "num_classes", "in_channels", "class_names", "class_colors", "input_size")
        options = {k: v for k, v in metadata["model"].items() if k not in derived}
        fields = {"model": metadata["model"]["name"], "encoder": options.pop("encoder", None),
                  "encoder_weights": options.pop("encoder_weights", None), "model_options": options,
                  "dataset": metadata["dataset"], "image_size": metadata.get("input_size")}
        task = options.pop("task", "segmentation")
        if task != "segmentation":  # its task and scale are config fields: they shape the data too
            fields["task"] = task
            from kerazoo.data.catalog import RESTORATION_TASKS

            if task in RESTORATION_TASKS:
                fields["image_size"] = None  # restoration trains on patches and runs at any size
            if "scale" in options:
                fields["scale"] = options.pop("scale")
        return cls.from_dict({**dict(metadata.get("training", {})), **fields}, ignore_unknown=True)

    def replace(self, **changes) -> "TrainConfig":
        """A validated copy with `changes` applied."""
        return dataclasses.replace(self, **changes)

    def create_model_arguments(self, num_classes: int, channels: int) -> dict[str, Any] | None:
        """`create_model`'s arguments for this recipe on a data set of `num_classes` and `channels`.

        Other tasks than segmentation take `task` (and `scale`) and leave `num_classes` to the task's
        default (the input channels; 1 for depth); `channels` gives way to the config's own.
        """
        if self.model is None:
            return None
        task = self.task_name
        arguments = dict(name=self.model, encoder=self.encoder, num_classes=num_classes or None,
                         encoder_weights=self.encoder_weights, in_channels=self.channels or channels)
        if task != "segmentation":
            arguments["task"] = task
        if self.scale is not None:
            arguments["scale"] = self.scale
        return {**arguments, **self.model_options}

