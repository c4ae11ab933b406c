"""U-Net: Ronneberger et al. (2015) as published, and U-Net decoders on every registered encoder."""

import keras

from kerazoo import layers
from kerazoo.encoders import build_encoder, feature_strides
from kerazoo.models.blocks import UPSAMPLING, check_positive_int, conv_bn_relu, model_input, segmentation_task, upsample

DEFAULT_DECODER_FILTERS = (256, 128, 64, 32, 16)


def build_unet(
    spec,
    num_classes,
    encoder_weights=None,
    in_channels=3,
    input_shape=None,
    activation=None,
    freeze_encoder=False,
    encoder_bn_momentum=None,
    decoder_filters=DEFAULT_DECODER_FILTERS,
    upsampling="transpose",
    batch_norm=True,
    attention=False,
    task=None,
):
    """U-Net decoder on a Keras Applications encoder.

    Five decoder stages go from stride 32 back to stride 1; each upsamples by 2, concatenates the
    encoder's features at that stride (`spec.features` at strides 16, 8, 4, 2; a stride the encoder
    lacks, such as ConvNeXt's 2, gets no skip) and applies two 3x3 convolutions. The input is padded to a multiple of 32 inside the model and the output cropped
    back, so any height and width work.

    Args:
        spec: the encoder's `EncoderSpec`.
        num_classes: output channels of the head.
        decoder_filters: five ints, the filters of each decoder stage from deep to shallow.
        encoder_bn_momentum: momentum of the encoder's BatchNormalization layers (None keeps Keras
            Applications' value; 0.9 lets MobileNetV2 train from scratch in a few hundred steps).
        upsampling: one of "transpose", "nearest", "bilinear", "bed_of_nails".
        batch_norm: batch normalisation after each decoder convolution.
        attention: an additive attention gate on each skip (Oktay et al. 2018; see `attention_gate`).
        task: a `kerazoo.tasks.Task` (input scaling and head); None is segmentation.
        Other arguments: see `kerazoo.create_model`.
    """
    if not isinstance(attention, bool):
        raise ValueError(f"attention must be True or False; got {attention!r}")
    decoder_filters = tuple(decoder_filters)
    if len(decoder_filters) != 5 or not all(isinstance(f, int) and f > 0 for f in decoder_filters):
        raise ValueError(f"decoder_filters must be 5 positive ints (strides 32 -> 1); got {decoder_filters!r}")
    if upsampling not in UPSAMPLING:
        raise ValueError(f"upsampling must be one of {UPSAMPLING}; got {upsampling!r}")
    task = task or segmentation_task(num_classes, in_channels, activation)
    inputs = model_input(input_shape, in_channels)
    reference = x = task.preprocess(inputs, spec.preprocessing)
    x = layers.PadToMultiple(spec.output_stride, name="pad_to_stride")(x)
    strides = feature_strides(spec)
    encoder = build_encoder(spec, in_channels, encoder_weights, trainable=not freeze_encoder,
                            tap_layers=spec.feature_names(strides), bn_momentum=encoder_bn_momentum)
    *taps, x = encoder(x)
    by_stride = dict(zip(strides, taps))
    skips = [by_stride.get(stride) for stride in (16, 8, 4, 2)] + [None]  # then stride 1 without a skip
    for stage, (filters, skip) in enumerate(zip(decoder_filters, skips)):
        if attention and skip is not None:
            skip = attention_gate(skip, x, filters, name=f"decoder_stage{stage}_attention")
        x = upsample(x, filters, upsampling, name=f"decoder_stage{stage}_upsample")
        if skip is not None:
            x = keras.layers.Concatenate(name=f"decoder_stage{stage}_concat")([x, skip])
        x = conv_bn_relu(x, filters, batch_norm=batch_norm, name=f"decoder_stage{stage}_conv1")
        x = conv_bn_relu(x, filters, batch_norm=batch_norm, name=f"decoder_stage{stage}_conv2")
    x = layers.CropToReference(name="crop_to_input")([x, reference])
    outputs = task.head(x, inputs)
    return keras.Model(inputs, outputs, name=f"unet_{spec.name}")


