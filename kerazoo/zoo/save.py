"""Saving presets: `save_to_preset` (three files, written atomically and verified by a reload) and
`archive_preset` (a .tar.gz to publish, with its sha256)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np

from kerazoo.models import ZooModel, check_task_attributes, create_model, model_num_classes
from kerazoo.utils.download import sha256_file
from kerazoo.utils.files import atomic_directory, atomic_path
from kerazoo.zoo.hub import parse_hub_uri, push_to_hub
from kerazoo.zoo.preset_files import (CONFIG_FILE, FORMAT_VERSION, METADATA_FILE, PRESET_FILES, WEIGHTS_DTYPES,
                                      WEIGHTS_FILE, _MISSING, _check_preset_dir)

_FLOAT16_MAX = float(np.finfo(np.float16).max)


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
            generated model card (`kerazoo.zoo.hub.push_to_hub`; the token comes from `HF_TOKEN` or
            `hf auth login`).

    Returns:
        The preset directory.
    """
    from importlib.metadata import version

    if weights_dtype not in WEIGHTS_DTYPES:
        raise ValueError(f"weights_dtype must be one of {WEIGHTS_DTYPES}; got {weights_dtype!r}")
    if push_to is not None:
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
            kerazoo_version=version("kerazoo"))
        if kept_float32:
            metadata["weights_kept_float32"] = kept_float32
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    if push_to is not None:
        push_to_hub(directory, push_to)
    return directory


def _zoo_model_to_save(model, arguments, verify):
    """The ZooModel to write: `model` itself (checked against `arguments` when given), or a plain Keras
    model rebuilt with `create_model(**arguments)` that takes its weights."""

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
