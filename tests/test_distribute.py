"""Multi-worker training: `devices="multi-worker"` with two processes on 127.0.0.1 (TF_CONFIG, loopback ports).

The two-process tests start real worker processes (`python -c`, this checkout on PYTHONPATH), so they
are `slow`; the TF_CONFIG parsing, chief choice and file placement are tested in-process.
"""

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kerazoo.training import distribute
from kerazoo.training.config import TrainConfig

from optional_extras import require_extra

# A small model without batch normalisation: with two replicas each normalises its own half of the batch,
# which is a different model from one process normalising the whole batch, so only a BN-free model can
# match. kerazoo's own models run the same code path; this one keeps three processes' tracing short.
RUN = dict(model=None, dataset="shapes", image_size=[32, 32], num_examples=32, val_examples=16, batch_size=8,
           steps_per_epoch=4, optimizer="adam", learning_rate=1e-2, augment=False, seed=3)

WORKER = """
import json, os, sys
import keras
import numpy as np
from kerazoo.training import distribute
from kerazoo.training.train import TrainConfig, train


class WeightDumps(keras.callbacks.Callback):
    # With WEIGHTS_DIR set: the weights training starts from (train's own callbacks, BackupAndRestore among them,
    # run first) as start.npz, and those after each epoch as after-<epochs finished>.npz.
    def __init__(self, directory):
        super().__init__()
        self.directory = directory

    def dump(self, name):
        if self.directory:
            np.savez(os.path.join(self.directory, name), *self.model.get_weights())

    def on_train_begin(self, logs=None):
        self.dump("start.npz")

    def on_epoch_end(self, epoch, logs=None):
        self.dump(f"after-{epoch + 1}.npz")


config = TrainConfig(**json.loads(sys.argv[1]))
with distribute.make_strategy(config.devices).scope():  # the model is built in the strategy's scope
    keras.utils.set_random_seed(config.seed)
    net = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255),
                            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                            keras.layers.Conv2D(8, 3, padding="same", activation="relu"), keras.layers.Conv2D(4, 1)])
result = train(config, model=net, tensorboard=False, verbose=2, callbacks=[WeightDumps(os.environ.get("WEIGHTS_DIR"))])
print("HISTORY " + json.dumps(result.history), flush=True)
"""


def _tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                       "task": {"type": "worker", "index": index}})


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start(config, tmp_path, tf_config=None, name="single", weights_dir=None):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "TF_CPP_MIN_LOG_LEVEL": "2",
           "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(tmp_path / f"tmp-{name}")}
    env.pop("TF_CONFIG", None)
    if tf_config:
        env["TF_CONFIG"] = tf_config
    if weights_dir:  # where the worker writes its weights at the start and after each epoch (WeightDumps)
        Path(weights_dir).mkdir(parents=True)
        env["WEIGHTS_DIR"] = str(weights_dir)
    Path(env["TMPDIR"]).mkdir(exist_ok=True)
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "a") as log:
        process = subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(config)], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    process.log_path = log_path
    return process


def _start_workers(config, tmp_path, weights_dir=None):
    ports = _free_ports(2)
    return [_start(config, tmp_path, _tf_config(ports, i), name=f"worker{i}",
                   weights_dir=weights_dir and Path(weights_dir) / f"worker{i}") for i in range(2)]


def _wait(processes, tmp_path, timeout=420):
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in processes:
                os.killpg(p.pid, signal.SIGKILL)
            pytest.fail(f"workers did not finish in {timeout} s; logs in {tmp_path}")
    for process in processes:
        assert process.returncode == 0, process.log_path.read_text()[-3000:]


def _history(tmp_path, name):
    lines = [line for line in (tmp_path / f"{name}.log").read_text().splitlines() if line.startswith("HISTORY ")]
    return json.loads(lines[-1][len("HISTORY "):])


def _csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- in-process: TF_CONFIG, chief, where files go ----