def attention_gate(skip, gating, filters, name):
    """Oktay et al.'s additive attention gate: the skip scaled by coefficients in (0, 1) per pixel.

    The skip x (stride s) is brought to the gating signal's grid by a 2x2 stride-2 convolution, the
    gating signal g (the decoder's features at stride 2s) by a 1x1 convolution, both to `filters`
    channels; then alpha = sigmoid(psi(ReLU(W_x x + W_g g))), psi a 1x1 convolution to one channel,
    is upsampled 2x (bilinear) and multiplies every channel of x. As in the authors' code
    (GridAttentionBlock2D, without its output transform).
    """
    theta = keras.layers.Conv2D(filters, 2, strides=2, use_bias=False, name=f"{name}_skip")(skip)
    phi = keras.layers.Conv2D(filters, 1, name=f"{name}_gating")(gating)
    x = keras.layers.Add(name=f"{name}_add")([theta, phi])
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    x = keras.layers.Conv2D(1, 1, activation="sigmoid", name=f"{name}_coefficients")(x)
    x = layers.AnySizeUpSampling2D(2, "bilinear", name=f"{name}_upsample")(x)
    return keras.layers.Multiply(name=f"{name}_apply")([skip, x])


PAPER_FILTERS = (64, 128, 256, 512, 1024)


def unet_paper_output_size(size):
    """Output size of the paper's U-Net for an input `size`, or None when the size does not fit.

    A size fits when every 2x2 pooling sees an even size after the two valid 3x3 convolutions.
    """
    for _ in range(4):
        size -= 4
        if size <= 0 or size % 2:
            return None
        size //= 2
    size -= 4
    for _ in range(4):
        if size <= 0:
            return None
        size = size * 2 - 4
    return size if size > 0 else None


def nearest_valid_unet_paper_sizes(size, count=2):
    """The valid input sizes closest to `size` (below and above)."""
    below = next((s for s in range(size, 0, -1) if unet_paper_output_size(s)), None)
    above = next(s for s in range(size, size + 64) if unet_paper_output_size(s))
    return tuple(s for s in (below, above) if s is not None)[:count]


PADDINGS = ("valid", "same")


def build_unet_paper(num_classes, in_channels=1, input_shape=None, activation=None, padding="valid", filters=64,
                     task=None):
    """U-Net exactly as Ronneberger et al.: valid 3x3 convolutions, 2x2 max pooling, 2x2 up-convolutions,
    crop and concatenate. A 572x572 input gives a 388x388 output.

    With padding="valid" (the paper's) input height and width must be static and valid (each pooling
    sees an even size); otherwise a ValueError names the nearest valid sizes. padding="same" keeps the
    size (the input is padded to a multiple of 16 and the output cropped back), so any size works; the
    restoration and depth tasks need it. Pixels are scaled to [-1, 1] inside the model (segmentation).
    `filters` is the first level's width (the paper's 64), doubled at each of the four poolings; 32 costs
    about a quarter of the paper's compute, which is what CPU training of restoration models can afford.
    """
    check_positive_int("filters", filters, 64)
    level_filters = tuple(filters * 2**level for level in range(len(PAPER_FILTERS)))
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}; got {padding!r}")
    task = task or segmentation_task(num_classes, in_channels, activation)
    if input_shape is None and padding == "valid":
        input_shape = (572, 572, in_channels)
    for size in input_shape[:2] if padding == "valid" else ():
        if size is None:
            raise ValueError(
                "unet_paper needs a static input size (valid convolutions); e.g. input_shape=(572, 572, 1)"
            )
        if unet_paper_output_size(size) is None:
            raise ValueError(
                f"unet_paper cannot take size {size}: with valid convolutions every pooling needs an even "
                f"size. Nearest valid sizes: {nearest_valid_unet_paper_sizes(size)}"
            )
    inputs = model_input(input_shape, in_channels)
    reference = x = task.preprocess(inputs, "tf")
    if padding == "same":
        x = layers.PadToMultiple(16, name="pad_to_stride")(x)
    skips = []
    for level, width in enumerate(level_filters):
        if level > 0:
            x = keras.layers.MaxPooling2D(2, name=f"down{level}_pool")(x)
        x = conv_bn_relu(x, width, batch_norm=False, padding=padding, name=f"down{level}_conv1")
        x = conv_bn_relu(x, width, batch_norm=False, padding=padding, name=f"down{level}_conv2")
        skips.append(x)
    for level, width in zip(range(3, -1, -1), level_filters[-2::-1]):
        x = keras.layers.Conv2DTranspose(width, 2, strides=2, name=f"up{level}_upconv")(x)
        skip = layers.CropToReference("center", name=f"up{level}_crop")([skips[level], x])
        x = keras.layers.Concatenate(name=f"up{level}_concat")([skip, x])
        x = conv_bn_relu(x, width, batch_norm=False, padding=padding, name=f"up{level}_conv1")
        x = conv_bn_relu(x, width, batch_norm=False, padding=padding, name=f"up{level}_conv2")
    if padding == "same":
        x = layers.CropToReference(name="crop_to_input")([x, reference])
    outputs = task.head(x, inputs)
    return keras.Model(inputs, outputs, name="unet_paper")
