"""Metrics: segmentation (a confusion matrix with an ignored label), restoration (PSNR, SSIM) and depth.

Segmentation metrics from one accumulated confusion matrix, with an ignored label.

All metrics here extend `keras.metrics.IoU`, whose confusion-matrix accumulator already drops
ignored and out-of-range labels; they add what did not fit it directly:

* predictions arrive as logits or probabilities `(B, H, W, K)` and are turned into labels inside
  (argmax, or a threshold when K = 1), where Keras' `sparse_y_pred=False` would only argmax;
* masks may be `(B, H, W)` or `(B, H, W, 1)`;
* `result()` gives IoU per class, global or class-average accuracy, or Dice instead of the mean IoU.

Confusion rows are true classes and columns predicted classes; counts are int64.
`confusion_matrix_scores` computes the same numbers in NumPy for an evaluate command.

Restoration metrics follow the field's conventions: pixel values 0..255 (data range 255), colour
images measured on the Y channel of YCbCr (BT.601, MATLAB's `rgb2ycbcr`), `crop_border` pixels cut
from each side (the scale, for super-resolution); SSIM is Wang et al.'s (Gaussian window 11, sigma 1.5,
K1 0.01, K2 0.03). `PSNR` and `SSIM` are Keras metrics (the mean over images of each image's value);
`psnr` and `ssim` return NumPy values for evaluation. Depth metrics count pixels whose true depth is
positive only: `DepthMetric` in `compile`, `depth_metrics` in NumPy.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

__all__ = [
    "MeanIoU", "PerClassIoU", "PixelAccuracy", "ClassAverageAccuracy", "DiceCoefficient", "MeanDice",
    "MultiLabelIoU", "MultiLabelDice",
    "confusion_matrix_scores", "PSNR", "SSIM", "psnr", "ssim", "rgb_to_y", "DepthMetric", "depth_metrics",
]


def _predicted_labels(y_pred, from_logits, threshold=0.5):
    if y_pred.shape[-1] == 1:  # one sigmoid channel: foreground where p > threshold
        score = ops.cast(y_pred[..., 0], "float32")
        if from_logits:
            score = ops.sigmoid(score)
        return ops.cast(score > threshold, "int32")
    # argmax is the same for logits and probabilities.
    return ops.cast(ops.argmax(y_pred, axis=-1), "int32")


class _ConfusionMetric(keras.metrics.IoU):
    """Accumulates a confusion matrix from logits/probabilities and integer masks."""

    def __init__(self, num_classes, ignore_class=None, from_logits=True, name=None, dtype=None):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        super().__init__(num_classes=int(num_classes), target_class_ids=list(range(int(num_classes))),
                         name=name, dtype=dtype, ignore_class=ignore_class,
                         sparse_y_true=True, sparse_y_pred=True)
        self.from_logits = bool(from_logits)

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds a batch: `y_true` `(B, H, W[, 1])` integers, `y_pred` `(B, H, W, K)` scores."""
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        labels = _predicted_labels(ops.convert_to_tensor(y_pred), self.from_logits)
        return super().update_state(ops.cast(y_true, "int32"), labels, sample_weight)

    def _counts(self):
        confusion = ops.cast(self.total_cm, "float32")
        true_pos = ops.diagonal(confusion)
        return confusion, true_pos, ops.sum(confusion, axis=1), ops.sum(confusion, axis=0)

    def get_config(self):
        return {"num_classes": self.num_classes, "ignore_class": self.ignore_class,
                "from_logits": self.from_logits, "name": self.name, "dtype": self._dtype}


@keras.saving.register_keras_serializable(package="kerazoo")
class MeanIoU(_ConfusionMetric):
    """Mean intersection-over-union over the classes seen in masks or predictions.

    Classes that appear neither in the masks nor in the predictions are left out of the mean
    (Keras' rule). Pixels labelled `ignore_class`, or any label outside `0..num_classes - 1`,
    are skipped.

    Args:
        num_classes: Number of classes (2 for a single sigmoid channel).
        ignore_class: Label to skip, or None.
        from_logits: For K = 1 only: threshold sigmoid(logit) (True) or the probability (False).
        name: Metric name.
        dtype: Confusion-matrix dtype (int64 by default).
    """

    def __init__(self, num_classes, ignore_class=None, from_logits=True, name="mean_iou", dtype=None):
        super().__init__(num_classes, ignore_class, from_logits, name, dtype)


