"""The encoder's input preprocessing as a layer inside the model, so every exported file takes raw pixels."""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="kerazoo")
class EncoderPreprocessing(keras.layers.Layer):
    """Turns raw 0..255 pixels into what an ImageNet encoder expects, inside the model.

    Modes, as in `keras.applications`:
        "caffe": RGB to BGR, minus the ImageNet mean per channel (VGG, ResNet).
        "tf": scale to [-1, 1] (MobileNetV2).
        "torch": scale to [0, 1], minus the ImageNet mean, over its standard deviation, per RGB channel
            (DenseNet; what EfficientNet's and ConvNeXt's built-in layers compute).
        "none": pass through.
    With a channel count other than 3, "caffe" and "torch" use the mean of the three channels' values.
    """

    MODES = ("caffe", "tf", "torch", "none")
    CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
    TORCH_RGB_MEAN = (0.485, 0.456, 0.406)
    TORCH_RGB_STD = (0.229, 0.224, 0.225)

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
        if self.mode == "torch":
            mean, std = ((self.TORCH_RGB_MEAN, self.TORCH_RGB_STD) if x.shape[-1] == 3
                         else (float(np.mean(self.TORCH_RGB_MEAN)), float(np.mean(self.TORCH_RGB_STD))))
            mean, std = ops.convert_to_tensor(mean, dtype=x.dtype), ops.convert_to_tensor(std, dtype=x.dtype)
            return (x / 255.0 - mean) / std
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
