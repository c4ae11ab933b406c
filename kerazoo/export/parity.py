"""Parity contracts: how close each exported file must come to the Keras model, and the tie policy
a layer (or the model's task) declares for it."""

import keras
import numpy as np

from kerazoo.export.report import ExportError
from kerazoo.tasks import RESTORATION_TASKS

# Parity contract, per numeric variant. None: measured and reported, not enforced.
# max_psnr_drop: restoration models ("psnr" policy) measured against clean images, in dB.
CONTRACTS = {
    "float32": {"max_relative_diff": 1e-4, "min_agreement": 0.999, "max_psnr_drop": 0.05},
    "float16": {"max_relative_diff": None, "min_agreement": 0.99, "max_psnr_drop": None},
    "dynamic": {"max_relative_diff": None, "min_agreement": None, "max_psnr_drop": None},
    "int8": {"max_relative_diff": None, "min_agreement": None, "max_psnr_drop": None},
}

# Tie policies a layer may declare in a class attribute `export_parity`:
# - "exact" (the default): both halves of the float32 contract hold.
# - "argmax_agreement": the layer may move a value by a whole pixel between runtimes when two candidates
#   are within rounding of each other (argmax pooling and unpooling), so max |diff| is reported, not
#   enforced; argmax agreement stays enforced.
# - "psnr": restoration models (denoise, super_resolution; declared by the model's `task`) are held to
#   the task's own terms: with clean `sample_targets`, a float32 file's PSNR lies within `max_psnr_drop`
#   of the Keras model's (outputs rounded to 8 bits, as the field scores), and every variant reports
#   its PSNR drop (int8's is the figure to read); without targets the "exact" max |diff| contract holds.
#   Argmax over colour channels means nothing there, so agreement is not measured.
TIE_POLICIES = ("exact", "argmax_agreement", "psnr")


def all_layers(model):
    """Every layer of `model`, nested models' layers included."""
    layers = []
    for layer in model.layers:
        layers.append(layer)
        if isinstance(layer, keras.Model):
            layers.extend(all_layers(layer))
    return layers


def declared_tie_policy(model):
    """The model's tie policy: "psnr" for a restoration model (its `task`), "argmax_agreement" when any
    layer declares it, else "exact".

    Raises:
        ValueError: a layer declares a policy that is not one of `TIE_POLICIES`.
    """
    if getattr(model, "task", None) in RESTORATION_TASKS:
        return "psnr"
    declared = {getattr(layer, "export_parity", "exact") for layer in all_layers(model)}
    unknown = declared - set(TIE_POLICIES)
    if unknown:
        raise ValueError(f"Unknown export_parity {sorted(unknown)} on a layer of {model.name!r}; "
                         f"valid policies: {', '.join(TIE_POLICIES)}")
    return "argmax_agreement" if "argmax_agreement" in declared else "exact"


def _mean_psnr(images, targets):
    from kerazoo.metrics import psnr

    rounded = np.clip(np.rint(images), 0, 255)
    return float(np.mean(psnr(rounded, np.asarray(targets, dtype="float64"))))


def _check_psnr(exported, reference, outputs, targets):
    """The "psnr" policy: max |diff| always; with clean targets the PSNR drop and its contract."""
    diff = float(np.max(np.abs(outputs.astype("float64") - reference)))
    span = float(np.max(reference) - np.min(reference)) or 1.0
    exported.max_abs_diff, exported.relative_diff = diff, diff / span
    contract = CONTRACTS[exported.variant]
    if targets is None:
        if contract["max_relative_diff"] is None:
            exported.passed = None
            return
        exported.passed = exported.relative_diff <= contract["max_relative_diff"]
        if not exported.passed:
            exported.error = (f"parity contract missed: relative max |diff| {exported.relative_diff:.2e} > "
                              f"{contract['max_relative_diff']:.0e} (pass sample_targets to hold it to PSNR)")
        return
    if np.shape(targets) != outputs.shape:
        raise ValueError(f"sample_targets have shape {np.shape(targets)}; the outputs have {outputs.shape}")
    exported.psnr = _mean_psnr(outputs, targets)
    exported.psnr_drop = _mean_psnr(reference, targets) - exported.psnr
    if contract["max_psnr_drop"] is None:
        exported.passed = None
        return
    exported.passed = abs(exported.psnr_drop) <= contract["max_psnr_drop"]
    if not exported.passed:
        exported.error = (f"parity contract missed: PSNR {exported.psnr:.3f} dB is {-exported.psnr_drop:+.3f} dB "
                          f"from the Keras model's (allowed {contract['max_psnr_drop']} dB)")


def check_parity(exported, reference, outputs, argmax_output, tie_policy="exact", targets=None):
    """Fills the parity fields of `exported` (an `ExportedFile`) and checks its contract.

    Args:
        exported: the file's `ExportedFile`; its `variant` picks the contract.
        reference: the Keras model's outputs (float64 scores, or int classes with `argmax_output`).
        outputs: the file's outputs on the same inputs.
        argmax_output: whether outputs are classes rather than scores.
        tie_policy: "exact", "argmax_agreement" where max |diff| is reported, not enforced, or "psnr"
            (restoration; see `TIE_POLICIES`).
        targets: clean images for the "psnr" policy (0..255, the outputs' shape), or None.
    """
    if tie_policy not in TIE_POLICIES:
        raise ValueError(f"tie_policy must be one of {TIE_POLICIES}; got {tie_policy!r}")
    outputs = np.asarray(outputs)
    if outputs.shape[:3] != reference.shape[:3] or (not argmax_output and outputs.shape != reference.shape):
        raise ExportError(f"output shape {outputs.shape} differs from the Keras model's {reference.shape}")
    if tie_policy == "psnr" and not argmax_output:
        _check_psnr(exported, reference, outputs, targets)
        return
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
