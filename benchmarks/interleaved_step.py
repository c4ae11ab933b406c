"""Training steps of kerazoo and smp taken in turn, one step each per round, so that a shared CPU's load falls on both.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/interleaved_step.py --precision bfloat16 [--rounds 15]
    PYTHONPATH=$PWD .venv/bin/python benchmarks/interleaved_step.py --precision float32 --variants default inter_op_1
    PYTHONPATH=$PWD .venv/bin/python benchmarks/interleaved_step.py --decoder deeplabv3    # decoder_speed.py's pairs

`kerazoo benchmark --peer` measures each side in its own process one after the other; on a machine whose
neighbours come and go (step times here swing by +-30% within a minute) the two sides then see different loads.
Here each side lives in its own process (TensorFlow and torch never share one), both warm up, then they take
one training step each in turn, `--rounds` times, each step timed by its own process; nothing else runs
between. Reported: each side's median step, the ratio of the medians and the median of the per-round ratios.
U-Net ResNet50 (nearest upsampling) by default, or `--decoder` with the matched kerazoo / smp configuration of
benchmarks/decoder_speed.py; 256x256 and batch 4 by default, 12 classes, Adam, cross-entropy, random weights, one
in-memory batch, as in `kerazoo benchmark`: kerazoo through `ZooModel.compile("adam")` + `model.fit`'s train
function (`train_on_batch`); smp channels-last in float32 eager or under bfloat16 autocast.
kerazoo variants (each its own process, all in the same rounds): "default"; "inter_op_1" (TensorFlow's
inter-op pool at one thread: one op at a time, each with every core).
"""

import argparse
import json
import multiprocessing
import os
import statistics
import time

from decoder_speed import CONFIGURATIONS, ENCODER

NUM_CLASSES = 12
VARIANTS = ("default", "inter_op_1")


def _batch(image_size, batch_size):
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    masks = rng.integers(0, NUM_CLASSES, (batch_size, image_size, image_size)).astype("int32")
    return images, masks


def kerazoo_step(decoder, precision, variant, image_size, batch_size):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    import kerazoo

    if variant == "inter_op_1":
        tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
    model = kerazoo.create_model(decoder, encoder=ENCODER, num_classes=NUM_CLASSES, encoder_weights=None,
                                 input_shape=(image_size, image_size, 3), **CONFIGURATIONS[decoder][0])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, masks = _batch(image_size, batch_size)
    return lambda: model.train_on_batch(images, masks)


def smp_step(decoder, precision, image_size, batch_size):
    import contextlib

    import segmentation_models_pytorch as smp
    import torch

    torch.manual_seed(0)
    _, smp_class, smp_options, _ = CONFIGURATIONS[decoder]
    model = getattr(smp, smp_class)(encoder_name=ENCODER, encoder_weights=None, classes=NUM_CLASSES,
                                    **smp_options).to(memory_format=torch.channels_last)
    images, masks = _batch(image_size, batch_size)
    inputs = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=torch.channels_last)
    targets = torch.from_numpy(masks).long()
    optimizer = torch.optim.Adam(model.parameters())
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bfloat16"
                    else contextlib.nullcontext())
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(inputs).float(), targets)
        loss.backward()
        optimizer.step()

    return step


def worker(connection, decoder, side, precision, variant, image_size, batch_size, warmup):
    """Builds one side, warms it up, then times one step per "step" message until "stop"."""
    if side == "smp":
        step = smp_step(decoder, precision, image_size, batch_size)
    else:
        step = kerazoo_step(decoder, precision, variant, image_size, batch_size)
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(warmup - 1):
        step()
    connection.send(first)
    while connection.recv() == "step":
        start = time.perf_counter()
        step()
        connection.send(time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decoder", choices=sorted(CONFIGURATIONS), default="unet")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["default"])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    context = multiprocessing.get_context("spawn")
    sides = [("smp", None)] + [("kerazoo", variant) for variant in args.variants]
    connections, processes = {}, []
    for side, variant in sides:  # built and warmed one at a time, so that no two compete while tracing
        parent, child = context.Pipe()
        process = context.Process(target=worker, args=(child, args.decoder, side, args.precision, variant, args.image_size,
                                                              args.batch_size, args.warmup))
        process.start()
        parent.recv()
        connections[(side, variant)], processes = parent, processes + [process]
    times = {key: [] for key in connections}
    for round_index in range(args.rounds):
        for key, connection in connections.items():
            connection.send("step")
            times[key].append(connection.recv())
        print(f"round {round_index + 1}/{args.rounds}: " + ", ".join(
            f"{key[1] or key[0]} {1000 * times[key][-1]:.0f} ms" for key in times), flush=True)
    for connection in connections.values():
        connection.send("stop")
    for process in processes:
        process.join()

    from kerazoo.utils.cpu import cpu_kind

    peer = times[("smp", None)]
    results = {"cpu": cpu_kind(), "decoder": args.decoder, "encoder": ENCODER, "precision": args.precision,
               "kerazoo_options": CONFIGURATIONS[args.decoder][0], "smp_class": CONFIGURATIONS[args.decoder][1],
               "smp_options": CONFIGURATIONS[args.decoder][2], "rounds": args.rounds,
               "image_size": args.image_size, "batch_size": args.batch_size,
               "smp_step_ms": 1000 * statistics.median(peer), "kerazoo": {}}
    for (side, variant), seconds in times.items():
        if side == "kerazoo":
            results["kerazoo"][variant] = {
                "step_ms": 1000 * statistics.median(seconds),
                "ratio_of_medians": statistics.median(seconds) / statistics.median(peer),
                "median_round_ratio": statistics.median(k / p for k, p in zip(seconds, peer)),
                "step_ms_all": [1000 * s for s in seconds]}
    results["smp_step_ms_all"] = [1000 * s for s in peer]
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
