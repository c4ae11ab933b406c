"""Binary and multi-label heads on every decoder family, and the metrics that go with them."""

import os

import keras
import numpy as np
import pytest

import kerazoo
from kerazoo import losses, metrics
from kerazoo.tasks.heads import scores_to_labels

pytestmark = pytest.mark.usefixtures("fresh_keras_state")  # tests/conftest.py

IGNORE = 255
ODD_SIZE = (35, 45)
TINY_UNET = dict(encoder="mobilenetv2", decoder_filters=(16, 16, 8, 8, 8))


def _multilabel_batch(seed=0, shape=(2, 6, 7), k=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, shape + (k,))
    y[0, 0, :, 1] = IGNORE
    return y, rng.normal(0, 2, shape + (k,)).astype("float32")


def _np_label_counts(y, logits, threshold=0.5):
    valid = y != IGNORE
    predicted = (1 / (1 + np.exp(-logits.astype(np.float64))) > threshold) & valid
    actual = (y == 1) & valid
    axes = tuple(range(y.ndim - 1))
    tp = (predicted & actual).sum(axes)
    return tp, (predicted & ~actual).sum(axes), (~predicted & actual).sum(axes)


def test_multilabel_iou_and_dice_match_numpy_over_several_batches():
    batches = [_multilabel_batch(seed) for seed in (0, 1)]
    y_all = np.concatenate([y for y, _ in batches])
    logits_all = np.concatenate([x for _, x in batches])
    tp, fp, fn = _np_label_counts(y_all, logits_all, threshold=0.3)
    for metric, expected in ((metrics.MultiLabelIoU(3, threshold=0.3, ignore_class=IGNORE), tp / (tp + fp + fn)),
                             (metrics.MultiLabelDice(3, threshold=0.3, ignore_class=IGNORE),
                              2 * tp / (2 * tp + fp + fn))):
        for y, logits in batches:
            metric.update_state(y, logits)
        assert np.isclose(float(metric.result()), expected.mean(), rtol=1e-6), metric.name
        probabilities = type(metric)(3, threshold=0.3, ignore_class=IGNORE, from_logits=False)
        probabilities.update_state(y_all, 1 / (1 + np.exp(-logits_all)))
        assert np.isclose(float(probabilities.result()), expected.mean(), rtol=1e-6)
        metric.reset_state()
        assert float(metric.result()) == 0.0


def test_binary_masks_without_a_channel_axis_and_unseen_labels():
    y = np.zeros((1, 4, 4), int)
    y[0, :2] = 1
    logits = np.where(np.arange(4)[None, :, None, None] < 1, 5.0, -5.0) * np.ones((1, 4, 4, 1))
    iou = metrics.MultiLabelIoU(1)
    iou.update_state(y, logits.astype("float32"))
    assert np.isclose(float(iou.result()), 4 / 8)  # rows 0-1 true, row 0 predicted
    # A label that is neither true nor predicted anywhere is left out of the mean.
    two = metrics.MultiLabelIoU(2)
    two.update_state(np.stack([y, np.zeros_like(y)], -1), np.concatenate([logits, -5 * np.ones_like(logits)], -1))
    assert np.isclose(float(two.result()), 4 / 8)


def test_mean_dice_matches_the_confusion_matrix():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, (2, 6, 6))
    y[y == 3] = 0  # class 3 never true
    logits = rng.normal(size=(2, 6, 6, 4)).astype("float32")
    logits[..., 3] = -10  # nor predicted: left out
    y[0, 0] = IGNORE
    metric = metrics.MeanDice(4, ignore_class=IGNORE)
    metric.update_state(y, logits)
    valid = y != IGNORE
    pred, true = logits.argmax(-1)[valid], y[valid]
    dice = [2 * np.sum((pred == c) & (true == c)) / (np.sum(pred == c) + np.sum(true == c)) for c in range(3)]
    assert np.isclose(float(metric.result()), np.mean(dice), rtol=1e-6)


@pytest.mark.parametrize("metric", [metrics.MultiLabelIoU(4, threshold=0.7, ignore_class=9, from_logits=False),
                                    metrics.MultiLabelDice(2, threshold=0.2, name="d"),
                                    metrics.MeanDice(5, ignore_class=0, from_logits=False)])
def test_metric_config_round_trip(metric):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(restored) is type(metric) and restored.get_config() == metric.get_config()


def test_metric_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"takes \(B, H, W, 3\) masks and scores; got masks \(1, 4, 4, 2\)"):
        metrics.MultiLabelIoU(3).update_state(np.zeros((1, 4, 4, 2)), np.zeros((1, 4, 4, 3), "float32"))
    with pytest.raises(ValueError, match="threshold must lie in"):
        metrics.MultiLabelDice(3, threshold=1.5)


def test_create_model_validates_the_head():
    with pytest.raises(ValueError, match=r"head must be one of \('segmentation', 'multilabel', 'regression'\); "
                                         r"got 'multi_label'"):
        kerazoo.create_model("segnet_basic", num_classes=3, head="multi_label")
    with pytest.raises(ValueError, match=r"activation for head='multilabel' must be one of \(None, 'sigmoid'\); "
                                         r"got 'softmax'"):
        kerazoo.create_model("segnet_basic", num_classes=3, head="multilabel", activation="softmax")
    with pytest.raises(ValueError, match="task='depth' has a regression head; got head='multilabel'"):
        kerazoo.create_model("segnet_basic", task="depth", head="multilabel")
    with pytest.raises(ValueError, match="2 class_names for num_classes=3"):
        kerazoo.create_model("segnet_basic", num_classes=3, head="multilabel", class_names=["a", "b"])


