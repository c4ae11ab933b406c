"""kerazoo: encoder-decoder networks for pixel-level prediction on Keras 3, with verified exports."""

from kerazoo import layers
from kerazoo.encoders import list_encoders
from kerazoo.models import create_model, list_models

__all__ = ["create_model", "layers", "list_encoders", "list_models"]
__version__ = "0.1.0"
