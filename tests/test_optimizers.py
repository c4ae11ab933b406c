"""kerazoo.optimizers: Adam and AdamW with a fused update on TensorFlow, checked against Keras' own."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import kerazoo
from kerazoo import optimizers
from kerazoo.training.train import make_optimizer

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the fused kernel is TensorFlow's")

SHAPES = [(3, 3, 4, 8), (8,), (5,)]


def _train(optimizer_class, steps=4, traced=True, strategy=None, **options):
    """Variables and slots after `steps` updates with fixed random gradients, and the op types traced."""
    rng = np.random.default_rng(0)
    initial = [rng.normal(size=shape).astype("float32") for shape in SHAPES]
    gradients = [[rng.normal(size=shape).astype("float32") for shape in SHAPES] for _ in range(steps)]
    scope = strategy.scope() if strategy else tf.init_scope()
    with scope:
        variables = [keras.Variable(value) for value in initial]
        optimizer = optimizer_class(learning_rate=keras.optimizers.schedules.CosineDecay(1e-2, 10), **options)
        optimizer.build(variables)
    def step(grads):
        if strategy:
            return strategy.run(lambda g: optimizer.apply(g, variables), args=(grads,))
        return optimizer.apply(grads, variables)

    op_types = []
    if traced:
        step = tf.function(step)
        graph = step.get_concrete_function([tf.TensorSpec(shape, "float32") for shape in SHAPES]).graph
        op_types = [op.type for op in graph.get_operations()]
    for grads in gradients:
        step([tf.constant(g) for g in grads])
    state = [v.numpy() for v in variables] + [v.numpy() for v in optimizer.variables]
    return state, op_types


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("fused, reference, options", [
    (optimizers.Adam, keras.optimizers.Adam, {}),
    (optimizers.Adam, keras.optimizers.Adam, {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-3}),
    (optimizers.AdamW, keras.optimizers.AdamW, {"weight_decay": 0.1}),
])
def test_fused_update_equals_keras(fused, reference, options, traced):
    ours, _ = _train(fused, traced=traced, **options)
    theirs, _ = _train(reference, traced=traced, **options)
    assert len(ours) == len(theirs) == len(SHAPES) + 1 + 2 * len(SHAPES)  # weights, iterations, m and v
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_traced_step_has_one_fused_op_per_variable():
    _, fused_ops = _train(optimizers.Adam, steps=1)
    _, keras_ops = _train(keras.optimizers.Adam, steps=1)
    assert fused_ops.count("ResourceApplyAdam") == len(SHAPES)
    assert "ResourceApplyAdam" not in keras_ops
    assert fused_ops.count("Pow") == 2  # b1^t and b2^t once per step, not once per variable
    assert len(fused_ops) < len(keras_ops) / 2


def test_keras_update_runs_for_amsgrad():
    ours, ops_traced = _train(optimizers.Adam, amsgrad=True)
    theirs, _ = _train(keras.optimizers.Adam, amsgrad=True)
    assert ops_traced and "ResourceApplyAdam" not in ops_traced
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# In a child process: a MirroredStrategy cannot share Keras' global state with the models of this one.
_STRATEGY_SCRIPT = """
import json, keras, numpy as np, tensorflow as tf, kerazoo
from kerazoo import optimizers
keras_calls = []
reference = keras.optimizers.Adam.update_step
keras.optimizers.Adam.update_step = lambda self, *args: (keras_calls.append(1), reference(self, *args))[1]
strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
def fit(optimizer_class):
    keras.utils.set_random_seed(0)
    with strategy.scope():  # the optimizer too: it binds to the strategy it is made in
        model = kerazoo.create_model("segnet_basic", num_classes=3, filters=4, kernel_size=3, depth=2,
                                     input_shape=(16, 16, 3))
        model.compile(optimizer=optimizer_class(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    model.fit(rng.uniform(0, 255, (4, 16, 16, 3)).astype("float32"), rng.integers(0, 3, (4, 16, 16)),
              batch_size=2, epochs=1, shuffle=False, verbose=0)
    return [keras.ops.convert_to_numpy(w) for w in model.weights]
ours = fit(optimizers.Adam)
calls = len(keras_calls)
theirs = fit(keras.optimizers.Adam)
print("RESULT", json.dumps({"keras_calls": calls,
                            "max_difference": max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs))}))
"""


def test_keras_update_runs_inside_a_distribution_strategy(tmp_path):
    script = tmp_path / "strategy.py"
    script.write_text(_STRATEGY_SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout.split("RESULT", 1)[1])
    assert result["keras_calls"] > 0  # the replicas updated through Keras' code, not the kernel
    assert result["max_difference"] < 1e-5


def test_serializes_and_names_map_to_the_fused_classes(tmp_path):
    optimizer = optimizers.AdamW(learning_rate=3e-4, weight_decay=0.05, beta_1=0.85)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is optimizers.AdamW
    assert restored.get_config() == optimizer.get_config()
    assert type(make_optimizer("adam", 1e-3, "cosine", 10)) is optimizers.Adam
    assert type(make_optimizer("adamw", 1e-3, "constant", 10, weight_decay=0.01)) is optimizers.AdamW
    assert type(optimizers.fast_optimizer("sgd")) is str  # other names stay Keras'

    model = kerazoo.create_model("segnet_basic", num_classes=3, filters=4, kernel_size=3, depth=2,
                                 input_shape=(16, 16, 3))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert type(model.optimizer) is optimizers.Adam
    rng = np.random.default_rng(0)
    images, masks = rng.uniform(0, 255, (2, 16, 16, 3)).astype("float32"), rng.integers(0, 3, (2, 16, 16))
    model.fit(images, masks, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer) is optimizers.Adam
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    loaded.fit(images, masks, epochs=1, verbose=0)  # and it goes on training