def test_scores_to_labels_per_head():
    scores = np.array([[[-1.0, 2.0, 0.5]]])
    np.testing.assert_array_equal(scores_to_labels(scores, None, "multilabel"), [[[False, True, True]]])
    np.testing.assert_array_equal(scores_to_labels(scores, None), [[1]])
    probabilities = np.array([[[0.2, 0.6, 0.5]]])
    np.testing.assert_array_equal(scores_to_labels(probabilities, "sigmoid", "multilabel"), [[[False, True, False]]])


DECODERS = [
    pytest.param("fcn16s", "mobilenetv2", {}, id="fcn16s"),
    pytest.param("unet", "mobilenetv2", {"decoder_filters": (16, 16, 8, 8, 8)}, id="unet"),
    pytest.param("segnet_basic", None, {}, id="segnet_basic"),
    pytest.param("segnet", "vgg16", {}, id="segnet", marks=pytest.mark.slow),
    pytest.param("unet_paper", None, {"padding": "same", "in_channels": 3}, id="unet_paper", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name, encoder, options", DECODERS)
def test_every_decoder_takes_binary_and_multilabel_heads_at_odd_sizes(name, encoder, options):
    images = np.random.default_rng(0).uniform(0, 255, (2, *ODD_SIZE, 3)).astype("float32")
    multilabel = kerazoo.create_model(name, encoder=encoder, num_classes=3, head="multilabel",
                                      class_names=["road", "car", "tree"], **options)
    assert multilabel(images).shape == (2, *ODD_SIZE, 3)
    labels = multilabel.segment(images)
    assert labels.dtype == bool and labels.shape == (2, *ODD_SIZE, 3)
    np.testing.assert_array_equal(labels, np.asarray(multilabel.predict(images)) > 0)
    assert isinstance(multilabel.task_spec.default_loss(), losses.SegmentationLoss)
    assert multilabel.task_spec.default_loss().mode == "multilabel"
    assert isinstance(multilabel.task_spec.default_metrics()[0], metrics.MultiLabelIoU)
    rebuilt = type(multilabel).from_config(multilabel.get_config())
    assert rebuilt.head == "multilabel" and rebuilt.class_names == ("road", "car", "tree")

    binary = kerazoo.create_model(name, encoder=encoder, num_classes=1, activation="sigmoid", **options)
    assert binary(images).shape == (2, *ODD_SIZE, 1)
    one = binary.segment(images[0])
    assert one.dtype == np.int32 and one.shape == ODD_SIZE and set(np.unique(one)) <= {0, 1}


def _synthetic(mode, batch=4, size=(32, 32)):
    """Images whose mask is a per-pixel rule of the colours, learnable in a few steps."""
    images = np.random.default_rng(1).uniform(0, 255, (batch, *size, 3)).astype("float32")
    if mode == "binary":
        masks = (images[..., 0] > 127).astype("int32")
        masks[:, 0, :] = IGNORE
        return images, masks
    masks = np.stack([images[..., 0] > 127, images[..., 1] > 90, images[..., 2] < 160], -1).astype("int32")
    masks[:, 0, :, 0] = IGNORE
    return images, masks


TRAINING = [
    ("binary", losses.SegmentationLoss(mode="binary", ignore_class=IGNORE)),
    ("binary", losses.DiceLoss(mode="binary", ignore_class=IGNORE)),
    ("binary", losses.LovaszLoss(mode="binary", ignore_class=IGNORE)),
    ("binary", losses.FocalLoss(mode="binary", ignore_class=IGNORE)),
    ("multilabel", losses.SegmentationLoss(mode="multilabel", ignore_class=IGNORE)),
    ("multilabel", losses.JaccardLoss(mode="multilabel", ignore_class=IGNORE)),
    ("multilabel", losses.TverskyLoss(alpha=0.3, beta=0.7, gamma=1.3, mode="multilabel", ignore_class=IGNORE)),
    ("multilabel", losses.LovaszLoss(mode="multilabel", ignore_class=IGNORE)),
    ("multilabel", losses.FocalLoss(mode="multilabel", ignore_class=IGNORE)),
]


@pytest.mark.slow  # 75-130 s each on the shared 2-core CPU (a fit, a save, a load and two evaluations)
@pytest.mark.parametrize("mode, loss", TRAINING, ids=[f"{mode}-{loss.name}" for mode, loss in TRAINING])
def test_each_head_trains_and_a_compiled_keras_file_keeps_loss_and_metrics(mode, loss, tmp_path):
    head = dict(num_classes=1, head="segmentation") if mode == "binary" else dict(num_classes=3, head="multilabel")
    model = kerazoo.create_model("unet", **TINY_UNET, **head)
    labels = head["num_classes"]
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss,
                  metrics=[metrics.MultiLabelIoU(labels, ignore_class=IGNORE),
                           metrics.MultiLabelDice(labels, ignore_class=IGNORE)])
    images, masks = _synthetic(mode)
    history = model.fit(images, masks, epochs=6, batch_size=len(images), verbose=0).history["loss"]
    assert history[-1] < history[0], history

    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.loss) is type(loss) and loaded.loss.get_config() == loss.get_config()
    expected = model.evaluate(images, masks, verbose=0, return_dict=True)
    got = loaded.evaluate(images, masks, verbose=0, return_dict=True)
    assert set(got) == {"loss", "multilabel_iou", "multilabel_dice"}
    for key, value in expected.items():
        assert np.isclose(got[key], value, rtol=1e-5), key
