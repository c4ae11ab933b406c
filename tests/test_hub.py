"""Publishing presets on the Hugging Face Hub: `kerazoo.zoo.hub.push_to_hub`, `save_to_preset(push_to=...)`,
`kerazoo push`, and `from_preset("hf://...")` reading back what they wrote.

The real huggingface_hub client talks to `fake_hub.FakeHub`, a small Hub on 127.0.0.1 (HF_ENDPOINT points
at it) that records what the client sends. The client runs with HF_HUB_DISABLE_XET=1: the fake Hub speaks
the git-lfs protocol (batch, PUT, verify), not Xet's storage protocol, which huggingface_hub uses for
large files on the real Hub when hf_xet is installed.
"""

import base64
import hashlib
import importlib
import json

import keras
import numpy as np
import pytest

pytest.importorskip("huggingface_hub")

from fake_hub import FakeHub  # noqa: E402
from kerazoo import cli, create_model, presets  # noqa: E402
from kerazoo.zoo.hub import parse_hub_uri, push_to_hub  # noqa: E402
from kerazoo.zoo.model_card import model_card  # noqa: E402

TOKEN = "hf_kerazoo_test_token"
PRESET = "camvid_segnet_basic"
TINY_ARGS = {"num_classes": 3, "filters": 4, "depth": 2}
TINY_METADATA = {
    "dataset": "shapes", "description": "tiny SegNet-Basic for hub tests", "input_size": [32, 32],
    "metrics": {"mean_iou": 0.25}, "evaluation": {"command": "kerazoo evaluate tiny --dataset shapes", "split": "val"},
    "training": {"epochs": 1, "optimizer": "adam"}, "license": "Apache-2.0",
}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A FakeHub that the huggingface_hub client (and so kerazoo) talks to, with a valid token."""
    import huggingface_hub.constants

    with FakeHub(tokens={TOKEN}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("KERAZOO_HOME", str(tmp_path / "kerazoo_home"))
        monkeypatch.delenv("KERAZOO_OFFLINE", raising=False)
        # huggingface_hub reads HF_* when its constants module is imported: read them again.
        importlib.reload(huggingface_hub.constants)
        try:
            yield server
        finally:
            monkeypatch.undo()
            importlib.reload(huggingface_hub.constants)


def _commits(server, repo_id):
    return server.calls("POST", rf"/api/models/{repo_id}/commit/main")


def _weights(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def test_push_sends_the_preset_with_lfs_weights_and_the_generated_card(hub):
    directory = presets.preset_directory(PRESET)
    metadata = json.loads((directory / "metadata.json").read_text())
    commit = push_to_hub(PRESET, "hf://owner/camvid")

    (create,) = hub.calls("POST", "/api/repos/create")
    assert create.json()["name"] == "camvid" and create.json()["organization"] == "owner"
    assert create.headers["authorization"] == f"Bearer {TOKEN}"
    # The .h5 goes through LFS (the Hub's .gitattributes and its binary content ask for it), in one object.
    (batch,) = hub.calls("POST", r"/owner/camvid\.git/info/lfs/objects/batch")
    assert batch.json()["objects"] == [{"oid": metadata["weights_sha256"], "size": metadata["weights_bytes"]}]
    (upload,) = hub.calls("PUT", r"/lfs-upload/[0-9a-f]+")
    assert hashlib.sha256(upload.body).hexdigest() == metadata["weights_sha256"]
    (sent,) = _commits(hub, "owner/camvid")
    operations = {line["value"]["path"]: line for line in sent.ndjson()[1:]}
    assert sorted(operations) == ["README.md", "config.json", "metadata.json", "model.weights.h5"]
    assert operations["model.weights.h5"]["key"] == "lfsFile"
    assert operations["model.weights.h5"]["value"]["oid"] == metadata["weights_sha256"]
    expected_card = model_card(PRESET, repo_id="owner/camvid", name="camvid")
    for name, expected in (("config.json", (directory / "config.json").read_bytes()),
                           ("metadata.json", (directory / "metadata.json").read_bytes()),
                           ("README.md", expected_card.encode())):
        assert operations[name]["key"] == "file"
        assert base64.b64decode(operations[name]["value"]["content"]) == expected
    (validated,) = {r.json()["content"] for r in hub.calls("POST", "/api/validate-yaml")}
    assert validated == expected_card
    assert hub.file("owner/camvid", "model.weights.h5") == (directory / "model.weights.h5").read_bytes()
    assert commit.oid == hub.repos["owner/camvid"].commits[-1][0]


def test_from_preset_loads_what_push_wrote_and_downloads_only_the_preset(hub):
    push_to_hub(PRESET, "hf://owner/camvid")
    loaded = presets.from_preset("hf://owner/camvid")
    original = presets.from_preset(PRESET)
    assert loaded.class_names == original.class_names and loaded.input_size == original.input_size
    for got, want in zip(_weights(loaded), _weights(original), strict=True):
        np.testing.assert_array_equal(got, want)
    downloaded = {r.path.rsplit("/", 1)[-1] for r in hub.calls("GET", r"/owner/camvid/resolve/.+")}
    assert downloaded == set(presets.PRESET_FILES)  # not README.md
    # Then from the cache alone.
    requests = len(hub.requests)
    presets.from_preset("hf://owner/camvid", offline=True)
    assert len(hub.requests) == requests


def test_pushing_an_unchanged_preset_again_creates_no_commit(hub):
    first = push_to_hub(PRESET, "hf://owner/camvid")
    second = push_to_hub(PRESET, "hf://owner/camvid")
    assert len(_commits(hub, "owner/camvid")) == 1
    assert len(hub.calls("PUT", r"/lfs-upload/[0-9a-f]+")) == 1
    assert second.oid == first.oid


def test_included_exports_are_published_listed_with_sha256_and_removed_when_gone(hub, tmp_path):
    exported = tmp_path / "exported"
    exported.mkdir()
    tflite = np.random.default_rng(0).bytes(4096)  # published as given: push never opens these files
    (exported / "segnet_basic.tflite").write_bytes(tflite)
    (exported / "segnet_basic.json").write_text('{"quantize": "float32"}')
    push_to_hub(PRESET, "hf://owner/camvid", include=[exported])
    assert hub.file("owner/camvid", "exports/exported/segnet_basic.tflite") == tflite
    assert hub.repos["owner/camvid"].tree("main")[1]["exports/exported/segnet_basic.tflite"].lfs_oid
    card = hub.file("owner/camvid", "README.md").decode()
    assert f"| `exports/exported/segnet_basic.tflite` | 4096 | {hashlib.sha256(tflite).hexdigest()} |" in card
    assert "hf_hub_download('owner/camvid', 'exports/exported/segnet_basic.tflite')" in card

    push_to_hub(PRESET, "hf://owner/camvid")  # without the exports: they leave the repository and the card
    files = hub.repos["owner/camvid"].tree("main")[1]
    assert not [path for path in files if path.startswith("exports/")]
    assert sorted(files) == [".gitattributes", "README.md", "config.json", "metadata.json", "model.weights.h5"]
    assert "segnet_basic.tflite" not in hub.file("owner/camvid", "README.md").decode().split("## Files")[1]


def test_push_into_a_folder_loads_back_from_that_folder(hub):
    push_to_hub(PRESET, "hf://owner/zoo/camvid")
    files = hub.repos["owner/zoo"].tree("main")[1]
    assert {"camvid/config.json", "camvid/model.weights.h5", "camvid/metadata.json", "camvid/README.md"} <= set(files)
    assert "kerazoo.from_preset('hf://owner/zoo/camvid')" in hub.file("owner/zoo", "camvid/README.md").decode()
    loaded = presets.from_preset("hf://owner/zoo/camvid")
    assert loaded.class_names == presets.from_preset(PRESET).class_names


def test_save_to_preset_pushes_and_from_preset_gets_the_same_outputs(hub, tmp_path):
    keras.utils.set_random_seed(0)
    model = create_model("segnet_basic", **TINY_ARGS)
    presets.save_to_preset(model, tmp_path / "tiny", TINY_METADATA, push_to="hf://owner/tiny")
    card = hub.file("owner/tiny", "README.md").decode()
    assert "license: apache-2.0" in card and "value: 0.25" in card
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    loaded = presets.from_preset("hf://owner/tiny")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(images)), keras.ops.convert_to_numpy(model(images)))


def test_cli_push_prints_the_commit(hub, capsys):
    assert cli.main(["push", PRESET, "hf://owner/cli", "--message", "first release"]) == 0
    (commit,) = _commits(hub, "owner/cli")
    assert commit.ndjson()[0]["value"]["summary"] == "first release"
    assert capsys.readouterr().out.strip() == f"{hub.url}/owner/cli/commit/{hub.repos['owner/cli'].commits[-1][0]}"


def test_a_refused_token_fails_with_the_hubs_answer_and_publishes_nothing(hub, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(OSError, match="401"):
        push_to_hub(PRESET, "hf://owner/camvid")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["push", PRESET, "hf://owner/camvid"])
    assert exit_info.value.code == 2 and "kerazoo push: error:" in capsys.readouterr().err
    assert hub.repos == {} and hub.lfs == {}


@pytest.mark.parametrize("uri, message", [
    ("owner/name", "looks like hf://owner/name"),
    ("https://huggingface.co/owner/name", "looks like hf://owner/name"),
    ("hf://owner", "looks like hf://owner/name"),
    ("hf://owner/na me", "letters, digits"),
    ("hf://owner/name@v1", "drop the @revision"),
])
def test_bad_destinations_are_named(uri, message):
    with pytest.raises(ValueError, match=message) as error:
        parse_hub_uri(uri)
    assert repr(uri) in str(error.value)


def test_save_to_preset_checks_the_destination_before_writing(tmp_path):
    keras.utils.set_random_seed(0)
    model = create_model("segnet_basic", **TINY_ARGS)
    with pytest.raises(ValueError, match="hf://owner/name"):
        presets.save_to_preset(model, tmp_path / "tiny", TINY_METADATA, push_to="owner/tiny")
    assert not (tmp_path / "tiny").exists()


def test_parse_hub_uri_splits_repository_and_folder():
    target = parse_hub_uri("hf://owner/zoo/camvid/v2")
    assert (target.repo_id, target.folder, target.uri) == ("owner/zoo", "camvid/v2", "hf://owner/zoo/camvid/v2")
    assert parse_hub_uri("hf://owner/name/").folder == ""


def test_missing_include_is_named(hub, tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_export"):
        push_to_hub(PRESET, "hf://owner/camvid", include=[tmp_path / "no_such_export"])
    assert hub.repos == {}
