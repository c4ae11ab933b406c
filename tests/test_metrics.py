"""Segmentation metrics against a NumPy confusion-matrix reference."""

import keras
import numpy as np
import pytest

from kerazoo import metrics

from optional_extras import require_extra

K = 5
IGNORE = 255


def _batch(seed, k=K):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, (3, 6, 7))
    y[rng.random(y.shape) < 0.2] = IGNORE
    logits = rng.normal(size=(3, 6, 7, k)).astype("float32")
    # Bias the prediction towards the truth so the scores are not all near chance.
    logits += 1.5 * np.eye(k)[np.where(y == IGNORE, 0, y)]
    return y, logits


def _np_confusion(batches, k=K):
    confusion = np.zeros((k, k), np.int64)
    for y, logits in batches:
        pred = logits.argmax(-1)
        keep = y != IGNORE
        np.add.at(confusion, (y[keep], pred[keep]), 1)
    return confusion


def _np_scores(confusion):
    tp = np.diag(confusion).astype(float)
    actual, predicted = confusion.sum(1), confusion.sum(0)
    union = actual + predicted - tp
    iou = np.array([tp[c] / union[c] if union[c] else np.nan for c in range(len(tp))])
    recall = [tp[c] / actual[c] for c in range(len(tp)) if actual[c]]
    return {"mean_iou": np.nanmean(iou), "per_class_iou": iou, "global_accuracy": tp.sum() / confusion.sum(),
            "class_average_accuracy": np.mean(recall)}


METRICS = {
    "mean_iou": metrics.MeanIoU,
    "per_class_iou": metrics.PerClassIoU,
    "global_accuracy": metrics.PixelAccuracy,
    "class_average_accuracy": metrics.ClassAverageAccuracy,
}


@pytest.mark.parametrize("key", sorted(METRICS))
def test_metric_matches_numpy_over_several_batches(key):
    batches = [_batch(0), _batch(1)]
    # Class 4 is never the truth in the second half: class-average accuracy must skip it.
    batches[1][0][batches[1][0] == 4] = 3
    metric = METRICS[key](K, ignore_class=IGNORE)
    for y, logits in batches:
        metric.update_state(y[..., None] if key == "mean_iou" else y, logits)
    expected = _np_scores(_np_confusion(batches))[key]
    np.testing.assert_allclose(np.asarray(metric.result()), expected, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(metric.total_cm), _np_confusion(batches))
    metric.reset_state()
    assert int(np.asarray(metric.total_cm).sum()) == 0


def test_probabilities_and_logits_agree_and_absent_classes_are_nan():
    y, logits = _batch(2, k=3)
    y[y == 2] = 0
    logits[..., 2] = -50.0  # class 2 neither true nor predicted
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    a, b = metrics.PerClassIoU(3, IGNORE), metrics.PerClassIoU(3, IGNORE, from_logits=False)
    a.update_state(y, logits)
    b.update_state(y, probs)
    np.testing.assert_allclose(a.result(), b.result())
    assert np.isnan(np.asarray(a.result())[2]) and not np.isnan(np.asarray(a.result())[:2]).any()
    mean = metrics.MeanIoU(3, IGNORE)
    mean.update_state(y, logits)
    assert np.isclose(mean.result(), np.nanmean(np.asarray(a.result())))


def test_binary_single_channel_and_dice():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, (2, 8, 8))
    logit = rng.normal(size=(2, 8, 8, 1)).astype("float32")
    pred = (logit[..., 0] > 0).astype(int)
    tp = ((pred == 1) & (y == 1)).sum()
    dice = metrics.DiceCoefficient()
    dice.update_state(y, logit)
    assert np.isclose(dice.result(), 2 * tp / (pred.sum() + y.sum()))
    probs = 1 / (1 + np.exp(-logit))
    high = metrics.DiceCoefficient(threshold=0.8, from_logits=False)
    high.update_state(y, probs)
    pred = (probs[..., 0] > 0.8).astype(int)
    assert np.isclose(high.result(), 2 * ((pred == 1) & (y == 1)).sum() / (pred.sum() + y.sum()))
    iou = metrics.MeanIoU(2)
    iou.update_state(y, logit)
    pred = (logit[..., 0] > 0).astype(int)
    expected = np.mean([((pred == c) & (y == c)).sum() / ((pred == c) | (y == c)).sum() for c in (0, 1)])
    assert np.isclose(iou.result(), expected)


