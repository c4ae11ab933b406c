"""Tiled inference and test-time augmentation (kerazoo.inference): exactness on toy models whose receptive
field fits in the overlap, strips streamed top to bottom, files written whole or not at all, the ZooModel
methods and the command line."""

import numpy as np
import pytest
from PIL import Image

import keras

import kerazoo
from kerazoo import cli
from kerazoo.training.evaluation import colorize
from kerazoo.inference import outputs, tiles, tta
from kerazoo.inference.tiled_model import model_stride
from kerazoo.layers import DepthToSpace


def conv_toy(channels=3, outputs_=2, seed=0):
    """Two 3x3 convolutions: a receptive field of 5 pixels (radius 2), no stride."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, channels))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(outputs_, 3, padding="same")(x))


def pooling_toy(seed=0):
    """conv, 2x2 max pooling, conv, 2x upsampling, conv: stride 2, receptive field radius 5."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.UpSampling2D(2)(x)
    return keras.Model(inputs, keras.layers.Conv2D(2, 3, padding="same")(x))


def super_resolution_toy(seed=0):
    """conv to 3 x 2 x 2 channels, depth-to-space by 2: a x2 super-resolver with a 3-pixel receptive field."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    return keras.Model(inputs, DepthToSpace(2)(keras.layers.Conv2D(12, 3, padding="same")(inputs)))


def pixels(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


def whole(model, image):
    return keras.ops.convert_to_numpy(model.predict_on_batch(image[None]))[0]


# --- the plan -------------------------------------------------------------------------------------------

def test_tiles_cover_the_axis_on_the_stride_grid_overlapping_at_least_as_asked():
    plan = tiles.plan_axis(100, 32, 0.25, stride=8)
    assert plan.tile == 32 and plan.starts[0] == 0
    assert all(start % 8 == 0 for start in plan.starts)
    assert plan.padded == 104  # 100 rounded up to the stride; the last tile ends there
    steps = np.diff(plan.starts)
    assert (steps > 0).all() and (32 - steps >= 8).all()  # 0.25 x 32 = 8 pixels shared at least
    assert plan.margin == 2 and plan.margins(0) == (0, 2) and plan.margins(len(plan.starts) - 1) == (2, 0)
    short = tiles.plan_axis(20, 32, 0.25, stride=8)  # shorter than a tile: one tile, the image's length
    assert (short.tile, short.starts, short.margin) == (20, (0,), 0)
    assert tiles.plan_axis(96, 32, 0.0).starts == (0, 32, 64)  # no overlap: side by side


@pytest.mark.parametrize("call, message", [
    (lambda: tiles.check_tile(500, 32), "tile 500 is not a multiple of the model's stride 32: use 480 or 512"),
    (lambda: tiles.check_tile(16, 32), "stride 32: use 32"),
    (lambda: tiles.check_tile(0), "positive int"),
    (lambda: tiles.check_tile((64, True)), "positive int"),
    (lambda: tiles.check_overlap(1.0), r"overlap must be a fraction of the tile in \[0, 1\).*1.0"),
    (lambda: tiles.check_overlap(-0.1), r"\[0, 1\)"),
    (lambda: tiles.check_blend("median"), "blend must be one of 'gaussian', 'constant'; got 'median'"),
    (lambda: tiles.plan_axis(100, 32, 0.1, stride=32), "rounds up to 32 pixels at the model's stride 32"),
    (lambda: tta.check_tta("rot"), "tta must be None or one of 'flip', 'd4'; got 'rot'"),
])
def test_bad_arguments_name_the_value_and_what_is_valid(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_gaussian_window_peaks_in_the_middle_and_drops_its_margins():
    window = tiles.blend_window(32, "gaussian", before=4, after=0)
    assert (window[:4] == 0).all() and (window[4:] > 0).all()
    assert window[15] == window[16] == window.max()
    assert window[-1] == pytest.approx(np.exp(-0.5 * (15.5 / 4) ** 2), rel=1e-5)  # sigma = 32 / 8
    np.testing.assert_array_equal(tiles.blend_window(8, "constant", after=2), [1, 1, 1, 1, 1, 1, 0, 0])


# --- exactness -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("blend", tiles.BLENDS)
def test_tiled_equals_whole_image_when_the_receptive_field_fits_in_the_margin(blend):
    model = conv_toy()
    image = pixels((70, 90, 3))
    # overlap 0.5 of 32 = 16 pixels; each tile gives up 4 at inner edges, more than the radius of 2.
    tiled = tiles.tiled_predict(image, model.predict_on_batch, tile=32, overlap=0.5, blend=blend, batch_size=3)
    reference = whole(model, image)
    assert tiled.shape == reference.shape
    np.testing.assert_allclose(tiled, reference, rtol=1e-5, atol=1e-5 * np.abs(reference).max())


def test_tiles_start_on_the_stride_grid_so_a_pooling_model_stays_exact():
    model = pooling_toy()
    image = pixels((72, 100, 3), seed=1)
    tiled = tiles.tiled_predict(image, model.predict_on_batch, tile=48, overlap=0.5, stride=2)
    reference = whole(model, image)
    np.testing.assert_allclose(tiled, reference, rtol=1e-5, atol=1e-5 * np.abs(reference).max())


def test_super_resolution_tiles_are_stitched_at_the_output_scale():
    model = super_resolution_toy()
    image = pixels((37, 50, 3), seed=2)  # odd sizes: the last tiles run past the image, mirrored
    tiled = tiles.tiled_predict(image, model.predict_on_batch, tile=16, overlap=0.5, scale=2)
    reference = whole(model, image)
    assert tiled.shape == (74, 100, 3)
    np.testing.assert_allclose(tiled, reference, rtol=1e-5, atol=1e-5 * np.abs(reference).max())


def test_a_model_that_sees_past_the_margin_differs_at_the_seams():
    """The other side of the bound: a receptive field wider than the margin is not exact (so the exact
    cases above are not exact by accident)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 15, padding="same")(inputs))  # radius 7 > margin 4
    image = pixels((64, 64, 3))
    tiled = tiles.tiled_predict(image, model.predict_on_batch, tile=32, overlap=0.5, blend="constant")
    assert np.abs(tiled - whole(model, image)).max() > 1e-2 * np.abs(whole(model, image)).max()


