"""Is a float16 export miss the runtime's or the model's? Rounds a model's weights to float16 in Keras itself (what
a float16 TFLite file stores) and compares it with the float32 model on the sample of
export_matrix/COMBINATIONS.md: argmax agreement, and for SegNet how many pooling indices flip.

    PYTHONPATH=$PWD python benchmarks/float16_weights_in_keras.py segnet vgg16
    PYTHONPATH=$PWD python benchmarks/float16_weights_in_keras.py segnet_basic -     # '-': its own topology
"""

import argparse

from combinations import NUM_CLASSES, SIZE  # benchmarks/combinations.py, beside this script: its classes and size


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("encoder")
    arguments = parser.parse_args()
    import keras
    import numpy as np

    import kerazoo
    from kerazoo.layers import MaxPoolingWithArgmax2D

    def build():
        keras.utils.set_random_seed(0)
        encoder = {} if arguments.encoder == "-" else {"encoder": arguments.encoder}
        return kerazoo.create_model(arguments.model, num_classes=NUM_CLASSES, **encoder)

    def probe(model):  # the output, and the indices of every pooling layer that keeps them
        pools = [layer for layer in model.layers if isinstance(layer, MaxPoolingWithArgmax2D)]
        return [layer.name for layer in pools], keras.Model(model.input, [model.output] + [p.output[1] for p in pools])

    model = build()
    rounded = build()
    rounded.set_weights([weight.astype("float16").astype(weight.dtype) for weight in model.get_weights()])
    sample = np.random.default_rng(0).uniform(0, 255, (1, *SIZE, 3)).astype("float32")
    names, full = probe(model)
    _, half = probe(rounded)
    outputs = [keras.ops.convert_to_numpy(tensor) for tensor in full(sample)]
    outputs16 = [keras.ops.convert_to_numpy(tensor) for tensor in half(sample)]
    print(f"{arguments.model} on {arguments.encoder}, {SIZE[0]}x{SIZE[1]}, random weights: argmax agreement of "
          f"float16 weights in Keras {(outputs[0].argmax(-1) == outputs16[0].argmax(-1)).mean():.4f}")
    for name, indices, indices16 in zip(names, outputs[1:], outputs16[1:]):
        print(f"  {name}: pooling indices that flip {(indices != indices16).mean():.5f}")


if __name__ == "__main__":
    main()
