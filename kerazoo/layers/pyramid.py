"""Layers of the pyramid decoders (DeepLab, PSPNet, UPerNet) that work at sizes known only at run time.

Pyramid pooling pools a feature map into bins x bins cells and resizes each pooled map back; the models pad
their input to the output stride inside, so the feature map's size is a run-time value. Keras'
`AdaptiveAveragePooling2D` and `keras.ops.image.resize` need static sizes, so these layers build their
weights from `ops.shape`: a (bins x size) averaging matrix, an (out x in) interpolation matrix, contracted
with the feature map by 2-D matrix products (TFLite FULLY_CONNECTED / BATCH_MATMUL, ONNX MatMul). The
matrices are tiny (bins <= 6 rows or columns), so the products cost about one pass over the features.
`InterleavedBilinearUpsampling` upsamples wide feature maps by an integer factor from two neighbours per
output phase, at a cost that does not grow with the channel count.
"""

import keras
from keras import ops


def _positive_int(value, name):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return value


def bin_matrix(size, bins, dtype="float32"):
    """(bins, size) weights that average `size` cells into `bins`, as PyTorch's adaptive pooling does.

    Bin i covers cells [floor(i * size / bins), ceil((i + 1) * size / bins)): bins may overlap when the
    size is not a multiple of `bins`, and every bin covers at least one cell, even when size < bins.
    `size` may be a Python int or a scalar tensor.
    """
    index = ops.arange(bins, dtype="int32")[:, None]
    size = ops.cast(size, "int32")
    # Integer arithmetic: in float32, i * size / bins can land a hair above an integer and ceil past it.
    start = (index * size) // bins
    end = ((index + 1) * size + bins - 1) // bins
    cells = ops.arange(size, dtype="int32")[None, :]
    inside = ops.logical_and(ops.greater_equal(cells, start), ops.less(cells, end))
    return ops.cast(inside, dtype) / ops.cast(end - start, dtype)


def bilinear_matrix(out_size, in_size, dtype="float32"):
    """(out_size, in_size) weights of a bilinear resize with half-pixel centres and clamped edges.

    What `tf.image.resize(..., "bilinear")` and PyTorch's `interpolate(align_corners=False)` compute:
    output cell u samples the input at (u + 0.5) * in / out - 0.5, clamped to [0, in - 1], from its two
    neighbours. A 1-cell input is broadcast.
    """
    out_f, in_f = ops.cast(out_size, "float32"), ops.cast(in_size, "float32")
    source = (ops.cast(ops.arange(out_size, dtype="int32"), "float32") + 0.5) * (in_f / out_f) - 0.5
    source = ops.clip(source, 0.0, ops.maximum(in_f - 1.0, 0.0))[:, None]
    cells = ops.cast(ops.arange(in_size, dtype="int32"), "float32")[None, :]
    return ops.cast(ops.relu(1.0 - ops.abs(source - cells)), dtype)


def _contract_last(x, matrix):
    """x (..., n) times matrix (m, n) transposed: (..., m), as one 2-D matrix product."""
    shape = ops.shape(x)
    flat = ops.reshape(x, (-1, shape[-1]))
    product = ops.matmul(flat, ops.transpose(matrix))
    return ops.reshape(product, (*(shape[i] for i in range(len(x.shape) - 1)), -1))


def apply_separable(x, rows, cols):
    """Applies `rows` (H' x H) along height and `cols` (W' x W) along width of x (B, H, W, C)."""
    x = ops.transpose(x, (0, 3, 2, 1))  # (B, C, W, H)
    x = _contract_last(x, rows)  # (B, C, W, H')
    x = ops.transpose(x, (0, 1, 3, 2))  # (B, C, H', W)
    x = _contract_last(x, cols)  # (B, C, H', W')
    return ops.transpose(x, (0, 2, 3, 1))


@keras.saving.register_keras_serializable(package="kerazoo")
class BinAveragePooling2D(keras.layers.Layer):
    """Averages a feature map of any run-time size into `bins` x `bins` cells (PSPNet's pyramid levels).

    The cells are PyTorch's `AdaptiveAvgPool2d` cells (see `bin_matrix`), so pretrained PyTorch pyramid
    weights see the same inputs. Unlike `keras.layers.AdaptiveAveragePooling2D`, the input's height and
    width may be unknown until run time (None in the model's input shape).

    Args:
        bins: output height and width, a positive int.
    """

    def __init__(self, bins=1, **kwargs):
        super().__init__(**kwargs)
        self.bins = _positive_int(bins, "bins")

    def call(self, inputs):
        if self.bins == 1:
            return ops.mean(inputs, axis=(1, 2), keepdims=True)
        shape = ops.shape(inputs)
        rows = bin_matrix(shape[1], self.bins, inputs.dtype)
        cols = bin_matrix(shape[2], self.bins, inputs.dtype)
        return apply_separable(inputs, rows, cols)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.bins, self.bins, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "bins": self.bins}


