"""The `kerazoo` command line: the same vocabulary as the Python API.

    kerazoo list [--table]
    kerazoo train --model unet --encoder mobilenetv2 --dataset membrane --image-size 256x256 ...
    kerazoo train --config runs/x/run.json --epochs 20     # a recorded TrainConfig, flags override
    kerazoo evaluate runs/x/best.keras --dataset camvid --split val --json out.json
    kerazoo train --task denoise --dataset train400 --noise-sigma 25 --model unet_paper --option padding=same
    kerazoo evaluate set12_denoise_sigma25_unet --dataset set12 --noise-sigma 25   # PSNR/SSIM vs noisy, BM3D
    kerazoo predict runs/x/best.keras image1.png image2.png --out-dir predictions/
    kerazoo export runs/x/best.keras --out-dir exported/ --quantize float32 float16 int8
    kerazoo fetch camvid_segnet_basic
    kerazoo push camvid_segnet_basic hf://owner/camvid-segnet --include exported/   # with a generated card
    kerazoo card camvid_segnet_basic --output README.md
    kerazoo benchmark --model unet --encoder resnet50 --image-size 256x256 --option upsampling=nearest --peer

A checkpoint argument is a .keras file or a preset (name, directory or URI). Sub-commands register
themselves in `COMMANDS` (name -> function adding the sub-parser), so that new ones are added next to
these without touching the others.

TensorFlow's C++ log lines (oneDNN, absl, CPU features) are silenced unless `kerazoo --verbose ...`.
"""

import argparse
import ast
import json
import sys

from kerazoo.utils.tensorflow_logs import QUIET_FLAGS, quiet_tensorflow
from kerazoo.training.config import MIXED_PRECISION, OPTIMIZERS, SCHEDULES, TrainConfig
from kerazoo.inference.tiles import BLENDS
from kerazoo.inference.tta import TTA_MODES



def _list(args):
    if args.table:
        from kerazoo.demo import print_model_table

        print_model_table(encoders=args.encoders)
        return 0
    import kerazoo
    from kerazoo.models import MODELS

    for name, entry in MODELS.items():
        encoders = ", ".join(entry.encoders) if entry.encoders else "(own topology)"
        print(f"{name:14s} encoders: {encoders}\n{'':14s} {entry.reference}")
    print("encoders:", ", ".join(kerazoo.list_encoders()))
    print("presets (kerazoo.from_preset):")
    for preset in kerazoo.list_presets():
        print(f"  {preset.name:28s} {preset.task:16s} {preset.model} on {preset.dataset}: {_headline(preset.metrics)}")
    return 0


def _headline(metrics):
    """A preset's main figures for listings: mean IoU for segmentation, its PSNRs for restoration."""
    keys = ["mean_iou"] if "mean_iou" in metrics else [key for key in metrics if key.startswith("psnr")]
    return ", ".join(f"{key} {metrics[key]:g}" for key in keys) or "no metrics"


def image_size(text):
    """Parses "HxW" (or "H,W", or one number for a square) into `(height, width)`."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"image size must look like 176x240 (height x width), got {text!r}")
    return values


def _literal(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def model_option(text):
    """Parses `key=value` for `create_model` options; "a,b,c" becomes a tuple, "3" an int."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"model option must look like key=value, got {text!r}")
    key, value = text.split("=", 1)
    if "," in value and not value.strip().startswith(("(", "[")):
        parsed = tuple(_literal(v.strip()) for v in value.split(",") if v.strip())
    else:
        parsed = _literal(value.strip())
    if isinstance(parsed, list):
        parsed = tuple(parsed)
    return key.strip(), parsed


def _class_weights(text):
    if text in ("none", "median_frequency"):
        return None if text == "none" else text
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"class weights must be 'none', 'median_frequency' or comma-separated numbers, got {text!r}") from None


def noise_sigma(text):
    """Parses a noise level: "25", or "0,55" for a blind range (low, high)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"noise sigma must be a number (25) or a range low,high (0,55), got {text!r}")
    return values[0] if len(values) == 1 else values


def _verbosity(text):
    if text == "auto":
        return text
    if text not in ("0", "1", "2"):
        raise argparse.ArgumentTypeError(f"verbose must be 0, 1, 2 or auto, got {text!r}")
    return int(text)


def _read_config(path):
    """The `TrainConfig` fields in a `run.json` (its "config"), a preset's `metadata.json`, or a JSON file of them."""
    try:
        data = json.loads(open(path).read())
    except (OSError, ValueError) as error:
        raise ValueError(f"--config {path}: cannot read a JSON file ({error})") from None
    if "config" in data:
        return TrainConfig.from_dict(data["config"])
    if "training" in data and "model" in data:
        return TrainConfig.from_metadata(data)
    return TrainConfig.from_dict(data)


