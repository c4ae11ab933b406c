"""Model cards: the README.md that describes a preset on the Hugging Face Hub, generated from the preset.

A card is never written by hand or committed. `model_card(preset)` builds it from the preset's own
metadata.json and config.json each time it is needed (`kerazoo push` uploads a fresh one; `kerazoo card
PRESET` writes one), so its figures cannot drift from the weights they describe.

The card has two parts:

* YAML front matter, built with huggingface_hub's `ModelCardData` and `EvalResult` so that the Hub
  reads it: `library_name: kerazoo`, `license`, `pipeline_tag`, `tags`, `datasets`, `metrics`,
  `base_model` (when metadata.json names one, as "owner/name" of a Hub repository) and a
  `model-index` holding every figure of metadata["metrics"];
* a Markdown body: a summary, how to load it (Python, the command line, TFLite), the classes and their
  colours, the input size and preprocessing, the training recipe, the evaluation protocol and figures,
  the files with their sha256, and the limitations.

Every figure in a table is a value of metadata.json or config.json as stored (never rounded), and
the tables key their rows by the JSON key they show, so a reader (or a test) can trace each one.
Metadata keys the card reads beyond those `kerazoo.presets` documents: "base_model" and
"limitations" (a list of sentences appended to the generated ones).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping

from kerazoo.utils.download import sha256_file
from kerazoo.utils.files import atomic_write_text
from kerazoo.zoo.load import preset_directory, preset_metadata
from kerazoo.zoo.preset_files import CONFIG_FILE, PRESET_FILES

__all__ = ["CARD_FILE", "PIPELINE_TAGS", "license_id", "model_card", "write_model_card"]

CARD_FILE = "README.md"
# Hugging Face Hub pipeline tags per kerazoo task.
PIPELINE_TAGS = {"segmentation": "image-segmentation", "denoise": "image-to-image",
                 "super_resolution": "image-to-image", "depth": "depth-estimation"}
_TASK_NAMES = {"segmentation": "Semantic segmentation", "denoise": "Image denoising",
               "super_resolution": "Image super-resolution", "depth": "Depth estimation"}
_TASK_TAGS = {"segmentation": "semantic-segmentation", "denoise": "image-denoising",
              "super_resolution": "super-resolution", "depth": "depth-estimation"}
# Licence identifiers the Hub accepts (https://huggingface.co/docs/hub/repositories-licenses), by SPDX name.
_HUB_LICENSES = ("apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear", "cc0-1.0", "cc-by-4.0",
                 "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-4.0", "gpl-2.0",
                 "gpl-3.0", "lgpl-2.1", "lgpl-3.0", "agpl-3.0", "mpl-2.0", "epl-2.0", "afl-3.0", "unlicense",
                 "openrail", "wtfpl", "zlib", "isc", "artistic-2.0", "ecl-2.0", "bsl-1.0", "odbl")
_METRIC_LABELS = {"global_accuracy": "global accuracy (G)", "class_average_accuracy": "class-average accuracy (C)",
                  "pixel_accuracy": "pixel accuracy", "mean_iou": "mean IoU", "psnr": "PSNR (dB)", "ssim": "SSIM"}
_LITERT_IMPORTS = ("import numpy as np",
                   "from ai_edge_litert.interpreter import Interpreter  # pip install ai-edge-litert")
# Recipe keys left out of the card: paths on the machine that trained the weights.
_PRIVATE_KEYS = ("data_dir", "output_dir")


def _hub():
    try:
        import huggingface_hub
    except ImportError as error:
        raise ImportError('Model cards need huggingface_hub: pip install "kerazoo[hub]"') from error
    return huggingface_hub


def license_id(text) -> tuple[str, str | None]:
    """The Hub's licence identifier for the weights' licence in metadata["license"].

    metadata.json states the licence in words, e.g. "Weights: Apache-2.0, as kerazoo. Data: CamVid ..., for
    research use", or as a bare identifier ("Apache-2.0"). The weights' identifier is taken.

    Returns:
        (identifier, None) for a licence the Hub knows, else ("other", a name for `license_name`).
    """
    text = str(text or "").strip()
    # "Weights: <licence>" up to the end of its clause (a '.' inside "Apache-2.0" does not end it).
    match = re.search(r"weights?\s*:\s*(.+?)(?:[.,;](?:\s|$)|$)", text, flags=re.IGNORECASE)
    phrase = (match.group(1) if match else text).strip(" .,;").lower()
    if phrase in _HUB_LICENSES:
        return phrase, None
    return "other", re.sub(r"[^a-z0-9.-]+", "-", phrase).strip("-") or "unknown"


def _metric_label(key) -> str:
    if key in _METRIC_LABELS:
        return _METRIC_LABELS[key]
    if match := re.fullmatch(r"(psnr|ssim)_sigma(\d+(?:\.\d+)?)", key):
        return f"{_METRIC_LABELS[match.group(1)]} at noise sigma {match.group(2)}"
    if key.startswith("iou_"):
        return f"IoU of {key[len('iou_'):]}"
    return key.replace("_", " ")


def _metric_family(key) -> str:
    """The Hub's metric id a kerazoo metric belongs to (front matter `metrics`)."""
    if key == "mean_iou" or key.startswith("iou_"):
        return "mean_iou"
    if key.endswith("accuracy"):
        return "accuracy"
    return key.split("_sigma")[0]


