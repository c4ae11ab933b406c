"""The presets shipped inside the package: they load offline by name, are small, and still score on the real
validation images what their metadata says (preset_recipes/build_presets.py measured it)."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import kerazoo
from kerazoo import data as kz_data
from kerazoo.training import evaluation
from kerazoo.zoo import preset_metadata

SHIPPED = ["camvid_segnet_basic", "membrane_unet_mobilenetv2", "membrane_unet_paper16"]
REPO = Path(__file__).resolve().parents[1]
ZOO = Path(kerazoo.__file__).parent / "zoo" / "shipped"


def _readme_preset_table():
    """README's table of shipped presets: {name: (model, measured on, {metric: percent as published})}."""
    rows = {}
    for line in (REPO / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 9 and cells[0].strip("`") in SHIPPED:
            figures = dict(zip(("global_accuracy", "class_average_accuracy", "mean_iou"), map(float, cells[3:6])))
            rows[cells[0].strip("`")] = (cells[1], cells[2], figures)
    return rows


def test_shipped_presets_are_listed_with_metrics():
    listed = {preset.name: preset for preset in kerazoo.list_presets()}
    published = _readme_preset_table()
    assert sorted(published) == sorted(SHIPPED), published
    for name in SHIPPED:
        assert name in listed, sorted(listed)
        preset = listed[name]
        model, measured_on, figures = published[name]
        # The listing gives the figures README publishes (percent, one decimal), for the model and data named there.
        assert preset.model == model and measured_on.startswith(f"{preset.dataset} val, "), (preset, measured_on)
        for key, percent in figures.items():
            assert 100 * preset.metrics[key] == pytest.approx(percent, abs=0.05 + 1e-9), (name, key)
        # One IoU per class of the model (its config.json), and mIoU is their mean.
        config = json.loads((ZOO / name / "config.json").read_text())["config"]
        per_class = [preset.metrics[f"iou_{class_name}"] for class_name in config["class_names"]]
        assert preset.metrics["mean_iou"] == pytest.approx(np.mean(per_class), abs=1e-4), name
        # Measured by evaluating this preset at its training size, on the size README names.
        size = "x".join(map(str, config["input_size"]))
        assert preset.evaluation_command.startswith(f"kerazoo evaluate {name} "), preset.evaluation_command
        assert f"--image-size {size}" in preset.evaluation_command and measured_on.endswith(size), preset


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_preset_loads_offline_and_is_small(name, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAZOO_HOME", str(tmp_path))  # an empty cache: the package itself must suffice
    metadata = preset_metadata(name, offline=True)
    assert metadata["weights_bytes"] < 8e6, metadata["weights_bytes"]
    keras.utils.set_random_seed(1)
    model = kerazoo.from_preset(name, offline=True)
    assert model.class_names == tuple(metadata["class_names"]) and model.input_size == tuple(metadata["input_size"])
    channels = metadata["model"].get("in_channels", 3)
    height, width = metadata["input_size"]
    image = np.random.default_rng(0).uniform(0, 255, (1, height, width, channels)).astype("float32")
    outputs = keras.ops.convert_to_numpy(model(image))
    assert outputs.shape == (1, height, width, len(metadata["class_names"]))
    # The shipped weights, not a fresh initialisation: a load under another seed gives the same outputs.
    keras.utils.set_random_seed(2)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(kerazoo.from_preset(name, offline=True)(image)), outputs)
    assert not list(tmp_path.iterdir())  # nothing was downloaded or cached


def test_all_shipped_weights_together_stay_under_the_projects_50_mb():
    # The project's rule for weights that live in the package and the repository; a larger preset is downloaded.
    total = sum(path.stat().st_size for path in ZOO.glob("*/model.weights.h5"))
    assert total < 50e6, f"{total / 1e6:.1f} MB of shipped weights"


# The label that marks unlabelled pixels in each preset's masks: CamVid's void is 11 (after its 11
# classes), the membrane masks label every pixel. Written here, not read from the catalog under test.
VOID_LABEL = {"camvid_segnet_basic": 11, "membrane_unet_mobilenetv2": None, "membrane_unet_paper16": None}


def _scores_by_hand(truth, predicted, num_classes, void):
    """The SegNet paper's G, C and mIoU from flat label arrays, void pixels left out (NumPy only).

    G: correct pixels / all pixels; C: mean over classes present in the masks of their recall;
    mIoU: mean over classes in the masks or the predictions of hits / (true + predicted - hits).
    """
    keep = np.ones(truth.shape, bool) if void is None else truth != void
    truth, predicted = truth[keep].astype(np.int64), predicted[keep].astype(np.int64)
    assert 0 <= truth.min() and truth.max() < num_classes, "a label outside the classes besides void"
    confusion = np.bincount(truth * num_classes + predicted, minlength=num_classes ** 2)
    confusion = confusion.reshape(num_classes, num_classes)
    hits, true_count, predicted_count = np.diag(confusion), confusion.sum(1), confusion.sum(0)
    present, seen = true_count > 0, true_count + predicted_count > 0
    iou = hits[seen] / (true_count + predicted_count - hits)[seen]
    return confusion, {
        "global_accuracy": hits.sum() / keep.sum(),
        "class_average_accuracy": np.mean(hits[present] / true_count[present]),
        "mean_iou": iou.mean(),
        "per_class_iou": dict(zip(np.flatnonzero(seen).tolist(), iou.tolist())),
    }


@pytest.mark.data
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_preset_scores_its_metadata_on_real_validation_data(name, shared_data_dir):
    metadata = preset_metadata(name, offline=True)
    data_dir = shared_data_dir(metadata["dataset"])
    # The metrics were measured on images and masks resized to the training size (the command says so).
    assert f"--image-size {'x'.join(map(str, metadata['input_size']))}" in metadata["evaluation"]["command"]
    size, split = tuple(metadata["input_size"]), metadata["evaluation"]["split"]
    report = evaluation.evaluate_checkpoint(name, data_dir=data_dir, image_size=size)
    assert report["image_size"] == report["model_input_size"] == metadata["input_size"]
    assert report["split"] == split

    # Score the same images independently: the model's argmax at its own size, a NumPy confusion matrix.
    model = kerazoo.from_preset(name, offline=True)
    truth, predicted = [], []
    for images, masks in kz_data.load(metadata["dataset"], split, data_dir=data_dir, image_size=size, batch_size=4,
                                      augment=False, shuffle=False):
        # The compiled forward pass that `segment` uses: an eager call may differ in the last bit (a near-tie).
        scores = keras.ops.convert_to_numpy(model.predict_on_batch(images))
        assert scores.shape[1:3] == size
        predicted.append(scores.argmax(-1).reshape(-1))
        truth.append(np.asarray(masks).reshape(-1))
    truth, predicted = np.concatenate(truth), np.concatenate(predicted)
    num_classes, void = len(metadata["class_names"]), VOID_LABEL[name]
    if void is not None:
        assert (truth == void).mean() > 0.001  # void pixels are there, so leaving them out is tested
    confusion, expected = _scores_by_hand(truth, predicted, num_classes, void)

    np.testing.assert_array_equal(np.asarray(report["confusion"]), confusion)
    assert sum(report["class_pixels"].values()) == (truth.size if void is None else (truth != void).sum())
    for key in ("global_accuracy", "class_average_accuracy", "mean_iou"):
        assert report[key] == pytest.approx(expected[key], abs=1e-9), key
        assert metadata["metrics"][key] == pytest.approx(expected[key], abs=0.002), (key, expected[key])
    for index, class_name in enumerate(metadata["class_names"]):
        assert report["per_class_iou"][class_name] == pytest.approx(expected["per_class_iou"][index], abs=1e-9)
        assert metadata["metrics"][f"iou_{class_name}"] == pytest.approx(expected["per_class_iou"][index], abs=0.002)


def test_new_num_classes_from_a_shipped_preset_keeps_the_encoder(caplog):
    with caplog.at_level("WARNING", logger="kerazoo.zoo"):
        model = kerazoo.from_preset("membrane_unet_mobilenetv2", num_classes=3, offline=True)
    assert "kept the pretrained weights except 1 layer(s)" in caplog.text, caplog.text
    shipped = kerazoo.from_preset("membrane_unet_mobilenetv2", offline=True)
    assert model.output.shape[-1] == 3
    name = "mobilenetv2_encoder"
    for new, old in zip(model.get_layer(name).weights, shipped.get_layer(name).weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(new), keras.ops.convert_to_numpy(old))


def test_predict_and_evaluate_use_the_models_own_attributes_without_run_json(tmp_path, capsys):
    from PIL import Image

    from kerazoo.cli import main

    colors = [(10, 20, 30), (200, 0, 0), (0, 200, 0), (0, 0, 200)]
    model = kerazoo.create_model("segnet_basic", num_classes=4, filters=4, depth=2, input_size=(32, 32),
                                 class_names=["none", "circle", "square", "triangle"], class_colors=colors)
    model.save(tmp_path / "tiny.keras")
    assert not (tmp_path / "run.json").exists()
    rng = np.random.default_rng(0)
    paths = []
    for index, size in enumerate(((45, 67), (20, 30))):
        paths.append(tmp_path / f"image{index}.png")
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(paths[-1])
    assert main(["predict", str(tmp_path / "tiny.keras"), *map(str, paths), "--out-dir", str(tmp_path / "out")]) == 0
    for path, size in zip(paths, ((45, 67), (20, 30))):
        mask = np.asarray(Image.open(tmp_path / "out" / f"{path.stem}_mask.png"))
        assert mask.shape == (*size, 3)
        expected = np.array(colors, np.uint8)[model.segment(np.asarray(Image.open(path)))]
        np.testing.assert_array_equal(mask, expected)  # the model's own colours, at the image's size
    capsys.readouterr()
    report_path = tmp_path / "report.json"
    assert main(["evaluate", str(tmp_path / "tiny.keras"), "--dataset", "shapes", "--image-size", "48x48",
                 "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["model_input_size"] == [32, 32] and report["image_size"] == [48, 48]
    assert list(report["per_class_iou"]) == ["none", "circle", "square", "triangle"]  # the model's class names
    assert "none" in capsys.readouterr().out


def test_shipped_weights_carry_the_package_licence():
    # A card published from a preset states its weights' licence: the package's own (pyproject.toml).
    import tomllib

    licence = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]["text"]
    for name in sorted(path.name for path in ZOO.iterdir() if (path / "metadata.json").exists()):
        stated = json.loads((ZOO / name / "metadata.json").read_text())["license"]
        assert stated.startswith(f"Weights: {licence}, as kerazoo."), (name, stated)
