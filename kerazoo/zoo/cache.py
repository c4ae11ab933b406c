"""Fetching and caching presets: where a preset comes from, and the cache that keeps it.

Where presets come from (`from_preset(source)`):

* a built-in name: presets shipped inside the package under `kerazoo/zoo/shipped/<name>/`, and presets
  registered with `register_preset` whose `uri` is downloaded once into the cache;
* a local directory, or a local `.tar.gz` / `.zip` archive of one;
* `file:///path` to either of those;
* `https://host/<name>.tar.gz` (or `.zip`): a single archive holding the three files, at its root or
  in one top-level directory. Append `#sha256=<hex>` (or pass `sha256=`) to pin its digest;
* `hf://owner/repo[@revision][/subdir]`: a Hugging Face Hub repository holding the three files
  (needs `pip install "kerazoo[hub]"`).

Downloads land in the cache, `$KERAZOO_HOME` (default `~/.keras/kerazoo`): archives are streamed to a
temporary file, checked against their sha256, extracted into a temporary directory with unsafe
members rejected, and only then renamed into `presets/<key>/`, so the cache never holds a half-written
preset. With `offline=True` or `KERAZOO_OFFLINE=1` nothing touches the network: presets come from the
package, local paths or the cache, and a miss says how to fill the cache (`fetch` on a connected
machine, then copy `$KERAZOO_HOME`). Every load checks the weights file against `weights_sha256`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from kerazoo.utils.download import download, extract_archive, sha256_file
from kerazoo.zoo.preset_files import METADATA_FILE, PRESET_FILES, PresetError, PresetNotCachedError, _check_preset_dir
from kerazoo.zoo.registry import _REGISTERED, _all_presets

logger = logging.getLogger("kerazoo.zoo")

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")
_SOURCE_FILE = ".source.json"  # in cached presets: the archive's URI and sha256


def cache_root(cache_dir=None) -> Path:
    """The cache root: `cache_dir`, else `$KERAZOO_HOME`, else `~/.keras/kerazoo`."""
    root = cache_dir or os.environ.get("KERAZOO_HOME") or Path("~", ".keras", "kerazoo")
    return Path(root).expanduser()


def _offline(offline) -> bool:
    if offline is not None:
        return bool(offline)
    return os.environ.get("KERAZOO_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _split_sha256_fragment(uri, sha256):
    """Takes `#sha256=<hex>` off a URL; an explicit `sha256` argument must agree with it."""
    base, _, fragment = uri.partition("#")
    match = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", fragment) if fragment else None
    if fragment and not match:
        raise PresetError(f"Unsupported URL fragment in {uri!r}; the only one understood is #sha256=<64 hex digits>")
    pinned = match.group(1).lower() if match else None
    if sha256 and pinned and sha256.lower() != pinned:
        raise PresetError(f"sha256={sha256} disagrees with the URL's #sha256={pinned}")
    return base, (sha256.lower() if sha256 else pinned)


def _cache_key(label, identity):
    """A readable, collision-free cache directory name: <label>-<12 hex of identity>."""
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:60] or "preset"
    return f"{label}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def _archive_stem(path):
    name = Path(path).name
    for suffix in _ARCHIVE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _find_preset_root(directory: Path) -> Path:
    """The directory holding metadata.json: `directory` itself, or its single subdirectory."""
    if (directory / METADATA_FILE).is_file():
        return directory
    entries = [entry for entry in directory.iterdir() if not entry.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / METADATA_FILE).is_file():
        return entries[0]
    raise PresetError(f"{directory} holds no preset: expected {', '.join(PRESET_FILES)} at its root or in "
                      "one top-level directory")


def _install_archive(archive: Path, key: str, root: Path, force: bool, origin: str) -> Path:
    """Extracts a verified archive into `root/presets/key` atomically; returns the preset directory.

    A `.source.json` beside the extracted files records where the archive came from and its sha256.
    """
    presets_root = root / "presets"
    final = presets_root / key
    staging = Path(tempfile.mkdtemp(dir=presets_root, prefix=f".{key}.", suffix=".partial"))
    try:
        extract_archive(archive, staging)
        _check_preset_dir(_find_preset_root(staging), where=f"archive {archive}")
        (staging / _SOURCE_FILE).write_text(json.dumps({"uri": origin, "sha256": sha256_file(archive)}) + "\n")
        if final.exists() and force:
            # Move the old copy aside first so that `final` is never half-replaced.
            old = Path(tempfile.mkdtemp(dir=presets_root, prefix=f".{key}.", suffix=".old"))
            os.replace(final, old / "preset")
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(staging, final)
        except OSError:
            if not (final / METADATA_FILE).is_file() and not any(final.glob(f"*/{METADATA_FILE}")):
                raise
            # Another process installed the same preset first; keep theirs.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return _find_preset_root(final)


def _cached(root: Path, key: str, sha256=None) -> Path | None:
    """The cached preset under `key`, or None; a cached archive with another sha256 than asked is a miss."""
    final = root / "presets" / key
    if not final.is_dir():
        return None
    if sha256 is not None:
        try:
            recorded = json.loads((final / _SOURCE_FILE).read_text()).get("sha256")
        except (OSError, json.JSONDecodeError):
            recorded = None
        if recorded != sha256:
            return None
    return _find_preset_root(final)


def _fetch_archive(uri, sha256, key, root, offline, force, download_options) -> Path:
    """Returns the cached preset directory of an archive at an https:// or http://loopback URL."""
    if not force and (cached := _cached(root, key, sha256)) is not None:
        return cached
    if offline:
        raise PresetNotCachedError(
            f"Offline (offline=True or KERAZOO_OFFLINE=1) and {uri} is not in the cache {root / 'presets' / key}. "
            f"On a machine with internet run `kerazoo fetch <name or URL>` (or kerazoo.zoo.fetch) with "
            f"KERAZOO_HOME={root}, then copy that directory here.")
    (root / "presets").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root / "presets", prefix=".download.") as scratch:
        archive = Path(scratch) / (Path(urllib.parse.urlsplit(uri).path).name or "preset.archive")
        digest = download(uri, archive, sha256, **download_options)
        if sha256 is None:
            logger.warning("Downloaded %s without a pinned sha256 (%s); only the weights' own sha256 in "
                           "metadata.json was checked. Pin it with '#sha256=%s'.", uri, digest, digest)
        # A cached copy that failed the sha256 pin above is replaced.
        return _install_archive(archive, key, root, force or (root / "presets" / key).exists(), uri)


