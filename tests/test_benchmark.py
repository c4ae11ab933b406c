"""The benchmark harness (kerazoo.bench.benchmark) and its segmentation-models-pytorch peer (kerazoo.bench.peer)."""

import json
import os
import statistics

import keras
import pytest

from kerazoo.bench import benchmark, tables as benchmark_tables, peer

from kerazoo import cli
from kerazoo.bench.benchmark import Case

from optional_extras import require_installed


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


def test_cli_passes_the_peer_modes(monkeypatch):
    seen = {}
    monkeypatch.setattr(benchmark, "run", lambda case_list, **kwargs: seen.update(kwargs))
    assert cli.main(["benchmark", "--model", "segnet_basic", "--peer", "--peer-modes", "eager", "bf16_autocast"]) == 0
    assert seen["peer"] and seen["peer_modes"] == ["eager", "bf16_autocast"]
    with pytest.raises(SystemExit):
        cli.main(["benchmark", "--peer-modes", "jit"])


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
    assert measured["forward_gflops"] == benchmark.forward_flops(model, (32, 48)) / 1e9  # as run() divides
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
                            batch_sizes=(1,), warmup=1, runs=1, peer=True, log=lambda *a: None,
                            precisions=("float32",))
    assert "no equivalent" in results["cases"][0]["peer"]["skipped"]
    assert "peer_ratio" not in results["cases"][0]
    assert "skipped:" in benchmark.markdown(results)


def _peer_mode(step_seconds, batch1_ms, batch8_ms):
    return {"forward_flops": 2e10, "training": {"step_seconds": step_seconds, "first_step_seconds": 1.0,
                                                "images_per_second": 4 / step_seconds, "peak_rss_mib": 900.0,
                                                "added_rss_mib": 500.0},
            "inference": {"latency_ms": {"1": batch1_ms, "8": batch8_ms}}}


def _kerazoo_precision(step_seconds, batch1_ms, batch8_ms):
    return {"step_seconds": step_seconds, "images_per_second": 4 / step_seconds, "fraction_of_peak": 0.5,
            "first_step_seconds": 3.0, "peak_rss_mib": 1000.0, "added_rss_mib": 600.0,
            "inference_latency_ms": {"1": batch1_ms, "8": batch8_ms}}


def test_peer_ratios_compare_each_precision_with_the_fastest_peer_mode_of_its_class():
    modes = {"eager": _peer_mode(2.0, 100.0, 700.0),
             "compile": _peer_mode(1.6, 120.0, 600.0),  # faster training and batch 8, slower batch 1
             "bf16_autocast": _peer_mode(1.0, 50.0, 400.0)}
    result = {"case": "unet/resnet50 256x256", "params": 3.2e7, "forward_gflops": 20.0,
              "precisions": {"float32": _kerazoo_precision(1.2, 110.0, 660.0),
                             "mixed_bfloat16": _kerazoo_precision(0.9, 60.0, 500.0)},
              "peer": {"description": "smp.Unet(resnet50)", "modes": modes}}
    result["training"] = result["precisions"]["float32"]
    ratios = benchmark.peer_ratios(result)
    float32, bfloat16 = ratios["float32"], ratios["mixed_bfloat16"]
    assert float32["training_step"] == {"ratio": pytest.approx(1.2 / 1.6), "peer_mode": "compile"}
    assert float32["inference_batch1"] == {"ratio": pytest.approx(110.0 / 100.0), "peer_mode": "eager"}
    assert float32["inference_batch8"] == {"ratio": pytest.approx(660.0 / 600.0), "peer_mode": "compile"}
    assert bfloat16["training_step"] == {"ratio": pytest.approx(0.9 / 1.0), "peer_mode": "bf16_autocast"}
    assert bfloat16["inference_batch1"]["ratio"] == pytest.approx(60.0 / 50.0)
    # A failed mode is left out of the best; a class with no mode that ran gets no ratio.
    modes["compile"] = {"error": "exit 1: no C++ compiler"}
    del modes["bf16_autocast"]
    ratios = benchmark.peer_ratios(result)
    assert ratios["float32"]["training_step"] == {"ratio": pytest.approx(1.2 / 2.0), "peer_mode": "eager"}
    assert "mixed_bfloat16" not in ratios
    result["peer_ratio"] = ratios
    table = benchmark_tables.peer_markdown([result], ["1", "8"])
    assert any("failed: exit 1: no C++ compiler" in line for line in table)
    assert "| unet/resnet50 256x256 | float32 | 0.60 (eager) | 1.10 (eager) | 0.94 (eager) |" in table


def test_peer_runner_reports_a_failed_or_unknown_mode(monkeypatch):
    case = Case("unet", "resnet50", (64, 64), (("upsampling", "nearest"),))
    with pytest.raises(ValueError, match="'fp8'.*eager"):
        peer.run_in_subprocess(case, 2, 1, (1,), 1, 1, 1, modes=("eager", "fp8"))
    failed = type("Completed", (), {"returncode": 1, "stdout": "", "stderr": "Traceback\nRuntimeError: no cl.exe\n"})
    monkeypatch.setattr(peer.subprocess, "run", lambda *args, **kwargs: failed)
    measured = peer.run_in_subprocess(case, 2, 1, (1,), 1, 1, 1, modes=("compile",))
    assert measured["modes"] == {"compile": {"error": "exit 1: RuntimeError: no cl.exe"}}


