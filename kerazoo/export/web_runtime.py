"""onnxruntime-web for the browser export: one pinned release from the npm registry, verified and cached.

The page that the "web" export writes runs its ONNX file in onnxruntime-web's WebAssembly backend, from
files served beside it, so nothing is fetched from a CDN when the page loads. Those files come from the
npm tarball of one pinned version: downloaded once with `kerazoo.utils.download.download` (streamed,
length- and sha256-checked, renamed into place only when whole), unpacked with `extract_archive`
(unsafe members refused), and the few files the page loads are kept in the presets' cache,
`$KERAZOO_HOME/web/<package>-<version>-<sha256 prefix>/`, with the sha256 of each. `KERAZOO_OFFLINE=1`
(or `offline=True`) uses that cache only, as presets do. `KERAZOO_NPM_REGISTRY` names a mirror of the
registry (https, or http on the loopback interface).

Fill the cache of a machine without internet from one that has it: `kerazoo fetch onnxruntime-web`
(prints the folder), then copy `$KERAZOO_HOME`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

from kerazoo.utils.download import download, extract_archive, sha256_file
from kerazoo.utils.files import atomic_directory
from kerazoo.zoo.cache import _offline, cache_root

__all__ = ["ONNXRUNTIME_WEB", "REGISTRY_VAR", "WebRuntime", "WebRuntimeError", "fetch_web_runtime"]

REGISTRY_VAR = "KERAZOO_NPM_REGISTRY"
DEFAULT_REGISTRY = "https://registry.npmjs.org"
SOURCE_FILE = ".source.json"  # in a cached runtime: where it came from, and the sha256 of each file


class WebRuntimeError(OSError):
    """onnxruntime-web cannot be had: offline and not cached, or its tarball lacks a file the page loads."""


@dataclasses.dataclass(frozen=True)
class WebRuntime:
    """One release of an npm package whose files the page loads.

    Attributes:
        version: the npm version.
        sha256: hex sha256 of the release's npm tarball.
        files: paths inside the tarball's `package/` folder that the page needs; they are kept under
            their base names, so the page finds them side by side.
        package: the npm package name.
    """

    version: str
    sha256: str
    # The ES-module bundle of the WebAssembly build (its loader inside) and the SIMD wasm binary it
    # loads; package.json keeps the version and the MIT licence beside them.
    files: tuple = ("dist/ort.wasm.bundle.min.mjs", "dist/ort-wasm-simd-threaded.wasm", "package.json")
    package: str = "onnxruntime-web"

    def tarball_url(self, registry=None):
        """The tarball's URL on `registry` (default: `$KERAZOO_NPM_REGISTRY`, else the npm registry)."""
        registry = (registry or os.environ.get(REGISTRY_VAR) or DEFAULT_REGISTRY).rstrip("/")
        return f"{registry}/{self.package}/-/{self.package}-{self.version}.tgz"

    @property
    def key(self):
        """The cache folder's name."""
        return f"{self.package}-{self.version}-{self.sha256[:12]}"

    @property
    def names(self):
        """The files' names in the cache and in an exported folder."""
        return tuple(Path(name).name for name in self.files)


# sha256 of onnxruntime-web-1.31.1.tgz as the registry served it on 2026-12-04; its sha512 matched the
# registry's own "integrity" record.
ONNXRUNTIME_WEB = WebRuntime(version="1.31.1",
                             sha256="bdccdb9fbb9ab537247c0c734e9b1d2b1b338b4f2a09faa58f0dc1cfa27c312c")


def _cached(folder: Path, runtime: WebRuntime) -> bool:
    """Whether `folder` holds every file of `runtime`, each with the sha256 recorded when it was cached."""
    try:
        source = json.loads((folder / SOURCE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if source.get("tarball_sha256") != runtime.sha256:
        return False
    recorded = source.get("files", {})
    for name in runtime.names:
        path = folder / name
        if name not in recorded or not path.is_file() or sha256_file(path) != recorded[name]:
            return False
    return True


def fetch_web_runtime(runtime: WebRuntime | None = None, *, cache_dir=None, offline=None, registry=None,
                      force=False, timeout=30.0, retries=3, backoff=1.0, progress=None) -> Path:
    """The cache folder holding `runtime`'s files, downloading its tarball once.

    Args:
        runtime: the release; None means `ONNXRUNTIME_WEB`, the pinned onnxruntime-web.
        cache_dir: cache root; defaults to `$KERAZOO_HOME` or `~/.keras/kerazoo` (the presets' cache).
        offline: never touch the network (default: `KERAZOO_OFFLINE=1`); use the cache only.
        registry: npm registry (or mirror) base URL; default `$KERAZOO_NPM_REGISTRY`, else the npm registry.
        force: download again even when cached (the cached folder is replaced in one rename).
        timeout, retries, backoff, progress: see `kerazoo.utils.download.download` (the progress bar shows
            on a terminal by default).

    Returns:
        The folder with the files of `runtime.names`, each checked against the sha256 recorded when
        it was cached (a changed file counts as a miss).

    Raises:
        WebRuntimeError: offline and not cached (the message says how to fill the cache), or the
            tarball lacks one of `runtime.files`.
        kerazoo.utils.download.DownloadError: the download failed (`ChecksumError`: other bytes than
            the pinned sha256); nothing was cached.
        ValueError: a registry URL that is neither https nor http on the loopback interface.
    """
    runtime = runtime or ONNXRUNTIME_WEB
    root = cache_root(cache_dir) / "web"
    folder = root / runtime.key
    if not force and _cached(folder, runtime):
        return folder
    url = runtime.tarball_url(registry)
    if _offline(offline):
        raise WebRuntimeError(
            f"Offline (offline=True or KERAZOO_OFFLINE=1) and {runtime.package} {runtime.version} is not in the "
            f"cache {folder}. On a machine with internet run `kerazoo fetch onnxruntime-web` with "
            f"KERAZOO_HOME={cache_root(cache_dir)}, then copy that directory here.")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download.") as scratch:
        archive = Path(scratch) / f"{runtime.package}-{runtime.version}.tgz"
        download(url, archive, runtime.sha256, timeout=timeout, retries=retries, backoff=backoff, progress=progress)
        unpacked = Path(scratch) / "unpacked"
        unpacked.mkdir()
        extract_archive(archive, unpacked)
        with atomic_directory(folder, overwrite=True) as staging:
            digests = {}
            for member, name in zip(runtime.files, runtime.names):
                source = unpacked / "package" / member
                if not source.is_file():
                    raise WebRuntimeError(f"{url} (sha256 {runtime.sha256}) has no package/{member}, which the "
                                          f"page loads; nothing was cached")
                shutil.copyfile(source, staging / name)
                digests[name] = sha256_file(staging / name)
            (staging / SOURCE_FILE).write_text(json.dumps(
                {"url": url, "version": runtime.version, "tarball_sha256": runtime.sha256, "files": digests},
                indent=2) + "\n")
    return folder

