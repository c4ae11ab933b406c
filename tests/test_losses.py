"""Segmentation losses against NumPy references."""

import keras
import numpy as np
import pytest

from kerazoo import losses

from optional_extras import require_extra

K = 4
IGNORE = 4


def _batch(seed=0, shape=(2, 5, 6), k=K, ignore=IGNORE):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, shape)
    if ignore is not None:
        y[0, 0, :] = ignore
        y[1, :, 1] = ignore
    logits = rng.normal(0, 2, shape + (k,)).astype("float32")
    return y, logits


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_xent(y, logits, ignore=None, weights=None):
    probs = _softmax(logits.astype(np.float64))
    valid = y != ignore if ignore is not None else np.ones(y.shape, bool)
    labels = np.where(valid, y, 0)
    nll = -np.log(np.take_along_axis(probs, labels[..., None], -1)[..., 0])
    w = np.ones(y.shape) if weights is None else np.asarray(weights)[labels]
    return (nll * w * valid).sum() / valid.sum()


def test_cross_entropy_matches_numpy_with_ignore_and_weights():
    y, logits = _batch()
    assert np.isclose(losses.SegmentationLoss(ignore_class=IGNORE)(y, logits), _np_xent(y, logits, IGNORE), rtol=1e-5)
    weights = [0.5, 2.0, 1.0, 3.0]
    got = losses.SegmentationLoss(ignore_class=IGNORE, class_weights=weights)(y, logits)
    assert np.isclose(got, _np_xent(y, logits, IGNORE, weights), rtol=1e-5)
    # Probabilities give the same loss as their logits.
    got = losses.SegmentationLoss(from_logits=False, ignore_class=IGNORE)(y, _softmax(logits))
    assert np.isclose(got, _np_xent(y, logits, IGNORE), rtol=1e-4)


def test_ignored_pixels_contribute_nothing_and_masks_may_have_channel_axis():
    y, logits = _batch()
    loss = losses.SegmentationLoss(ignore_class=IGNORE)
    changed = logits.copy()
    changed[y == IGNORE] = 100.0 * np.sign(changed[y == IGNORE])
    assert np.isclose(loss(y, logits), loss(y, changed), rtol=1e-6)
    assert np.isclose(loss(y, logits), loss(y[..., None], logits), rtol=1e-6)


def test_binary_single_channel_cross_entropy():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (2, 4, 4))
    logit = rng.normal(size=(2, 4, 4, 1)).astype("float32")
    p = 1 / (1 + np.exp(-logit[..., 0].astype(np.float64)))
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert np.isclose(losses.SegmentationLoss()(y, logit), expected, rtol=1e-4)


def test_float16_predictions_reduce_in_float32():
    y, logits = _batch()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        built = (losses.SegmentationLoss(ignore_class=IGNORE), losses.DiceLoss(ignore_class=IGNORE),
                 losses.FocalLoss(ignore_class=IGNORE))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for loss in built:
        half = loss(y, logits.astype("float16"))
        assert keras.backend.standardize_dtype(half.dtype) == "float32"
        assert np.isclose(half, loss(y, logits.astype("float16").astype("float32")), rtol=1e-5)


def test_focal_loss_matches_numpy_and_reduces_to_cross_entropy():
    y, logits = _batch(2)
    probs = _softmax(logits.astype(np.float64))
    valid = y != IGNORE
    pt = np.take_along_axis(probs, np.where(valid, y, 0)[..., None], -1)[..., 0]
    expected = ((-(1 - pt) ** 2 * np.log(pt)) * valid).sum() / valid.sum()
    assert np.isclose(losses.FocalLoss(gamma=2.0, ignore_class=IGNORE)(y, logits), expected, rtol=1e-4)
    assert np.isclose(losses.FocalLoss(gamma=0.0, ignore_class=IGNORE)(y, logits),
                      _np_xent(y, logits, IGNORE), rtol=1e-4)


def _np_overlap(y, logits, ignore, smooth, jaccard=False):
    probs = _softmax(logits.astype(np.float64))
    valid = (y != ignore)[..., None]
    onehot = np.eye(K)[np.where(valid[..., 0], y, 0)] * valid
    probs = probs * valid
    inter = (probs * onehot).sum((0, 1, 2))
    card = probs.sum((0, 1, 2)) + onehot.sum((0, 1, 2))
    score = (inter + smooth) / (card - inter + smooth) if jaccard else (2 * inter + smooth) / (card + smooth)
    present = onehot.sum((0, 1, 2)) > 0
    return 1 - score[present].mean()


