"""float32 against mixed_bfloat16 on this CPU, side by side in one process.

Builds U-Net (nearest upsampling) twice, once under each Keras dtype policy, compiles both (Adam,
cross-entropy), then alternates: training steps on one in-memory batch (`train_on_batch`) and batch-1
inference in a `tf.function`, one model after the other, and prints the medians and the bf16/fp32
ratios as JSON, with what `kerazoo.utils.cpu.bfloat16_support` found.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bfloat16.py                 # U-Net ResNet50, 256x256, batch 4
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bfloat16.py --image-size 128 --runs 5
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

PRECISIONS = ("float32", "mixed_bfloat16")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--runs", type=int, default=8, help="timed rounds (after one untimed one)")
    args = parser.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    import kerazoo
    from kerazoo.utils.cpu import bfloat16_support

    rng = np.random.default_rng(0)
    size = (args.image_size, args.image_size)
    images = rng.uniform(0, 255, (args.batch_size, *size, 3)).astype("float32")
    masks = rng.integers(0, 12, (args.batch_size, *size)).astype("int32")
    one = tf.constant(images[:1])
    models, calls, first = {}, {}, {}
    for precision in PRECISIONS:
        keras.mixed_precision.set_global_policy(precision)
        model = kerazoo.create_model("unet", encoder=args.encoder, num_classes=12, upsampling="nearest")
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        start = time.perf_counter()
        model.train_on_batch(images, masks)
        first[precision] = time.perf_counter() - start
        models[precision] = model
        calls[precision] = tf.function(lambda x, model=model: model(x, training=False))
    keras.mixed_precision.set_global_policy("float32")
    steps = {p: [] for p in PRECISIONS}
    latency = {p: [] for p in PRECISIONS}
    for round_index in range(args.runs + 1):
        for precision in PRECISIONS:
            start = time.perf_counter()
            models[precision].train_on_batch(images, masks)
            step = time.perf_counter() - start
            start = time.perf_counter()
            calls[precision](one).numpy()
            call = time.perf_counter() - start
            if round_index:  # the first round warms up (inference tracing, allocation)
                steps[precision].append(step)
                latency[precision].append(call)
    step = {p: statistics.median(v) for p, v in steps.items()}
    ms = {p: 1000 * statistics.median(v) for p, v in latency.items()}
    print(json.dumps({
        "cpu": bfloat16_support().describe(), "arguments": vars(args),
        "first_step_seconds": first, "training_step_seconds": step, "inference_batch1_ms": ms,
        "ratio_bf16_over_fp32": {"training_step": step["mixed_bfloat16"] / step["float32"],
                                 "inference_batch1": ms["mixed_bfloat16"] / ms["float32"]},
    }))


if __name__ == "__main__":
    main()