@pytest.mark.benchmark
@pytest.mark.peer
def test_peer_ratio_side_by_side():
    require_installed("segmentation_models_pytorch", "peer")  # benchmark.run measures the peer in a subprocess
    case = Case("unet", "resnet50", (64, 64), (("upsampling", "nearest"), ("decoder_filters", (64, 32, 16, 16, 8))))
    assert peer.unavailable_reason(case) is None
    results = benchmark.run([case], num_classes=2, formats=("keras",), batch_sizes=(1, 2), warmup=1, runs=2,
                            peer=True, log=lambda *a: None, peer_modes=("eager", "bf16_autocast"))
    (measured,) = results["cases"]
    counterpart = measured["peer"]
    assert counterpart["description"] == "smp.Unet(resnet50, decoder_channels=(64, 32, 16, 16, 8))"
    assert set(counterpart["modes"]) == {"eager", "bf16_autocast"}
    for mode, peer_measured in counterpart["modes"].items():
        assert "error" not in peer_measured, (mode, peer_measured)
        # Same architecture: parameter counts within 2% (smp's head is 3x3, kerazoo's 1x1) and FLOPs within
        # 35% (TensorFlow's profiler also counts batch norm and additions; torch's counter only convolutions).
        assert peer_measured["params"] == pytest.approx(measured["params"], rel=0.02)
        assert peer_measured["forward_flops"] == pytest.approx(measured["forward_gflops"] * 1e9, rel=0.35)
        training = peer_measured["training"]
        assert training["step_seconds"] == statistics.median(training["step_seconds_all"])
        assert 0 < training["fraction_of_peak"] <= 1
    ratios = measured["peer_ratio"]
    assert set(ratios) == {"float32", "mixed_bfloat16"}
    # Each ratio is kerazoo's recorded time over the named peer mode's.
    for precision, mode in (("float32", "eager"), ("mixed_bfloat16", "bf16_autocast")):
        peer_training = counterpart["modes"][mode]["training"]
        assert ratios[precision]["training_step"] == {
            "ratio": pytest.approx(measured["precisions"][precision]["step_seconds"] / peer_training["step_seconds"]),
            "peer_mode": mode}
    _assert_float32_fractions_within_peak(measured, results["peak_gflops"])
    assert "smp.Unet(resnet50" in benchmark.markdown(results)


@pytest.mark.benchmark
def test_run_measures_both_precisions_and_each_peer_mode_through_the_runner(monkeypatch):
    """The harness end to end with a fake peer runner: kerazoo really trains in both precisions."""
    case = Case("unet", "resnet50", (32, 32), (("upsampling", "nearest"), ("decoder_filters", (16, 8, 8, 8, 8))))
    monkeypatch.setattr(peer, "unavailable_reason", lambda case: None)  # smp need not be installed
    asked = []

    def fake_runner(case, num_classes, train_batch_size, batch_sizes, warmup, runs, threads, modes):
        asked.append(modes)
        return {"description": "fake smp", "modes": {"eager": _peer_mode(100.0, 1000.0, 8000.0),
                                                     "bf16_autocast": {"error": "took more than 1800 s"}}}

    results = benchmark.run([case], num_classes=2, formats=(), batch_sizes=(1,), warmup=1, runs=2, peer=True,
                            log=lambda *a: None, peer_modes=("eager", "bf16_autocast"), peer_runner=fake_runner)
    assert asked == [("eager", "bf16_autocast")]
    (measured,) = results["cases"]
    assert set(measured["precisions"]) == {"float32", "mixed_bfloat16"}
    for precision, training in measured["precisions"].items():
        assert training["precision"] == precision and training["inference_latency_ms"]["1"] > 0
    assert measured["training"] is measured["precisions"]["float32"]
    assert measured["peer"]["modes"]["eager"]["training"]["fraction_of_peak"] > 0
    ratio = measured["peer_ratio"]["float32"]["training_step"]
    assert ratio == {"ratio": pytest.approx(measured["training"]["step_seconds"] / 100.0), "peer_mode": "eager"}
    assert "mixed_bfloat16" not in measured["peer_ratio"]  # its class's only mode failed
    table = benchmark.markdown(results)
    assert "failed: took more than 1800 s" in table and "| mixed_bfloat16 |" in table


def test_the_peak_is_the_best_over_sizes_and_libraries():
    measured = benchmark.measure_peak_flops(sizes=(64, 128), runs=2)
    assert set(measured["by_size"]) == {"64", "128"}
    assert measured["peak_gflops"] == max(measured["by_size"].values()) > 0
    assert measured["matmul_size"] == int(max(measured["by_size"], key=measured["by_size"].get))
    peaks = {"tensorflow": {"peak_gflops": 80.0, "matmul_size": 4096},
             "torch": {"peak_gflops": 130.0, "matmul_size": 2048}, "other": {"error": "not installed"}}
    assert benchmark.best_peak(peaks) == {"peak_gflops": 130.0, "matmul_size": 2048, "library": "torch"}
    with pytest.raises(RuntimeError, match="no peak"):
        benchmark.best_peak({"torch": {"error": "exit 1"}})


@pytest.mark.peer
def test_torch_peak_runs_in_its_own_interpreter():
    pytest.importorskip("torch")
    measured = peer.peak_in_subprocess((64, 128), runs=2, threads=1)
    assert measured["library"] == "torch" and measured["peak_gflops"] == max(measured["by_size"].values()) > 0
