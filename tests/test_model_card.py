"""Model cards: every shipped preset's card is generated and each figure in it (the front matter's
model-index and every body table) is checked against the preset's metadata.json and config.json."""

import copy
import json
import re
import shutil

import pytest

huggingface_hub = pytest.importorskip("huggingface_hub")

import kerazoo  # noqa: E402
from kerazoo import cli, presets  # noqa: E402
from kerazoo.utils.download import sha256_file  # noqa: E402
from kerazoo.zoo.registry import SHIPPED_DIR  # noqa: E402
from kerazoo.zoo.model_card import PIPELINE_TAGS, license_id, model_card, write_model_card  # noqa: E402

SHIPPED = sorted(path.parent.name for path in SHIPPED_DIR.glob("*/metadata.json"))
assert SHIPPED, f"no shipped presets found in {SHIPPED_DIR}"


def _cells(line):
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]


def _tables(body):
    """[(section title, caption line before the table, header cells, rows of cells)] of a Markdown body."""
    tables, section, caption, lines = [], None, None, body.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("## "):
            section = line[3:].strip()
        if line.startswith("|"):
            block = []
            while index < len(lines) and lines[index].startswith("|"):
                block.append(lines[index])
                index += 1
            assert re.fullmatch(r"\|(---\|)+", block[1]), block[:2]
            tables.append((section, caption, _cells(block[0]), [_cells(row) for row in block[2:]]))
            continue
        if line.strip():
            caption = line.strip()
        index += 1
    return tables


def _equal(cell, expected):
    """A table cell shows `expected` exactly: text as it is, anything else as its JSON."""
    if isinstance(expected, str):
        return cell == expected
    return json.loads(cell) == expected


def _at(mapping, dotted):
    for key in dotted.split("."):
        mapping = mapping[key]
    return mapping


def _key(cell):
    assert re.fullmatch(r"`[^`]+`", cell), cell
    return cell.strip("`")


@pytest.mark.parametrize("name", SHIPPED)
def test_every_figure_in_a_shipped_presets_card_is_its_metadata(name):
    directory = presets.preset_directory(name)
    metadata = presets.preset_metadata(name)
    stored = json.loads((directory / "metadata.json").read_text())
    config = json.loads((directory / "config.json").read_text())["config"]
    text = model_card(name, repo_id=f"kerazoo/{name}")
    card = huggingface_hub.ModelCard(text)  # the client's own parser: a malformed model-index raises here

    # Front matter.
    task = metadata["model"].get("task") or "segmentation"
    evaluation = metadata["evaluation"]
    assert card.data.library_name == "kerazoo" and card.data.pipeline_tag == PIPELINE_TAGS[task]
    assert card.data.license.upper() in metadata["license"].upper()
    assert metadata["dataset"] in card.data.datasets
    results = {result.metric_type: result for result in card.data.eval_results}
    assert {key: result.metric_value for key, result in results.items()} == metadata["metrics"]
    for result in results.values():
        assert result.dataset_type == evaluation.get("dataset", metadata["dataset"])
        assert result.dataset_split == evaluation["split"] and result.task_type == PIPELINE_TAGS[task]

    # Body tables: every row of every table is compared, and no table goes unchecked.
    tables = _tables(card.text)
    seen = {"Summary": 0, "Classes": 0, "Input and preprocessing": 0, "Training": 0, "Evaluation": 0, "Files": 0}
    for section, caption, header, rows in tables:
        assert section in seen, f"a table in section {section!r} that this test does not check"
        seen[section] += len(rows)
        if header == ["key", "value"]:
            root = {"Summary": stored, "Input and preprocessing": config, "Training": metadata["training"],
                    "Evaluation": evaluation}[section]
            for key, value in rows:
                assert _equal(value, _at(root, _key(key))), (section, key, value)
        elif section == "Training":  # a list of records, e.g. psnr_against_time
            records = metadata["training"][_key(caption.split()[0])]
            assert len(rows) == len(records)
            for row, record in zip(rows, records):
                for column, value in zip(header, row):
                    assert _equal(value, record[_key(column)])
        elif section == "Evaluation":
            assert [_key(row[0]) for row in rows] == list(metadata["metrics"])
            for row in rows:
                assert _equal(row[2], metadata["metrics"][_key(row[0])])
                if len(row) > 3:
                    assert _equal(row[3], evaluation["float32_checkpoint_metrics"][_key(row[0])])
        elif section == "Classes":
            assert len(rows) == len(metadata["class_names"])
            weights = metadata["training"].get("resolved", {}).get("class_weights")
            for row in rows:
                index = int(row[0])
                assert row[1] == metadata["class_names"][index]
                assert json.loads(row[2]) == metadata["class_colors"][index]
                if len(header) > 3:
                    assert _equal(row[3], metadata["metrics"][f"iou_{row[1]}"])
                if len(header) > 4:
                    assert _equal(row[4], weights[index])
        elif section == "Files":
            assert [_key(row[0]) for row in rows] == list(presets.PRESET_FILES)
            for path, size, digest in rows:
                assert int(size) == (directory / _key(path)).stat().st_size
                assert digest == sha256_file(directory / _key(path))
            weights_row = next(row for row in rows if row[0] == "`model.weights.h5`")
            assert weights_row[2] == metadata["weights_sha256"] and int(weights_row[1]) == metadata["weights_bytes"]
        else:
            pytest.fail(f"unexpected table {header} in {section}")
    assert seen["Summary"] and seen["Input and preprocessing"] and seen["Training"] and seen["Files"]
    assert seen["Evaluation"] >= len(metadata["metrics"])
    assert seen["Classes"] == len(metadata.get("class_names") or [])
    # The sections the brief asks for, and the snippets load from the Hub repository.
    for heading in ("## How to use", "### Python", "### Command line", "### TFLite (LiteRT)", "## Limitations"):
        assert heading in card.text
    assert f"kerazoo.from_preset('hf://kerazoo/{name}')" in card.text
    assert metadata["training"]["command"] in card.text and evaluation["command"] in card.text