def test_confusion_matrix_scores_by_hand():
    confusion = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    scores = metrics.confusion_matrix_scores(confusion)
    assert scores["global_accuracy"] == pytest.approx(11 / 14)
    assert scores["class_average_accuracy"] == pytest.approx((8 / 10 + 3 / 4) / 2)
    np.testing.assert_allclose(scores["per_class_iou"][:2], [8 / 11, 3 / 6])
    assert np.isnan(scores["per_class_iou"][2])
    assert scores["mean_iou"] == pytest.approx((8 / 11 + 3 / 6) / 2)
    with pytest.raises(ValueError, match="square"):
        metrics.confusion_matrix_scores(np.zeros((2, 3)))


def test_confusion_matrix_scores_agree_with_metrics():
    y, logits = _batch(5)
    metric = metrics.PerClassIoU(K, IGNORE)
    metric.update_state(y, logits)
    scores = metrics.confusion_matrix_scores(np.asarray(metric.total_cm))
    for key, cls in METRICS.items():
        m = cls(K, IGNORE)
        m.update_state(y, logits)
        np.testing.assert_allclose(np.asarray(m.result()), scores[key], rtol=1e-6)


def _round_trip_data(channels, probabilities, seed=7):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, max(channels, 2), (2, 6, 7))
    scores = rng.normal(size=(2, 6, 7, channels)).astype("float32")
    scores += 2.0 * (np.eye(max(channels, 2))[y][..., :channels] if channels > 1 else y[..., None] - 0.5)
    if probabilities:
        scores = 1 / (1 + np.exp(-scores)) if channels == 1 else np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
    return y, scores


def _score(metric, y, y_pred):
    metric.update_state(y, y_pred)
    return np.asarray(metric.result())


# Arguments off their defaults where the data can show them (from_logits only matters for one channel),
# so a key dropped from get_config changes the restored metric's value.
@pytest.mark.parametrize("make, channels, probabilities", [
    (lambda: metrics.MeanIoU(3, ignore_class=2), 3, False),
    (lambda: metrics.PerClassIoU(2, from_logits=False), 1, True),
    (lambda: metrics.PixelAccuracy(4, ignore_class=0), 4, False),
    (lambda: metrics.ClassAverageAccuracy(2, ignore_class=1, from_logits=False), 1, True),
    (lambda: metrics.DiceCoefficient(threshold=0.3, ignore_class=0, from_logits=False), 1, True),
])
def test_config_round_trip(make, channels, probabilities):
    metric = make()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(restored) is type(metric)
    y, y_pred = _round_trip_data(channels, probabilities)
    expected = _score(make(), y, y_pred)
    np.testing.assert_allclose(_score(restored, y, y_pred), expected, rtol=1e-6)
    defaults = {"ignore_class": None, "from_logits": True, "threshold": 0.5}
    for key, default in defaults.items():
        config = metric.get_config()
        if key in config and config[key] != default:
            # The same metric with this one argument at its default scores this data differently.
            changed = type(metric).from_config({**config, key: default})
            assert not np.allclose(_score(changed, y, y_pred), expected, equal_nan=True), key


def _np_confusion_from(y, predicted, k, ignore):
    keep = y != ignore
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (y[keep], predicted[keep]), 1)
    return confusion


