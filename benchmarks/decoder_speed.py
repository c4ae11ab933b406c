"""Training step of each decoder on ResNet-50 against segmentation_models_pytorch's (smp) same model.

Issue 19's bar: no new decoder slower than smp's in its best mode at the same precision (ratio <= 1.0), and
U-Net (measured here too, with smp's nearest-neighbour upsampling) keeping its 0.81.
Each side runs in a fresh process per decoder: kerazoo through `model.compile("adam", cross-entropy)` (the
library's fused Adam) and `train_on_batch` on one random in-memory batch; smp through
`kerazoo.bench.peer` (eager float32 channels-last, Adam, CrossEntropyLoss; `--peer-modes` adds bf16 autocast
or torch.compile). A side's first step is timed alone (tracing, allocation); the step time is the median of
`--steps` steps after `--warmup` steps (the first one included).

    PYTHONPATH=$PWD python benchmarks/decoder_speed.py                        # all 9, 256x256, batch 4
    PYTHONPATH=$PWD python benchmarks/decoder_speed.py --decoders fpn linknet --peer-modes eager bf16_autocast

Configurations are the matched ones of `CONFIGURATIONS` (what still differs is printed with the table and
accounted for in docs/models.md); compare the parameter counts (trainable: torch counts no batch-norm
statistics). The JSON is rewritten atomically after each decoder; `--resume` keeps the decoders an earlier
run with the same settings measured. Needs `pip install "kerazoo[peer]"`.
"""

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ENCODER = "resnet50"
DEFAULT_JSON = Path(__file__).with_name("decoder_speed.json")

# decoder: (kerazoo options, smp class, smp options, what still differs). Matched where the two differ by
# default: DeepLabV3 at output stride 16 with the paper's rates (smp defaults to 8, and 12/24/36 for both),
# DeepLabV3+ separable (smp's only kind), PSPNet ending at stride 8 with a 1x1 fuse conv (smp's encoder_depth=3
# and fuse; kerazoo's default is the paper's dilated full encoder and 3x3 fuse), UPerNet with smp's 256 filters.
CONFIGURATIONS = {
    "unet": ({"upsampling": "nearest"}, "Unet", {}, "none in the layers (kerazoo's default upsampling is 'transpose')"),
    "deeplabv3": ({}, "DeepLabV3", {"encoder_output_stride": 16, "decoder_atrous_rates": [6, 12, 18]},
                  "smp adds a 3x3 conv 256 after ASPP"),
    "deeplabv3plus": ({"separable": True}, "DeepLabV3Plus", {"decoder_atrous_rates": [6, 12, 18]},
                      "kerazoo: two separable 3x3 after the concat; smp: one after ASPP, one after the concat"),
    "pspnet": ({"encoder_depth": 3, "fuse_kernel_size": 1}, "PSPNet", {},
               "head 1x1 vs smp's 3x3; smp counts unused ResNet stages 4-5 (the paper's 3x3 fuse conv, kerazoo's "
               "default, costs about 4x the encoder at this depth)"),
    "upernet": ({"pyramid_filters": 256}, "UPerNet", {}, "smp's LayerNorm on each encoder feature"),
    "unetplusplus": ({}, "UnetPlusPlus", {}, "head 1x1 vs smp's 3x3"),
    "fpn": ({}, "FPN", {}, "none in the layers (smp's dropout 0.2 before the head)"),
    "linknet": ({}, "Linknet", {}, "transposed convs 3x3 (paper) vs smp's 4x4"),
    "segformer": ({}, "Segformer", {}, "smp also embeds the stride-2 feature (five levels, not four)"),
}
PRECISION_CLASS = {"float32": "float32", "mixed_bfloat16": "bfloat16"}  # kerazoo policy -> peer's class


def parse_size(text):
    height, _, width = text.lower().partition("x")
    return int(height), int(width or height)


