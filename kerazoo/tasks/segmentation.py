"""Segmentation: class scores per pixel (the default task), or a generic regression head."""

from __future__ import annotations

from kerazoo.tasks.heads import apply_head, output_activation
from kerazoo.tasks.base import Task


class Segmentation(Task):
    """Today's behaviour: encoder preprocessing, a 1x1 (or `kernel_size`) score convolution.

    `head_kind` "segmentation" gives class scores, "multilabel" K independent label scores,
    "regression" `num_classes` real outputs.
    """

    name = "segmentation"

    @classmethod
    def default_num_classes(cls, in_channels):
        return 2

    def head(self, x, inputs, kernel_size=1, scored=False):
        if scored:
            return output_activation(self.activation)(x)
        return apply_head(x, self.num_classes, self.activation, kernel_size=kernel_size)

    def default_loss(self):
        from kerazoo.losses import SegmentationLoss

        if self.head_kind == "multilabel":
            return SegmentationLoss(from_logits=self.activation is None, mode="multilabel")
        if self.head_kind != "segmentation":
            from kerazoo.losses import L2Loss

            return L2Loss(data_range=1.0)
        return SegmentationLoss(from_logits=self.activation is None)

    def default_metrics(self):
        from kerazoo.metrics import MeanIoU, MultiLabelIoU

        if self.head_kind == "multilabel":
            return [MultiLabelIoU(self.num_classes, from_logits=self.activation is None)]
        if self.head_kind != "segmentation":
            return []
        return [MeanIoU(num_classes=max(self.num_classes, 2), from_logits=self.activation is None)]
