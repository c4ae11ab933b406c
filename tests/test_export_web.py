"""The "web" export format: onnxruntime-web's download and cache (against a local server on 127.0.0.1,
never the registry), the folder the writer leaves, and the page run in headless Chromium.

The browser tests need Playwright (`pip install 'kerazoo[web]'`), Debian's chromium and the pinned
onnxruntime-web in the cache (`kerazoo fetch onnxruntime-web`); they skip naming what is missing, or fail
with `KERAZOO_REQUIRE_BROWSER=1` (CI). They run offline (`KERAZOO_OFFLINE=1`) on the cache they find.
"""

import hashlib
import http.server
import importlib.util
import io
import json
import os
import re
import tarfile
import threading
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import kerazoo
from kerazoo import cli
from kerazoo.export import FORMATS, WRITERS, ExportError, export, web, web_runtime
from kerazoo.export.web_browser import chromium_path, run_in_browser
from kerazoo.export.web_runtime import WebRuntime, WebRuntimeError, fetch_web_runtime
from kerazoo.metrics import psnr
from kerazoo.utils.download import ChecksumError

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

REQUIRE_BROWSER_VAR = "KERAZOO_REQUIRE_BROWSER"
# The cache the browser tests read the real onnxruntime-web from (other tests point KERAZOO_HOME elsewhere).
REAL_HOME = os.environ.get("KERAZOO_HOME")
FAST = {"backoff": 0.01, "timeout": 5.0, "progress": False}
PAGE_FILES = {"index.html", "kerazoo_web.js", "kerazoo_web.css"}
CLASSES = ["sky", "road", "car"]
COLORS = [[128, 128, 128], [128, 64, 128], [64, 0, 128]]


