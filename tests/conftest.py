"""Shared test fixtures: where the real data sets are, and a fresh Keras state for each test.

Tests never look for data beside the checkout: they read `KERAZOO_DATA` (the Makefile sets it to
`../shared/data` when that folder exists). A test that needs real data skips when it is absent,
unless `KERAZOO_REQUIRE_DATA=1`, which turns the skip into a failure (for CI runs that must use it).

Backends: `pytest --keras-backend jax tests/test_layers.py` (or `KERAS_BACKEND=jax pytest ...`) runs the
tests on JAX or torch; tests that need TensorFlow itself (tf.GradientTape, TFLite, tf2onnx) carry
`@pytest.mark.tensorflow_only`, or are listed in `TENSORFLOW_ONLY`, and are skipped there with the reason.
"""

import os
import sys
from pathlib import Path

import pytest

REQUIRE_VAR = "KERAZOO_REQUIRE_DATA"


def _find_shared_data(datasets) -> Path:
    """The `KERAZOO_DATA` root holding every folder in `datasets`; skips (or fails) otherwise."""
    root = os.environ.get("KERAZOO_DATA")
    missing = ([] if root else ["KERAZOO_DATA is not set"]) + [
        f"{Path(root) / name} is missing" for name in datasets if root and not (Path(root) / name).is_dir()]
    if not missing:
        return Path(root)
    message = f"real data not found: {'; '.join(missing)} (set KERAZOO_DATA to the data root)"
    if os.environ.get(REQUIRE_VAR, "").strip().lower() in ("1", "true", "yes", "on"):
        pytest.fail(f"{message}, and {REQUIRE_VAR} is set", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def shared_data_dir():
    """A function: `shared_data_dir("camvid", ...)` returns the data root holding those folders.

    It skips the test when they are absent, or fails it when `KERAZOO_REQUIRE_DATA=1`.
    """
    return lambda *datasets: _find_shared_data(datasets)


@pytest.fixture
def fresh_keras_state():
    """Seeds Keras (0) before the test; afterwards restores the float32 policy, clears the session (auto-generated
    layer names start afresh) and frees what the test built (a VGG model holds gigabytes).

    A test file takes it for every test with `pytestmark = pytest.mark.usefixtures("fresh_keras_state")`."""
    import gc

    import keras

    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()
    gc.collect()


BACKENDS = ("tensorflow", "jax", "torch")
# Tests of the layer, model and preset files that use TensorFlow directly: node id -> why.
TENSORFLOW_ONLY = {
    "tests/test_layers.py::test_unpooling_gradient_flows_to_pooled_values":
        "uses tf.GradientTape (tests/test_backends.py compares the gradients on every backend)",
    "tests/test_layers.py::test_layers_convert_to_tflite_with_builtin_ops_only_and_match":
        "TFLite conversion needs the TensorFlow backend",
    "tests/test_layers.py::test_layers_convert_to_a_valid_onnx_graph_that_runs":
        "tf2onnx converts TensorFlow graphs (the other backends export through Keras: tests/test_backends.py)",
    # Not TensorFlow's API but its seeded weights: another backend draws other random weights, and with
    # JAX's draw the float16 preset's SegNet-Basic logits moved by 8.7% of their range (argmax unpooling
    # can move a near-tied value by a whole pixel).
    "tests/test_presets.py::test_float16_storage_is_smaller_and_loads_as_float32":
        "its 1% bound holds for TensorFlow's seeded random weights, not for other backends' draws",
}


def pytest_addoption(parser):
    parser.addoption("--keras-backend", choices=BACKENDS, default=None,
                     help="run the tests on this Keras backend (sets KERAS_BACKEND before Keras is imported)")


def pytest_configure(config):
    config.addinivalue_line("markers", "tensorflow_only: needs the TensorFlow backend; skipped on JAX and torch")
    backend = config.getoption("--keras-backend")
    if backend is None:
        return
    loaded = sys.modules.get("keras")
    if loaded is not None and loaded.backend.backend() != backend:
        raise pytest.UsageError(f"--keras-backend {backend}: Keras was already imported on "
                                f"{loaded.backend.backend()!r}; set KERAS_BACKEND={backend} instead")
    os.environ["KERAS_BACKEND"] = backend


def pytest_collection_modifyitems(config, items):
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        return
    for item in items:
        reason = TENSORFLOW_ONLY.get(item.nodeid.split("[")[0])
        if reason is None and item.get_closest_marker("tensorflow_only") is not None:
            reason = item.get_closest_marker("tensorflow_only").kwargs.get("reason", "needs TensorFlow itself")
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"TensorFlow backend only ({backend} here): {reason}"))
