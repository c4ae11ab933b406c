"""Parameter counts of kerazoo's pyramid-pooling decoders against segmentation_models_pytorch (smp) 0.6.0 and
keras-hub's DeepLabV3ImageSegmenter, all on ResNet-50 with the same classes.

Counts are trainable parameters (torch's `parameters()` leaves out batch-norm running statistics; Keras'
`count_params()` includes them, so that total is printed too). Each known design difference is computed from
the layer shapes and must account for the whole gap: an unexplained difference shows up as a non-zero
"unexplained" column. torch crashes in a process that imported TensorFlow (kerazoo/bench/peer.py) and
keras-hub is not a dependency, so both are counted in child interpreters.

    PYTHONPATH=$PWD python benchmarks/pyramid_decoder_params.py [--classes 21] [--keras-hub-path DIR] [--json out.json]

smp needs `pip install "kerazoo[peer]"`; keras-hub is read from `--keras-hub-path` (e.g. a `pip download
keras-hub --no-deps` wheel unzipped there, with its own dependencies beside it) or from the environment.
"""

import argparse
import json
import os
import subprocess
import sys

# ResNet-50's channels at strides 4, 8, 16, 32 (the same in Keras Applications, torchvision and keras-hub).
C4, C8, C16, C32 = 256, 512, 1024, 2048

# Our model and options, smp's class and options: the comparisons the table makes.
CASES = [
    ("deeplabv3", {}, "DeepLabV3", {}),
    ("deeplabv3plus", {}, "DeepLabV3Plus", {}),
    ("deeplabv3plus", {"separable": True}, "DeepLabV3Plus", {}),
    ("pspnet", {}, "PSPNet", {"encoder_depth": 5}),
    ("pspnet", {"encoder_depth": 3}, "PSPNet", {}),
    ("upernet", {}, "UPerNet", {}),
]

SMP_SCRIPT = """
import json, sys
import segmentation_models_pytorch as smp
count = lambda module: sum(p.numel() for p in module.parameters())
classes, cases = int(sys.argv[1]), json.loads(sys.argv[2])
result = []
for cls, options in cases:
    model = getattr(smp, cls)("resnet50", encoder_weights=None, classes=classes, **options)
    depth = options.get("encoder_depth", 3 if cls == "PSPNet" else 5)
    # Stages past encoder_depth stay in smp's encoder (counted) but are never run.
    unused = sum(count(getattr(model.encoder, f"layer{stage}")) for stage in range(depth, 5))
    result.append({"total": count(model), "encoder": count(model.encoder), "unused_encoder": unused,
                   "decoder_and_head": count(model.decoder) + count(model.segmentation_head)})
print(json.dumps(result))
"""

KERAS_HUB_SCRIPT = """
import json, sys
import numpy as np
import keras_hub
trainable = lambda model: int(sum(np.prod(w.shape) for w in model.trainable_weights))
resnet = keras_hub.models.ResNetBackbone(
    input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 128, 256, 512],
    stackwise_num_blocks=[3, 4, 6, 3], stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block",
    use_pre_activation=False, image_shape=(None, None, 3))
backbone = keras_hub.models.DeepLabV3Backbone(
    image_encoder=resnet, projection_filters=48, low_level_feature_key="P2", spatial_pyramid_pooling_key="P5",
    upsampling_size=8, dilation_rates=[6, 12, 18])
segmenter = keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=int(sys.argv[1]))
print(json.dumps({"total": trainable(segmenter), "encoder": trainable(resnet),
                  "decoder_and_head": trainable(segmenter) - trainable(resnet),
                  "count_params": segmenter.count_params()}))
"""


def _child(script, *args, pythonpath=None):
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env)
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "child failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bn(channels):
    """Trainable parameters of a batch norm (gamma and beta)."""
    return 2 * channels


def separable(channels_in, channels_out, kernel=3):
    return channels_in * kernel * kernel + channels_in * channels_out


def explained_differences(name, options, smp_options, classes):
    """Ours minus smp, decoder and head, item by item from the layer shapes."""
    items = {}
    if name == "deeplabv3":
        items["smp's extra 3x3 conv 256 + BN after ASPP (not in the paper)"] = -(9 * 256 * 256 + bn(256))
    elif name == "deeplabv3plus" and not options.get("separable"):
        items["ASPP atrous 3x3 convs regular (paper, ResNet) vs separable (smp)"] = 3 * (
            9 * C32 * 256 - separable(C32, 256))
        items["smp's separable 3x3 + BN after ASPP (not in the paper)"] = -(separable(256, 256) + bn(256))
        items["decoder: two 3x3 convs 256 (paper) vs one separable (smp)"] = (
            9 * (256 + 48) * 256 + 9 * 256 * 256 + 2 * bn(256) - separable(256 + 48, 256) - bn(256))
    elif name == "deeplabv3plus":
        items["decoder: our two separable convs after the concat vs smp's one after ASPP and one after"] = (
            separable(256 + 48, 256) + separable(256, 256) - separable(256, 256) - separable(256 + 48, 256))
    elif name == "pspnet":
        depth = options.get("encoder_depth", 5)
        features = {3: C8, 5: C32}[depth]
        level = features // 4
        items["fuse conv 3x3 (paper) vs 1x1 (smp)"] = 8 * (features + 4 * level) * 512
        items["head 1x1 (paper) vs 3x3 (smp)"] = -8 * 512 * classes
        items["1x1-bin level: BN (paper) vs conv bias (smp: no BN on a 1x1 map)"] = bn(level) - level
    elif name == "upernet":
        items["pyramid levels 512 filters (authors) vs 256 (smp)"] = 4 * (C32 * 256 + bn(256))
        items["pyramid fuse 3x3 input 2048 + 4 x 512 vs 2048 + 4 x 256"] = 9 * 4 * 256 * 256
        items["smp's LayerNorm on each encoder feature (not in the paper)"] = -2 * (C4 + C8 + C16 + C32)
    return items


