"""Parity contracts: how close each exported file must come to the Keras model, and the tie policy
a layer declares for it."""

import keras
import numpy as np

from kerazoo.export.report import ExportError

# Parity contract, per numeric variant. None: measured and reported, not enforced.
CONTRACTS = {
    "float32": {"max_relative_diff": 1e-4, "min_agreement": 0.999},
    "float16": {"max_relative_diff": None, "min_agreement": 0.99},
    "dynamic": {"max_relative_diff": None, "min_agreement": None},
    "int8": {"max_relative_diff": None, "min_agreement": None},
}

# Tie policies a layer may declare in a class attribute `export_parity`:
# - "exact" (the default): both halves of the float32 contract hold.
# - "argmax_agreement": the layer may move a value by a whole pixel between runtimes when two candidates
#   are within rounding of each other (argmax pooling and unpooling), so max |diff| is reported, not
#   enforced; argmax agreement stays enforced.
TIE_POLICIES = ("exact", "argmax_agreement")


def all_layers(model):
    """Every layer of `model`, nested models' layers included."""
    layers = []
    for layer in model.layers:
        layers.append(layer)
        if isinstance(layer, keras.Model):
            layers.extend(all_layers(layer))
    return layers


def declared_tie_policy(model):
    """The model's tie policy: "argmax_agreement" when any layer declares it, else "exact".

    Raises:
        ValueError: a layer declares a policy that is not one of `TIE_POLICIES`.
    """
    declared = {getattr(layer, "export_parity", "exact") for layer in all_layers(model)}
    unknown = declared - set(TIE_POLICIES)
    if unknown:
        raise ValueError(f"Unknown export_parity {sorted(unknown)} on a layer of {model.name!r}; "
                         f"valid policies: {', '.join(TIE_POLICIES)}")
    return "argmax_agreement" if "argmax_agreement" in declared else "exact"


def check_parity(exported, reference, outputs, argmax_output, tie_policy="exact"):
    """Fills the parity fields of `exported` (an `ExportedFile`) and checks its contract.

    Args:
        exported: the file's `ExportedFile`; its `variant` picks the contract.
        reference: the Keras model's outputs (float64 scores, or int classes with `argmax_output`).
        outputs: the file's outputs on the same inputs.
        argmax_output: whether outputs are classes rather than scores.
        tie_policy: "exact", or "argmax_agreement" where max |diff| is reported, not enforced (see
            `TIE_POLICIES`).
    """
    if tie_policy not in TIE_POLICIES:
        raise ValueError(f"tie_policy must be one of {TIE_POLICIES}; got {tie_policy!r}")
    outputs = np.asarray(outputs)
    if outputs.shape[:3] != reference.shape[:3] or (not argmax_output and outputs.shape != reference.shape):
        raise ExportError(f"output shape {outputs.shape} differs from the Keras model's {reference.shape}")
    if argmax_output:
        exported.argmax_agreement = float(np.mean(outputs == reference))
    else:
        diff = float(np.max(np.abs(outputs.astype("float64") - reference)))
        span = float(np.max(reference) - np.min(reference)) or 1.0
        exported.max_abs_diff, exported.relative_diff = diff, diff / span
        exported.argmax_agreement = float(np.mean(np.argmax(outputs, -1) == np.argmax(reference, -1)))
        if reference.shape[-1] > 1:
            top2 = np.sort(reference, axis=-1)[..., -2:]
            exported.near_tie_fraction = float(np.mean(top2[..., 1] - top2[..., 0] < diff))
    contract = CONTRACTS[exported.variant]
    checks = []
    if contract["max_relative_diff"] is not None and exported.relative_diff is not None:
        within = exported.relative_diff <= contract["max_relative_diff"]
        message = f"relative max |diff| {exported.relative_diff:.2e} > {contract['max_relative_diff']:.0e}"
        if within or tie_policy == "exact":
            checks.append((within, message))
        else:
            exported.notes.append(f"{message}: reported, not enforced (argmax unpooling moves near-tied values "
                                  "by a pixel between runtimes); argmax agreement is enforced")
    if contract["min_agreement"] is not None:
        checks.append((exported.argmax_agreement >= contract["min_agreement"],
                       f"argmax agreement {exported.argmax_agreement:.4f} < {contract['min_agreement']}"))
    if not checks:
        exported.passed = None
        return
    failed = [message for passed, message in checks if not passed]
    exported.passed = not failed
    if failed:
        exported.error = "parity contract missed: " + "; ".join(failed)
        if exported.near_tie_fraction:
            exported.error += f" ({exported.near_tie_fraction:.4f} of pixels are near-ties within the file's error)"
