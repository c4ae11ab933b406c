"""Speed features that change no result: the optimizer built at compile time (one trace of the first
training step instead of two) and the bfloat16 note of `kerazoo train`."""

import keras
import numpy as np
import pytest

import kerazoo
from kerazoo.models.model import ZooModel
from kerazoo.utils.cpu import bfloat16_support
from kerazoo.training.train import train

TINY_SEGNET = dict(filters=4, kernel_size=3, depth=2, input_shape=(32, 32, 3))


def _model_and_data(compile_with):
    keras.utils.set_random_seed(0)
    model = kerazoo.create_model("segnet_basic", num_classes=3, **TINY_SEGNET)
    traces = []
    train_step = model.train_step
    model.train_step = lambda data: (traces.append(1), train_step(data))[1]  # runs once per trace
    compile_with(model, optimizer=keras.optimizers.Adam(1e-2),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    masks = rng.integers(0, 3, (4, 32, 32)).astype("int32")
    return model, traces, images, masks


def test_compile_builds_the_optimizer_so_the_first_step_is_traced_once():
    prebuilt, prebuilt_traces, images, masks = _model_and_data(ZooModel.compile)
    assert prebuilt.optimizer.built
    lazy, lazy_traces, _, _ = _model_and_data(keras.Model.compile)
    assert not lazy.optimizer.built
    for model in (prebuilt, lazy):
        model.fit(images, masks, batch_size=2, epochs=2, shuffle=False, verbose=0)
    assert len(lazy_traces) == 2  # Keras' own path: one trace that makes variables, then the real one
    assert len(prebuilt_traces) == 1
    # Same steps, same weights: building early changes when the variables are made, not what they hold.
    for built_early, built_late in zip(prebuilt.weights, lazy.weights):
        np.testing.assert_allclose(built_early.numpy(), built_late.numpy(), rtol=1e-5, atol=1e-6)


def test_train_says_what_the_cpu_offers_bfloat16(tmp_path, capsys):
    train("segnet_basic", epochs=1, output_dir=tmp_path, mixed_precision="mixed_bfloat16", verbose=2,
          model_options=dict(filters=4, kernel_size=3, depth=2), dataset="shapes", image_size=(32, 32),
          num_examples=8, val_examples=8, batch_size=8, tensorboard=False)
    assert f"kerazoo train: {bfloat16_support().describe()}" in capsys.readouterr().out


def test_predict_of_one_small_batch_skips_the_data_pipeline_with_the_same_outputs(monkeypatch):
    keras.utils.set_random_seed(0)
    model = kerazoo.create_model("segnet_basic", num_classes=3, **TINY_SEGNET)
    images = np.random.default_rng(2).uniform(0, 255, (40, 32, 32, 3)).astype("float32")
    reference = keras.Model.predict(model, images, batch_size=8, verbose=0)
    pipeline_calls = []
    keras_predict = keras.Model.predict
    monkeypatch.setattr(keras.Model, "predict",
                        lambda self, *args, **kwargs: (pipeline_calls.append(1), keras_predict(self, *args, **kwargs))[1])
    np.testing.assert_allclose(model.predict(images[:1], verbose=0), reference[:1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.predict(images[:8], batch_size=8), reference[:8], rtol=1e-5, atol=1e-5)
    assert pipeline_calls == []
    # More than one batch, or callbacks: Keras' own predict, as before.
    np.testing.assert_allclose(model.predict(images, batch_size=8, verbose=0), reference, rtol=1e-5, atol=1e-5)
    assert pipeline_calls == [1]
