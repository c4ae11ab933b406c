"""DRUNet (Zhang et al. 2021): its parameter count by the paper's layout, its scales and skips, options and errors."""

import keras
import numpy as np
import pytest

import kerazoo

pytestmark = pytest.mark.usefixtures("fresh_keras_state")  # tests/conftest.py


def drunet_parameters(filters, num_blocks, levels, in_channels, out_channels, head_bias=True):
    widths = [filters * 2**level for level in range(levels)]
    blocks = sum(2 * num_blocks * 9 * width * width for width in widths)  # encoder side and body
    blocks += sum(2 * num_blocks * 9 * width * width for width in widths[:-1])  # decoder side
    resampling = 2 * sum(4 * low * high for low, high in zip(widths, widths[1:]))  # stride-2 and transposed, 2x2
    return (9 * in_channels * widths[0] + blocks + resampling
            + 9 * widths[0] * out_channels + (out_channels if head_bias else 0))


@pytest.mark.parametrize("filters, num_blocks, levels, channels", [(64, 4, 4, 3), (8, 2, 4, 1), (32, 1, 3, 1)])
def test_parameters_follow_the_papers_layout(filters, num_blocks, levels, channels):
    model = kerazoo.create_model("drunet", task="denoise", in_channels=channels, filters=filters,
                                 num_blocks=num_blocks, levels=levels)
    assert model.count_params() == drunet_parameters(filters, num_blocks, levels, channels, channels)
    if (filters, num_blocks, levels) == (64, 4, 4):
        # The paper's colour DRUNet, 32,640,960 parameters, also takes the noise-level map (a fourth input
        # channel) and has no bias in its last convolution.
        assert drunet_parameters(64, 4, 4, 4, 3, head_bias=False) == 32_640_960


def test_four_scales_with_added_skips_at_any_size():
    model = kerazoo.create_model("drunet", task="denoise", in_channels=1, filters=4, num_blocks=1)
    sizes = {layer.name: layer.output.shape for layer in model.layers}
    probe = keras.Model(model.input, [model.get_layer(name).output
                                      for name in ("down0_stride", "down1_stride", "down2_stride", "body_block1_add")])
    shapes = [tuple(output.shape[1:]) for output in probe(np.zeros((1, 17, 30, 1), "float32"))]
    assert shapes == [(12, 16, 8), (6, 8, 16), (3, 4, 32), (3, 4, 32)]  # padded to 24x32, then halved 3 times
    assert all(isinstance(model.get_layer(name), keras.layers.Add) for name in ("up2_skip", "up1_skip", "tail_skip"))
    assert not any(isinstance(layer, keras.layers.Concatenate) for layer in model.layers)
    assert sizes["crop_to_input"][-1] == 4
    assert model.predict(np.zeros((1, 17, 30, 1), "float32"), verbose=0).shape == (1, 17, 30, 1)
    shallow = kerazoo.create_model("drunet", task="denoise", in_channels=1, filters=4, num_blocks=1, levels=2)
    strided = [layer.name for layer in shallow.layers if getattr(layer, "strides", None) == (2, 2)]
    assert strided == ["down0_stride", "up0_upconv"]
    assert shallow.predict(np.zeros((1, 17, 30, 1), "float32"), verbose=0).shape == (1, 17, 30, 1)


def test_a_zeroed_branch_passes_its_block_input_through():
    model = kerazoo.create_model("drunet", task="denoise", in_channels=1, filters=4, num_blocks=2)
    layer = model.get_layer("up0_block2_conv2")
    layer.set_weights([np.zeros_like(weight) for weight in layer.get_weights()])
    x = np.random.default_rng(0).uniform(0, 255, (1, 16, 16, 1)).astype("float32")
    probe = keras.Model(model.input, [model.get_layer("up0_block1_add").output,
                                      model.get_layer("up0_block2_add").output])
    before, after = probe(x)
    np.testing.assert_array_equal(np.asarray(after), np.asarray(before))


def test_no_convolution_has_a_bias_but_the_head():
    model = kerazoo.create_model("drunet", task="denoise", in_channels=1, filters=4, num_blocks=1)
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.name for layer in convolutions if layer.use_bias] == ["head_conv"]


@pytest.mark.parametrize("options, message", [
    ({"filters": 0}, "filters must be a positive int .*64.*got 0"),
    ({"num_blocks": 2.5}, "num_blocks must be a positive int .*4.*got 2.5"),
    ({"levels": 0}, "levels must be a positive int .*4.*got 0"),
])
def test_bad_options_name_the_value_and_the_papers(options, message):
    with pytest.raises(ValueError, match=message):
        kerazoo.create_model("drunet", **options)
