"""Losses: segmentation on integer masks (with an ignored label and class weights), image restoration
(L1, L2, Charbonnier, SSIM) and depth (Eigen et al.'s scale-invariant log loss).

Segmentation losses on integer masks, with an ignored label and optional class weights.

Masks are `(B, H, W)` or `(B, H, W, 1)` integers; predictions are `(B, H, W, K)` logits or
probabilities (K = 1: one sigmoid channel for binary masks). Every loss computes in float32, also
when the model runs in mixed precision, and ignored pixels contribute nothing.

`mode` chooses how masks are read: "multiclass" (the default: integer masks; one prediction channel
is binary), "binary" (integer 0/1 masks, one sigmoid channel) or "multilabel" (`(B, H, W, K)` 0/1
masks, K independent sigmoid channels; with `ignore_class` an entry equal to it is left out, per
channel).

Restoration losses take 0..255 pixel values and measure differences in units of `data_range` (255),
so their size does not depend on the pixel scale. The depth loss takes metres and ignores pixels whose
true depth is 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

__all__ = ["MODES", "SegmentationLoss", "DiceLoss", "JaccardLoss", "TverskyLoss", "FocalLoss", "LovaszLoss",
           "CombinedLoss", "L1Loss", "L2Loss",
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


MODES = ("multiclass", "binary", "multilabel")


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    return mode


def _check_channels(mode, y_pred):
    if mode == "binary" and y_pred.shape[-1] != 1:
        raise ValueError(f"mode='binary' takes one prediction channel (a sigmoid score); got {y_pred.shape[-1]} "
                         "channels (use mode='multiclass' or 'multilabel')")


def _multilabel_targets_and_valid(y_true, y_pred, ignore_class):
    """float32 0/1 targets `(B, H, W, K)` (ignored entries 0) and the float32 mask of valid entries."""
    channels = y_pred.shape[-1]
    if len(y_true.shape) == 3 and channels == 1:
        y_true = y_true[..., None]
    if len(y_true.shape) != 4 or y_true.shape[-1] != channels:
        raise ValueError(f"mode='multilabel' takes (B, H, W, {channels}) 0/1 masks, one channel per label; "
                         f"got masks of shape {tuple(y_true.shape)}")
    y_true = ops.cast(y_true, "float32")
    if ignore_class is None:
        return y_true, ops.ones_like(y_true)
    valid = ops.not_equal(y_true, float(ignore_class))
    return ops.where(valid, y_true, 0.0), ops.cast(valid, "float32")


def _binary_log_pt(targets, score, from_logits):
    """log p(true value) per entry of one-channel (sigmoid) scores and 0/1 targets."""
    if from_logits:
        log_p1, log_p0 = ops.log_sigmoid(score), ops.log_sigmoid(-score)
    else:
        score = ops.clip(score, _EPSILON, 1 - _EPSILON)
        log_p1, log_p0 = ops.log(score), ops.log(1 - score)
    return ops.where(targets > 0.5, log_p1, log_p0)


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
                 dtype=None, mode="multiclass"):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.class_weights = _check_classes(class_weights)
        self.mode = _check_mode(mode)

    def pixel_losses(self, labels, y_pred):
        raise NotImplementedError

    def element_losses(self, targets, y_pred):
        """Multi-label: the loss of each (pixel, channel) entry, `(B, H, W, K)`."""
        raise NotImplementedError

    def _multilabel_call(self, y_true, y_pred):
        targets, valid = _multilabel_targets_and_valid(y_true, y_pred, self.ignore_class)
        weight = valid
        if self.class_weights is not None:
            if len(self.class_weights) != y_pred.shape[-1]:
                raise ValueError(f"{len(self.class_weights)} class_weights for {y_pred.shape[-1]} labels")
            weight = weight * ops.convert_to_tensor(self.class_weights, "float32")
        losses = ops.sum(self.element_losses(targets, y_pred) * weight, axis=-1)
        if self.reduction in ("sum_over_batch_size", "mean"):
            # Keras divides by B*H*W: rescale to the mean over valid (pixel, label) entries.
            losses = losses * ops.divide_no_nan(ops.cast(ops.size(losses), "float32"), ops.sum(valid))
        return losses

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        _check_channels(self.mode, y_pred)
        if self.mode == "multilabel":
            return self._multilabel_call(y_true, y_pred)
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
        return {**super().get_config(), "ignore_class": self.ignore_class, "class_weights": self.class_weights,
                "mode": self.mode}


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
        mode: "multiclass", "binary" or "multilabel" (per-label binary cross-entropy, the mean over
            valid entries); see the module docstring.
    """

    def __init__(self, from_logits=True, ignore_class=None, class_weights=None, name="segmentation_loss",
                 reduction="sum_over_batch_size", dtype=None, mode="multiclass"):
        super().__init__(ignore_class=ignore_class, class_weights=class_weights, name=name,
                         reduction=reduction, dtype=dtype, mode=mode)
        self.from_logits = bool(from_logits)

    def element_losses(self, targets, y_pred):
        return -_binary_log_pt(targets, y_pred, self.from_logits)

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
        mode: "multiclass", "binary" or "multilabel" (sigmoid focal loss per label; `class_weights`
            one per label).
    """

    def __init__(self, gamma=2.0, from_logits=True, ignore_class=None, class_weights=None, name="focal_loss",
                 reduction="sum_over_batch_size", dtype=None, mode="multiclass"):
        super().__init__(ignore_class=ignore_class, class_weights=class_weights, name=name,
                         reduction=reduction, dtype=dtype, mode=mode)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.from_logits = bool(from_logits)

    def pixel_losses(self, labels, y_pred):
        if y_pred.shape[-1] == 1:  # binary: two classes from one sigmoid channel
            log_pt = _binary_log_pt(ops.cast(labels, "float32"), y_pred[..., 0], self.from_logits)
        else:
            if self.from_logits:
                log_probs = ops.log_softmax(y_pred, axis=-1)
            else:
                log_probs = ops.log(ops.clip(y_pred, _EPSILON, 1.0))
            log_pt = ops.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
        return -ops.power(1.0 - ops.exp(log_pt), self.gamma) * log_pt

    def element_losses(self, targets, y_pred):
        log_pt = _binary_log_pt(targets, y_pred, self.from_logits)
        return -ops.power(1.0 - ops.exp(log_pt), self.gamma) * log_pt

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "from_logits": self.from_logits}


def _probabilities_targets_valid(y_true, y_pred, mode, ignore_class, from_logits):
    """float32 probabilities, 0/1 targets and valid masks, all broadcastable to `(B, H, W, K)`."""
    y_pred = ops.cast(y_pred, "float32")
    _check_channels(mode, y_pred)
    num_classes = y_pred.shape[-1]
    if mode == "multilabel":
        targets, valid = _multilabel_targets_and_valid(y_true, y_pred, ignore_class)
        return (ops.sigmoid(y_pred) if from_logits else y_pred), targets, valid
    labels, valid = _labels_and_valid(y_true, ignore_class)
    if num_classes == 1:  # binary: the foreground channel only
        probs = ops.sigmoid(y_pred) if from_logits else y_pred
        targets = ops.cast(labels, "float32")[..., None]
    else:
        probs = ops.softmax(y_pred, axis=-1) if from_logits else y_pred
        targets = ops.one_hot(labels, num_classes, dtype="float32")
    return probs, targets, valid[..., None]


class _OverlapLoss(keras.losses.Loss):
    """Base for soft Dice / Jaccard / Tversky: class scores from float32 sums over the whole batch.

    `call` returns one scalar per batch, so a `sample_weight` only scales it by its mean.
    """

    def __init__(self, from_logits=True, ignore_class=None, class_weights=None, smooth=1.0, name=None,
                 reduction="sum_over_batch_size", dtype=None, mode="multiclass"):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.class_weights = _check_classes(class_weights)
        self.smooth = float(smooth)
        self.mode = _check_mode(mode)

    def class_losses(self, intersection, predicted, actual):
        """Per-class losses from the summed products, predictions and targets."""
        raise NotImplementedError

    def call(self, y_true, y_pred):
        probs, targets, valid = _probabilities_targets_valid(y_true, y_pred, self.mode, self.ignore_class,
                                                             self.from_logits)
        num_classes = probs.shape[-1]
        probs, targets = probs * valid, targets * valid
        axes = (0, 1, 2)  # float32 sums: a float16 sum over a 512x512 mask would overflow (65504)
        intersection = ops.sum(probs * targets, axis=axes)
        actual = ops.sum(targets, axis=axes)
        class_losses = self.class_losses(intersection, ops.sum(probs, axis=axes), actual)
        # Average over the classes (labels) present in this batch's masks (all when binary).
        present = ops.cast(actual > 0, "float32")
        if num_classes == 1:
            present = ops.ones_like(present)
        if self.class_weights is not None:
            if len(self.class_weights) != num_classes:
                raise ValueError(f"{len(self.class_weights)} class_weights for {num_classes} classes")
            present = present * ops.convert_to_tensor(self.class_weights, "float32")
        return ops.divide_no_nan(ops.sum(class_losses * present), ops.sum(present))

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "ignore_class": self.ignore_class,
                "class_weights": self.class_weights, "smooth": self.smooth, "mode": self.mode}


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
        mode: "multiclass", "binary" or "multilabel" (sigmoid per label, the mean over labels present).
    """

    def __init__(self, from_logits=True, ignore_class=None, class_weights=None, smooth=1.0, name="dice_loss",
                 reduction="sum_over_batch_size", dtype=None, mode="multiclass"):
        super().__init__(from_logits, ignore_class, class_weights, smooth, name, reduction, dtype, mode)

    def class_losses(self, intersection, predicted, actual):
        return 1.0 - (2.0 * intersection + self.smooth) / (predicted + actual + self.smooth)


