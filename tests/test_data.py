"""Data loaders and pipeline: folders, validation errors, augmentation, determinism, TFDS, weights."""

import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kerazoo.data as data

REAL_DATA = Path(os.environ.get("KERAZOO_DATA") or Path(__file__).resolve().parents[1] / ".." / "shared" / "data")


def _write_pairs(root, n=3, size=(12, 16), num_classes=3, mask_values=None):
    """Writes n RGB images whose red channel encodes the mask label (label * 60)."""
    rng = np.random.default_rng(0)
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        mask = rng.integers(0, num_classes, size).astype(np.uint8)
        mask[: size[0] // 2, : size[1] // 2] = 1  # a block, so interiors survive resampling
        if mask_values is not None:
            mask = np.asarray(mask_values, np.uint8)[mask]
        image = np.stack([mask * 60, np.full(size, 10), np.full(size, 200)], -1).astype(np.uint8)
        Image.fromarray(image).save(images / f"img{i}.png")
        Image.fromarray(mask).save(masks / f"img{i}.png")
    return images, masks


def _first(ds):
    return [t.numpy() for t in next(iter(ds))]


def test_catalogue():
    assert data.list_datasets() == ["camvid", "membrane", "oxford_iiit_pet", "shapes"]
    camvid = data.DATASETS["camvid"]
    assert camvid.num_classes == 11 and camvid.ignore_class == 11
    assert camvid.class_names[0] == "Sky" and camvid.class_names[-1] == "Bicyclist"
    assert len(camvid.class_colors) == 11 and data.DATASETS["membrane"].channels == 1


def test_data_dir_resolution(tmp_path, monkeypatch):
    (tmp_path / "camvid").mkdir()
    assert data.resolve_data_dir(tmp_path, "camvid") == tmp_path
    monkeypatch.setenv("KERAZOO_DATA", str(tmp_path))
    assert data.resolve_data_dir(None, "camvid") == tmp_path
    with pytest.raises(data.DataNotFoundError, match="KERAZOO_DATA") as error:
        data.resolve_data_dir(None, "membrane")
    assert str(tmp_path / "membrane") in str(error.value)
    with pytest.raises(data.DataNotFoundError, match="nowhere"):
        data.load("camvid", data_dir=tmp_path / "nowhere")


def test_load_folders_shapes_dtypes_and_pairing(tmp_path):
    images, masks = _write_pairs(tmp_path)
    ds = data.load_folders(images, masks, num_classes=3, batch_size=2)
    image, mask = _first(ds)
    assert image.shape == (2, 12, 16, 3) and image.dtype == np.float32
    assert mask.shape == (2, 12, 16) and mask.dtype == np.int32
    np.testing.assert_array_equal(image[..., 0], mask * 60)  # the right mask with the right image
    assert sum(int(b[0].shape[0]) for b in ds) == 3
    # Resizing never interpolates labels: only the original labels appear.
    image, mask = _first(data.load_folders(images, masks, num_classes=3, image_size=(7, 9)))
    assert image.shape[1:] == (7, 9, 3) and set(np.unique(mask)) <= {0, 1, 2}
    assert 0.0 <= image.min() and image.max() <= 255.0


def test_value_map_palette_and_ignore(tmp_path):
    images, masks = _write_pairs(tmp_path, mask_values=[0, 255, 128])
    _, mask = _first(data.load_folders(images, masks, value_map={0: 0, 255: 1, 128: 7}, ignore_class=7,
                                       num_classes=2))
    assert set(np.unique(mask)) == {0, 1, 7}
    # Palette PNGs are read as indices, not colours.
    pal = tmp_path / "pal"
    (pal / "i").mkdir(parents=True)
    (pal / "m").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(pal / "i" / "a.png")
    indices = np.array([[0, 1, 2, 1]] * 4, np.uint8)
    palette_mask = Image.fromarray(indices, mode="P")
    palette_mask.putpalette([0, 0, 0, 200, 10, 10, 10, 200, 10] + [0] * 759)
    palette_mask.save(pal / "m" / "a.png")
    _, mask = _first(data.load_folders(pal / "i", pal / "m", num_classes=3))
    np.testing.assert_array_equal(mask[0], indices)


def test_folder_errors_name_the_problem(tmp_path):
    images, masks = _write_pairs(tmp_path, n=2)
    with pytest.raises(data.DataNotFoundError, match="missing"):
        data.load_folders(tmp_path / "missing", masks)
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataValidationError, match="no image files"):
        data.load_folders(tmp_path / "empty", masks)
    with pytest.raises(data.DataValidationError, match=r"img1\.png.*outside the class range"):
        data.load_folders(images, masks, num_classes=2)  # label 2 present
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(images / "orphan.png")
    with pytest.raises(data.DataValidationError, match="orphan.png"):
        data.load_folders(images, masks)
    (images / "orphan.png").unlink()
    (images / "img0.png").write_bytes(b"not a png at all")
    with pytest.raises(data.DataValidationError, match=r"Unreadable image .*img0\.png"):
        data.load_folders(images, masks)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(images / "img0.png")
    with pytest.raises(data.DataValidationError, match="Size mismatch"):
        data.load_folders(images, masks)
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(images / "img0.png")
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(masks / "img0.png")
    with pytest.raises(data.DataValidationError, match="single-channel"):
        data.load_folders(images, masks)