def test_compile_fit_evaluate_with_losses_and_metrics():
    from kerazoo import losses

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 4, (4, 8, 8))
    y[:, 0] = 3  # ignored
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(3, 3, padding="same")])
    model.compile(optimizer="adam", loss=losses.SegmentationLoss(ignore_class=3),
                  metrics=[metrics.MeanIoU(3, ignore_class=3), metrics.PixelAccuracy(3, ignore_class=3),
                           metrics.PerClassIoU(3, ignore_class=3)])
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    results = model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
    # The same scores from the trained model's own predictions, counted in NumPy.
    predicted = np.asarray(model.predict(x, verbose=0)).argmax(-1)
    confusion = _np_confusion_from(y, predicted, 3, ignore=3)
    expected = _np_scores(confusion)
    assert results["mean_iou"] == pytest.approx(expected["mean_iou"], rel=1e-5)
    assert results["pixel_accuracy"] == pytest.approx(expected["global_accuracy"], rel=1e-5)
    np.testing.assert_allclose(results["per_class_iou"], expected["per_class_iou"], rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# Restoration (PSNR, SSIM) against scikit-image, depth against NumPy formulas.

def _skimage_metrics():
    return require_extra("skimage.metrics", "dev")


def _image_pair(seed, shape):
    rng = np.random.default_rng(seed)
    clean = rng.uniform(0, 255, shape)
    # A smooth structure plus noise, so SSIM is neither ~0 nor ~1.
    clean = (clean + np.roll(clean, 1, axis=0) + np.roll(clean, 1, axis=1)) / 3
    noisy = np.clip(clean + rng.normal(0, 20, shape), 0, 255)
    return np.round(noisy).astype(np.uint8), np.round(clean).astype(np.uint8)


def _skimage_ssim(prediction, target):
    return _skimage_metrics().structural_similarity(
        prediction.astype(np.float64), target.astype(np.float64), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255, channel_axis=-1 if prediction.ndim == 3 else None)


def _matlab_y(rgb):
    """MATLAB's rgb2ycbcr on 0..1 input, Y scaled to 0..255."""
    rgb = rgb.astype(np.float64) / 255.0
    return 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]


def test_grey_psnr_and_ssim_match_scikit_image():
    noisy, clean = _image_pair(0, (40, 36))
    assert metrics.psnr(noisy, clean) == pytest.approx(
        _skimage_metrics().peak_signal_noise_ratio(clean, noisy, data_range=255), abs=1e-4)
    assert metrics.ssim(noisy, clean) == pytest.approx(_skimage_ssim(noisy, clean), abs=1e-4)


def test_colour_metrics_use_bt601_y_and_crop_the_border():
    noisy, clean = _image_pair(1, (30, 33, 3))
    border = 3
    y_noisy, y_clean = (_matlab_y(a)[border:-border, border:-border] for a in (noisy, clean))
    assert metrics.psnr(noisy, clean, crop_border=border) == pytest.approx(
        _skimage_metrics().peak_signal_noise_ratio(y_clean, y_noisy, data_range=255), abs=1e-4)
    assert metrics.ssim(noisy, clean, crop_border=border) == pytest.approx(_skimage_ssim(y_noisy, y_clean), abs=1e-4)
    # Without Y: over the RGB channels, as scikit-image does with channel_axis.
    assert metrics.psnr(noisy, clean, y_channel=False) == pytest.approx(
        _skimage_metrics().peak_signal_noise_ratio(clean, noisy, data_range=255), abs=1e-4)
    assert metrics.ssim(noisy, clean, y_channel=False) == pytest.approx(_skimage_ssim(noisy, clean), abs=1e-4)


