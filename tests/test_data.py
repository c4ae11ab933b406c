"""Data loaders and pipeline: folders, validation errors, augmentation, determinism, TFDS, weights,
the catalogue, and data-set downloads against a local HTTP server on 127.0.0.1."""

import contextlib
import dataclasses
import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import kerazoo.data as data
from kerazoo.data import loaders, sources
from kerazoo.utils.download import ChecksumError, DownloadError

from optional_extras import require_extra


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
    assert data.list_datasets() == ["camvid", "depth_scenes", "membrane", "nyu_depth_v2", "oxford_iiit_pet",
                                    "set12", "set5", "shapes", "t91", "train400"]
    camvid = data.DATASETS["camvid"]
    assert camvid.num_classes == 11 and camvid.ignore_class == 11
    assert camvid.class_names[0] == "Sky" and camvid.class_names[-1] == "Bicyclist"
    assert len(camvid.class_colors) == 11 and data.DATASETS["membrane"].channels == 1
    segmentation = {name: info for name, info in data.DATASETS.items() if info.task == "segmentation"}
    assert {name: info.val_split for name, info in segmentation.items()} == {
        "camvid": "val", "membrane": "val", "oxford_iiit_pet": "test", "shapes": "val"}
    assert [name for name, info in data.DATASETS.items() if info.synthetic] == ["shapes", "depth_scenes"]
    assert sorted(name for name, info in data.DATASETS.items() if info.download) == [
        "camvid", "membrane", "set12", "set5", "t91", "train400"]
    with pytest.raises(ValueError, match="val_split 'dev'"):
        dataclasses.replace(camvid, val_split="dev")


def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAZOO_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.data_home() == tmp_path / "home" / ".keras" / "datasets"  # Keras' convention
    (tmp_path / "camvid").mkdir()
    assert data.resolve_data_dir(tmp_path, "camvid") == tmp_path
    monkeypatch.setenv("KERAZOO_DATA", str(tmp_path))
    assert data.resolve_data_dir(None, "camvid") == tmp_path and data.data_home() == tmp_path
    with pytest.raises(data.DataNotFoundError, match="KERAZOO_DATA") as error:
        data.resolve_data_dir(None, "membrane")
    assert str(tmp_path / "membrane") in str(error.value) and "download_dataset('membrane')" in str(error.value)
    with pytest.raises(data.DataNotFoundError, match="nowhere.*download=False was passed.*download_dataset"):
        data.load("camvid", data_dir=tmp_path / "nowhere", download=False)
    assert not (tmp_path / "nowhere").exists()


def test_load_folders_shapes_dtypes_and_pairing(tmp_path):
    images, masks = _write_pairs(tmp_path)
    ds = data.load_folders(images, masks, num_classes=3, batch_size=2)
    image, mask = _first(ds)
    assert image.shape == (2, 12, 16, 3) and image.dtype == np.float32
    assert mask.shape == (2, 12, 16) and mask.dtype == np.int32
    np.testing.assert_array_equal(image[..., 0], mask * 60)  # the right mask with the right image
    assert sum(int(b[0].shape[0]) for b in ds) == 3
    # Resizing never interpolates labels: with labels {0, 2} only, an interpolated mask would show 1s.
    gapped = tmp_path / "gapped"
    images, masks = _write_pairs(gapped, mask_values=[0, 2, 0])
    image, mask = _first(data.load_folders(images, masks, num_classes=3, image_size=(7, 9), batch_size=None))
    assert image.shape == (7, 9, 3) and 0.0 <= image.min() and image.max() <= 255.0
    assert 1 not in np.unique(mask) and set(np.unique(mask)) == {0, 2}
    original = np.asarray(Image.open(masks / "img0.png"))[..., None]
    nearest = tf.image.resize(original, (7, 9), method="nearest").numpy()[..., 0]
    np.testing.assert_array_equal(mask, nearest)


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
    # Labels {0, 2} only: a bilinear-resampled mask would show 1s along every edge.
    mask = np.zeros((32, 40), np.int32)
    mask[8:24, 10:30] = 2
    mask[12:20, 15:25] = 0
    image = np.repeat((mask * 100)[..., None], 3, -1).astype(np.float32)
    geometry = data.AugmentConfig(vertical_flip=True, brightness=0, contrast=0, saturation=0, hue=0,
                                  max_rotation=15, scale_range=(0.8, 1.3))
    for i in range(6):
        out_image, out_mask = data.augment_pair(image, mask, tf.constant([i, 7]), (24, 28), geometry)
        out_image, out_mask = out_image.numpy(), out_mask.numpy()
        assert out_image.shape == (24, 28, 3) and out_mask.shape == (24, 28)
        assert set(np.unique(out_mask)) == {0, 2}
        # Bilinear image vs nearest mask may differ only along edges.
        agree = np.abs(out_image[..., 0] - out_mask * 100) < 100
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
    tfds = require_extra("tensorflow_datasets", "data")

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


