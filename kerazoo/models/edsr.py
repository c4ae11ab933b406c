"""EDSR (Lim et al. 2017): residual blocks at the input's own resolution, no batch norm, upsampled only at the end.

Made for super-resolution, where every layer runs on the small low-resolution image; with the denoising task it
is a residual denoiser at full resolution. The paper's upsampler (convolution and pixel shuffle) is the task's
head: one 3x3 convolution to `scale`**2 x channels and depth-to-space (one step, ESPCN's, also at x4).
"""

import keras

from kerazoo.models.blocks import check_positive_int, model_input, segmentation_task


def build_edsr(num_classes, in_channels=3, input_shape=None, activation=None, filters=64, num_blocks=16,
               residual_scaling=1.0, task=None):
    """EDSR: a 3x3 entry convolution, `num_blocks` residual blocks (conv-ReLU-conv, the branch scaled by
    `residual_scaling` before it is added), a 3x3 convolution, a skip from the entry convolution, then the task's head.

    The paper's EDSR-baseline is filters=64, num_blocks=16, residual_scaling=1; its large EDSR 256, 32 and 0.1.
    Any input size works (no pooling). Pixels are scaled as the task wants ([0, 1] for restoration).
    """
    check_positive_int("filters", filters, 64)
    check_positive_int("num_blocks", num_blocks, 16)
    if isinstance(residual_scaling, bool) or not isinstance(residual_scaling, (int, float)) or residual_scaling <= 0:
        raise ValueError(f"residual_scaling must be a positive number (the paper's baseline 1, EDSR 0.1); "
                         f"got {residual_scaling!r}")
    task = task or segmentation_task(num_classes, in_channels, activation)
    inputs = model_input(input_shape, in_channels)
    x = task.preprocess(inputs, "tf")

    def conv(tensor, name, **options):
        return keras.layers.Conv2D(filters, 3, padding="same", name=name, **options)(tensor)

    head = x = conv(x, "entry_conv")
    for block in range(1, num_blocks + 1):
        branch = conv(x, f"block{block}_conv1", activation="relu")
        branch = conv(branch, f"block{block}_conv2")
        if residual_scaling != 1:
            branch = keras.layers.Rescaling(residual_scaling, name=f"block{block}_scaling")(branch)
        x = keras.layers.Add(name=f"block{block}_add")([x, branch])
    x = conv(x, "body_conv")
    x = keras.layers.Add(name="body_add")([head, x])
    outputs = task.head(x, inputs, kernel_size=3)
    return keras.Model(inputs, outputs, name="edsr")
