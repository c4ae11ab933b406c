"""Nearest and bilinear upsampling by integer factors that exports at any input size."""

import keras
from keras import ops

from kerazoo.layers.shape import _interleave
from kerazoo.utils.sizes import height_width

INTERPOLATIONS = ("nearest", "bilinear")


def _phases(x, factor, axis, interpolation):
    """The `factor` output phases of upsampling `x` along `axis` (1: height, 2: width), each x's shape.

    Output pixel j * factor + r samples input position j + d_r, d_r = (r + 0.5) / factor - 0.5 (half-pixel
    centres, as `tf.image.resize`), |d_r| < 0.5: so bilinear mixes x with one neighbour, the previous one
    for d_r < 0 and the next one for d_r > 0; the edges repeat themselves (clamped, as resize does).
    """
    if interpolation == "nearest" or factor == 1:
        return [x] * factor
    first = x[:, :1] if axis == 1 else x[:, :, :1]
    last = x[:, -1:] if axis == 1 else x[:, :, -1:]
    body_previous = x[:, :-1] if axis == 1 else x[:, :, :-1]
    body_next = x[:, 1:] if axis == 1 else x[:, :, 1:]
    previous = ops.concatenate([first, body_previous], axis=axis)
    following = ops.concatenate([body_next, last], axis=axis)
    phases = []
    for r in range(factor):
        offset = (r + 0.5) / factor - 0.5
        neighbour = previous if offset < 0 else following
        phases.append(x * (1.0 - abs(offset)) + neighbour * abs(offset))
    return phases


@keras.saving.register_keras_serializable(package="kerazoo")
class AnySizeUpSampling2D(keras.layers.Layer):
    """`UpSampling2D` (nearest or bilinear, integer factors) that converts to TFLite builtins at any size.

    Keras' `UpSampling2D` cannot give a TFLite file with a dynamic height and width in every model: its
    bilinear mode (`ops.image.resize`) tests a symbolic size in Python, so the model does not even trace
    at a dynamic size, and its nearest mode (`ops.repeat`) left U-Net++'s convolutions as TensorFlow
    Conv2D ops for the converter (measured); the exporter then falls back to a static size. Here each
    output phase is a weighted sum of the input and one shifted copy (bilinear with half-pixel centres
    and clamped edges: the values of `tf.image.resize` and `UpSampling2D(interpolation="bilinear")`),
    interleaved by stack and reshape: slices, concatenations, multiplies, adds, PACK and RESHAPE in TFLite
    and ONNX. The cost grows with the channels, not with their square as a fixed transposed convolution's
    (`BilinearUpsampling`). Where the height and width are known when traced (training at a fixed size) and
    the backend is TensorFlow, bilinear runs TensorFlow's own ResizeBilinear kernel and its gradient kernel
    instead, with the same values: the slices' gradients (StridedSliceGrad) took 12% of UPerNet's op time in a
    bfloat16 training step, and the kernel made the step 0.83x (benchmarks/BENCHMARK.md). A run-time size,
    as `kerazoo.export` traces, keeps the slices.

    Args:
        size: int or (height, width) upsampling factor.
        interpolation: "nearest" or "bilinear".
    """

    def __init__(self, size=2, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = height_width(size, "size", square_from_int=True)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}; got {interpolation!r}")
        self.interpolation = interpolation

    def _resize_kernel_applies(self, inputs):
        # A height and width known when traced: training or a fixed-size call, not what kerazoo.export traces.
        return (keras.backend.backend() == "tensorflow" and self.interpolation == "bilinear"
                and inputs.shape[1] is not None and inputs.shape[2] is not None)

    def call(self, inputs):
        if self._resize_kernel_applies(inputs):
            import tensorflow as tf  # only on the TensorFlow backend

            size = (inputs.shape[1] * self.size[0], inputs.shape[2] * self.size[1])
            resized = tf.image.resize(inputs, size, method="bilinear")  # half-pixel centres, float32 out
            return ops.cast(resized, inputs.dtype)
        x = inputs
        factor_h, factor_w = self.size
        if factor_h > 1:
            x = _interleave([[phase] for phase in _phases(x, factor_h, 1, self.interpolation)], (factor_h, 1))
        if factor_w > 1:
            x = _interleave([_phases(x, factor_w, 2, self.interpolation)], (1, factor_w))
        return x

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        scale = lambda size, factor: None if size is None else size * factor  # noqa: E731
        return (batch, scale(height, self.size[0]), scale(width, self.size[1]), channels)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "interpolation": self.interpolation}