# --- strips and files ------------------------------------------------------------------------------------

def test_strips_are_finalised_before_the_last_tiles_run():
    model = conv_toy()
    events = []

    def predict(batch):
        events.append("tiles")
        return model.predict_on_batch(batch)

    strips = []
    for strip in tiles.iter_tiled_strips(pixels((130, 40, 3)), predict, tile=32, overlap=0.25, batch_size=2):
        events.append("strip")
        strips.append(strip)
    assert sum(len(s) for s in strips) == 130 and all(s.shape[1:] == (40, 2) for s in strips)
    assert events.index("strip") < len(events) - 1 - events[::-1].index("tiles")  # a strip came out early
    assert max(len(s) for s in strips) <= 32  # at most a tile's rows held as a finished strip


def test_finished_rows_come_in_strips_of_bounded_bytes(monkeypatch):
    model = conv_toy()
    image = pixels((70, 40, 3))
    reference = tiles.tiled_predict(image, model.predict_on_batch, tile=32)
    monkeypatch.setattr(tiles, "STRIP_BYTES", 5 * 40 * 2 * 4)  # 5 rows of 40 x 2 float32
    strips = list(tiles.iter_tiled_strips(image, model.predict_on_batch, tile=32))
    assert max(len(s) for s in strips) == 5
    np.testing.assert_array_equal(np.concatenate(strips), reference)


