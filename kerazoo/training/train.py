"""Training on a named data set: `kerazoo.training.train.train(TrainConfig(...))`, the engine behind `kerazoo train`.

Everything goes through `model.fit`: the best checkpoint, resumption after a crash, logs and several
devices are Keras callbacks and a `tf.distribute` strategy, not a loop of our own. An output
directory holds:

    best.keras       the model with the best validation metric so far (mean IoU; PSNR for restoration,
                     RMSE for depth: `TrainConfig.monitor`), written to a temp file, then renamed
    best.json        that checkpoint's epoch and metrics, so a resumed run keeps comparing against it
    backup/          `keras.callbacks.BackupAndRestore` state; a killed run re-run with the same
                     arguments resumes at the epoch it stopped in (deleted when training finishes);
                     non-chief workers of a multi-worker run keep theirs in backup-worker-<index>/ and
                     write nothing else here (see `kerazoo.training.distribute`)
    log.csv          one row per epoch (appended across resumptions)
    tensorboard/     TensorBoard scalars
    run.json         the `TrainConfig` ("config"), the `create_model` call, the data set facts, what the
                     config resolved to (class weights, steps, devices) and the outcome
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from kerazoo import data as kz_data
from kerazoo.training import distribute
from kerazoo import optimizers
from kerazoo.utils.cpu import auto_mixed_precision, bfloat16_support
from kerazoo.training.distribute import make_strategy
from kerazoo.utils.files import atomic_path, atomic_write_text  # atomic_write_text: still imported from here by others
from kerazoo.data.task_loading import restoration_options
from kerazoo.losses import SegmentationLoss
from kerazoo.metrics import MeanIoU, PixelAccuracy
from kerazoo.models import ZooModel, create_model
from kerazoo.training.config import OPTIMIZERS, SCHEDULES, TrainConfig

__all__ = [
    "OPTIMIZERS", "SCHEDULES", "BestCheckpoint", "EpochTimer", "TrainConfig", "TrainResult", "make_optimizer",
    "make_strategy", "train",
]

MONITOR = "val_mean_iou"  # segmentation's; `config.monitor` gives each task's


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
        with atomic_path(self.path) as tmp:  # keeps the ".keras" suffix that model.save wants
            self.model.save(tmp)
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
        A Keras optimizer ("adam" and "adamw": kerazoo.optimizers', with a fused update on TensorFlow).
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
        return optimizers.Adam(lr)
    if name == "adamw":
        return optimizers.AdamW(lr, weight_decay=weight_decay or 1e-4)
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, **decay)
    return keras.optimizers.RMSprop(lr, **decay)


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
        config: The `TrainConfig` it ran.
    """

    model: keras.Model
    history: dict
    output_dir: Path
    best_path: Path
    best: dict
    initial_epoch: int
    wall_seconds: float
    config: TrainConfig


def _device_names(strategy) -> list[str]:
    if strategy.num_replicas_in_sync > 1 or isinstance(strategy, tf.distribute.MirroredStrategy):
        return list(strategy.extended.worker_devices)
    return ["default"]


def _resolve_class_weights(config: TrainConfig, info, image_size, num_examples):
    if not isinstance(config.class_weights, str):
        return None if config.class_weights is None else list(config.class_weights)
    # "median_frequency" (TrainConfig checked the name): computed on the unaugmented train split.
    masks = kz_data.load(config.dataset, "train", data_dir=config.data_dir, batch_size=16, image_size=image_size,
                         augment=False, shuffle=False, seed=config.seed, num_examples=num_examples)
    return [float(w) for w in kz_data.median_frequency_weights(masks, info.num_classes, info.ignore_class)]


