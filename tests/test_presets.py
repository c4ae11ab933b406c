"""Presets: save/load round trips, head re-initialisation, verification, safety, the cache and downloads.

Downloads go only to a threaded HTTP server on 127.0.0.1 that injects faults; every other test runs
with network access made to fail loudly.
"""

import http.server
import io
import json
import logging
import shutil
import socket
import sys
import tarfile
import threading
import types
import urllib.request
import zipfile

import keras
import numpy as np
import pytest

from kerazoo import create_model

from kerazoo import zoo as presets
from kerazoo.models.model import ZooModel
from kerazoo.utils.download import ChecksumError, DownloadError, UnsafeArchiveError, extract_archive, sha256_file
from kerazoo.zoo import Preset, PresetError, PresetNotCachedError

SEGNET_ARGS = {"name": "segnet_basic", "num_classes": 4, "filters": 8, "depth": 2}
UNET_ARGS = {"name": "unet", "encoder": "mobilenetv2", "num_classes": 3, "decoder_filters": [16, 16, 8, 8, 8]}
FCN_ARGS = {"name": "fcn8s", "encoder": "mobilenetv2", "num_classes": 3}
METADATA = {
    "dataset": "shapes",
    "description": "tiny SegNet-Basic for tests",
    "input_size": [32, 32],
    "metrics": {"mean_iou": 0.5, "pixel_accuracy": 0.75},
    "evaluation": {"command": "kerazoo evaluate --preset tiny --dataset shapes --split val", "split": "val"},
    "training": {"epochs": 1, "optimizer": "adam", "learning_rate": 0.001, "loss": "cross_entropy", "seed": 0},
    "license": "Apache-2.0",
}


def _build(arguments):
    arguments = dict(arguments)
    keras.utils.set_random_seed(0)
    return create_model(arguments.pop("name"), **arguments)


def _images(height=32, width=32, channels=3, batch=2):
    return np.random.default_rng(1).uniform(0, 255, (batch, height, width, channels)).astype("float32")


def _save(model, directory, arguments, **kwargs):
    return presets.save_to_preset(model, directory, dict(METADATA, model=arguments), **kwargs)


def _no_leftovers(root):
    """No files anywhere under root: nothing half-written survived."""
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    root = tmp_path / "kerazoo_home"
    monkeypatch.setenv("KERAZOO_HOME", str(root))
    monkeypatch.delenv("KERAZOO_OFFLINE", raising=False)
    return root


