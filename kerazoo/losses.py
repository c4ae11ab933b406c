"""Losses: segmentation on integer masks (with an ignored label and class weights), image restoration
(L1, L2, Charbonnier, SSIM) and depth (Eigen et al.'s scale-invariant log loss).

Segmentation losses on integer masks, with an ignored label and optional class weights.

Masks are `(B, H, W)` or `(B, H, W, 1)` integers; predictions are `(B, H, W, K)` logits or
probabilities (K = 1: one sigmoid channel for binary masks). Every loss computes in float32, also
when the model runs in mixed precision, and ignored pixels contribute nothing.

Restoration losses take 0..255 pixel values and measure differences in units of `data_range` (255),
so their size does not depend on the pixel scale. The depth loss takes metres and ignores pixels whose
true depth is 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

__all__ = ["SegmentationLoss", "DiceLoss", "JaccardLoss", "FocalLoss", "CombinedLoss", "L1Loss", "L2Loss",
           "CharbonnierLoss", "SSIMLoss", "ScaleInvariantLogLoss"]

_EPSILON = 1e-7


def _labels_and_valid(y_true, ignore_class):
    """Integer labels `(B, H, W)` with ignored pixels set to 0, and the float32 mask of valid pixels."""
    if len(y_true.shape) == 4:
        y_true = ops.squeeze(y_true, axis=-1)
    labels = ops.cast(y_true, "int32")
    if ignore_class is None:
        return labels, ops.ones_like(labels, dtype="float32")
    valid = ops.not_equal(labels, ignore_class)
    return ops.where(valid, labels, 0), ops.cast(valid, "float32")


def _check_classes(class_weights):
    if class_weights is None:
        return None
    weights = [float(w) for w in class_weights]
    if any(w < 0 for w in weights):
        raise ValueError(f"class_weights must be non-negative, got {weights}")
    return weights


class _PixelLoss(keras.losses.Loss):
    """Base for per-pixel losses: `call` returns `(B, H, W)` and the mean is over valid pixels."""

    def __init__(self, ignore_class=None, class_weights=None, name=None, reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.class_weights = _check_classes(class_weights)

    def pixel_losses(self, labels, y_pred):
        raise NotImplementedError

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        labels, valid = _labels_and_valid(y_true, self.ignore_class)
        weight = valid
        if self.class_weights is not None:
            if len(self.class_weights) != max(int(y_pred.shape[-1]), 2):
                raise ValueError(f"{len(self.class_weights)} class_weights for predictions with "
                                 f"{y_pred.shape[-1]} channels")
            weight = weight * ops.take(ops.convert_to_tensor(self.class_weights, "float32"), labels)
        losses = self.pixel_losses(labels, y_pred) * weight
        if self.reduction in ("sum_over_batch_size", "mean"):
            # Keras divides by B*H*W; rescale so the result is the mean over non-ignored pixels
            # (the same rescaling Keras applies to its own masked losses).
            total = ops.cast(ops.size(valid), "float32")
            losses = losses * ops.divide_no_nan(total, ops.sum(valid))
        return losses

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class, "class_weights": self.class_weights}


@keras.saving.register_keras_serializable(package="kerazoo")
class SegmentationLoss(_PixelLoss):
    """Sparse (binary when K = 1) cross-entropy on integer masks.

    With `class_weights` each pixel's loss is multiplied by the weight of its true class and the
    sum is divided by the number of non-ignored pixels (PyTorch divides by the summed weights
    instead; the two differ by a constant factor per batch).

    Args:
        from_logits: Predictions are logits (True) or probabilities (False).
        ignore_class: Label whose pixels are skipped, or None.
        class_weights: One weight per class (e.g. `median_frequency_weights`), or None.
        name: Loss name.
        reduction: Keras reduction; the default gives the mean over non-ignored pixels.
        dtype: Computation dtype; defaults to float32 also under mixed precision.
    """

    def __init__(self, from_logits=True, ignore_class=None, class_weights=None, name="segmentation_loss",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(ignore_class=ignore_class, class_weights=class_weights, name=name,
                         reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)

    def pixel_losses(self, labels, y_pred):
        if y_pred.shape[-1] == 1:
            targets = ops.cast(labels, "float32")[..., None]
            return keras.losses.binary_crossentropy(targets, y_pred, from_logits=self.from_logits)
        return keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=self.from_logits)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="kerazoo")
class FocalLoss(_PixelLoss):
    """Focal loss (Lin et al., 2017): `-(1 - p_t)^gamma * log(p_t)` per pixel, sparse labels.

    Args:
        gamma: Focusing parameter; 0 gives (weighted) cross-entropy.
        from_logits: Predictions are logits (True) or probabilities (False).
        ignore_class: Label whose pixels are skipped, or None.
        class_weights: Per-class alpha weights, or None.
        name: Loss name.
        reduction: Keras reduction; the default gives the mean over non-ignored pixels.
        dtype: Computation dtype.
    """

    def __init__(self, gamma=2.0, from_logits=True, ignore_class=None, class_weights=None, name="focal_loss",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(ignore_class=ignore_class, class_weights=class_weights, name=name,
                         reduction=reduction, dtype=dtype)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.from_logits = bool(from_logits)

    def pixel_losses(self, labels, y_pred):
        if y_pred.shape[-1] == 1:  # binary: two classes from one sigmoid channel
            score = y_pred[..., 0]
            if self.from_logits:
                log_p1, log_p0 = ops.log_sigmoid(score), ops.log_sigmoid(-score)
            else:
                score = ops.clip(score, _EPSILON, 1 - _EPSILON)
                log_p1, log_p0 = ops.log(score), ops.log(1 - score)
            log_pt = ops.where(ops.equal(labels, 1), log_p1, log_p0)
        else:
            if self.from_logits:
                log_probs = ops.log_softmax(y_pred, axis=-1)
            else:
                log_probs = ops.log(ops.clip(y_pred, _EPSILON, 1.0))
            log_pt = ops.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
        return -ops.power(1.0 - ops.exp(log_pt), self.gamma) * log_pt

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "from_logits": self.from_logits}


class _OverlapLoss(keras.losses.Loss):
    """Base for soft Dice / Jaccard: class scores from sums over the whole batch.

    `call` returns one scalar per batch, so a `sample_weight` only scales it by its mean.
    """

    def __init__(self, from_logits=True, ignore_class=None, class_weights=None, smooth=1.0, name=None,
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.class_weights = _check_classes(class_weights)
        self.smooth = float(smooth)

    def score(self, intersection, cardinality):
        raise NotImplementedError

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        labels, valid = _labels_and_valid(y_true, self.ignore_class)
        num_classes = y_pred.shape[-1]
        if num_classes == 1:  # binary: the foreground channel only
            probs = ops.sigmoid(y_pred) if self.from_logits else y_pred
            targets = ops.cast(labels, "float32")[..., None]
        else:
            probs = ops.softmax(y_pred, axis=-1) if self.from_logits else y_pred
            targets = ops.one_hot(labels, num_classes, dtype="float32")
        valid = valid[..., None]
        probs, targets = probs * valid, targets * valid
        axes = (0, 1, 2)
        intersection = ops.sum(probs * targets, axis=axes)
        cardinality = ops.sum(probs, axis=axes) + ops.sum(targets, axis=axes)
        scores = self.score(intersection, cardinality)
        # Average over the classes present in this batch's masks (all when binary).
        present = ops.cast(ops.sum(targets, axis=axes) > 0, "float32")
        if num_classes == 1:
            present = ops.ones_like(present)
        if self.class_weights is not None:
            if len(self.class_weights) != num_classes:
                raise ValueError(f"{len(self.class_weights)} class_weights for {num_classes} classes")
            present = present * ops.convert_to_tensor(self.class_weights, "float32")
        return 1.0 - ops.divide_no_nan(ops.sum(scores * present), ops.sum(present))

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "ignore_class": self.ignore_class,
                "class_weights": self.class_weights, "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="kerazoo")
class DiceLoss(_OverlapLoss):
    """Soft Dice loss: `1 - mean_c (2|P_c T_c| + s) / (|P_c| + |T_c| + s)` over the batch.

    The mean runs over the classes present in the batch's masks (optionally weighted); K = 1 uses
    the sigmoid foreground channel only.

    Args:
        from_logits: Predictions are logits (softmax / sigmoid applied inside) or probabilities.
        ignore_class: Label whose pixels are left out, or None.
        class_weights: Per-class weights of the mean, or None.
        smooth: Added to numerator and denominator; keeps empty classes finite.
        name: Loss name.
        reduction: Keras reduction (the loss is already a scalar).
        dtype: Computation dtype.
    """

    def __init__(self, from_logits=True, ignore_class=None, class_weights=None, smooth=1.0, name="dice_loss",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(from_logits, ignore_class, class_weights, smooth, name, reduction, dtype)

    def score(self, intersection, cardinality):
        return (2.0 * intersection + self.smooth) / (cardinality + self.smooth)


@keras.saving.register_keras_serializable(package="kerazoo")
class JaccardLoss(_OverlapLoss):
    """Soft Jaccard (IoU) loss: `1 - mean_c (|P_c T_c| + s) / (|P_c| + |T_c| - |P_c T_c| + s)`.

    Same arguments and class averaging as `DiceLoss`.
    """

    def __init__(self, from_logits=True, ignore_class=None, class_weights=None, smooth=1.0,
                 name="jaccard_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(from_logits, ignore_class, class_weights, smooth, name, reduction, dtype)

    def score(self, intersection, cardinality):
        return (intersection + self.smooth) / (cardinality - intersection + self.smooth)


@keras.saving.register_keras_serializable(package="kerazoo")
class CombinedLoss(keras.losses.Loss):
    """Weighted sum of losses, e.g. `CombinedLoss([SegmentationLoss(), DiceLoss()], [1.0, 0.5])`.

    Each part reduces itself; a `sample_weight` passed to the sum scales the total by its mean.

    Args:
        losses: Loss instances.
        weights: One factor per loss; None gives 1 each.
        name: Loss name.
        reduction: Keras reduction (the sum is already a scalar).
        dtype: Computation dtype.
    """

    def __init__(self, losses: Sequence, weights: Sequence[float] | None = None, name="combined_loss",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.losses = [keras.losses.get(loss) if isinstance(loss, (str, dict)) else loss for loss in losses]
        if not self.losses:
            raise ValueError("CombinedLoss needs at least one loss")
        self.weights = [1.0] * len(self.losses) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.losses):
            raise ValueError(f"{len(self.weights)} weights for {len(self.losses)} losses")

    def call(self, y_true, y_pred):
        total = 0.0
        for loss, weight in zip(self.losses, self.weights):
            total = total + weight * ops.cast(loss(y_true, y_pred), "float32")
        return total

    def get_config(self):
        return {**super().get_config(), "weights": self.weights,
                "losses": [keras.saving.serialize_keras_object(loss) for loss in self.losses]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["losses"] = [keras.saving.deserialize_keras_object(loss) for loss in config["losses"]]
        return cls(**config)


# --------------------------------------------------------------------------------------------------
# Restoration and depth.


class _ImageLoss(keras.losses.Loss):
    """Base for restoration losses: `call` returns one value per image, on differences / `data_range`."""

    def __init__(self, data_range=255.0, name=None, reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not isinstance(data_range, (int, float)) or data_range <= 0:
            raise ValueError(f"data_range must be a positive number; got {data_range!r}")
        self.data_range = float(data_range)

    def call(self, y_true, y_pred):
        difference = (ops.cast(y_pred, "float32") - ops.cast(y_true, "float32")) / self.data_range
        return ops.mean(self.pixel_losses(difference), axis=tuple(range(1, len(difference.shape))))

    def get_config(self):
        return {**super().get_config(), "data_range": self.data_range}


@keras.saving.register_keras_serializable(package="kerazoo")
class L1Loss(_ImageLoss):
    """Mean absolute difference, in units of `data_range` (255 for 0..255 pixels)."""

    def __init__(self, data_range=255.0, name="l1_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(data_range, name, reduction, dtype)

    def pixel_losses(self, difference):
        return ops.abs(difference)


@keras.saving.register_keras_serializable(package="kerazoo")
class L2Loss(_ImageLoss):
    """Mean squared difference, in units of `data_range` squared."""

    def __init__(self, data_range=255.0, name="l2_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(data_range, name, reduction, dtype)

    def pixel_losses(self, difference):
        return ops.square(difference)


@keras.saving.register_keras_serializable(package="kerazoo")
class CharbonnierLoss(_ImageLoss):
    """Charbonnier (a differentiable L1, LapSRN): mean sqrt(d^2 + epsilon^2), d in units of `data_range`."""

    def __init__(self, epsilon=1e-3, data_range=255.0, name="charbonnier_loss", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(data_range, name, reduction, dtype)
        if not isinstance(epsilon, (int, float)) or epsilon <= 0:
            raise ValueError(f"epsilon must be a positive number; got {epsilon!r}")
        self.epsilon = float(epsilon)

    def pixel_losses(self, difference):
        return ops.sqrt(ops.square(difference) + self.epsilon**2)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="kerazoo")
class SSIMLoss(_ImageLoss):
    """1 - SSIM per image (Wang et al., see `kerazoo.metrics.ssim`), averaged over channels (no Y conversion)."""

    def __init__(self, data_range=255.0, name="ssim_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(data_range, name, reduction, dtype)

    def call(self, y_true, y_pred):
        from kerazoo.metrics import image_ssim

        return 1.0 - image_ssim(y_true, y_pred, y_channel=False, data_range=self.data_range)


@keras.saving.register_keras_serializable(package="kerazoo")
class ScaleInvariantLogLoss(keras.losses.Loss):
    """Eigen, Puhrsch and Fergus (2014): per image, mean(d^2) - lambda_weight * mean(d)^2 with
    d = log(pred) - log(gt) over the pixels whose true depth is > 0 (an image without any counts 0).

    lambda_weight 0 is the plain log MSE, 1 makes the loss blind to a global scale; Eigen et al. use 0.5.
    Predictions at or below 0 count as 1e-6 metres.
    """

    def __init__(self, lambda_weight=0.5, name="scale_invariant_log_loss", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not isinstance(lambda_weight, (int, float)) or not 0 <= lambda_weight <= 1:
            raise ValueError(f"lambda_weight must be a number in [0, 1]; got {lambda_weight!r}")
        self.lambda_weight = float(lambda_weight)

    def call(self, y_true, y_pred):
        y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
        axes = tuple(range(1, len(y_true.shape)))
        valid = ops.cast(y_true > 0, "float32")
        log_difference = (ops.log(ops.maximum(y_pred, 1e-6)) - ops.log(ops.where(y_true > 0, y_true, 1.0))) * valid
        count = ops.maximum(ops.sum(valid, axis=axes), 1.0)
        mean = ops.sum(log_difference, axis=axes) / count
        return ops.sum(ops.square(log_difference), axis=axes) / count - self.lambda_weight * ops.square(mean)

    def get_config(self):
        return {**super().get_config(), "lambda_weight": self.lambda_weight}
