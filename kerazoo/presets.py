"""The zoo: pretrained models as presets, with verified weights and an offline cache.

A preset is a directory of three files:

* `config.json`: the model's Keras serialization (`keras.saving.serialize_keras_object(model)`),
  rebuilt with `safe_mode=True`. Format version 2: a `kerazoo.model.ZooModel`, whose config is the
  `create_model` arguments plus `class_names`, `class_colors` and `input_size`; it rebuilds through
  `create_model`. Version 1 (still read): a Keras functional graph, with the `create_model`
  arguments, class names and input size in metadata.json instead;
* `model.weights.h5`: the weights (`model.save_weights`), optionally stored as float16;
* `metadata.json`: what the weights are and how good they are. Its keys:

  - `"dataset"`, `"preprocessing"`.
  - Version 1 only: `"model"` (`create_model`'s arguments), `"class_names"`, `"class_colors"` and
    `"input_size"`; version 2 keeps them in config.json. `preset_metadata()` returns them for both
    versions, read from wherever the preset keeps them.
  - `"metrics"` ({name: number}) with `"evaluation"` ({"command": the command that measured them,
    "split": ...}); metrics without a command are refused.
  - `"training"` (the recipe: epochs, optimiser, loss, augmentation, seed, ...), `"license"`,
    `"description"`.
  - Written by `save_to_preset`: `"format_version"`, `"parameter_count"`, `"weights_file"`,
    `"weights_sha256"`, `"weights_dtype"`, `"keras_version"`, `"kerazoo_version"`.

Where presets come from (`from_preset(source)`):

* a built-in name: presets shipped inside the package under `kerazoo/zoo/<name>/`, and presets
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

import dataclasses
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
from typing import Mapping

import keras
import numpy as np

from kerazoo import layers as _layers  # noqa: F401  registers the custom layers for deserialization
from kerazoo.files import atomic_directory, atomic_path
from kerazoo.download import ChecksumError, DownloadError, download, extract_archive, sha256_file
from kerazoo.registry import Registry

__all__ = [
    "ChecksumError", "DownloadError", "Preset", "PresetError", "PresetNotCachedError", "archive_preset",
    "cache_root", "fetch", "from_preset", "list_presets", "preset_directory", "preset_metadata", "register_preset",
    "save_to_preset", "unregister_preset",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
# Keys that version 1 kept in metadata.json and version 2 keeps in config.json (the ZooModel config).
_MODEL_KEYS = ("model", "class_names", "class_colors", "input_size")
CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE = "config.json", "model.weights.h5", "metadata.json"
PRESET_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE)
WEIGHTS_DTYPES = ("float32", "float16")
# Package data: presets trained by this project and small enough to ship.
_ZOO_DIR = Path(__file__).resolve().parent / "zoo"
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_SOURCE_FILE = ".source.json"  # in cached presets: the archive's URI and sha256
_MISSING = object()


class PresetError(ValueError):
    """A preset cannot be found, verified or rebuilt; the message says which and why."""


class PresetNotCachedError(PresetError):
    """Offline mode and the preset is not in the cache."""


@dataclasses.dataclass(frozen=True)
class Preset:
    """A built-in preset.

    Attributes:
        name: the name `from_preset` accepts.
        uri: where it lives: a directory (shipped presets), or an https:// / file:// archive, or hf://.
        sha256: hex digest of the archive at `uri`; required for archives, None for directories and hf://.
        description: one line for listings.
        model: the model it builds, e.g. "unet/vgg16" or "segnet_basic".
        dataset: the data set it was trained on (a `kerazoo.data.DATASETS` name where one fits).
        metrics: {metric name: value} as measured by `evaluation_command`.
        evaluation_command: the command that measured `metrics`.
        license: the weights' licence.
        task: what the model does: "segmentation", "denoise", "super_resolution" or "depth".
    """

    name: str
    uri: str
    sha256: str | None = None
    description: str = ""
    model: str = ""
    dataset: str = ""
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict, hash=False)
    evaluation_command: str = ""
    license: str = ""
    task: str = "segmentation"


class _PresetRegistry(Registry):
    def unregister(self, name):
        self._entries.pop(name, None)


_REGISTERED = _PresetRegistry("preset")


def register_preset(preset: Preset) -> Preset:
    """Adds a built-in preset (e.g. a released archive); its name must be new and lowercase.

    Raises:
        ValueError: the name is taken, not lowercase, or an archive uri comes without a sha256.
    """
    if preset.name != preset.name.lower() or not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", preset.name):
        raise ValueError(f"Preset names are lowercase letters, digits, '_', '.', '-'; got {preset.name!r}")
    scheme = urllib.parse.urlsplit(preset.uri).scheme
    if scheme in ("https", "http", "file") and not preset.sha256:
        raise ValueError(f"Preset {preset.name!r}: an archive uri ({preset.uri}) needs its sha256")
    if preset.name in _shipped_presets():
        raise ValueError(f"preset {preset.name!r} is already registered (shipped with kerazoo)")
    return _REGISTERED.register(preset.name, preset)


def unregister_preset(name):
    """Removes a preset added with `register_preset` (shipped presets stay)."""
    _REGISTERED.unregister(name)


def _shipped_presets() -> dict[str, Preset]:
    """Presets under kerazoo/zoo/<name>/, described by their own metadata.json."""
    presets = {}
    if not _ZOO_DIR.is_dir():
        return presets
    for directory in sorted(_ZOO_DIR.iterdir()):
        if not (directory / METADATA_FILE).is_file():
            continue
        try:
            metadata = _with_model_facts(directory, json.loads((directory / METADATA_FILE).read_text()))
        except (OSError, ValueError):
            continue  # a broken shipped preset fails when loaded, with the reason; listing goes on
        model = metadata.get("model", {})
        presets[directory.name] = Preset(
            name=directory.name, uri=str(directory), description=metadata.get("description", ""),
            model="/".join(str(v) for v in (model.get("name"), model.get("encoder")) if v),
            dataset=metadata.get("dataset", ""), metrics=dict(metadata.get("metrics", {})),
            evaluation_command=metadata.get("evaluation", {}).get("command", ""),
            license=metadata.get("license", ""), task=model.get("task") or "segmentation")
    return presets


def _all_presets() -> dict[str, Preset]:
    return {**dict(_REGISTERED.items()), **_shipped_presets()}


def list_presets() -> list[Preset]:
    """The built-in presets (shipped and registered), sorted by name, each with its metrics."""
    return [preset for _, preset in sorted(_all_presets().items())]


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
            f"On a machine with internet run `kerazoo fetch <name or URL>` (or kerazoo.presets.fetch) with "
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
        timeout, retries, backoff, progress: see `kerazoo.download.download`.

    Returns:
        The local preset directory, already verified.
    """
    directory = _resolve(source, sha256=sha256, offline=False, cache_dir=cache_dir, force=force,
                         timeout=timeout, retries=retries, backoff=backoff, progress=progress)
    _check_preset_dir(directory, where=str(source))
    return directory


