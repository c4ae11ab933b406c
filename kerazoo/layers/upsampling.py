"""Upsampling layers: bed of nails, bilinear (a fixed transposed convolution), a bilinear-initialised
transposed convolution, depth to space."""

import keras
import numpy as np
from keras import ops

from kerazoo.layers.shape import _interleave
from kerazoo.utils.sizes import height_width


@keras.saving.register_keras_serializable(package="kerazoo")
class BedOfNailsUpSampling2D(keras.layers.Layer):
    """Upsamples by placing each value at the top-left of its `size` block, zeros elsewhere.

    Args:
        size: int or (height, width) upsampling factor.
    """

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        self.size = height_width(size, "size", square_from_int=True)

    def call(self, inputs):
        zeros = ops.zeros_like(inputs)
        sh, sw = self.size
        parts = [[inputs if (r, c) == (0, 0) else zeros for c in range(sw)] for r in range(sh)]
        return _interleave(parts, self.size)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        scale = lambda size, factor: None if size is None else size * factor  # noqa: E731
        return (batch, scale(height, self.size[0]), scale(width, self.size[1]), channels)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def bilinear_kernel(kernel_size, channels):
    """The (k, k, channels, channels) bilinear interpolation kernel FCN initialises upsampling with.

    Each channel is upsampled on its own (a diagonal kernel), as in Long et al.'s `upsample_filt`.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    grid = np.arange(kernel_size)
    profile = 1 - np.abs(grid - center) / factor
    filt = np.outer(profile, profile).astype("float32")
    kernel = np.zeros((kernel_size, kernel_size, channels, channels), dtype="float32")
    for channel in range(channels):
        kernel[:, :, channel, channel] = filt
    return kernel


@keras.saving.register_keras_serializable(package="kerazoo")
class BilinearInitializer(keras.initializers.Initializer):
    """Initialises a square `Conv2DTranspose` kernel to per-channel bilinear interpolation."""

    def __call__(self, shape, dtype=None):
        kernel_h, kernel_w, out_channels, in_channels = shape
        if kernel_h != kernel_w or out_channels != in_channels:
            raise ValueError(
                "BilinearInitializer needs a square kernel with as many output as input channels; "
                f"got kernel shape {tuple(shape)}"
            )
        return ops.convert_to_tensor(bilinear_kernel(kernel_h, out_channels), dtype=dtype or "float32")

    def get_config(self):
        return {}


def BilinearConv2DTranspose(filters, factor, trainable=True, name=None, use_bias=False):
    """A transposed convolution that upsamples by `factor`, initialised to bilinear interpolation.

    The kernel is 2 * factor - factor % 2 wide, as in FCN; with "same" padding the output is exactly
    `factor` times the input. It is a plain `keras.layers.Conv2DTranspose`, so it saves and exports
    like any Keras layer.
    """
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive int; got {factor!r}")
    return keras.layers.Conv2DTranspose(
        filters,
        kernel_size=2 * factor - factor % 2,
        strides=factor,
        padding="same",
        use_bias=use_bias,
        kernel_initializer=BilinearInitializer(),
        trainable=trainable,
        name=name,
    )


@keras.saving.register_keras_serializable(package="kerazoo")
class DepthToSpace(keras.layers.Layer):
    """Sub-pixel upsampling (Shi et al., ESPCN): (B, H, W, C * s * s) to (B, s * H, s * W, C).

    `keras.ops.depth_to_space`, so TFLite gets its DEPTH_TO_SPACE builtin. Channel `(r * s + c) * C + k`
    of input pixel (h, w) goes to output pixel (s * h + r, s * w + c), channel k (TensorFlow's order).

    Args:
        block_size: the upsampling factor s, an int >= 2.
    """

    def __init__(self, block_size=2, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 2:
            raise ValueError(f"block_size must be an int >= 2; got {block_size!r}")
        self.block_size = block_size

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels % (self.block_size**2):
            raise ValueError(f"DepthToSpace({self.block_size}) needs channels divisible by "
                             f"{self.block_size**2}; got {channels}")

    def call(self, inputs):
        return ops.depth_to_space(inputs, self.block_size, data_format="channels_last")

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        scale = lambda size: None if size is None else size * self.block_size  # noqa: E731
        return (batch, scale(height), scale(width), None if channels is None else channels // self.block_size**2)

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


@keras.saving.register_keras_serializable(package="kerazoo")
class BilinearUpsampling(keras.layers.Layer):
    """Fixed bilinear upsampling by an integer `scale`, for any input size, with TFLite builtins only.

    Gives what `tf.image.resize(..., "bilinear")` gives (half-pixel centres, edges clamped), but as
    an edge-replicating pad, a fixed per-channel transposed convolution (FCN's bilinear kernel) and a
    crop: `keras.ops.image.resize` needs a static size, and its bicubic mode lowers to TensorFlow's
    ResizeBicubic, which TFLite runs only through Flex. Not trainable.

    Args:
        scale: the upsampling factor, an int >= 2.
    """

    def __init__(self, scale=2, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 2:
            raise ValueError(f"scale must be an int >= 2; got {scale!r}")
        self.scale = scale

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("BilinearUpsampling needs a static channel count")
        self._kernel = bilinear_kernel(2 * self.scale - self.scale % 2, channels)

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        # One replicated row/column on each side makes the clamped edge of a resize.
        x = ops.concatenate([x[:, :1], x, x[:, -1:]], axis=1)
        x = ops.concatenate([x[:, :, :1], x, x[:, :, -1:]], axis=2)
        kernel = ops.convert_to_tensor(self._kernel, dtype=x.dtype)
        x = ops.conv_transpose(x, kernel, strides=self.scale, padding="same")
        shape = ops.shape(inputs)
        s = self.scale
        return x[:, s : s + shape[1] * s, s : s + shape[2] * s, :]

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        scale = lambda size: None if size is None else size * self.scale  # noqa: E731
        return (batch, scale(height), scale(width), channels)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}
