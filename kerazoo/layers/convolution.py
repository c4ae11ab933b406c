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
    an explicit Pad before a 'valid' convolution. TFLite converts it to PAD and CONV_2D with its dilation
    factors, tf2onnx to Pad and Conv with `dilations`.

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

        if self.padding == "same":  # padded here: onnxruntime runs no dilated Conv with auto_pad SAME
            extents = [(size - 1) * rate for size, rate in zip(self.kernel_size, self.dilation_rate)]
            inputs = tf.pad(inputs, [[0, 0], *[[extent // 2, extent - extent // 2] for extent in extents], [0, 0]])
        return tf.nn.conv2d(inputs, kernel, strides=1, padding="VALID", dilations=list(self.dilation_rate),
                            data_format="NHWC")