def _restoration_splits(config: TrainConfig, info):
    """Restoration: patches of the train split, and whole images of the set that measures it
    (`info.eval_dataset`: train400 -> set12, t91 -> set5) with the same degradation, one per batch."""
    options = config.data_options()
    common = dict(data_dir=config.data_dir, seed=config.seed, channels=options.get("channels"),
                  noise_sigma=options.get("noise_sigma"), scale=options.get("scale"))
    train_data = kz_data.load(config.dataset, "train", batch_size=config.batch_size, augment=config.augment,
                              shuffle=True, patch_size=options.get("patch_size"),
                              patches_per_image=options.get("patches_per_image"), **common)
    val_name = info.eval_dataset or config.dataset
    val_data = kz_data.load(val_name, kz_data.DATASETS[val_name].val_split, batch_size=1, augment=False,
                            shuffle=False, **common)
    return train_data, val_data


def _load_splits(config: TrainConfig, info, image_size, replicas):
    """The train split (shuffled, augmented) and `info.val_split` (as it is), and the steps per epoch."""
    train_counts, val_counts = {}, {}
    if info.synthetic:
        train_counts = {"num_examples": config.num_examples or 256}
        val_counts = {"num_examples": config.val_examples or max(16, train_counts["num_examples"] // 4)}
    common = dict(data_dir=config.data_dir, batch_size=config.batch_size, image_size=image_size, seed=config.seed)
    if config.task_name in kz_data.RESTORATION_TASKS:
        train_data, val_data = _restoration_splits(config, info)
    else:
        train_data = kz_data.load(config.dataset, "train", augment=config.augment, shuffle=True, **common,
                                  **train_counts)
        val_data = kz_data.load(config.dataset, info.val_split, augment=False, shuffle=False, **common,
                                **val_counts)
    if replicas > 1:
        options = distribute.shard_options()  # batches split across replicas, not files across workers
        train_data, val_data = train_data.with_options(options), val_data.with_options(options)
    batches = int(train_data.cardinality())
    if batches < 1:
        raise ValueError(f"The {config.dataset} train split yields no batches (cardinality {batches})")
    steps = min(batches, config.steps_per_epoch) if config.steps_per_epoch else batches
    if steps < batches:
        train_data = train_data.repeat()  # so that short epochs keep drawing fresh batches
    return train_data, val_data, steps, train_counts.get("num_examples")


def model_for_dataset(config: TrainConfig, info, image_size) -> tuple[keras.Model, dict]:
    """Builds `config.model` for a data set; the one place where a trained model learns its task.

    The data set gives the classes, channels, class names and colours; the model also keeps the input
    size it is trained at, so that `model.segment` resizes to it and `kerazoo predict` needs no run.json.

    Returns:
        The model and `create_model`'s arguments (written to `run.json`).
    """
    arguments = config.create_model_arguments(info.num_classes, info.channels)
    if config.task_name == "segmentation":
        arguments.update(class_names=list(info.class_names), class_colors=[list(c) for c in info.class_colors])
    # Restoration models run at each image's own size (image_size is None for them).
    arguments.update(input_size=list(image_size) if image_size else None)
    return create_model(**arguments), arguments


def _task_spec(net, config: TrainConfig, channels):
    """The `kerazoo.tasks.Task` whose loss and metrics train `net`: a ZooModel's own, else one for the config."""
    if isinstance(net, ZooModel) and net.task == config.task_name:
        return net.task_spec
    from kerazoo.tasks import task_class

    scale = {"scale": config.data_options().get("scale", 4)} if config.task_name == "super_resolution" else {}
    outputs = 1 if config.task_name == "depth" else channels
    return task_class(config.task_name)(num_classes=outputs, in_channels=channels, **scale)


def _compile(net, config: TrainConfig, info, total_steps, class_weights):
    optimizer = make_optimizer(config.optimizer, config.learning_rate, config.schedule, total_steps,
                               config.weight_decay)
    if config.task_name != "segmentation":
        spec = _task_spec(net, config, config.channels or info.channels)
        net.compile(optimizer=optimizer, loss=spec.default_loss(), metrics=spec.default_metrics())
        return
    net.compile(
        optimizer=optimizer,
        loss=SegmentationLoss(from_logits=True, ignore_class=info.ignore_class, class_weights=class_weights),
        metrics=[MeanIoU(info.num_classes, ignore_class=info.ignore_class),
                 PixelAccuracy(info.num_classes, ignore_class=info.ignore_class)],
    )


def _callbacks(output_dir: Path, backup_dir: Path, tensorboard, verbose, extra, monitor=(MONITOR, "max")):
    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup_dir), save_freq="epoch", delete_checkpoint=True,
                                         double_checkpoint=True),
        EpochTimer(),
        BestCheckpoint(output_dir / "best.keras", monitor=monitor[0], mode=monitor[1], verbose=bool(verbose)),
        keras.callbacks.CSVLogger(str(output_dir / "log.csv"), append=True),
    ]
    if tensorboard == "auto":
        tensorboard = importlib.util.find_spec("tensorboard") is not None
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(output_dir / "tensorboard"), write_graph=False,
                                                     profile_batch=0))
    return callbacks + list(extra)


