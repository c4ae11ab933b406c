"""benchmarks/step_profile.py and benchmarks/interleaved_step.py: where a training step goes, and steps in turn."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optional_extras import require_installed

REPO = Path(__file__).resolve().parents[1]


def _script(name):
    # The scripts import their sibling decoder_speed.py, as `python benchmarks/NAME.py` finds it.
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("op, expected", [
    ("_MklNativeConv2DBackpropFilterWithBias", "convolution, backward"),
    ("aten::convolution_backward", "convolution, backward"),
    ("_MklNativeFusedConv2D", "convolution, forward"),
    ("aten::mkldnn_convolution", "convolution, forward"),
    ("_MklNativeFusedBatchNormGradV3", "batch norm"),
    ("aten::native_batch_norm_backward", "batch norm"),
    ("ResourceApplyAdam", "optimizer update"),
    ("optimizer aten::addcmul_", "optimizer update"),
    ("Cast", "casts and copies"),
    ("aten::copy_", "casts and copies"),
    ("ResizeNearestNeighborGrad", "upsampling and concatenation"),
    ("aten::cat", "upsampling and concatenation"),
    ("SparseSoftmaxCrossEntropyWithLogits", "loss"),
    ("ReluGrad", "elementwise and the rest"),
    ("aten::addcmul_", "elementwise and the rest"),  # outside the optimizer it is not the optimizer's
])
def test_both_profilers_op_names_fall_in_the_same_categories(op, expected):
    assert _script("step_profile").category(op) == expected


def test_time_with_an_op_running_counts_overlapping_ops_once():
    union_ms = _script("step_profile")._union_ms
    ms = 10**9  # picoseconds
    assert union_ms([(0, 4 * ms), (1 * ms, 3 * ms), (2 * ms, 6 * ms), (10 * ms, 11 * ms)]) == pytest.approx(7.0)
    assert union_ms([]) == 0


@pytest.mark.benchmark
@pytest.mark.peer
def test_profile_and_interleaved_steps_at_a_tiny_size(tmp_path):
    require_installed("segmentation_models_pytorch", "peer")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    tiny = ["--image-size", "32", "--batch-size", "2", "--warmup", "1"]
    run = subprocess.run([sys.executable, "benchmarks/step_profile.py", *tiny, "--steps", "1"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    sides = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [side["side"] for side in sides] == ["kerazoo", "smp"]
    for side in sides:
        assert side["categories_ms"]["convolution, forward"] > 0 and side["categories_ms"]["convolution, backward"] > 0
        assert side["categories_ms"]["optimizer update"] > 0, side["top_ops_ms"]
        assert 0 < side["ops_running_ms"] <= side["wall_ms"]
    out = tmp_path / "interleaved.json"
    run = subprocess.run([sys.executable, "benchmarks/interleaved_step.py", *tiny, "--rounds", "2", "--decoder", "fpn",
                          "--variants", "default", "inter_op_1", "--json", str(out)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["cpu"]["kind"] and len(results["smp_step_ms_all"]) == 2
    assert (results["decoder"], results["smp_class"]) == ("fpn", "FPN")  # decoder_speed.py's matched pair
    for variant in ("default", "inter_op_1"):
        measured = results["kerazoo"][variant]
        assert len(measured["step_ms_all"]) == 2
        assert measured["ratio_of_medians"] == pytest.approx(measured["step_ms"] / results["smp_step_ms"])
