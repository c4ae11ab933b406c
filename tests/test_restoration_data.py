"""Restoration and depth data: MATLAB imresize, degradations, paired patches, catalogue entries."""

import hashlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kerazoo.data as data
from kerazoo.data.depth import depth_pipeline
from kerazoo.data.restoration import ImageSet

from optional_extras import require_extra

D8 = [(k, flip) for flip in (False, True) for k in range(4)]


def _dihedral_variants(patch):
    return [np.flip(np.rot90(patch, k), 1) if flip else np.rot90(patch, k) for k, flip in D8]


def _stack(ds):
    pairs = [(a.numpy(), b.numpy()) for a, b in ds]
    return np.concatenate([a for a, _ in pairs]), np.concatenate([b for _, b in pairs])


# --- MATLAB imresize -------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2])
def test_imresize_reproduces_a_linear_ramp_away_from_the_borders(scale):
    # The cubic kernel (a = -0.5), widened or not, reproduces linear functions: an output pixel holds
    # the ramp's value at its centre, MATLAB's u = x / scale + 0.5 * (1 - 1 / scale) (1-based).
    ramp = np.tile(np.arange(48, dtype=np.float64)[:, None, None], (1, 5, 1))
    out = data.imresize_numpy(ramp, scale)[:, 0, 0]
    x = np.arange(1, len(out) + 1)
    expected = x / scale + 0.5 * (1 - 1 / scale) - 1
    interior = (expected > 2.5 / min(scale, 1)) & (expected < 47 - 2.5 / min(scale, 1))
    assert out.shape == (int(np.ceil(48 * scale)),) and interior.sum() >= 4
    np.testing.assert_allclose(out[interior], expected[interior], atol=1e-9)