def _as_config(config, model, options) -> TrainConfig:
    if isinstance(config, keras.Model):
        config, model = None, config
    if isinstance(config, str):
        options = {"model": config, **options}
        config = None
    if config is None:
        if model is not None:
            options.setdefault("model", None)
        return TrainConfig(**options)
    if not isinstance(config, TrainConfig):
        raise TypeError(f"train() takes a TrainConfig, a model name or a keras.Model, got {type(config).__name__}")
    return config.replace(**options) if options else config


def resolve_mixed_precision(requested):
    """(the Keras policy to train in or None for float32, what to tell the user or None) for a config's
    `mixed_precision`: "auto" chooses by the machine; mixed_bfloat16 on a CPU says what bfloat16 support it has."""
    gpus = len(tf.config.list_physical_devices("GPU"))
    if requested == "auto":
        return auto_mixed_precision(gpus)
    if requested == "float32":
        return None, None
    if requested == "mixed_bfloat16" and not gpus:
        return requested, bfloat16_support().describe()
    return requested, None


def train(
    config: TrainConfig | str | keras.Model | None = None,
    /,
    *,
    model: keras.Model | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    tensorboard: bool | str = "auto",
    verbose: int | str = "auto",
    **options: Any,
) -> TrainResult:
    """Trains a model on a named data set for its task and keeps the best checkpoint.

    The task (`config.task_name`: segmentation, denoise, super_resolution, depth) gives the loss, the
    metrics and the monitored metric (`config.monitor`); restoration trains on patches and validates on
    whole images of the set that measures it (`DATASETS[dataset].eval_dataset`).

    `train(TrainConfig(model="unet", epochs=5))` and `train("unet", epochs=5)` are the same run: keyword
    options are `TrainConfig` fields, applied over `config`. Re-running with the same `output_dir` after
    the process was killed resumes at the epoch it stopped in (model, optimizer and schedule state from
    `BackupAndRestore`). A finished run re-run with the same directory trains again from scratch, but
    keeps `best.keras` unless it is beaten.

    Args:
        config: A `TrainConfig`, a model name (then `options` complete the config), or a built
            `keras.Model` (same as `model=`).
        model: A compiled-or-not `keras.Model` built for the data set, instead of `config.model` (with
            `devices` it must have been built inside the strategy's scope).
        callbacks: Extra Keras callbacks, run after the built-in ones.
        tensorboard: Write TensorBoard logs; "auto" does so when the `tensorboard` package is installed.
        verbose: Keras verbosity; "auto" shows a progress bar on a terminal and one line per epoch otherwise.
        **options: `TrainConfig` fields.

    Returns:
        A `TrainResult`.

    Raises:
        ValueError: an unknown name or a bad value, naming the valid ones.
    """
    start = time.perf_counter()
    config = _as_config(config, model, options)
    if model is not None and config.model is not None:
        raise ValueError(f"pass either a model name (got {config.model!r}) or a keras.Model, not both")
    info = kz_data.DATASETS[config.dataset]
    restoration = config.task_name in kz_data.RESTORATION_TASKS
    image_size = None if restoration else config.image_size or info.image_size
    channels = config.channels or info.channels
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    strategy = make_strategy(config.devices)  # first: a multi-worker strategy configures TF's collectives
    keras.utils.set_random_seed(config.seed)
    train_data, val_data, steps, num_examples = _load_splits(config, info, image_size,
                                                             strategy.num_replicas_in_sync)
    class_weights = _resolve_class_weights(config, info, image_size, num_examples)

    create_args = None
    previous_policy = keras.mixed_precision.global_policy().name
    # Only the chief writes into output_dir; other workers of a multi-worker run write to a temp dir.
    with distribute.files_dir(output_dir, strategy) as files:
        backup_dir = distribute.backup_dir(output_dir, strategy)
        try:
            mixed_precision, why = resolve_mixed_precision(config.mixed_precision)
            if mixed_precision is not None:
                keras.mixed_precision.set_global_policy(mixed_precision)
            with strategy.scope():
                net = model
                if net is None:
                    net, create_args = model_for_dataset(config, info, image_size)
                _compile(net, config, info, config.epochs * steps, class_weights)
                if not net.built:
                    net.build((None, *(image_size or (None, None)), channels))

            run = {
                "dataset": config.dataset, "class_names": list(info.class_names), "ignore_class": info.ignore_class,
                "image_size": list(image_size) if image_size else None, "create_model": create_args,
                "task": config.task_name, "monitor": list(config.monitor),
                "task_options": restoration_options(info, "train", config.data_options()) if restoration else {},
                "eval_dataset": info.eval_dataset,
                "model_name": net.name, "parameters": int(net.count_params()),
                "config": config.to_dict(),
                "resolved": {"class_weights": class_weights, "steps_per_epoch": steps,
                             "mixed_precision": mixed_precision,
                             "devices": _device_names(strategy)},
            }
            atomic_write_text(files / "run.json", _to_json(run))

            initial_epoch = distribute.agree_on_resume_epoch(strategy, backup_dir)
            if verbose:
                replicas = strategy.num_replicas_in_sync
                where = f"{replicas} replicas ({', '.join(_device_names(strategy))})" if replicas > 1 else "1 device"
                resumed = f", resuming at epoch {initial_epoch + 1}" if initial_epoch else ""
                size = f"{image_size[0]}x{image_size[1]}" if image_size else f"({config.task_name} patches)"
                print(f"kerazoo train: {net.name} ({net.count_params():,} parameters) on {config.dataset} "
                      f"{size}, {config.epochs} epochs x {steps} steps, batch "
                      f"{config.batch_size}, {where}{resumed} -> {files}", flush=True)
                if why:
                    print(f"kerazoo train: {why}", flush=True)
            history = net.fit(train_data, validation_data=val_data, epochs=config.epochs, steps_per_epoch=steps,
                              callbacks=_callbacks(files, backup_dir, tensorboard, verbose, callbacks, config.monitor),
                              verbose=verbose, shuffle=False)  # shuffled by tf.data
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)

        best_path = output_dir / "best.keras"
        best = json.loads((files / "best.json").read_text()) if (files / "best.json").exists() else {}
        wall = time.perf_counter() - start
        run["result"] = {"best": best, "initial_epoch": initial_epoch, "wall_seconds": wall}
        atomic_write_text(files / "run.json", _to_json(run))
    if verbose and best:
        print(f"done in {wall:.0f} s; best {config.monitor[0]} {best.get(config.monitor[0], float('nan')):.4f} "
              f"at epoch {best.get('epoch', -1) + 1}: {best_path}", flush=True)
    return TrainResult(net, history.history, output_dir, best_path, best, initial_epoch, wall, config)