# Flags of `kerazoo train` that are not TrainConfig fields, or hold it in another form.
_TRAIN_RUNTIME = ("config", "option", "no_augment", "no_tensorboard", "verbose", "command", "run", "show_tf_logs")


def train_config_from_args(args) -> TrainConfig:
    """`TrainConfig` from parsed `kerazoo train` flags: `--config` (if given), then the flags given."""
    given = vars(args)
    fields = {k: v for k, v in given.items() if k not in _TRAIN_RUNTIME}
    if "option" in given:
        fields["model_options"] = dict(given["option"])
    if given.get("no_augment"):
        fields["augment"] = False
    if fields.get("mixed_precision") == "off":
        fields["mixed_precision"] = None
    base = _read_config(given["config"]) if given.get("config") else TrainConfig()
    return base.replace(**fields)


def _train(args):
    config = train_config_from_args(args)
    from kerazoo.training.train import train

    result = train(config, tensorboard=not getattr(args, "no_tensorboard", False) and "auto",
                   verbose=getattr(args, "verbose", "auto"))
    return 0 if result.best else 1


def _evaluate(args):
    from kerazoo.training import evaluation, restoration_eval

    if restoration_eval.checkpoint_task(args.checkpoint) in restoration_eval.RESTORATION_TASKS:
        report = restoration_eval.evaluate_restoration(
            args.checkpoint, dataset=args.dataset, noise_sigma=args.noise_sigma, scale=args.scale,
            baselines=None if args.baselines is None else [b for b in args.baselines if b != "none"],
            data_dir=args.data_dir, seed=args.seed, num_images=args.num_images, tta=args.tta)
        restoration_eval.print_restoration_report(report)
    else:
        if args.noise_sigma is not None or args.scale is not None:
            raise ValueError("--noise-sigma and --scale apply to denoising and super-resolution models")
        report = evaluation.evaluate_checkpoint(
            args.checkpoint, dataset=args.dataset, split=args.split, data_dir=args.data_dir,
            image_size=args.image_size, batch_size=args.batch_size, tta=args.tta)
        evaluation.print_report(report)
    if args.json:
        evaluation.write_json(report, args.json)
        print(f"wrote {args.json}")
    return 0


def _predict(args):
    from kerazoo.training import evaluation, restoration_eval

    if restoration_eval.checkpoint_task(args.checkpoint) in restoration_eval.RESTORATION_TASKS:
        written = restoration_eval.restore_files(args.checkpoint, args.images, args.out_dir, tile=args.tile,
                                                 overlap=args.overlap, blend=args.blend, tta=args.tta)
    else:
        written = evaluation.predict_files(
            args.checkpoint, args.images, args.out_dir, dataset=args.dataset, image_size=args.image_size,
            alpha=args.alpha, tile=args.tile, overlap=args.overlap, blend=args.blend, tta=args.tta)
    for path in written:
        print(path)
    return 0


def _export(args):
    from kerazoo import data as kz_data
    from kerazoo.training import evaluation
    from kerazoo.export import export

    model = evaluation.load_model(args.checkpoint)
    run = evaluation.load_run(args.checkpoint)
    dataset = args.dataset or run.get("dataset")
    image_size = args.image_size or (tuple(run["image_size"]) if run.get("image_size") else None)
    representative, class_names, samples, targets = None, None, None, None
    if dataset in kz_data.DATASETS and kz_data.DATASETS[dataset].task in kz_data.RESTORATION_TASKS:
        representative, samples, targets = _restoration_export_data(model, dataset, args.data_dir)
    elif dataset:
        class_names = list(kz_data.DATASETS[dataset].class_names) if dataset in kz_data.DATASETS else None
        if "int8" in args.quantize:
            # Calibration images from the training split, unaugmented, at the training size.
            representative = kz_data.load(dataset, "train", data_dir=args.data_dir, batch_size=None,
                                          image_size=image_size, augment=False, shuffle=False)
    quantize = [None if q == "float32" else q for q in args.quantize]
    report = export(model, args.out_dir, formats=args.formats, quantize=quantize,
                    representative_data=representative, class_names=class_names,
                    sample_inputs=samples, sample_targets=targets,
                    argmax_output=args.argmax_output, uint8_input=args.uint8_input, io_dtype=args.io_dtype,
                    input_size=args.input_size, opset=args.opset, num_calibration=args.num_calibration,
                    latency_runs=args.latency_runs, strict=False, verbose=True)
    return 0 if report.ok else 1


