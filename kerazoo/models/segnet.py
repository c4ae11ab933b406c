"""SegNet (Badrinarayanan, Kendall and Cipolla, 2017) and SegNet-Basic, with true argmax unpooling."""

import keras

from kerazoo import layers
from kerazoo.encoders import ENCODERS, build_application
from kerazoo.models.blocks import conv_bn_relu, model_input, segmentation_task


def _copy_convolutions(application, model):
    """Copies the VGG convolution weights (same layer names) from a Keras Applications model."""
    for layer in application.layers:
        if isinstance(layer, keras.layers.Conv2D):
            model.get_layer(layer.name).set_weights(layer.get_weights())


def build_segnet(spec, num_classes, encoder_weights=None, in_channels=3, input_shape=None, activation=None,
                 freeze_encoder=False, task=None):
    """SegNet on an encoder of plain convolution stages: its convolutions with batch normalisation,
    2x2 argmax pooling, and a mirrored decoder that upsamples with `MaxUnpooling2D` using the
    matching indices.

    Unpooling restores each stage's exact pre-pool size, so any height and width work without padding.
    With `encoder_weights` the encoder convolutions come from the Keras Applications model (the layers
    are named as there: "block{stage}_conv{n}").

    Args:
        spec: an `EncoderSpec` with `conv_stages` (VGG16: 13 convolutions, VGG19: 16).
        task: a `kerazoo.tasks.Task` (input scaling and head); None is segmentation.
        Other arguments: see `kerazoo.create_model`.
    """
    stages = spec.conv_stages
    if not stages:
        valid = [name for name, entry in ENCODERS.items() if entry.conv_stages]
        raise ValueError(f"segnet mirrors the encoder's plain convolution stages (EncoderSpec.conv_stages), and "
                         f"encoder {spec.name!r} has none. Valid encoders: {', '.join(valid)}")
    task = task or segmentation_task(num_classes, in_channels, activation)
    inputs = model_input(input_shape, in_channels)
    x = task.preprocess(inputs, spec.preprocessing)
    pools = []
    for number, stage in enumerate(stages, start=1):
        for conv in range(1, stage.convolutions + 1):
            x = conv_bn_relu(x, stage.filters, use_bias=True, name=f"block{number}_conv{conv}")
        pooled, indices = layers.MaxPoolingWithArgmax2D(2, name=f"block{number}_pool")(x)
        pools.append((indices, x))
        x = pooled
    encoder_end = x
    # Each decoder stage ends at the previous stage's width (the first at its own).
    decoder_widths = (stages[0].filters,) + tuple(stage.filters for stage in stages[:-1])
    for number in range(len(stages), 0, -1):
        indices, reference = pools[number - 1]
        x = layers.MaxUnpooling2D(2, name=f"block{number}_unpool")([x, indices, reference])
        stage = stages[number - 1]
        last = 1 if number == 1 else 0  # decoder stage 1's last convolution is the classifier
        for conv in range(stage.convolutions, last, -1):
            width = decoder_widths[number - 1] if conv == 1 else stage.filters
            x = conv_bn_relu(x, width, use_bias=True, name=f"block{number}_conv{conv}_decoder")
    outputs = task.head(x, inputs, kernel_size=3)
    model = keras.Model(inputs, outputs, name=f"segnet_{spec.name}")
    if encoder_weights is not None:
        _copy_convolutions(build_application(spec, in_channels, encoder_weights), model)
    if freeze_encoder:
        keras.Model(inputs, encoder_end).trainable = False
    return model


def build_segnet_basic(num_classes, in_channels=3, input_shape=None, activation=None, filters=64, kernel_size=7,
                       depth=4, task=None):
    """SegNet-Basic: `depth` stages of `filters` 7x7 convolutions with batch normalisation and argmax
    pooling; the decoder unpools and convolves (batch norm, no ReLU, as in the paper's model), and a
    1x1 classifier follows. Pixels are scaled to [-1, 1] inside the model.
    """
    task = task or segmentation_task(num_classes, in_channels, activation)
    inputs = model_input(input_shape, in_channels)
    x = task.preprocess(inputs, "tf")
    pools = []
    for stage in range(1, depth + 1):
        x = conv_bn_relu(x, filters, kernel_size, use_bias=True, name=f"encoder{stage}_conv")
        pooled, indices = layers.MaxPoolingWithArgmax2D(2, name=f"encoder{stage}_pool")(x)
        pools.append((indices, x))
        x = pooled
    for stage in range(depth, 0, -1):
        indices, reference = pools[stage - 1]
        x = layers.MaxUnpooling2D(2, name=f"decoder{stage}_unpool")([x, indices, reference])
        x = conv_bn_relu(x, filters, kernel_size, relu=False, use_bias=True, name=f"decoder{stage}_conv")
    outputs = task.head(x, inputs, kernel_size=1)
    return keras.Model(inputs, outputs, name="segnet_basic")
