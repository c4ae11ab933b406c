"""kerazoo: encoder-decoder networks for pixel-level prediction on Keras 3, with verified exports."""

from kerazoo import layers, presets
from kerazoo.encoders import list_encoders
from kerazoo.models import create_model, list_models
from kerazoo.presets import from_preset, list_presets, save_to_preset

__all__ = [
    "create_model", "from_preset", "layers", "list_encoders", "list_models", "list_presets", "presets",
    "save_to_preset",
]
__version__ = "0.1.0"