def _restoration_export_data(model, dataset, data_dir):
    """(calibration patches of the train split, evaluation inputs, their clean images) for a restoration
    model: the PSNR contract is measured on the set that evaluates `dataset` (train400 -> set12)."""
    from kerazoo import data as kz_data
    from kerazoo.training.restoration_eval import export_samples

    info = kz_data.DATASETS[dataset]
    sigma = 25.0 if model.task == "denoise" else None
    scale = model.scale if model.task == "super_resolution" else None
    train_name = dataset if "train" in info.splits else None
    samples, targets = export_samples(info.eval_dataset or dataset, noise_sigma=sigma, scale=scale,
                                      channels=model.in_channels, data_dir=data_dir)
    representative = samples  # an evaluation set alone (no train split) calibrates with its own images
    if train_name:
        representative = kz_data.load(train_name, "train", data_dir=data_dir, batch_size=None, augment=False,
                                      shuffle=False, noise_sigma=sigma, scale=scale, channels=model.in_channels)
    return representative, samples, targets


def _fetch(args):
    from kerazoo import zoo

    if args.preset == WEB_RUNTIME:  # the web export format's runtime, not a preset
        from kerazoo.export.web_runtime import fetch_web_runtime

        print(fetch_web_runtime(cache_dir=args.cache_dir, offline=False, force=args.force, progress=True))
        return 0
    directory = zoo.fetch(args.preset, cache_dir=args.cache_dir, force=args.force, sha256=args.sha256,
                          progress=True)
    print(directory)
    return 0


def _push(args):
    from kerazoo.zoo.hub import push_to_hub

    commit = push_to_hub(args.preset, args.destination, include=args.include, private=args.private,
                         commit_message=args.message)
    print(commit.commit_url)
    return 0


def _card(args):
    from kerazoo.zoo.model_card import model_card, write_model_card

    if args.output is None:
        sys.stdout.write(model_card(args.preset, repo_id=args.repo))
    else:
        print(write_model_card(args.preset, args.output, repo_id=args.repo, overwrite=args.force))
    return 0


def _benchmark(args):
    from kerazoo.bench import benchmark

    case_list = benchmark.cases(args.model, args.encoder, args.image_size, args.option)
    benchmark.run(case_list, num_classes=args.num_classes, formats=args.formats, batch_sizes=args.batch_sizes,
                  train_batch_size=args.train_batch_size, warmup=args.warmup, runs=args.runs,
                  threads=args.threads, peer=args.peer, json_path=args.json, markdown_path=args.markdown,
                  peer_modes=args.peer_modes)
    return 0


def _add_list(commands):
    parser = commands.add_parser("list", help="list models, encoders and presets")
    parser.add_argument("--table", action="store_true",
                        help="build every model x encoder and print parameters and output shapes (slow)")
    parser.add_argument("--encoders", nargs="+", metavar="ENCODER",
                        help="with --table: only these encoders (default: all of them, several hundred builds)")
    parser.set_defaults(run=_list)


