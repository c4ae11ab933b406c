"""Image restoration: denoising and super-resolution, from raw 0..255 pixels to 0..255 pixels.

The network computes on pixels scaled to [0, 1] (a `Rescaling` layer named "preprocessing"), its head
predicts in that unit and scales back by 255, so the model's contract stays raw pixels in and out.
Outputs are not clipped in the graph (training needs the gradient); `ZooModel.restore` rounds and clips.
"""

from __future__ import annotations

import dataclasses

import keras

from kerazoo import layers
from kerazoo.tasks.heads import output_activation, score_conv
from kerazoo.tasks.base import Task

PIXEL_RANGE = 255.0
SCALES = (2, 3, 4)
# "subpixel": the network runs on the low-resolution image and ends with depth-to-space (ESPCN);
# "transpose": it ends with a learnable stride-`scale` transposed convolution;
# "bilinear": the input is upsampled first (fixed bilinear) and the network refines it (SRCNN's layout).
UPSAMPLERS = ("subpixel", "transpose", "bilinear")


def _unit_scaling(inputs):
    return keras.layers.Rescaling(1.0 / PIXEL_RANGE, name="preprocessing")(inputs)


def _to_pixels(x):
    """[0, 1] predictions back to pixels, in float32 (mixed precision never reaches the loss)."""
    return keras.layers.Rescaling(PIXEL_RANGE, dtype="float32", name="to_pixels")(output_activation(None)(x))


def _check_residual(residual, num_classes, in_channels, what):
    if not isinstance(residual, bool):
        raise ValueError(f"residual must be True or False; got {residual!r}")
    if residual and num_classes != in_channels:
        raise ValueError(f"a global residual ({what}) needs as many output as input channels; got "
                         f"num_classes={num_classes}, in_channels={in_channels}. Pass residual=False or "
                         f"num_classes={in_channels}")


class _Restoration(Task):
    """Shared by denoising and super-resolution: [0, 1] scaling, linear outputs, image losses and metrics."""

    @classmethod
    def default_num_classes(cls, in_channels):
        return in_channels

    @classmethod
    def activations(cls, head_kind):
        return (None, "linear")

    def preprocess(self, inputs, encoder_mode):
        return _unit_scaling(inputs)

    def default_loss(self):
        from kerazoo.losses import L1Loss

        return L1Loss()

    def default_metrics(self):
        from kerazoo.metrics import PSNR, SSIM

        crop = self.output_scale if self.output_scale > 1 else 0
        return [PSNR(crop_border=crop), SSIM(crop_border=crop)]


@dataclasses.dataclass(frozen=True)
class Denoise(_Restoration):
    """Denoising. With `residual` the network predicts the noise and the model returns input - noise
    (DnCNN's residual learning)."""

    residual: bool = True

    name = "denoise"

    def __post_init__(self):
        _check_residual(self.residual, self.num_classes, self.in_channels, "output = input - predicted noise")

    @classmethod
    def option_defaults(cls):
        return {"residual": True}

    def head(self, x, inputs, kernel_size=1, scored=False):
        self.check_covers(x, inputs)
        if not scored:
            x = score_conv(self.num_classes, kernel_size=3)(x)
        x = _to_pixels(x)
        if self.residual:
            return keras.layers.Subtract(dtype="float32", name="input_minus_noise")([inputs, x])
        return x


@dataclasses.dataclass(frozen=True)
class SuperResolution(_Restoration):
    """Super-resolution by `scale` (2, 3 or 4) for any input size.

    With `residual` the model returns the bilinear upsample of its input plus the predicted detail.
    Bilinear, not bicubic: TensorFlow's bicubic resize has no TFLite builtin (ResizeBicubic needs Flex),
    and `layers.BilinearUpsampling` is builtin-only at any size.
    """

    scale: int = 2
    residual: bool = True
    upsampler: str = "subpixel"

    name = "super_resolution"

    def __post_init__(self):
        if self.scale not in SCALES or isinstance(self.scale, bool):
            raise ValueError(f"scale must be one of {SCALES}; got {self.scale!r}")
        if self.upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {UPSAMPLERS}; got {self.upsampler!r}")
        _check_residual(self.residual, self.num_classes, self.in_channels,
                        "output = bilinear upsample + predicted detail")

    @classmethod
    def option_defaults(cls):
        return {"scale": 2, "residual": True, "upsampler": "subpixel"}

    @property
    def output_scale(self):
        return self.scale

    @property
    def score_channels(self):
        return self.num_classes * self.scale**2 if self.upsampler == "subpixel" else self.num_classes

    def preprocess(self, inputs, encoder_mode):
        x = _unit_scaling(inputs)
        if self.upsampler == "bilinear":
            x = layers.BilinearUpsampling(self.scale, name="upsample_input")(x)
        return x

    def head(self, x, inputs, kernel_size=1, scored=False):
        if self.upsampler == "subpixel":
            if not scored:
                x = score_conv(self.score_channels, kernel_size=3)(x)
            x = layers.DepthToSpace(self.scale, name="depth_to_space")(x)
        elif self.upsampler == "transpose":
            x = keras.layers.Conv2DTranspose(self.num_classes, 2 * self.scale - self.scale % 2, strides=self.scale,
                                             padding="same", name="head_upsample")(x)
        elif not scored:
            x = score_conv(self.num_classes, kernel_size=3)(x)
        x = _to_pixels(x)
        if self.residual:
            base = layers.BilinearUpsampling(self.scale, dtype="float32", name="upsample_residual")(inputs)
            return keras.layers.Add(dtype="float32", name="upsample_plus_detail")([base, x])
        return x