@pytest.mark.data
def test_camvid_real(shared_data_dir):
    root = shared_data_dir("camvid")
    ds = data.load("camvid", "val", data_dir=root, batch_size=2)
    image, mask = _first(ds)
    assert image.shape == (2, 352, 480, 3) and mask.shape == (2, 352, 480)
    assert mask.min() >= 0 and mask.max() <= 11
    assert int(ds.unbatch().cardinality()) in (101, tf.data.UNKNOWN_CARDINALITY)
    with pytest.raises(ValueError, match="train"):
        data.load("camvid", "bogus", data_dir=root)


@pytest.mark.data
def test_membrane_real_split(shared_data_dir):
    root = shared_data_dir("membrane")
    val = list(data.load("membrane", "val", data_dir=root, batch_size=None, image_size=(64, 64)))
    train = data.load("membrane", "train", data_dir=root, batch_size=None, augment=False, shuffle=False,
                      image_size=(64, 64))
    assert len(val) == 4 and sum(1 for _ in train) == 20
    image, mask = val[0]
    assert image.shape == (64, 64, 1) and set(np.unique(mask.numpy())) == {0, 1}
    # The val split is slices 20..23 in numeric order.
    expected = np.asarray(Image.open(root / "membrane" / "label" / "20.png").resize((64, 64), Image.NEAREST))
    np.testing.assert_array_equal(mask.numpy(), (expected >= 128).astype(np.int32))


# --- downloads against a local HTTP server ----------------------------------------------------------


class _FileServer:
    """Serves a folder over http on 127.0.0.1, counting requests; paths in `truncate` send half a body."""

    def __init__(self, root):
        self.hits, self.truncate = [], set()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.hits.append(self.path)
                if self.path not in server.truncate:
                    return super().do_GET()
                body = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])  # the connection closes early

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _entry(path, body):
    return [path, hashlib.sha256(body).hexdigest(), len(body)]


@pytest.fixture
def tiny_download(tmp_path, monkeypatch):
    """A CamVid-like data set 'tinycam' whose manifest points at a local mirror: train/ as files, val/ in a
    tar.gz archive. Returns (server, data root, manifest dict, manifest path, served bytes by path)."""
    rng = np.random.default_rng(0)
    served = {}
    for split in ("train", "val"):
        for index in range(2):
            served[f"{split}/f{index}.png"] = _png_bytes(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8))
            served[f"{split}annot/f{index}.png"] = _png_bytes(rng.integers(0, 12, (8, 12), dtype=np.uint8))
    mirror = tmp_path / "mirror" / "tinycam"
    for path, body in served.items():
        if path.startswith("train"):
            (mirror / path).parent.mkdir(parents=True, exist_ok=True)
            (mirror / path).write_bytes(body)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path, body in served.items():
            if path.startswith("val"):
                member = tarfile.TarInfo(path)
                member.size = len(body)
                tar.addfile(member, io.BytesIO(body))
    (mirror / "val.tar.gz").write_bytes(buffer.getvalue())
    manifest = {"name": "tinycam", "base_url": "https://example.invalid/never-used/",
                "source": "made by the test", "license": "none",
                "files": [_entry(p, b) for p, b in served.items() if p.startswith("train")],
                "archives": [_entry("val.tar.gz", buffer.getvalue())]}
    manifest_path = tmp_path / "tinycam.json"
    manifest_path.write_text(json.dumps(manifest))
    info = dataclasses.replace(data.DATASETS["camvid"], name="tinycam", image_size=None, download=str(manifest_path))
    monkeypatch.setitem(data.DATASETS, "tinycam", info)
    server = _FileServer(tmp_path / "mirror")
    root = tmp_path / "datasets"
    monkeypatch.setenv("KERAZOO_DATA", str(root))
    monkeypatch.setenv(sources.MIRROR_VAR, server.url)
    monkeypatch.delenv("KERAZOO_OFFLINE", raising=False)
    yield server, root, manifest, manifest_path, served
    server.close()


def _files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_load_downloads_a_missing_data_set_through_its_manifest(tiny_download):
    server, root, _, _, served = tiny_download
    pairs = list(data.load("tinycam", "val", batch_size=None, shuffle=False))
    assert _files_under(root) == sorted(f"tinycam/{path}" for path in served)  # archive unpacked and removed
    for path, body in served.items():
        assert (root / "tinycam" / path).read_bytes() == body
    expected = np.asarray(Image.open(io.BytesIO(served["valannot/f0.png"])))
    np.testing.assert_array_equal(pairs[0][1].numpy(), expected)
    assert len(server.hits) == 5 and all(hit.startswith("/tinycam/") for hit in server.hits)
    data.load("tinycam", "train", batch_size=None)
    assert len(server.hits) == 5  # already there: nothing fetched again


def test_sha256_mismatch_keeps_nothing(tiny_download):
    server, root, manifest, manifest_path, _ = tiny_download
    manifest["files"][1][1] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ChecksumError, match=f"tinycam.*{manifest['files'][1][0]}.*expected 0000") as error:
        data.load("tinycam", "train")
    assert "Nothing was kept" in str(error.value)
    assert _files_under(root) == [] and not (root / "tinycam").exists()


