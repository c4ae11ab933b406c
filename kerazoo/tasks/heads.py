"""Output heads: the only layers that see `num_classes`.

A head is chosen by arguments, not by a separate model family: `head="segmentation"` gives class
scores (logits by default, or softmax / sigmoid; `num_classes=1` with sigmoid is a binary mask),
`head="multilabel"` gives K independent per-label scores (logits, or sigmoid) for K-channel 0/1
masks, `head="regression"` gives dense real-valued outputs
(depth, a restored image) with `num_classes` output channels. The output activation always computes in
float32, so mixed-precision models still return float32.
"""

import keras
import numpy as np

HEADS = ("segmentation", "multilabel", "regression")
ACTIVATIONS = {
    "segmentation": (None, "softmax", "sigmoid"),
    "multilabel": (None, "sigmoid"),  # independent labels: never softmax
    "regression": (None, "linear", "sigmoid", "tanh", "relu", "softplus"),
}


def check_head(head, activation, num_classes):
    """Validates the head arguments, naming the bad value and the valid ones."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}; got {head!r}")
    if activation not in ACTIVATIONS[head]:
        raise ValueError(f"activation for head={head!r} must be one of {ACTIVATIONS[head]}; got {activation!r}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int; got {num_classes!r}")
    if head == "segmentation" and activation == "softmax" and num_classes == 1:
        raise ValueError("softmax over num_classes=1 is constant; use activation='sigmoid' for a binary mask")


def score_conv(num_classes, kernel_size=1, name="head_conv"):
    """The convolution that maps features to `num_classes` scores (or output channels)."""
    return keras.layers.Conv2D(num_classes, kernel_size, padding="same", name=name)


def output_activation(activation, name="head_activation"):
    """The model's last layer; float32 so that mixed precision never reaches the loss."""
    return keras.layers.Activation(activation or "linear", dtype="float32", name=name)


def apply_head(x, num_classes, activation=None, kernel_size=1):
    """Score convolution then float32 activation."""
    x = score_conv(num_classes, kernel_size)(x)
    return output_activation(activation)(x)


def scores_to_labels(scores, activation=None, head="segmentation"):
    """What a segmentation head's outputs mean as labels: int32 class indices over the last axis.

    With one channel the head is binary: foreground where the logit is positive (probability above
    0.5 after a sigmoid); otherwise the argmax over classes. A multi-label head gives a boolean
    array of the scores' shape (HxWxK): each label on where its logit is positive.
    """
    scores = np.asarray(scores)
    if head == "multilabel":
        return scores > (0.5 if activation == "sigmoid" else 0.0)
    if scores.shape[-1] == 1:
        threshold = 0.5 if activation == "sigmoid" else 0.0
        return (scores[..., 0] > threshold).astype(np.int32)
    return scores.argmax(axis=-1).astype(np.int32)
