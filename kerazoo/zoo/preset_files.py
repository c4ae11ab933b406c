"""A preset on disk: its three files, its format version, and the checks every load runs.

A preset is a directory of three files:

* `config.json`: the model's Keras serialization (`keras.saving.serialize_keras_object(model)`),
  rebuilt with `safe_mode=True`. Format version 2: a `kerazoo.models.ZooModel`, whose config is the
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
"""

from __future__ import annotations

import json
from pathlib import Path

from kerazoo.models import MODELS
from kerazoo.models.model import INFO_KEYS, TASK_KEYS
from kerazoo.utils.download import sha256_file

FORMAT_VERSION = 2
# Keys that version 1 kept in metadata.json and version 2 keeps in config.json (the ZooModel config).
_MODEL_KEYS = ("model", "class_names", "class_colors", "input_size")
CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE = "config.json", "model.weights.h5", "metadata.json"
PRESET_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE)
WEIGHTS_DTYPES = ("float32", "float16")
_MISSING = object()


class PresetError(ValueError):
    """A preset cannot be found, verified or rebuilt; the message says which and why."""


class PresetNotCachedError(PresetError):
    """Offline mode and the preset is not in the cache."""


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
