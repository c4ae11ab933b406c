"""The zoo: pretrained models as presets, with verified weights and an offline cache.

One concern a module: preset_files.py (a preset on disk: its three files and the checks every load runs),
registry.py (the presets known by name, shipped in shipped/<name>/ or registered), cache.py (where a preset
comes from: fetching, the cache, offline use), load.py (`from_preset`, `preset_metadata`) and save.py
(`save_to_preset`, `archive_preset`), hub.py (`push_to_hub`: publish on the Hugging Face
Hub) and model_card.py (the card generated from a preset's metadata). Warnings about presets go to the "kerazoo.zoo" logger.
"""

from kerazoo.utils.download import ChecksumError, DownloadError
from kerazoo.zoo.cache import cache_root, fetch
from kerazoo.zoo.load import from_preset, preset_directory, preset_metadata
from kerazoo.zoo.preset_files import PRESET_FILES, PresetError, PresetNotCachedError
from kerazoo.zoo.registry import Preset, list_presets, register_preset, unregister_preset
from kerazoo.zoo.save import archive_preset, save_to_preset

__all__ = [
    "ChecksumError", "DownloadError", "PRESET_FILES", "Preset", "PresetError", "PresetNotCachedError", "archive_preset",
    "cache_root", "fetch", "from_preset", "list_presets", "preset_directory", "preset_metadata", "register_preset", "save_to_preset",
    "unregister_preset",
]
