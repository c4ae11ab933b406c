"""Dilated (atrous) convolution on TensorFlow's own dilated kernel, with Keras' Conv2D as its reference."""

import keras


@keras.saving.register_keras_serializable(package="kerazoo")
class DilatedConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` whose dilated convolutions run as one Conv2D op on the TensorFlow backend.

    Keras 3 reaches TensorFlow's convolution through `tf.nn.convolution`, which turns a dilation rate into
    SpaceToBatchND, a dense convolution and BatchToSpaceND, padding the map to a multiple of the rate: a
    3x3 convolution at rate 18 on a 16x16 map then runs on 36x36. `tf.nn.conv2d` with `dilations` runs
    oneDNN's dilated kernel instead (forward and both gradients): on this project's 2-core CPU, 2048 to
    256 channels at 16x16, batch 4, forward and backward took 101-147 ms against 377-1,271 ms at rates 6
    to 18 (benchmarks/DECODER_SPEED.md has what it does to DeepLabV3's training step). 'same' padding is
    an explicit Pad before a 'valid' convolution, and kernel taps that can only read that padding (the map
    known to be smaller than the rate) are left out (`live_taps`). TFLite converts it to PAD and CONV_2D with
    its dilation factors, tf2onnx to Pad and Conv with `dilations`.

    Anywhere the direct op does not apply, `keras.layers.Conv2D` runs: other backends, rate 1, strides
    other than 1 (TensorFlow's kernel takes no strided dilation), groups, channels first, causal padding.
    Weights, config and behaviour are Keras'.
    """

    def _direct_applies(self):
        return (
            keras.backend.backend() == "tensorflow"
            and any(rate > 1 for rate in self.dilation_rate)
            and all(stride == 1 for stride in self.strides)
            and self.groups == 1
            and self.data_format == "channels_last"
            and self.padding in ("same", "valid")
        )

    def convolution_op(self, inputs, kernel):
        if not self._direct_applies():
            return super().convolution_op(inputs, kernel)
        import tensorflow as tf  # only on the TensorFlow backend

        if self.padding == "valid":
            return tf.nn.conv2d(inputs, kernel, strides=1, padding="VALID", dilations=list(self.dilation_rate),
                                data_format="NHWC")
        # 'same': padded here (onnxruntime runs no dilated Conv with auto_pad SAME), and only the taps that can
        # reach the map are kept (`live_taps`): at rate 18 on a 16x16 map a 3x3 kernel is its centre tap.
        taps = [live_taps(kernel_size, rate, size) for kernel_size, rate, size in
                zip(self.kernel_size, self.dilation_rate, inputs.shape[1:3])]
        kernel = kernel[taps[0][0]:taps[0][1], taps[1][0]:taps[1][1]]
        rates = [rate if last - first > 1 else 1 for (first, last, _, _), rate in zip(taps, self.dilation_rate)]
        inputs = tf.pad(inputs, [[0, 0], *[[before, after] for _, _, before, after in taps], [0, 0]])
        return tf.nn.conv2d(inputs, kernel, strides=1, padding="VALID", dilations=rates, data_format="NHWC")


def live_taps(kernel_size, rate, size):
    """The kernel taps of one axis of a stride-1 'same' convolution that read the map, and the padding they need.

    Tap j reads input position i + j * rate - before (before = (kernel_size - 1) * rate // 2, as Keras pads), so
    it reads only padding zeros, whatever i, once |j * rate - before| >= size: it adds nothing to the output
    and gets a zero gradient, and dropping it changes neither (a 3x3 kernel at rate 18 on a 16x16 map is its
    centre tap: oneDNN's dilated kernels spend ~6x a dense 3x3's time there in bfloat16). A `size` of None
    (unknown until run time) keeps every tap.

    Returns:
        (first, stop, pad_before, pad_after): kernel[first:stop] on this axis, and the padding that keeps the
        output `size` long.
    """
    extent = (kernel_size - 1) * rate
    before = extent // 2
    if size is None:
        return 0, kernel_size, before, extent - before
    live = [j for j in range(kernel_size) if abs(j * rate - before) < size]
    first, last = (live[0], live[-1]) if live else (0, kernel_size - 1)
    if not live or first * rate > before or last * rate < before:
        # Even kernels only: no tap on the map, or the live ones all on one side of it (padding < 0): keep all.
        return 0, kernel_size, before, extent - before
    return first, last + 1, before - first * rate, last * rate - before