def _check_preset_dir(directory: Path, where) -> dict:
    """Checks the files, format version, model name and weights sha256; returns the metadata."""
    missing = [name for name in PRESET_FILES if not (directory / name).is_file()]
    if missing:
        raise PresetError(f"Preset {where} ({directory}) lacks {', '.join(missing)}")
    try:
        metadata = json.loads((directory / METADATA_FILE).read_text())
    except json.JSONDecodeError as error:
        raise PresetError(f"Preset {where}: {directory / METADATA_FILE} is not valid JSON: {error}") from error
    version = metadata.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise PresetError(f"Preset {where} has format_version {version!r}; this kerazoo reads 1 to "
                          f"{FORMAT_VERSION}. Upgrade kerazoo.")
    metadata = _with_model_facts(directory, metadata, where)
    model = metadata.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise PresetError(f"Preset {where}: metadata.json needs \"model\": {{\"name\": ..., ...}} (create_model's "
                          "arguments)")
    from kerazoo.models import MODELS

    if model["name"].lower() not in MODELS:
        raise PresetError(f"Preset {where} names an unknown model: {MODELS.unknown_message(model['name'])}")
    expected = metadata.get("weights_sha256")
    if not expected:
        raise PresetError(f"Preset {where}: metadata.json has no weights_sha256; refusing unverified weights")
    actual = sha256_file(directory / WEIGHTS_FILE)
    if actual != expected.lower():
        raise PresetError(f"Preset {where}: {directory / WEIGHTS_FILE} has sha256 {actual}, metadata.json says "
                          f"{expected}. The file is corrupt or was modified; delete {directory} (if cached) "
                          "and fetch it again.")
    return metadata