def test_the_card_follows_the_metadata_it_is_generated_from(tmp_path):
    directory = tmp_path / "camvid_copy"
    shutil.copytree(presets.preset_directory("camvid_segnet_basic"), directory)
    metadata = json.loads((directory / "metadata.json").read_text())
    before = model_card(directory)
    changed = copy.deepcopy(metadata)
    changed["metrics"]["mean_iou"] = 0.4321
    (directory / "metadata.json").write_text(json.dumps(changed, indent=2))
    after = model_card(directory)
    assert after != before
    card = huggingface_hub.ModelCard(after)
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["mean_iou"] == 0.4321
    assert "| `mean_iou` | mean IoU | 0.4321 | 0.5221 |" in after
    assert sha256_file(directory / "metadata.json") in after
    assert model_card(directory) == after  # the same files give the same card, byte for byte


def test_a_minimal_preset_gets_a_card(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    model = kerazoo.create_model("segnet_basic", num_classes=2, filters=4, depth=2)
    directory = presets.save_to_preset(model, tmp_path / "bare", {"license": "proprietary"})
    card = huggingface_hub.ModelCard(model_card(directory))
    assert card.data.license == "other" and card.data.license_name == "proprietary"
    assert card.data.eval_results is None and "## Evaluation" not in card.text and "## Training" not in card.text
    assert "## Files" in card.text and "## Limitations" in card.text


@pytest.mark.parametrize("text, expected", [
    ("Weights: MIT, as kerazoo. Data: CamVid (Brostow et al. 2008), for research use.", ("mit", None)),
    ("Apache-2.0", ("apache-2.0", None)),
    ("weights: CC-BY-4.0; data: see the paper", ("cc-by-4.0", None)),
    ("Weights: Custom Research Licence. Data: ours", ("other", "custom-research-licence")),
    ("", ("other", "unknown")),
])
def test_license_ids_follow_the_weights_licence(text, expected):
    assert license_id(text) == expected


def test_card_command_prints_or_writes_and_keeps_an_existing_file(tmp_path, capsys):
    assert cli.main(["card", "membrane_unet_mobilenetv2", "--repo", "someone/membrane"]) == 0
    printed = capsys.readouterr().out
    assert printed == model_card("membrane_unet_mobilenetv2", repo_id="someone/membrane")
    output = tmp_path / "README.md"
    output.write_text("the project's own readme")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["card", "membrane_unet_mobilenetv2", "--output", str(output)])
    assert exit_info.value.code == 2 and "--force" in capsys.readouterr().err
    assert output.read_text() == "the project's own readme"
    assert cli.main(["card", "membrane_unet_mobilenetv2", "--output", str(output), "--force"]) == 0
    assert output.read_text() == model_card("membrane_unet_mobilenetv2")
    assert write_model_card("membrane_unet_mobilenetv2", tmp_path / "new.md") == tmp_path / "new.md"
    with pytest.raises(ValueError, match="owner/name; got 'membrane'"):
        model_card("membrane_unet_mobilenetv2", repo_id="membrane")


def test_a_denoisers_card_names_the_noise_it_was_trained_for():
    assert "any sigma from 0 to 55 (blind)" in model_card(presets.preset_directory("set12_denoise_blind_drunet"))
    assert "at sigma 25 only" in model_card(presets.preset_directory("set12_denoise_sigma25_drunet"))
