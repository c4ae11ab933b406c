"""Where a training step's time goes: kerazoo (TensorFlow's profiler) against smp (torch's profiler), per op.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/step_profile.py --precision bfloat16 [--image-size 256 --batch-size 4]

U-Net ResNet50 (nearest upsampling), or `--decoder` with benchmarks/decoder_speed.py's matched pair; 12 classes,
Adam, cross-entropy, random weights and one in-memory batch, as
`kerazoo benchmark --peer` measures it: kerazoo through `ZooModel.compile("adam")` + `train_on_batch` under the
Keras policy (float32 or mixed_bfloat16), smp's `Unet` channels-last in float32 eager or under bfloat16
autocast. Each side runs in a fresh process: warm-up steps, then `--steps` profiled steps. The op times of both
profilers are summed per op type (each op's own time: TensorFlow's executor events, torch's self CPU time) and
grouped into the same categories, per step. Both lists count time spent inside ops; the rest of the wall step
(Python, the executor, waiting) has no op running. TensorFlow runs independent ops at once (inter-op threads),
so its op times add up to more than the time with an op running (their intervals' union). Prints a JSON line per side and a Markdown table.
"""

import argparse
import collections
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from decoder_speed import CONFIGURATIONS, ENCODER
from interleaved_step import kerazoo_step, smp_step

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# First match wins; op types (TensorFlow) and aten names (torch) in lower case.
CATEGORIES = (
    ("convolution, backward", r"backprop|convolution_backward"),
    ("convolution, forward", r"conv"),
    ("batch norm", r"batchnorm|batch_norm"),
    ("optimizer update", r"adam|^optimizer |assignvariable|assignadd|readvariable"),
    ("casts and copies", r"^cast$|aten::to$|_to_copy|copy_|clone|contiguous"),
    ("upsampling and concatenation", r"resize|upsample|concat|aten::cat"),
    ("loss", r"softmax|cross_entropy|nll_loss"),
    ("pooling", r"pool"),
    ("elementwise and the rest", r"."),
)


def category(op_name):
    name = op_name.lower()
    return next(label for label, pattern in CATEGORIES if re.search(pattern, name))


def _union_ms(intervals_ps):
    """Milliseconds covered by at least one of the (start, end) intervals: ops running at once count once."""
    covered, reach = 0, None
    for start, end in sorted(intervals_ps):
        if reach is None or start > reach:
            covered, reach = covered + end - start, end
        elif end > reach:
            covered, reach = covered + end - reach, end
    return covered / 1e9


def profile_keras(decoder, precision, image_size, batch_size, warmup, steps):
    """Op self-times (ms per step) of kerazoo's training step from TensorFlow's profiler trace."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    train_step = kerazoo_step(decoder, precision, "default", image_size, batch_size)
    for _ in range(warmup):
        train_step()
    with tempfile.TemporaryDirectory() as log_dir:
        tf.profiler.experimental.start(log_dir)
        start = time.perf_counter()
        for _ in range(steps):
            train_step()
        wall = (time.perf_counter() - start) / steps
        tf.profiler.experimental.stop()
        trace = glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"), recursive=True)[0]
        space = xplane_pb2.XSpace()
        with open(trace, "rb") as handle:
            space.ParseFromString(handle.read())
    op_ms, intervals = collections.Counter(), []
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                op_type = name.rsplit(":", 1)[-1].strip()
                # "layer/op_name:OpType" is an executed op; "Class::method" and "name:__inference_*" (the
                # function holding the ops) are the framework.
                if ":" in name and "::" not in name and not op_type.startswith("__"):
                    op_ms[op_type] += event.duration_ps / 1e9 / steps
                    start_ps = line.timestamp_ns * 1000 + event.offset_ps
                    intervals.append((start_ps, start_ps + event.duration_ps))
    return wall * 1000, op_ms, _union_ms(intervals) / steps


def profile_peer(decoder, precision, image_size, batch_size, warmup, steps):
    """Op self-times (ms per step) of smp's training step from torch's profiler."""
    import torch

    train_step = smp_step(decoder, precision, image_size, batch_size)
    for _ in range(warmup):
        train_step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        for _ in range(steps):
            train_step()
        wall = (time.perf_counter() - start) / steps
    op_ms = collections.Counter()
    for event in profiler.events():
        if not event.name.startswith(("aten::", "mkldnn")):
            continue
        parent, in_optimizer = event.cpu_parent, False
        while parent is not None and not in_optimizer:
            in_optimizer, parent = parent.name.startswith("Optimizer.step"), parent.cpu_parent
        # Adam on CPU runs plain aten ops (mul_, addcmul_, ...): name them by the optimizer that called them.
        op_ms[("optimizer " if in_optimizer else "") + event.name] += event.self_cpu_time_total / 1000 / steps
    return wall * 1000, op_ms, None


def run_side(side, args):
    profile = profile_keras if side == "kerazoo" else profile_peer
    wall_ms, op_ms, busy_ms = profile(args.decoder, args.precision, args.image_size, args.batch_size, args.warmup,
                                      args.steps)
    by_category = collections.Counter()
    for op, ms in op_ms.items():
        by_category[category(op)] += ms
    return {"side": side, "decoder": args.decoder, "precision": args.precision, "wall_ms": wall_ms, "op_ms_total": sum(op_ms.values()),
            "ops_running_ms": sum(op_ms.values()) if busy_ms is None else busy_ms,
            "categories_ms": dict(by_category), "top_ops_ms": dict(op_ms.most_common(15))}


def table(results):
    names = [label for label, _ in CATEGORIES]
    lines = ["| ms per step | " + " | ".join(r["side"] for r in results) + " |",
             "|---|" + "---:|" * len(results)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{r['categories_ms'].get(name, 0.0):.0f}" for r in results) + " |")
    lines.append("| **sum of op times** | " + " | ".join(f"**{r['op_ms_total']:.0f}**" for r in results) + " |")
    lines.append("| time with an op running | " + " | ".join(f"{r['ops_running_ms']:.0f}" for r in results) + " |")
    lines.append("| no op running (wall - the above) | " + " | ".join(
        f"{r['wall_ms'] - r['ops_running_ms']:.0f}" for r in results) + " |")
    lines.append("| **wall step** | " + " | ".join(f"**{r['wall_ms']:.0f}**" for r in results) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decoder", choices=sorted(CONFIGURATIONS), default="unet",
                        help="a matched kerazoo / smp pair of benchmarks/decoder_speed.py")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps")
    parser.add_argument("--side", choices=("kerazoo", "smp"), help="run one side in this process (internal)")
    args = parser.parse_args(argv)
    if args.side:
        print(json.dumps(run_side(args.side, args)))
        return
    results = []
    for side in ("kerazoo", "smp"):
        command = [sys.executable, __file__, "--side", side] + [
            f"--{key.replace('_', '-')}={value}" for key, value in vars(args).items() if key != "side"]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
        print(json.dumps(results[-1]))
    from kerazoo.utils.cpu import cpu_kind

    kind = cpu_kind()
    print(f"\n{kind['model_name']} ({kind['kind']}); {args.decoder} {ENCODER} {args.image_size}x{args.image_size}, "
          f"batch {args.batch_size}, "
          f"{args.precision}, {args.steps} profiled steps\n")
    print(table(results))


if __name__ == "__main__":
    main()