def _with_model_facts(directory: Path, metadata: dict, where=None) -> dict:
    """The metadata with "model" (create_model's arguments), "class_names", "class_colors" and
    "input_size" filled in: version 1 keeps them in metadata.json, version 2 in config.json."""
    if metadata.get("format_version", 1) < 2:
        return metadata
    from kerazoo.model import INFO_KEYS, TASK_KEYS

    try:
        config = json.loads((directory / CONFIG_FILE).read_text())
    except json.JSONDecodeError as error:
        raise PresetError(f"Preset {where or directory}: {directory / CONFIG_FILE} is not valid JSON: "
                          f"{error}") from error
    inner = config.get("config") if isinstance(config, dict) else None
    if config.get("class_name") != "ZooModel" or not isinstance(inner, dict) or not isinstance(inner.get("name"), str):
        raise PresetError(f"Preset {where or directory} is format_version 2 but config.json is not a kerazoo ZooModel "
                          "config (create_model's arguments at the top level)")
    model = {key: value for key, value in inner.items() if key not in TASK_KEYS + INFO_KEYS}
    return {**metadata, "model": model, **{key: inner.get(key) for key in TASK_KEYS}}


def preset_directory(source, *, offline=None, cache_dir=None) -> Path:
    """The local, verified directory of a preset (fetched into the cache if needed), for `kerazoo.hub`
    and `kerazoo.model_card`, which publish and describe its files."""
    directory = _resolve(source, offline=offline, cache_dir=cache_dir)
    _check_preset_dir(directory, where=str(source))
    return directory


def preset_metadata(source, *, offline=None, cache_dir=None, **download_options) -> dict:
    """The verified metadata.json of a preset (class names, colours, metrics, ...), fetching it if needed."""
    directory = _resolve(source, offline=offline, cache_dir=cache_dir, **download_options)
    return _check_preset_dir(directory, where=str(source))


def _unknown_classes(config) -> list[str]:
    """Serialized classes in `config` that neither Keras nor a registered package provides."""
    unknown = []
    if isinstance(config, dict):
        module, class_name = config.get("module"), config.get("class_name")
        if isinstance(module, str) and isinstance(class_name, str):
            if not module.startswith("keras"):
                if keras.saving.get_registered_object(config.get("registered_name") or class_name) is None:
                    unknown.append(f"{class_name} (from {module})")
            elif module == "keras.layers" and not hasattr(keras.layers, class_name):
                unknown.append(f"{class_name} (from {module})")
        for value in config.values():
            unknown += _unknown_classes(value)
    elif isinstance(config, list):
        for value in config:
            unknown += _unknown_classes(value)
    return unknown


def _deserialize(directory: Path, where):
    """Rebuilds the saved architecture from config.json in Keras safe mode (no code is executed)."""
    try:
        config = json.loads((directory / CONFIG_FILE).read_text())
    except json.JSONDecodeError as error:
        raise PresetError(f"Preset {where}: {directory / CONFIG_FILE} is not valid JSON: {error}") from error
    unknown = sorted(set(_unknown_classes(config)))
    if unknown:
        raise PresetError(f"Preset {where}: config.json names unknown layer or object classes: {', '.join(unknown)}. "
                          "They are neither Keras built-ins nor registered kerazoo layers; the preset may need a "
                          "newer kerazoo.")
    try:
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except (TypeError, ValueError, KeyError) as error:
        detail = str(error) if len(str(error)) < 600 else str(error)[:600] + " ..."
        raise PresetError(f"Preset {where}: config.json cannot be rebuilt: {detail}") from error
    if not isinstance(model, keras.Model):
        raise PresetError(f"Preset {where}: config.json describes a {type(model).__name__}, not a keras.Model")
    return model