def _cell(value) -> str:
    """A table cell: text as it is, anything else as JSON (exactly the stored value), '|' escaped."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header, rows) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines + [""]


def _key_value_table(pairs) -> list[str]:
    return _table(["key", "value"], [(f"`{key}`", value) for key, value in pairs])


def _flatten(mapping, prefix="", skip=()) -> list[tuple[str, object]]:
    """(dotted key, value) for every scalar or list of scalars under `mapping`; None values, the dotted
    keys in `skip` and lists of mappings (tables of their own) are left out."""
    pairs = []
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if path in skip or value is None:
            continue
        if isinstance(value, Mapping):
            pairs += _flatten(value, f"{path}.", skip)
        elif isinstance(value, list) and any(isinstance(item, Mapping) for item in value):
            continue
        else:
            pairs.append((path, value))
    return pairs


def _create_model_call(arguments) -> str:
    arguments = dict(arguments)
    name = arguments.pop("name")
    options = ", ".join(f"{key}={value!r}" for key, value in arguments.items() if value is not None)
    return f"kerazoo.create_model({name!r}{', ' + options if options else ''})"


class _Card:
    """The facts of one preset, and the card's sections built from them."""

    def __init__(self, metadata: dict, config: dict, name: str, source: str, files: dict, repo_id=None, folder=""):
        self.metadata, self.config = metadata, config
        self.name, self.source, self.files = name, source, files
        self.repo_id, self.folder = repo_id, folder
        self.model = metadata["model"]
        self.task = self.model.get("task") or "segmentation"
        self.metrics = dict(metadata.get("metrics") or {})
        self.evaluation = dict(metadata.get("evaluation") or {})
        self.training = dict(metadata.get("training") or {})
        self.eval_dataset = self.evaluation.get("dataset") or metadata.get("dataset") or "unknown"
        self.class_names = metadata.get("class_names") or []
        self.class_colors = metadata.get("class_colors") or []
        weights = self.training.get("resolved", {}).get("class_weights") if isinstance(
            self.training.get("resolved"), Mapping) else None
        self.class_weights = weights if isinstance(weights, list) and len(weights) == len(self.class_names) else None

    # ---- front matter -------------------------------------------------------------------------------

    def front_matter(self) -> str:
        hub = _hub()
        licence, licence_name = license_id(self.metadata.get("license"))
        datasets = [d for d in dict.fromkeys([self.metadata.get("dataset"), self.evaluation.get("dataset")]) if d]
        tags = ["kerazoo", "keras", "tensorflow", _TASK_TAGS[self.task], self.model["name"],
                self.model.get("encoder"), *datasets]
        results = [
            hub.EvalResult(task_type=PIPELINE_TAGS[self.task], task_name=_TASK_NAMES[self.task],
                           dataset_type=self.eval_dataset, dataset_name=self.eval_dataset,
                           dataset_split=self.evaluation.get("split"), metric_type=key, metric_name=_metric_label(key),
                           metric_value=value)
            for key, value in self.metrics.items()]
        data = hub.ModelCardData(
            library_name="kerazoo", license=licence, license_name=licence_name,
            pipeline_tag=PIPELINE_TAGS[self.task], tags=[tag for tag in tags if tag], datasets=datasets or None,
            metrics=sorted({_metric_family(key) for key in self.metrics}) or None,
            base_model=self.metadata.get("base_model"), model_name=self.name, eval_results=results or None)
        return data.to_yaml()

    # ---- body ---------------------------------------------------------------------------------------

    def body(self) -> list[str]:
        lines = [f"# {self.name}", ""]
        if self.metadata.get("description"):
            lines += [self.metadata["description"], ""]
        lines += [f"A kerazoo preset for {_TASK_NAMES[self.task].lower()}. "
                  "This card is generated from the preset's metadata.json and config.json; every figure in its "
                  "tables is a value of those files, keyed by its JSON key.", ""]
        summary = [(key, self.metadata.get(key)) for key in
                   ("dataset", "parameter_count", "weights_dtype", "weights_bytes", "license", "format_version",
                    "keras_version", "kerazoo_version")]
        lines += ["## Summary", ""] + _key_value_table([(k, v) for k, v in summary if v is not None])
        lines += ["The model, as `create_model` builds it (the preset supplies all weights):", "", "```python",
                  _create_model_call(self.model), "```", ""]
        lines += self.usage() + self.classes() + self.inputs() + self.recipe() + self.results()
        lines += self.file_table() + self.limitations()
        return lines

    def usage(self) -> list[str]:
        call = {"segmentation": "labels = model.segment(image)  # HxWxC raw pixels -> HxW int class ids",
                "denoise": "clean = model.restore(noisy)  # HxWxC raw pixels -> uint8 image, same size",
                "super_resolution": "large = model.restore(small)  # HxWxC raw pixels -> uint8, `scale` times larger",
                "depth": "depth = model.predict_depth(image)  # HxWx3 raw pixels -> HxW metres"}[self.task]
        lines = ["## How to use", "", "### Python", "", "```python", "import kerazoo  # pip install \"kerazoo[hub]\"",
                 "", f"model = kerazoo.from_preset({self.source!r})", call, "```", "",
                 "The weights are checked against their sha256 on every load."]
        if self.task == "segmentation":
            lines[-1] += (" `kerazoo.from_preset(source, num_classes=N)` keeps every pretrained layer but the head, "
                          "for fine-tuning on other classes.")
        lines += ["", "### Command line", "", "```bash"]
        segmentation = self.task == "segmentation"
        image, predict_dir = ("image.png", "predictions/") if segmentation else ("input.png", "restored/")
        lines += [f"kerazoo predict {self.source} {image} --out-dir {predict_dir}"]
        if self.evaluation.get("command"):
            lines += [f"kerazoo evaluate {self.source} --data-dir DATA  # the evaluation below, on your copy"]
        lines += [f"kerazoo fetch {self.source}  # into the cache, for machines without internet (KERAZOO_OFFLINE=1)",
                  "```", "", "### TFLite (LiteRT)", ""]
        tflite = sorted(path for path in self.files if path.endswith(".tflite"))
        if tflite and self.repo_id:
            in_repo = f"{self.folder}/{tflite[0]}" if self.folder else tflite[0]
            lines += [f"This repository holds {', '.join(f'`{p}`' for p in tflite)} (see Files).", "", "```python",
                      "from huggingface_hub import hf_hub_download",
                      *_LITERT_IMPORTS, "", f"path = hf_hub_download({self.repo_id!r}, {in_repo!r})"]
        else:
            stem = self.model["name"]
            lines += ["Export it (the exporter checks the file against the Keras model and prints the parity):", "",
                      "```bash", f"kerazoo export {self.source} --formats tflite --out-dir exported/", "```", "",
                      "```python", *_LITERT_IMPORTS, "", f"path = 'exported/{stem}.tflite'"]
        lines += ["interpreter = Interpreter(model_path=path)",
                  "inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]",
                  "batch = image[None].astype(np.float32)  # raw pixels, as the Keras model takes them",
                  "interpreter.resize_tensor_input(inp['index'], batch.shape)",
                  "interpreter.allocate_tensors()",
                  "interpreter.set_tensor(inp['index'], batch)",
                  "interpreter.invoke()",
                  "output = interpreter.get_tensor(out['index'])[0]"]
        lines += {"segmentation": ["labels = output.argmax(-1)  # resize the image to input_size first, as "
                                   "model.segment does"],
                  "depth": ["depth = output[..., 0]  # metres"]}.get(self.task, ["restored = np.clip(np.rint(output), "
                                                                                 "0, 255).astype(np.uint8)"])
        return lines + ["```", ""]

    def classes(self) -> list[str]:
        if not self.class_names:
            return []
        header = ["id", "class", "colour (RGB)"]
        header += ["IoU (`iou_<class>`)"] * any(f"iou_{n}" in self.metrics for n in self.class_names)
        header += ["training weight (`resolved.class_weights`)"] * (self.class_weights is not None)
        rows = []
        for index, name in enumerate(self.class_names):
            row = [index, name, self.class_colors[index] if index < len(self.class_colors) else ""]
            if "IoU (`iou_<class>`)" in header:
                row.append(self.metrics.get(f"iou_{name}", ""))
            if self.class_weights is not None:
                row.append(self.class_weights[index])
            rows.append(row)
        return ["## Classes", "", "Labels are the row ids; predicted masks are drawn with these colours.", ""] + \
            _table(header, rows)

    def inputs(self) -> list[str]:
        inner = self.config.get("config", {})
        pairs = [(key, inner.get(key)) for key in ("in_channels", "input_size", "scale") if inner.get(key) is not None]
        pairs += _flatten({"preprocessing": inner.get("preprocessing") or {}})
        lines = ["## Input and preprocessing", "",
                 "The model takes raw 0..255 pixels, (batch, height, width, in_channels) float32, and normalises them "
                 "inside, so an exported file takes the same input. Values from config.json:", ""]
        lines += _key_value_table(pairs)
        if self.metadata.get("preprocessing"):
            lines += [f"metadata.json: {self.metadata['preprocessing']}.", ""]
        return lines

    def recipe(self) -> list[str]:
        if not self.training:
            return []
        lines = ["## Training", ""]
        if self.training.get("command"):
            lines += ["Reproduce it with:", "", "```bash", self.training["command"], "```", ""]
        skip = ("command",) + _PRIVATE_KEYS + ("resolved.class_weights",) * (self.class_weights is not None)
        pairs = [(key, value) for key, value in _flatten(self.training, skip=skip)
                 if value != self.metadata.get("description")]
        lines += ["The recipe, from metadata.json's `training`:", ""] + _key_value_table(pairs)
        for key, value in self.training.items():
            if isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
                columns = list(dict.fromkeys(column for item in value for column in item))
                lines += [f"`{key}` (validation during training):", ""]
                lines += _table([f"`{column}`" for column in columns],
                                [[item.get(column, "") for column in columns] for item in value])
        return lines

    def results(self) -> list[str]:
        if not self.metrics and not self.evaluation:
            return []
        lines = ["## Evaluation", ""]
        if self.evaluation.get("command"):
            lines += ["Measured with:", "", "```bash", self.evaluation["command"], "```", ""]
        protocol = _flatten(self.evaluation, skip=("command", "float32_checkpoint_metrics"))
        if protocol:
            lines += ["Protocol, from metadata.json's `evaluation`:", ""] + _key_value_table(protocol)
        if self.metrics:
            checkpoint = self.evaluation.get("float32_checkpoint_metrics") or {}
            header = ["metric", "name", "value (`metrics`)"]
            header += ["float32 checkpoint (`evaluation.float32_checkpoint_metrics`)"] * bool(checkpoint)
            rows = [[f"`{key}`", _metric_label(key), value] + ([checkpoint.get(key, "")] if checkpoint else [])
                    for key, value in self.metrics.items()]
            split = self.evaluation.get("split", "split not recorded")
            lines += [f"Figures of these weights on `{self.eval_dataset}` ({split}):", ""]
            lines += _table(header, rows)
        return lines

    def file_table(self) -> list[str]:
        rows = [(f"`{path}`", Path(local).stat().st_size, sha256_file(local)) for path, local in self.files.items()]
        return ["## Files", "", "`kerazoo.from_preset` downloads the three preset files only; it checks "
                "model.weights.h5 against `weights_sha256` in metadata.json.", ""] + \
            _table(["file", "bytes", "sha256"], rows)

    def limitations(self) -> list[str]:
        data = self.metadata.get("dataset") or "its training set"
        items = [f"Trained on `{data}` only and measured on `{self.eval_dataset}`: images unlike those (other "
                 "cameras, scenes, scanners) will score below the evaluation table."]
        if self.task == "segmentation" and self.class_names:
            items.append("It predicts only the classes listed; every pixel gets one of them, including pixels of "
                         "objects it never saw (there is no 'other' class).")
        if self.task == "segmentation" and self.metadata.get("input_size"):
            height, width = self.metadata["input_size"]
            items.append(f"Trained at {height}x{width} (`input_size`): `model.segment` resizes to that size and "
                         "back; a file run on another size without resizing scores lower.")
        sigma = self.metadata.get("noise_sigma")
        if self.task == "denoise" and isinstance(sigma, (list, tuple)):
            items.append(f"Trained for additive Gaussian noise of any sigma from {sigma[0]} to {sigma[1]} (blind); "
                         "real sensor noise is not Gaussian.")
        elif self.task == "denoise" and sigma is not None:
            items.append(f"Trained for additive Gaussian noise at sigma {sigma} only: see "
                         "the figures at other sigmas in the evaluation table; real sensor noise is not Gaussian.")
        if self.task == "super_resolution" and self.config.get("config", {}).get("scale"):
            items.append(f"Trained for x{self.config['config']['scale']} bicubic downscaling only; blurred, noisy "
                         "or compressed inputs are outside what it learned.")
        if self.metadata.get("weights_dtype") == "float16":
            items.append("Kernels are stored as float16 and load as float32; the figures above were measured "
                         "with the stored weights.")
        if self.metadata.get("license"):
            items.append(f"Licence: {self.metadata['license']} The training data's terms may restrict use.")
        items += [str(item) for item in self.metadata.get("limitations") or []]
        return ["## Limitations", ""] + [f"- {item}" for item in items] + [""]

    def text(self) -> str:
        return f"---\n{self.front_matter()}\n---\n\n" + "\n".join(self.body()).rstrip() + "\n"


