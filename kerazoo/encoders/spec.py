"""`EncoderSpec`: what kerazoo knows about one encoder, stated once.

A spec holds the facts that cannot be read off the graph (the Keras Applications constructor, the
preprocessing its ImageNet weights expect, VGG's convolution stages and classifier). Its taps, the
deepest layer at each stride, are derived from the application's own graph (`kerazoo.encoders.taps`)
the first time they are asked for.
"""

import dataclasses
import types
from typing import Callable, Mapping, NamedTuple

from kerazoo.encoders.taps import STRIDES

PREPROCESSING_MODES = ("caffe", "tf", "torch")


class ConvStage(NamedTuple):
    """One stage of plain 3x3 convolutions that ends in 2x2 max pooling (a VGG block)."""

    convolutions: int
    filters: int


class ClassifierConvolution(NamedTuple):
    """A fully connected classifier layer as the convolution it equals on a feature map.

    `kernel_size` is the spatial extent the layer saw (VGG's first one, fc6, sees pool5's 7x7 at
    224x224), `filters` its units.
    """

    kernel_size: int
    filters: int


@dataclasses.dataclass(frozen=True, eq=False)
class EncoderSpec:
    """What kerazoo knows about one encoder.

    Attributes:
        name: registry name, e.g. "resnet50".
        constructor: the `keras.applications` function.
        preprocessing: `EncoderPreprocessing` mode its ImageNet weights expect: "caffe", "tf" or "torch".
            Preprocessing an application builds in (EfficientNet, ConvNeXt, MobileNetV3) is left out
            of the encoder, so that the model's task alone scales the pixels.
        constructor_kwargs: extra constructor arguments (e.g. `include_preprocessing=False`).
        static_size: a size the constructor needs (NASNet decides its cell wiring from static
            shapes); the encoder is then rebuilt for any size.
        conv_stages: the encoder's plain convolution stages in order, each a `ConvStage` ending in
            2x2 max pooling (VGG16: 2, 2, 3, 3, 3 convolutions of 64 .. 512 filters); empty for
            encoders built of residual, inverted-residual or densely connected blocks.
        classifier: the encoder's fully connected classifier layers (dropped with include_top=False)
            as `ClassifierConvolution`s (VGG: 7x7x4096 and 1x1x4096); empty for encoders whose
            classifier is global pooling and one dense layer.
        family: the Keras Applications family ("resnet", "efficientnet", ...), for tables and tests.

    Derived (from the graph, see `kerazoo.encoders.taps`):
        features: stride -> name of the deepest layer at that stride, the last one before the encoder
            downsamples again. Strides the encoder never computes at are absent (ConvNeXt's stem
            patchifies straight to stride 4: no stride 2).
        pooled_features: stride -> name of a separate pooling layer through which every path enters
            that stride (VGG: block1_pool .. block5_pool; ResNet: its stem's pool1_pool).
    """

    name: str
    constructor: Callable
    preprocessing: str
    constructor_kwargs: Mapping = dataclasses.field(default_factory=dict)
    static_size: int | None = None
    conv_stages: tuple = ()
    classifier: tuple = ()
    family: str = ""

    def __post_init__(self):
        if self.preprocessing not in PREPROCESSING_MODES:
            raise ValueError(f"EncoderSpec {self.name!r}: preprocessing must be one of {PREPROCESSING_MODES}; "
                             f"got {self.preprocessing!r}")
        # Read-only views: a spec is shared by every model built on the encoder.
        object.__setattr__(self, "constructor_kwargs", types.MappingProxyType(dict(self.constructor_kwargs)))
        object.__setattr__(self, "conv_stages", tuple(ConvStage(*stage) for stage in self.conv_stages))
        object.__setattr__(self, "classifier", tuple(ClassifierConvolution(*layer) for layer in self.classifier))

    def __hash__(self):
        return hash(self.name)  # the mappings are unhashable; the registry name identifies a spec

    def __eq__(self, other):
        return isinstance(other, EncoderSpec) and other.name == self.name

    @property
    def features(self):
        from kerazoo.encoders.build import spec_taps

        return spec_taps(self).features

    @property
    def pooled_features(self):
        from kerazoo.encoders.build import spec_taps

        return spec_taps(self).pooled_features

    @property
    def output_stride(self):
        """The stride of the deepest features without dilation (32 for every Keras Application)."""
        return max(STRIDES)

    def feature_names(self, strides=STRIDES):
        """The `features` layer names at `strides`, in that order (default: 2, 4, 8, 16, 32).

        Raises a ValueError naming the strides the encoder has when one of `strides` is missing.
        """
        missing = [stride for stride in strides if stride not in self.features]
        if missing:
            raise ValueError(f"encoder {self.name!r} has no features at stride {missing}; it has strides "
                             f"{tuple(self.features)}")
        return tuple(self.features[stride] for stride in strides)