def test_offline_or_download_false_names_what_is_missing(tiny_download, monkeypatch):
    server, root, *_ = tiny_download
    monkeypatch.setenv("KERAZOO_OFFLINE", "1")
    for call in (lambda: data.load("tinycam", "train"), lambda: data.download_dataset("tinycam")):
        with pytest.raises(data.DataNotFoundError, match="KERAZOO_OFFLINE") as error:
            call()
        assert str(root / "tinycam") in str(error.value)
    assert "download_dataset('tinycam')" in str(error.value) or "cannot be downloaded" in str(error.value)
    monkeypatch.delenv("KERAZOO_OFFLINE")
    with pytest.raises(data.DataNotFoundError, match="download=False"):
        data.load("tinycam", "train", download=False)
    assert server.hits == [] and not root.exists()


def test_interrupted_transfer_keeps_nothing(tiny_download):
    server, root, manifest, *_ = tiny_download
    server.truncate.add(f"/tinycam/{manifest['files'][2][0]}")
    with pytest.raises(DownloadError, match="truncated transfer") as error:
        data.download_dataset("tinycam", retries=0, workers=2)
    assert "Nothing was kept" in str(error.value)
    assert _files_under(root) == [] and list(root.iterdir()) == []  # no staging folder either


def test_keyboard_interrupt_keeps_nothing(tiny_download, monkeypatch):
    server, root, *_ = tiny_download
    updates, real_progress_bar = [], sources.progress_bar

    class InterruptingBar:  # the progress bar runs in the main thread, where Ctrl-C arrives
        def add_task(self, *args, **kwargs):
            return 0

        def update(self, task, advance):
            updates.append(advance)
            if len(updates) == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(sources, "progress_bar", lambda enabled: contextlib.nullcontext(InterruptingBar()))
    with pytest.raises(KeyboardInterrupt):
        data.download_dataset("tinycam", workers=1, progress=True)
    assert len(updates) == 2 and _files_under(root) == [] and list(root.iterdir()) == []
    monkeypatch.setattr(sources, "progress_bar", real_progress_bar)
    assert data.download_dataset("tinycam") == root / "tinycam"  # a later try starts clean and completes
    assert len(_files_under(root)) == 8


def test_manifest_errors(tmp_path):
    with pytest.raises(ValueError, match="No data set manifest 'nope'.*camvid.*membrane"):
        data.load_manifest("nope")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad", "base_url": "https://x/", "files": [["../escape.png", "0" * 64, 1]]}))
    with pytest.raises(ValueError, match="escape.png"):
        data.load_manifest(bad)
    with pytest.raises(ValueError, match="cannot download 'shapes'.*camvid"):
        data.download_dataset("shapes")


def test_shipped_manifests_pin_upstream_commits():
    for name, commit, count in (("camvid", "bb68b64e72cb004b3ed927fee0f5624dd8097498", 2 * (367 + 101 + 233)),
                                ("membrane", "b45af4d458437d8281cc218a07fd4380818ece4a", 48)):
        manifest = data.load_manifest(name)
        assert manifest.base_url.startswith(f"https://raw.githubusercontent.com/") and commit in manifest.base_url
        assert len(manifest.files) == count and len({path for path, _, _ in manifest.files}) == count
        assert all(len(sha) == 64 and size > 0 for _, sha, size in manifest.files)


@pytest.mark.data
def test_shipped_camvid_manifest_matches_the_real_files(shared_data_dir):
    root = shared_data_dir("camvid")
    entries = {path: (sha, size) for path, sha, size in data.load_manifest("camvid").files}
    local = sorted(str(p.relative_to(root / "camvid")) for p in (root / "camvid").rglob("*.png"))
    assert len(local) == 2 * (367 + 101) and set(local) <= set(entries)
    for path in local:
        body = (root / "camvid" / path).read_bytes()
        assert (hashlib.sha256(body).hexdigest(), len(body)) == entries[path], path


@pytest.mark.data
def test_membrane_downloads_through_the_shipped_manifest_from_a_local_mirror(shared_data_dir, tmp_path,
                                                                             monkeypatch):
    shared = shared_data_dir("membrane")
    server = _FileServer(shared)  # the shared copy serves as the mirror; the manifest's sha256 is checked
    monkeypatch.setattr(urllib.request, "urlopen", functools.partial(_loopback_only, urllib.request.urlopen))
    try:
        folder = data.download_dataset("membrane", tmp_path / "root", mirror=server.url)
    finally:
        server.close()
    assert len(server.hits) == 48
    for path, _, _ in data.load_manifest("membrane").files:
        assert (folder / path).read_bytes() == (shared / "membrane" / path).read_bytes()
    assert len(list(data.load("membrane", "val", data_dir=tmp_path / "root", batch_size=None))) == 4


def _loopback_only(urlopen, request, *args, **kwargs):
    assert request.full_url.startswith("http://127.0.0.1:"), request.full_url
    return urlopen(request, *args, **kwargs)
