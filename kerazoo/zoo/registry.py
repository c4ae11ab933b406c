"""The presets kerazoo knows by name: those shipped in the package (shipped/<name>/) and those registered
with `register_preset` (released archives, downloaded once into the cache)."""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.parse
from pathlib import Path
from typing import Mapping

from kerazoo.zoo.preset_files import METADATA_FILE, _with_model_facts
from kerazoo.utils.registry import Registry

# Package data: presets trained by this project and small enough to ship.
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"


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
    """Presets under kerazoo/zoo/shipped/<name>/, described by their own metadata.json."""
    presets = {}
    if not SHIPPED_DIR.is_dir():
        return presets
    for directory in sorted(SHIPPED_DIR.iterdir()):
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
