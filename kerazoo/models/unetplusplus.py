"""U-Net++ (Zhou, Rahman Siddiquee, Tajbakhsh and Liang, 2018): nested, dense skip pathways."""

import keras

from kerazoo import layers
from kerazoo.models.blocks import UPSAMPLING, conv_bn_relu, model_input, segmentation_task, upsample
from kerazoo.models.skip_blocks import padded_encoder_features
from kerazoo.models.unet import DEFAULT_DECODER_FILTERS

# The encoder's feature levels: level i holds X^{i,0}, the encoder's features at stride 2^(i+1).
LEVEL_STRIDES = (2, 4, 8, 16, 32)
NESTED_FILTERS = ("encoder", "decoder")


def node_name(level, column):
    """Layer-name prefix of the nested node X^{level,column} (Zhou et al.'s notation)."""
    return f"x_{level}_{column}"


def build_unetplusplus(
    spec,
    num_classes,
    encoder_weights=None,
    in_channels=3,
    input_shape=None,
    activation=None,
    freeze_encoder=False,
    encoder_bn_momentum=None,
    decoder_filters=DEFAULT_DECODER_FILTERS,
    nested_filters="encoder",
    upsampling="nearest",
    batch_norm=True,
    deep_supervision=False,
    task=None,
):
    """U-Net++ decoder on a Keras Applications encoder.

    Node X^{i,j} (level i at stride 2^(i+1), column j >= 1) upsamples X^{i+1,j-1} by 2, concatenates
    every earlier node of its level, X^{i,0} (the encoder's features) .. X^{i,j-1}, and applies two 3x3
    convolutions (batch norm, ReLU). The nodes with i + j = 4 are the U-Net decoder path, with
    `decoder_filters[0..3]` filters from stride 16 to stride 2; the last stage upsamples X^{0,4} to
    stride 1 (`decoder_filters[4]`, no skip). The interior nodes (i + j < 4) are as wide as the encoder's
    features at their level (`nested_filters="encoder"`: Zhou et al., where every node of a level has
    the backbone's width at that level, and segmentation_models_pytorch), or as the decoder path's node
    of their level (`"decoder"`, lighter on wide encoders: ResNet-50's stride-8 nodes go 512 -> 128).
    A level the encoder lacks (ConvNeXt has no stride 2) has no X^{i,0}: its nodes concatenate the
    nested nodes only and take the decoder path's width.
    The input is padded to a multiple of the output stride inside the model and the output cropped back.

    Deep supervision (`deep_supervision=True`): each of X^{0,1} .. X^{0,4} gets its own last stage to
    stride 1 and its own 1x1 score convolution ("deep_supervision_{j}_scores"); the model's one output is
    the task's head on the mean of the four scores (Zhou et al.'s "accurate mode"; the mean of logits
    rather than of probabilities, so that any task's head follows). With one output, `model.fit`,
    `.keras` files and every export work unchanged, and training the mean already sends the loss's
    gradient straight into every nested column. For the paper's loss on each branch, train
    `deep_supervision_model(model)`, which shares the layers and returns the four branch scores.

    Args:
        spec: the encoder's `EncoderSpec`.
        num_classes: output channels of the head.
        decoder_filters: five ints, the filters of the decoder path from stride 16 to stride 1.
        nested_filters: "encoder" or "decoder": the width of the interior nodes (see above).
        upsampling: one of "nearest" (segmentation_models_pytorch's), "transpose" (Zhou et al.'s code),
            "bilinear", "bed_of_nails".
        batch_norm: batch normalisation after each decoder convolution.
        deep_supervision: average four supervised nested outputs (see above).
        task: a `kerazoo.tasks.Task` (input scaling and head); None is segmentation.
        Other arguments: see `kerazoo.create_model`.
    """
    decoder_filters = tuple(decoder_filters)
    if len(decoder_filters) != 5 or not all(
            isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in decoder_filters):
        raise ValueError(f"decoder_filters must be 5 positive ints (strides 16 -> 1); got {decoder_filters!r}")
    if nested_filters not in NESTED_FILTERS:
        raise ValueError(f"nested_filters must be one of {NESTED_FILTERS}; got {nested_filters!r}")
    if upsampling not in UPSAMPLING:
        raise ValueError(f"upsampling must be one of {UPSAMPLING}; got {upsampling!r}")
    if not isinstance(deep_supervision, bool):
        raise ValueError(f"deep_supervision must be True or False; got {deep_supervision!r}")
    task = task or segmentation_task(num_classes, in_channels, activation)
    inputs = model_input(input_shape, in_channels)
    reference = task.preprocess(inputs, spec.preprocessing)
    by_stride = padded_encoder_features(reference, spec, LEVEL_STRIDES, in_channels, encoder_weights,
                                        freeze_encoder, encoder_bn_momentum)
    depth = len(LEVEL_STRIDES) - 1  # the deepest level, 4 (stride 32)
    # A level the encoder lacks (ConvNeXt's stride 2) has no X^{i,0}: its nodes see the nested ones only.
    nodes = {(level, 0): by_stride.get(stride) for level, stride in enumerate(LEVEL_STRIDES)}
    for column in range(1, depth + 1):
        for level in range(depth - column + 1):
            outer = level + column == depth
            if outer or nested_filters == "decoder" or nodes[(level, 0)] is None:
                filters = decoder_filters[depth - 1 - level]
            else:
                filters = nodes[(level, 0)].shape[-1]
            same_level = [nodes[(level, k)] for k in range(column) if nodes[(level, k)] is not None]
            nodes[(level, column)] = _nested_node(nodes[(level + 1, column - 1)], same_level, filters, upsampling,
                                                  batch_norm, node_name(level, column))
    if not deep_supervision:
        x = _last_stage(nodes[(0, depth)], decoder_filters[-1], upsampling, batch_norm, "decoder_final")
        x = layers.CropToReference(name="crop_to_input")([x, reference])
        outputs = task.head(x, inputs)
    else:
        branch_scores = []
        for column in range(1, depth + 1):
            x = _last_stage(nodes[(0, column)], decoder_filters[-1], upsampling, batch_norm,
                            f"deep_supervision_{column}_final")
            x = keras.layers.Conv2D(task.score_channels, 1, name=f"deep_supervision_{column}_scores")(x)
            branch_scores.append(layers.CropToReference(name=f"deep_supervision_{column}_crop")([x, reference]))
        x = keras.layers.Average(name="deep_supervision_mean")(branch_scores)
        outputs = task.head(x, inputs, scored=True)
    return keras.Model(inputs, outputs, name=f"unetplusplus_{spec.name}")


