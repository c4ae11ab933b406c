"""kerazoo on the JAX and PyTorch backends, against TensorFlow.

The suite runs on TensorFlow. Here TensorFlow writes weights, a `.keras` file, a preset and reference
outputs (models and the argmax layers' indices and gradients); then this file runs again as a script in
a fresh process per backend (`KERAS_BACKEND=jax` / `torch`), which reloads them, compares and trains,
and writes what it found to JSON. The tests assert on that JSON. A backend that is not installed is
skipped with the reason (`pip install "kerazoo[jax]"` / `"kerazoo[torch]"`).

Contract (issue 13): outputs within 1e-4 of the TensorFlow output range, argmax agreement >= 0.999;
argmax pooling indices equal, gradients within 1e-5.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from optional_extras import require_extra

BACKENDS = {"jax": "jax", "torch": "torch"}  # backend -> module it needs
MAX_RELATIVE_DIFF = 1e-4
MIN_AGREEMENT = 0.999
GRADIENT_ATOL = 1e-5
CHILD_TIMEOUT_S = 1500
IMAGE_SHAPE = (2, 32, 32, 3)
# weights=None, tiny input: the four models (both SegNets carry the argmax layers).
MODELS = {  # SegNet-Basic first: the child checks that building it imported no TensorFlow
    "segnet_basic": dict(name="segnet_basic", num_classes=4, input_shape=(32, 32, 3)),
    "segnet_vgg16": dict(name="segnet", encoder="vgg16", num_classes=3, input_shape=(32, 32, 3)),
    "unet_mobilenetv2": dict(name="unet", encoder="mobilenetv2", num_classes=3, input_shape=(32, 32, 3)),
    "fcn8s_resnet50": dict(name="fcn8s", encoder="resnet50", num_classes=3, input_shape=(32, 32, 3)),
}
SAVED_MODEL = "segnet_basic"  # the one written as a `.keras` file and as a preset too


def _create(key):
    import kerazoo

    arguments = dict(MODELS[key])
    return kerazoo.create_model(arguments.pop("name"), **arguments)


def _images():
    return np.random.default_rng(0).uniform(0, 255, IMAGE_SHAPE).astype("float32")


def _numpy(tensor):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(tensor))


def _gradient(function, x):
    """d sum(function(x)) / dx with the current backend's own autodiff."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        return np.asarray(jax.grad(lambda t: jnp.sum(function(t)))(jnp.asarray(x)))
    if backend == "torch":
        import torch

        tensor = torch.tensor(x, requires_grad=True)
        torch.sum(function(tensor)).backward()
        return tensor.grad.detach().cpu().numpy()
    import tensorflow as tf

    tensor = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(tensor)
        total = tf.reduce_sum(function(tensor))
    return tape.gradient(total, tensor).numpy()


def argmax_layer_outputs():
    """The argmax pooling and unpooling layers on tie-rich odd-sized input: indices, values, gradients."""
    from keras import ops

    from kerazoo.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D

    rng = np.random.default_rng(3)
    # Small integers give exact ties in most windows; odd height and width give partial windows.
    x = rng.integers(0, 4, (2, 7, 9, 3)).astype("float32")
    x[1] += rng.uniform(0, 1, x[1].shape).astype("float32")  # and one image without ties
    pool, unpool = MaxPoolingWithArgmax2D(2), MaxUnpooling2D(2)
    pooled, indices = pool(x)
    pooled, indices = _numpy(pooled), _numpy(indices)
    pool_weights = rng.normal(size=pooled.shape).astype("float32")
    unpool_weights = rng.normal(size=x.shape).astype("float32")
    return {
        "x": x, "pool_weights": pool_weights, "unpool_weights": unpool_weights,
        "pooled": pooled,
        "indices": indices,
        "unpooled": _numpy(unpool([pooled, indices, x])),
        # keras.ops.multiply, not `*`: torch's tensor times a NumPy array goes through NumPy (no gradient).
        "pool_gradient": _gradient(lambda t: ops.multiply(pool(t, training=True)[0], pool_weights), x),
        "unpool_gradient": _gradient(lambda v: ops.multiply(unpool([v, indices, x]), unpool_weights), pooled),
    }


