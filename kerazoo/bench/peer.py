"""The benchmark's peer: the same U-Net in segmentation-models-pytorch (smp), measured like kerazoo's.

kerazoo's U-Net with `upsampling="nearest"` is smp's `Unet`: five decoder stages that upsample by 2
(nearest), concatenate the encoder's feature at that stride and apply two 3x3 convolution + batch norm
+ ReLU blocks, with the same widths (`decoder_filters` = smp's `decoder_channels`). What differs:
smp's head is a 3x3 convolution (kerazoo's is 1x1), torchvision's ResNet strides in the 3x3
convolution of a bottleneck (Keras Applications' in the first 1x1), and kerazoo's model holds its
input preprocessing. Optional: `pip install "kerazoo[peer]"` (torch, torchvision, smp).
`run_model_in_subprocess` measures any smp model the same way (benchmarks/decoder_speed.py: the other decoders).

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


# The peer's modes, each with its precision class: kerazoo's float32 is compared with the best float32 mode,
# its mixed_bfloat16 with the best bfloat16 one.
PEER_MODES = {"eager": "float32", "bf16_autocast": "bfloat16", "compile": "float32"}
MODE_DESCRIPTIONS = {"eager": "float32 eager, channels_last", "bf16_autocast": "bfloat16 autocast, channels_last",
                     "compile": "float32 torch.compile, channels_last"}
MODE_TIMEOUT_SECONDS = 1800  # torch.compile builds C++ kernels with the system compiler: minutes on 2 cores


def run_in_subprocess(case, num_classes, train_batch_size, batch_sizes, warmup, runs, threads, modes=tuple(PEER_MODES),
                      timeout=MODE_TIMEOUT_SECONDS):
    """`measure` of smp's U-Net matching `case` in each of `modes`, each in a fresh interpreter.

    Returns:
        {"description": ..., "modes": {mode: measured dict, or {"error": reason}}}.
    """
    return run_model_in_subprocess("Unet", {"decoder_channels": decoder_channels(case)}, SMP_ENCODERS[case.encoder],
                                   case.image_size, num_classes, train_batch_size, batch_sizes, warmup, runs,
                                   threads, modes, timeout, description=describe(case))


def run_model_in_subprocess(model_class, model_options, encoder, image_size, num_classes, train_batch_size,
                            batch_sizes, warmup, runs, threads, modes=tuple(PEER_MODES), timeout=MODE_TIMEOUT_SECONDS,
                            description=None):
    """`measure` of `smp.<model_class>(encoder, **model_options)` in each of `modes`, each in a fresh interpreter
    (-P: this file's folder stays off sys.path). A mode that fails or passes `timeout` seconds is reported with
    its reason, not raised.

    Returns:
        {"description": ..., "modes": {mode: measured dict, or {"error": reason}}}.
    """
    unknown = [mode for mode in modes if mode not in PEER_MODES]
    if unknown:
        raise ValueError(f"unknown peer modes {unknown}; valid: {', '.join(PEER_MODES)}")
    arguments = {"encoder": encoder, "model_class": model_class, "model_options": dict(model_options),
                 "image_size": list(image_size), "num_classes": num_classes,
                 "train_batch_size": train_batch_size, "batch_sizes": list(batch_sizes), "warmup": warmup,
                 "runs": runs, "threads": threads}
    measured = {}
    for mode in modes:
        try:
            completed = subprocess.run([sys.executable, "-P", __file__, json.dumps({**arguments, "mode": mode})],
                                       capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            measured[mode] = {"error": f"took more than {timeout} s"}
            continue
        if completed.returncode != 0:
            measured[mode] = {"error": f"exit {completed.returncode}: {_last_error_line(completed.stderr)}"}
            continue
        measured[mode] = json.loads(completed.stdout.strip().splitlines()[-1])
    return {"description": description or describe_model(model_class, encoder, model_options), "modes": measured}


def describe_model(model_class, encoder, model_options):
    options = "".join(f", {key}={value!r}" for key, value in model_options.items())
    return f"smp.{model_class}({encoder}{options})"


def _last_error_line(stderr):
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "no message"


def best_modes(modes):
    """The peer's fastest mode in each precision class, by training step and by inference batch size.

    Args:
        modes: {mode: measured dict or {"error": ...}}, as `run_in_subprocess` returns them.

    Returns:
        {precision class: {"training_step": (mode, seconds), "inference_batch<b>": (mode, ms), ...}}; a class
        none of whose modes ran is absent.
    """
    best = {}
    for mode, measured in modes.items():
        if "error" in measured:
            continue
        entries = best.setdefault(PEER_MODES[mode], {})
        candidates = {"training_step": measured["training"]["step_seconds"],
                      **{f"inference_batch{batch}": ms for batch, ms in measured["inference"]["latency_ms"].items()}}
        for key, value in candidates.items():
            if key not in entries or value < entries[key][1]:
                entries[key] = (mode, value)
    return best


# ----------------------------------------------------------------------------------------------------
# The peer's process (no kerazoo, no TensorFlow). Same helpers as kerazoo.bench.benchmark, which it cannot import.


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


def measure(encoder, image_size, num_classes, train_batch_size, batch_sizes, warmup, runs, threads, mode="eager",
            model_class="Unet", model_options=None):
    """`smp.<model_class>(encoder, **model_options)` with random weights: its training step time (Adam,
    cross-entropy) and inference latency in one of `PEER_MODES`, channels-last
    (smp's fastest layout on CPU), in the same form as kerazoo's measurements. With "compile" the first step
    includes torch.compile's compilation; with "bf16_autocast" forward and loss run under
    `torch.autocast("cpu", torch.bfloat16)` (weights and optimizer stay float32, like Keras' mixed_bfloat16)."""
    import contextlib

    import segmentation_models_pytorch as smp
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    baseline_mib = peak_rss_mib()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = getattr(smp, model_class)(encoder_name=encoder, encoder_weights=None, classes=num_classes,
                                      **(model_options or {})).to(memory_format=torch.channels_last)
    rng = np.random.default_rng(0)
    height, width = image_size

    def images(batch_size):
        pixels = rng.uniform(0, 255, (batch_size, 3, height, width)).astype("float32")
        return torch.from_numpy(pixels).contiguous(memory_format=torch.channels_last)

    model.eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(images(1))
    forward_flops = counter.get_total_flops()

    def precision():
        if mode == "bf16_autocast":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    run = torch.compile(model) if mode == "compile" else model
    model.train()
    optimizer = torch.optim.Adam(model.parameters())
    inputs = images(train_batch_size)
    masks = torch.from_numpy(rng.integers(0, num_classes, (train_batch_size, height, width)))

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with precision():
            loss = torch.nn.functional.cross_entropy(run(inputs).float(), masks)
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
    with torch.inference_mode(), precision():
        for batch_size in batch_sizes:
            batch = images(batch_size)
            latency[str(batch_size)] = 1000 * statistics.median(timed_runs(lambda: run(batch), warmup, runs))
    return {
        "mode": mode,
        "model": describe_model(model_class, encoder, model_options or {}),
        "params": sum(p.numel() for p in model.parameters()),
        "forward_flops": forward_flops,
        "threads": torch.get_num_threads(),
        "training": training,
        "inference": {"latency_ms": latency},
    }


def peak_in_subprocess(sizes, runs=10, threads=None, timeout=600):
    """torch's float32 matrix-product rate at each of `sizes` (as `kerazoo.bench.benchmark.measure_peak_flops`
    measures TensorFlow's), in a fresh interpreter; {"error": reason} when it fails."""
    arguments = {"mode": "peak", "sizes": list(sizes), "runs": runs, "threads": threads}
    try:
        completed = subprocess.run([sys.executable, "-P", __file__, json.dumps(arguments)],
                                   capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"took more than {timeout} s"}
    if completed.returncode != 0:
        return {"error": f"exit {completed.returncode}: {_last_error_line(completed.stderr)}"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def measure_peak(sizes, runs, threads=None):
    """GFLOP/s of float32 size^3 products in torch (median of `runs` after 2 warm-up runs), and the best."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    by_size = {}
    for size in sizes:
        a, b = torch.rand(size, size), torch.rand(size, size)
        median = statistics.median(timed_runs(lambda: float(torch.matmul(a, b).sum()), 2, runs))
        by_size[str(size)] = 2 * size**3 / median / 1e9
    best = max(by_size, key=by_size.get)
    return {"peak_gflops": by_size[best], "matmul_size": int(best), "by_size": by_size, "library": "torch"}


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    if request.get("mode") == "peak":
        print(json.dumps(measure_peak(request["sizes"], request["runs"], request.get("threads"))))
    else:
        print(json.dumps(measure(**request)))
