"""Training-step time with fused batch norm (FusedBatchNormV3) against Keras' own, side by side.

Three builds of each model train on one in-memory batch, one step each in turn:
  keras:   every batch norm on the keras.ops path (Keras 3's BatchNormalization math);
  decoder: kerazoo's own batch-norm layers fused, the Keras Applications encoder's not;
  all:     the default of `create_model`: the encoder's batch norm fused as well.
Each build's first step (tracing) is timed once, then `--warmup` untimed rounds, then the median of
`--runs` rounds. The printed ratio is a build's median over the keras build's (< 1 is faster).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/batch_norm.py                 # U-Net ResNet50 and SegNet-Basic
    PYTHONPATH=$PWD .venv/bin/python benchmarks/batch_norm.py --cases unet:resnet50 --precisions float32

Speed is a ratio measured side by side in one process; the machines here are shared and noisy.
Measured 2026-12-01 (2-core AMD EPYC with AVX-512 and AVX512-BF16, no AMX; shared with other jobs), batch 4, 256x256, ratio all / keras:
U-Net ResNet50 0.885 float32, 0.763 mixed_bfloat16; SegNet-Basic 0.92-0.93 float32, 0.69-0.90 mixed_bfloat16.
"""

import argparse
import contextlib
import gc
import os
import statistics
import subprocess
import sys
import threading
import time
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerazoo  # noqa: E402
from kerazoo import encoders, layers  # noqa: E402

BUILDS = ("keras", "decoder", "all")


def rss_watchdog(limit_mib):
    """Ends the process when its resident memory passes `limit_mib` (the machine is shared)."""

    def watch():
        while True:
            with open("/proc/self/status") as status:
                rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
            if rss_kib > limit_mib * 1024:
                print(f"RSS {rss_kib // 1024} MiB passed --max-rss-mib {limit_mib}; stopping", flush=True)
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def build(case, build_name):
    """The case's model with the batch-norm path of `build_name`, compiled for training."""
    name, _, encoder = case.partition(":")
    with mock.patch.object(encoders, "FUSE_BATCH_NORM", build_name == "all"):
        model = kerazoo.create_model(name, encoder=encoder or None, num_classes=12, encoder_weights=None)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def keras_path_while(build_name):
    """While tracing the keras build, every kerazoo BatchNormalization takes Keras' own path."""
    if build_name != "keras":
        return contextlib.nullcontext()
    return mock.patch.object(layers.BatchNormalization, "_fused_applies", lambda *args: False)


def measure(case, precision, batch_size, image_size, warmup, runs, builds=BUILDS):
    keras.backend.clear_session()
    gc.collect()
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch_size, *image_size, 3)).astype("float32")
    masks = rng.integers(0, 12, (batch_size, *image_size)).astype("int32")
    models, first_step, times = {}, {}, {name: [] for name in builds}
    for name in builds:
        models[name] = build(case, name)
        start = time.perf_counter()
        with keras_path_while(name):
            models[name].train_on_batch(images, masks)
        first_step[name] = time.perf_counter() - start
    for round_number in range(warmup + runs):
        for name in builds:  # alternate, so that load from other jobs hits every build alike
            start = time.perf_counter()
            models[name].train_on_batch(images, masks)
            if round_number >= warmup:
                times[name].append(time.perf_counter() - start)
    medians = {name: 1000 * statistics.median(times[name]) for name in builds}
    for name in builds:
        ratio = medians[name] / medians["keras"]
        print(f"{case:16s} {precision:9s} {name:8s} step {medians[name]:7.1f} ms  ratio {ratio:.3f}"
              f"  first step {first_step[name]:5.1f} s", flush=True)
    keras.mixed_precision.set_global_policy("float32")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["unet:resnet50", "segnet_basic"],
                        help="model[:encoder] names for create_model")
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, nargs=2, default=(256, 256), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--builds", nargs="+", default=list(BUILDS), choices=BUILDS,
                        help="which builds to compare (keras is the reference and always runs)")
    parser.add_argument("--max-rss-mib", type=int, default=6000)
    args = parser.parse_args(argv)
    rss_watchdog(args.max_rss_mib)
    cpu = subprocess.run("lscpu | grep -o 'amx[a-z_0-9]*\\|avx512_bf16' | sort -u", shell=True, capture_output=True,
                         text=True).stdout.split()
    print(f"backend {keras.backend.backend()}, keras {keras.__version__}, "
          f"CPU bfloat16 units: {', '.join(cpu) or 'none'}")
    for case in args.cases:
        for precision in args.precisions:
            builds = ("keras",) + tuple(name for name in args.builds if name != "keras")
            measure(case, precision, args.batch_size, tuple(args.image_size), args.warmup, args.runs, builds)


if __name__ == "__main__":
    sys.exit(main())