def test_augmentation_keeps_image_and_mask_aligned():
    mask = np.zeros((32, 40), np.int32)
    mask[8:24, 10:30] = 1
    mask[12:20, 15:25] = 2
    image = np.repeat((mask * 100)[..., None], 3, -1).astype(np.float32)
    geometry = data.AugmentConfig(vertical_flip=True, brightness=0, contrast=0, saturation=0, hue=0,
                                  max_rotation=15, scale_range=(0.8, 1.3))
    for i in range(6):
        out_image, out_mask = data.augment_pair(image, mask, tf.constant([i, 7]), (24, 28), geometry)
        out_image, out_mask = out_image.numpy(), out_mask.numpy()
        assert out_image.shape == (24, 28, 3) and out_mask.shape == (24, 28)
        assert set(np.unique(out_mask)) <= {0, 1, 2}
        # Bilinear image vs nearest mask may differ only along edges.
        agree = np.abs(out_image[..., 0] - out_mask * 100) < 50
        assert agree.mean() > 0.9
    colour = data.AugmentConfig(scale_range=(1.0, 1.0), max_rotation=0, horizontal_flip=False)
    out_image, out_mask = data.augment_pair(image, mask, tf.constant([1, 2]), None, colour)
    np.testing.assert_array_equal(out_mask.numpy(), mask)  # colour jitter leaves the mask alone
    assert not np.allclose(out_image.numpy(), image)


def test_pipeline_is_deterministic_under_a_seed(tmp_path):
    images, masks = _write_pairs(tmp_path, n=6)

    def epochs(seed):
        ds = data.load_folders(images, masks, num_classes=3, batch_size=3, image_size=(10, 12),
                               augment=True, shuffle=True, seed=seed)
        return [[t.numpy() for batch in ds for t in batch] for _ in range(2)]

    first, again, other = epochs(0), epochs(0), epochs(1)
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(first[0], first[1]))  # epochs differ
    assert not all(np.array_equal(x, y) for x, y in zip(first[0], other[0]))  # seeds differ


def test_shapes_dataset():
    train = data.load("shapes", "train", num_examples=8, batch_size=4, seed=3)
    image, mask = _first(train)
    assert image.shape == (4, 64, 64, 3) and mask.shape == (4, 64, 64) and mask.dtype == np.int32
    images, masks = data.generate_shapes(40, image_size=(32, 32), seed=3)
    assert set(np.unique(masks)) == {0, 1, 2, 3}
    again, _ = data.generate_shapes(40, image_size=(32, 32), seed=3)
    np.testing.assert_array_equal(images, again)
    val, _ = data.generate_shapes(40, image_size=(32, 32), seed=3, split="val")
    assert not np.array_equal(images, val)
    plain = data.load("shapes", "val", num_examples=4, batch_size=None, image_size=(32, 32), seed=3)
    _, first_mask = _first(plain)
    _, expected_masks = data.generate_shapes(4, image_size=(32, 32), seed=3, split="val")
    np.testing.assert_array_equal(first_mask, expected_masks[0])


def test_load_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Unknown data set 'nope'.*camvid"):
        data.load("nope")
    with pytest.raises(ValueError, match="num_examples"):
        data.load("membrane", num_examples=3)
    with pytest.raises(ValueError, match="image_size"):
        data.load("shapes", image_size=(64,))
    with pytest.raises(ValueError, match="scale_range"):
        data.AugmentConfig(scale_range=(2.0, 1.0))