def test_imresize_tf_matches_numpy_on_odd_sizes_and_in_a_graph():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (23, 17, 3), dtype=np.uint8)
    for scale in (1 / 2, 1 / 3, 1 / 4, 3):
        # Sizes unknown until run time, as inside tf.data.
        resize = tf.function(lambda im: data.imresize_tf(im, scale),
                             input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
        reference = data.imresize_numpy(image.astype(np.float64), scale)
        ours = resize(image).numpy()
        assert ours.shape == reference.shape
        np.testing.assert_allclose(ours, reference, atol=1e-3)
    # A constant image stays constant (weights sum to one, mirrored borders included).
    np.testing.assert_allclose(data.imresize_tf(np.full((9, 7, 1), 77.0), 1 / 3).numpy(), 77.0, atol=1e-4)
    with pytest.raises(ValueError, match="scale must be > 0"):
        data.imresize_numpy(image, 0)


@pytest.mark.data
def test_imresize_matches_matlab_on_set5(shared_data_dir):
    """Set5's LR files were made by MATLAB from its HR files; measured gap: mean |diff| 0.15/0.13/0.12 grey
    levels at x2/x3/x4, more than 1 level on 0.07/0.18/0.27 % of pixels (see the README)."""
    root = shared_data_dir("set5") / "set5"
    for scale in (2, 3, 4):
        diffs = []
        for hr_path in sorted((root / f"image_SRF_{scale}").glob("*_HR.png")):
            hr = np.asarray(Image.open(hr_path))
            lr = np.asarray(Image.open(str(hr_path).replace("_HR", "_LR"))).astype(int)
            ours = data.imresize_numpy(hr, 1 / scale)
            assert ours.dtype == np.uint8 and ours.shape == lr.shape
            diffs.append(np.abs(ours.astype(int) - lr).ravel())
        diff = np.concatenate(diffs)
        assert diff.mean() < 0.17 and (diff > 1).mean() < 0.004, (scale, diff.mean(), (diff > 1).mean())


# --- degradations ---------------------------------------------------------------------------------

def test_gaussian_noise_is_seeded_unclipped_and_has_the_sigma():
    dark = tf.fill([64, 64, 1], 5.0)
    noisy = data.add_gaussian_noise(dark, 25, [1, 2])
    assert abs(float(tf.math.reduce_std(noisy - dark)) - 25) < 1.0
    assert float(tf.reduce_min(noisy)) < 0  # not clipped, as in DnCNN
    np.testing.assert_array_equal(noisy, data.add_gaussian_noise(dark, 25, [1, 2]))
    assert not np.array_equal(noisy, data.add_gaussian_noise(dark, 25, [1, 3]))
    blind = tf.function(lambda s: tf.math.reduce_std(data.add_gaussian_noise(dark, (0, 55), s) - dark))
    sigmas = [float(blind(tf.constant([i, 0]))) for i in range(12)]
    assert all(0 <= s < 57 for s in sigmas) and max(sigmas) - min(sigmas) > 15
    for bad in (-1, (30, 10), "25", (1, 2, 3)):
        with pytest.raises(ValueError, match="noise_sigma"):
            data.add_gaussian_noise(dark, bad, [0, 0])


def test_bicubic_downsample_rounds_like_matlab_and_checks_its_input():
    image = np.random.default_rng(1).integers(0, 256, (12, 12, 3)).astype(np.uint8)
    np.testing.assert_array_equal(data.bicubic_downsample(tf.constant(image, tf.float32), 3).numpy(),
                                  data.imresize_numpy(image, 1 / 3))
    assert data.crop_to_multiple(tf.zeros([13, 14, 1]), 4).shape == (12, 12, 1)
    with pytest.raises(ValueError, match=r"scale must be one of \(2, 3, 4\), got 5"):
        data.bicubic_downsample(tf.zeros([10, 10, 1]), 5)


# --- paired sources -------------------------------------------------------------------------------

def _images(sizes, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    return ImageSet(tuple(rng.integers(0, 256, s + (channels,), dtype=np.uint8) for s in sizes),
                    tuple(f"im{i}" for i in range(len(sizes))))


def test_denoise_patches_come_from_the_images_under_the_8_transforms():
    images = _images([(20, 24), (18, 18), (30, 21)])
    ds = data.denoise_pairs(images, noise_sigma=10, patch_size=8, patches_per_image=5, batch_size=4, seed=3)
    noisy, clean = _stack(ds)
    assert noisy.shape == clean.shape == (15, 8, 8, 1) and noisy.dtype == np.float32
    assert abs((noisy - clean).std() - 10) < 1.5
    windows = [np.lib.stride_tricks.sliding_window_view(im[..., 0], (8, 8)).reshape(-1, 8, 8)
               for im in images.images]
    used = set()
    for patch in clean[..., 0]:
        found = [(i, v) for i, w in enumerate(windows) for v, variant in enumerate(_dihedral_variants(patch))
                 if (w == variant).all(axis=(1, 2)).any()]
        assert found, "a clean patch is no window of any image under any flip/rotation"
        used.add(found[0][1])
    assert len(used) > 2  # transforms vary
    again = _stack(data.denoise_pairs(images, noise_sigma=10, patch_size=8, patches_per_image=5, batch_size=4,
                                      seed=3))
    np.testing.assert_array_equal(again[0], noisy)
    other = _stack(data.denoise_pairs(images, noise_sigma=10, patch_size=8, patches_per_image=5, batch_size=4,
                                      seed=4))
    assert not np.array_equal(other[1], clean)


def test_whole_image_evaluation_has_a_fixed_noise_per_image():
    images = _images([(16, 16), (16, 16), (16, 16)])
    one = list(data.denoise_pairs(images, noise_sigma=25, patch_size=None, batch_size=None, seed=7))
    batched = _stack(data.denoise_pairs(images, noise_sigma=25, patch_size=None, batch_size=2, seed=7))
    for i, (noisy, clean) in enumerate(one):
        np.testing.assert_array_equal(clean, images.images[i])  # file order, no crop
        np.testing.assert_array_equal(noisy, batched[0][i])
    assert not np.allclose(one[0][0] - one[0][1], one[1][0] - one[1][1], atol=0.01)  # a seed per image
    with pytest.raises(data.DataValidationError, match="batch_size=1"):
        data.denoise_pairs(_images([(16, 16), (8, 8)]), patch_size=None, batch_size=2)


def test_super_resolution_patches_are_aligned_under_the_transforms():
    # HR pixel (Y, X) carries the code of its LR pixel (Y // s, X // s): an aligned patch pair has HR
    # constant on s x s blocks and equal to the LR patch on every block.
    scale = 3
    low_images, high_images = [], []
    for index, (h, w) in enumerate([(10, 12), (9, 9)]):
        yy, xx = np.mgrid[0:h, 0:w]
        low = np.stack([yy * 20, xx * 20, np.full_like(yy, index * 100)], -1).astype(np.uint8)
        low_images.append(low)
        high_images.append(np.repeat(np.repeat(low, scale, 0), scale, 1))
    low, high = ImageSet(tuple(low_images), ("a", "b")), ImageSet(tuple(high_images), ("a", "b"))
    lr, hr = _stack(data.super_resolution_pairs(high, low=low, scale=scale, patch_size=4, patches_per_image=6,
                                                batch_size=5, seed=1))
    assert lr.shape == (12, 4, 4, 3) and hr.shape == (12, 12, 12, 3)
    np.testing.assert_array_equal(hr[:, ::scale, ::scale], lr)
    np.testing.assert_array_equal(np.repeat(np.repeat(lr, scale, 1), scale, 2), hr)
    transposed = [not np.all(np.diff(patch[:, 0, 0]) == 0) for patch in lr]  # rows vary along x after rot90
    assert any(transposed) and not all(transposed)


def test_super_resolution_from_clean_images_uses_the_matlab_resize_on_cropped_hr():
    high = _images([(26, 31)], channels=3, seed=2)
    (lr, hr), = data.super_resolution_pairs(high, scale=4, patch_size=None, batch_size=None)
    np.testing.assert_array_equal(hr, high.images[0][:24, :28])  # cropped to a multiple of 4
    np.testing.assert_array_equal(lr, data.imresize_numpy(high.images[0][:24, :28], 1 / 4))
    with pytest.raises(data.DataValidationError, match="largest patch_size that fits every image is 6"):
        data.super_resolution_pairs(high, scale=4, patch_size=8)


# --- catalogue ------------------------------------------------------------------------------------

def test_catalogue_tasks_and_options_errors():
    tasks = {name: info.task for name, info in data.DATASETS.items()}
    assert {n for n, t in tasks.items() if t == "denoise"} == {"train400", "set12"}
    assert {n for n, t in tasks.items() if t == "super_resolution"} == {"t91", "set5"}
    assert {n for n, t in tasks.items() if t == "depth"} == {"depth_scenes", "nyu_depth_v2"}
    assert data.DATASETS["train400"].eval_dataset == "set12" and data.DATASETS["t91"].eval_dataset == "set5"
    with pytest.raises(ValueError, match="noise_sigma apply to restoration data sets.*not to 'camvid'"):
        data.load("camvid", noise_sigma=25)
    with pytest.raises(ValueError, match="scale applies to super_resolution"):
        data.load("train400", scale=2, data_dir="/nonexistent")
    with pytest.raises(ValueError, match="not image_size"):
        data.load("set5", "test", image_size=(32, 32))
    with pytest.raises(ValueError, match=r"task 'colour' is not one of"):
        data.DatasetInfo("x", 0, (), (), None, 3, "folders", None, "", task="colour")


@pytest.mark.data
@pytest.mark.parametrize("name,commit,count", [
    ("train400", "e93b27812d3ff523a3a79d19e5e50d233d7a8d0a", 400),
    ("set12", "e93b27812d3ff523a3a79d19e5e50d233d7a8d0a", 12),
    ("t91", "d382bc30d41c94ac72f8cb148d61cc4864b3b380", 91),
    ("set5", "8f6dd8c1d20cb7e8792a7177b4f6fd677633f598", 30)])
def test_restoration_manifests(name, commit, count, shared_data_dir):
    manifest = data.load_manifest(name)
    assert commit in manifest.base_url and len(manifest.files) == count
    root = shared_data_dir(name) / name
    for path, sha, size in manifest.files:
        body = (root / path).read_bytes()
        assert (hashlib.sha256(body).hexdigest(), len(body)) == (sha, size), path


@pytest.mark.data
def test_real_restoration_sets_load(shared_data_dir):
    root = shared_data_dir("train400", "set12", "t91", "set5")
    noisy, clean = next(iter(data.load("train400", data_dir=root, batch_size=4, noise_sigma=15)))
    assert noisy.shape == clean.shape == (4, 48, 48, 1) and abs(float(np.std(noisy - clean)) - 15) < 2
    sizes = [tuple(c.shape) for _, c in data.load("set12", "test", data_dir=root, batch_size=None)]
    assert sizes.count((256, 256, 1)) == 7 and sizes.count((512, 512, 1)) == 5
    lr, hr = next(iter(data.load("t91", data_dir=root, batch_size=2, scale=3)))
    assert lr.shape == (2, 24, 24, 3) and hr.shape == (2, 72, 72, 3)
    assert data.image_names("set12", data_dir=root) == [f"{i:02d}" for i in range(1, 13)]
    for scale in (2, 4):
        assert data.image_names("set5", data_dir=root, scale=scale) == [f"img_00{i}_SRF_{scale}" for i in range(1, 6)]
        pairs = list(data.load("set5", "test", data_dir=root, batch_size=None, scale=scale))
        assert len(pairs) == 5
        assert all(h.shape[:2] == (scale * l.shape[0], scale * l.shape[1]) for l, h in pairs)
        name = f"img_001_SRF_{scale}_LR.png"
        np.testing.assert_array_equal(pairs[0][0], np.asarray(Image.open(root / "set5" / f"image_SRF_{scale}" / name)))


# --- depth ----------------------------------------------------------------------------------------

def test_depth_scenes_are_plausible_and_seeded():
    images, depths = data.generate_depth_scenes(6, (48, 64), seed=0, missing_fraction=0.05)
    assert images.shape == (6, 48, 64, 3) and images.dtype == np.uint8 and depths.shape == (6, 48, 64, 1)
    valid = depths[depths > 0]
    assert 0.5 < valid.min() and valid.max() <= 9.0 + 1e-5 and abs((depths == 0).mean() - 0.05) < 0.02
    # The floor recedes: on every image, depth at the bottom row is nearer than at the top row.
    rows = np.where(depths > 0, depths, np.nan)[..., 0]
    assert (np.nanmedian(rows[:, -1], axis=1) < np.nanmedian(rows[:, 0], axis=1)).all()
    # Shading follows depth: nearer pixels are brighter on average.
    near, far = depths[..., 0] < np.median(valid), depths[..., 0] > np.median(valid)
    assert images.mean(-1)[near].mean() > images.mean(-1)[far].mean()
    np.testing.assert_array_equal(data.generate_depth_scenes(2, (16, 16), seed=4)[1],
                                  data.generate_depth_scenes(2, (16, 16), seed=4)[1])


def test_depth_pipeline_keeps_holes_and_flips_image_and_depth_together():
    ds = data.load("depth_scenes", "train", batch_size=4, image_size=(24, 32), num_examples=8, seed=1)
    image, depth = next(iter(ds))
    assert image.shape == (4, 24, 32, 3) and depth.shape == (4, 24, 32, 1) and depth.dtype == tf.float32
    # Depth resized by nearest neighbour: every value is one of the source's (holes stay 0, none blend).
    images, source = data.generate_depth_scenes(8, (64, 64), seed=1)
    raw = tf.data.Dataset.from_tensor_slices((images, source))
    resized = np.concatenate([d for _, d in depth_pipeline(raw, image_size=(24, 32), batch_size=4, augment=True,
                                                           shuffle=True, seed=0)])
    assert set(np.unique(resized)) <= set(np.unique(source)) and (resized == 0).any()
    # Flip alignment: the image's red channel copies the depth, so both must stay equal after flips.
    depth_map = np.tile(np.linspace(1, 5, 16, dtype=np.float32), (8, 1))[None].repeat(6, 0)
    raw = tf.data.Dataset.from_tensor_slices((np.repeat(depth_map[..., None] * 40, 3, -1), depth_map))
    pipeline = depth_pipeline(raw, image_size=None, batch_size=None, augment=True, shuffle=False, seed=0)
    flips = []
    for image, depth in pipeline:
        np.testing.assert_allclose(image[..., 0], depth[..., 0] * 40, rtol=1e-6)
        flips.append(float(depth[0, 0, 0]) > 3)
    assert any(flips) and not all(flips)


def test_nyu_depth_v2_through_mocked_tfds():
    tfds = require_extra("tensorflow_datasets", "data")
    images, depths = data.generate_depth_scenes(3, (480, 640), seed=2)  # NYU's size, metres, with holes

    def as_dataset(self, split, decoders=None, read_config=None, **kwargs):
        return tf.data.Dataset.from_tensor_slices({"image": images, "depth": depths[..., 0]})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        image, depth = next(iter(data.load("nyu_depth_v2", "val", batch_size=3, image_size=(60, 80))))
    assert image.shape == (3, 60, 80, 3) and depth.shape == (3, 60, 80, 1)
    # Not shuffled or flipped off the train split: nearest resizing samples the source exactly.
    np.testing.assert_array_equal(depth.numpy(), depths[:, 4::8, 4::8])  # pixel centres of 8x8 blocks
    assert 0 < float(tf.reduce_mean(image)) < 255