@keras.saving.register_keras_serializable(package="kerazoo")
class JaccardLoss(_OverlapLoss):
    """Soft Jaccard (IoU) loss: `1 - mean_c (|P_c T_c| + s) / (|P_c| + |T_c| - |P_c T_c| + s)`.

    Same arguments and class averaging as `DiceLoss`.
    """

    def __init__(self, from_logits=True, ignore_class=None, class_weights=None, smooth=1.0,
                 name="jaccard_loss", reduction="sum_over_batch_size", dtype=None, mode="multiclass"):
        super().__init__(from_logits, ignore_class, class_weights, smooth, name, reduction, dtype, mode)

    def class_losses(self, intersection, predicted, actual):
        return 1.0 - (intersection + self.smooth) / (predicted + actual - intersection + self.smooth)


@keras.saving.register_keras_serializable(package="kerazoo")
class TverskyLoss(_OverlapLoss):
    """Tversky loss (Salehi et al., 2017), focal when `gamma` != 1 (Abraham and Khan, 2019):
    `mean_c (1 - TI_c)^gamma` with `TI_c = (TP + s) / (TP + alpha FP + beta FN + s)`.

    alpha = beta = 0.5 is Dice, alpha = beta = 1 Jaccard; beta > alpha weighs missed foreground more.
    Same class averaging as `DiceLoss`.

    Args:
        alpha: Weight of false positives (>= 0).
        beta: Weight of false negatives (>= 0).
        gamma: Focal exponent (> 0); 1 gives the plain Tversky loss.

    The other arguments (from_logits, ignore_class, class_weights, smooth, name, reduction, dtype, mode) are
    `DiceLoss`'s.
    """

    def __init__(self, alpha=0.5, beta=0.5, gamma=1.0, from_logits=True, ignore_class=None, class_weights=None,
                 smooth=1.0, name="tversky_loss", reduction="sum_over_batch_size", dtype=None, mode="multiclass"):
        super().__init__(from_logits, ignore_class, class_weights, smooth, name, reduction, dtype, mode)
        for key, value in (("alpha", alpha), ("beta", beta)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{key} must be a number >= 0; got {value!r}")
        if not isinstance(gamma, (int, float)) or gamma <= 0:
            raise ValueError(f"gamma must be a number > 0; got {gamma!r}")
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)

    def class_losses(self, intersection, predicted, actual):
        false_pos, false_neg = predicted - intersection, actual - intersection
        index = (intersection + self.smooth) / (
            intersection + self.alpha * false_pos + self.beta * false_neg + self.smooth)
        return ops.power(ops.maximum(1.0 - index, 0.0), self.gamma)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}