def _upsample(x, filters, method, name):
    """`blocks.upsample`, with nearest and bilinear as `AnySizeUpSampling2D`: the same values, and TFLite files
    that keep a dynamic height and width."""
    if method in ("nearest", "bilinear"):
        return layers.AnySizeUpSampling2D(2, method, name=name)(x)
    return upsample(x, filters, method, name=name)


def _nested_node(below, same_level, filters, upsampling, batch_norm, name):
    """X^{i,j}: upsampled X^{i+1,j-1}, concatenated with X^{i,0..j-1}, two 3x3 convolutions."""
    x = _upsample(below, filters, upsampling, name=f"{name}_upsample")
    if same_level:
        x = keras.layers.Concatenate(name=f"{name}_concat")([x, *same_level])
    x = conv_bn_relu(x, filters, batch_norm=batch_norm, name=f"{name}_conv1")
    return conv_bn_relu(x, filters, batch_norm=batch_norm, name=f"{name}_conv2")


def _last_stage(x, filters, upsampling, batch_norm, name):
    """Stride 2 to stride 1: upsample, two 3x3 convolutions (no skip: the encoders' first tap is at stride 2)."""
    x = _upsample(x, filters, upsampling, name=f"{name}_upsample")
    x = conv_bn_relu(x, filters, batch_norm=batch_norm, name=f"{name}_conv1")
    return conv_bn_relu(x, filters, batch_norm=batch_norm, name=f"{name}_conv2")


def deep_supervision_model(model):
    """A model for U-Net++'s deep-supervision loss: the same layers, the four branch scores as outputs.

    Zhou et al. train with the loss on each nested output X^{0,1} .. X^{0,4}; `model` itself returns their
    mean through the task's head. Training this view trains `model` (the layers are shared); save, load
    and export `model`.

        view = deep_supervision_model(model)
        view.compile("adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        view.fit(images, [masks] * 4)

    Args:
        model: a "unetplusplus" model built with `deep_supervision=True`.

    Returns:
        A `keras.Model` from the same input to four outputs, each (B, H, W, score channels) float32: the
        branches' scores before the head's activation (logits for segmentation; for restoration tasks,
        what the head turns into pixels).

    Raises:
        ValueError: when `model` has no deep-supervision branches.
    """
    try:
        outputs = [model.get_layer(f"deep_supervision_{column}_crop").output for column in range(1, 5)]
    except ValueError:
        raise ValueError(f"{model.name} has no deep-supervision branches; build it with "
                         "kerazoo.create_model('unetplusplus', ..., deep_supervision=True)") from None
    # Mixed precision: the losses see float32, as the main output's head gives.
    outputs = [keras.layers.Activation("linear", dtype="float32", name=f"deep_supervision_{column}")(output)
               for column, output in enumerate(outputs, start=1)]
    return keras.Model(model.input, outputs, name=f"{model.name}_deep_supervision")