def test_task_info_reads_tf_config_and_picks_the_chief():
    cluster = {"worker": ["a:1", "b:2", "c:3"]}
    info = distribute.task_info({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                                        "index": 0}})})
    assert info == ("worker", 0, 3, True)  # worker 0 is the chief when the cluster names none
    info = distribute.task_info({"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                                        "index": 2}})})
    assert (info.task_index, info.chief) == (2, False)
    with_chief = {"chief": ["z:9"], **cluster}
    worker0 = distribute.task_info({"TF_CONFIG": json.dumps({"cluster": with_chief,
                                                              "task": {"type": "worker", "index": 0}})})
    chief = distribute.task_info({"TF_CONFIG": json.dumps({"cluster": with_chief,
                                                            "task": {"type": "chief", "index": 0}})})
    assert (worker0.chief, chief.chief, chief.num_workers) == (False, True, 4)
    assert distribute.task_info({}) == ("worker", 0, 1, True)


@pytest.mark.parametrize("text, words", [
    ("not json", ["TF_CONFIG must be JSON", "not json"]),
    (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}), ["worker:1", "not in"]),
    (json.dumps({"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}), ["'ps'", "'chief', 'worker'"]),
])
def test_bad_tf_config_is_a_clear_error(text, words):
    with pytest.raises(ValueError) as error:
        distribute.task_info({"TF_CONFIG": text})
    for word in words:
        assert word in str(error.value)


def test_multi_worker_without_tf_config_says_what_to_set(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    distribute._multi_worker_strategy.cache_clear()
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        distribute.make_strategy("multi-worker")


def test_devices_multi_worker_in_config_and_command_line():
    from kerazoo.cli import build_parser, train_config_from_args

    assert TrainConfig(devices="multi-worker").devices == "multi-worker"
    args = build_parser().parse_args(["train", "--devices", "multi-worker"])
    assert train_config_from_args(args).devices == "multi-worker"


def test_non_chief_writes_to_a_temp_dir_that_is_removed(tmp_path, monkeypatch):
    # A stand-in for MultiWorkerMirroredStrategy, so that no collective runtime starts in the test process.
    class FakeMultiWorker(distribute.tf.distribute.MultiWorkerMirroredStrategy):
        def __init__(self):
            pass

    cluster = {"cluster": {"worker": ["a:1", "b:2"]}}
    monkeypatch.setenv("TF_CONFIG", json.dumps({**cluster, "task": {"type": "worker", "index": 1}}))
    strategy = FakeMultiWorker()
    assert not distribute.is_chief(strategy)
    assert distribute.backup_dir(tmp_path, strategy) == tmp_path / "backup-worker-1"
    with distribute.files_dir(tmp_path, strategy) as files:
        assert files != tmp_path and tmp_path not in files.parents
        (files / "best.keras").write_text("x")
    assert not files.exists()
    monkeypatch.setenv("TF_CONFIG", json.dumps({**cluster, "task": {"type": "worker", "index": 0}}))
    with distribute.files_dir(tmp_path, strategy) as files:
        assert files == tmp_path
    assert distribute.backup_dir(tmp_path, strategy) == tmp_path / "backup"
    assert distribute.is_chief(None)  # one process, no strategy: it writes


def _write_backup(backup, epoch, previous):
    backup.mkdir(parents=True, exist_ok=True)
    (backup / "training_metadata.json").write_text(json.dumps({"epoch": epoch, "batch": 0}))
    (backup / "latest.weights.h5").write_text(f"weights of epoch {epoch}")
    if previous is not None:
        (backup / "training_metadata.json.bkp").write_text(json.dumps({"epoch": previous, "batch": 0}))
        (backup / "latest.weights.h5.bkp").write_text(f"weights of epoch {previous}")


def test_a_worker_ahead_rolls_back_to_the_earliest_saved_epoch(tmp_path):
    ahead = tmp_path / "backup"
    _write_backup(ahead, 3, previous=2)
    distribute._roll_back(ahead, 2)
    assert distribute._backup_epoch(ahead) == 2
    assert (ahead / "latest.weights.h5").read_text() == "weights of epoch 2"
    distribute._roll_back(ahead, 2)  # already there: unchanged
    assert (ahead / "latest.weights.h5").read_text() == "weights of epoch 2"

    _write_backup(ahead, 3, previous=2)
    with pytest.raises(ValueError, match="holds epoch 3, another worker's backup holds epoch 1.*delete every"):
        distribute._roll_back(ahead, 1)
    distribute._roll_back(ahead, 0)  # another worker has nothing: start afresh
    assert not ahead.exists()
    assert distribute.agree_on_resume_epoch(None, tmp_path / "missing") == 0


# ---- two processes on 127.0.0.1 ----

@pytest.mark.slow
def test_two_workers_match_one_process_and_only_the_chief_writes(tmp_path):
    epochs = 3
    # The one-process run uses MirroredStrategy on its one CPU, i.e. Keras' same distributed code path: under
    # any tf.distribute strategy, fit() draws one batch before epoch 1 to build the model, and that extra
    # iterator moves a reshuffling tf.data pipeline on by one shuffle, so a strategy-less run sees other
    # batches (measured: losses 1-5% apart, with identical weights and data otherwise).
    single = _start({**RUN, "epochs": epochs, "devices": ["/cpu:0"], "output_dir": str(tmp_path / "single")},
                    tmp_path)
    _wait([single], tmp_path)
    multi_dir = tmp_path / "multi"
    workers = _start_workers({**RUN, "epochs": epochs, "devices": "multi-worker", "output_dir": str(multi_dir)},
                             tmp_path)
    _wait(workers, tmp_path)

    one, chief, other = (_history(tmp_path, name) for name in ("single", "worker0", "worker1"))
    # Same global batches, same seed, gradients averaged across the two replicas: the curves can differ only
    # by float32 summation order (two half-batch sums, then an all-reduce), a few ulps per step that Adam
    # carries over 12 steps (measured: 1.1e-7 relative). 1e-5 is ~80 float32 ulps: room for other CPUs'
    # kernels, and 1000x below the 1-5% that other batches (wrong sharding or order) give.
    np.testing.assert_allclose(chief["loss"], one["loss"], rtol=1e-5)
    np.testing.assert_allclose(chief["val_loss"], one["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(other["loss"], chief["loss"], rtol=1e-6)  # both report the global mean

    # The chief wrote the run's files, once; the other worker left nothing in the run or its temp dir.
    names = sorted(p.name for p in multi_dir.iterdir())
    assert names == ["best.json", "best.keras", "log.csv", "run.json"], names
    assert list((tmp_path / "tmp-worker1").iterdir()) == []
    run = json.loads((multi_dir / "run.json").read_text())
    assert run["config"]["devices"] == "multi-worker" and run["result"]["initial_epoch"] == 0
    assert len(_csv_rows(multi_dir / "log.csv")) == epochs
    log0, log1 = ((tmp_path / f"worker{i}.log").read_text() for i in range(2))
    assert f"saved {multi_dir / 'best.keras'}" in log0
    worker_saves = [line for line in log1.splitlines() if ": saved " in line]
    assert worker_saves and not any(str(multi_dir) in line for line in worker_saves)

    # Step time, two processes against one (printed for the report; not asserted: timings are noisy).
    one_rows, two_rows = _csv_rows(tmp_path / "single" / "log.csv"), _csv_rows(multi_dir / "log.csv")
    one_s = np.median([float(r["epoch_seconds"]) for r in one_rows[1:]])
    two_s = np.median([float(r["epoch_seconds"]) for r in two_rows[1:]])
    print(f"epoch seconds (after the first): one process {one_s:.3f}, two workers {two_s:.3f}, "
          f"ratio {two_s / one_s:.2f}")


@pytest.mark.slow
def test_killed_worker_resumes_from_the_saved_epoch(tmp_path):
    epochs = 8
    run_dir = tmp_path / "run"
    config = {**RUN, "epochs": epochs, "devices": "multi-worker", "output_dir": str(run_dir)}
    workers = _start_workers(config, tmp_path, weights_dir=tmp_path / "weights-killed")
    metadata = run_dir / "backup" / "training_metadata.json"
    deadline = time.monotonic() + 300
    saved = 0
    while saved < 2 and time.monotonic() < deadline and all(w.poll() is None for w in workers):
        time.sleep(0.2)
        try:
            saved = json.loads(metadata.read_text())["epoch"]
        except (OSError, ValueError, KeyError):
            pass
    assert saved >= 2 and all(w.poll() is None for w in workers), f"no epoch-2 backup in time; logs in {tmp_path}"
    os.killpg(workers[1].pid, signal.SIGKILL)  # the non-chief dies mid-run
    time.sleep(1)
    os.killpg(workers[0].pid, signal.SIGKILL)  # the chief would wait for it; stop it too
    for w in workers:
        w.wait()
    killed_at = len(_csv_rows(run_dir / "log.csv"))
    assert 2 <= killed_at < epochs
    # Let the non-chief have died just before its own end-of-epoch save (if the kill did not already do
    # so): the chief's backup is one epoch ahead, and the restart must bring it back, not hang.
    worker_backup = run_dir / "backup-worker-1"
    if distribute._backup_epoch(worker_backup) == distribute._backup_epoch(run_dir / "backup"):
        for name in ("latest.weights.h5", "training_metadata.json"):
            shutil.copyfile(worker_backup / f"{name}.bkp", worker_backup / name)
    expected_resume = distribute._backup_epoch(worker_backup)
    assert expected_resume == distribute._backup_epoch(run_dir / "backup") - 1 >= 1

    restarted = _start_workers(config, tmp_path, weights_dir=tmp_path / "weights-restarted")
    _wait(restarted, tmp_path)
    run = json.loads((run_dir / "run.json").read_text())
    resumed_at = run["result"]["initial_epoch"]
    assert resumed_at == expected_resume, "training did not resume from the epoch every worker had saved"
    # Every worker starts again from the weights it had after that epoch: not a fresh start, and not the weights of
    # the epoch the chief had saved ahead of the other worker.
    for worker in ("worker0", "worker1"):
        killed, restarted_from = tmp_path / "weights-killed" / worker, tmp_path / "weights-restarted" / worker
        restored, saved = np.load(restarted_from / "start.npz"), np.load(killed / f"after-{resumed_at}.npz")
        assert restored.files == saved.files
        for key in saved.files:
            np.testing.assert_array_equal(restored[key], saved[key], err_msg=f"{worker} {key}")
        fresh = np.load(killed / "start.npz")
        assert not all(np.array_equal(fresh[key], saved[key]) for key in saved.files)  # training had moved them
    assert len(_history(tmp_path, "worker0")["loss"]) == epochs - resumed_at
    assert len(_history(tmp_path, "worker1")["loss"]) == epochs - resumed_at
    rows = _csv_rows(run_dir / "log.csv")
    assert [int(r["epoch"]) for r in rows[killed_at:]] == list(range(resumed_at, epochs))
    assert not (run_dir / "backup").exists() and not (run_dir / "backup-worker-1").exists()


JAX_RUN = """
import json, sys
import keras
from kerazoo.training.train import TrainConfig, train
config = TrainConfig(**json.loads(sys.argv[1]))
if sys.argv[2] == "data-parallel":
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=keras.distribution.list_devices()))
keras.utils.set_random_seed(config.seed)
net = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255),
                        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                        keras.layers.Conv2D(8, 3, padding="same", activation="relu"), keras.layers.Conv2D(4, 1)])
result = train(config, model=net, tensorboard=False, verbose=0)
kernel = net.layers[1].kernel.value
print("RESULT " + json.dumps({"history": result.history, "backend": keras.backend.backend(),
                              "devices": len(kernel.sharding.device_set)}), flush=True)
"""


@pytest.mark.slow
def test_jax_data_parallel_on_two_host_devices_matches_one_device(tmp_path):
    require_extra("jax", "jax")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "KERAS_BACKEND": "jax",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "TF_CPP_MIN_LOG_LEVEL": "2",
           "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    results = {}
    for mode in ("one-device", "data-parallel"):
        config = {**RUN, "epochs": 3, "output_dir": str(tmp_path / mode)}
        done = subprocess.run([sys.executable, "-c", JAX_RUN, json.dumps(config), mode], env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        line = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")][-1]
        results[mode] = json.loads(line[len("RESULT "):])
    one, parallel = results["one-device"], results["data-parallel"]
    assert one["backend"] == parallel["backend"] == "jax"
    assert (one["devices"], parallel["devices"]) == (1, 2)  # the weights really live on both host devices
    # Same batches (no tf.distribute peek on JAX), gradients of two half-batches all-reduced: float32
    # summation order only, as for the TensorFlow workers (measured: equal to the last digit).
    np.testing.assert_allclose(parallel["history"]["loss"], one["history"]["loss"], rtol=1e-5)
    np.testing.assert_allclose(parallel["history"]["val_loss"], one["history"]["val_loss"], rtol=1e-5)