@pytest.mark.parametrize("cls,jaccard", [(losses.DiceLoss, False), (losses.JaccardLoss, True)])
def test_dice_and_jaccard_match_numpy(cls, jaccard):
    y, logits = _batch(3)
    y[y == 2] = 1  # class 2 absent: left out of the mean
    got = cls(ignore_class=IGNORE, smooth=1.0)(y, logits)
    assert np.isclose(got, _np_overlap(y, logits, IGNORE, 1.0, jaccard), rtol=1e-5)
    # A perfect prediction gives (almost) zero loss.
    perfect = np.where(np.eye(K)[np.where(y == IGNORE, 0, y)] > 0, 30.0, -30.0).astype("float32")
    assert cls(ignore_class=IGNORE)(y, perfect) < 1e-4


def test_binary_dice_uses_foreground():
    y = np.zeros((1, 4, 4), int)
    y[0, :2] = 1
    probs = np.zeros((1, 4, 4, 1), "float32")
    probs[0, :2, :2, 0] = 1.0  # half the foreground found, no false positives
    assert np.isclose(losses.DiceLoss(from_logits=False, smooth=0.0)(y, probs), 1 - 2 * 4 / (4 + 8), atol=1e-6)


def test_combined_loss_is_weighted_sum_and_round_trips():
    y, logits = _batch(4)
    parts = [losses.SegmentationLoss(ignore_class=IGNORE), losses.DiceLoss(ignore_class=IGNORE)]
    combined = losses.CombinedLoss(parts, [1.0, 0.5])
    assert np.isclose(combined(y, logits), parts[0](y, logits) + 0.5 * parts[1](y, logits), rtol=1e-6)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(combined))
    assert isinstance(restored.losses[1], losses.DiceLoss)
    assert np.isclose(restored(y, logits), combined(y, logits), rtol=1e-6)


# Every argument differs from its default, so a key that get_config drops changes the restored value.
@pytest.mark.parametrize("loss, default, probabilities", [
    (losses.SegmentationLoss(from_logits=False, ignore_class=3, class_weights=[0.5, 2.0, 1.0, 3.0]),
     losses.SegmentationLoss(), True),
    (losses.FocalLoss(gamma=1.5, from_logits=False, ignore_class=3, class_weights=[1.0, 3.0, 0.5, 2.0]),
     losses.FocalLoss(), True),
    (losses.DiceLoss(from_logits=False, smooth=5.0, ignore_class=3, class_weights=[1, 2, 3, 4]),
     losses.DiceLoss(), True),
    (losses.JaccardLoss(ignore_class=0, smooth=5.0, class_weights=[4, 3, 2, 1]), losses.JaccardLoss(), False),
])
def test_config_round_trip(loss, default, probabilities):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss)
    y, logits = _batch(5, ignore=None)  # labels 0-3: each ignore_class above is also a valid class
    y_pred = _softmax(logits) if probabilities else logits
    assert np.isclose(restored(y, y_pred), loss(y, y_pred), rtol=1e-6)
    for key in set(loss.get_config()) - {"name", "reduction", "dtype"}:
        if loss.get_config()[key] == default.get_config()[key]:
            continue
        # The same object with this one argument at its default scores this data differently.
        config = {**loss.get_config(), key: default.get_config()[key]}
        assert not np.isclose(type(loss).from_config(config)(y, y_pred), loss(y, y_pred), rtol=1e-4), key


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="class_weights"):
        losses.SegmentationLoss(class_weights=[1.0, -1.0])
    y, logits = _batch()
    with pytest.raises(ValueError, match="3 class_weights"):
        losses.SegmentationLoss(class_weights=[1.0, 1.0, 1.0], ignore_class=IGNORE)(y, logits)
    with pytest.raises(ValueError, match="gamma"):
        losses.FocalLoss(gamma=-1)


# --------------------------------------------------------------------------------------------------
# Restoration and depth losses against NumPy formulas.


def _restoration_pair(seed=0, shape=(2, 16, 15, 3)):
    rng = np.random.default_rng(seed)
    clean = rng.uniform(0, 255, shape).astype("float32")
    return clean, (clean + rng.normal(0, 15, shape)).astype("float32")