def _lovasz_rows(errors, targets):
    """The Lovasz extension of the Jaccard loss (Berman et al., 2018) per row of `(R, N)` errors.

    Entries left out must have error 0 and target 0: sorted last, they change no weight that meets a
    positive error.
    """
    order = ops.argsort(-errors, axis=-1)
    errors_sorted = ops.take_along_axis(errors, order, axis=-1)
    targets_sorted = ops.stop_gradient(ops.take_along_axis(targets, order, axis=-1))
    total = ops.sum(targets_sorted, axis=-1, keepdims=True)
    intersection = total - ops.cumsum(targets_sorted, axis=-1)
    union = total + ops.cumsum(1.0 - targets_sorted, axis=-1)  # >= 1
    jaccard = 1.0 - intersection / union
    weights = ops.concatenate([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=-1)
    return ops.sum(errors_sorted * weights, axis=-1)


def _rows(x, per_image):
    """`(B, H, W, C)` to rows `(C, B*H*W)`, or `(B*C, H*W)` per image."""
    channels = x.shape[-1]
    if per_image:
        return ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (-1, ops.shape(x)[1] * ops.shape(x)[2]))
    return ops.reshape(ops.transpose(x, (3, 0, 1, 2)), (channels, -1))


@keras.saving.register_keras_serializable(package="kerazoo")
class LovaszLoss(keras.losses.Loss):
    """Lovasz loss (Berman et al., 2018), a convex surrogate that optimises IoU directly.

    Multi-class (K > 1): Lovasz-softmax, averaged over the classes present in the masks. Binary
    (K = 1) and multi-label: Lovasz hinge on the logits of each label, averaged over labels.

    Args:
        from_logits: Predictions are logits (True) or probabilities (False; the hinge then uses
            their logits).
        ignore_class: Label (or, multi-label, entry value) left out, or None.
        per_image: One loss per image, averaged (True), or one over the whole batch (False, as smp).
        name: Loss name.
        reduction: Keras reduction (the loss is already a scalar).
        dtype: Computation dtype.
        mode: "multiclass", "binary" or "multilabel" (see the module docstring).
    """

    def __init__(self, from_logits=True, ignore_class=None, per_image=False, name="lovasz_loss",
                 reduction="sum_over_batch_size", dtype=None, mode="multiclass"):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.per_image = bool(per_image)
        self.mode = _check_mode(mode)

    def call(self, y_true, y_pred):
        probs, targets, valid = _probabilities_targets_valid(y_true, y_pred, self.mode, self.ignore_class,
                                                             from_logits=False)
        valid = valid * ops.ones_like(targets)
        if probs.shape[-1] == 1 or self.mode == "multilabel":
            logits = probs if self.from_logits else ops.log(ops.clip(probs, _EPSILON, 1.0 - _EPSILON)) - ops.log(
                ops.clip(1.0 - probs, _EPSILON, 1.0))
            signs = 2.0 * targets - 1.0
            errors = ops.relu(1.0 - logits * signs) * valid
            return ops.mean(_lovasz_rows(_rows(errors, self.per_image), _rows(targets * valid, self.per_image)))
        if self.from_logits:
            probs = ops.softmax(probs, axis=-1)
        targets = targets * valid
        errors = ops.abs(targets - probs) * valid
        row_targets = _rows(targets, self.per_image)
        present = ops.cast(ops.sum(row_targets, axis=-1) > 0, "float32")
        losses = _lovasz_rows(_rows(errors, self.per_image), row_targets)
        return ops.divide_no_nan(ops.sum(losses * present), ops.sum(present))

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "ignore_class": self.ignore_class,
                "per_image": self.per_image, "mode": self.mode}


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