def kerazoo_training(decoder, options, image_size, num_classes, batch_size, warmup, steps, threads, precision):
    """Runs in a fresh process: first `train_on_batch` alone, then the median of `steps` after `warmup`."""
    import keras
    import tensorflow as tf

    import kerazoo
    from kerazoo.bench.benchmark import _random_batch, forward_flops, peak_rss_mib
    from kerazoo.utils.timing import timed_runs

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)  # as the peer's torch.set_num_threads
    keras.mixed_precision.set_global_policy(precision)  # this process is fresh: nothing else sees it
    keras.utils.set_random_seed(0)
    model = kerazoo.create_model(decoder, encoder=ENCODER, num_classes=num_classes, **options)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, masks = (keras.ops.convert_to_tensor(array) for array in
                     _random_batch(batch_size, image_size, num_classes))
    step = lambda: model.train_on_batch(images, masks)  # noqa: E731  (returns the loss as a number: synchronous)
    start = time.perf_counter()
    step()
    first_step = time.perf_counter() - start
    times = timed_runs(step, steps, warmup=warmup - 1)
    median = statistics.median(times)
    return {"precision": precision, "first_step_seconds": first_step, "step_seconds": median,
            "step_seconds_all": times, "images_per_second": batch_size / median,
            "params": sum(math.prod(w.shape) for w in model.trainable_weights),
            "count_params": model.count_params(), "forward_flops": forward_flops(model, image_size),
            "peak_rss_mib": peak_rss_mib()}


def measure_decoder(decoder, args, log):
    from kerazoo.bench import peer
    from kerazoo.bench.benchmark import _in_fresh_process

    options, smp_class, smp_options, differences = CONFIGURATIONS[decoder]
    result = {"decoder": decoder, "kerazoo_options": options, "smp_class": smp_class, "smp_options": smp_options,
              "differences": differences, "kerazoo": {}}
    for precision in args.precisions:
        log(f"[{decoder}] kerazoo {precision}: create_model({decoder!r}, encoder={ENCODER!r}, {options})")
        try:
            result["kerazoo"][precision] = _in_fresh_process(
                kerazoo_training, decoder, options, args.image_size, args.num_classes, args.batch_size,
                args.warmup, args.steps, args.threads, precision)
        except Exception as error:  # one side failing (killed for memory, say) is reported; the others go on
            result["kerazoo"][precision] = {"error": f"{type(error).__name__}: {error}"}
    log(f"[{decoder}] smp: {peer.describe_model(smp_class, ENCODER, smp_options)}, modes {', '.join(args.peer_modes)}")
    result["smp"] = peer.run_model_in_subprocess(smp_class, smp_options, ENCODER, args.image_size, args.num_classes,
                                                 args.batch_size, (), args.warmup, args.steps, args.threads,
                                                 args.peer_modes)
    result["ratio"] = ratios(result)
    return result


def ratios(result):
    """kerazoo's step time over smp's fastest mode of the same precision class (<= 1: kerazoo is no slower)."""
    from kerazoo.bench.peer import best_modes

    best = best_modes(result["smp"]["modes"])
    found = {}
    for precision, measured in result["kerazoo"].items():
        peer_best = best.get(PRECISION_CLASS[precision], {}).get("training_step")
        if "error" not in measured and peer_best:
            mode, seconds = peer_best
            found[precision] = {"ratio": measured["step_seconds"] / seconds, "smp_mode": mode}
    return found


def _count(value):
    return f"{value:,}" if value else "?"  # exact: the lead checks the configurations match