@keras.saving.register_keras_serializable(package="kerazoo")
class BilinearResizeToReference(keras.layers.Layer):
    """Resizes `[x, reference]`: x (B, h, w, C) to reference's height and width, bilinearly, at any sizes.

    Half-pixel centres and clamped edges (`bilinear_matrix`), as `tf.image.resize` and PyTorch's
    `interpolate(align_corners=False)`; a 1x1 input is broadcast (DeepLab's image pooling). For pooled
    pyramid levels (a few cells) to a feature map; `InterleavedBilinearUpsampling` is cheaper for
    integer factors on large maps, since the matrices here grow with both sizes.
    """

    def call(self, inputs):
        x, reference = inputs
        shape, target = ops.shape(x), ops.shape(reference)
        if x.shape[1] == 1 and x.shape[2] == 1:
            return ops.broadcast_to(x, (shape[0], target[1], target[2], x.shape[3]))
        rows = bilinear_matrix(target[1], shape[1], x.dtype)
        cols = bilinear_matrix(target[2], shape[2], x.dtype)
        return apply_separable(x, rows, cols)

    def compute_output_shape(self, input_shape):
        x_shape, reference_shape = input_shape
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])


def _phase_weights(scale):
    """For output phase r of a x`scale` bilinear upsampling: (neighbour offset -1/0/+1, its weight)."""
    phases = []
    for r in range(scale):
        offset = (2 * r + 1 - scale) / (2 * scale)  # where the phase samples, relative to its input cell
        phases.append((0 if offset == 0 else (1 if offset > 0 else -1), abs(offset)))
    return phases


@keras.saving.register_keras_serializable(package="kerazoo")
class InterleavedBilinearUpsampling(keras.layers.Layer):
    """Bilinear upsampling by an integer `scale` for any size and any channel count, TFLite builtins only.

    Gives what `tf.image.resize(..., "bilinear")` gives (half-pixel centres, edges clamped). Each of the
    `scale` output phases along an axis is a weighted sum of an input cell and one neighbour (edge cells
    repeated), and the phases are interleaved by stack and reshape. The cost is a few passes over the
    output, whatever the channel count; `layers.BilinearUpsampling` (a fixed transposed convolution) holds
    a dense (k, k, C, C) kernel, fine for image channels, not for 256-channel decoder features.

    Args:
        scale: the upsampling factor, an int >= 2.
    """

    def __init__(self, scale=2, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 2:
            raise ValueError(f"scale must be an int >= 2; got {scale!r}")
        self.scale = scale

    def _upsample_axis(self, x, axis):
        first = x[:, :1] if axis == 1 else x[:, :, :1]
        last = x[:, -1:] if axis == 1 else x[:, :, -1:]
        padded = ops.concatenate([first, x, last], axis=axis)
        # The input cell and its neighbours above and below (or left and right), each of x's size.
        shifted = {
            -1: padded[:, :-2] if axis == 1 else padded[:, :, :-2],
            0: x,
            1: padded[:, 2:] if axis == 1 else padded[:, :, 2:],
        }
        phases = [x if weight == 0 else (1.0 - weight) * x + weight * shifted[offset]
                  for offset, weight in _phase_weights(self.scale)]
        stacked = ops.stack(phases, axis=axis + 1)  # (B, H, s, W, C) or (B, H, W, s, C)
        shape = ops.shape(x)
        if axis == 1:
            return ops.reshape(stacked, (-1, shape[1] * self.scale, shape[2], x.shape[3]))
        return ops.reshape(stacked, (-1, shape[1], shape[2] * self.scale, x.shape[3]))

    def call(self, inputs):
        return self._upsample_axis(self._upsample_axis(inputs, 1), 2)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        scale = lambda size: None if size is None else size * self.scale  # noqa: E731
        return (batch, scale(height), scale(width), channels)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}