def write_tensorflow_references(work_dir):
    """On TensorFlow: weights, a `.keras` file, a preset and the reference outputs, into `work_dir`."""
    import keras

    import kerazoo

    work_dir = Path(work_dir)
    images, outputs = _images(), {}
    for key in MODELS:
        keras.utils.set_random_seed(0)
        model = _create(key)
        model.save_weights(work_dir / f"{key}.weights.h5")
        outputs[key] = _numpy(model(images, training=False))
        if key == SAVED_MODEL:
            model.save(work_dir / f"{key}.keras")
            kerazoo.save_to_preset(model, work_dir / f"{key}_preset", {"description": "written on TensorFlow"})
    np.savez(work_dir / "models.npz", images=images, **outputs)
    np.savez(work_dir / "layers.npz", **argmax_layer_outputs())
    fits = {policy: _fit(policy, work_dir, write_reference=True) for policy in FIT_POLICIES}
    (work_dir / "fit_tensorflow.json").write_text(json.dumps(fits))


def _parity(reference, outputs):
    diff = float(np.max(np.abs(outputs.astype("float64") - reference)))
    span = float(np.max(reference) - np.min(reference)) or 1.0
    return {"max_relative_diff": diff / span,
            "argmax_agreement": float(np.mean(np.argmax(outputs, -1) == np.argmax(reference, -1)))}


FIT_POLICIES = ("float32", "mixed_bfloat16")
# Fit on another backend against the same fit on TensorFlow (same weights, same kerazoo batches, plain SGD, so
# an update is the gradient times the learning rate): the epoch's loss and the change of all weights together,
# |update - TensorFlow's| / |TensorFlow's|. Measured on torch and JAX: loss within 1e-7 and 7e-3 relative, updates
# 8e-7 and (bfloat16) 0.06 on torch, 0.25 on JAX, whose bfloat16 head bias moved 0.7x apart.
FIT_LOSS_RTOL = {"float32": 1e-4, "mixed_bfloat16": 2e-2}
FIT_UPDATE_RTOL = {"float32": 1e-4, "mixed_bfloat16": 0.5}


def _fit(dtype_policy, work_dir, write_reference=False):
    """Two SGD steps of SegNet-Basic on kerazoo.data's shapes under `dtype_policy`.

    On TensorFlow (`write_reference`) it writes the starting weights for the other backends; elsewhere it
    starts from them. It returns the epoch's figures, the batches' sums and each trainable weight's change.
    """
    import keras

    import kerazoo

    work_dir = Path(work_dir)
    initial = work_dir / f"fit_{dtype_policy}_initial.weights.h5"
    keras.mixed_precision.set_global_policy(dtype_policy)
    try:
        keras.utils.set_random_seed(0)
        data = kerazoo.data.load("shapes", "train", batch_size=2, image_size=(32, 32), num_examples=4, shuffle=False,
                                 augment=False)
        model = kerazoo.create_model("segnet_basic", num_classes=4, input_shape=(32, 32, 3), filters=8, depth=2)
        if write_reference:
            model.save_weights(initial)
        else:
            model.load_weights(initial)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=kerazoo.losses.SegmentationLoss(),
                      metrics=[kerazoo.metrics.MeanIoU(num_classes=4)])
        # Unshuffled: on torch Keras draws a pass of a tf.data set before training, so a reshuffling pipeline would
        # give it other batches than TensorFlow's fit. The batches' sums show both saw the same data.
        batches = [(np.asarray(x, "float64").sum(axis=(1, 2, 3)).tolist(), np.asarray(y).sum(axis=(1, 2)).tolist())
                   for x, y in data.take(2)]
        before = [_numpy(w).copy() for w in model.trainable_weights]
        history = model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
        updates = {w.path: _numpy(w) - b for b, w in zip(before, model.trainable_weights)}
        return {"loss": [float(v) for v in history.history["loss"]],
                "mean_iou": [float(v) for v in history.history["mean_iou"]], "batches": batches,
                "compute_dtypes": sorted({layer.compute_dtype for layer in model.layers}),
                "weights_changed": sum(bool(np.any(update != 0)) for update in updates.values()),
                "weights_total": len(before), "updates": {path: u.tolist() for path, u in updates.items()}}
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _export(model, out_dir, images):
    """kerazoo.export on this backend: ONNX through Keras' exporter; SavedModel and TFLite refused."""
    from kerazoo.export import ExportError, export

    found = {}
    for fmt in ("saved_model", "tflite"):
        try:
            export(model, out_dir / fmt, formats=[fmt], sample_inputs=images, latency_runs=0, verbose=False)
            found[fmt] = {"error": None}
        except ExportError as error:
            found[fmt] = {"error": str(error), "written": sorted(p.name for p in (out_dir / fmt).glob("*"))}
    try:
        report = export(model, out_dir / "onnx", formats=["onnx"], sample_inputs=images, latency_runs=0,
                        verbose=False)
        onnx_file = report.get("onnx")
        found["onnx"] = {"error": onnx_file.error, "passed": onnx_file.passed, "notes": onnx_file.notes,
                         "relative_diff": onnx_file.relative_diff, "argmax_agreement": onnx_file.argmax_agreement,
                         "exists": os.path.exists(onnx_file.path)}
    except ExportError as error:
        found["onnx"] = {"error": str(error), "passed": False}
    return found


