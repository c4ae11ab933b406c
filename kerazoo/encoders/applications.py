"""The table of Keras Applications: one registration per encoder.

An entry names the constructor and the preprocessing its ImageNet weights expect (each application's
own `preprocess_input` mode, or what its built-in layers computed); everything else (taps, pooling,
dilation) is read off the graph. VGG adds the facts SegNet and FCN mirror: its convolution stages and
its fully connected classifier.
"""

import keras

from kerazoo.encoders.spec import EncoderSpec
from kerazoo.utils.registry import Registry

ENCODERS = Registry("encoder")


def register(name, constructor, preprocessing, family, **facts):
    """Registers `keras.applications.<constructor>` as encoder `name` (see `EncoderSpec` for `facts`)."""
    return ENCODERS.register(name, EncoderSpec(name=name, constructor=constructor, preprocessing=preprocessing,
                                               family=family, **facts))


_VGG_CLASSIFIER = ((7, 4096), (1, 4096))
_VGG_FILTERS = (64, 128, 256, 512, 512)
apps = keras.applications

register("vgg16", apps.VGG16, "caffe", "vgg", conv_stages=tuple(zip((2, 2, 3, 3, 3), _VGG_FILTERS)),
         classifier=_VGG_CLASSIFIER)
register("vgg19", apps.VGG19, "caffe", "vgg", conv_stages=tuple(zip((2, 2, 4, 4, 4), _VGG_FILTERS)),
         classifier=_VGG_CLASSIFIER)
register("resnet50", apps.ResNet50, "caffe", "resnet")
register("resnet101", apps.ResNet101, "caffe", "resnet")
register("resnet152", apps.ResNet152, "caffe", "resnet")
register("mobilenetv2", apps.MobileNetV2, "tf", "mobilenetv2")
