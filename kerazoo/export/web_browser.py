"""Runs an exported web folder in a real browser: the page served on 127.0.0.1, driven by Playwright.

Needs `pip install 'kerazoo[web]'` (Playwright's Python client) and a Chromium: Debian's `chromium`
package (`/usr/bin/chromium`), or the executable named by `$KERAZOO_CHROMIUM`; Playwright's own browser
downloads are not used. The tests and `docs/images/web_demo.png` come from here.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import http.server
import os
import shutil
import sys
import threading
from pathlib import Path

import numpy as np

CHROMIUM_VAR = "KERAZOO_CHROMIUM"
_DTYPES = {"Float32Array": "float32", "Uint8Array": "uint8", "Int32Array": "int32", "BigInt64Array": "int64"}


def chromium_path():
    """The Chromium executable: `$KERAZOO_CHROMIUM` (None when that is not an executable file), else
    `chromium` on the PATH, else None."""
    configured = os.environ.get(CHROMIUM_VAR)
    if configured:
        return configured if os.path.isfile(configured) and os.access(configured, os.X_OK) else None
    return shutil.which("chromium")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    # Module scripts and streamed WebAssembly need these types, whatever the system's mime.types says.
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
                      ".onnx": "application/octet-stream", ".css": "text/css", ".html": "text/html"}

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A browser that drops a connection it no longer needs is not an error worth a traceback.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serve(folder):
    """Serves `folder` over http on 127.0.0.1 (a free port) while the block runs; yields the base URL."""
    if not Path(folder, "index.html").is_file():
        raise FileNotFoundError(f"{folder} has no index.html: not a web export folder")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclasses.dataclass
class PageRun:
    """One image run by the page.

    Attributes:
        inputs: the tensor the page fed the model, (1, H, W, C).
        outputs: the model's raw output in the browser, (1, H', W', K) scores or (1, H', W') classes.
        millis: the page's own timing of `session.run`.
        status: the page's status line after the run.
        caption: the output view's caption.
        legend: the legend's text (segmentation: the classes shown, with their share of the pixels).
    """

    inputs: np.ndarray
    outputs: np.ndarray
    millis: float
    status: str
    caption: str = ""
    legend: str = ""


@dataclasses.dataclass
class BrowserSession:
    """What `run_in_browser` saw: one `PageRun` per image, every URL the page requested, the errors it
    logged, and the base URL it was served from."""

    runs: list
    requests: list
    errors: list
    base_url: str


def _array(page, expression, dims):
    kind, data = page.evaluate(
        f"() => {{ const a = {expression}; return [a.constructor.name, window.kerazoo.toBase64(a)]; }}")
    return np.frombuffer(base64.b64decode(data), dtype=_DTYPES[kind]).reshape(dims)


def run_in_browser(folder, images, *, screenshot=None, chromium=None, timeout_s=300.0, viewport=(1280, 800)):
    """Opens the page of a web export folder in headless Chromium and runs it on each image file.

    Args:
        folder: a folder written by the "web" export format.
        images: image file paths, fed one after another through the page's file input.
        screenshot: a .png path for a full-page screenshot after the last run, or None.
        chromium: the Chromium executable; default `chromium_path()`.
        timeout_s: seconds the page may take to load the model, and each run.
        viewport: the browser window's (width, height).

    Returns:
        A `BrowserSession`.

    Raises:
        RuntimeError: the page reported an error (loading the model or running it), or no Chromium.
        ImportError: Playwright is not installed (`pip install 'kerazoo[web]'`).
    """
    from playwright.sync_api import sync_playwright

    chromium = chromium or chromium_path()
    if not chromium:
        raise RuntimeError(f"no Chromium found: install Debian's chromium package or set {CHROMIUM_VAR}")
    timeout_ms = timeout_s * 1000
    requests, errors, runs = [], [], []
    with serve(folder) as base_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.on("request", lambda request: requests.append(request.url))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(base_url + "index.html")
            # Selectors, not wait_for_function: the page's Content-Security-Policy forbids eval.
            page.wait_for_selector("body[data-status=ready], body[data-status=error]", state="attached",
                                   timeout=timeout_ms)
            _check_page(page, "loading the model")
            for count, image in enumerate(images, start=1):
                page.set_input_files("#image-input", str(image))
                page.wait_for_selector(f"body[data-runs='{count}']", state="attached", timeout=timeout_ms)
                _check_page(page, f"running {image}")
                result = page.evaluate("() => ({inputDims: window.kerazoo.result.inputDims, outputDims: "
                                       "window.kerazoo.result.outputDims, millis: window.kerazoo.result.millis})")
                runs.append(PageRun(inputs=_array(page, "window.kerazoo.result.input", result["inputDims"]),
                                    outputs=_array(page, "window.kerazoo.result.output", result["outputDims"]),
                                    millis=result["millis"], status=page.inner_text("#status"),
                                    caption=page.inner_text("#output-caption"), legend=page.inner_text("#legend")))
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return BrowserSession(runs=runs, requests=requests, errors=errors, base_url=base_url)


def _check_page(page, doing):
    if page.evaluate("document.body.dataset.status") == "error":
        raise RuntimeError(f"the page failed {doing}: {page.evaluate('window.kerazoo.error')}")
