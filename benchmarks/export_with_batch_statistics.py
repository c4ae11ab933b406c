"""One model x encoder exported twice over: with its random batch-norm statistics (identity), and with statistics
taken from one batch of random images (momentum 0, learning rate 0: the weights stay random). Explains a float32
parity miss of export_matrix/COMBINATIONS.md: deep random networks whose output range is small next to their
inner activations.

    PYTHONPATH=$PWD python benchmarks/export_with_batch_statistics.py efficientnetv2m [--model unet]
"""

import argparse
import os
import tempfile

from combinations import NUM_CLASSES, SIZE  # benchmarks/combinations.py, beside this script: its classes and size

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("encoder")
    parser.add_argument("--model", default="unet")
    arguments = parser.parse_args()
    import keras
    import numpy as np

    import kerazoo
    from kerazoo.encoders import set_batch_norm_momentum
    from kerazoo.export import export

    keras.utils.set_random_seed(0)
    model = kerazoo.create_model(arguments.model, encoder=arguments.encoder, num_classes=NUM_CLASSES)
    rng = np.random.default_rng(0)
    sample = rng.uniform(0, 255, (1, *SIZE, 3)).astype("float32")
    for statistics in ("random", "from a batch"):
        if statistics == "from a batch":
            set_batch_norm_momentum(model, 0.0)
            model.compile(optimizer=keras.optimizers.SGD(0.0),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            model.train_on_batch(rng.uniform(0, 255, (4, *sample.shape[1:])).astype("float32"),
                                 np.zeros((4, *sample.shape[1:3]), "int32"))
        output = keras.ops.convert_to_numpy(model(sample))
        with tempfile.TemporaryDirectory() as folder:
            report = export(model, folder, formats=("tflite", "onnx"), quantize=(None, "float16"), latency_runs=0,
                            verbose=False, strict=False, sample_inputs=sample)
        print(f"batch-norm statistics {statistics}: output range {output.max() - output.min():.3g}")
        for exported in report.files:
            print(f"  {exported.format} {exported.variant}: contract {'met' if exported.passed else 'missed'}, "
                  f"relative max |diff| {exported.relative_diff:.2g}, agree {exported.argmax_agreement:.4f}")


if __name__ == "__main__":
    main()
