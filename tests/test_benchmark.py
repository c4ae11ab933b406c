"""The benchmark harness (kerazoo.benchmark) and its segmentation-models-pytorch peer (kerazoo.peer)."""

import importlib.util
import json
import os
import statistics

import keras
import pytest

from kerazoo import benchmark, cli, peer
from kerazoo.benchmark import Case


def test_forward_flops_count_multiply_adds_twice():
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    outputs = keras.layers.Conv2DTranspose(2, 2, strides=2, use_bias=False)(outputs)
    model = keras.Model(inputs, outputs)
    conv = 2 * 8 * 8 * 4 * 3 * 3 * 3
    transposed = 2 * 8 * 8 * 4 * 2 * 2 * 2  # every input pixel meets the whole 2x2x4x2 kernel
    assert benchmark.forward_flops(model, (8, 8)) == conv + transposed


def test_cases_cross_product_keeps_valid_combinations():
    found = benchmark.cases(["unet", "segnet", "segnet_basic"], ["resnet50", "vgg16"], [(64, 64), (32, 48)],
                            options=[("upsampling", "nearest")])
    labels = [case.label for case in found]
    assert len(found) == 2 * 2 + 1 * 2 + 1 * 2  # unet: both encoders; segnet: vgg16; segnet_basic: no encoder
    assert "unet/resnet50 64x64, upsampling=nearest" in labels
    assert "segnet_basic 32x48, upsampling=nearest" in labels
    assert not any("segnet/resnet50" in label for label in labels)
    with pytest.raises(ValueError, match="no valid case"):
        benchmark.cases(["segnet"], ["resnet50"], [(64, 64)])
    with pytest.raises(ValueError, match="resnet5"):
        benchmark.cases(["unet"], ["resnet5"], [(64, 64)])


def test_cli_rejects_unknown_names(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["benchmark", "--model", "unett"])
    assert exit_info.value.code == 2
    assert "unet" in capsys.readouterr().err


def test_a_measuring_process_that_dies_is_an_error_naming_it():
    with pytest.raises(RuntimeError, match="_exit died"):
        benchmark._in_fresh_process(os._exit, 3)


@pytest.mark.parametrize("kwargs, message", [
    ({"formats": ("tflite",)}, "unknown benchmark format 'tflite'"),
    ({"batch_sizes": (0, 8)}, "batch sizes must be >= 1"),
    ({"runs": 0}, "warmup and runs"),
])
def test_run_rejects_bad_settings_before_measuring(kwargs, message):
    with pytest.raises(ValueError, match=message):
        benchmark.run([Case("segnet_basic", None, (32, 32))], log=lambda *a: None, **kwargs)


FLOAT32_FORMATS = ("keras", "tflite_float32", "onnx")
# The peak is TensorFlow's own float32 matmul rate, which bounds what TensorFlow runs (training, Keras
# inference). Other runtimes' kernels (ONNX Runtime's MLAS, LiteRT's XNNPACK) can beat TensorFlow's matmul:
# measured here, ONNX at 1.10 of it. They get a bound that still catches a factor-2 error in the FLOP count.
RUNTIME_BOUND = {"keras": 1.0, "tflite_float32": 1.5, "onnx": 1.5}


def _assert_float32_fractions_within_peak(measured, peak_gflops):
    """Fractions of peak recomputed from the recorded times: TensorFlow cannot beat its own float32 peak."""
    flops = measured["forward_gflops"] * 1e9
    training = measured["training"]
    assert training["step_seconds"] == statistics.median(training["step_seconds_all"])
    fraction = training["images_per_second"] * benchmark.TRAINING_FLOPS_PER_FORWARD * flops / (peak_gflops * 1e9)
    assert training["fraction_of_peak"] == pytest.approx(fraction, rel=1e-9)
    assert 0 < fraction <= 1
    for fmt in FLOAT32_FORMATS:
        for batch, ms in measured["inference"].get(fmt, {}).get("latency_ms", {}).items():
            fraction = int(batch) * flops / (ms / 1000) / (peak_gflops * 1e9)
            assert measured["inference"][fmt]["fraction_of_peak"][batch] == pytest.approx(fraction, rel=1e-9)
            assert 0 < fraction <= RUNTIME_BOUND[fmt], (fmt, batch)


