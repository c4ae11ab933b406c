"""Segmentation metrics from one accumulated confusion matrix, with an ignored label.

All metrics here extend `keras.metrics.IoU`, whose confusion-matrix accumulator already drops
ignored and out-of-range labels; they add what did not fit it directly:

* predictions arrive as logits or probabilities `(B, H, W, K)` and are turned into labels inside
  (argmax, or a threshold when K = 1), where Keras' `sparse_y_pred=False` would only argmax;
* masks may be `(B, H, W)` or `(B, H, W, 1)`;
* `result()` gives IoU per class, global or class-average accuracy, or Dice instead of the mean IoU.

Confusion rows are true classes and columns predicted classes; counts are int64.
`confusion_matrix_scores` computes the same numbers in NumPy for an evaluate command.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

__all__ = [
    "MeanIoU", "PerClassIoU", "PixelAccuracy", "ClassAverageAccuracy", "DiceCoefficient",
    "confusion_matrix_scores",
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
