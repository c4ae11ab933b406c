"""kerazoo: encoder-decoder networks for pixel-level prediction on Keras 3, with verified exports."""

# losses and metrics are imported so that their classes are registered before a trained .keras loads.
from kerazoo import data, layers, losses, metrics, presets
from kerazoo.encoders import list_encoders
from kerazoo.export import export  # the function; `from kerazoo.export import ...` still reaches the module
from kerazoo.models import create_model, list_models
from kerazoo.presets import from_preset, list_presets, save_to_preset

__all__ = [
    "create_model", "data", "export", "from_preset", "layers", "list_encoders", "list_models", "list_presets",
    "losses", "metrics", "presets", "save_to_preset",
]
__version__ = "0.1.0"
