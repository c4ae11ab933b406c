"""Loading presets: `from_preset` (the model, its weights verified) and `preset_metadata`."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import keras

from kerazoo.models import ZooModel, create_model
from kerazoo.models.model import INFO_KEYS
from kerazoo.zoo.cache import _resolve
from kerazoo.zoo.preset_files import CONFIG_FILE, WEIGHTS_FILE, PresetError, _MISSING, _check_preset_dir

logger = logging.getLogger("kerazoo.zoo")


def preset_directory(source, *, offline=None, cache_dir=None) -> Path:
    """The local, verified directory of a preset (fetched into the cache if needed), for `kerazoo.zoo.hub`
    and `kerazoo.zoo.model_card`, which publish and describe its files."""
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
    the "kerazoo.zoo" logger names them.

    Args:
        source: a built-in name (`list_presets()`), a preset directory, a .tar.gz/.zip of one, a
            .keras file (loaded in safe mode, no overrides), or a file://, https:// or hf:// URI.
        num_classes: classes of the returned model; None keeps the preset's.
        offline: never touch the network (default: `KERAZOO_OFFLINE=1`); use the package and cache only.
        cache_dir: cache root; defaults to `$KERAZOO_HOME` or `~/.keras/kerazoo`.
        sha256: expected sha256 of an archive given by path or URL (or append `#sha256=<hex>` to it).
        timeout: seconds a connect or a read may wait (see `kerazoo.utils.download.download`).
        retries: download attempts after the first one.
        backoff: seconds before the first retry; doubles each retry.
        progress: show a progress bar on stderr; None shows it only on a terminal.
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