@pytest.fixture
def no_network(monkeypatch):
    """Any network use (sockets, urllib, Keras' encoder download) raises."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(keras.utils, "get_file", refuse)


@pytest.fixture(scope="module")
def segnet(tmp_path_factory):
    """(model, preset directory, archive path, archive sha256) of a tiny SegNet-Basic."""
    root = tmp_path_factory.mktemp("segnet")
    model = _build(SEGNET_ARGS)
    directory = _save(model, root / "tiny_segnet", SEGNET_ARGS)
    archive = root / "tiny_segnet.tar.gz"
    return model, directory, archive, presets.archive_preset(directory, archive)


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    model = _build(UNET_ARGS)
    return model, _save(model, tmp_path_factory.mktemp("unet") / "tiny_unet", UNET_ARGS)


# --- saving and loading ----------------------------------------------------------------------------


def test_round_trip_is_exact_and_metadata_complete(segnet):
    model, directory, _, _ = segnet
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "metadata.json", "model.weights.h5"]
    metadata = presets.preset_metadata(directory)
    assert metadata["format_version"] == 2
    assert {key: metadata["model"][key] for key in SEGNET_ARGS} == SEGNET_ARGS
    assert metadata["class_names"] == ["background", "circle", "square", "triangle"]
    # Version 2 keeps the model's facts in config.json (the ZooModel config), not in metadata.json.
    config = json.loads((directory / "config.json").read_text())
    assert config["class_name"] == "ZooModel"
    assert config["config"]["input_size"] == [32, 32] and config["config"]["filters"] == 8
    assert config["config"]["class_names"] == metadata["class_names"]
    assert not {"model", "class_names", "input_size"} & set(json.loads((directory / "metadata.json").read_text()))
    assert len(metadata["class_colors"]) == 4
    assert metadata["parameter_count"] == model.count_params()
    assert metadata["weights_sha256"] == sha256_file(directory / "model.weights.h5")
    assert metadata["evaluation"]["command"].startswith("kerazoo evaluate")
    loaded = presets.from_preset(directory)
    assert loaded.class_names == ("background", "circle", "square", "triangle") and loaded.input_size == (32, 32)
    images = _images()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(images)),
                                  keras.ops.convert_to_numpy(model(images)))


def test_save_refuses_bad_metadata_and_leaves_nothing(segnet, tmp_path):
    model = segnet[0]
    plain = keras.Model(model.input, model.output)  # a Keras model that does not carry its arguments
    with pytest.raises(ValueError, match=r'plain Keras model needs metadata\["model"\]'):
        presets.save_to_preset(plain, tmp_path / "a", {"dataset": "shapes"})
    with pytest.raises(ValueError, match="command that measured"):
        presets.save_to_preset(model, tmp_path / "b", {"model": SEGNET_ARGS, "metrics": {"mean_iou": 0.5}})
    with pytest.raises(ValueError, match="does not rebuild"):
        presets.save_to_preset(plain, tmp_path / "c", {"model": dict(SEGNET_ARGS, filters=16)})
    with pytest.raises(ValueError, match="outputs 4 channels"):
        presets.save_to_preset(plain, tmp_path / "d", {"model": dict(SEGNET_ARGS, num_classes=5)})
    with pytest.raises(ValueError, match="disagrees.*filters"):
        presets.save_to_preset(model, tmp_path / "e", {"model": dict(SEGNET_ARGS, filters=16)})
    with pytest.raises(ValueError, match="class_names"):
        presets.save_to_preset(model, tmp_path / "f", {"class_names": ["a", "b"]})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileExistsError):
        presets.save_to_preset(model, segnet[1], {"model": SEGNET_ARGS})


def test_overwrite_replaces_the_preset(segnet, tmp_path):
    directory = shutil.copytree(segnet[1], tmp_path / "p")
    other = _build(dict(SEGNET_ARGS, num_classes=2))
    _save(other, directory, dict(SEGNET_ARGS, num_classes=2), overwrite=True)
    assert presets.preset_metadata(directory)["model"]["num_classes"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_float16_storage_is_smaller_and_loads_as_float32(segnet, tmp_path):
    model = segnet[0]
    directory = _save(model, tmp_path / "half", SEGNET_ARGS, weights_dtype="float16")
    assert presets.preset_metadata(directory)["weights_dtype"] == "float16"
    assert (directory / "model.weights.h5").stat().st_size < (segnet[1] / "model.weights.h5").stat().st_size
    loaded = presets.from_preset(directory)
    assert {w.dtype for w in loaded.weights if "float" in str(w.dtype)} == {"float32"}
    images = _images()
    reference = keras.ops.convert_to_numpy(model(images))
    difference = np.max(np.abs(keras.ops.convert_to_numpy(loaded(images)) - reference))
    # float16 keeps ~3 significant digits; logits of this size move by far less than their spread.
    assert 0 < difference < 1e-2 * np.max(np.abs(reference))


def _write_version1_preset(model, directory, arguments):
    """A preset as kerazoo wrote them before format version 2: a functional graph in config.json, and
    create_model's arguments, class names and input size in metadata.json."""
    directory.mkdir()
    functional = keras.Model(model.input, model.output, name="legacy")
    functional.save_weights(directory / "model.weights.h5")
    (directory / "config.json").write_text(json.dumps(keras.saving.serialize_keras_object(functional)))
    metadata = dict(METADATA, model=arguments, format_version=1, class_names=["bg", "circle", "square", "triangle"],
                    class_colors=[[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], input_size=[24, 40],
                    weights_sha256=sha256_file(directory / "model.weights.h5"))
    (directory / "metadata.json").write_text(json.dumps(metadata))
    return directory


def test_version1_preset_loads_as_a_zoo_model_with_its_metadata(segnet, tmp_path, caplog):
    model = segnet[0]
    directory = _write_version1_preset(model, tmp_path / "v1", SEGNET_ARGS)
    assert json.loads((directory / "config.json").read_text())["class_name"] == "Functional"
    loaded = presets.from_preset(directory)
    assert isinstance(loaded, ZooModel)
    assert loaded.class_names == ("bg", "circle", "square", "triangle")
    assert loaded.class_colors[1] == (255, 0, 0) and loaded.input_size == (24, 40)
    assert loaded.get_config()["filters"] == 8 and loaded.num_classes == 4
    images = _images()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(images)), keras.ops.convert_to_numpy(model(images)))
    # Saved again, it is a version 2 preset with the same weights and facts.
    upgraded = presets.save_to_preset(loaded, tmp_path / "v2", {"dataset": "shapes"})
    assert presets.preset_metadata(upgraded)["format_version"] == 2
    reloaded = presets.from_preset(upgraded)
    assert reloaded.class_names == loaded.class_names and reloaded.input_size == (24, 40)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(reloaded(images)),
                                  keras.ops.convert_to_numpy(model(images)))
    with caplog.at_level(logging.WARNING, logger="kerazoo.zoo"):
        more = presets.from_preset(directory, num_classes=6)
    assert more.num_classes == 6 and more.class_names is None and more.input_size == (24, 40)
    assert "head_conv" in caplog.text


