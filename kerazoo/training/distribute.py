"""Where training runs: one device, the devices of one machine, or worker processes on several machines.

`make_strategy(devices)` is the one place that turns `TrainConfig.devices` into a `tf.distribute`
strategy. `devices="multi-worker"` trains with `tf.distribute.MultiWorkerMirroredStrategy` across the
processes that the `TF_CONFIG` environment variable of each one describes:

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}'

Every worker runs the same command; each sees the same global batches and keeps its share of each
(`AutoShardPolicy.DATA`), gradients are summed across workers every step, and the chief (the "chief"
task, else worker 0) is the only one that writes the run's files. The other workers write theirs to a
temporary directory removed afterwards, except their `BackupAndRestore` state, which they need to resume
after a crash (`backup-worker-<index>/` in the output directory, deleted when training finishes).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import keras
import tensorflow as tf

__all__ = ["MULTI_WORKER", "TaskInfo", "agree_on_resume_epoch", "backup_dir", "files_dir", "is_chief",
           "make_strategy", "shard_options", "task_info"]

MULTI_WORKER = "multi-worker"


class TaskInfo(NamedTuple):
    """This process's place in the cluster, read from `TF_CONFIG`."""

    task_type: str
    task_index: int
    num_workers: int
    chief: bool


def task_info(environ=None) -> TaskInfo:
    """Reads this process's place in the cluster from `TF_CONFIG`.

    Args:
        environ: Mapping to read `TF_CONFIG` from (default `os.environ`).

    Returns:
        A `TaskInfo`; a process without `TF_CONFIG` is the chief of a one-worker cluster.

    Raises:
        ValueError: `TF_CONFIG` is not JSON, or its task is not in its cluster.
    """
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not text:
        return TaskInfo("worker", 0, 1, True)
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        task_type, index = str(task["type"]), int(task["index"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"TF_CONFIG must be JSON like {{\"cluster\": {{\"worker\": [\"host:port\", ...]}}, "
                         f"\"task\": {{\"type\": \"worker\", \"index\": 0}}}}; got {text!r} ({error})") from None
    if task_type not in ("chief", "worker"):
        raise ValueError(f"TF_CONFIG task type {task_type!r} is not supported by {MULTI_WORKER!r}; "
                         "valid: 'chief', 'worker'")
    if not 0 <= index < len(cluster.get(task_type, ())):
        raise ValueError(f"TF_CONFIG task {task_type}:{index} is not in its cluster {cluster}")
    num_workers = len(cluster.get("chief", ())) + len(cluster.get("worker", ()))
    chief = task_type == "chief" or ("chief" not in cluster and index == 0)
    return TaskInfo(task_type, index, num_workers, chief)


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`MultiWorkerMirroredStrategy` whose `reduce` takes what Keras 3's `fit` gives it.

    Keras 3.15 `fit` fails with more than one worker (keras-team/keras#20585, tensorflow/tensorflow#72388):
    it reduces the first (x, y) batch as one nested structure, which the multi-worker cross-device ops do
    not accept, and it reduces the scalar loss and metrics with `axis=0`. This reduces nested values
    one by one, and scalars across replicas without an axis, which is what both calls mean.
    """

    def reduce(self, reduce_op, value, axis):
        def reduce_one(item):
            local = self.experimental_local_results(item)
            rank = getattr(local[0], "shape", tf.TensorShape(None)).rank
            return super(_MultiWorkerMirroredStrategy, self).reduce(reduce_op, item, None if rank == 0 else axis)

        return tf.nest.map_structure(reduce_one, value)


@functools.lru_cache(maxsize=None)
def _multi_worker_strategy():
    # TensorFlow configures collectives once per process, so every caller shares one strategy.
    task_info()  # a malformed TF_CONFIG fails here, with its own message
    if not os.environ.get("TF_CONFIG"):
        raise ValueError(f"devices={MULTI_WORKER!r} needs the TF_CONFIG environment variable, e.g. "
                         "TF_CONFIG='{\"cluster\": {\"worker\": [\"host0:12345\", \"host1:12345\"]}, "
                         "\"task\": {\"type\": \"worker\", \"index\": 0}}' on host0 (index 1 on host1)")
    return _MultiWorkerMirroredStrategy()


def make_strategy(devices: str | Sequence[str] | None):
    """Returns a `tf.distribute` strategy for `devices`.

    Args:
        devices: None for the default (one device); "mirrored" or "all" for `MirroredStrategy` over
            every GPU (or every logical CPU when there is no GPU); "multi-worker" for
            `MultiWorkerMirroredStrategy` across the processes in `TF_CONFIG`; or a list of device names
            such as `["/cpu:0", "/cpu:1"]` (a comma-separated string works too).

    Returns:
        A `tf.distribute.Strategy`; the same object for the same `devices` within a process, so a model
        built in its scope can be passed to `kerazoo.training.train.train(model=...)`.
    """
    if devices is None or devices == "":
        return tf.distribute.get_strategy()
    if keras.backend.backend() != "tensorflow":
        raise ValueError(f"devices={devices!r} selects a tf.distribute strategy, which trains on the TensorFlow "
                         f"backend only; on {keras.backend.backend()!r} leave devices unset and use Keras' "
                         "distribution API, e.g. keras.distribution.set_distribution("
                         "keras.distribution.DataParallel()) before training")
    if isinstance(devices, str):
        if devices == MULTI_WORKER:
            return _multi_worker_strategy()
        if devices in ("mirrored", "all"):
            found = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
            return _mirrored_strategy(tuple(d.name for d in found))
        devices = [d.strip() for d in devices.split(",") if d.strip()]
    available = {d.name.lower() for d in tf.config.list_logical_devices()}
    short = {name.split("device:")[-1].lower() for name in available}
    for device in devices:
        key = device.lower().lstrip("/").replace("device:", "")
        if key not in short:
            raise ValueError(f"Unknown device {device!r}; available: {', '.join(sorted(available))}, "
                             f"or 'mirrored', or {MULTI_WORKER!r}")
    return _mirrored_strategy(tuple(devices))


@functools.lru_cache(maxsize=None)
def _mirrored_strategy(devices: tuple[str, ...]):
    # One strategy per device set, so that a model built in `make_strategy(devices).scope()` trains
    # with `train(model=..., devices=devices)` (Keras refuses to mix two strategy objects).
    return tf.distribute.MirroredStrategy(list(devices))


def _is_multi_worker(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy=None) -> bool:
    """Whether this process writes the run's files: always, except on non-chief multi-worker tasks."""
    return not _is_multi_worker(strategy) or task_info().chief


def shard_options() -> tf.data.Options:
    """tf.data options for more than one replica: split each global batch, not the files.

    With `AutoShardPolicy.DATA` every worker reads the same shuffled batches and keeps its share of each,
    so the global batches are those of one process (FILE sharding would need at least one file per
    worker and change which images meet in a batch). It also keeps TensorFlow from warning about it.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def backup_dir(output_dir: str | os.PathLike, strategy=None) -> Path:
    """Where `BackupAndRestore` keeps this process's state: `backup/` on the chief.

    Other workers keep theirs in `backup-worker-<index>/`: they need it to resume after a restart, so
    it cannot live in a temporary directory, and two processes must not share one on a shared disk.
    """
    output_dir = Path(output_dir)
    if is_chief(strategy):
        return output_dir / "backup"
    return output_dir / f"backup-worker-{task_info().task_index}"


@contextlib.contextmanager
def files_dir(output_dir: str | os.PathLike, strategy=None) -> Iterator[Path]:
    """The directory this process writes its checkpoint, logs and run.json to.

    The chief gets `output_dir`. Other workers save too (in a multi-worker run every process makes the
    same calls, and `model.save` may read values that all of them hold), but into a temporary directory
    that is removed on exit, so each file of the run is written once, by the chief.
    """
    if is_chief(strategy):
        yield Path(output_dir)
        return
    temporary = Path(tempfile.mkdtemp(prefix=f"kerazoo-worker-{task_info().task_index}-"))
    try:
        yield temporary
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _backup_epoch(backup: Path, suffix: str = "") -> int:
    try:
        return int(json.loads((backup / f"training_metadata.json{suffix}").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def _roll_back(backup: Path, epoch: int) -> None:
    """Makes `backup` hold `epoch` again, from the previous state that `double_checkpoint=True` keeps."""
    current = _backup_epoch(backup)
    if current == epoch:
        return
    if epoch == 0:
        shutil.rmtree(backup, ignore_errors=True)  # another worker starts afresh: so must this one
        return
    if _backup_epoch(backup, ".bkp") != epoch or not (backup / "latest.weights.h5.bkp").exists():
        raise ValueError(f"{backup} holds epoch {current}, another worker's backup holds epoch {epoch}, and "
                         f"{backup} has no state of epoch {epoch} to go back to; delete every worker's "
                         "backup directory to restart the run from epoch 0")
    for name in ("latest.weights.h5", "training_metadata.json"):
        shutil.copyfile(backup / f"{name}.bkp", backup / name)


def agree_on_resume_epoch(strategy, backup: str | os.PathLike) -> int:
    """Makes every worker resume from the same epoch; call it on all workers before `fit`.

    Workers save their `BackupAndRestore` state one after another at the end of each epoch. A worker
    killed between two of those saves leaves the others one epoch ahead, and workers that resume from
    different epochs would wait on each other forever. So the workers exchange their saved epochs and
    those ahead go back to the earliest one (the previous state `double_checkpoint=True` keeps).

    Args:
        strategy: The run's strategy; anything but a multi-worker one returns the saved epoch as it is.
        backup: This worker's `BackupAndRestore` directory.

    Returns:
        The epoch (0-based count of finished epochs) that every worker resumes at.
    """
    backup = Path(backup)
    epoch = _backup_epoch(backup)
    if not _is_multi_worker(strategy):
        return epoch
    local = strategy.experimental_distribute_values_from_function(lambda _: tf.constant([epoch], tf.int64))
    earliest = int(min(strategy.gather(local, axis=0).numpy()))
    _roll_back(backup, earliest)
    return earliest