def _tarball(members):
    """An npm-style .tgz: each {path under package/: bytes}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


MEMBERS = {
    "dist/ort.wasm.bundle.min.mjs": b"export const fake = 1;\n",
    "dist/ort-wasm-simd-threaded.wasm": b"\0asm" + bytes(range(256)) * 8,
    "dist/ort.min.js": b"// another build, not copied\n",
    "package.json": b'{"name": "onnxruntime-web", "version": "0.0.1-test", "license": "MIT"}\n',
}
TARBALL = _tarball(MEMBERS)
FAKE = WebRuntime(version="0.0.1-test", sha256=hashlib.sha256(TARBALL).hexdigest())


class _Registry:
    """A threaded HTTP server on 127.0.0.1 answering tarball paths with scripted bodies; counts requests."""

    def __init__(self):
        self.bodies, self.hits = {}, []
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                registry.hits.append(self.path)
                body = registry.bodies.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def publish(self, runtime, body):
        self.bodies[f"/{runtime.package}/-/{runtime.package}-{runtime.version}.tgz"] = body

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def registry():
    server = _Registry()
    server.publish(FAKE, TARBALL)
    yield server
    server.close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    root = tmp_path / "kerazoo_home"
    monkeypatch.setenv("KERAZOO_HOME", str(root))
    monkeypatch.delenv("KERAZOO_OFFLINE", raising=False)
    monkeypatch.delenv(web_runtime.REGISTRY_VAR, raising=False)
    return root


def _files(root):
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()) if root.exists() else []


# --- onnxruntime-web: download, sha256, cache, offline ---------------------------------------------------


def test_runtime_is_downloaded_once_checked_and_cached_flat(home, registry):
    folder = fetch_web_runtime(FAKE, registry=registry.url, **FAST)
    assert folder == home / "web" / FAKE.key
    for member in FAKE.files:  # each page file under its base name, byte for byte; nothing else
        assert (folder / Path(member).name).read_bytes() == MEMBERS[member]
    assert not (folder / "ort.min.js").exists()
    source = json.loads((folder / web_runtime.SOURCE_FILE).read_text())
    assert source["tarball_sha256"] == FAKE.sha256 and source["url"].startswith(registry.url)
    assert len(registry.hits) == 1
    assert fetch_web_runtime(FAKE, registry=registry.url, **FAST) == folder
    assert fetch_web_runtime(FAKE, offline=True) == folder
    assert len(registry.hits) == 1  # the cache answered
    assert not [path for path in (home / "web").iterdir() if path.name.startswith(".")]  # no scratch left


def test_wrong_sha256_caches_nothing(home, registry):
    registry.publish(FAKE, _tarball({**MEMBERS, "package.json": b"{}"}))  # other bytes than the pin
    with pytest.raises(ChecksumError, match=FAKE.sha256):
        fetch_web_runtime(FAKE, registry=registry.url, **FAST)
    assert _files(home) == []


def test_offline_miss_says_how_to_fill_the_cache_and_touches_no_network(home, registry, monkeypatch):
    monkeypatch.setenv("KERAZOO_OFFLINE", "1")
    with pytest.raises(WebRuntimeError, match=r"Offline .*kerazoo fetch onnxruntime-web"):
        fetch_web_runtime(FAKE, registry=registry.url, **FAST)
    assert registry.hits == [] and _files(home) == []


def test_a_tarball_without_a_page_file_is_refused_and_nothing_cached(home, registry):
    runtime = WebRuntime(version=FAKE.version, sha256=FAKE.sha256, files=FAKE.files + ("dist/ort-missing.mjs",))
    with pytest.raises(WebRuntimeError, match=r"no package/dist/ort-missing\.mjs"):
        fetch_web_runtime(runtime, registry=registry.url, **FAST)
    assert _files(home) == []


def test_a_changed_cached_file_is_downloaded_again(home, registry):
    folder = fetch_web_runtime(FAKE, registry=registry.url, **FAST)
    wasm = folder / "ort-wasm-simd-threaded.wasm"
    wasm.write_bytes(b"damaged")
    with pytest.raises(WebRuntimeError, match="Offline"):
        fetch_web_runtime(FAKE, offline=True)
    assert fetch_web_runtime(FAKE, registry=registry.url, **FAST) == folder
    assert wasm.read_bytes() == MEMBERS["dist/ort-wasm-simd-threaded.wasm"] and len(registry.hits) == 2


def test_the_registry_variable_names_a_mirror_and_plain_http_elsewhere_is_refused(home, registry, monkeypatch):
    monkeypatch.setenv(web_runtime.REGISTRY_VAR, registry.url + "/")
    assert FAKE.tarball_url() == f"{registry.url}/onnxruntime-web/-/onnxruntime-web-0.0.1-test.tgz"
    assert fetch_web_runtime(FAKE, **FAST).is_dir() and len(registry.hits) == 1
    with pytest.raises(ValueError, match="only https"):
        fetch_web_runtime(FAKE, registry="http://registry.example", force=True, **FAST)


def test_kerazoo_fetch_onnxruntime_web_fills_the_cache(home, registry, monkeypatch, capsys):
    monkeypatch.setattr(web_runtime, "ONNXRUNTIME_WEB", FAKE)
    monkeypatch.setenv(web_runtime.REGISTRY_VAR, registry.url)
    assert cli.main(["fetch", "onnxruntime-web"]) == 0
    assert capsys.readouterr().out.strip() == str(home / "web" / FAKE.key)
    assert (home / "web" / FAKE.key / "ort-wasm-simd-threaded.wasm").is_file()


def test_the_page_imports_the_runtime_files_that_are_copied():
    """The page's import and the pinned runtime's files must agree, or the page loads nothing."""
    script = (web.PAGE_DIR / "kerazoo_web.js").read_text()
    imported = re.findall(r'^import .* from "\./([^"]+)";', script, flags=re.M)
    assert imported == [f"{web.RUNTIME_DIR}/{web_runtime.ONNXRUNTIME_WEB.names[0]}"]
    assert any(name.endswith(".wasm") for name in web_runtime.ONNXRUNTIME_WEB.names)
    html = (web.PAGE_DIR / "index.html").read_text()
    assert not re.search(r"""(src|href)=["']https?:""", html)  # nothing from another origin
    assert set(re.findall(r'(?:src|href)="([\w.]+)"', html)) == PAGE_FILES - {"index.html"}


# --- the writer ----------------------------------------------------------------------------------------


def small_segmenter(**arguments):
    keras.utils.set_random_seed(0)
    return kerazoo.create_model("segnet_basic", num_classes=3, filters=8, depth=2, class_names=CLASSES,
                                class_colors=COLORS, **arguments)