# --- changing num_classes keeps everything but the head ---------------------------------------------


def test_unet_new_num_classes_reinitialises_only_head_conv(unet, no_network, caplog):
    model, directory = unet
    with caplog.at_level(logging.WARNING, logger="kerazoo.zoo"):
        loaded = presets.from_preset(directory, num_classes=5)
    assert loaded.output.shape[-1] == 5
    assert "head_conv" in caplog.text and "freshly initialised" in caplog.text
    changed = [o.path for o, n in zip(model.weights, loaded.weights) if tuple(o.shape) != tuple(n.shape)]
    assert changed == ["head_conv/kernel", "head_conv/bias"]
    for old, new in zip(model.weights, loaded.weights):
        if not old.path.startswith("head_conv"):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(old), keras.ops.convert_to_numpy(new))


def test_fcn_new_num_classes_reinitialises_score_and_upscore_layers(tmp_path, no_network, caplog):
    model = _build(FCN_ARGS)
    directory = _save(model, tmp_path / "fcn", FCN_ARGS)
    with caplog.at_level(logging.WARNING, logger="kerazoo.zoo"):
        loaded = presets.from_preset(directory, num_classes=2)
    message = caplog.records[-1].getMessage()
    named = set(message.rsplit(": ", 1)[-1].split(", "))
    assert named == {"score_fr", "upscore2", "score_pool4", "upscore_pool4", "score_pool3", "upscore8"}
    images = _images(40, 48)
    assert loaded(images).shape == (2, 40, 48, 2)
    encoder = "mobilenetv2_encoder"
    for old, new in zip(model.get_layer(encoder).weights, loaded.get_layer(encoder).weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(old), keras.ops.convert_to_numpy(new))


def test_same_num_classes_or_softmax_override_keeps_all_weights(segnet, caplog):
    model, directory, _, _ = segnet
    with caplog.at_level(logging.INFO, logger="kerazoo.zoo"):
        same = presets.from_preset(directory, num_classes=4)
        probabilities = presets.from_preset(directory, activation="softmax")
    assert "freshly initialised" not in caplog.text
    images = _images()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(same(images)), keras.ops.convert_to_numpy(model(images)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(probabilities(images)),
                               keras.ops.convert_to_numpy(keras.ops.softmax(model(images))), atol=1e-6)


# --- verification and safety ------------------------------------------------------------------------


def _copy(segnet, tmp_path):
    return shutil.copytree(segnet[1], tmp_path / "copy")


def test_corrupt_weights_are_refused(segnet, tmp_path):
    directory = _copy(segnet, tmp_path)
    data = bytearray((directory / "model.weights.h5").read_bytes())
    data[-100] ^= 0xFF
    (directory / "model.weights.h5").write_bytes(bytes(data))
    with pytest.raises(PresetError, match="sha256"):
        presets.from_preset(directory)


def test_unknown_layer_in_config_fails_clearly(segnet, tmp_path):
    directory = _copy(segnet, tmp_path)
    config = (directory / "config.json").read_text().replace("ZooModel", "EvilModel")
    (directory / "config.json").write_text(config)
    with pytest.raises(PresetError, match="not a kerazoo ZooModel"):
        presets.from_preset(directory)
    legacy = _write_version1_preset(segnet[0], tmp_path / "v1", SEGNET_ARGS)
    config = (legacy / "config.json").read_text().replace("MaxUnpooling2D", "EvilUnpooling2D")
    (legacy / "config.json").write_text(config)
    with pytest.raises(PresetError, match="EvilUnpooling2D"):
        presets.from_preset(legacy)


