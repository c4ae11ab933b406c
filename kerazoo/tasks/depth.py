"""Monocular depth: an RGB image (raw 0..255 pixels) to depth in metres, positive."""

from __future__ import annotations

import dataclasses

from kerazoo.tasks.heads import apply_head, output_activation
from kerazoo.tasks.base import Task


@dataclasses.dataclass(frozen=True)
class Depth(Task):
    """Encoder (ImageNet) preprocessing and a regression head with a positive activation (softplus by
    default, or relu) that outputs metres; losses and metrics ignore pixels whose true depth is 0."""

    name = "depth"

    @classmethod
    def default_num_classes(cls, in_channels):
        return 1

    @classmethod
    def default_activation(cls):
        return "softplus"

    @classmethod
    def activations(cls, head_kind):
        return ("softplus", "relu")

    def head(self, x, inputs, kernel_size=1, scored=False):
        self.check_covers(x, inputs)
        if scored:
            return output_activation(self.activation)(x)
        return apply_head(x, self.num_classes, self.activation, kernel_size=max(kernel_size, 3))

    def default_loss(self):
        from kerazoo.losses import ScaleInvariantLogLoss

        return ScaleInvariantLogLoss()

    def default_metrics(self):
        from kerazoo.metrics import DepthMetric

        return [DepthMetric(kind) for kind in ("delta1", "abs_rel", "rmse")]