def _copy_weights(source, target, prefix="") -> list[str]:
    """Copies weights layer by layer (paired by position, as Keras' own weight files are) wherever the
    shapes agree; returns the names of target layers whose shapes differ (left as initialised)."""
    if len(source.layers) != len(target.layers):
        raise PresetError(f"Cannot transfer weights: {prefix or 'the model'} has {len(source.layers)} layers in the "
                          f"preset and {len(target.layers)} when rebuilt with the new arguments")
    reinitialised = []
    for old, new in zip(source.layers, target.layers):
        # kerazoo.layers.BatchNormalization (fused) holds keras.layers.BatchNormalization's weights: either loads.
        batch_norms = all(isinstance(layer, keras.layers.BatchNormalization) for layer in (old, new))
        if type(old) is not type(new) and not batch_norms:
            raise PresetError(f"Cannot transfer weights: layer {prefix}{new.name} is a {type(new).__name__} "
                              f"but the preset has a {type(old).__name__} there")
        old_weights, new_weights = old.weights, new.weights
        if [tuple(w.shape) for w in old_weights] == [tuple(w.shape) for w in new_weights]:
            for old_weight, new_weight in zip(old_weights, new_weights):
                new_weight.assign(old_weight)
        elif isinstance(new, keras.Model):
            reinitialised += _copy_weights(old, new, prefix=f"{prefix}{new.name}/")
        else:
            reinitialised.append(f"{prefix}{new.name}")
    return reinitialised


def from_preset(source, num_classes=None, *, offline=None, cache_dir=None, sha256=None, timeout=30.0, retries=3,
                backoff=1.0, progress=None, **overrides):
    """Loads a pretrained model from a preset name, directory, archive or URI.

    The architecture is rebuilt from config.json with Keras safe mode, then the verified weights are
    loaded (float16-stored weights come back as float32). Encoder ImageNet weights are never
    downloaded. With a `num_classes` other than the preset's, or other `create_model` overrides
    (e.g. `activation="softmax"`), the model is rebuilt from metadata["model"] with them and every
    layer whose weight shapes still agree keeps its pretrained weights; the others (the head: U-Net's
    and SegNet's "head_conv", FCN's score and upscore layers) are freshly initialised, and a warning on
    the "kerazoo.presets" logger names them.

    Args:
        source: a built-in name (`list_presets()`), a preset directory, a .tar.gz/.zip of one, a
            .keras file (loaded in safe mode, no overrides), or a file://, https:// or hf:// URI.
        num_classes: classes of the returned model; None keeps the preset's.
        offline: never touch the network (default: `KERAZOO_OFFLINE=1`); use the package and cache only.
        cache_dir: cache root; defaults to `$KERAZOO_HOME` or `~/.keras/kerazoo`.
        sha256: expected sha256 of an archive given by path or URL (or append `#sha256=<hex>` to it).
        timeout, retries, backoff, progress: download settings, see `kerazoo.download.download`.
        **overrides: other `create_model` arguments to change (activation, input_shape, freeze_encoder, ...).

    Returns:
        A `keras.Model` (uncompiled).

    Raises:
        PresetError: unknown name, missing or corrupt files, unknown layers or model, or (offline) a
            preset not in the cache (`PresetNotCachedError`).
        DownloadError: a download failed; nothing was left in the cache.
    """
    if isinstance(source, (str, os.PathLike)) and str(source).endswith(".keras") and "://" not in str(source):
        if num_classes is not None or overrides:
            raise PresetError(f"{source} is a .keras file; num_classes and other overrides need a preset directory")
        # Safe mode refuses Lambda layers and other deserialised code.
        return keras.saving.load_model(source, compile=False, safe_mode=True)
    directory = _resolve(source, sha256=sha256, offline=offline, cache_dir=cache_dir, timeout=timeout,
                         retries=retries, backoff=backoff, progress=progress)
    where = str(source)
    metadata = _check_preset_dir(directory, where)
    model = _load_preset_model(directory, metadata, where)
    if "encoder_weights" in overrides or "name" in overrides:
        raise PresetError("from_preset takes no 'name' or 'encoder_weights': the preset fixes the model and "
                          "supplies all weights")
    arguments = model.get_config()
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    overrides = {key: value for key, value in overrides.items() if arguments.get(key, _MISSING) != value}
    if not overrides:
        return model
    from kerazoo.model import INFO_KEYS

    if "num_classes" in overrides:  # the preset's class names and colours no longer apply
        arguments.update(class_names=None, class_colors=None)
    name = arguments.pop("name")
    arguments = {key: value for key, value in arguments.items() if key not in INFO_KEYS}
    arguments.update(overrides)
    target = _create(name, arguments, where, f"cannot rebuild {name!r} with {overrides}")
    reinitialised = _copy_weights(model, target)
    changes = ", ".join(f"{key}={value!r}" for key, value in overrides.items())
    if reinitialised:
        logger.warning("Preset %s rebuilt with %s: kept the pretrained weights except %d layer(s) whose shapes "
                       "changed, which are freshly initialised: %s", where, changes, len(reinitialised),
                       ", ".join(reinitialised))
    else:
        logger.info("Preset %s rebuilt with %s: all pretrained weights kept", where, changes)
    return target


