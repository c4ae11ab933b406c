"""The repository's scripts at a tiny size: export_matrix/matrix.py, export_matrix/real_data.py, preset_recipes/build_presets.py,
benchmarks/combinations.py.

Each runs as a user runs it (a child process from the repository root) and writes only under tmp_path.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kerazoo
from kerazoo.training import evaluation
from kerazoo.zoo import preset_metadata
from kerazoo.training.train import train

REPO = Path(__file__).resolve().parents[1]


def _run(*argv, timeout=900):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, *map(str, argv)], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return run



@pytest.mark.slow
def test_export_matrix_one_row(tmp_path):
    report = tmp_path / "REPORT.md"
    _run("export_matrix/matrix.py", "--models", "segnet_basic", "--report", report)
    rows = [line for line in report.read_text().splitlines() if line.startswith("| segnet_basic |")]
    assert len(rows) == 1, report.read_text()
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    params = kerazoo.create_model("segnet_basic", num_classes=5).count_params()
    assert cells[1] == f"{params / 1e6:.1f}M"
    # saved_model, tflite float32 / float16 / dynamic / int8, onnx: each converted and ran (no FAIL, no skip);
    # the float32 files met their parity contract (float16 on a random SegNet-Basic may miss its own).
    assert len(cells) == 3 + 6, cells
    assert all(cell.startswith(("ok", "MISSED contract")) for cell in cells[3:]), cells
    assert all(cells[3 + i].startswith("ok:") for i in (0, 1, 5)), cells


def _recipe_run(name):
    """The run directory preset_recipes/build_presets.py reads for preset `name`."""
    spec = importlib.util.spec_from_file_location("build_presets", REPO / "preset_recipes" / "build_presets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RECIPES[name]["run"]


def test_build_presets_from_a_tiny_run(tmp_path):
    # A tiny run where the recipe expects it, on the synthetic shapes (evaluation needs no files).
    train("segnet_basic", model_options=dict(filters=4, kernel_size=3, depth=2), dataset="shapes",
          image_size=(32, 32), num_examples=16, val_examples=16, batch_size=8, epochs=1,
          output_dir=tmp_path / "runs" / _recipe_run("camvid_segnet_basic"), tensorboard=False, verbose=0)
    zoo = tmp_path / "zoo"
    run = _run("preset_recipes/build_presets.py", "--runs", tmp_path / "runs", "--only", "camvid_segnet_basic",
               "--zoo-dir", zoo)
    assert "argmax agreement with the checkpoint" in run.stdout
    metadata = preset_metadata(str(zoo / "camvid_segnet_basic"))  # input_size: config.json in format 2
    assert metadata["dataset"] == "shapes" and metadata["input_size"] == [32, 32]
    report = evaluation.evaluate_checkpoint(str(zoo / "camvid_segnet_basic"), dataset="shapes",
                                          image_size=(32, 32))
    # The recorded metrics are those of the written preset (rounded to 4 places).
    assert metadata["metrics"]["mean_iou"] == pytest.approx(report["mean_iou"], abs=6e-5)


@pytest.mark.slow
@pytest.mark.data
def test_real_data_on_a_few_images(tmp_path, shared_data_dir):
    data = shared_data_dir("camvid")
    _run("export_matrix/real_data.py", "--data-dir", data, "--presets", "camvid_segnet_basic", "--max-images", "4",
         "--out-dir", tmp_path)
    (result,) = json.loads((tmp_path / "real_data.json").read_text())
    assert result["preset"] == "camvid_segnet_basic" and result["val_images"] == 4
    rows = result["rows"]
    assert {"keras", "tflite float32", "tflite float16", "tflite dynamic", "tflite int8", "onnx float32"} <= set(rows)
    for label, row in rows.items():
        assert "error" not in row, (label, row)
        assert 0 < row["mean_iou"] <= 1
    assert rows["onnx float32"]["argmax_agreement"] > 0.99 and rows["tflite float32"]["argmax_agreement"] > 0.99
    assert "## camvid_segnet_basic (camvid val, 4 images" in (tmp_path / "REAL_DATA.md").read_text()


def _combinations_module():
    spec = importlib.util.spec_from_file_location("combinations", REPO / "benchmarks" / "combinations.py")
    combinations = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPO / "benchmarks"))  # it imports encoders.py beside it
    try:
        spec.loader.exec_module(combinations)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return combinations


def test_combinations_records_an_export_that_crashed_against_its_row_only(monkeypatch):
    combinations = _combinations_module()
    calls = []

    def fake_run(command, **_):
        calls.append(command)
        if "--export" in command:  # LiteRT aborting, as it did on one large encoder
            return subprocess.CompletedProcess(command, -6, "", "free(): double free detected in tcache 2\n")
        row = {"model": "unet", "encoder": "efficientnetv2l", "parameters": 5, "build": "ok", "seconds": 1.0}
        return subprocess.CompletedProcess(command, 0, json.dumps([row]) + "\n", "")

    monkeypatch.setattr(combinations.subprocess, "run", fake_run)
    (row,) = combinations.run_child("efficientnetv2l", ["unet"], export=True)
    assert len(calls) == 2 and "--export" not in calls[1]  # built again, without the export
    assert row["build"] == "ok" and row["parameters"] == 5
    assert row["export"]["export"].startswith("crashed: child process exited -6") and "double free" in row["export"]["export"]
    assert combinations.exported_ok(row) is False and combinations._cell(row).endswith(" ✗")


@pytest.mark.slow
def test_combinations_builds_exports_and_reports_one_combination(tmp_path):
    output = tmp_path / "combinations.json"
    _run("benchmarks/combinations.py", "--export", "--encoders", "mobilenetv2", "--models", "fpn", "--output", output)
    saved = json.loads(output.read_text())
    (row,) = saved["rows"]
    assert (row["model"], row["encoder"], row["build"]) == ("fpn", "mobilenetv2", "ok")
    assert row["parameters"] == kerazoo.create_model("fpn", encoder="mobilenetv2", num_classes=12).count_params()
    assert row["export"] == {f"{form}_{variant}": "ok" for form, variant in
                             [("tflite", "float32"), ("tflite", "float16"), ("tflite", "int8"), ("onnx", "float32")]}
    assert row["export_agreement"]["tflite_float32"] >= 0.999
    combinations = _combinations_module()
    report = combinations.export_report(saved)
    assert "- Exported: 1 combinations, 4 files; every file ok: 1 combinations." in report
    assert "| fpn | mobilenetv2 | " in report and "## Misses\n\nNone." in report
    assert "| mobilenetv2 | " + combinations.format_millions(row["parameters"]) + " ✓ |" in report


def test_reproduce_trains_in_bfloat16_and_measures_and_keeps_float32_weights(tmp_path, monkeypatch, shared_data_dir):
    data_dir = shared_data_dir("train400", "set12")
    sys.path.insert(0, str(REPO / "preset_recipes"))
    import reproduce
    from kerazoo.utils import cpu

    recipe = dict(reproduce.RECIPES["set12_denoise_sigma25_drunet"], steps=2, eval_every=2,
                  model={"name": "drunet", "filters": 4, "num_blocks": 1, "levels": 2, "task": "denoise",
                         "in_channels": 1},
                  train={"dataset": "train400", "noise_sigma": 25, "patch_size": 16, "patches_per_image": 1,
                         "batch_size": 2})
    monkeypatch.setitem(reproduce.RECIPES, "tiny", recipe)
    monkeypatch.setattr(cpu, "auto_mixed_precision", lambda: ("mixed_bfloat16", "bfloat16 (test)"))
    record = reproduce.run("tiny", str(data_dir), tmp_path)
    assert record["precision"] == "mixed_bfloat16"
    kept = evaluation.load_model(tmp_path / "best.keras")
    assert {layer.dtype_policy.name for layer in kept.layers} == {"float32"}
    assert kerazoo.create_model(**recipe["model"]).dtype_policy.name == "float32"  # the global policy is restored
    figures = reproduce.evaluation_figures(kept, recipe, data_dir)
    assert abs(figures["psnr"] - record["best"]["psnr"]) < 1e-3  # the figure recorded is the float32 model's
