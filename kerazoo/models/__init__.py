"""The model wing: the zoo's model class (`ZooModel`), `create_model`, the registry and one file per family.

Importing this package registers every kerazoo class with Keras (layers, losses, metrics, optimizers and
`ZooModel`), which loading a `.keras` file needs.
"""

from kerazoo import layers, losses, metrics, optimizers  # noqa: F401  (registered with Keras on import)
from kerazoo.models.model import ZooModel, check_task_attributes, create_model, model_num_classes
from kerazoo.models.registry import MODELS, ModelEntry, list_models, model_encoder_pairs, model_encoders

__all__ = ["MODELS", "ModelEntry", "ZooModel", "check_task_attributes", "create_model", "list_models",
           "model_encoder_pairs", "model_encoders", "model_num_classes"]