def test_pixel_losses_match_numpy_in_units_of_the_data_range():
    clean, restored = _restoration_pair()
    difference = (restored.astype(np.float64) - clean) / 255.0
    assert float(losses.L1Loss()(clean, restored)) == pytest.approx(np.mean(np.abs(difference)), rel=1e-5)
    assert float(losses.L2Loss()(clean, restored)) == pytest.approx(np.mean(difference**2), rel=1e-5)
    expected = np.mean(np.sqrt(difference**2 + 1e-3**2))
    assert float(losses.CharbonnierLoss()(clean, restored)) == pytest.approx(expected, rel=1e-5)
    assert float(losses.L1Loss(data_range=1.0)(clean, restored)) == pytest.approx(
        np.mean(np.abs(difference)) * 255, rel=1e-5)
    with pytest.raises(ValueError, match="epsilon must be a positive number; got 0"):
        losses.CharbonnierLoss(epsilon=0)


def test_ssim_loss_is_one_minus_scikit_image_ssim():
    skimage_metrics = require_extra("skimage.metrics", "dev")
    clean, restored = _restoration_pair(1, (2, 20, 18, 1))
    expected = np.mean([1 - skimage_metrics.structural_similarity(
        r[..., 0].astype(np.float64), c[..., 0].astype(np.float64), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255) for c, r in zip(clean, restored)])
    assert float(losses.SSIMLoss()(clean, restored)) == pytest.approx(expected, abs=1e-4)
    assert float(losses.SSIMLoss()(clean, clean)) == pytest.approx(0.0, abs=1e-5)


def test_scale_invariant_log_loss_matches_eigen_formula_and_ignores_unknown_depth():
    rng = np.random.default_rng(2)
    target = rng.uniform(0.5, 8, (3, 7, 9, 1))
    target[rng.random(target.shape) < 0.3] = 0
    prediction = rng.uniform(0.5, 8, target.shape)
    expected = []
    for p, t in zip(prediction, target):
        d = np.log(p[t > 0]) - np.log(t[t > 0])
        expected.append(np.mean(d**2) - 0.5 * np.mean(d) ** 2)
    loss = losses.ScaleInvariantLogLoss()
    assert float(loss(target.astype("float32"), prediction.astype("float32"))) == pytest.approx(
        np.mean(expected), rel=1e-5)
    # With lambda 1 a global scale of the prediction costs nothing.
    blind = losses.ScaleInvariantLogLoss(lambda_weight=1.0)
    valid = (target > 0).astype("float32")
    assert float(blind(target.astype("float32"), (3.0 * target + (1 - valid)).astype("float32"))) == pytest.approx(
        0.0, abs=1e-5)
    assert loss.get_config()["lambda_weight"] == 0.5


# Every argument off its default, so a key that get_config drops comes back as the default and scores differently.
@pytest.mark.parametrize("loss, default", [
    (losses.L1Loss(data_range=1.0), losses.L1Loss()),
    (losses.L2Loss(data_range=100.0), losses.L2Loss()),
    (losses.CharbonnierLoss(epsilon=0.5, data_range=1.0), losses.CharbonnierLoss()),
    (losses.SSIMLoss(data_range=100.0), losses.SSIMLoss()),
    (losses.ScaleInvariantLogLoss(lambda_weight=0.9), losses.ScaleInvariantLogLoss()),
])
def test_restoration_losses_serialize(loss, default):
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss)
    clean, noisy = _restoration_pair(3, (2, 12, 11, 1))
    if isinstance(loss, losses.ScaleInvariantLogLoss):  # depths in metres, some unknown (0)
        clean, noisy = clean / 25.0, np.abs(noisy) / 25.0 + 0.1
        clean[:, :2] = 0
    assert float(restored(clean, noisy)) == pytest.approx(float(loss(clean, noisy)), rel=1e-6)
    for key in set(loss.get_config()) - {"name", "reduction", "dtype"}:
        # The same loss with this one argument at its default scores this pair differently.
        config = {**loss.get_config(), key: default.get_config()[key]}
        assert float(type(loss).from_config(config)(clean, noisy)) != pytest.approx(float(loss(clean, noisy)),
                                                                                     rel=1e-3), key
