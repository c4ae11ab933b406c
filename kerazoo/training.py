"""Training on a named data set: `kerazoo.training.train(...)`, the engine behind `kerazoo train`.

Everything goes through `model.fit`: the best checkpoint, resumption after a crash, logs and several
devices are Keras callbacks and a `tf.distribute` strategy, not a loop of our own. An output
directory holds:

    best.keras       the model with the best validation mean IoU so far (written to a temp file, then renamed)
    best.json        that checkpoint's epoch and metrics, so a resumed run keeps comparing against it
    backup/          `keras.callbacks.BackupAndRestore` state; a killed run re-run with the same
                     arguments resumes at the epoch it stopped in (deleted when training finishes)
    log.csv          one row per epoch (appended across resumptions)
    tensorboard/     TensorBoard scalars
    run.json         the arguments, the `create_model` call, the data set facts and the outcome
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerazoo  # noqa: E402
from kerazoo import data as kz_data  # noqa: E402
from kerazoo.losses import SegmentationLoss  # noqa: E402
from kerazoo.metrics import MeanIoU, PixelAccuracy  # noqa: E402

__all__ = [
    "OPTIMIZERS", "SCHEDULES", "BestCheckpoint", "EpochTimer", "TrainResult", "atomic_write_text",
    "make_optimizer", "make_strategy", "train",
]

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("cosine", "poly", "constant")
CLASS_WEIGHTING = ("none", "median_frequency")
MONITOR = "val_mean_iou"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` through a temp file and a rename, so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_save_model(model: keras.Model, path: Path) -> None:
    # Keras wants the ".keras" suffix on the file it writes, so the temp name keeps it.
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {value!r}")


def _to_json(value) -> str:
    return json.dumps(value, indent=2, default=_json_default) + "\n"


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the whole model (`.keras`) whenever the monitored validation metric improves.

    Unlike `keras.callbacks.ModelCheckpoint` it writes to a temp file and renames it, and it keeps
    the best value in a JSON file beside the checkpoint, so a run resumed by `BackupAndRestore`
    does not overwrite a better checkpoint with the first epoch after the restart.

    Args:
        path: Checkpoint file, ending in ".keras".
        monitor: Key of the epoch logs to watch, e.g. "val_mean_iou".
        mode: "max" or "min".
        verbose: Print a line when the checkpoint is replaced.
    """

    def __init__(self, path, monitor=MONITOR, mode="max", verbose=True):
        super().__init__()
        self.path = Path(path)
        if self.path.suffix != ".keras":
            raise ValueError(f"checkpoint path must end in '.keras', got {str(self.path)!r}")
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.monitor, self.mode, self.verbose = monitor, mode, verbose
        self.state_path = self.path.with_suffix(".json")
        self.best = None
        self.best_epoch = None

    def on_train_begin(self, logs=None):
        if self.state_path.exists() and self.path.exists():
            state = json.loads(self.state_path.read_text())
            self.best, self.best_epoch = state.get(self.monitor), state.get("epoch")

    def _improved(self, value):
        if self.best is None or math.isnan(self.best):
            return not math.isnan(value)
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(f"BestCheckpoint monitors {self.monitor!r}, which is not in the epoch logs "
                           f"{sorted(logs)}; does fit() get validation_data?")
        value = float(logs[self.monitor])
        if not self._improved(value):
            return
        previous = self.best
        self.best, self.best_epoch = value, epoch
        _atomic_save_model(self.model, self.path)
        state = {"epoch": epoch, **{k: float(v) for k, v in logs.items() if np.ndim(v) == 0}}
        atomic_write_text(self.state_path, _to_json(state))
        if self.verbose:
            before = "none" if previous is None else f"{previous:.4f}"
            print(f"  best {self.monitor} {before} -> {value:.4f}: saved {self.path}", flush=True)


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` (wall time) and `lr` to the epoch logs, so CSV and TensorBoard get them.

    Place it before the loggers in the callback list: they read the same logs dict afterwards.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        logs["epoch_seconds"] = time.perf_counter() - self._start
        optimizer = self.model.optimizer
        logs["lr"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def make_optimizer(name: str, learning_rate: float, schedule: str, total_steps: int,
                   weight_decay: float = 0.0) -> keras.optimizers.Optimizer:
    """Builds an optimizer with a learning-rate schedule.

    Args:
        name: One of `OPTIMIZERS`; "sgd" uses momentum 0.9.
        learning_rate: Initial (peak) learning rate.
        schedule: "cosine" (to 0 over `total_steps`), "poly" (power 0.9 to 0, as in DeepLab) or "constant".
        total_steps: Optimizer steps of the whole run.
        weight_decay: Decoupled weight decay (adamw, sgd); 0 for none.

    Returns:
        A Keras optimizer.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
    if schedule not in SCHEDULES:
        raise ValueError(f"Unknown learning-rate schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    total_steps = max(int(total_steps), 1)
    if schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total_steps)
    elif schedule == "poly":
        lr = keras.optimizers.schedules.PolynomialDecay(learning_rate, decay_steps=total_steps,
                                                        end_learning_rate=0.0, power=0.9)
    else:
        lr = learning_rate
    decay = {"weight_decay": weight_decay} if weight_decay else {}
    if name == "adam":
        if weight_decay:
            raise ValueError("weight_decay needs optimizer 'adamw' or 'sgd', not 'adam'")
        return keras.optimizers.Adam(lr)
    if name == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=weight_decay or 1e-4)
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, **decay)
    return keras.optimizers.RMSprop(lr, **decay)


def make_strategy(devices: str | Sequence[str] | None):
    """Returns a `tf.distribute` strategy for `devices`.

    Args:
        devices: None for the default (one device); "mirrored" or "all" for `MirroredStrategy` over
            every GPU (or every logical CPU when there is no GPU); or a list of device names such as
            `["/cpu:0", "/cpu:1"]` (a comma-separated string works too).

    Returns:
        A `tf.distribute.Strategy`.
    """
    if devices is None or devices == "":
        return tf.distribute.get_strategy()
    if isinstance(devices, str):
        if devices in ("mirrored", "all"):
            found = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
            return tf.distribute.MirroredStrategy([d.name for d in found])
        devices = [d.strip() for d in devices.split(",") if d.strip()]
    available = {d.name.lower() for d in tf.config.list_logical_devices()}
    short = {name.split("device:")[-1].lower() for name in available}
    for device in devices:
        key = device.lower().lstrip("/").replace("device:", "")
        if key not in short:
            raise ValueError(f"Unknown device {device!r}; available: {', '.join(sorted(available))}")
    return tf.distribute.MirroredStrategy(list(devices))


def _resolve_class_weights(class_weights, dataset, info, data_dir, image_size, num_examples, seed):
    if class_weights is None or (isinstance(class_weights, str) and class_weights == "none"):
        return None
    if isinstance(class_weights, str):
        if class_weights != "median_frequency":
            raise ValueError(f"Unknown class_weights {class_weights!r}; valid: {', '.join(CLASS_WEIGHTING)}, "
                             "or a list of one weight per class")
        masks = kz_data.load(dataset, "train", data_dir=data_dir, batch_size=16, image_size=image_size,
                             augment=False, shuffle=False, seed=seed, num_examples=num_examples)
        return [float(w) for w in kz_data.median_frequency_weights(masks, info.num_classes, info.ignore_class)]
    weights = [float(w) for w in class_weights]
    if len(weights) != info.num_classes:
        raise ValueError(f"class_weights has {len(weights)} entries; {dataset} has {info.num_classes} classes")
    return weights


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        model: The trained model (last epoch's weights).
        history: `History.history` of this call (only the epochs run in it after a resumption).
        output_dir: The run directory.
        best_path: `best.keras`.
        best: Best validation metrics (`best.json`), including its 0-based `epoch`.
        initial_epoch: Epoch this call started at (> 0 when it resumed a killed run).
        wall_seconds: Wall time of this call.
    """

    model: keras.Model
    history: dict
    output_dir: Path
    best_path: Path
    best: dict
    initial_epoch: int
    wall_seconds: float


def _resume_epoch(backup_dir: Path) -> int:
    # BackupAndRestore's own metadata file; read only to tell the user that it is resuming.
    meta = backup_dir / "training_metadata.json"
    try:
        return int(json.loads(meta.read_text()).get("epoch", 0))
    except (OSError, ValueError):
        return 0


def _device_names(strategy) -> list[str]:
    if strategy.num_replicas_in_sync > 1 or isinstance(strategy, tf.distribute.MirroredStrategy):
        return list(strategy.extended.worker_devices)
    return ["default"]


def _val_split(dataset: str) -> str:
    return "test" if dataset == "oxford_iiit_pet" else "val"


def train(
    model: str | keras.Model = "unet",
    *,
    encoder: str | None = None,
    dataset: str = "shapes",
    data_dir: str | os.PathLike | None = None,
    image_size: tuple[int, int] | None = None,
    epochs: int = 10,
    batch_size: int = 8,
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    schedule: str = "cosine",
    weight_decay: float = 0.0,
    mixed_precision: bool | str = False,
    output_dir: str | os.PathLike = "runs/train",
    class_weights: str | Sequence[float] | None = None,
    encoder_weights: str | None = None,
    model_options: dict[str, Any] | None = None,
    augment: bool = True,
    num_examples: int | None = None,
    val_examples: int | None = None,
    steps_per_epoch: int | None = None,
    devices: str | Sequence[str] | None = None,
    seed: int = 0,
    tensorboard: bool | str = "auto",
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = "auto",
) -> TrainResult:
    """Trains a segmentation model on a named data set and keeps the best checkpoint.

    Re-running with the same `output_dir` after the process was killed resumes at the epoch it
    stopped in (model, optimizer and schedule state from `BackupAndRestore`). A finished run
    re-run with the same directory trains again from scratch, but keeps `best.keras` unless it is
    beaten.

    Args:
        model: A name from `kerazoo.list_models()`, or a compiled-or-not `keras.Model` built for the
            data set (then `encoder`, `encoder_weights`, `model_options` must be left out; with
            `devices` it must have been built inside the strategy's scope).
        encoder: Encoder name for encoder models (None: the model's default).
        dataset: A name from `kerazoo.data.list_datasets()`; its classes, channels and
            ignore_class configure the model, loss and metrics.
        data_dir: Root of the data sets (see `kerazoo.data.load`).
        image_size: `(height, width)` of training and validation images; None: the data set default.
        epochs: Total epochs (also when resuming).
        batch_size: Global batch size (split over the devices).
        optimizer: One of `OPTIMIZERS`.
        learning_rate: Initial learning rate.
        schedule: One of `SCHEDULES`.
        weight_decay: Decoupled weight decay for "adamw"/"sgd"/"rmsprop".
        mixed_precision: False, True ("mixed_float16") or a Keras dtype policy name such as
            "mixed_bfloat16". Outputs and losses stay float32.
        output_dir: Run directory (created).
        class_weights: None, "median_frequency" (computed on the train split, void ignored) or
            one weight per class.
        encoder_weights: None (random init) or "imagenet" or a weights file.
        model_options: Extra `create_model` options, e.g. `{"decoder_filters": (64, 32, 16, 16, 8)}`.
        augment: Augment the train split with the data set's default augmentation.
        num_examples: "shapes" only: training images (validation gets a quarter, at least 16).
        val_examples: "shapes" only: validation images (overrides the quarter).
        steps_per_epoch: Limit each epoch to this many batches (None: the whole split).
        devices: See `make_strategy`; e.g. `["/cpu:0", "/cpu:1"]` or "mirrored".
        seed: Seed for weights, shuffling and augmentation.
        tensorboard: Write TensorBoard logs; "auto" does so when the `tensorboard` package is installed
            (`tf.summary` needs it).
        callbacks: Extra Keras callbacks, run after the built-in ones.
        verbose: Keras verbosity; "auto" shows a progress bar on a terminal and one line per epoch otherwise.

    Returns:
        A `TrainResult`.

    Raises:
        ValueError: an unknown name or a bad value, naming the valid ones.
    """
    start = time.perf_counter()
    if dataset not in kz_data.DATASETS:
        raise ValueError(f"Unknown data set {dataset!r}; available: {', '.join(kz_data.list_datasets())}")
    info = kz_data.DATASETS[dataset]
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(mixed_precision, bool):
        policy = "mixed_float16" if mixed_precision else None
    else:
        policy = mixed_precision
    if policy is not None and policy not in ("mixed_float16", "mixed_bfloat16", "float32"):
        raise ValueError(f"mixed_precision must be a bool, 'mixed_float16', 'mixed_bfloat16' or 'float32'; "
                         f"got {mixed_precision!r}")
    model_options = dict(model_options or {})
    if not isinstance(model, keras.Model):
        from kerazoo.models import MODELS

        MODELS.get(model)  # fail on an unknown name before any data is read or a directory made
    if isinstance(model, keras.Model) and (encoder or encoder_weights or model_options):
        raise ValueError("encoder, encoder_weights and model_options apply to a model name, not a keras.Model")
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    image_size = tuple(image_size) if image_size is not None else info.image_size
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    backup_dir = output_dir / "backup"

    keras.utils.set_random_seed(seed)
    strategy = make_strategy(devices)
    replicas = strategy.num_replicas_in_sync

    # --- data: the train split shuffled and augmented, the validation split as it is.
    shapes_counts = {}
    if dataset == "shapes":
        train_count = num_examples or 256
        shapes_counts = {"num_examples": train_count}
        val_shapes = {"num_examples": val_examples or max(16, train_count // 4)}
    elif num_examples is not None or val_examples is not None:
        raise ValueError("num_examples and val_examples apply to the synthetic 'shapes' data set only")
    else:
        val_shapes = {}
    train_data = kz_data.load(dataset, "train", data_dir=data_dir, batch_size=batch_size, image_size=image_size,
                              augment=augment, shuffle=True, seed=seed, **shapes_counts)
    val_data = kz_data.load(dataset, _val_split(dataset), data_dir=data_dir, batch_size=batch_size,
                            image_size=image_size, augment=False, shuffle=False, seed=seed, **val_shapes)
    if replicas > 1:
        # Batches are split across replicas, not files across workers: say so, and keep TF quiet.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        train_data, val_data = train_data.with_options(options), val_data.with_options(options)
    batches = int(train_data.cardinality())
    if batches < 1:
        raise ValueError(f"The {dataset} train split yields no batches (cardinality {batches})")
    steps = min(batches, steps_per_epoch) if steps_per_epoch else batches
    if steps < batches:
        train_data = train_data.repeat()  # so that short epochs keep drawing fresh batches
    weights = _resolve_class_weights(class_weights, dataset, info, data_dir, image_size,
                                     shapes_counts.get("num_examples"), seed)

    create_args = None
    previous_policy = keras.mixed_precision.global_policy().name
    try:
        if policy is not None:
            keras.mixed_precision.set_global_policy(policy)
        with strategy.scope():
            if isinstance(model, keras.Model):
                net = model
            else:
                create_args = dict(name=model, encoder=encoder, num_classes=info.num_classes,
                                   encoder_weights=encoder_weights, in_channels=info.channels, **model_options)
                net = kerazoo.create_model(**create_args)
            net.compile(
                optimizer=make_optimizer(optimizer, learning_rate, schedule, epochs * steps, weight_decay),
                loss=SegmentationLoss(from_logits=True, ignore_class=info.ignore_class, class_weights=weights),
                metrics=[MeanIoU(info.num_classes, ignore_class=info.ignore_class),
                         PixelAccuracy(info.num_classes, ignore_class=info.ignore_class)],
            )
            if not net.built:
                net.build((None, *image_size, info.channels))

        run = {
            "dataset": dataset, "class_names": list(info.class_names), "ignore_class": info.ignore_class,
            "image_size": list(image_size), "create_model": create_args,
            "model_name": net.name, "parameters": int(net.count_params()),
            "train": dict(epochs=epochs, batch_size=batch_size, optimizer=optimizer, learning_rate=learning_rate,
                          schedule=schedule, weight_decay=weight_decay, mixed_precision=policy,
                          class_weights=weights, augment=augment, steps_per_epoch=steps, seed=seed,
                          devices=_device_names(strategy), data_dir=data_dir),
        }
        atomic_write_text(output_dir / "run.json", _to_json(run))

        initial_epoch = _resume_epoch(backup_dir)
        if verbose:
            where = f"{replicas} replicas ({', '.join(_device_names(strategy))})" if replicas > 1 else "1 device"
            resumed = f", resuming at epoch {initial_epoch + 1}" if initial_epoch else ""
            print(f"kerazoo train: {net.name} ({net.count_params():,} parameters) on {dataset} "
                  f"{image_size[0]}x{image_size[1]}, {epochs} epochs x {steps} steps, batch {batch_size}, "
                  f"{where}{resumed} -> {output_dir}", flush=True)

        extra_callbacks = callbacks
        callbacks = [
            keras.callbacks.BackupAndRestore(str(backup_dir), save_freq="epoch", delete_checkpoint=True,
                                             double_checkpoint=True),
            EpochTimer(),
            BestCheckpoint(output_dir / "best.keras", monitor=MONITOR, mode="max", verbose=bool(verbose)),
            keras.callbacks.CSVLogger(str(output_dir / "log.csv"), append=True),
        ]
        if tensorboard == "auto":
            tensorboard = importlib.util.find_spec("tensorboard") is not None
        if tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(str(output_dir / "tensorboard"), write_graph=False,
                                                         profile_batch=0))
        history = net.fit(train_data, validation_data=val_data, epochs=epochs, steps_per_epoch=steps,
                          callbacks=callbacks + list(extra_callbacks), verbose=verbose, shuffle=False)  # shuffled by tf.data
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    best_path = output_dir / "best.keras"
    best = json.loads((output_dir / "best.json").read_text()) if (output_dir / "best.json").exists() else {}
    wall = time.perf_counter() - start
    run["result"] = {"best": best, "initial_epoch": initial_epoch, "wall_seconds": wall}
    atomic_write_text(output_dir / "run.json", _to_json(run))
    if verbose and best:
        print(f"done in {wall:.0f} s; best {MONITOR} {best.get(MONITOR, float('nan')):.4f} "
              f"at epoch {best.get('epoch', -1) + 1}: {best_path}", flush=True)
    return TrainResult(net, history.history, output_dir, best_path, best, initial_epoch, wall)
