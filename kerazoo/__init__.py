"""kerazoo: encoder-decoder networks for pixel-level prediction on Keras 3, with verified exports.

`import kerazoo` is cheap: the names below are imported on first use (PEP 562), so building a model
never loads the data pipelines, the exporters, TensorFlow Datasets, tf2onnx, ONNX or LiteRT, and the
command line can quiet TensorFlow before anything imports it.

Keras finds kerazoo's custom layers, losses, metrics, optimizers and ZooModel (needed to load a trained `.keras`
file) once they are registered: at `import kerazoo` when Keras is already imported, else on first use
of any name below or of `kerazoo.models`, which every path that builds, loads or exports a model imports.
"""

import importlib
import sys
import types

__version__ = "0.1.0"

# name -> (module, attribute); None: the module itself.
_LAZY = {
    "create_model": ("kerazoo.models", "create_model"),
    "list_models": ("kerazoo.models", "list_models"),
    "ZooModel": ("kerazoo.models", "ZooModel"),
    "list_encoders": ("kerazoo.encoders", "list_encoders"),
    "from_preset": ("kerazoo.zoo", "from_preset"),
    "list_presets": ("kerazoo.zoo", "list_presets"),
    "save_to_preset": ("kerazoo.zoo", "save_to_preset"),
    "export": ("kerazoo.export", "export"),
    "TrainConfig": ("kerazoo.training.config", "TrainConfig"),
    "data": ("kerazoo.data", None),
    "layers": ("kerazoo.layers", None),
    "losses": ("kerazoo.losses", None),
    "metrics": ("kerazoo.metrics", None),
    "optimizers": ("kerazoo.optimizers", None),
    "presets": ("kerazoo.zoo", None),  # the old module name of the zoo, kept for users
}
# Modules whose import registers serializable classes with Keras; they import Keras and nothing heavier.
_REGISTERING = ("kerazoo.models",)  # imports layers, losses, metrics, optimizers and ZooModel

__all__ = sorted(_LAZY)


def _register_custom_objects():
    for module in _REGISTERING:
        importlib.import_module(module)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'kerazoo' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    if module_name != "kerazoo.training.config":
        _register_custom_objects()
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    # Importing the sub-package kerazoo.export (e.g. `from kerazoo.export import TFLiteRunner`) makes
    # Python set the attribute kerazoo.export to that module; keep it the export() function instead.
    # The module itself stays reachable as sys.modules["kerazoo.export"] and through `from ... import`.
    def __setattr__(self, name, value):
        if name == "export" and isinstance(value, types.ModuleType):
            value = getattr(value, "export", value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

if "keras" in sys.modules:  # registering costs nothing more once Keras is loaded
    _register_custom_objects()
