"""Dense losses in every mode (multi-class, binary, multi-label) against NumPy references.

The references are written from the papers' formulas in float64, leaving ignored entries out by boolean
masking (the Keras code zeroes them instead), so each test compares two independent computations.
"""

import keras
import numpy as np
import pytest

from kerazoo import losses

IGNORE = 255


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _case(mode, seed=0, shape=(2, 7, 9), k=3, ignore=IGNORE):
    """(y_true as the loss takes it, logits, float64 0/1 targets (B,H,W,K), valid (B,H,W,K) bool)."""
    rng = np.random.default_rng(seed)
    channels = 1 if mode == "binary" else k
    logits = rng.normal(0, 2, shape + (channels,)).astype("float32")
    if mode == "multilabel":
        y = rng.integers(0, 2, shape + (k,))
        if ignore is not None:
            y[0, 0, :, 0] = ignore
            y[-1, :, 2, 1] = ignore
        valid = y != ignore
        return y, logits, np.where(valid, y, 0).astype(np.float64), valid
    y = rng.integers(0, 2 if mode == "binary" else k, shape)
    if mode == "multiclass":
        y[y == 2] = 1 if seed % 2 else 2  # odd seeds: class 2 absent, left out of the class averages
    if ignore is not None:
        y[0, 0, :] = ignore
        y[-1, :, 1] = ignore
    valid = np.repeat((y != ignore)[..., None], channels, -1)
    labels = np.where(y != ignore, y, 0)
    targets = labels[..., None].astype(np.float64) if mode == "binary" else np.eye(k)[labels]
    return y, logits, targets, valid


def _probs(mode, logits):
    logits = logits.astype(np.float64)
    return _softmax(logits) if mode == "multiclass" else _sigmoid(logits)


def np_entropy(mode, logits, targets, valid, gamma=0.0, weights=None):
    """Mean over valid pixels (multi-class) or valid entries of -(1 - p_t)^gamma log p_t."""
    p = _probs(mode, logits)
    if mode == "multiclass":
        pt = (p * targets).sum(-1)
        w = np.ones(pt.shape) if weights is None else (np.asarray(weights) * targets).sum(-1)
        keep = valid[..., 0]
    else:
        pt = np.where(targets > 0, p, 1 - p)
        w = np.ones(pt.shape) if weights is None else np.broadcast_to(np.asarray(weights), pt.shape)
        keep = valid
    values = -((1 - pt) ** gamma) * np.log(pt) * w
    return values[keep].sum() / keep.sum()


def np_overlap(mode, logits, targets, valid, kind, smooth=1.0, alpha=0.5, beta=0.5, gamma=1.0):
    p = _probs(mode, logits) * valid
    t = targets * valid
    tp, ps, ts = (p * t).sum((0, 1, 2)), p.sum((0, 1, 2)), t.sum((0, 1, 2))
    if kind == "dice":
        per_class = 1 - (2 * tp + smooth) / (ps + ts + smooth)
    elif kind == "jaccard":
        per_class = 1 - (tp + smooth) / (ps + ts - tp + smooth)
    else:
        per_class = (1 - (tp + smooth) / (tp + alpha * (ps - tp) + beta * (ts - tp) + smooth)) ** gamma
    present = ts > 0 if t.shape[-1] > 1 else np.ones(1, bool)
    return per_class[present].mean()