def test_unknown_model_in_metadata_fails_clearly(segnet, tmp_path):
    directory = _copy(segnet, tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["config"]["name"] = "segnet_basik"
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(PresetError, match="unknown model.*segnet_basic"):
        presets.from_preset(directory)


def _lambda_model():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))


def test_config_with_code_is_refused_by_safe_mode(segnet, tmp_path):
    directory = _copy(segnet, tmp_path)
    lambda_config = json.dumps(keras.saving.serialize_keras_object(_lambda_model()))
    (directory / "config.json").write_text(lambda_config)
    with pytest.raises(PresetError, match="not a kerazoo ZooModel"):  # version 2 reads nothing else
        presets.from_preset(directory)
    legacy = _write_version1_preset(segnet[0], tmp_path / "v1", SEGNET_ARGS)
    (legacy / "config.json").write_text(lambda_config)
    with pytest.raises(PresetError, match="safe"):
        presets.from_preset(legacy)
    path = tmp_path / "lambda.keras"
    _lambda_model().save(path)
    with pytest.raises(ValueError, match="safe"):
        presets.from_preset(path)


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = 4
                tar.addfile(info, io.BytesIO(b"evil"))
    return path


@pytest.mark.parametrize("members", [
    [("preset/metadata.json", "file"), ("../evil.txt", "file")],
    [("/tmp/kerazoo_evil.txt", "file")],
    [("preset/link", "symlink")],
    [("preset/../../evil.txt", "file")],
])
def test_malicious_tar_is_rejected_and_nothing_escapes(tmp_path, members, home):
    archive = _tar(tmp_path / "evil.tar.gz", members)
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(UnsafeArchiveError, match="refusing|regular files"):
        extract_archive(archive, target)
    assert list(target.iterdir()) == [] and not (tmp_path / "evil.txt").exists()
    with pytest.raises(UnsafeArchiveError):
        presets.from_preset(archive)
    assert _no_leftovers(home) == []


def test_malicious_zip_is_rejected(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zip_file:
        zip_file.writestr("preset/metadata.json", "{}")
        zip_file.writestr("../../evil.txt", "evil")
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(UnsafeArchiveError, match="outside"):
        extract_archive(archive, target)
    assert list(target.iterdir()) == []


# --- names, local archives, the cache and offline mode ----------------------------------------------


def test_local_archive_and_file_uri_install_into_cache(segnet, home, no_network):
    model, _, archive, digest = segnet
    loaded = presets.from_preset(archive.as_uri() + "", sha256=digest)
    assert len(list((home / "presets").iterdir())) == 1
    images = _images()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(images)), keras.ops.convert_to_numpy(model(images)))
    with pytest.raises(PresetError, match="expected 0000"):
        presets.from_preset(archive, sha256="0" * 64)


def test_unknown_name_suggests_close_matches(segnet):
    presets.register_preset(Preset("tiny_segnet", uri=segnet[2].as_uri(), sha256=segnet[3]))
    try:
        with pytest.raises(PresetError, match="Did you mean 'tiny_segnet'"):
            presets.from_preset("tiny_segnt")
    finally:
        presets.unregister_preset("tiny_segnet")


def test_offline_miss_says_how_to_fill_the_cache(no_network):
    with pytest.raises(PresetNotCachedError, match="kerazoo fetch"):
        presets.from_preset("https://example.org/zoo/unet.tar.gz", offline=True)


def test_plain_http_is_refused_off_loopback(no_network):
    with pytest.raises(ValueError, match="only https"):
        presets.from_preset("http://example.org/zoo/unet.tar.gz")


def test_hf_without_huggingface_hub_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r"kerazoo\[hub\]"):
        presets.from_preset("hf://owner/repo")


def test_hf_uses_snapshot_download_and_is_offline_aware(segnet, monkeypatch, home):
    calls = []

    def snapshot_download(repo_id, revision, cache_dir, local_files_only, allow_patterns):
        calls.append((repo_id, revision, local_files_only, allow_patterns))
        snapshot = home / "hf" / "snapshot"
        if not snapshot.exists():
            shutil.copytree(segnet[1], snapshot / "tiny")
        return str(snapshot)

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=snapshot_download))
    presets.from_preset("hf://owner/zoo@v1/tiny")
    monkeypatch.setenv("KERAZOO_OFFLINE", "1")
    presets.from_preset("hf://owner/zoo@v1/tiny")
    tiny = [f"tiny/{name}" for name in presets.PRESET_FILES]
    assert calls == [("owner/zoo", "v1", False, tiny), ("owner/zoo", "v1", True, tiny)]