def _add_train(commands):
    defaults = TrainConfig.__dataclass_fields__
    default = {name: field.default for name, field in defaults.items()}
    # Flags left out stay out of the namespace (SUPPRESS), so that --config's values survive them and
    # TrainConfig holds the one set of defaults.
    parser = commands.add_parser("train", help="train a model on a data set; keeps best.keras by val mIoU",
                                 argument_default=argparse.SUPPRESS,
                                 description="Train a model. Re-run the same command after a crash to resume.")
    parser.add_argument("--config", help="start from a TrainConfig: a run.json, a preset's metadata.json, or a "
                                         "JSON file of TrainConfig fields; the flags given override it")
    parser.add_argument("--model", help=f"model name (kerazoo list), default {default['model']}")
    parser.add_argument("--encoder", help="encoder name; default: the model's")
    parser.add_argument("--encoder-weights", help="None (random), imagenet, or a weights file")
    parser.add_argument("--option", action="append", type=model_option, metavar="KEY=VALUE",
                        help="create_model option, repeatable, e.g. decoder_filters=64,32,16,16,8")
    parser.add_argument("--dataset", help=f"a data set (camvid, membrane, shapes, oxford_iiit_pet; train400, set12, t91, set5; depth_scenes, nyu_depth_v2); default {default['dataset']}")
    parser.add_argument("--data-dir", help="root of the data sets (else $KERAZOO_DATA, else ~/.keras/datasets)")
    parser.add_argument("--image-size", type=image_size, metavar="HxW", help="default: the data set's")
    parser.add_argument("--num-examples", type=int, help="synthetic data sets only: training images")
    parser.add_argument("--val-examples", type=int, help="synthetic data sets only: validation images")
    parser.add_argument("--epochs", type=int, help=f"default {default['epochs']}")
    parser.add_argument("--batch-size", type=int, help=f"default {default['batch_size']}")
    parser.add_argument("--steps-per-epoch", type=int, help="default: the whole train split")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help=f"default {default['optimizer']}")
    parser.add_argument("--learning-rate", type=float, help=f"default {default['learning_rate']}")
    parser.add_argument("--schedule", choices=SCHEDULES, help=f"default {default['schedule']}")
    parser.add_argument("--weight-decay", type=float, help=f"default {default['weight_decay']}")
    parser.add_argument("--mixed-precision", nargs="?", const="mixed_float16", choices=("off",) + MIXED_PRECISION,
                        help="default off; auto: mixed_bfloat16 where the CPU has it natively, mixed_float16 on a "
                             "GPU, else float32 (it says why)")
    parser.add_argument("--class-weights", type=_class_weights, help="none, median_frequency, or one number per class")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--devices", help="'mirrored' (all GPUs, else all CPUs), a list like /cpu:0,/cpu:1, or "
                                          "'multi-worker' (the processes in $TF_CONFIG)")
    restoration = parser.add_argument_group(
        "tasks", "denoise / super_resolution / depth; residual and upsampler go through --option")
    restoration.add_argument("--task", choices=("segmentation", "denoise", "super_resolution", "depth"),
                             help="default: the data set's task (loss, metrics, monitored metric follow it)")
    restoration.add_argument("--noise-sigma", type=noise_sigma, metavar="SIGMA", help="denoise: 25, or 0,55 (blind)")
    restoration.add_argument("--scale", type=int, help="super_resolution: 2, 3 or 4 (data and model)")
    restoration.add_argument("--patch-size", type=int, help="restoration: training patch side (LR for SR)")
    restoration.add_argument("--patches-per-image", type=int, help="restoration: patches per image per epoch")
    restoration.add_argument("--channels", type=int, choices=(1, 3), help="restoration: 1 grey or 3 RGB")
    parser.add_argument("--output-dir", help=f"default {default['output_dir']}")
    parser.add_argument("--seed", type=int, help=f"default {default['seed']}")
    parser.add_argument("--no-tensorboard", action="store_true")
    parser.add_argument("--verbose", type=_verbosity,
                        help="0 silent, 1 progress bar, 2 one line per epoch; default: 1 on a terminal")
    parser.set_defaults(run=_train)


def _add_evaluate(commands):
    parser = commands.add_parser("evaluate", help="per-class IoU, G, C and mIoU of a saved model; per-image "
                                                  "PSNR/SSIM next to the baselines for a restoration model")
    parser.add_argument("checkpoint", help="a .keras file or a preset (name, directory or URI); the model "
                                           "brings its class names and the size it was trained at")
    parser.add_argument("--dataset", default=None,
                        help="default: the preset's data set, or the one in run.json beside a .keras file")
    parser.add_argument("--split", default=None, help="default: val (test for oxford_iiit_pet)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--image-size", type=image_size, default=None, metavar="HxW",
                        help="size the images and masks are read and scored at (default: the data set's); "
                             "the model resizes to its own training size inside")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--json", default=None, help="write the report here")
    restoration = parser.add_argument_group("restoration models")
    restoration.add_argument("--noise-sigma", type=float, default=None, help="denoise: noise level (default 25)")
    restoration.add_argument("--scale", type=int, default=None, help="super_resolution: the model's scale")
    restoration.add_argument("--baselines", nargs="+", default=None, choices=("noisy", "bm3d", "bicubic", "none"),
                             help="classical methods on the same images (default: noisy and bm3d; bicubic)")
    restoration.add_argument("--seed", type=int, default=0, help="noise seed (per image: seed, index)")
    restoration.add_argument("--num-images", type=int, default=None, help="the first N images only")
    _add_tta_flag(parser)
    parser.set_defaults(run=_evaluate)