@pytest.mark.parametrize("suffix", [".png", ".npy"])
def test_written_file_holds_the_same_result(tmp_path, suffix):
    model = super_resolution_toy()
    image = pixels((30, 45, 3), seed=3)
    finalize = lambda strip: np.clip(np.rint(strip), 0, 255).astype(np.uint8)  # noqa: E731
    in_memory = tiles.tiled_predict(image, model.predict_on_batch, tile=16, overlap=0.25, scale=2, finalize=finalize)
    path = tiles.tiled_predict(image, model.predict_on_batch, tile=16, overlap=0.25, scale=2, finalize=finalize,
                               out=tmp_path / f"result{suffix}")
    written = np.asarray(Image.open(path)) if suffix == ".png" else np.load(path)
    np.testing.assert_array_equal(written, in_memory)
    assert [p.name for p in tmp_path.iterdir()] == [f"result{suffix}"]


def test_a_failed_write_leaves_no_file(tmp_path):
    def strips():
        yield np.zeros((4, 10), np.uint8)
        raise RuntimeError("the model failed half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        outputs.write_strips(tmp_path / "out.png", strips(), height=8, width=10)
    with pytest.raises(ValueError, match="add up to 4 rows, not 8"):
        outputs.write_strips(tmp_path / "out.npy", iter([np.zeros((4, 10), np.float32)]), height=8, width=10)
    with pytest.raises(ValueError, match="a PNG takes uint8.*write a .npy file instead"):
        outputs.write_strips(tmp_path / "out.png", iter([np.zeros((8, 10), np.float32)]), height=8, width=10)
    with pytest.raises(ValueError, match=r"must end in \.png or \.npy"):
        outputs.write_strips(tmp_path / "out.tif", iter([np.zeros((8, 10), np.uint8)]), height=8, width=10)
    assert list(tmp_path.iterdir()) == []


# --- test-time augmentation ------------------------------------------------------------------------------

def test_each_transform_is_undone_by_its_inverse_and_d4_has_eight_distinct_ones():
    batch = pixels((2, 5, 7, 3))
    chosen = tta.transforms("d4", 5, 7)
    assert len(chosen) == 8 and chosen[0].name == "identity"
    images = {t.forward(batch).tobytes() for t in chosen if not t.transposes}
    assert len(images) == 4 and len({t.forward(batch).shape for t in chosen}) == 2
    for transform in chosen:
        np.testing.assert_array_equal(transform.inverse(transform.forward(batch)), batch)
    # A model of one fixed size takes no transposed non-square batch: the 4 others remain.
    assert [t.transposes for t in tta.transforms("d4", 5, 7, any_size=False)] == [False] * 4
    assert len(tta.transforms("d4", 6, 6, any_size=False)) == 8
    assert [t.name for t in tta.transforms("flip", 5, 7)] == ["identity", "hflip"]


def test_an_equivariant_model_gives_the_same_output_with_and_without_tta():
    inputs = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(2, 3, padding="same")
    model = keras.Model(inputs, conv(inputs))
    kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 2)).astype(np.float32)
    # Symmetric under every flip and transpose of the square: the model commutes with D4.
    kernel = sum(np.rot90(k, turns, axes=(0, 1)) for k in (kernel, kernel[:, ::-1]) for turns in range(4))
    conv.set_weights([kernel, np.array([0.5, -1.0], np.float32)])
    batch = pixels((2, 9, 13, 3))
    plain = model.predict_on_batch(batch)
    for mode in tta.TTA_MODES:
        np.testing.assert_allclose(tta.with_tta(model.predict_on_batch, mode)(batch), plain, rtol=1e-5, atol=1e-3)


def test_tta_of_a_non_equivariant_model_is_the_mean_of_the_undone_outputs():
    model = conv_toy()
    batch = pixels((2, 9, 13, 3))
    f = lambda x: np.asarray(model.predict_on_batch(np.ascontiguousarray(x)))  # noqa: E731
    flip = (f(batch) + f(batch[:, :, ::-1])[:, :, ::-1]) / 2
    assert np.abs(f(batch) - flip).max() > 1e-2  # the model does care about flips
    np.testing.assert_allclose(tta.with_tta(model.predict_on_batch, "flip")(batch), flip, rtol=1e-5, atol=1e-4)
    d4 = np.mean([np.rot90(f(np.rot90(x, k, axes=(1, 2))), -k, axes=(1, 2))[:, :, ::-1 if mirrored else 1]
                  for mirrored, x in ((False, batch), (True, batch[:, :, ::-1])) for k in range(4)], axis=0)
    np.testing.assert_allclose(tta.with_tta(model.predict_on_batch, "d4")(batch), d4, rtol=1e-5, atol=1e-4)


