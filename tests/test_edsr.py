"""EDSR (Lim et al. 2017): its parameter count by the paper's layout, its residual blocks, options and errors."""

import keras
import numpy as np
import pytest

import kerazoo

pytestmark = pytest.mark.usefixtures("fresh_keras_state")  # tests/conftest.py


def conv_parameters(in_channels, out_channels, kernel=3):
    return kernel * kernel * in_channels * out_channels + out_channels


@pytest.mark.parametrize("filters, num_blocks, scale", [(64, 16, 2), (16, 3, 4)])
def test_parameters_follow_the_papers_layout(filters, num_blocks, scale):
    model = kerazoo.create_model("edsr", task="super_resolution", scale=scale, filters=filters, num_blocks=num_blocks)
    expected = (conv_parameters(3, filters)  # entry convolution
                + 2 * num_blocks * conv_parameters(filters, filters)  # two per residual block
                + conv_parameters(filters, filters)  # the body's last, before the long skip
                + conv_parameters(filters, 3 * scale**2))  # the head: to depth-to-space
    assert model.count_params() == expected
    if (filters, num_blocks) == (64, 16):
        # The authors' EDSR-baseline x2 has 1.37M (EDSR-PyTorch's model table): its upsampler is a 64->256
        # convolution, pixel shuffle and a 64->3 tail where ours is one 64->12 convolution.
        authors = expected - conv_parameters(64, 12) + conv_parameters(64, 256) + conv_parameters(64, 3)
        assert abs(authors - 1.37e6) / 1.37e6 < 0.005


def test_every_layer_runs_at_the_input_resolution():
    model = kerazoo.create_model("edsr", task="super_resolution", scale=3, filters=8, num_blocks=2)
    model(np.zeros((1, 11, 13, 3), "float32"))
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convolutions) == 1 + 2 * 2 + 1 + 1
    assert all(tuple(layer.output.shape[1:3]) == (None, None) and layer.strides == (1, 1) for layer in convolutions)


def test_a_zeroed_branch_passes_its_block_input_through():
    model = kerazoo.create_model("edsr", task="denoise", in_channels=1, filters=4, num_blocks=2)
    layer = model.get_layer("block2_conv2")
    layer.set_weights([np.zeros_like(weight) for weight in layer.get_weights()])
    x = np.random.default_rng(0).uniform(0, 255, (1, 9, 10, 1)).astype("float32")
    probe = keras.Model(model.input, [model.get_layer("block1_add").output, model.get_layer("block2_add").output])
    before, after = probe(x)
    np.testing.assert_array_equal(np.asarray(after), np.asarray(before))


def test_residual_scaling_scales_each_branch():
    plain = kerazoo.create_model("edsr", filters=4, num_blocks=2)
    assert not any(isinstance(layer, keras.layers.Rescaling) and layer.name.endswith("_scaling")
                   for layer in plain.layers)
    scaled = kerazoo.create_model("edsr", filters=4, num_blocks=2, residual_scaling=0.1)
    assert [scaled.get_layer(f"block{block}_scaling").get_config()["scale"] for block in (1, 2)] == [0.1, 0.1]
    assert scaled.get_config()["residual_scaling"] == 0.1  # kept for the create_model call that rebuilds it


@pytest.mark.parametrize("options, message", [
    ({"filters": 0}, "filters must be a positive int .*got 0"),
    ({"num_blocks": 2.5}, "num_blocks must be a positive int .*got 2.5"),
    ({"residual_scaling": 0}, "residual_scaling must be a positive number .*got 0"),
    ({"residual_scaling": True}, "residual_scaling must be a positive number .*got True"),
])
def test_bad_options_name_the_value_and_the_papers(options, message):
    with pytest.raises(ValueError, match=message):
        kerazoo.create_model("edsr", **options)