def kerazoo_counts(classes):
    import numpy as np

    import kerazoo

    trainable = lambda weights: int(sum(np.prod(w.shape) for w in weights))  # noqa: E731
    rows = []
    for name, options, _, _ in CASES:
        model = kerazoo.create_model(name, encoder="resnet50", num_classes=classes, **options)
        encoder = model.get_layer("resnet50_encoder")
        conv_biases = sum(int(np.prod(layer.bias.shape)) for layer in encoder.layers
                          if getattr(layer, "use_bias", False) and hasattr(layer, "kernel"))
        rows.append({"total": trainable(model.trainable_weights), "count_params": model.count_params(),
                     "encoder": trainable(encoder.trainable_weights), "encoder_conv_biases": conv_biases,
                     "decoder_and_head": trainable(model.trainable_weights) - trainable(encoder.trainable_weights)})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--keras-hub-path", default=None, help="directory holding keras_hub and its dependencies")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    smp = _child(SMP_SCRIPT, str(args.classes), json.dumps([[case[2], case[3]] for case in CASES]))
    try:
        hub = _child(KERAS_HUB_SCRIPT, str(args.classes), pythonpath=args.keras_hub_path)
    except RuntimeError as error:
        hub = None
        print(f"keras-hub not counted: {error}")
    ours = kerazoo_counts(args.classes)

    print(f"ResNet-50, {args.classes} classes; trainable parameters (kerazoo's count_params() with batch-norm "
          "statistics in brackets)")
    header = ("model", "kerazoo", "peer", "difference", "of which encoder", "explained", "unexplained")
    print(" | ".join(header))
    results = []
    for (name, options, smp_class, smp_options), mine, theirs in zip(CASES, ours, smp):
        items = explained_differences(name, options, smp_options, args.classes)
        encoder_gap = mine["encoder"] - theirs["encoder"]
        encoder_items = {"encoder: Keras Applications' conv biases": mine["encoder_conv_biases"]}
        if theirs["unused_encoder"]:
            encoder_items["encoder: smp's stages past encoder_depth (counted, never run)"] = -theirs["unused_encoder"]
        items = {**encoder_items, **items}
        decoder_gap = mine["decoder_and_head"] - theirs["decoder_and_head"]
        unexplained = encoder_gap + decoder_gap - sum(items.values())
        label = f"{name} {options or ''} vs smp {smp_class} {smp_options or ''}"
        print(f"{label} | {mine['total']:,} ({mine['count_params']:,}) | {theirs['total']:,} | "
              f"{mine['total'] - theirs['total']:+,} ({(mine['total'] - theirs['total']) / theirs['total']:+.1%}) | "
              f"{encoder_gap:+,} | {sum(items.values()):+,} | {unexplained:+,}")
        for item, value in items.items():
            print(f"    {item}: {value:+,}")
        results.append({"model": name, "options": options, "peer": f"smp.{smp_class}", "peer_options": smp_options,
                        "kerazoo": mine, "smp": theirs, "explained": items, "unexplained": unexplained})
    if hub is not None:
        mine = ours[1]  # deeplabv3plus, the paper's regular convolutions, as keras-hub
        items = {
            "encoder: Keras Applications' conv biases": mine["encoder_conv_biases"],
            "decoder: two 3x3 convs 256 (paper) vs one 1x1 conv 256 (keras-hub)":
                9 * (256 + 48) * 256 + 9 * 256 * 256 + bn(256) - (256 + 48) * 256,
            "head bias (keras-hub's score conv has none)": args.classes,
        }
        unexplained = mine["total"] - hub["total"] - sum(items.values())
        print(f"deeplabv3plus vs keras-hub DeepLabV3ImageSegmenter (P2 + P5) | {mine['total']:,} | {hub['total']:,} "
              f"({hub['count_params']:,}) | {mine['total'] - hub['total']:+,} "
              f"({(mine['total'] - hub['total']) / hub['total']:+.1%}) | {mine['encoder'] - hub['encoder']:+,} | "
              f"{sum(items.values()):+,} | {unexplained:+,}")
        for item, value in items.items():
            print(f"    {item}: {value:+,}")
        results.append({"model": "deeplabv3plus", "peer": "keras_hub.DeepLabV3ImageSegmenter", "kerazoo": mine,
                        "keras_hub": hub, "explained": items, "unexplained": unexplained})
    print(f"encoder: Keras Applications' ResNet-50 has conv biases ({ours[0]['encoder_conv_biases']:,}); "
          "torchvision's and keras-hub's have none")
    if args.json:
        from kerazoo.utils.files import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
