"""Where the first training step of `model.fit` goes, one configuration per process.

Trains U-Net (nearest upsampling) on random in-memory data and prints one JSON line: model creation,
each step's wall and CPU seconds (CPU seconds of the process: steadier than wall time on a shared
machine), the last step when the data end on a partial batch, and optionally batch-1 inference through
`model.predict`, `predict_on_batch` and a `tf.function`.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/first_step.py                      # 256x256, batch 4
    PYTHONPATH=$PWD .venv/bin/python benchmarks/first_step.py --lazy-optimizer     # Keras' own compile
    PYTHONPATH=$PWD .venv/bin/python benchmarks/first_step.py --keras-adam         # Keras' Adam update
    PYTHONPATH=$PWD .venv/bin/python benchmarks/first_step.py --grappler constant_folding=off
    PYTHONPATH=$PWD .venv/bin/python benchmarks/first_step.py --partial 2 --inference
    PYTHONPATH=$PWD .venv/bin/python benchmarks/first_step.py --precision mixed_bfloat16 --inference

`--lazy-optimizer` compiles with `keras.Model.compile`, so that the optimizer's variables are made while
the first step is traced (Keras' default); without it, `ZooModel.compile` makes them at compile time.
`--keras-adam` gives compile a `keras.optimizers.Adam` instead of the name "adam" (which ZooModel.compile
turns into `kerazoo.optimizers.Adam`, one fused update op per variable).
Results: benchmarks/BENCHMARK.md, "First training step".
"""

import argparse
import json
import os
import resource
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4, help="full batches")
    parser.add_argument("--partial", type=int, default=0, help="images in a last, partial batch")
    parser.add_argument("--lazy-optimizer", action="store_true")
    parser.add_argument("--keras-adam", action="store_true", help="keras.optimizers.Adam, not kerazoo's fused one")
    parser.add_argument("--grappler", action="append", default=[], metavar="PASS=on|off",
                        help="tf.config.optimizer.set_experimental_options entry, e.g. constant_folding=off; "
                             "disable_meta_optimizer=on turns Grappler off")
    parser.add_argument("--precision", default="float32", help="Keras dtype policy")
    parser.add_argument("--inference", action="store_true", help="also time batch-1 inference three ways")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    options = {key: value == "on" for key, value in (item.split("=") for item in args.grappler)}
    if options:
        tf.config.optimizer.set_experimental_options(options)
    import keras

    import kerazoo
    from kerazoo.utils.timing import median_ms

    keras.mixed_precision.set_global_policy(args.precision)
    figures = {"arguments": vars(args)}
    start = time.perf_counter()
    model = kerazoo.create_model("unet", encoder=args.encoder, num_classes=12, upsampling="nearest")
    figures["create_seconds"] = time.perf_counter() - start
    compile_model = keras.Model.compile if args.lazy_optimizer else type(model).compile
    optimizer = keras.optimizers.Adam() if args.keras_adam else "adam"
    compile_model(model, optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    class Timer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.wall, self.cpu = [], []

        def on_train_batch_begin(self, batch, logs=None):
            self._wall, self._cpu = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # wait for the step's result
            self.wall.append(time.perf_counter() - self._wall)
            self.cpu.append(time.process_time() - self._cpu)

    rng = np.random.default_rng(0)
    count = args.batch_size * args.steps + args.partial
    images = rng.uniform(0, 255, (count, args.image_size, args.image_size, 3)).astype("float32")
    masks = rng.integers(0, 12, (count, args.image_size, args.image_size)).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((images, masks)).batch(args.batch_size)
    timer = Timer()
    model.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[timer])
    full = slice(1, args.steps)
    figures.update(
        first_step_seconds=timer.wall[0], first_step_cpu_seconds=timer.cpu[0],
        steady_step_seconds=statistics.median(timer.wall[full]),
        steady_step_cpu_seconds=statistics.median(timer.cpu[full]),
        step_seconds=[round(s, 3) for s in timer.wall], step_cpu_seconds=[round(s, 3) for s in timer.cpu])
    if args.inference:
        one = images[:1]
        call = tf.function(lambda x: model(x, training=False))
        figures["inference_batch1_ms"] = {
            "predict": median_ms(lambda: model.predict(one, verbose=0), 7, warmup=2),
            "predict_on_batch": median_ms(lambda: model.predict_on_batch(one), 7, warmup=2),
            "tf_function": median_ms(lambda: call(tf.constant(one)).numpy(), 7, warmup=2),
            "predict_again": median_ms(lambda: model.predict(one, verbose=0), 7, warmup=2),
        }
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
