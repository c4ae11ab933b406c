"""Builds each skip-connection decoder on the given encoders and runs one odd-size (67x91) forward pass.

    PYTHONPATH=$PWD python benchmarks/skip_decoder_encoders.py convnext_tiny efficientnetb0 ...
    PYTHONPATH=$PWD python benchmarks/skip_decoder_encoders.py --sample 12 --seed 19   # random.Random(seed).sample

Prints one line per build: ok (output 67x91x3, finite), or what failed. Figures in benchmarks/SKIP_DECODERS.md.
"""

import argparse
import gc
import os
import random
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerazoo  # noqa: E402

CASES = [("unetplusplus", {}), ("fpn", {}), ("linknet", {}), ("segformer", {}), ("unet", {"attention": True}),
         ("unetplusplus", {"deep_supervision": True})]
SIZE = (67, 91)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("encoders", nargs="*", help="encoder names (default: --sample of list_encoders())")
    parser.add_argument("--sample", type=int, default=12, help="how many encoders to draw when none are named")
    parser.add_argument("--seed", type=int, default=19)
    args = parser.parse_args()
    encoders = args.encoders or random.Random(args.seed).sample(
        [name for name in kerazoo.list_encoders() if name != "convnext_tiny"], args.sample)
    x = np.random.default_rng(0).uniform(0, 255, (1, *SIZE, 3)).astype("float32")
    for encoder in encoders:
        for name, options in CASES:
            start = time.time()
            try:
                model = kerazoo.create_model(name, encoder=encoder, num_classes=3, **options)
                y = np.asarray(model(x))
                ok = y.shape == (1, *SIZE, 3) and np.isfinite(y).all()
                result = f"{'ok' if ok else 'BAD ' + str(y.shape)} params {model.count_params():,}"
            except Exception as error:  # reported, not raised: the sweep goes on
                result = f"FAIL {type(error).__name__}: {str(error)[:200]}"
            print(f"{encoder:20s} {name:13s} {str(options):28s} {result} {time.time() - start:.0f}s", flush=True)
            keras.backend.clear_session()
            gc.collect()


if __name__ == "__main__":
    main()