def _create(name, arguments, where, what):
    from kerazoo.models import create_model

    arguments = dict(arguments)
    if arguments.get("input_shape") is not None:
        arguments["input_shape"] = tuple(arguments["input_shape"])
    try:
        return create_model(name, encoder_weights=None, **arguments)
    except (TypeError, ValueError) as error:
        raise PresetError(f"Preset {where}: {what}: {error}") from error


def _load_preset_model(directory: Path, metadata: dict, where):
    """The preset's ZooModel with its weights. Version 1 presets (a functional graph) are rebuilt with
    `create_model` from their metadata, class names and input size included, and take its weights."""
    model = _deserialize(directory, where)
    try:
        model.load_weights(directory / WEIGHTS_FILE)
    except ValueError as error:
        raise PresetError(f"Preset {where}: {WEIGHTS_FILE} does not fit config.json: {error}") from error
    from kerazoo.model import ZooModel

    if metadata.get("format_version", 1) >= 2:
        if not isinstance(model, ZooModel):
            raise PresetError(f"Preset {where} is format_version 2 but config.json describes a "
                              f"{type(model).__name__}, not a kerazoo ZooModel")
        return model
    arguments = dict(metadata["model"])
    name = arguments.pop("name")
    arguments.update(class_names=metadata.get("class_names"), class_colors=metadata.get("class_colors"),
                     input_size=metadata.get("input_size"))
    upgraded = _create(name, arguments, where, "cannot rebuild the version 1 preset from metadata.json")
    if _copy_weights(model, upgraded):
        raise PresetError(f"Preset {where}: metadata.json's model {metadata['model']} does not rebuild config.json's")
    return upgraded


def _write_weights(model, path: Path, dtype):
    """model.save_weights, then (for float16) a copy of the HDF5 file with float32 kernels cast down.

    Returns:
        HDF5 paths of kernels kept in float32 because they exceed float16's range.
    """
    model.save_weights(path)
    if dtype == "float32":
        return []
    import h5py

    kept = []
    cast_path = path.with_name(path.name + ".cast")
    with h5py.File(path, "r") as source, h5py.File(cast_path, "w") as target:
        target.attrs.update(source.attrs)

        def copy(name, item):
            if isinstance(item, h5py.Group):
                target.require_group(name).attrs.update(item.attrs)
                return
            data = item[()]
            # Only kernels (2+ dims) shrink: they are nearly all the bytes, while biases and batch-norm
            # statistics are tiny and stay exact. float16 overflows above 65504; such arrays stay float32.
            if data.dtype == np.float32 and data.ndim >= 2:
                if data.size and np.max(np.abs(data)) > _FLOAT16_MAX:
                    kept.append(name)
                else:
                    data = data.astype(np.float16)
            target.create_dataset(name, data=data).attrs.update(item.attrs)

        source.visititems(copy)
    os.replace(cast_path, path)
    return kept