@pytest.mark.benchmark
def test_run_measures_every_format_in_fresh_processes(tmp_path):
    case = Case("segnet_basic", None, (32, 48))
    results = benchmark.run([case], num_classes=3, batch_sizes=(1, 2), warmup=1, runs=2,
                            json_path=tmp_path / "b.json", markdown_path=tmp_path / "b.md", log=lambda *a: None)
    assert results["peak_gflops"] > 1
    (measured,) = results["cases"]
    model = case.create_model(3)
    assert measured["params"] == model.count_params()
    assert measured["forward_gflops"] * 1e9 == benchmark.forward_flops(model, (32, 48))
    training = measured["training"]
    assert len(training["step_seconds_all"]) == 2 and training["images_per_second"] > 0
    _assert_float32_fractions_within_peak(measured, results["peak_gflops"])
    assert set(measured["inference"]) == set(benchmark.FORMATS)
    for fmt, inference in measured["inference"].items():
        assert "error" not in inference, (fmt, inference)
        assert inference["latency_ms"]["1"] > 0, fmt
        assert inference["size_bytes"] > 0 and inference["peak_rss_mib"] > 0
    assert measured["inference"]["tflite_int8"]["size_bytes"] < measured["inference"]["tflite_float32"]["size_bytes"]
    assert json.loads((tmp_path / "b.json").read_text())["cases"][0]["case"] == case.label
    table = (tmp_path / "b.md").read_text()
    for fmt in benchmark.FORMATS:
        assert f"| {case.label} | {fmt} |" in table


@pytest.mark.parametrize("case, reason", [
    (Case("segnet", "vgg16", (64, 64)), "no equivalent"),
    (Case("unet", "vgg16", (64, 64), (("upsampling", "nearest"),)), "encoder 'vgg16'"),
    (Case("unet", "mobilenetv2", (64, 64), (("upsampling", "nearest"),)), "encoder 'mobilenetv2'"),
    (Case("unet", "resnet50", (64, 64)), "upsampling=nearest"),
    (Case("unet", "resnet50", (64, 64), (("upsampling", "nearest"), ("batch_norm", False))), "batch_norm"),
])
def test_peer_names_why_a_case_has_no_peer(case, reason):
    assert reason in peer.unavailable_reason(case)


def test_peer_skipped_cases_are_reported_not_measured(tmp_path):
    results = benchmark.run([Case("segnet_basic", None, (32, 32))], num_classes=2, formats=("keras",),
                            batch_sizes=(1,), warmup=1, runs=1, peer=True, log=lambda *a: None)
    assert "no equivalent" in results["cases"][0]["peer"]["skipped"]
    assert "peer_ratio" not in results["cases"][0]
    assert "skipped:" in benchmark.markdown(results)


@pytest.mark.benchmark
@pytest.mark.peer
@pytest.mark.skipif(importlib.util.find_spec("segmentation_models_pytorch") is None,
                    reason='needs pip install "kerazoo[peer]"')
def test_peer_ratio_side_by_side():
    case = Case("unet", "resnet50", (64, 64), (("upsampling", "nearest"), ("decoder_filters", (64, 32, 16, 16, 8))))
    assert peer.unavailable_reason(case) is None
    results = benchmark.run([case], num_classes=2, formats=("keras",), batch_sizes=(1, 2), warmup=1, runs=2,
                            peer=True, log=lambda *a: None)
    (measured,) = results["cases"]
    counterpart = measured["peer"]
    assert counterpart["description"] == "smp.Unet(resnet50, decoder_channels=(64, 32, 16, 16, 8))"
    # Same architecture: parameter counts within 2% (smp's head is 3x3, kerazoo's 1x1) and FLOPs within 35%
    # (TensorFlow's profiler also counts batch norm and additions; torch's counter only convolutions).
    assert counterpart["params"] == pytest.approx(measured["params"], rel=0.02)
    assert counterpart["forward_flops"] == pytest.approx(measured["forward_gflops"] * 1e9, rel=0.35)
    ratios = measured["peer_ratio"]
    assert set(ratios) == {"training_step", "inference_batch1", "inference_batch2"}
    # Each ratio is kerazoo's recorded time over the peer's (< 1: kerazoo is faster).
    assert ratios["training_step"] == pytest.approx(
        measured["training"]["step_seconds"] / counterpart["training"]["step_seconds"], rel=1e-9)
    for batch in ("1", "2"):
        assert ratios[f"inference_batch{batch}"] == pytest.approx(
            measured["inference"]["keras"]["latency_ms"][batch] / counterpart["inference"]["latency_ms"][batch],
            rel=1e-9)
    assert counterpart["training"]["step_seconds"] == statistics.median(counterpart["training"]["step_seconds_all"])
    _assert_float32_fractions_within_peak(measured, results["peak_gflops"])
    assert 0 < counterpart["training"]["fraction_of_peak"] <= 1
    assert "smp.Unet(resnet50" in benchmark.markdown(results)
