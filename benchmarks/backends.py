"""Training-step time of one model on each Keras backend (TensorFlow, JAX, torch), side by side.

Each backend runs in its own process (Keras picks its backend at import), one after another in one
invocation: the same model (random weights, seeded), the same in-memory batch fed by tf.data (which
feeds every backend), `model.fit` with Adam and kerazoo's SegmentationLoss. The first step (tracing or
compiling) is timed once, then `--warmup` untimed steps, then the median of `--runs` steps.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/backends.py                       # U-Net MobileNetV2
    PYTHONPATH=$PWD .venv/bin/python benchmarks/backends.py --encoder resnet50 --backends tensorflow jax

The results (JSON, one object per backend) go to stdout and, with --out, to a file. The machines here are
shared and noisy: compare the backends of one run, not runs with each other.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

BACKENDS = ("tensorflow", "jax", "torch")


def measure(encoder, image_size, batch_size, num_classes, warmup, runs):
    """In a process whose KERAS_BACKEND is set: the step times of `model.fit` on this backend."""
    import keras
    import numpy as np
    import tensorflow as tf

    import kerazoo

    class StepTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_train_batch_begin(self, batch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    keras.utils.set_random_seed(0)
    model = kerazoo.create_model("unet", encoder=encoder, num_classes=num_classes,
                                 input_shape=(*image_size, 3))
    model.compile(optimizer="adam", loss=kerazoo.losses.SegmentationLoss())
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch_size, *image_size, 3)).astype("float32")
    masks = rng.integers(0, num_classes, (batch_size, *image_size)).astype("int32")
    data = tf.data.Dataset.from_tensors((images, masks)).repeat()
    timer = StepTimes()
    model.fit(data, epochs=1, steps_per_epoch=1 + warmup + runs, verbose=0, callbacks=[timer])
    steps = sorted(timer.seconds[1 + warmup:])
    return {"backend": keras.backend.backend(), "model": f"unet {encoder}", "image_size": list(image_size),
            "batch_size": batch_size, "first_step_s": round(timer.seconds[0], 3),
            "step_ms_median": round(1000 * steps[len(steps) // 2], 1),
            "step_ms_all": [round(1000 * s, 1) for s in timer.seconds[1 + warmup:]]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--encoder", default="mobilenetv2")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per backend")
    parser.add_argument("--out", help="write the results (JSON) here too")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    settings = (args.encoder, tuple(args.size), args.batch, args.classes, args.warmup, args.runs)
    if args.child:
        print(json.dumps(measure(*settings)))
        return
    results = []
    for backend in args.backends:
        module = "tensorflow" if backend == "tensorflow" else backend
        if importlib.util.find_spec(module) is None:
            results.append({"backend": backend, "error": f"not installed (pip install \"kerazoo[{backend}]\")"})
            continue
        command = [sys.executable, __file__, "--child", *(sys.argv[1:] if argv is None else argv)]
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        child = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
        if child.returncode != 0:
            results.append({"backend": backend, "error": child.stderr.strip().splitlines()[-1:]})
        else:
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    if args.out:
        from kerazoo.utils.files import atomic_write_text

        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