def _local_archive(path: Path, sha256, root, force) -> Path:
    digest = sha256_file(path)
    if sha256 is not None and digest != sha256:
        raise PresetError(f"Archive {path} has sha256 {digest}, expected {sha256}")
    key = _cache_key(_archive_stem(path), digest)
    if not force and (cached := _cached(root, key)) is not None:
        return cached
    (root / "presets").mkdir(parents=True, exist_ok=True)
    return _install_archive(path, key, root, force, path.as_uri())


def _fetch_hf(uri, root, offline) -> Path:
    """Downloads (or, offline, looks up) an hf://owner/repo[@revision][/subdir] snapshot."""
    try:
        import huggingface_hub
    except ImportError as error:
        raise ImportError(f"Loading {uri} needs huggingface_hub: pip install \"kerazoo[hub]\"") from error
    rest = uri[len("hf://"):]
    parts = rest.split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise PresetError(f"Expected hf://owner/repo[@revision][/subdir]; got {uri!r}")
    repo, revision = parts[1].partition("@")[::2]
    repo_id, subdir = f"{parts[0]}/{repo}", "/".join(parts[2:])
    try:
        snapshot = huggingface_hub.snapshot_download(
            repo_id=repo_id, revision=revision or None, cache_dir=str(root / "hf"), local_files_only=offline,
            # The preset's files only: a repository pushed by kerazoo also holds its card and exports.
            allow_patterns=[f"{subdir}/{name}" if subdir else name for name in PRESET_FILES])
    except Exception as error:  # the hub raises many types; all mean "not available"
        hint = " (offline: it is not in the cache; fetch it on a machine with internet first)" if offline else ""
        raise PresetError(f"Could not get {uri} from the Hugging Face Hub{hint}: {error}") from error
    return _find_preset_root(Path(snapshot) / subdir)


