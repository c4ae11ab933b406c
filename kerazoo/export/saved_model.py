"""SavedModel writer: `tf.saved_model.save` of the serving module (`keras.Model.export` stores every
variable twice), with the metadata in `assets.extra/kerazoo.json`."""

import json
import os
import time

import tensorflow as tf

from kerazoo.export.parity import check_parity
from kerazoo.export.report import path_size
from kerazoo.export.runners import SIGNATURE_KEY, run_and_time, saved_model_runner
from kerazoo.utils.files import atomic_directory


def write_saved_model(job, exported):
    """Writes `saved_model/` under the job's directory, reloads it in TensorFlow and checks parity."""
    path = os.path.join(job.out_dir, "saved_model")
    start = time.perf_counter()
    with atomic_directory(path, overwrite=True) as staging:
        tf.saved_model.save(job.module, str(staging), signatures={SIGNATURE_KEY: job.concrete_function})
        os.makedirs(os.path.join(staging, "assets.extra"), exist_ok=True)
        with open(os.path.join(staging, "assets.extra", "kerazoo.json"), "w") as handle:
            json.dump(job.metadata, handle, indent=2)
    exported.convert_s = time.perf_counter() - start
    exported.path, exported.size_bytes = path, path_size(path)
    run, exported.ops = saved_model_runner(path, job.output_name)
    outputs, exported.latency_ms = run_and_time(run, job.feed, job.options.latency_runs)
    check_parity(exported, job.reference, outputs, job.options.argmax_output, job.tie_policy, job.targets)
