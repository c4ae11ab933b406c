"""benchmarks/decoder_speed.py: each new decoder's training step against smp's same model."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optional_extras import require_installed

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("decoder_speed", REPO / "benchmarks" / "decoder_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _side(step_seconds, params):
    return {"step_seconds": step_seconds, "first_step_seconds": 10 * step_seconds, "params": params}


def test_ratio_is_against_smps_fastest_mode_of_the_same_precision_and_the_table_shows_failures():
    decoder_speed = _script()
    smp_mode = lambda seconds: {"params": 7, "training": _side(seconds, 7), "inference": {"latency_ms": {}}}  # noqa: E731
    result = {"decoder": "fpn", "kerazoo_options": {}, "smp_class": "FPN", "smp_options": {}, "differences": "none",
              "kerazoo": {"float32": _side(1.0, 8), "mixed_bfloat16": {"error": "killed"}},
              "smp": {"description": "smp.FPN(resnet50)",
                      "modes": {"eager": smp_mode(2.0), "compile": smp_mode(1.6), "bf16_autocast": smp_mode(0.5)}}}
    result["ratio"] = decoder_speed.ratios(result)
    assert result["ratio"] == {"float32": {"ratio": pytest.approx(1.0 / 1.6), "smp_mode": "compile"}}
    results = {"settings": {"image_size": [32, 32], "batch_size": 1, "steps": 1, "warmup": 1, "threads": 2},
               "machine": {"cpu": {"model_name": "test CPU"}}, "decoders": [result]}
    table = decoder_speed.markdown(results)
    assert "| fpn | defaults | FPN | float32 | 1.000 | 1.600 (compile) | 0.62 | 10.00 / 16.00 | 8 / 7 |" in table
    assert "| mixed_bfloat16 | failed: killed |" in table


@pytest.mark.benchmark
@pytest.mark.peer
def test_one_decoder_both_sides_at_a_tiny_size(tmp_path):
    require_installed("segmentation_models_pytorch", "peer")  # found, not imported (it would crash this process)
    out = tmp_path / "speed.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    # Batch 2: torch's batch norm refuses one value per channel in training (the 1x1 map at stride 32).
    run = subprocess.run([sys.executable, "benchmarks/decoder_speed.py", "--decoders", "fpn", "--image-size", "32x32",
                          "--batch-size", "2", "--steps", "1", "--warmup", "1", "--json", str(out)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["machine"]["cpu"]["kind"] and "model_name" in results["machine"]["cpu"]
    (measured,) = results["decoders"]
    assert measured["decoder"] == "fpn" and measured["smp_class"] == "FPN"
    ours, smp = measured["kerazoo"]["float32"], measured["smp"]["modes"]["eager"]
    assert "error" not in ours and "error" not in smp, (ours, smp)
    assert smp["model"] == "smp.FPN(resnet50)"
    for side in (ours, smp["training"]):
        assert side["step_seconds"] > 0 and side["first_step_seconds"] > 0
    # Same decoder: the encoder's conv biases are the only difference in trainable parameters (docs/models.md).
    assert ours["params"] == pytest.approx(smp["params"], rel=0.002)
    assert measured["ratio"]["float32"]["ratio"] == pytest.approx(ours["step_seconds"] / smp["training"]["step_seconds"])
    assert "| fpn |" in run.stdout