def _resolve(source, *, sha256=None, offline=None, cache_dir=None, force=False, **download_options) -> Path:
    """Turns a preset name, path or URI into a local, complete preset directory (downloading if needed)."""
    offline, root = _offline(offline), cache_root(cache_dir)
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "://" not in source
                                           and (os.sep in source or os.path.exists(source))):
        path = Path(source).expanduser()
        if path.is_dir():
            return _find_preset_root(path)
        if path.is_file():
            return _local_archive(path, sha256 and sha256.lower(), root, force)
        raise PresetError(f"No preset directory or archive at {path}")
    if not isinstance(source, str):
        raise TypeError(f"A preset is a name, a path or a URI; got {source!r}")
    scheme = urllib.parse.urlsplit(source).scheme
    if scheme == "file":
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(source).path))
        return _resolve(path, sha256=sha256, offline=offline, cache_dir=root, force=force)
    if scheme in ("https", "http"):
        uri, sha256 = _split_sha256_fragment(source, sha256)
        key = _cache_key(_archive_stem(urllib.parse.urlsplit(uri).path), uri)
        return _fetch_archive(uri, sha256, key, root, offline, force, download_options)
    if scheme == "hf":
        return _fetch_hf(source, root, offline)
    if scheme:
        raise PresetError(f"Unsupported preset URI scheme {scheme!r} in {source!r}; use a name, a directory, "
                          "file://, https:// or hf://")
    presets = _all_presets()
    if source.lower() not in presets:
        message = (_REGISTERED.unknown_message(source, valid=presets) if presets
                   else f"Unknown preset {source!r}: no built-in presets are installed yet.")
        raise PresetError(f"{message} A preset can also be a directory, file://, https:// or hf:// URI.")
    preset = presets[source.lower()]
    if Path(preset.uri).is_dir():
        return _find_preset_root(Path(preset.uri))
    uri_scheme = urllib.parse.urlsplit(preset.uri).scheme
    if uri_scheme in ("https", "http"):
        key = _cache_key(preset.name, preset.sha256)
        return _fetch_archive(preset.uri, preset.sha256, key, root, offline, force, download_options)
    return _resolve(preset.uri, sha256=preset.sha256, offline=offline, cache_dir=root, force=force,
                    **download_options)


def fetch(source, *, cache_dir=None, force=False, sha256=None, timeout=30.0, retries=3, backoff=1.0,
          progress=None) -> Path:
    """Fills the cache with a preset so that machines without internet can load it.

    Run it where there is internet, then copy the cache directory (`$KERAZOO_HOME`) to the offline
    machine and load there with `KERAZOO_OFFLINE=1`.

    Args:
        source: a preset name, https:// / file:// archive URI, or hf:// URI (see the module docstring).
        cache_dir: cache root; defaults to `$KERAZOO_HOME` or `~/.keras/kerazoo`.
        force: download again even when cached (the old copy is replaced atomically).
        sha256: expected sha256 of the archive (for URIs that are not built-in names).
        timeout: seconds a connect or a read may wait (see `kerazoo.utils.download.download`).
        retries: download attempts after the first one.
        backoff: seconds before the first retry; doubles each retry.
        progress: show a progress bar on stderr; None shows it only on a terminal.

    Returns:
        The local preset directory, already verified.
    """
    directory = _resolve(source, sha256=sha256, offline=False, cache_dir=cache_dir, force=force,
                         timeout=timeout, retries=retries, backoff=backoff, progress=progress)
    _check_preset_dir(directory, where=str(source))
    return directory