@keras.saving.register_keras_serializable(package="kerazoo")
class PerClassIoU(_ConfusionMetric):
    """IoU of every class, a vector of shape `(num_classes,)`; NaN for classes never seen.

    Meant for `model.evaluate` and reports; see `MeanIoU` for the arguments.
    """

    def __init__(self, num_classes, ignore_class=None, from_logits=True, name="per_class_iou", dtype=None):
        super().__init__(num_classes, ignore_class, from_logits, name, dtype)

    def result(self):
        _, true_pos, actual, predicted = self._counts()
        union = actual + predicted - true_pos
        return ops.where(union > 0, true_pos / ops.maximum(union, 1.0), float("nan"))


@keras.saving.register_keras_serializable(package="kerazoo")
class PixelAccuracy(_ConfusionMetric):
    """Global accuracy (SegNet's G): correct pixels over non-ignored pixels. See `MeanIoU` for args."""

    def __init__(self, num_classes, ignore_class=None, from_logits=True, name="pixel_accuracy", dtype=None):
        super().__init__(num_classes, ignore_class, from_logits, name, dtype)

    def result(self):
        confusion, true_pos, _, _ = self._counts()
        return ops.divide_no_nan(ops.sum(true_pos), ops.sum(confusion))


@keras.saving.register_keras_serializable(package="kerazoo")
class ClassAverageAccuracy(_ConfusionMetric):
    """Class-average accuracy (SegNet's C): mean per-class recall over classes present in the masks.

    See `MeanIoU` for the arguments.
    """

    def __init__(self, num_classes, ignore_class=None, from_logits=True, name="class_average_accuracy",
                 dtype=None):
        super().__init__(num_classes, ignore_class, from_logits, name, dtype)

    def result(self):
        _, true_pos, actual, _ = self._counts()
        present = ops.cast(actual > 0, "float32")
        recall = ops.divide_no_nan(true_pos, actual)
        return ops.divide_no_nan(ops.sum(recall * present), ops.sum(present))


