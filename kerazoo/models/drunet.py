"""DRUNet (Zhang et al. 2021): a U-Net of residual blocks, the denoiser of "Plug-and-Play Image Restoration".

`levels` scales (the paper's four), each `num_blocks` residual blocks (conv-ReLU-conv, no batch norm, no
biases); 2x2 strided convolutions go down, 2x2 transposed convolutions go up, and skips are added rather than
concatenated.
The paper also feeds a noise-level map as an extra input channel; without it this is the fixed-noise
denoiser (in_channels as the image has). Made for denoising; any task works.
"""

import keras

from kerazoo import layers
from kerazoo.models.blocks import check_positive_int, model_input, segmentation_task


def build_drunet(num_classes, in_channels=3, input_shape=None, activation=None, filters=64, num_blocks=4, levels=4,
                 task=None):
    """DRUNet: a 3x3 entry convolution, then per scale `num_blocks` residual blocks and a 2x2 stride-2
    convolution down (`levels` scales of widths filters x 1, 2, 4, ...), residual blocks at the bottom, and back
    up with 2x2 transposed convolutions, each scale's encoder output added before its decoder blocks; a 3x3 tail
    convolution is the task's head.

    The paper's is filters=64, num_blocks=4, levels=4 (32.6M parameters). filters=32, num_blocks=1, levels=3
    (0.56M) costs about a sixth of DnCNN's compute per pixel, which is what CPU training can afford. Any input
    size works (padded to a multiple of 2**(levels - 1), cropped back). Pixels are scaled as the task wants
    ([0, 1] for restoration).
    """
    check_positive_int("filters", filters, 64)
    check_positive_int("num_blocks", num_blocks, 4)
    check_positive_int("levels", levels, 4)
    task = task or segmentation_task(num_classes, in_channels, activation)
    widths = [filters * 2**level for level in range(levels)]
    inputs = model_input(input_shape, in_channels)
    reference = task.preprocess(inputs, "tf")
    x = layers.PadToMultiple(2 ** (levels - 1), name="pad_to_stride")(reference)

    def conv(tensor, width, name, kernel_size=3, strides=1, **options):
        return keras.layers.Conv2D(width, kernel_size, strides=strides, padding="same", use_bias=False, name=name,
                                   **options)(tensor)

    def residual_blocks(tensor, width, prefix):
        for block in range(1, num_blocks + 1):
            branch = conv(tensor, width, f"{prefix}_block{block}_conv1", activation="relu")
            branch = conv(branch, width, f"{prefix}_block{block}_conv2")
            tensor = keras.layers.Add(name=f"{prefix}_block{block}_add")([tensor, branch])
        return tensor

    x = conv(x, widths[0], "entry_conv")
    skips = []
    for level in range(levels - 1):
        skips.append(x)
        x = residual_blocks(x, widths[level], f"down{level}")
        x = conv(x, widths[level + 1], f"down{level}_stride", kernel_size=2, strides=2)
    skips.append(x)
    x = residual_blocks(x, widths[-1], "body")
    for level in range(levels - 2, -1, -1):
        x = keras.layers.Add(name=f"up{level}_skip")([x, skips[level + 1]])
        x = keras.layers.Conv2DTranspose(widths[level], 2, strides=2, use_bias=False, name=f"up{level}_upconv")(x)
        x = residual_blocks(x, widths[level], f"up{level}")
    x = keras.layers.Add(name="tail_skip")([x, skips[0]])
    x = layers.CropToReference(name="crop_to_input")([x, reference])
    outputs = task.head(x, inputs, kernel_size=3)
    return keras.Model(inputs, outputs, name="drunet")
