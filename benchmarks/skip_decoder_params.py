"""Parameter counts of kerazoo's skip-connection decoders against segmentation_models_pytorch (smp) 0.6.0.

Same decoder, same encoder (ResNet-50), same classes; each known design difference is computed from the
layer shapes and must account for the whole gap, so that an unexplained difference shows up as a
non-zero "unexplained" column. torch crashes in a process that imported TensorFlow (kerazoo/bench/peer.py),
so smp is counted in a child interpreter first.

    PYTHONPATH=$PWD python benchmarks/skip_decoder_params.py [--json out.json]

Needs `pip install "kerazoo[peer]"` (torch, torchvision, segmentation-models-pytorch 0.6.0).
"""

import argparse
import json
import subprocess
import sys

NUM_CLASSES = 12
# kerazoo model, its options, smp class, smp's head kernel size.
CASES = [
    ("unet", {"upsampling": "nearest"}, "Unet", 3),
    ("unetplusplus", {}, "UnetPlusPlus", 3),
    ("fpn", {}, "FPN", 1),
    ("linknet", {}, "Linknet", 1),
    ("segformer", {}, "Segformer", 1),
]
# ResNet-50's features at strides 2, 4, 8, 16, 32 (the same in Keras Applications and torchvision).
RESNET50_CHANNELS = (64, 256, 512, 1024, 2048)

SMP_SCRIPT = """
import json, sys
import segmentation_models_pytorch as smp
count = lambda module: sum(p.numel() for p in module.parameters())
result = {}
for cls in sys.argv[1:]:
    model = getattr(smp, cls)("resnet50", encoder_weights=None, classes=%d)
    result[cls] = {"total": count(model), "encoder": count(model.encoder),
                   "decoder_and_head": count(model.decoder) + count(model.segmentation_head)}
print(json.dumps(result))
""" % NUM_CLASSES


def smp_counts():
    classes = [case[2] for case in CASES]
    done = subprocess.run([sys.executable, "-c", SMP_SCRIPT, *classes], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def explained_differences(name, smp_head_kernel):
    """kerazoo's decoder-and-head count minus smp's, item by item, from the layer shapes."""
    items = {}
    last_filters = {"unet": 16, "unetplusplus": 16, "fpn": 128, "linknet": 32, "segformer": 256}[name]
    if smp_head_kernel != 1:  # kerazoo's segmentation head is a 1x1 convolution
        items[f"head 1x1 vs smp's {smp_head_kernel}x{smp_head_kernel}"] = (
            -(smp_head_kernel**2 - 1) * last_filters * NUM_CLASSES)
    if name == "linknet":
        # The paper's 3x3 transposed convolution (smp: 4x4), on C/4 channels in each of the five blocks.
        reduced = [channels // 4 for channels in RESNET50_CHANNELS[::-1]]
        items["transposed convolutions 3x3 (paper) vs 4x4 (smp)"] = -sum(7 * c * c for c in reduced)
        items["smp's transposed-convolution biases before batch norm"] = -sum(reduced)
    if name == "segformer":
        # The paper's four levels (strides 4..32); smp also embeds the stride-2 features and fuses five.
        embed = 256
        items["smp's fifth (stride-2) linear layer"] = -(RESNET50_CHANNELS[0] * embed + embed)
        items["smp's fuse convolution over five levels, not four"] = -embed * embed
    return items


def kerazoo_counts():
    import numpy as np

    import kerazoo

    import keras

    rows = {}
    for name, options, _, _ in CASES:
        model = kerazoo.create_model(name, encoder="resnet50", num_classes=NUM_CLASSES, **options)
        trainable = lambda weights: int(sum(np.prod(w.shape) for w in weights))  # noqa: E731
        encoder = model.get_layer("resnet50_encoder")
        rows[name] = {"count_params": model.count_params(), "trainable": trainable(model.trainable_weights),
                      "encoder": trainable(encoder.trainable_weights)}
        rows[name]["decoder_and_head"] = rows[name]["trainable"] - rows[name]["encoder"]
        del model
        keras.backend.clear_session()
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    peer = smp_counts()
    ours = kerazoo_counts()
    print(f"ResNet-50, {NUM_CLASSES} classes. Trainable parameters (smp counts no batch-norm statistics; "
          "Keras' count_params does).\n")
    print("| decoder | kerazoo trainable | kerazoo count_params | smp 0.6.0 | total diff | decoder+head kerazoo "
          "| decoder+head smp | explained | unexplained |")
    print("|---|---|---|---|---|---|---|---|---|")
    result = {}
    for name, options, cls, head_kernel in CASES:
        mine, theirs = ours[name], peer[cls]
        items = explained_differences(name, head_kernel)
        gap = mine["decoder_and_head"] - theirs["decoder_and_head"]
        unexplained = gap - sum(items.values())
        diff = (mine["trainable"] - theirs["total"]) / theirs["total"]
        label = name + (f" ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else "")
        print(f"| {label} vs smp.{cls} | {mine['trainable']:,} | {mine['count_params']:,} | {theirs['total']:,} "
              f"| {diff:+.2%} | {mine['decoder_and_head']:,} | {theirs['decoder_and_head']:,} | {sum(items.values()):+,} "
              f"| {unexplained:+,} |")
        result[name] = {"kerazoo": mine, "smp": theirs, "explained": items, "unexplained": unexplained,
                        "total_relative_diff": diff}
    encoder_gap = ours["unet"]["encoder"] - peer["Unet"]["encoder"]
    print(f"\nEncoders: Keras Applications ResNet50 {ours['unet']['encoder']:,} trainable vs torchvision "
          f"{peer['Unet']['encoder']:,} ({encoder_gap:+,}: Keras' convolutions keep a bias before batch norm).")
    for name, entry in result.items():
        for item, value in entry["explained"].items():
            print(f"  {name}: {item}: {value:+,}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"encoder_gap": encoder_gap, "decoders": result}, handle, indent=1)


if __name__ == "__main__":
    main()