def _lovasz_grad(gt_sorted):
    """Berman et al.'s reference `lovasz_grad`."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum()
    union = gts + (1 - gt_sorted).cumsum()
    jaccard = 1.0 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def _lovasz_hinge_flat(logits, labels):
    errors = 1.0 - logits * (2 * labels - 1)
    order = np.argsort(-errors, kind="stable")
    return np.dot(np.maximum(errors[order], 0), _lovasz_grad(labels[order]))


def _lovasz_softmax_flat(probs, labels):
    values = []
    for c in range(probs.shape[-1]):
        fg = labels[:, c]
        if fg.sum() == 0:
            continue
        errors = np.abs(fg - probs[:, c])
        order = np.argsort(-errors, kind="stable")
        values.append(np.dot(errors[order], _lovasz_grad(fg[order])))
    return np.mean(values)


def np_lovasz(mode, logits, targets, valid, per_image=False):
    logits = logits.astype(np.float64)
    groups = [slice(i, i + 1) for i in range(len(logits))] if per_image else [slice(None)]
    values = []
    for group in groups:
        x, t, v = logits[group], targets[group], valid[group]
        if mode == "multiclass":
            keep = v[..., 0]
            values.append(_lovasz_softmax_flat(_softmax(x)[keep], t[keep]))
        else:  # one hinge per label over its valid entries
            values.extend(_lovasz_hinge_flat(x[..., c][v[..., c]], t[..., c][v[..., c]])
                          for c in range(x.shape[-1]))
    return np.mean(values)


MODES = ("multiclass", "binary", "multilabel")


def _references(mode, logits, targets, valid):
    """(keras loss, NumPy value) for every loss in `mode`, each with a non-default argument."""
    weights = [0.5, 2.0, 1.0] if mode != "binary" else None
    return [
        (losses.SegmentationLoss(ignore_class=IGNORE, mode=mode), np_entropy(mode, logits, targets, valid)),
        (losses.SegmentationLoss(ignore_class=IGNORE, class_weights=weights, mode=mode),
         np_entropy(mode, logits, targets, valid, weights=weights)),
        (losses.FocalLoss(gamma=1.5, ignore_class=IGNORE, mode=mode),
         np_entropy(mode, logits, targets, valid, gamma=1.5)),
        (losses.DiceLoss(ignore_class=IGNORE, smooth=0.5, mode=mode),
         np_overlap(mode, logits, targets, valid, "dice", smooth=0.5)),
        (losses.JaccardLoss(ignore_class=IGNORE, mode=mode), np_overlap(mode, logits, targets, valid, "jaccard")),
        (losses.TverskyLoss(alpha=0.3, beta=0.7, gamma=1.5, ignore_class=IGNORE, mode=mode),
         np_overlap(mode, logits, targets, valid, "tversky", alpha=0.3, beta=0.7, gamma=1.5)),
        (losses.LovaszLoss(ignore_class=IGNORE, mode=mode), np_lovasz(mode, logits, targets, valid)),
        (losses.LovaszLoss(ignore_class=IGNORE, per_image=True, mode=mode),
         np_lovasz(mode, logits, targets, valid, per_image=True)),
    ]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("mode", MODES)
def test_losses_match_numpy_with_ignored_entries(mode, seed):
    y, logits, targets, valid = _case(mode, seed)
    for loss, expected in _references(mode, logits, targets, valid):
        assert np.isclose(float(loss(y, logits)), expected, rtol=1e-4, atol=1e-6), (loss.name, mode)


@pytest.mark.parametrize("mode", MODES)
def test_probabilities_give_the_losses_of_their_logits(mode):
    y, logits, _, _ = _case(mode, 2)
    probs = _probs(mode, logits).astype("float32")
    for cls in (losses.SegmentationLoss, losses.FocalLoss, losses.DiceLoss, losses.JaccardLoss, losses.TverskyLoss,
                losses.LovaszLoss):
        from_logits = cls(ignore_class=IGNORE, mode=mode)(y, logits)
        from_probs = cls(from_logits=False, ignore_class=IGNORE, mode=mode)(y, probs)
        assert np.isclose(float(from_probs), float(from_logits), rtol=1e-3, atol=1e-5), (cls.__name__, mode)


@pytest.mark.parametrize("mode", MODES)
def test_ignored_entries_change_nothing(mode):
    y, logits, _, valid = _case(mode, 3)
    changed = np.where(valid, logits, 50.0 * np.sign(logits)).astype("float32")
    assert not np.array_equal(changed, logits)
    for loss, _ in _references(mode, logits, *_case(mode, 3)[2:]):
        assert np.isclose(float(loss(y, changed)), float(loss(y, logits)), rtol=1e-6), loss.name


@pytest.mark.parametrize("mode", MODES)
def test_perfect_predictions_give_almost_no_loss(mode):
    y, _, targets, _ = _case(mode, 4)
    if mode == "multiclass":
        perfect = np.where(targets > 0, 30.0, -30.0)
    else:
        perfect = np.where(targets > 0, 30.0, -30.0)
    perfect = perfect.astype("float32")
    for cls in (losses.SegmentationLoss, losses.FocalLoss, losses.DiceLoss, losses.JaccardLoss, losses.TverskyLoss,
                losses.LovaszLoss):
        assert float(cls(ignore_class=IGNORE, smooth=1e-3, mode=mode)(y, perfect) if cls in (
            losses.DiceLoss, losses.JaccardLoss, losses.TverskyLoss) else cls(ignore_class=IGNORE, mode=mode)(
            y, perfect)) < 1e-3, (cls.__name__, mode)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_mixed_float16_predictions_at_512x512_reduce_in_float32(mode):
    """A float16 sum over a 512x512 mask overflows (65504): every reduction must run in float32."""
    y, logits, targets, valid = _case(mode, 5, shape=(1, 512, 512))
    half = logits.astype("float16")
    with np.errstate(over="ignore"):  # what a float16 sum would do
        assert np.isinf(np.sum(np.ones(512 * 512, np.float16), dtype=np.float16))
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        built = _references(mode, half.astype("float32"), targets, valid)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for loss, expected in built:
        value = loss(y, half)
        assert keras.backend.standardize_dtype(value.dtype) == "float32"
        assert np.isfinite(float(value)) and np.isclose(float(value), expected, rtol=1e-3, atol=1e-5), loss.name


NEW_ARGUMENTS = [
    (losses.SegmentationLoss(mode="multilabel", ignore_class=IGNORE, class_weights=[1.0, 2.0, 3.0]),
     losses.SegmentationLoss(mode="multilabel")),
    (losses.FocalLoss(mode="multilabel", gamma=1.0, ignore_class=IGNORE, from_logits=False),
     losses.FocalLoss(mode="multilabel")),
    (losses.DiceLoss(mode="multilabel", smooth=3.0, ignore_class=IGNORE), losses.DiceLoss(mode="multilabel")),
    (losses.TverskyLoss(mode="multilabel", alpha=0.2, beta=0.9, gamma=2.0, smooth=2.0, ignore_class=IGNORE,
                        class_weights=[3.0, 1.0, 2.0]), losses.TverskyLoss(mode="multilabel")),
    (losses.LovaszLoss(mode="multilabel", per_image=True, ignore_class=IGNORE, from_logits=False),
     losses.LovaszLoss(mode="multilabel")),
]


@pytest.mark.parametrize("loss, default", NEW_ARGUMENTS, ids=lambda x: getattr(x, "name", ""))
def test_config_round_trip_keeps_every_argument(loss, default):
    y, logits, _, _ = _case("multilabel", 6)
    y_pred = _sigmoid(logits).astype("float32") if not loss.from_logits else logits
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
    assert np.isclose(float(restored(y, y_pred)), float(loss(y, y_pred)), rtol=1e-6)
    for key in set(loss.get_config()) - {"name", "reduction", "dtype", "mode"}:
        if loss.get_config()[key] == default.get_config()[key]:
            continue
        config = {**loss.get_config(), key: default.get_config()[key]}
        assert not np.isclose(float(type(loss).from_config(config)(y, y_pred)), float(loss(y, y_pred)),
                              rtol=1e-4), key
    # The mode is kept too: the same arguments read as a multi-class loss refuse these 0/1 channel masks.
    assert restored.mode == "multilabel"


def test_bad_arguments_name_the_value_and_the_valid_ones():
    with pytest.raises(ValueError, match="mode must be one of .*'multilabel'.*got 'multi'"):
        losses.DiceLoss(mode="multi")
    with pytest.raises(ValueError, match="mode='binary' takes one prediction channel.*got 3"):
        losses.LovaszLoss(mode="binary")(np.zeros((1, 4, 4)), np.zeros((1, 4, 4, 3), "float32"))
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\) 0/1 masks.*\(1, 4, 4\)"):
        losses.SegmentationLoss(mode="multilabel")(np.zeros((1, 4, 4)), np.zeros((1, 4, 4, 3), "float32"))
    with pytest.raises(ValueError, match="2 class_weights for 3 labels"):
        losses.FocalLoss(mode="multilabel", class_weights=[1, 2])(np.zeros((1, 4, 4, 3)),
                                                                  np.zeros((1, 4, 4, 3), "float32"))
    with pytest.raises(ValueError, match="beta must be a number >= 0; got -1"):
        losses.TverskyLoss(beta=-1)
    with pytest.raises(ValueError, match="gamma must be a number > 0; got 0"):
        losses.TverskyLoss(gamma=0)
