"""Is training input-bound? Training-step time with the real CamVid pipeline / with the same batches in memory.

Both sides run `model.fit` for two epochs of `--steps` steps, alternately, and the second epoch is
timed; a warm-up round first traces the model and fills the pipeline's decoded-image cache. The in-memory side replays batches drawn
once from the same pipeline (augmented, same size), so only the input pipeline differs. The result
is the ratio of medians; 1.00 means the pipeline costs nothing, the goal is <= 1.05.

    .venv/bin/python benchmarks/pipeline.py --data-dir ../shared/data --json benchmarks/pipeline.json

Speed is a ratio measured side by side in one process; the machines here are shared and noisy.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import kerazoo  # noqa: E402
import kerazoo.data  # noqa: E402,F401  (not imported by kerazoo itself)
from kerazoo.cli import image_size, model_option  # noqa: E402
from kerazoo.losses import SegmentationLoss  # noqa: E402
from kerazoo.metrics import MeanIoU  # noqa: E402


class _EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def _timed_epoch(model, dataset, steps):
    # Two epochs in one fit call; the first one starts the iterator (shuffle buffer, prefetch),
    # the second is the steady state that a long training run sees.
    timer = _EpochTimes()
    model.fit(dataset, epochs=2, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[timer])
    return timer.seconds[-1] / steps


def measure(dataset="camvid", data_dir=None, size=(176, 240), batch_size=4, steps=10, repeats=5,
            model="segnet_basic", options=None, seed=0, augment=True):
    """Returns a dict with the per-step times of both sides, their medians and the ratio."""
    info = kerazoo.data.DATASETS[dataset]
    real = kerazoo.data.load(dataset, "train", data_dir=data_dir, batch_size=batch_size, image_size=size,
                             augment=augment, shuffle=True, seed=seed, drop_remainder=True)
    # Each epoch of the real side draws `steps` fresh batches, as training would.
    real = real.repeat()
    held = list(real.take(steps))
    memory = tf.data.Dataset.from_tensor_slices((np.stack([b[0].numpy() for b in held]),
                                                 np.stack([b[1].numpy() for b in held]))).cache().repeat()
    net = kerazoo.create_model(model, num_classes=info.num_classes, in_channels=info.channels, **(options or {}))
    net.compile(optimizer="adam", loss=SegmentationLoss(ignore_class=info.ignore_class),
                metrics=[MeanIoU(info.num_classes, ignore_class=info.ignore_class)])
    _timed_epoch(net, real, steps)  # warm-up: tracing, cache filling, thread pools
    _timed_epoch(net, memory, steps)
    times = {"pipeline": [], "memory": []}
    for repeat in range(repeats):
        order = ("pipeline", "memory") if repeat % 2 == 0 else ("memory", "pipeline")
        for side in order:
            times[side].append(_timed_epoch(net, real if side == "pipeline" else memory, steps))
        print(f"repeat {repeat + 1}/{repeats}: pipeline {times['pipeline'][-1]:.3f} s/step, "
              f"memory {times['memory'][-1]:.3f} s/step", flush=True)
    medians = {side: statistics.median(values) for side, values in times.items()}
    return {
        "ratio": medians["pipeline"] / medians["memory"],
        "median_step_seconds": medians,
        "step_seconds": times,
        "setup": dict(dataset=dataset, image_size=list(size), batch_size=batch_size, steps=steps, repeats=repeats,
                      model=model, options=options, augment=augment, cache="auto"),
        "environment": dict(cpus=os.cpu_count(), python=platform.python_version(), tensorflow=tf.__version__,
                            keras=keras.__version__, machine=platform.processor() or platform.machine()),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="camvid")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--image-size", type=image_size, default=(176, 240))
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="segnet_basic")
    parser.add_argument("--option", action="append", type=model_option, default=None,
                        help="create_model option; default filters=32 for segnet_basic")
    parser.add_argument("--no-augment", action="store_true", help="resize only: isolates the augmentation's cost")
    parser.add_argument("--json", default=None, help="write the result here (through a temp file)")
    args = parser.parse_args(argv)
    options = dict(args.option) if args.option else ({"filters": 32} if args.model == "segnet_basic" else {})
    result = measure(args.dataset, args.data_dir, args.image_size, args.batch_size, args.steps, args.repeats,
                     args.model, options, augment=not args.no_augment)
    result["command"] = " ".join(["python", "benchmarks/pipeline.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"pipeline / in-memory step time: {result['ratio']:.3f} "
          f"({result['median_step_seconds']['pipeline']:.3f} s vs {result['median_step_seconds']['memory']:.3f} s, "
          f"medians of {args.repeats} x {args.steps} steps)")
    if args.json:
        path = Path(args.json)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