def save_to_preset(model, directory, metadata, *, weights_dtype="float32", overwrite=False, verify=True,
                   push_to=None) -> Path:
    """Writes `model` as a preset directory (config.json, model.weights.h5, metadata.json).

    The directory appears complete or not at all: files are written to a temporary sibling that is
    then renamed.

    Args:
        model: a `ZooModel` from `kerazoo.create_model` (it carries its arguments), or a plain Keras
            model with metadata["model"] holding the `create_model` arguments that rebuild it.
        directory: the preset directory to create; its name is the preset's name when shipped.
        metadata: a dict as described in the module docstring. "metrics" need "evaluation":
            {"command": ...}. "model", "class_names", "class_colors" and "input_size", when given,
            must agree with the model's own and fill what it lacks (they are written to config.json);
            class names and colours are filled from a known "dataset".
        weights_dtype: "float32", or "float16" to store kernels as float16 and halve the file (biases and
            batch-norm statistics stay float32; everything loads back as float32). Measure the outputs
            before shipping: on a briefly trained SegNet-Basic the logits moved by up to ~1% of their range.
        overwrite: replace an existing preset directory.
        verify: rebuild the model from its arguments and check that its weights have the same
            shapes, so that a preset that could not be rebuilt is never written.
        push_to: "hf://owner/name": then publish the written preset on the Hugging Face Hub with a
            generated model card (`kerazoo.hub.push_to_hub`; the token comes from `HF_TOKEN` or
            `hf auth login`).

    Returns:
        The preset directory.
    """
    import kerazoo

    if weights_dtype not in WEIGHTS_DTYPES:
        raise ValueError(f"weights_dtype must be one of {WEIGHTS_DTYPES}; got {weights_dtype!r}")
    if push_to is not None:
        from kerazoo.hub import parse_hub_uri

        parse_hub_uri(push_to)  # a malformed destination fails before anything is written
    metadata = json.loads(json.dumps(dict(metadata)))  # a JSON-clean copy (tuples -> lists) we may extend
    if metadata.get("metrics"):
        if not all(isinstance(v, (int, float)) for v in metadata["metrics"].values()):
            raise ValueError(f'metadata["metrics"] must map names to numbers; got {metadata["metrics"]!r}')
        if not metadata.get("evaluation", {}).get("command"):
            raise ValueError('metrics need the command that measured them: metadata["evaluation"]["command"]')
    model = _zoo_model_to_save(model, metadata.pop("model", None), verify)
    config = keras.saving.serialize_keras_object(model)
    config["config"].update(_task_facts(model, metadata))
    metadata.setdefault("preprocessing", "raw pixels 0..255 in, (B, H, W, channels) float32; the model "
                                         "normalises them itself")
    directory = Path(directory)
    with atomic_directory(directory, overwrite=overwrite) as staging:
        kept_float32 = _write_weights(model, staging / WEIGHTS_FILE, weights_dtype)
        (staging / CONFIG_FILE).write_text(json.dumps(config))
        metadata.update(
            format_version=FORMAT_VERSION, parameter_count=int(model.count_params()), weights_file=WEIGHTS_FILE,
            weights_sha256=sha256_file(staging / WEIGHTS_FILE), weights_dtype=weights_dtype,
            weights_bytes=(staging / WEIGHTS_FILE).stat().st_size, keras_version=keras.__version__,
            kerazoo_version=kerazoo.__version__)
        if kept_float32:
            metadata["weights_kept_float32"] = kept_float32
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    if push_to is not None:
        from kerazoo.hub import push_to_hub

        push_to_hub(directory, push_to)
    return directory