def markdown(results):
    settings = results["settings"]
    cpu = results["machine"]["cpu"]
    lines = ["# Each decoder's training step against smp's", "",
             f"Training step, {ENCODER}, {settings['image_size'][0]}x{settings['image_size'][1]}, batch "
             f"{settings['batch_size']}, median of {settings['steps']} steps after {settings['warmup']} "
             f"({cpu['model_name']}, {cpu.get('kind', 'CPU kind not recorded')}, {settings['threads']} threads"
             + (f", {results['date']}" if results.get("date") else "") + "). Ratio = kerazoo / smp's "
             "fastest mode of the same precision (<= 1.0: kerazoo is no slower).", ""]
    if results.get("command"):
        lines += [f"`PYTHONPATH=$PWD python benchmarks/{results['command']}`", ""]
    lines += [
              "| decoder | kerazoo options | smp | precision | kerazoo step s | smp step s (mode) | ratio "
              "| first step s kerazoo / smp | params kerazoo / smp |",
              "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for result in results["decoders"]:
        modes = result["smp"]["modes"]
        for precision, measured in result["kerazoo"].items():
            ratio = result["ratio"].get(precision)
            smp_mode = ratio["smp_mode"] if ratio else next(
                (mode for mode in modes if "error" not in modes[mode]), None)
            smp = modes.get(smp_mode, {})
            smp_cells = (f"{smp['training']['step_seconds']:.3f} ({smp_mode}) | "
                         if smp_mode else f"failed: {'; '.join(m['error'][:80] for m in modes.values())} | ")
            if "error" in measured:
                ours = f"failed: {measured['error'][:80]}"
                cells = f"{ours} | {smp_cells}n/a | | "
            else:
                first_smp = f"{smp['training']['first_step_seconds']:.2f}" if smp_mode else "?"
                ratio_cell = f"{ratio['ratio']:.2f}" if ratio else "n/a"
                cells = (f"{measured['step_seconds']:.3f} | {smp_cells}{ratio_cell} | "
                         f"{measured['first_step_seconds']:.2f} / {first_smp} | ")
            params = f"{_count(measured.get('params'))} / {_count(smp.get('params'))}"
            lines.append(f"| {result['decoder']} | {_options(result['kerazoo_options'])} | {result['smp_class']}"
                         f"{_options(result['smp_options'], '(', ')')} | {precision} | {cells}{params} |")
    lines += ["", "What still differs in the layers:", ""]
    lines += [f"- {result['decoder']}: {result['differences']}" for result in results["decoders"]]
    return "\n".join(lines) + "\n"


def _options(options, before="", after=""):
    if not options:
        return "defaults" if not before else ""
    return before + ", ".join(f"{key}={value}" for key, value in options.items()) + after


def main(argv=None):
    from kerazoo.bench.peer import PEER_MODES

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decoders", nargs="+", default=list(CONFIGURATIONS), choices=list(CONFIGURATIONS))
    parser.add_argument("--image-size", type=parse_size, default=(256, 256), help="HxW (default 256x256)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps, the first one included")
    parser.add_argument("--threads", type=int, default=None, help="both sides' intra-op threads (default: CPUs)")
    parser.add_argument("--num-classes", type=int, default=12)
    parser.add_argument("--precisions", nargs="+", default=["float32"], choices=list(PRECISION_CLASS),
                        help="kerazoo's Keras dtype policies")
    parser.add_argument("--peer-modes", nargs="+", default=["eager"], choices=list(PEER_MODES))
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--resume", action="store_true", help="keep decoders already in --json (same settings)")
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1 or args.batch_size < 1:
        parser.error("--warmup, --steps and --batch-size must be >= 1")
    args.threads = args.threads or os.cpu_count()
    run(args)
    return 0


def run(args, log=print):
    from kerazoo.bench.benchmark import _versions
    from kerazoo.utils.cpu import cpu_kind
    from kerazoo.utils.files import atomic_write_text

    settings = {"encoder": ENCODER, "image_size": list(args.image_size), "batch_size": args.batch_size,
                "steps": args.steps, "warmup": args.warmup, "threads": args.threads, "num_classes": args.num_classes,
                "precisions": list(args.precisions), "peer_modes": list(args.peer_modes)}
    done = {}
    if args.resume and args.json.exists():
        earlier = json.loads(args.json.read_text())
        if earlier.get("settings") == settings:
            done = {result["decoder"]: result for result in earlier["decoders"] if _complete(result)}
            log(f"resuming: {', '.join(done) or 'nothing'} already measured")
        else:
            log(f"not resuming: {args.json} has other settings")
    results = {"machine": {"cpu": cpu_kind(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                           **_versions(True)},
               "settings": settings, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
               "date": time.strftime("%Y-%m-%d"), "decoders": []}
    for decoder in args.decoders:
        results["decoders"].append(done.get(decoder) or measure_decoder(decoder, args, log))
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")  # a killed run keeps what it measured
    table = markdown(results)
    log(table)
    if args.markdown:
        atomic_write_text(args.markdown, table)
    return results


def _complete(result):
    sides = list(result["kerazoo"].values()) + list(result["smp"]["modes"].values())
    return all("error" not in side for side in sides)


if __name__ == "__main__":
    sys.exit(main())