@keras.saving.register_keras_serializable(package="kerazoo")
class DiceCoefficient(_ConfusionMetric):
    """Dice (F1) of the foreground class 1 for binary masks: `2 TP / (2 TP + FP + FN)`.

    Predictions are one sigmoid channel (thresholded at `threshold`) or two channels (argmax).
    Returns 0 when neither masks nor predictions contain foreground.

    Args:
        threshold: Probability above which a one-channel prediction is foreground.
        ignore_class: Label to skip, or None.
        from_logits: One-channel predictions are logits (True) or probabilities (False).
        name: Metric name.
        dtype: Confusion-matrix dtype.
    """

    def __init__(self, threshold=0.5, ignore_class=None, from_logits=True, name="dice", dtype=None):
        super().__init__(2, ignore_class, from_logits, name, dtype)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
        self.threshold = float(threshold)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true)
        y_pred = ops.convert_to_tensor(y_pred)
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        labels = _predicted_labels(y_pred, self.from_logits, self.threshold)
        return keras.metrics.IoU.update_state(self, ops.cast(y_true, "int32"), labels, sample_weight)

    def result(self):
        _, true_pos, actual, predicted = self._counts()
        return ops.divide_no_nan(2.0 * true_pos[1], actual[1] + predicted[1])

    def get_config(self):
        config = super().get_config()
        del config["num_classes"]
        return {**config, "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="kerazoo")
class MeanDice(_ConfusionMetric):
    """Mean Dice (F1) over the classes seen in masks or predictions: `2 TP / (2 TP + FP + FN)` per class.

    See `MeanIoU` for the arguments.
    """

    def __init__(self, num_classes, ignore_class=None, from_logits=True, name="mean_dice", dtype=None):
        super().__init__(num_classes, ignore_class, from_logits, name, dtype)

    def result(self):
        _, true_pos, actual, predicted = self._counts()
        seen = ops.cast(actual + predicted > 0, "float32")
        dice = ops.divide_no_nan(2.0 * true_pos, actual + predicted)
        return ops.divide_no_nan(ops.sum(dice * seen), ops.sum(seen))


class _MultiLabelCounts(keras.metrics.Metric):
    """Per-label true positive, false positive and false negative counts (int64) of thresholded scores.

    Masks are `(B, H, W, K)` 0/1 (or `(B, H, W)` for K = 1: a binary mask); entries equal to
    `ignore_class` are skipped.
    """

    def __init__(self, num_classes, threshold=0.5, ignore_class=None, from_logits=True, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int; got {num_classes!r}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
        self.num_classes, self.threshold = num_classes, float(threshold)
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.from_logits = bool(from_logits)
        self.counts = self.add_variable(shape=(3, num_classes), initializer="zeros", name="counts", dtype="int64")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds a batch: `y_true` `(B, H, W, K)` 0/1, `y_pred` `(B, H, W, K)` scores."""
        y_true, y_pred = ops.convert_to_tensor(y_true), ops.cast(ops.convert_to_tensor(y_pred), "float32")
        if len(y_true.shape) == 3 and self.num_classes == 1:
            y_true = y_true[..., None]
        if tuple(y_true.shape[-1:]) != (self.num_classes,) or y_pred.shape[-1] != self.num_classes:
            raise ValueError(f"{self.name} takes (B, H, W, {self.num_classes}) masks and scores; got masks "
                             f"{tuple(y_true.shape)} and scores {tuple(y_pred.shape)}")
        y_true = ops.cast(y_true, "int32")
        valid = ops.ones_like(y_true, dtype="bool") if self.ignore_class is None else ops.not_equal(
            y_true, self.ignore_class)
        scores = ops.sigmoid(y_pred) if self.from_logits else y_pred
        predicted = ops.logical_and(scores > self.threshold, valid)
        actual = ops.logical_and(ops.equal(y_true, 1), valid)
        count = lambda mask: ops.sum(ops.cast(mask, "int64"), axis=(0, 1, 2))  # noqa: E731
        both = count(ops.logical_and(predicted, actual))
        self.counts.assign_add(ops.stack([both, count(predicted) - both, count(actual) - both]))

    def reset_state(self):
        self.counts.assign(ops.zeros((3, self.num_classes), "int64"))

    def _per_label(self):
        counts = ops.cast(self.counts, "float32")
        return counts[0], counts[1], counts[2]

    def get_config(self):
        return {"num_classes": self.num_classes, "threshold": self.threshold, "ignore_class": self.ignore_class,
                "from_logits": self.from_logits, "name": self.name, "dtype": self._dtype}


@keras.saving.register_keras_serializable(package="kerazoo")
class MultiLabelIoU(_MultiLabelCounts):
    """Mean over labels of `TP / (TP + FP + FN)` for K independent sigmoid channels, thresholded.

    Labels never seen (no true or predicted entry) are left out of the mean. With K = 1 it is the
    foreground IoU of a binary mask.

    Args:
        num_classes: Number of labels K.
        threshold: Probability above which an entry is predicted on.
        ignore_class: Mask value to skip (per entry), or None.
        from_logits: Scores are logits (True) or probabilities (False).
        name: Metric name.
        dtype: Result dtype.
    """

    def __init__(self, num_classes, threshold=0.5, ignore_class=None, from_logits=True, name="multilabel_iou",
                 dtype=None):
        super().__init__(num_classes, threshold, ignore_class, from_logits, name, dtype)

    def result(self):
        true_pos, false_pos, false_neg = self._per_label()
        union = true_pos + false_pos + false_neg
        seen = ops.cast(union > 0, "float32")
        return ops.divide_no_nan(ops.sum(ops.divide_no_nan(true_pos, union) * seen), ops.sum(seen))


@keras.saving.register_keras_serializable(package="kerazoo")
class MultiLabelDice(_MultiLabelCounts):
    """Mean over labels of `2 TP / (2 TP + FP + FN)`; as `MultiLabelIoU` otherwise."""

    def __init__(self, num_classes, threshold=0.5, ignore_class=None, from_logits=True, name="multilabel_dice",
                 dtype=None):
        super().__init__(num_classes, threshold, ignore_class, from_logits, name, dtype)

    def result(self):
        true_pos, false_pos, false_neg = self._per_label()
        total = 2.0 * true_pos + false_pos + false_neg
        seen = ops.cast(total > 0, "float32")
        return ops.divide_no_nan(ops.sum(ops.divide_no_nan(2.0 * true_pos, total) * seen), ops.sum(seen))


def confusion_matrix_scores(confusion) -> dict:
    """Scores from a confusion matrix (rows = true class, columns = predicted class).

    Args:
        confusion: Square array of pixel counts, e.g. `PerClassIoU(...).total_cm.numpy()`
            (ignored pixels are already left out of it).

    Returns:
        Dict with `global_accuracy` (G), `class_average_accuracy` (C, over classes present in the
        masks), `mean_iou` (over classes seen in masks or predictions) as floats, and
        `per_class_iou` (NumPy array, NaN for classes never seen).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be a square matrix, got shape {confusion.shape}")
    true_pos = np.diag(confusion)
    actual, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    union = actual + predicted - true_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class_iou = np.where(union > 0, true_pos / union, np.nan)
        recall = np.where(actual > 0, true_pos / actual, np.nan)
    total = confusion.sum()
    return {
        "global_accuracy": float(true_pos.sum() / total) if total else float("nan"),
        "class_average_accuracy": float(np.nanmean(recall)) if (actual > 0).any() else float("nan"),
        "mean_iou": float(np.nanmean(per_class_iou)) if (union > 0).any() else float("nan"),
        "per_class_iou": per_class_iou,
    }


# --------------------------------------------------------------------------------------------------
# Restoration: PSNR and SSIM.

PIXEL_RANGE = 255.0
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def rgb_to_y(images):
    """Y of YCbCr (BT.601, MATLAB's `rgb2ycbcr`) from RGB in 0..255: 16 + (65.481 R + 128.553 G + 24.966 B) / 255."""
    images = ops.cast(images, "float32")
    weights = ops.convert_to_tensor([65.481, 128.553, 24.966], "float32") / PIXEL_RANGE
    return 16.0 + ops.sum(images * weights, axis=-1, keepdims=True)


def _measured_channels(images, y_channel, crop_border):
    """(B, H, W, C) float32: Y for colour images when `y_channel`, the border cropped."""
    images = ops.cast(images, "float32")
    if y_channel and images.shape[-1] == 3:
        images = rgb_to_y(images)
    if crop_border:
        images = images[:, crop_border:-crop_border, crop_border:-crop_border, :]
    return images


def image_psnr(y_true, y_pred, crop_border=0, y_channel=True, data_range=PIXEL_RANGE):
    """Per-image PSNR in dB, `(B,)`, of `(B, H, W, C)` images (keras.ops; see `psnr` for NumPy)."""
    y_true = _measured_channels(y_true, y_channel, crop_border)
    y_pred = _measured_channels(y_pred, y_channel, crop_border)
    mse = ops.mean(ops.square(y_true - y_pred), axis=(1, 2, 3))
    return 10.0 * ops.log10(data_range**2 / ops.maximum(mse, 1e-10))


def _gaussian_window(channels):
    grid = np.arange(SSIM_WINDOW) - SSIM_WINDOW // 2
    profile = np.exp(-(grid**2) / (2 * SSIM_SIGMA**2))
    window = np.outer(profile, profile) / np.outer(profile, profile).sum()
    return np.tile(window[:, :, None, None], (1, 1, channels, 1)).astype("float32")


def ssim_map(y_true, y_pred, data_range=PIXEL_RANGE):
    """Wang et al.'s SSIM map, `(B, H - 10, W - 10, C)`, per channel; only windows inside the image."""
    y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
    window = ops.convert_to_tensor(_gaussian_window(y_true.shape[-1]))
    blur = lambda x: ops.depthwise_conv(x, window, padding="valid")  # noqa: E731
    mu_true, mu_pred = blur(y_true), blur(y_pred)
    var_true = blur(y_true * y_true) - mu_true**2
    var_pred = blur(y_pred * y_pred) - mu_pred**2
    covariance = blur(y_true * y_pred) - mu_true * mu_pred
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    return ((2 * mu_true * mu_pred + c1) * (2 * covariance + c2)) / (
        (mu_true**2 + mu_pred**2 + c1) * (var_true + var_pred + c2))


def image_ssim(y_true, y_pred, crop_border=0, y_channel=True, data_range=PIXEL_RANGE):
    """Per-image SSIM, `(B,)`, of `(B, H, W, C)` images (keras.ops; see `ssim` for NumPy)."""
    y_true = _measured_channels(y_true, y_channel, crop_border)
    y_pred = _measured_channels(y_pred, y_channel, crop_border)
    for size in y_true.shape[1:3]:
        if size is not None and size < SSIM_WINDOW:
            raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after cropping "
                             f"{crop_border} border pixels; got {tuple(y_true.shape[1:3])}")
    return ops.mean(ssim_map(y_true, y_pred, data_range), axis=(1, 2, 3))


def _as_batch(images):
    """(NxHxWxC float32 array, whether one image came in)."""
    array = np.asarray(images, dtype=np.float32)
    if array.ndim == 2:
        return array[None, :, :, None], True
    if array.ndim == 3:
        # HxWxC with C in (1, 3) is one image; anything else is a batch of grey images.
        return (array[None], True) if array.shape[-1] in (1, 3) else (array[..., None], False)
    if array.ndim == 4:
        return array, False
    raise ValueError(f"images must be HxW, HxWxC or NxHxWxC; got shape {array.shape}")


def _numpy_metric(function, prediction, target, crop_border, y_channel):
    prediction, single = _as_batch(prediction)
    target, _ = _as_batch(target)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ in shape")
    if not isinstance(crop_border, int) or crop_border < 0 or 2 * crop_border >= min(target.shape[1:3]):
        raise ValueError(f"crop_border must be an int >= 0 smaller than half the image; got {crop_border!r} "
                         f"for {target.shape[1:3]} images")
    values = ops.convert_to_numpy(function(target, prediction, crop_border=crop_border, y_channel=y_channel))
    return float(values[0]) if single else values.astype(np.float64)


def psnr(prediction, target, crop_border=0, y_channel=True):
    """PSNR in dB (data range 255) of 0..255 images, on Y for colour when `y_channel`.

    Args:
        prediction: HxW, HxWxC or NxHxWxC pixel values in 0..255 (round outputs to uint8 first to
            measure as the field does).
        target: the clean images, same shape.
        crop_border: pixels cut from each side before measuring (the scale, for super-resolution).
        y_channel: measure colour images on Y of YCbCr (BT.601); False: over the RGB channels.

    Returns:
        A float for one image, a (N,) array for a batch.
    """
    return _numpy_metric(image_psnr, prediction, target, crop_border, y_channel)


def ssim(prediction, target, crop_border=0, y_channel=True):
    """SSIM (Wang et al.: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, data range 255), as `psnr`.

    Equals scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=255)`; several channels are averaged.
    """
    return _numpy_metric(image_ssim, prediction, target, crop_border, y_channel)


class _ImageQuality(keras.metrics.Mean):
    """The mean over images of a per-image restoration score, from 0..255 images."""

    def __init__(self, crop_border=0, y_channel=True, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if not isinstance(crop_border, int) or isinstance(crop_border, bool) or crop_border < 0:
            raise ValueError(f"crop_border must be an int >= 0; got {crop_border!r}")
        self.crop_border, self.y_channel = crop_border, bool(y_channel)

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self.per_image(y_true, y_pred, crop_border=self.crop_border, y_channel=self.y_channel)
        return super().update_state(values, sample_weight)

    def get_config(self):
        return {"crop_border": self.crop_border, "y_channel": self.y_channel, "name": self.name,
                "dtype": self._dtype}


@keras.saving.register_keras_serializable(package="kerazoo")
class PSNR(_ImageQuality):
    """Mean PSNR (dB) over images: data range 255, Y for colour, `crop_border` cut; see `psnr`."""

    per_image = staticmethod(image_psnr)

    def __init__(self, crop_border=0, y_channel=True, name="psnr", dtype=None):
        super().__init__(crop_border, y_channel, name, dtype)


@keras.saving.register_keras_serializable(package="kerazoo")
class SSIM(_ImageQuality):
    """Mean SSIM over images (Wang et al.), with `PSNR`'s conventions; see `ssim`."""

    per_image = staticmethod(image_ssim)

    def __init__(self, crop_border=0, y_channel=True, name="ssim", dtype=None):
        super().__init__(crop_border, y_channel, name, dtype)


# --------------------------------------------------------------------------------------------------
# Depth: errors over pixels with a known (positive) true depth.

DEPTH_KINDS = ("delta1", "delta2", "delta3", "abs_rel", "rmse", "log10")
_DEPTH_FLOOR = 1e-6  # a prediction at or below 0 is read as this (ratios and logs stay finite)


def _depth_terms(y_true, y_pred):
    """Per-pixel terms of every depth metric and the valid mask, float32 and flat."""
    y_true = ops.reshape(ops.cast(y_true, "float32"), (-1,))
    y_pred = ops.reshape(ops.cast(y_pred, "float32"), (-1,))
    valid = ops.cast(y_true > 0, "float32")
    true = ops.where(y_true > 0, y_true, 1.0)
    pred = ops.maximum(y_pred, _DEPTH_FLOOR)
    ratio = ops.maximum(pred / true, true / pred)
    terms = {f"delta{power}": ops.cast(ratio < 1.25**power, "float32") for power in (1, 2, 3)}
    terms.update(abs_rel=ops.abs(pred - true) / true, rmse=ops.square(pred - true),
                 log10=ops.abs(ops.log10(pred) - ops.log10(true)))
    return terms, valid


def depth_metrics(prediction, target) -> dict:
    """The standard depth metrics over the pixels where `target` > 0 (all images pooled).

    delta1/2/3: share of pixels with max(pred / gt, gt / pred) < 1.25, 1.25^2, 1.25^3; abs_rel: mean
    |pred - gt| / gt; rmse: sqrt(mean (pred - gt)^2) in metres; log10: mean |log10 pred - log10 gt|.

    Args:
        prediction: depth in metres, any shape; values <= 0 count as 1e-6.
        target: true depth in metres, same shape; 0 where unknown.

    Returns:
        {kind: float} for every kind in `DEPTH_KINDS`.
    """
    prediction, target = np.asarray(prediction), np.asarray(target)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ in shape")
    terms, valid = _depth_terms(target, prediction)
    count = float(ops.convert_to_numpy(ops.sum(valid)))
    if count == 0:
        raise ValueError("target has no pixel with a known depth (> 0)")
    means = {kind: float(ops.convert_to_numpy(ops.sum(term * valid))) / count for kind, term in terms.items()}
    means["rmse"] = float(np.sqrt(means["rmse"]))
    return means


@keras.saving.register_keras_serializable(package="kerazoo")
class DepthMetric(keras.metrics.Metric):
    """One depth metric (`kind` in `DEPTH_KINDS`) over every valid pixel seen, for `compile`.

    Args:
        kind: "delta1", "delta2", "delta3", "abs_rel", "rmse" or "log10" (see `depth_metrics`).
    """

    def __init__(self, kind="delta1", name=None, dtype=None):
        if kind not in DEPTH_KINDS:
            raise ValueError(f"kind must be one of {DEPTH_KINDS}; got {kind!r}")
        super().__init__(name=name or kind, dtype=dtype)
        self.kind = kind
        self.total = self.add_variable(shape=(), initializer="zeros", name="total", dtype="float32")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count", dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        terms, valid = _depth_terms(y_true, y_pred)
        self.total.assign_add(ops.sum(terms[self.kind] * valid))
        self.count.assign_add(ops.sum(valid))

    def result(self):
        mean = self.total / ops.maximum(self.count, 1.0)
        return ops.sqrt(mean) if self.kind == "rmse" else mean

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {"kind": self.kind, "name": self.name, "dtype": self._dtype}