def child_main(work_dir):
    """Run under `KERAS_BACKEND=jax` or `torch`: compares with TensorFlow's references, writes results.json."""
    import keras

    import kerazoo

    work_dir = Path(work_dir)
    results = {"backend": keras.backend.backend()}
    reference = np.load(work_dir / "models.npz")
    images = reference["images"]
    results["models"] = {}
    for key in MODELS:
        model = _create(key)
        if key == SAVED_MODEL:  # kerazoo builds it without TensorFlow (Keras' serialization imports it later,
            # e.g. when fuse_batch_norm clones a Keras Applications encoder)
            results["tensorflow_imported_by_build"] = "tensorflow" in sys.modules
        model.load_weights(work_dir / f"{key}.weights.h5")
        results["models"][key] = _parity(reference[key], _numpy(model(images, training=False)))
        del model
    loaded = keras.saving.load_model(work_dir / f"{SAVED_MODEL}.keras")
    results["keras_file"] = _parity(reference[SAVED_MODEL], _numpy(loaded(images, training=False)))
    preset = kerazoo.from_preset(str(work_dir / f"{SAVED_MODEL}_preset"))
    results["preset"] = _parity(reference[SAVED_MODEL], _numpy(preset(images, training=False)))

    expected, found = np.load(work_dir / "layers.npz"), argmax_layer_outputs()
    results["layers"] = {
        name: {"equal": bool(np.array_equal(expected[name], found[name])),
               "max_abs_diff": float(np.max(np.abs(expected[name].astype("float64") - found[name])))}
        for name in expected.files}
    results["fit"] = {policy: _fit(policy, work_dir) for policy in FIT_POLICIES}
    results["export"] = _export(loaded, work_dir / "export", images)
    (work_dir / "results.json").write_text(json.dumps(results, indent=2))


@pytest.fixture(scope="module")
def tensorflow_references(tmp_path_factory):
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the references are written on TensorFlow; this file compares the other backends to it")
    work_dir = tmp_path_factory.mktemp("tensorflow_references")
    write_tensorflow_references(work_dir)
    return work_dir


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def backend_results(request, tensorflow_references, tmp_path_factory):
    """The child's results.json for one backend (skipped when that backend is not installed)."""
    backend = request.param
    require_extra(BACKENDS[backend], backend)
    work_dir = tmp_path_factory.mktemp(f"on_{backend}")
    for path in tensorflow_references.iterdir():
        (work_dir / path.name).symlink_to(path)
    repository = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, KERAS_BACKEND=backend,
               PYTHONPATH=os.pathsep.join(p for p in (repository, os.environ.get("PYTHONPATH")) if p))
    child = subprocess.run([sys.executable, __file__, str(work_dir)], env=env, capture_output=True, text=True,
                           timeout=CHILD_TIMEOUT_S)
    assert child.returncode == 0, f"the {backend} run failed:\n{child.stderr[-6000:]}"
    results = json.loads((work_dir / "results.json").read_text())
    assert results["backend"] == backend
    return results


def _assert_parity(parity, what):
    assert parity["max_relative_diff"] <= MAX_RELATIVE_DIFF, f"{what}: {parity}"
    assert parity["argmax_agreement"] >= MIN_AGREEMENT, f"{what}: {parity}"


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(MODELS))
def test_tensorflow_weights_give_the_same_outputs(backend_results, key):
    _assert_parity(backend_results["models"][key], f"{key} on {backend_results['backend']}")


@pytest.mark.slow
def test_building_a_model_needs_no_tensorflow(backend_results):
    assert backend_results["tensorflow_imported_by_build"] is False


@pytest.mark.slow
def test_argmax_pooling_and_unpooling_match_tensorflow(backend_results):
    layers = backend_results["layers"]
    assert layers["indices"]["equal"], layers
    for name in ("pooled", "unpooled"):
        assert layers[name]["equal"], layers  # values are moved, never computed: exactly equal
    for name in ("pool_gradient", "unpool_gradient"):
        assert layers[name]["max_abs_diff"] <= GRADIENT_ATOL, layers


