"""kerazoo.optimizers: Adam and AdamW with a fused update on TensorFlow, checked against Keras' own."""

import keras
import numpy as np
import pytest

import kerazoo
from kerazoo import optimizers
from kerazoo.training import make_optimizer

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
    step = (lambda grads: optimizer.apply(grads, variables))
    op_types = set()
    if traced:
        step = tf.function(step)
        graph = step.get_concrete_function([tf.TensorSpec(shape, "float32") for shape in SHAPES]).graph
        op_types = [op.type for op in graph.get_operations()]
    for grads in gradients:
        if strategy:
            strategy.run(step, args=([tf.constant(g) for g in grads],))
        else:
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


@pytest.mark.parametrize("case", ["amsgrad", "strategy"])
def test_keras_update_runs_where_the_kernel_does_not_apply(case):
    options = {"amsgrad": True} if case == "amsgrad" else {}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"]) if case == "strategy" else None
    ours, ops_traced = _train(optimizers.Adam, traced=strategy is None, strategy=strategy, **options)
    theirs, _ = _train(keras.optimizers.Adam, traced=strategy is None, strategy=strategy, **options)
    assert "ResourceApplyAdam" not in ops_traced
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


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