def images(count, height, width, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(count, height, width, channels)).astype("float32")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny segmenter exported to ONNX and web in one call, against a fake onnxruntime-web on 127.0.0.1."""
    server = _Registry()
    server.publish(FAKE, TARBALL)
    root = tmp_path_factory.mktemp("web")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(web_runtime, "ONNXRUNTIME_WEB", FAKE)
        patch.setenv("KERAZOO_HOME", str(root / "home"))
        patch.setenv(web_runtime.REGISTRY_VAR, server.url)
        patch.delenv("KERAZOO_OFFLINE", raising=False)

        def no_second_conversion(*args, **kwargs):
            raise AssertionError("the web writer converted again instead of reusing the ONNX file")

        patch.setattr(web, "write_onnx", no_second_conversion)
        model = small_segmenter()
        report = export(model, str(root / "out"), formats=["onnx", "web"], sample_inputs=images(1, 32, 48),
                        latency_runs=0, verbose=False)
    server.close()
    return model, report, root


def test_web_is_an_optional_format_after_onnx():
    assert "web" in WRITERS and "web" not in FORMATS
    assert list(WRITERS).index("web") > list(WRITERS).index("onnx")  # so it can reuse the ONNX file


def test_the_web_folder_holds_the_page_the_runtime_the_checked_onnx_file_and_its_metadata(exported):
    model, report, root = exported
    assert report.ok, report.failures()
    folder = Path(report.get("web").path)
    assert folder == root / "out" / f"{model.name}_web"
    runtime_names = [f"ort/{name}" for name in FAKE.names]
    assert _files(folder) == sorted([*PAGE_FILES, "model.onnx", "model.json", *runtime_names])
    assert not [path for path in (root / "out").iterdir() if path.name.startswith(".")]  # no staging left
    for name in PAGE_FILES:
        assert (folder / name).read_bytes() == (web.PAGE_DIR / name).read_bytes()
    for member in FAKE.files:
        assert (folder / "ort" / Path(member).name).read_bytes() == MEMBERS[member]
    # The same file as <name>.onnx, with that file's parity figures (write_onnx was not called again).
    onnx_file = report.get("onnx")
    assert (folder / "model.onnx").read_bytes() == Path(onnx_file.path).read_bytes()
    assert report.get("web").max_abs_diff == onnx_file.max_abs_diff and report.get("web").passed
    # It runs in onnxruntime at another size than the samples' and gives the Keras model's scores.
    other = images(2, 40, 24, seed=3)
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    scores = session.run(None, {"image": other})[0]
    keras_scores = np.asarray(model(other))
    assert np.mean(scores.argmax(-1) == keras_scores.argmax(-1)) >= 0.999
    metadata = json.loads((folder / "model.json").read_text())
    assert metadata["task"] == "segmentation" and metadata["scale"] == 1 and metadata["activation"] is None
    assert metadata["class_names"] == CLASSES and metadata["class_colors"] == COLORS
    assert metadata["input"]["name"] == "image" and metadata["input"]["shape"] == [None, None, None, 3]
    assert metadata["output"]["name"] == "scores" and metadata["model_file"] == "model.onnx"
    assert metadata["preprocessing"] == model.preprocessing
    assert metadata["runtime"] == {"package": "onnxruntime-web", "version": FAKE.version, "backend": "wasm",
                                   "files": runtime_names}


def test_restoration_metadata_names_the_task_and_scale(tmp_path, registry, home, monkeypatch):
    monkeypatch.setattr(web_runtime, "ONNXRUNTIME_WEB", FAKE)
    monkeypatch.setenv(web_runtime.REGISTRY_VAR, registry.url)
    keras.utils.set_random_seed(0)
    model = kerazoo.create_model("segnet_basic", filters=4, depth=2, task="super_resolution", scale=2)
    low = images(1, 16, 16)
    report = export(model, str(tmp_path), formats="web", sample_inputs=low, latency_runs=0, verbose=False)
    exported_web = report.get("web")
    assert exported_web.ok and exported_web.passed
    assert not (tmp_path / f"{model.name}.onnx").exists()  # web alone: the ONNX file lives in the folder only
    metadata = json.loads(Path(exported_web.path, "model.json").read_text())
    assert (metadata["task"], metadata["scale"], metadata["class_names"]) == ("super_resolution", 2, None)
    assert _files(Path(exported_web.path)) == sorted([*PAGE_FILES, "model.onnx", "model.json",
                                                      *[f"ort/{name}" for name in FAKE.names]])


def test_offline_without_the_runtime_fails_before_anything_is_written(tmp_path, home, monkeypatch):
    monkeypatch.setattr(web_runtime, "ONNXRUNTIME_WEB", FAKE)
    monkeypatch.setenv("KERAZOO_OFFLINE", "1")
    with pytest.raises(ExportError, match=r"onnxruntime-web 0\.0\.1-test: Offline .*kerazoo fetch onnxruntime-web"):
        export(small_segmenter(), str(tmp_path / "out"), formats=["onnx", "web"], sample_inputs=images(1, 16, 16),
               latency_runs=0, verbose=False)
    assert _files(tmp_path / "out") == []


def test_weights_too_large_for_a_browser_are_refused_naming_the_size(monkeypatch):
    monkeypatch.setattr(web, "EXTERNAL_DATA_MIN_BYTES", 1000)
    with pytest.raises(ExportError, match=r"web export of 'segnet_basic' \(.* of weights\) needs one ONNX file"):
        web.check_web(small_segmenter(), "segnet_basic")


# --- in a real browser ---------------------------------------------------------------------------------


@pytest.fixture
def browser(monkeypatch):
    """Skips (or, with KERAZOO_REQUIRE_BROWSER=1, fails) unless Playwright, Chromium and the pinned
    onnxruntime-web in the cache are all here; then runs offline on that cache."""
    if REAL_HOME:
        monkeypatch.setenv("KERAZOO_HOME", REAL_HOME)
    else:
        monkeypatch.delenv("KERAZOO_HOME", raising=False)
    monkeypatch.setenv("KERAZOO_OFFLINE", "1")
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("Playwright is not installed (pip install 'kerazoo[web]')")
    if chromium_path() is None:
        missing.append("no chromium (apt-get install chromium, or set KERAZOO_CHROMIUM)")
    try:
        fetch_web_runtime()
    except WebRuntimeError:
        missing.append(f"onnxruntime-web {web_runtime.ONNXRUNTIME_WEB.version} is not cached "
                       "(kerazoo fetch onnxruntime-web)")
    if missing:
        message = "browser tests need: " + "; ".join(missing)
        if os.environ.get(REQUIRE_BROWSER_VAR, "").strip().lower() in ("1", "true", "yes", "on"):
            pytest.fail(f"{message}, and {REQUIRE_BROWSER_VAR} is set", pytrace=False)
        pytest.skip(message)


def _save_png(path, pixels):
    Image.fromarray(np.asarray(pixels, dtype=np.uint8).squeeze()).save(path)
    return path


def _in_browser(folder, image_paths, screenshot=None):
    """Runs the page; checks it loaded nothing from elsewhere and logged no error; returns its runs."""
    session = run_in_browser(folder, image_paths, screenshot=screenshot, timeout_s=240)
    assert session.errors == []
    assert session.requests and all(url.startswith(session.base_url) for url in session.requests), session.requests
    return session.runs


def _onnxruntime(folder, inputs):
    session = onnxruntime.InferenceSession(str(Path(folder, "model.onnx")))
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]


@pytest.mark.slow  # ~30 s: one export, Chromium, four runs
def test_page_segments_like_onnxruntime_and_resizes_to_the_trained_size(tmp_path, browser):
    model = small_segmenter(input_size=(24, 32))
    report = export(model, str(tmp_path), formats="web", sample_inputs=images(1, 24, 32), latency_runs=0, verbose=False)
    folder = report.get("web").path
    rng = np.random.default_rng(5)
    # At the trained size, twice it, an uneven shrink and an enlargement.
    pictures = [rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
                for height, width in ((24, 32), (48, 64), (31, 45), (10, 14))]
    runs = _in_browser(folder, [_save_png(tmp_path / f"{i}.png", p) for i, p in enumerate(pictures)])
    np.testing.assert_array_equal(runs[0].inputs[0], pictures[0])  # decoded exactly: no colour management
    for run, picture in zip(runs[1:], pictures[1:]):
        # Resized to the trained size as training and model.segment resize (bilinear, antialiased).
        resized = keras.ops.image.resize(picture[None].astype("float32"), (24, 32), interpolation="bilinear",
                                         antialias=True)
        np.testing.assert_allclose(run.inputs, np.asarray(resized), atol=1e-3)
    for run in runs:
        expected = _onnxruntime(folder, run.inputs)
        assert run.outputs.shape == expected.shape == (1, 24, 32, 3)
        assert np.max(np.abs(run.outputs - expected)) <= 1e-4 * np.ptp(expected)
        assert np.mean(run.outputs.argmax(-1) == expected.argmax(-1)) >= 0.999
        shown = {name for name in CLASSES if name in run.legend}
        assert shown == {CLASSES[k] for k in np.unique(expected.argmax(-1))}


@pytest.mark.slow  # ~40 s: two exports, Chromium twice
@pytest.mark.parametrize("task, arguments, channels, outputs", [
    ("depth", {}, 3, 1),
    ("denoise", {"in_channels": 1}, 1, 1),
])
def test_page_runs_depth_and_grey_restoration_models_like_onnxruntime(tmp_path, browser, task, arguments, channels,
                                                                      outputs):
    keras.utils.set_random_seed(0)
    model = kerazoo.create_model("segnet_basic", filters=4, depth=2, task=task, **arguments)
    report = export(model, str(tmp_path), formats="web", sample_inputs=images(1, 16, 16, channels), latency_runs=0,
                    verbose=False)
    colour = np.random.default_rng(7).integers(0, 256, size=(20, 28, 3), dtype=np.uint8)
    (run,) = _in_browser(report.get("web").path, [_save_png(tmp_path / "c.png", colour)])
    if channels == 1:  # grey as PIL converts it
        np.testing.assert_array_equal(run.inputs[0, ..., 0], np.asarray(Image.fromarray(colour).convert("L")))
    else:
        np.testing.assert_array_equal(run.inputs[0], colour)
    expected = _onnxruntime(report.get("web").path, run.inputs)
    assert run.outputs.shape == expected.shape == (1, 20, 28, outputs)
    assert np.max(np.abs(run.outputs - expected)) <= 1e-4 * max(np.ptp(expected), 1e-3)
    assert ("Depth" if task == "depth" else "Restored") in run.caption


@pytest.mark.slow  # ~1 min: the membrane preset exported, then run in Chromium at 512x512
@pytest.mark.data
def test_membrane_preset_in_the_browser_agrees_with_onnxruntime(tmp_path, browser, shared_data_dir):
    root = shared_data_dir("membrane")
    model = kerazoo.from_preset("membrane_unet_mobilenetv2")
    image = np.asarray(Image.open(root / "membrane" / "image" / "20.png").convert("L"))
    report = export(model, str(tmp_path), formats="web", sample_inputs=image[None, ..., None].astype("float32"),
                    latency_runs=0, verbose=False)
    folder = report.get("web").path
    (run,) = _in_browser(folder, [_save_png(tmp_path / "slice.png", image)])
    np.testing.assert_array_equal(run.inputs[0, ..., 0], image)  # 512x512 is the trained size: no resize
    expected = _onnxruntime(folder, run.inputs)
    agreement = float(np.mean(run.outputs.argmax(-1) == expected.argmax(-1)))
    keras_agreement = float(np.mean(run.outputs.argmax(-1)[0] == model.segment(image)))
    print(f"membrane: browser vs onnxruntime argmax agreement {agreement:.6f}, vs model.segment "
          f"{keras_agreement:.6f}, {run.millis:.0f} ms in the page")
    assert agreement >= 0.999 and keras_agreement >= 0.999
    assert "membrane" in run.legend and "cell" in run.legend


@pytest.mark.slow  # ~1.5 min: the denoising preset exported, then run in Chromium at 256x256
@pytest.mark.data
def test_denoising_preset_in_the_browser_keeps_the_psnr_of_onnxruntime(tmp_path, browser, shared_data_dir):
    root = shared_data_dir("set12")
    model = kerazoo.from_preset("set12_denoise_sigma25_unet")
    clean = np.asarray(Image.open(root / "set12" / "01.png").convert("L"), dtype=np.float32)
    noisy = np.clip(np.rint(clean + np.random.default_rng(0).normal(0, 25, clean.shape)), 0, 255)
    report = export(model, str(tmp_path), formats="web", sample_inputs=noisy[None, ..., None],
                    sample_targets=clean[None, ..., None], latency_runs=0, verbose=False)
    folder = report.get("web").path
    (run,) = _in_browser(folder, [_save_png(tmp_path / "noisy.png", noisy)])
    np.testing.assert_array_equal(run.inputs[0, ..., 0], noisy)
    expected = _onnxruntime(folder, run.inputs)
    target = clean[None, ..., None]
    page_psnr = float(np.mean(psnr(np.clip(np.rint(run.outputs), 0, 255), target)))
    onnx_psnr = float(np.mean(psnr(np.clip(np.rint(expected), 0, 255), target)))
    noisy_psnr = float(np.mean(psnr(noisy[None, ..., None], target)))
    print(f"set12 01 sigma 25: PSNR in the browser {page_psnr:.3f} dB, onnxruntime {onnx_psnr:.3f} dB, "
          f"noisy {noisy_psnr:.3f} dB, {run.millis:.0f} ms in the page")
    assert abs(page_psnr - onnx_psnr) <= 0.05
    assert page_psnr > noisy_psnr + 3  # it did denoise
