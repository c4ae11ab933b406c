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
for _depth in (50, 101, 152):
    register(f"resnet{_depth}v2", getattr(apps, f"ResNet{_depth}V2"), "tf", "resnetv2")
register("mobilenet", apps.MobileNet, "tf", "mobilenet")
# MobileNetV3 scales to [-1, 1] in a built-in Rescaling layer ("tf"), which the encoder leaves to the model.
register("mobilenetv3small", apps.MobileNetV3Small, "tf", "mobilenetv3")
register("mobilenetv3large", apps.MobileNetV3Large, "tf", "mobilenetv3")
# EfficientNet's built-in Rescaling + Normalization (+ its ImageNet-only 1 / sqrt(std) Rescaling) compute
# the ImageNet mean and std normalisation: "torch".
for _member in "01234567":
    register(f"efficientnetb{_member}", getattr(apps, f"EfficientNetB{_member}"), "torch", "efficientnet")
# EfficientNetV2-B* normalise like EfficientNet ("torch"); S, M and L scale by 1 / 128 - 1, which "tf"
# (1 / 127.5 - 1) matches within 0.4 %.
for _member in ("B0", "B1", "B2", "B3", "S", "M", "L"):
    register(f"efficientnetv2{_member.lower()}", getattr(apps, f"EfficientNetV2{_member}"),
             "torch" if _member.startswith("B") else "tf", "efficientnetv2")
# ConvNeXt's built-in PreStem normalises with the ImageNet mean and std: "torch".
for _member in ("Tiny", "Small", "Base", "Large", "XLarge"):
    register(f"convnext_{_member.lower()}", getattr(apps, f"ConvNeXt{_member}"), "torch", "convnext")
for _depth in (121, 169, 201):
    register(f"densenet{_depth}", getattr(apps, f"DenseNet{_depth}"), "torch", "densenet")
register("xception", apps.Xception, "tf", "xception")
register("inceptionv3", apps.InceptionV3, "tf", "inception")
register("inceptionresnetv2", apps.InceptionResNetV2, "tf", "inception")
# NASNet wires each cell from static shapes (it reduces the previous cell's output when the sizes differ);
# built with unknown sizes it wires them wrongly, so it is built at its ImageNet size, then for any size.
register("nasnetmobile", apps.NASNetMobile, "tf", "nasnet", static_size=224)
register("nasnetlarge", apps.NASNetLarge, "tf", "nasnet", static_size=331)
