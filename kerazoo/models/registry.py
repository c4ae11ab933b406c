"""The model registry: each family's builder, the encoders it takes and its paper.

A new family is one file in this package plus one `MODELS.register(...)` here."""

import dataclasses
import functools
from typing import Callable

from kerazoo.encoders import ENCODERS
from kerazoo.models.fcn import build_fcn
from kerazoo.models.segnet import build_segnet, build_segnet_basic
from kerazoo.models.unet import build_unet, build_unet_paper
from kerazoo.utils.registry import Registry


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """A registered model family.

    Attributes:
        builder: function building the Keras model; takes `spec` first when `encoders` is not None.
        encoders: encoder names the model is built on, or None for a fixed topology of its own.
        default_encoder: encoder used when `create_model` gets none.
        default_in_channels: channels used when neither in_channels nor input_shape is given.
        reference: the paper the model follows.
    """

    builder: Callable
    encoders: tuple | None
    default_encoder: str | None
    default_in_channels: int
    reference: str


MODELS = Registry("model")
_ALL_ENCODERS = tuple(ENCODERS.names())
_VGG_ENCODERS = tuple(name for name, spec in ENCODERS.items() if spec.conv_stages)
_FCN_PAPER = "Long, Shelhamer, Darrell. Fully Convolutional Networks for Semantic Segmentation. CVPR 2015"
for _stride in (32, 16, 8):
    MODELS.register(
        f"fcn{_stride}s",
        ModelEntry(functools.partial(build_fcn, output_stride=_stride), _ALL_ENCODERS, "vgg16", 3, _FCN_PAPER),
    )
MODELS.register(
    "unet",
    ModelEntry(build_unet, _ALL_ENCODERS, "resnet50", 3,
               "Ronneberger, Fischer, Brox. U-Net. MICCAI 2015 (decoder on an ImageNet encoder)"),
)
MODELS.register(
    "unet_paper",
    ModelEntry(build_unet_paper, None, None, 1, "Ronneberger, Fischer, Brox. U-Net. MICCAI 2015 (as published)"),
)
MODELS.register(
    "segnet",
    ModelEntry(build_segnet, _VGG_ENCODERS, "vgg16", 3,
               "Badrinarayanan, Kendall, Cipolla. SegNet. TPAMI 2017"),
)
MODELS.register(
    "segnet_basic",
    ModelEntry(build_segnet_basic, None, None, 3, "Badrinarayanan, Kendall, Cipolla. SegNet. TPAMI 2017 (SegNet-Basic)"),
)


def list_models():
    """Names of the registered models."""
    return MODELS.names()


def model_encoders(name):
    """Encoders the model `name` can be built on (empty for fixed topologies)."""
    return MODELS.get(name).encoders or ()


def model_encoder_pairs(encoders=None):
    """Every (model, encoder) the registries allow, in registry order; encoder None for a model with its own
    topology. With `encoders` (names), only those encoders, and the own topologies."""
    return [(name, encoder) for name in list_models() for encoder in model_encoders(name) or [None]
            if encoders is None or encoder is None or encoder in encoders]


# Pyramid-pooling decoders
from kerazoo.models.deeplab import build_deeplabv3, build_deeplabv3plus  # noqa: E402  (one block per group)
from kerazoo.models.pspnet import build_pspnet  # noqa: E402
from kerazoo.models.upernet import build_upernet  # noqa: E402

MODELS.register(
    "deeplabv3",
    ModelEntry(build_deeplabv3, _ALL_ENCODERS, "resnet50", 3,
               "Chen, Papandreou, Schroff, Adam. Rethinking Atrous Convolution for Semantic Image Segmentation. "
               "arXiv 2017"),
)
MODELS.register(
    "deeplabv3plus",
    ModelEntry(build_deeplabv3plus, _ALL_ENCODERS, "resnet50", 3,
               "Chen, Zhu, Papandreou, Schroff, Adam. Encoder-Decoder with Atrous Separable Convolution for "
               "Semantic Image Segmentation. ECCV 2018"),
)
MODELS.register(
    "pspnet",
    ModelEntry(build_pspnet, _ALL_ENCODERS, "resnet50", 3,
               "Zhao, Shi, Qi, Wang, Jia. Pyramid Scene Parsing Network. CVPR 2017"),
)
MODELS.register(
    "upernet",
    ModelEntry(build_upernet, _ALL_ENCODERS, "resnet50", 3,
               "Xiao, Liu, Zhou, Jiang, Sun. Unified Perceptual Parsing for Scene Understanding. ECCV 2018"),
)

# Skip-connection decoders
from kerazoo.models.fpn import build_fpn  # noqa: E402  (one block per group of decoders keeps merges apart)
from kerazoo.models.linknet import build_linknet  # noqa: E402
from kerazoo.models.segformer import build_segformer  # noqa: E402
from kerazoo.models.unetplusplus import build_unetplusplus  # noqa: E402

MODELS.register(
    "unetplusplus",
    ModelEntry(build_unetplusplus, _ALL_ENCODERS, "resnet50", 3,
               "Zhou, Rahman Siddiquee, Tajbakhsh, Liang. UNet++: A Nested U-Net Architecture. DLMIA 2018"),
)
MODELS.register(
    "fpn",
    ModelEntry(build_fpn, _ALL_ENCODERS, "resnet50", 3,
               "Kirillov, Girshick, He, Dollar. Panoptic Feature Pyramid Networks. CVPR 2019 (semantic branch)"),
)
MODELS.register(
    "linknet",
    ModelEntry(build_linknet, _ALL_ENCODERS, "resnet50", 3,
               "Chaurasia, Culurciello. LinkNet: Exploiting Encoder Representations. VCIP 2017"),
)
MODELS.register(
    "segformer",
    ModelEntry(build_segformer, _ALL_ENCODERS, "resnet50", 3,
               "Xie et al. SegFormer: Simple and Efficient Design for Semantic Segmentation with Transformers. "
               "NeurIPS 2021 (all-MLP decoder on any encoder)"),
)

# Restoration networks (any task; made for super-resolution and denoising)
from kerazoo.models.edsr import build_edsr  # noqa: E402

MODELS.register(
    "edsr",
    ModelEntry(build_edsr, None, None, 3,
               "Lim, Son, Kim, Nah, Lee. Enhanced Deep Residual Networks for Single Image Super-Resolution. "
               "CVPRW 2017"),
)
from kerazoo.models.drunet import build_drunet  # noqa: E402

MODELS.register(
    "drunet",
    ModelEntry(build_drunet, None, None, 3,
               "Zhang, Li, Zuo, Zhang, Van Gool, Timofte. Plug-and-Play Image Restoration with Deep Denoiser "
               "Prior. TPAMI 2021 (DRUNet, without the noise-level map)"),
)
