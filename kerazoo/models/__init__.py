"""The model registry and `create_model`, the one entry point that resolves names."""

import dataclasses
import functools
import inspect
from typing import Callable

from kerazoo.encoders import ENCODERS
from kerazoo.models.fcn import build_fcn
from kerazoo.models.heads import check_head
from kerazoo.models.segnet import build_segnet, build_segnet_basic
from kerazoo.models.unet import build_unet, build_unet_paper
from kerazoo.registry import Registry


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


def _option_defaults(builder):
    """The builder's model options with their defaults (what an omitted option means)."""
    return {
        parameter.name: parameter.default
        for parameter in inspect.signature(builder).parameters.values()
        if parameter.name not in _NOT_OPTIONS and parameter.default is not inspect.Parameter.empty
    }


_NOT_OPTIONS = ("spec", "num_classes", "output_stride", "encoder_weights", "in_channels", "input_shape", "activation",
                "task")


def _resolve_task(task, head, activation, num_classes, in_channels, options):
    """The `kerazoo.tasks.Task` for these arguments; takes the task's own options out of `options`."""
    from kerazoo.tasks import Segmentation, task_class

    cls = task_class(task)
    task_options = {key: options.pop(key, default) for key, default in cls.option_defaults().items()}
    if cls is Segmentation:
        head = head or "segmentation"
    elif head not in (None, "regression"):
        raise ValueError(f"task={task!r} has a regression head; got head={head!r} (leave it out)")
    head = head or "regression"
    if activation is None:
        activation = cls.default_activation()
    if cls is not Segmentation and activation not in cls.activations(head):
        raise ValueError(f"activation for task={task!r} must be one of {cls.activations(head)}; got {activation!r}")
    if num_classes is None:
        num_classes = cls.default_num_classes(in_channels)
    check_head(head, activation, num_classes)
    return cls(num_classes, in_channels, activation, head, **task_options)


def create_model(
    name,
    encoder=None,
    num_classes=None,
    encoder_weights=None,
    in_channels=None,
    input_shape=None,
    head=None,
    activation=None,
    class_names=None,
    class_colors=None,
    input_size=None,
    task="segmentation",
    **options,
):
    """Builds a registered model.

    Args:
        name: a name from `list_models()`, e.g. "unet", "segnet", "fcn8s", "unet_paper".
        encoder: a name from `list_encoders()` the model supports; None takes the model's default.
            Models with a fixed topology of their own ("unet_paper", "segnet_basic") take none.
        num_classes: classes of the segmentation head, or output channels of a regression head.
            None: 2 for segmentation, in_channels for "denoise" and "super_resolution", 1 for "depth".
        encoder_weights: None (random), "imagenet" (Keras Applications' download) or a weights file.
        in_channels: input channels; with pretrained weights and a count other than 3 the first
            convolution is adapted from the RGB kernel. Defaults to input_shape's, else 3 (1 for unet_paper).
        input_shape: (height, width, channels); None sizes accept any size (the default).
        head: "segmentation" or "regression" for task="segmentation" (None: "segmentation"); the other
            tasks have a regression head of their own.
        activation: None gives logits (segmentation) or linear outputs (regression); also "softmax",
            "sigmoid" (and "tanh", "relu", "softplus" for regression). Depth: "softplus" (default) or "relu".
        class_names: one name per class (segmentation only; two for a one-channel binary head).
        class_colors: one (r, g, b) triple of 0..255 ints per class, for pictures.
        input_size: the (height, width) the model is trained at; `model.segment` resizes images to
            it and its labels back. Defaults to input_shape's height and width when those are static.
        task: one of `kerazoo.tasks.list_tasks()`: "segmentation", "denoise", "super_resolution" or
            "depth". Restoration models scale pixels to [0, 1] inside (not ImageNet preprocessing) and
            return 0..255 pixels; depth models return metres.
        **options: model-specific options, e.g. for "unet": decoder_filters, upsampling, batch_norm;
            for encoder models: freeze_encoder, encoder_bn_momentum; for "unet_paper": padding ("same"
            for restoration and depth). Task options: denoise: residual (predict the noise, default
            True); super_resolution: scale (2, 3, 4), residual (bilinear upsample + detail, default
            True), upsampler ("subpixel", "transpose", "bilinear"). An unknown option raises a
            ValueError listing the valid ones.

    Returns:
        A `kerazoo.model.ZooModel` from raw 0..255 pixels (B, H, W, in_channels) to (B, H, W, num_classes)
        float32 outputs (unet_paper: its smaller valid-convolution output; super-resolution: scale
        times H and W). Its `get_config()` holds these arguments (with every option's value) and rebuilds it.
    """
    from kerazoo.model import ZooModel, check_task_attributes

    entry = MODELS.get(name)
    name = name.lower()
    if in_channels is None:
        in_channels = input_shape[-1] if input_shape is not None else entry.default_in_channels
    options = dict(options)
    task_spec = _resolve_task(task, head, activation, num_classes, in_channels, options)
    head, activation, num_classes = task_spec.head_kind, task_spec.activation, task_spec.num_classes
    defaults = _option_defaults(entry.builder)
    for option in options:
        if option not in defaults:
            raise ValueError(f"Unknown option {option!r} for model {name!r} and task {task!r}. "
                             f"Valid options: {', '.join([*defaults, *task_spec.option_defaults()]) or 'none'}.")
    attributes = check_task_attributes(head, num_classes, class_names, class_colors, input_size, input_shape)
    options = {**defaults, **options}
    arguments = dict(num_classes=num_classes, in_channels=in_channels, input_shape=input_shape,
                     activation=activation, task=task_spec, **options)
    if entry.encoders is None:
        if encoder is not None or encoder_weights is not None:
            raise ValueError(f"Model {name!r} has a fixed topology of its own and takes no encoder or "
                             f"encoder_weights; got encoder={encoder!r}, encoder_weights={encoder_weights!r}")
        built = entry.builder(**arguments)
    else:
        encoder = encoder or entry.default_encoder
        if not isinstance(encoder, str) or encoder.lower() not in entry.encoders:
            raise ValueError(f"Model {name!r} cannot use encoder {encoder!r}. "
                             + ENCODERS.unknown_message(encoder, valid=entry.encoders).split(". ", 1)[-1])
        encoder = encoder.lower()
        built = entry.builder(ENCODERS.get(encoder), encoder_weights=encoder_weights, **arguments)
    record = dict(name=name, encoder=encoder, num_classes=num_classes, in_channels=in_channels,
                  input_shape=tuple(input_shape) if input_shape is not None else None, head=head,
                  activation=activation, **options, task=task_spec.name, **task_spec.options())
    record = {key: list(value) if isinstance(value, tuple) and key != "input_shape" else value
              for key, value in record.items()}
    class_names, class_colors, input_size = attributes
    return ZooModel(built.input, built.output, arguments=record, class_names=class_names,
                    class_colors=class_colors, input_size=input_size, name=built.name)
