"""Argmax max pooling and max unpooling (SegNet), with reshapes, slices, comparisons and 0/1 masks.

No `tf.nn.max_pool_with_argmax`, no float argmax, no one-hot products: those are what the mobile runtimes and
the int8 converter do not handle. `_*_reference` is the plain formulation; `_*_fast` the one the layers run
(unit-stride slices, MAX_POOL_2D, DEPTH_TO_SPACE), tested equal to it bit for bit. The layers look both up by
their module-level names at call time, so a test or benchmark can swap them."""

import keras
from keras import ops

from kerazoo.layers.shape import _ceil_div, _interleave
from kerazoo.utils.sizes import height_width


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


@keras.saving.register_keras_serializable(package="kerazoo")
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
        self.pool_size = height_width(pool_size, "pool_size", square_from_int=True)
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


@keras.saving.register_keras_serializable(package="kerazoo")
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
        self.pool_size = height_width(pool_size, "pool_size", square_from_int=True)

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