def test_tta_composes_with_tiling_exactly():
    model = conv_toy()
    image = pixels((50, 70, 3), seed=4)
    tiled = tiles.tiled_predict(image, tta.with_tta(model.predict_on_batch, "d4"), tile=32, overlap=0.5)
    reference = tta.with_tta(model.predict_on_batch, "d4")(image[None])[0]
    np.testing.assert_allclose(tiled, reference, rtol=1e-5, atol=1e-5 * np.abs(reference).max())


# --- the zoo's models ------------------------------------------------------------------------------------

def tiny_segnet(**arguments):
    keras.utils.set_random_seed(0)
    return kerazoo.create_model("segnet_basic", **{"num_classes": 3, "filters": 4, "depth": 2, **arguments})


def test_model_stride_is_its_padding_multiple_or_its_poolings():
    assert model_stride(tiny_segnet()) == 4
    assert model_stride(kerazoo.create_model("unet_paper", num_classes=1, padding="same", filters=4)) == 16
    assert model_stride(conv_toy()) == 1 and model_stride(pooling_toy()) == 2


def test_segment_restore_and_depth_take_tiles_and_tta():
    segmenter = tiny_segnet(input_size=(16, 16))
    image = pixels((40, 56, 3), seed=5)
    labels = segmenter.segment(image, tile=16, overlap=0.5, tta="flip")
    assert labels.shape == (40, 56) and labels.dtype == np.int32
    # One tile larger than the image: the model's own run at the image's size (no resize to input_size).
    logits = whole(segmenter, image)
    np.testing.assert_array_equal(segmenter.segment(image, tile=64), logits.argmax(-1))
    flipped = (logits + whole(segmenter, image[:, ::-1])[:, ::-1]) / 2
    np.testing.assert_array_equal(segmenter.segment(image, tile=64, tta="flip"), flipped.argmax(-1))
    batch = segmenter.segment(np.stack([image, image]), tile=16)
    assert batch.shape == (2, 40, 56)
    np.testing.assert_array_equal(batch[1], segmenter.segment(image, tile=16))

    restorer = tiny_segnet(task="super_resolution", scale=2)
    restored = restorer.restore([image, image[:20, :24]], tile=16, tta="d4")
    assert [r.shape for r in restored] == [(80, 112, 3), (40, 48, 3)] and restored[0].dtype == np.uint8
    # The same outputs up to float rounding (a compiled and an eager call), so at most 1 grey level apart.
    assert np.abs(restorer.restore(image, tile=64).astype(int) - restorer.restore(image)).max() <= 1

    depth = tiny_segnet(task="depth", num_classes=1)
    assert depth.predict_depth(image, tile=16, overlap=0.25, blend="constant").shape == (40, 56)


def test_tta_without_tiles_averages_inside_segment_and_restore():
    segmenter = tiny_segnet()
    image = pixels((20, 28, 3), seed=6)
    logits = whole(segmenter, image)
    flipped = (logits + whole(segmenter, image[:, ::-1])[:, ::-1]) / 2
    assert (flipped.argmax(-1) != logits.argmax(-1)).any()  # else this test could not tell
    np.testing.assert_array_equal(segmenter.segment(image, tta="flip"), flipped.argmax(-1))
    denoiser = tiny_segnet(task="denoise", num_classes=3)
    outputs_ = (whole(denoiser, image) + whole(denoiser, image[:, ::-1])[:, ::-1]) / 2
    np.testing.assert_array_equal(denoiser.restore(image, tta="flip"), np.clip(np.rint(outputs_), 0, 255))


