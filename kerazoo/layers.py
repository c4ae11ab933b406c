"""Custom layers of kerazoo: argmax pooling and unpooling, upsampling, padding and preprocessing.

Every layer uses `keras.ops` only, is registered for `.keras` serialization, and lowers to TFLite
builtin ops and to a valid ONNX graph. Argmax pooling is written with reshapes, slices, comparisons
and 0/1 masks (no `tf.nn.max_pool_with_argmax`, no float argmax, no one-hot products), because those
are what the mobile runtimes and the int8 converter handle correctly.
"""

import keras
import numpy as np
from keras import ops

PACKAGE = "kerazoo"


def _pair(value, name):
    """Returns `value` as a (height, width) pair of positive ints, or raises naming `name`."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints; got {value!r}")
    return pair


def _ceil_div(size, factor):
    """Ceil division that works for static ints, None and dynamic tensors."""
    if size is None:
        return None
    return (size + factor - 1) // factor


def _interleave(parts, block):
    """Interleaves block_h x block_w tensors of shape (B, h, w, C) into one of shape (B, h*bh, w*bw, C).

    `parts[r][c]` goes to row offset r and column offset c of every block. Uses stack + reshape
    (at most 5-D) so that TFLite and ONNX get plain PACK/RESHAPE ops.
    """
    block_h, block_w = block
    shape = ops.shape(parts[0][0])
    height, width, channels = shape[1], shape[2], shape[3]
    rows = []
    for row_parts in parts:
        row = ops.stack(row_parts, axis=3)  # (B, h, w, bw, C)
        rows.append(ops.reshape(row, (-1, height, width * block_w, channels)))
    stacked = ops.stack(rows, axis=2)  # (B, h, bh, w*bw, C)
    return ops.reshape(stacked, (-1, height * block_h, width * block_w, channels))


def _pad_to_multiple_by_edge(x, block):
    """Repeats the last row/column so that height and width become multiples of `block`.

    Edge repetition (not -inf or zero padding) keeps every window maximum a real input value and keeps
    the int8 quantisation range of the tensor unchanged. The tie rule then always picks the original
    pixel, because repeated ones come later in row-major window order.
    """
    for axis, factor in ((1, block[0]), (2, block[1])):
        if factor == 1:
            continue
        size = ops.shape(x)[axis]
        if isinstance(size, int) and size % factor == 0:
            continue
        target = _ceil_div(size, factor) * factor
        last = x[:, -1:, :, :] if axis == 1 else x[:, :, -1:, :]
        x = ops.concatenate([x] + [last] * (factor - 1), axis=axis)
        x = x[:, :target, :, :] if axis == 1 else x[:, :, :target, :]
    return x


# Argmax pooling and unpooling come in two formulations with the same results. The reference one
# (strided slices, comparisons and SELECTs on int32 indices) is kept to test the fast one against. The
# fast one is what the layers run: a reshape and unit-stride slices, MAX_POOL_2D, one comparison per
# window position, MUL/ADD/SUB/RELU on 0/1 masks and DEPTH_TO_SPACE. In LiteRT, XNNPACK takes all but
# the comparisons and casts; strided slices, SELECT, EQUAL and PACK ran in slow reference kernels
# (benchmarks/SEGNET_TFLITE.md).


def _argmax_pool_reference(inputs, block, tolerance):
    """The reference formulation of `MaxPoolingWithArgmax2D`: strided slices, comparisons and selects."""
    x = _pad_to_multiple_by_edge(inputs, block)
    ph, pw = block
    candidates = [x[:, r::ph, c::pw, :] for r in range(ph) for c in range(pw)]
    window_max = ops.stop_gradient(candidates[0])
    for candidate in candidates[1:]:
        window_max = ops.maximum(window_max, ops.stop_gradient(candidate))
    threshold = window_max - tolerance * ops.abs(window_max) if tolerance else window_max
    # Walk the window backwards so that the first maximum in row-major order wins.
    indices = ops.full_like(window_max, len(candidates) - 1, dtype="int32")
    pooled = candidates[-1]
    for position in range(len(candidates) - 2, -1, -1):
        is_max = ops.greater_equal(candidates[position], threshold)
        indices = ops.where(is_max, position, indices)
        pooled = ops.where(is_max, candidates[position], pooled)
    return pooled, indices


def _window_candidates(x, block):
    """The ph * pw values of every window, row-major, each (B, H / ph, W / pw, C); H and W are multiples.

    Reshapes and unit-stride 4-D slices: x[:, r::ph, c::pw] would be a strided slice, which XNNPACK does
    not take (10x slower in LiteRT's reference kernel), and int8 conversion leaves 5-D slices in float.
    """
    ph, pw = block
    shape = ops.shape(x)
    height, width, channels = shape[1] // ph, shape[2] // pw, shape[3]
    rows = ops.reshape(x, (-1, height, ph, width * pw * channels))
    candidates = []
    for r in range(ph):
        row = ops.reshape(rows[:, :, r : r + 1, :], (-1, height, width, pw * channels))
        candidates += [row[:, :, :, c * channels : (c + 1) * channels] for c in range(pw)]
    return candidates


def _argmax_pool_fast(inputs, block, tolerance):
    """`_argmax_pool_reference` with 0/1 float masks: the same pooled values and indices for finite inputs.

    A candidate c is a maximum when m - c <= tolerance * |m| (m: the window's maximum, from MAX_POOL_2D).
    For near ties m - c is exact (Sterbenz), so this is the reference's c >= m - tolerance * |m| up to the
    rounding of that threshold; in int8, m - c is exactly 0 for a tie (m and c share one scale), where a
    requantised threshold could land above m. `free[k]` is 1 while no earlier candidate was a maximum, so
    the first one wins. The pooled value is the sum of mask * candidate (one non-zero term: exact), and
    gradients flow through it to the selected inputs.
    """
    x = _pad_to_multiple_by_edge(inputs, block)
    candidates = _window_candidates(x, block)
    if len(candidates) == 1:  # 1 x 1 windows
        return x, ops.zeros_like(x, dtype="int32")
    window_max = ops.stop_gradient(ops.max_pool(x, block, block, padding="valid", data_format="channels_last"))
    slack = tolerance * ops.abs(window_max) if tolerance else 0.0
    free, dtype = [None], window_max.dtype
    for candidate in candidates[:-1]:
        # One comparison per position: not delegated, but cheap next to the reference's SELECTs.
        is_max = ops.cast(ops.less_equal(window_max - ops.stop_gradient(candidate), slack), dtype)
        free.append(1.0 - is_max if free[-1] is None else free[-1] * (1.0 - is_max))
    selected = [1.0 - free[1]] + [free[k] - free[k + 1] for k in range(1, len(free) - 1)] + [free[-1]]
    pooled = selected[0] * candidates[0]
    for mask, candidate in zip(selected[1:], candidates[1:]):
        pooled = pooled + mask * candidate
    index = free[1]  # sum of k * selected[k] = sum of free[k] for k >= 1
    for still_free in free[2:]:
        index = index + still_free
    return pooled, ops.cast(index + 0.5, "int32")  # + 0.5: int8 rounding must not truncate 3 to 2


def _unpool_reference(values, indices, block):
    """The reference formulation of `MaxUnpooling2D` (before the crop): selects and an interleave."""
    ph, pw = block
    zeros = ops.zeros_like(values)
    parts = [[ops.where(ops.equal(indices, r * pw + c), values, zeros) for c in range(pw)] for r in range(ph)]
    return _interleave(parts, block)


def _unpool_fast(values, indices, block):
    """`_unpool_reference` for square blocks: values times 0/1 masks, concatenated, DEPTH_TO_SPACE.

    The mask of position k is relu(min(i - k + 1, k + 1 - i)) for the integer index i: 1 at k, else 0.
    """
    count = block[0] * block[1]
    if count == 1:
        return values
    index = ops.cast(indices, values.dtype)
    masks = [ops.relu(1.0 - index)]
    masks += [ops.relu(ops.minimum(index - (k - 1.0), (k + 1.0) - index)) for k in range(1, count - 1)]
    masks += [ops.relu(index - (count - 2.0))]
    parts = ops.concatenate([values * mask for mask in masks], axis=-1)
    return ops.depth_to_space(parts, block[0], data_format="channels_last")


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaxPoolingWithArgmax2D(keras.layers.Layer):
    """Max pooling that also returns where each maximum was.

    Windows do not overlap (strides equal `pool_size`). Odd sizes are pooled like
    `MaxPooling2D(padding="same")`: the output has ceil(H / ph) x ceil(W / pw) positions and the
    partial windows at the bottom and right see only real pixels.

    Returns `(pooled, indices)`. `indices` (int32, same shape as `pooled`) is the position of the
    maximum inside its window in row-major order, `r * pw + c`; ties go to the first maximum in that
    order. Pass both to `MaxUnpooling2D`. Gradients flow to the selected input positions.

    At inference, values within `tie_tolerance` (relative) of the window's maximum count as ties. Flat
    image regions give exactly equal values in a window; another runtime (TFLite, ONNX Runtime)
    computes them a few ulps apart, and an exact comparison would then send the unpooled value to
    another pixel. The selected value is at most `tie_tolerance * |max|` below the maximum. Training
    compares exactly (measured: the tolerance during training cost the demo 12 points of mIoU).

    Args:
        pool_size: int or (height, width) of the pooling window.
        tie_tolerance: relative tolerance for ties, >= 0; 0 compares exactly.
    """

    # Read by kerazoo.export: near-tied window values may pick another position in another runtime, so
    # an exported file is held to argmax agreement, its max |diff| is reported (see kerazoo.export.parity).
    export_parity = "argmax_agreement"

    def __init__(self, pool_size=2, tie_tolerance=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size, "pool_size")
        if not isinstance(tie_tolerance, (int, float)) or not 0 <= tie_tolerance < 1:
            raise ValueError(f"tie_tolerance must be a float in [0, 1); got {tie_tolerance!r}")
        self.tie_tolerance = float(tie_tolerance)

    def call(self, inputs, training=None):
        tolerance = 0.0 if training else self.tie_tolerance
        return _argmax_pool_fast(inputs, self.pool_size, tolerance)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        shape = (batch, _ceil_div(height, self.pool_size[0]), _ceil_div(width, self.pool_size[1]), channels)
        return shape, shape

    def compute_output_spec(self, inputs):
        shape = self.compute_output_shape(inputs.shape)[0]
        return (
            keras.KerasTensor(shape, dtype=inputs.dtype),
            keras.KerasTensor(shape, dtype="int32"),
        )

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "tie_tolerance": self.tie_tolerance}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaxUnpooling2D(keras.layers.Layer):
    """Puts each value back at the position its `MaxPoolingWithArgmax2D` recorded, zeros elsewhere.

    Called on `[values, indices]` it returns the pooled size times `pool_size`. Called on
    `[values, indices, reference]` it crops to the height and width of `reference` (the tensor that
    was pooled), so that odd sizes come back exactly. Gradients flow to `values`.

    Args:
        pool_size: int or (height, width); must match the pooling layer's.
    """

    export_parity = "argmax_agreement"  # as MaxPoolingWithArgmax2D: it moves values by whole pixels

    def __init__(self, pool_size=2, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size, "pool_size")

    def _check_inputs(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) not in (2, 3):
            raise ValueError(
                "MaxUnpooling2D expects [values, indices] or [values, indices, reference]; "
                f"got {type(inputs).__name__} of length {len(inputs) if isinstance(inputs, (list, tuple)) else 1}"
            )

    def build(self, input_shape):
        self._check_inputs(input_shape)
        values_shape, indices_shape = input_shape[0], input_shape[1]
        if values_shape[-1] is not None and indices_shape[-1] is not None and values_shape[-1] != indices_shape[-1]:
            raise ValueError(
                f"MaxUnpooling2D got values of shape {tuple(values_shape)} but indices of shape "
                f"{tuple(indices_shape)}; pass the indices of the pooling that produced these values"
            )

    def call(self, inputs):
        self._check_inputs(inputs)
        values, indices = inputs[0], ops.cast(inputs[1], "int32")
        square = self.pool_size[0] == self.pool_size[1]
        output = (_unpool_fast if square else _unpool_reference)(values, indices, self.pool_size)
        if len(inputs) == 3:
            out_shape, reference_shape = ops.shape(output), ops.shape(inputs[2])
            if not all(isinstance(size, int) for size in (*out_shape[1:3], *reference_shape[1:3])) or \
                    tuple(out_shape[1:3]) != tuple(reference_shape[1:3]):  # a crop is a full copy in TFLite
                output = output[:, : reference_shape[1], : reference_shape[2], :]
        return output

    def compute_output_shape(self, input_shape):
        self._check_inputs(input_shape)
        batch, height, width, channels = input_shape[0]
        if len(input_shape) == 3:
            return (batch, input_shape[2][1], input_shape[2][2], channels)
        scale = lambda size, factor: None if size is None else size * factor  # noqa: E731
        return (batch, scale(height, self.pool_size[0]), scale(width, self.pool_size[1]), channels)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


@keras.saving.register_keras_serializable(package=PACKAGE)
class BedOfNailsUpSampling2D(keras.layers.Layer):
    """Upsamples by placing each value at the top-left of its `size` block, zeros elsewhere.

    Args:
        size: int or (height, width) upsampling factor.
    """

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        self.size = _pair(size, "size")

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


@keras.saving.register_keras_serializable(package=PACKAGE)
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


@keras.saving.register_keras_serializable(package=PACKAGE)
class PadToMultiple(keras.layers.Layer):
    """Zero-pads height and width at the bottom and right up to multiples of `multiple`.

    Lets a network with output stride 32 take any input size; `CropToReference` removes the padding.

    Args:
        multiple: int, the network's output stride.
    """

    def __init__(self, multiple=32, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(multiple, int) or multiple < 1:
            raise ValueError(f"multiple must be a positive int; got {multiple!r}")
        self.multiple = multiple

    def call(self, inputs):
        shape = ops.shape(inputs)
        # (m - size % m) % m, not (-size) % m: tf2onnx lowers a negative FloorMod wrongly.
        pad_h = (self.multiple - shape[1] % self.multiple) % self.multiple
        pad_w = (self.multiple - shape[2] % self.multiple) % self.multiple
        if isinstance(pad_h, int) and isinstance(pad_w, int) and pad_h == 0 and pad_w == 0:
            return inputs
        padded = ops.pad(inputs, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
        # A pad with dynamic amounts forgets even the static channel count, which TFLite's CONV_2D
        # needs; a reshape to the same size gives it back.
        return ops.reshape(padded, (-1, shape[1] + pad_h, shape[2] + pad_w, inputs.shape[-1]))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        up = lambda size: None if size is None else _ceil_div(size, self.multiple) * self.multiple  # noqa: E731
        return (batch, up(height), up(width), channels)

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CropToReference(keras.layers.Layer):
    """Crops `[x, reference]` to the height and width of `reference`.

    Args:
        mode: "top_left" keeps the first rows and columns (undoes `PadToMultiple`); "center" takes the
            middle (U-Net's crop-and-concatenate).
    """

    MODES = ("top_left", "center")

    def __init__(self, mode="top_left", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}; got {mode!r}")
        self.mode = mode

    def call(self, inputs):
        x, reference = inputs
        x_shape, ref_shape = ops.shape(x), ops.shape(reference)
        if self.mode == "top_left":
            return x[:, : ref_shape[1], : ref_shape[2], :]
        top = (x_shape[1] - ref_shape[1]) // 2
        left = (x_shape[2] - ref_shape[2]) // 2
        return x[:, top : top + ref_shape[1], left : left + ref_shape[2], :]

    def compute_output_shape(self, input_shape):
        x_shape, ref_shape = input_shape
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package=PACKAGE)
class EncoderPreprocessing(keras.layers.Layer):
    """Turns raw 0..255 pixels into what an ImageNet encoder expects, inside the model.

    Modes, as in `keras.applications`:
        "caffe": RGB to BGR, minus the ImageNet mean per channel (VGG, ResNet).
        "tf": scale to [-1, 1] (MobileNetV2).
        "none": pass through.
    With a channel count other than 3, "caffe" subtracts the mean of the three channel means.
    """

    MODES = ("caffe", "tf", "none")
    CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

    def __init__(self, mode="caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}; got {mode!r}")
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "caffe":
            if x.shape[-1] == 3:
                return ops.flip(x, axis=-1) - ops.convert_to_tensor(self.CAFFE_BGR_MEAN, dtype=x.dtype)
            return x - float(np.mean(self.CAFFE_BGR_MEAN))
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


# Input dtypes tf.raw_ops.FusedBatchNormV3 takes (its statistics and parameters stay float32).
_FUSED_DTYPES = ("float32", "bfloat16", "float16")
# cuDNN's lower bound on epsilon; a smaller one keeps the keras.ops path on every device.
_FUSED_MIN_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` that runs as one fused kernel on the TensorFlow backend.

    Keras 3 normalises in several ops on TensorFlow (moments, then `tf.nn.batch_normalization`, with
    float32 casts around bfloat16 inputs); this layer calls `FusedBatchNormV3` (what
    `tf.compat.v1.nn.fused_batch_norm` wraps), which takes float32 and bfloat16 inputs as they are.
    Weights (gamma, beta, moving_mean, moving_variance, kept in float32 under mixed precision), their
    paths and the config are Keras', so weight files load into either class. The class keeps Keras'
    name on purpose: `.weights.h5` and `.keras` files key each layer's weights by its class name
    ("batch_normalization_3"), so another name would not load Keras-built checkpoints. It trains like Keras:
    batch statistics (the biased variance) normalise, and the moving statistics follow
    `moving = moving * momentum + batch * (1 - momentum)`; inference, or `trainable=False`, uses the
    moving statistics.

    Anywhere the fused kernel does not apply, `keras.layers.BatchNormalization.call` runs: other
    backends, inputs that are not 4-D with the channels last, masks, `synchronized`, `renorm`, other
    dtypes, an epsilon below 1.001e-5.
    """

    def _fused_applies(self, inputs, training, mask):
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.synchronized
            and not self.renorm
            and self.epsilon >= _FUSED_MIN_EPSILON
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and keras.backend.standardize_dtype(inputs.dtype) in _FUSED_DTYPES
            and (training is None or isinstance(training, bool))  # a Python flag, as Keras' `if training` needs
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused_applies(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # only on the TensorFlow backend

        channels = inputs.shape[-1]
        # The kernel takes float32 parameters and statistics whatever the variables' dtype (float32
        # under mixed precision; bfloat16 under a plain "bfloat16" policy), as Keras computes in float32.
        as_float32 = lambda variable: ops.cast(variable, "float32")  # noqa: E731
        gamma = as_float32(self.gamma) if self.scale else ops.ones((channels,), "float32")
        beta = as_float32(self.beta) if self.center else ops.zeros((channels,), "float32")
        moving_mean, moving_variance = as_float32(self.moving_mean), as_float32(self.moving_variance)
        fused = dict(x=inputs, scale=gamma, offset=beta, epsilon=self.epsilon, data_format="NHWC")
        if training and self.trainable:
            empty = tf.constant([], "float32")
            outputs, mean, unbiased_variance = tf.raw_ops.FusedBatchNormV3(
                mean=empty, variance=empty, is_training=True, **fused)[:3]
            # The kernel normalises with the biased variance but returns the unbiased one (n / (n - 1)
            # times larger); Keras averages the biased one into moving_variance.
            count = ops.cast(ops.size(inputs) // channels, "float32")
            variance = unbiased_variance * ops.maximum(count - 1.0, 0.0) / count
            new_mean = moving_mean * self.momentum + mean * (1.0 - self.momentum)
            new_variance = moving_variance * self.momentum + variance * (1.0 - self.momentum)
            self.moving_mean.assign(ops.cast(new_mean, self.moving_mean.dtype))
            self.moving_variance.assign(ops.cast(new_variance, self.moving_variance.dtype))
        else:
            outputs = tf.raw_ops.FusedBatchNormV3(mean=moving_mean, variance=moving_variance, is_training=False,
                                                  **fused)[0]
        return ops.cast(outputs, self.compute_dtype)


def fuse_batch_norm(model):
    """A copy of functional `model` whose `keras.layers.BatchNormalization` layers are kerazoo's fused one.

    Layer names, configs (trainable included) and weights are kept, so weight files and checkpoints of
    `model` load into the copy and back. Used on Keras Applications encoders, whose own batch-norm
    layers are Keras'.
    """

    def clone_layer(layer):
        if type(layer) is keras.layers.BatchNormalization:
            return BatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    # New inputs under the old names: clone_model would otherwise auto-name them.
    inputs = [keras.Input(**{key: layer.get_config()[key] for key in ("batch_shape", "dtype", "name")})
              for layer in model.layers if isinstance(layer, keras.layers.InputLayer)]
    inputs = inputs[0] if len(inputs) == 1 and not isinstance(model.input, (list, tuple, dict)) else inputs
    fused = keras.models.clone_model(model, input_tensors=inputs, clone_function=clone_layer)
    fused.set_weights(model.get_weights())
    return fused



@keras.saving.register_keras_serializable(package=PACKAGE)
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


@keras.saving.register_keras_serializable(package=PACKAGE)
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