def _add_predict(commands):
    parser = commands.add_parser("predict", help="write colour masks and overlays (PNG) for images; restored "
                                                 "images and before/after pictures for a restoration model")
    parser.add_argument("checkpoint", help="a .keras file or a preset (name, directory or URI)")
    parser.add_argument("images", nargs="+", help="image files, any size: masks come at each image's size")
    parser.add_argument("--out-dir", "--output-dir", dest="out_dir", default="predictions")
    parser.add_argument("--dataset", default=None,
                        help="for class colours when the model carries none; default: the dataset of the run")
    parser.add_argument("--image-size", type=image_size, default=None, metavar="HxW",
                        help="plain Keras models only: resize inputs to this size (a kerazoo model resizes to "
                             "its own training size)")
    parser.add_argument("--alpha", type=float, default=0.5, help="mask opacity in overlays")
    tiling = parser.add_argument_group("tiled inference", "large images in overlapping tiles at their own "
                                                          "resolution (kerazoo models; kerazoo.inference.tiles)")
    tiling.add_argument("--tile", type=tile_size, default=None, metavar="SIZE",
                        help="tile side (512) or HxW, a multiple of the model's stride; a restored image is then "
                             "streamed to its PNG (no before/after picture)")
    tiling.add_argument("--overlap", type=float, default=0.25, help="fraction of a tile shared with each "
                                                                   "neighbour, in [0, 1) (default 0.25)")
    tiling.add_argument("--blend", choices=BLENDS, default="gaussian", help="weight map of each tile")
    _add_tta_flag(parser)
    parser.set_defaults(run=_predict)


def tile_size(text):
    """Parses a tile size: "512" (square) or "256x512" (height x width)."""
    height, width = image_size(text)
    return height if height == width else (height, width)


def _add_tta_flag(parser):
    parser.add_argument("--tta", choices=TTA_MODES, default=None,
                        help="test-time augmentation: flip (identity + horizontal flip) or d4 (8 flips and "
                             "rotations), outputs averaged after undoing each")


def _add_export(commands):
    from kerazoo.export import FORMATS, QUANTIZE_MODES
    from kerazoo.export.writers import WRITERS

    parser = commands.add_parser(
        "export", help="export to SavedModel, TFLite and ONNX, each checked for parity with the Keras model",
        description="Export a .keras checkpoint or a preset. Exits 1 when a file fails its parity contract.")
    parser.add_argument("checkpoint", help="a .keras file (its run.json supplies data set and size) or a preset")
    parser.add_argument("--out-dir", default="exported")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=tuple(WRITERS),
                        help=f"default: {' '.join(FORMATS)}; openvino needs pip install 'kerazoo[openvino]'; "
                             "web writes <name>_web/, a page running the ONNX file in the browser")
    parser.add_argument("--quantize", nargs="+", default=["float32"], choices=("float32",) + QUANTIZE_MODES,
                        help="TFLite variants to write, e.g. --quantize float32 float16 int8")
    parser.add_argument("--dataset", default=None, help="calibration data for int8; default: the run's")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--image-size", type=image_size, default=None, metavar="HxW",
                        help="calibration image size; default: the training size")
    parser.add_argument("--input-size", type=image_size, default=None, metavar="HxW",
                        help="fix height and width in the exported signatures (default: dynamic)")
    parser.add_argument("--argmax-output", action="store_true", help="output int32 classes (B, H, W)")
    parser.add_argument("--uint8-input", action="store_true", help="take uint8 pixels, as a camera frame comes")
    parser.add_argument("--io-dtype", default="float32", choices=("float32", "int8", "uint8"),
                        help="interface of the int8 TFLite file")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--num-calibration", type=int, default=100)
    parser.add_argument("--latency-runs", type=int, default=10)
    parser.set_defaults(run=_export)


WEB_RUNTIME = "onnxruntime-web"  # `kerazoo fetch onnxruntime-web`: what the web export copies, into the cache


def _add_fetch(commands):
    parser = commands.add_parser("fetch", help="download a preset into the cache, for machines without internet",
                                 description="Fill the cache ($KERAZOO_HOME, default ~/.keras/kerazoo); copy it to "
                                             "an offline machine and load there with KERAZOO_OFFLINE=1.")
    parser.add_argument("preset", help="a preset name, https:// or file:// archive, or hf:// repository; or "
                                       f"{WEB_RUNTIME}, the runtime of the web export format")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--sha256", default=None, help="expected sha256 of the archive (URIs only)")
    parser.add_argument("--force", action="store_true", help="download again even when cached")
    parser.set_defaults(run=_fetch)