@pytest.mark.slow
def test_keras_file_and_preset_written_on_tensorflow_load(backend_results):
    _assert_parity(backend_results["keras_file"], ".keras file")
    _assert_parity(backend_results["preset"], "preset")


@pytest.mark.slow
@pytest.mark.parametrize("policy", FIT_POLICIES)
def test_fit_on_kerazoo_data(backend_results, tensorflow_references, policy):
    fit = backend_results["fit"][policy]
    figures = {key: value for key, value in fit.items() if key != "updates"}
    assert all(np.isfinite(fit["loss"])), figures
    assert fit["weights_changed"] == fit["weights_total"], figures
    # The head keeps float32 outputs; the convolutions compute in bfloat16 under mixed precision.
    assert ("bfloat16" in fit["compute_dtypes"]) == (policy == "mixed_bfloat16"), figures
    # The same training as on TensorFlow: the same kerazoo batches, loss and mIoU, and the weights moved as far in
    # the same direction (the backend's gradients of kerazoo's layers and loss).
    reference = json.loads((tensorflow_references / "fit_tensorflow.json").read_text())[policy]
    assert fit["batches"] == reference["batches"]
    np.testing.assert_allclose(fit["loss"], reference["loss"], rtol=FIT_LOSS_RTOL[policy])
    np.testing.assert_allclose(fit["mean_iou"], reference["mean_iou"], atol=0.02)
    assert sorted(fit["updates"]) == sorted(reference["updates"])
    expected = np.concatenate([np.ravel(reference["updates"][path]) for path in sorted(reference["updates"])])
    found = np.concatenate([np.ravel(fit["updates"][path]) for path in sorted(reference["updates"])])
    relative = np.linalg.norm(found - expected) / np.linalg.norm(expected)
    assert relative <= FIT_UPDATE_RTOL[policy], relative


@pytest.mark.slow
def test_export_per_backend(backend_results):
    export = backend_results["export"]
    for fmt in ("saved_model", "tflite"):  # refused before anything is written, naming the backend that can
        assert export[fmt]["error"] and "KERAS_BACKEND=tensorflow" in export[fmt]["error"], export
        assert export[fmt]["written"] == [], export
    if backend_results["backend"] == "torch" or export["onnx"]["passed"]:
        assert export["onnx"]["passed"] and export["onnx"]["exists"], export
        assert export["onnx"]["relative_diff"] <= MAX_RELATIVE_DIFF, export
    else:  # JAX's exporter needs jax2onnx, not one of kerazoo's extras: the error says so and where else
        assert "jax2onnx" in export["onnx"]["error"] and "KERAS_BACKEND=torch" in export["onnx"]["error"], export


def test_argmax_layer_reference_matches_numpy():
    """The TensorFlow reference the other backends are held to is itself right (numpy, by hand)."""
    found = argmax_layer_outputs()
    x, pool_weights, unpool_weights = found["x"], found["pool_weights"], found["unpool_weights"]
    padded = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="edge")  # 7x9 -> 8x10, edge repeated
    # (B, 4, 5, C, 4): each 2x2 window in row-major order.
    windows = padded.reshape(2, 4, 2, 5, 2, 3).transpose(0, 1, 3, 5, 2, 4).reshape(2, 4, 5, 3, 4)
    np.testing.assert_array_equal(found["indices"], np.argmax(windows, axis=-1))  # the first maximum wins
    np.testing.assert_array_equal(found["pooled"], np.max(windows, axis=-1))
    # The gradient goes to the selected pixel only; unpooling's gradient reads the weight there back.
    pool_gradient = np.zeros_like(padded)
    unpool_gradient = np.zeros_like(found["pooled"])
    padded_weights = np.pad(unpool_weights, ((0, 0), (0, 1), (0, 1), (0, 0)))
    for (b, i, j, c), index in np.ndenumerate(found["indices"]):
        row, col = 2 * i + index // 2, 2 * j + index % 2
        pool_gradient[b, row, col, c] += pool_weights[b, i, j, c]
        unpool_gradient[b, i, j, c] = padded_weights[b, row, col, c]
    np.testing.assert_allclose(found["pool_gradient"], pool_gradient[:, :7, :9], atol=1e-6)
    np.testing.assert_allclose(found["unpool_gradient"], unpool_gradient, atol=1e-6)


if __name__ == "__main__":
    child_main(sys.argv[1])
