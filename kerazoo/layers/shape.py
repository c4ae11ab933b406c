"""Shape layers and helpers: pad an input to a multiple of the model's stride, crop a result back to a
reference, interleave blocks."""

import keras
from keras import ops


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


@keras.saving.register_keras_serializable(package="kerazoo")
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


@keras.saving.register_keras_serializable(package="kerazoo")
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