def _add_push(commands):
    parser = commands.add_parser("push", help="publish a preset on the Hugging Face Hub with a generated model card",
                                 description="Upload a preset with huggingface_hub (token: HF_TOKEN or `hf auth "
                                             "login`; endpoint: HF_ENDPOINT) and a README.md card generated from "
                                             "its metadata.json. Needs pip install 'kerazoo[hub]'.")
    parser.add_argument("preset", help="a preset name, directory or URI")
    parser.add_argument("destination", help="hf://owner/name (or hf://owner/name/folder)")
    parser.add_argument("--include", nargs="+", default=[], metavar="PATH",
                        help="exported files or folders to publish under exports/, e.g. the output of kerazoo export")
    parser.add_argument("--private", action="store_true", default=None, help="create the repository private")
    parser.add_argument("--message", default=None, help="commit message")
    parser.set_defaults(run=_push)


def _add_card(commands):
    parser = commands.add_parser("card", help="write a preset's model card (README.md for the Hub)",
                                 description="Generate the model card `kerazoo push` uploads, from the preset's "
                                             "metadata.json and config.json. Needs pip install 'kerazoo[hub]'.")
    parser.add_argument("preset", help="a preset name, directory or URI")
    parser.add_argument("--repo", default=None, metavar="OWNER/NAME",
                        help="the Hub repository the snippets load from; default: the preset's name")
    parser.add_argument("--output", default=None, help="file to write; default: print to stdout")
    parser.add_argument("--force", action="store_true", help="replace an existing --output file")
    parser.set_defaults(run=_card)


def _add_benchmark(commands):
    from kerazoo.bench.benchmark import FORMATS
    from kerazoo.bench.peer import PEER_MODES

    parser = commands.add_parser(
        "benchmark", help="training images/s, inference latency per format, peak memory, FLOPs; peer side by side",
        description="Every model x encoder x image size given (random weights); each measurement in a fresh "
                    "process; medians after warm-up. --peer adds segmentation-models-pytorch's U-Net.")
    parser.add_argument("--model", nargs="+", default=["unet"], help="model names (kerazoo list)")
    parser.add_argument("--encoder", nargs="+", default=["resnet50"],
                        help="encoder names; each model takes those it supports")
    parser.add_argument("--image-size", nargs="+", type=image_size, default=[(256, 256)], metavar="HxW")
    parser.add_argument("--option", action="append", type=model_option, default=[], metavar="KEY=VALUE",
                        help="create_model option for every case, e.g. upsampling=nearest (repeatable)")
    parser.add_argument("--num-classes", type=int, default=12)
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8], help="inference batch sizes")
    parser.add_argument("--train-batch-size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps or calls before timing")
    parser.add_argument("--runs", type=int, default=10, help="timed steps or calls (the median is reported)")
    parser.add_argument("--threads", type=int, default=None, help="LiteRT and torch threads; default: all cores")
    parser.add_argument("--peer", action="store_true",
                        help='also run segmentation-models-pytorch\'s U-Net (pip install "kerazoo[peer]")')
    parser.add_argument("--peer-modes", nargs="+", default=None, choices=tuple(PEER_MODES),
                        help="the peer's modes (default: all; compile spends minutes compiling on a small CPU)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--markdown", default=None, help="write the tables here")
    parser.set_defaults(run=_benchmark)


COMMANDS = {"list": _add_list, "train": _add_train, "evaluate": _add_evaluate, "predict": _add_predict,
            "export": _add_export, "fetch": _add_fetch, "benchmark": _add_benchmark, "push": _add_push,
            "card": _add_card}


# Lines TensorFlow's native libraries write straight to the stderr file descriptor while it is imported;
# some (oneDNN's, through absl before it is initialised) ignore TF_CPP_MIN_LOG_LEVEL.
def build_parser():
    """The argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(prog="kerazoo", description=__doc__.split("\n")[0])
    parser.add_argument(*QUIET_FLAGS, dest="show_tf_logs", action="store_true",
                        help="show TensorFlow's own log lines (before the sub-command: kerazoo --verbose list)")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS.values():
        add(commands)
    return parser


def main(argv=None):
    """Runs the command line; bad values end with a one-line error and exit status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    quiet_tensorflow(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError, KeyError, ImportError) as error:
        parser.exit(2, f"kerazoo {args.command}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