def _zoo_model_to_save(model, arguments, verify):
    """The ZooModel to write: `model` itself (checked against `arguments` when given), or a plain Keras
    model rebuilt with `create_model(**arguments)` that takes its weights."""
    from kerazoo.model import ZooModel, model_num_classes
    from kerazoo.models import create_model

    if arguments is not None:
        if not isinstance(arguments, dict) or "name" not in arguments:
            raise ValueError('metadata["model"] must hold create_model\'s arguments, e.g. {"name": "unet", '
                             '"encoder": "vgg16", "num_classes": 2}')
        arguments = {key: value for key, value in arguments.items() if key != "encoder_weights"}
    if isinstance(model, ZooModel):
        recorded = json.loads(json.dumps(model.arguments))
        differ = {key: (value, recorded.get(key)) for key, value in (arguments or {}).items()
                  if recorded.get(key, _MISSING) != value}
        if differ:
            raise ValueError(f'metadata["model"] disagrees with the model\'s own create_model arguments '
                             f"(given, model's): {differ}")
        arguments = recorded
    elif arguments is None:
        raise ValueError('A plain Keras model needs metadata["model"], the create_model arguments that rebuild '
                         'it, e.g. {"name": "unet", "encoder": "vgg16", "num_classes": 2}; a model from '
                         "kerazoo.create_model carries them itself")
    else:
        channels = model_num_classes(model)
        if channels is not None and arguments.get("num_classes", channels) != channels:
            raise ValueError(f'metadata["model"]["num_classes"]={arguments["num_classes"]} but the model outputs '
                             f"{channels} channels")
        arguments = {"num_classes": channels, **arguments}
    if not verify and isinstance(model, ZooModel):
        return model
    kwargs = {key: value for key, value in arguments.items() if key != "name"}
    if kwargs.get("input_shape") is not None:
        kwargs["input_shape"] = tuple(kwargs["input_shape"])
    rebuilt = create_model(arguments["name"], encoder_weights=None, **kwargs)
    if [tuple(w.shape) for w in rebuilt.weights] != [tuple(w.shape) for w in model.weights]:
        raise ValueError(f"create_model(**{arguments}) does not rebuild this model (its weights differ in number "
                         "or shape)")
    if isinstance(model, ZooModel):
        return model
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _task_facts(model, metadata) -> dict:
    """Class names, colours and input size for config.json: the model's own, else metadata's (v1 keys),
    else (names and colours) the data set's; a disagreement is an error."""
    from kerazoo.model import check_task_attributes

    facts = {"class_names": model.class_names, "class_colors": model.class_colors, "input_size": model.input_size}
    for key in facts:
        given = metadata.pop(key, None)
        if given is None:
            continue
        own = json.loads(json.dumps(facts[key]))
        if own is not None and own != given:
            raise ValueError(f'metadata["{key}"]={given} disagrees with the model\'s {key}={own}')
        facts[key] = given
    dataset = metadata.get("dataset")
    if dataset and model.head == "segmentation":
        from kerazoo.data.catalog import DATASETS

        info = DATASETS[dataset] if dataset in DATASETS else None
        if info is not None and len(info.class_names) == max(model.num_classes, 2):
            facts["class_names"] = facts["class_names"] or list(info.class_names)
            facts["class_colors"] = facts["class_colors"] or [list(c) for c in info.class_colors]
    checked = check_task_attributes(model.head, model.num_classes, facts["class_names"], facts["class_colors"],
                                    facts["input_size"], model.arguments.get("input_shape"))
    return {key: json.loads(json.dumps(value)) for key, value in zip(facts, checked)}


def archive_preset(directory, output) -> str:
    """Packs a preset directory into a .tar.gz (one top-level directory named after it) for release.

    Returns:
        The archive's sha256, to put in `Preset(sha256=...)` or a `#sha256=` URL fragment.
    """
    import gzip
    import tarfile

    directory, output = Path(directory), Path(output)
    _check_preset_dir(directory, where=str(directory))
    # Fixed owners, modes and times (tar and gzip headers): the same preset packs to the same bytes.
    with atomic_path(output) as partial, open(partial, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed, \
            tarfile.open(fileobj=packed, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in PRESET_FILES:
            info = tar.gettarinfo(directory / name, arcname=f"{directory.name}/{name}")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime, info.mode = 0, 0o644
            with open(directory / name, "rb") as file:
                tar.addfile(info, file)
    return sha256_file(output)

