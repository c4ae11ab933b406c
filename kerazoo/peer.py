"""The benchmark's peer: the same U-Net in segmentation-models-pytorch (smp), measured like kerazoo's.

kerazoo's U-Net with `upsampling="nearest"` is smp's `Unet`: five decoder stages that upsample by 2
(nearest), concatenate the encoder's feature at that stride and apply two 3x3 convolution + batch norm
+ ReLU blocks, with the same widths (`decoder_filters` = smp's `decoder_channels`). What differs:
smp's head is a 3x3 convolution (kerazoo's is 1x1), torchvision's ResNet strides in the 3x3
convolution of a bottleneck (Keras Applications' in the first 1x1), and kerazoo's model holds its
input preprocessing. Optional: `pip install "kerazoo[peer]"` (torch, torchvision, smp).

torch crashes in a process that imported TensorFlow first (measured: the first forward pass dies
without a message), so `measure` runs as a script in its own interpreter (`run_in_subprocess`), and
this module imports nothing from kerazoo: importing the `kerazoo` package loads TensorFlow.
"""

import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

# Encoders whose U-Net is the same in both: kerazoo taps MobileNetV2's expansion layers (96, 144, 192 and
# 576 channels), smp its block outputs (16, 24, 32, 96), so their decoders differ (12% of parameters).
SMP_ENCODERS = {"resnet50": "resnet50", "resnet101": "resnet101", "resnet152": "resnet152"}
_MATCHING_OPTIONS = {"upsampling", "decoder_filters"}


def unavailable_reason(case):
    """Why `case` has no peer here, or None when it has one."""
    if case.model != "unet":
        return f"the peer is smp's U-Net; {case.model!r} has no equivalent there"
    if case.encoder not in SMP_ENCODERS:
        return f"encoder {case.encoder!r} has no smp equivalent (peer encoders: {', '.join(SMP_ENCODERS)})"
    options = dict(case.options)
    if options.get("upsampling", "transpose") != "nearest":
        return "smp's U-Net upsamples by nearest neighbour: add the option upsampling=nearest"
    unmatched = sorted(set(options) - _MATCHING_OPTIONS)
    if unmatched:
        return f"options {unmatched} have no smp equivalent"
    if importlib.util.find_spec("segmentation_models_pytorch") is None:
        return 'segmentation-models-pytorch is not installed (pip install "kerazoo[peer]")'
    return None


def decoder_channels(case):
    """The case's U-Net decoder widths (smp's `decoder_channels`)."""
    from kerazoo.models.unet import DEFAULT_DECODER_FILTERS

    return [int(f) for f in dict(case.options).get("decoder_filters", DEFAULT_DECODER_FILTERS)]


def describe(case):
    return f"smp.Unet({SMP_ENCODERS[case.encoder]}, decoder_channels={tuple(decoder_channels(case))})"


def run_in_subprocess(case, num_classes, train_batch_size, batch_sizes, warmup, runs, threads):
    """`measure` for `case` in a fresh interpreter (-P: this file's folder stays off sys.path)."""
    arguments = {"encoder": SMP_ENCODERS[case.encoder], "decoder_channels": decoder_channels(case),
                 "image_size": list(case.image_size), "num_classes": num_classes,
                 "train_batch_size": train_batch_size, "batch_sizes": list(batch_sizes), "warmup": warmup,
                 "runs": runs, "threads": threads}
    completed = subprocess.run([sys.executable, "-P", __file__, json.dumps(arguments)], capture_output=True,
                               text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"the peer failed (exit {completed.returncode}): {completed.stderr[-2000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["description"] = describe(case)
    return result


# ----------------------------------------------------------------------------------------------------
# The peer's process (no kerazoo, no TensorFlow). Same helpers as kerazoo.benchmark, which it cannot import.


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_runs(call, warmup, runs):
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def measure(encoder, decoder_channels, image_size, num_classes, train_batch_size, batch_sizes, warmup, runs,
            threads):
    """Training step time (Adam, cross-entropy) and eager inference latency, channels-last (smp's
    fastest layout on CPU), in the same form as kerazoo's measurements."""
    import segmentation_models_pytorch as smp
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    baseline_mib = peak_rss_mib()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = smp.Unet(encoder_name=encoder, encoder_weights=None, decoder_channels=decoder_channels,
                     classes=num_classes).to(memory_format=torch.channels_last)
    rng = np.random.default_rng(0)
    height, width = image_size

    def images(batch_size):
        pixels = rng.uniform(0, 255, (batch_size, 3, height, width)).astype("float32")
        return torch.from_numpy(pixels).contiguous(memory_format=torch.channels_last)

    model.eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(images(1))
    forward_flops = counter.get_total_flops()

    model.train()
    optimizer = torch.optim.Adam(model.parameters())
    inputs = images(train_batch_size)
    masks = torch.from_numpy(rng.integers(0, num_classes, (train_batch_size, height, width)))

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(inputs), masks)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    train_step()
    first_step = time.perf_counter() - start
    steps = timed_runs(train_step, warmup - 1, runs)
    step = statistics.median(steps)
    training = {"first_step_seconds": first_step, "step_seconds": step, "step_seconds_all": steps,
                "images_per_second": train_batch_size / step, "peak_rss_mib": peak_rss_mib(),
                "added_rss_mib": peak_rss_mib() - baseline_mib}

    model.eval()
    latency = {}
    with torch.inference_mode():
        for batch_size in batch_sizes:
            batch = images(batch_size)
            latency[str(batch_size)] = 1000 * statistics.median(timed_runs(lambda: model(batch), warmup, runs))
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "forward_flops": forward_flops,
        "threads": torch.get_num_threads(),
        "training": training,
        "inference": {"latency_ms": latency},
    }


if __name__ == "__main__":
    print(json.dumps(measure(**json.loads(sys.argv[1]))))