def test_batches_give_one_value_per_image_and_keras_metrics_average_them():
    pairs = [_image_pair(seed, (24, 26, 3)) for seed in (2, 3)]
    noisy = np.stack([p[0] for p in pairs]).astype("float32")
    clean = np.stack([p[1] for p in pairs]).astype("float32")
    per_image = metrics.psnr(noisy, clean, crop_border=2)
    expected = [_skimage_metrics().peak_signal_noise_ratio(_matlab_y(c)[2:-2, 2:-2], _matlab_y(n)[2:-2, 2:-2],
                                                        data_range=255) for n, c in zip(noisy, clean)]
    np.testing.assert_allclose(per_image, expected, atol=1e-4)
    psnr_metric, ssim_metric = metrics.PSNR(crop_border=2), metrics.SSIM(crop_border=2)
    for index in range(2):  # two batches of one image: the mean over images
        psnr_metric.update_state(clean[index:index + 1], noisy[index:index + 1])
        ssim_metric.update_state(clean[index:index + 1], noisy[index:index + 1])
    assert float(psnr_metric.result()) == pytest.approx(np.mean(expected), abs=1e-4)
    expected_ssim = np.mean([_skimage_ssim(_matlab_y(n)[2:-2, 2:-2], _matlab_y(c)[2:-2, 2:-2])
                             for n, c in zip(noisy, clean)])
    assert float(ssim_metric.result()) == pytest.approx(expected_ssim, abs=1e-4)
    restored = metrics.PSNR.from_config(psnr_metric.get_config())
    assert restored.crop_border == 2 and restored.y_channel


def test_image_metric_errors_name_the_problem():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(ValueError, match="crop_border must be an int >= 0 smaller than half the image; got 4"):
        metrics.psnr(np.zeros((8, 8)), np.zeros((8, 8)), crop_border=4)
    with pytest.raises(ValueError, match="at least 11x11 pixels"):
        metrics.ssim(np.zeros((12, 12)), np.zeros((12, 12)), crop_border=1)


def _depth_pair(seed):
    rng = np.random.default_rng(seed)
    target = rng.uniform(0.5, 10, (2, 9, 11, 1))
    target[rng.random(target.shape) < 0.3] = 0  # unknown depth
    prediction = target * rng.uniform(0.6, 1.6, target.shape) + rng.uniform(0.01, 0.3, target.shape)
    return prediction.astype("float32"), target.astype("float32")


def _numpy_depth_reference(prediction, target):
    valid = target > 0
    p, t = prediction[valid].astype(np.float64), target[valid].astype(np.float64)
    ratio = np.maximum(p / t, t / p)
    return {"delta1": np.mean(ratio < 1.25), "delta2": np.mean(ratio < 1.25**2), "delta3": np.mean(ratio < 1.25**3),
            "abs_rel": np.mean(np.abs(p - t) / t), "rmse": np.sqrt(np.mean((p - t) ** 2)),
            "log10": np.mean(np.abs(np.log10(p) - np.log10(t)))}


def test_depth_metrics_match_numpy_on_valid_pixels():
    prediction, target = _depth_pair(4)
    expected = _numpy_depth_reference(prediction, target)
    got = metrics.depth_metrics(prediction, target)
    assert set(got) == set(metrics.DEPTH_KINDS)
    for kind in metrics.DEPTH_KINDS:
        assert got[kind] == pytest.approx(expected[kind], rel=1e-5), kind
    # Keras metrics accumulate over batches: the same pooled figures.
    second = _depth_pair(5)
    pooled = _numpy_depth_reference(np.concatenate([prediction, second[0]]), np.concatenate([target, second[1]]))
    for kind in ("delta1", "abs_rel", "rmse", "log10"):
        metric = metrics.DepthMetric(kind)
        metric.update_state(target, prediction)
        metric.update_state(second[1], second[0])
        assert float(metric.result()) == pytest.approx(pooled[kind], rel=1e-5), kind
    with pytest.raises(ValueError, match="kind must be one of .*'abs_rel'.*got 'absrel'"):
        metrics.DepthMetric("absrel")
    with pytest.raises(ValueError, match="no pixel with a known depth"):
        metrics.depth_metrics(prediction, np.zeros_like(target))
