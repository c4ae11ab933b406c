"""Publishing presets on the Hugging Face Hub: `push_to_hub(preset, "hf://owner/name")`.

The upload goes through huggingface_hub's own client (`HfApi.create_repo`, then `HfApi.upload_folder`,
one commit): the preset's three files at the repository's root (or under a sub-folder), a model card
generated from them (`kerazoo.zoo.model_card`) as README.md, and any extra files (exported TFLite / ONNX
files, their sidecars) under `exports/`. The card lists every file with its sha256. `kerazoo.from_preset
("hf://owner/name")` loads it back and downloads only the preset's three files.

The client takes the token and the endpoint from its own settings: `hf auth login` or `HF_TOKEN`, and
`HF_ENDPOINT` (a mirror or a test server). Files already on the Hub with the same content are not sent
again, and since the card is generated the same way every time, pushing an unchanged preset again
creates no commit. Files under `exports/` that the new push does not hold are deleted, so the card
never describes a file that is gone or misses one that is there.

Needs `pip install "kerazoo[hub]"`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from pathlib import Path

from kerazoo.zoo.load import preset_directory
from kerazoo.zoo.preset_files import PRESET_FILES

__all__ = ["EXPORTS_DIR", "HubTarget", "parse_hub_uri", "push_to_hub"]

EXPORTS_DIR = "exports"
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"


@dataclasses.dataclass(frozen=True)
class HubTarget:
    """Where a push goes: `hf://owner/name[/folder]`.

    Attributes:
        repo_id: "owner/name".
        folder: the folder inside the repository that holds the preset ("" for its root).
    """

    repo_id: str
    folder: str = ""

    @property
    def uri(self) -> str:
        return f"hf://{self.repo_id}" + (f"/{self.folder}" if self.folder else "")


def parse_hub_uri(uri) -> HubTarget:
    """Parses `hf://owner/name[/folder]`, the form `from_preset` loads.

    Raises:
        ValueError: naming the bad value and the form expected.
    """
    if not isinstance(uri, str) or not uri.startswith("hf://"):
        raise ValueError(f"A Hub destination looks like hf://owner/name (or hf://owner/name/folder); got {uri!r}")
    if "@" in uri:
        raise ValueError(f"Push writes to the repository's main branch; drop the @revision from {uri!r}")
    parts = uri[len("hf://"):].strip("/").split("/")
    if len(parts) < 2 or not all(re.fullmatch(_NAME, part) for part in parts) or any(p in (".", "..") for p in parts):
        raise ValueError(f"A Hub destination looks like hf://owner/name (or hf://owner/name/folder), each part "
                         f"letters, digits, '.', '_' or '-'; got {uri!r}")
    return HubTarget(repo_id="/".join(parts[:2]), folder="/".join(parts[2:]))


def _link_or_copy(source: Path, target: Path):
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)  # no copy of large weights where the file system allows
    except OSError:
        shutil.copyfile(source, target)


def _stage_extras(include, staging: Path) -> dict[str, Path]:
    """Places each included file (or every file of an included folder) under exports/; returns
    {path in the repository: staged file}."""
    staged = {}
    for item in include:
        item = Path(item)
        if item.is_dir():
            pairs = [(path, Path(item.name) / path.relative_to(item)) for path in sorted(item.rglob("*"))
                     if path.is_file()]
        elif item.is_file():
            pairs = [(item, Path(item.name))]
        else:
            raise FileNotFoundError(f"--include {item}: no such file or folder")
        for source, relative in pairs:
            path = f"{EXPORTS_DIR}/{relative.as_posix()}"
            if path in staged:
                raise ValueError(f"Two included files would both be published as {path}; rename one")
            _link_or_copy(source, staging / path)
            staged[path] = staging / path
    return staged


def push_to_hub(preset, uri, *, include=(), private=None, commit_message=None, token=None):
    """Publishes a preset on the Hugging Face Hub with a generated model card.

    Creates the repository when it does not exist (`exist_ok`), then uploads in one commit: the preset's
    config.json, model.weights.h5 and metadata.json, README.md (the card), and the `include`d files under
    exports/. model.weights.h5 goes through the Hub's large-file storage (LFS or Xet), as the Hub's
    .gitattributes asks for *.h5.

    Args:
        preset: a preset name, directory or URI (see `kerazoo.from_preset`); it is verified first
            (files present, weights matching their sha256), so a broken preset is never published.
        uri: `hf://owner/name`, or `hf://owner/name/folder` to put the preset in a folder of the repository.
        include: exported files or folders to publish beside the preset, under exports/ (e.g. the
            output of `kerazoo export`); the card lists them with their sha256 and shows how to run a
            .tflite file among them.
        private: create the repository private (True) or public (False); None: the Hub's default. An
            existing repository keeps its visibility.
        commit_message: default "Upload <preset> with kerazoo <version>".
        token: a Hugging Face token; None uses the client's own (`HF_TOKEN`, or `hf auth login`).

    Returns:
        huggingface_hub's `CommitInfo` (`.commit_url`, `.oid`); for an unchanged preset, the latest commit's.

    Raises:
        ImportError: huggingface_hub is not installed.
        ValueError: a malformed `uri`, or two included files with one name.
        kerazoo.zoo.PresetError: the preset fails its checks.
        huggingface_hub.errors.HfHubHTTPError: the Hub refused (an OSError; e.g. 401 without a valid token).
    """
    target = parse_hub_uri(uri)
    try:
        from huggingface_hub import HfApi
    except ImportError as error:
        raise ImportError(f'Pushing to {uri} needs huggingface_hub: pip install "kerazoo[hub]"') from error
    from importlib.metadata import version

    from kerazoo.zoo.model_card import CARD_FILE, model_card

    directory = preset_directory(preset)
    with tempfile.TemporaryDirectory(prefix="kerazoo-push-") as scratch:
        staging = Path(scratch)
        files = {}
        for name in PRESET_FILES:
            _link_or_copy(directory / name, staging / name)
            files[name] = staging / name
        files.update(_stage_extras(include, staging))
        card = model_card(directory, repo_id=target.repo_id, folder=target.folder, files=files,
                          name=target.repo_id.split("/")[1])
        (staging / CARD_FILE).write_text(card, encoding="utf-8")
        api = HfApi(token=token)
        api.create_repo(target.repo_id, repo_type="model", private=private, exist_ok=True)
        prefix = f"{target.folder}/" if target.folder else ""
        return api.upload_folder(
            repo_id=target.repo_id, repo_type="model", folder_path=staging, path_in_repo=target.folder or None,
            commit_message=commit_message or f"Upload {directory.name} with kerazoo {version('kerazoo')}",
            delete_patterns=[f"{prefix}{EXPORTS_DIR}/*"])