# --- https downloads against a local server with faults ---------------------------------------------


class _Server:
    """A threaded HTTP server on 127.0.0.1 whose paths answer with scripted behaviours."""

    def __init__(self, body):
        self.body, self.scripts, self.hits, self.release = body, {}, {}, threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                script = server.scripts.get(self.path, ["404"])
                behaviour = script.pop(0) if len(script) > 1 else script[0]
                if behaviour in ("404", "500"):
                    self.send_error(int(behaviour))
                    return
                body = server.body
                if behaviour == "corrupt":
                    body = body[:-1] + bytes([body[-1] ^ 1])
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if behaviour == "truncate":
                    self.wfile.write(body[: len(body) // 2])
                elif behaviour == "stall":
                    self.wfile.write(body[:10])
                    self.wfile.flush()
                    server.release.wait(5)
                else:
                    self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # broken pipes after client timeouts
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path, *script):
        self.scripts[path] = list(script)
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server(segnet):
    server = _Server(segnet[2].read_bytes())
    yield server
    server.close()


FAST = {"backoff": 0.01, "timeout": 2.0, "progress": False}


def test_https_download_is_cached_then_works_offline(segnet, server, home, monkeypatch):
    url = server.url("/ok/tiny_segnet.tar.gz", "ok")
    directory = presets.fetch(f"{url}#sha256={segnet[3]}", **FAST)
    assert directory.is_relative_to(home / "presets")
    presets.from_preset(url, **FAST)  # cached: no second request
    assert server.hits["/ok/tiny_segnet.tar.gz"] == 1
    with pytest.raises(ChecksumError):  # another pin is not served from the cache, and a bad download
        presets.from_preset(f"{url}#sha256={'f' * 64}", **FAST)  # does not disturb the cached copy
    assert server.hits["/ok/tiny_segnet.tar.gz"] == 2
    monkeypatch.setenv("KERAZOO_OFFLINE", "1")
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network in offline mode"))
    images = _images()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(presets.from_preset(url)(images)),
                                  keras.ops.convert_to_numpy(segnet[0](images)))


def test_registered_preset_fetch_then_offline(segnet, server, home, monkeypatch):
    url = server.url("/registered/tiny_segnet.tar.gz", "ok")
    presets.register_preset(Preset("tiny_segnet", uri=url, sha256=segnet[3], dataset="shapes",
                                   metrics={"mean_iou": 0.5}, evaluation_command="kerazoo evaluate ..."))
    try:
        listed = {preset.name: preset for preset in presets.list_presets()}
        assert listed["tiny_segnet"].metrics == {"mean_iou": 0.5}
        presets.fetch("tiny_segnet", **FAST)
        monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network in offline mode"))
        assert presets.from_preset("tiny_segnet", offline=True).output.shape[-1] == 4
    finally:
        presets.unregister_preset("tiny_segnet")


@pytest.mark.parametrize("script, options, error, message, hits", [
    (["truncate"], {"retries": 0}, DownloadError, "truncated transfer: got", 1),
    (["corrupt"], {"retries": 2}, ChecksumError, "has sha256", 1),
    (["404"], {"retries": 2}, DownloadError, "HTTP 404", 1),
    (["500"], {"retries": 2}, DownloadError, "after 3 attempt.*HTTP 500", 3),
    (["stall"], {"retries": 1, "timeout": 0.3}, DownloadError, "after 2 attempt.*timed out", 2),
])
def test_download_faults_leave_nothing_and_say_why(segnet, server, home, script, options, error, message, hits):
    path = f"/fault-{script[0]}/tiny_segnet.tar.gz"
    url = server.url(path, *script)
    with pytest.raises(error, match=message) as raised:
        presets.fetch(url, sha256=segnet[3], **dict(FAST, **options))
    assert url in str(raised.value) and "Nothing was written" in str(raised.value)
    assert server.hits[path] == hits
    assert _no_leftovers(home) == []


def test_interrupted_transfer_then_successful_retry(segnet, server):
    url = server.url("/flaky/tiny_segnet.tar.gz", "truncate", "ok")
    directory = presets.fetch(url, sha256=segnet[3], retries=2, **FAST)
    assert server.hits["/flaky/tiny_segnet.tar.gz"] == 2
    assert presets.preset_metadata(directory)["model"]["filters"] == SEGNET_ARGS["filters"]