def test_median_frequency_weights_by_hand():
    masks = np.array([[[0, 0], [0, 1]], [[0, 2], [2, 9]]])  # 9 is ignored
    # freq(0) = 4/7 (images 1 and 2 have 4 + 3 valid pixels), freq(1) = 1/4, freq(2) = 2/3
    freq = np.array([4 / 7, 1 / 4, 2 / 3])
    expected = np.median(freq) / freq
    np.testing.assert_allclose(data.median_frequency_weights(masks, 4, ignore_class=9)[:3], expected, rtol=1e-6)
    assert data.median_frequency_weights(masks, 4, ignore_class=9)[3] == 0.0  # class 3 never appears
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((2, 2, 2, 3), np.float32), masks)).batch(1)
    np.testing.assert_allclose(data.median_frequency_weights(ds, 4, ignore_class=9)[:3], expected, rtol=1e-6)
    with pytest.raises(ValueError, match=r"\[9\]"):
        data.median_frequency_weights(masks, 4)


def test_oxford_pet_through_mocked_tfds():
    tfds = pytest.importorskip("tensorflow_datasets")

    def as_dataset(self, split, decoders=None, read_config=None, **kwargs):
        rng = np.random.default_rng(0)
        sizes = [(20, 30), (24, 18), (16, 16)]
        images = [rng.integers(0, 256, s + (3,), dtype=np.uint8) for s in sizes]
        masks = [rng.integers(1, 4, s + (1,), dtype=np.uint8) for s in sizes]
        return tf.data.Dataset.from_generator(
            lambda: ({"image": i, "segmentation_mask": m, "label": 0, "species": 0, "file_name": "x.jpg"}
                     for i, m in zip(images, masks)),
            output_signature={"image": tf.TensorSpec((None, None, 3), tf.uint8),
                              "segmentation_mask": tf.TensorSpec((None, None, 1), tf.uint8),
                              "label": tf.TensorSpec((), tf.int64), "species": tf.TensorSpec((), tf.int64),
                              "file_name": tf.TensorSpec((), tf.string)})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        ds = data.load("oxford_iiit_pet", "train", batch_size=2, image_size=(16, 16), seed=0)
        image, mask = _first(ds)
        raw = data.load("oxford_iiit_pet", "val", batch_size=None, image_size=(16, 16))
        values = np.concatenate([m.numpy().ravel() for _, m in raw])
    assert image.shape == (2, 16, 16, 3) and mask.shape == (2, 16, 16) and mask.dtype == np.int32
    assert set(np.unique(values)) == {0, 1, 2}


needs_data = pytest.mark.skipif(not (REAL_DATA / "camvid").is_dir() or not (REAL_DATA / "membrane").is_dir(),
                                reason=f"real data not found at {REAL_DATA}; set KERAZOO_DATA")


@pytest.mark.data
@needs_data
def test_camvid_real():
    ds = data.load("camvid", "val", data_dir=REAL_DATA, batch_size=2)
    image, mask = _first(ds)
    assert image.shape == (2, 352, 480, 3) and mask.shape == (2, 352, 480)
    assert mask.min() >= 0 and mask.max() <= 11
    assert int(ds.unbatch().cardinality()) in (101, tf.data.UNKNOWN_CARDINALITY)
    with pytest.raises(ValueError, match="train"):
        data.load("camvid", "bogus", data_dir=REAL_DATA)


@pytest.mark.data
@needs_data
def test_membrane_real_split():
    val = list(data.load("membrane", "val", data_dir=REAL_DATA, batch_size=None, image_size=(64, 64)))
    train = data.load("membrane", "train", data_dir=REAL_DATA, batch_size=None, augment=False, shuffle=False,
                      image_size=(64, 64))
    assert len(val) == 4 and sum(1 for _ in train) == 20
    image, mask = val[0]
    assert image.shape == (64, 64, 1) and set(np.unique(mask.numpy())) == {0, 1}
    # The val split is slices 20..23 in numeric order.
    expected = np.asarray(Image.open(REAL_DATA / "membrane" / "label" / "20.png").resize((64, 64), Image.NEAREST))
    np.testing.assert_array_equal(mask.numpy(), (expected >= 128).astype(np.int32))