def model_card(preset, *, repo_id=None, folder="", files=None, name=None) -> str:
    """The model card (README.md text) of a preset, generated from its metadata.json and config.json.

    The same preset gives the same text, byte for byte (no dates), so pushing an unchanged preset again
    changes nothing on the Hub.

    Args:
        preset: a preset name, directory or URI (see `kerazoo.from_preset`); it is verified first.
        repo_id: "owner/name" of the Hub repository the card is for; the snippets load from
            "hf://owner/name". None: they load the preset by its name.
        folder: the folder of the repository that holds the preset ("" for its root).
        files: {path in the repository: local file} of every file published beside the card; None:
            the preset's three files. Listed with their size and sha256.
        name: the card's title; default: the preset directory's name.

    Returns:
        The card: YAML front matter between `---` lines, then Markdown.

    Raises:
        ImportError: huggingface_hub is not installed (`pip install "kerazoo[hub]"`).
        kerazoo.zoo.PresetError: the preset cannot be found or fails its checks.
    """
    _hub()
    if repo_id is not None and not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", repo_id):
        raise ValueError(f"repo_id must look like owner/name; got {repo_id!r}")
    directory = preset_directory(preset)
    metadata = preset_metadata(directory)
    config = json.loads((directory / CONFIG_FILE).read_text())
    name = name or (repo_id.split("/")[-1] if repo_id else directory.name)
    if repo_id:
        source = f"hf://{repo_id}" + (f"/{folder}" if folder else "")
    else:
        source = str(preset) if isinstance(preset, str) else str(directory)
    if files is None:
        files = {file: directory / file for file in PRESET_FILES}
    return _Card(metadata, config, name, source, dict(files), repo_id, folder).text()


def write_model_card(preset, output, *, repo_id=None, overwrite=False) -> Path:
    """Writes `model_card(preset, repo_id=repo_id)` to `output` atomically.

    Args:
        preset: a preset name, directory or URI.
        output: the file to write (e.g. README.md).
        repo_id: "owner/name" the snippets load from, or None for the preset's own name.
        overwrite: replace an existing file (refused otherwise, so a project's own README.md survives).

    Returns:
        The path written.
    """
    output = Path(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass overwrite=True (kerazoo card --force) to replace it")
    return atomic_write_text(output, model_card(preset, repo_id=repo_id))