def test_restore_out_streams_one_image_to_a_file(tmp_path):
    restorer = tiny_segnet(task="super_resolution", scale=2)
    image = pixels((24, 40, 3), seed=7).astype(np.uint8)
    path = restorer.restore(image, tile=16, out=tmp_path / "big.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), restorer.restore(image, tile=16))
    with pytest.raises(ValueError, match="pass tile= as well"):
        restorer.restore(image, out=tmp_path / "x.png")
    with pytest.raises(ValueError, match="out= takes the result of one image; got 2 images"):
        restorer.restore([image, image], tile=16, out=tmp_path / "x.png")
    with pytest.raises(ValueError, match="tile 10 is not a multiple of the model's stride 4: use 8 or 12"):
        restorer.restore(image, tile=10)
    depth = tiny_segnet(task="depth", num_classes=1)
    with pytest.raises(ValueError, match="write a .npy file instead"):
        depth.predict_depth(image, tile=16, out=tmp_path / "depth.png")
    assert np.load(depth.predict_depth(image, tile=16, out=tmp_path / "depth.npy")).shape == (24, 40)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.png", "depth.npy"]


def test_cli_predict_tiles_and_tta(tmp_path, capsys):
    restorer = tiny_segnet(task="super_resolution", scale=2)
    restorer.save(tmp_path / "sr.keras")
    segmenter = tiny_segnet(class_colors=[(0, 0, 0), (255, 0, 0), (0, 0, 255)])
    segmenter.save(tmp_path / "seg.keras")
    image = pixels((36, 52, 3), seed=8).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")
    assert cli.main(["predict", str(tmp_path / "sr.keras"), str(tmp_path / "photo.png"), "--out-dir",
                     str(tmp_path / "sr"), "--tile", "16", "--overlap", "0.5", "--blend", "constant",
                     "--tta", "flip"]) == 0
    assert sorted(p.name for p in (tmp_path / "sr").iterdir()) == ["photo_restored.png"]  # no before/after
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "sr" / "photo_restored.png")),
                                  restorer.restore(image, tile=16, overlap=0.5, blend="constant", tta="flip"))
    assert cli.main(["predict", str(tmp_path / "seg.keras"), str(tmp_path / "photo.png"), "--out-dir",
                     str(tmp_path / "seg"), "--tile", "16x20", "--tta", "d4"]) == 0
    labels = segmenter.segment(image, tile=(16, 20), tta="d4")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "seg" / "photo_mask.png")),
                                  colorize(labels, segmenter.class_colors))
    assert "photo_overlay.png" in capsys.readouterr().out


def test_cli_rejects_a_bad_blend_and_tta():
    for flags in (["--blend", "median"], ["--tta", "rot"]):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(["predict", "model.keras", "image.png", *flags])
    args = cli.build_parser().parse_args(["predict", "m.keras", "i.png", "--tile", "256x512"])
    assert (args.tile, args.overlap, args.blend, args.tta) == ((256, 512), 0.25, "gaussian", None)
    assert cli.build_parser().parse_args(["evaluate", "m.keras", "--tta", "d4"]).tta == "d4"


# --- the shipped presets on real data ----------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.data
def test_shipped_denoiser_tiled_agrees_with_whole_image_and_d4_helps(shared_data_dir):
    from kerazoo import data as kz_data
    from kerazoo.metrics import psnr

    data_dir = shared_data_dir("set12")
    model = kerazoo.from_preset("set12_denoise_sigma25_unet")
    noisy, clean = next(iter(kz_data.load("set12", "test", noise_sigma=25, batch_size=None, seed=0,
                                          data_dir=data_dir)))
    noisy, clean = np.asarray(noisy), np.asarray(clean)[..., 0]  # 01.png, 256x256 grey
    whole = model.restore(noisy)
    tiled = model.restore(noisy, tile=128, overlap=0.25)
    assert tiled.shape == whole.shape == (256, 256)
    # Measured over Set12 (benchmarks/tiled_inference.py): 62.5 dB at worst, 67.2 dB on average.
    assert psnr(tiled, whole) > 55
    # d4 gained 0.06 to 0.17 dB on every Set12 image (29.73 -> 29.84 dB on average).
    assert psnr(model.restore(noisy, tta="d4"), clean) > psnr(whole, clean) + 0.03
