"""Where data sets live: an explicit `data_dir`, else `$KERAZOO_DATA`, else `~/.keras/datasets`."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DataNotFoundError", "data_home", "is_offline", "resolve_data_dir"]

ENV_VAR = "KERAZOO_DATA"
OFFLINE_VAR = "KERAZOO_OFFLINE"
# Keras' own convention for downloaded data sets (keras.utils.get_file's cache_subdir="datasets").
DEFAULT_HOME = Path("~", ".keras", "datasets")


class DataNotFoundError(FileNotFoundError):
    """A data directory or data set folder is missing."""


def data_home(data_dir: str | os.PathLike | None = None) -> Path:
    """The root that holds one folder per data set: `data_dir`, else `$KERAZOO_DATA`, else `~/.keras/datasets`."""
    root = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or DEFAULT_HOME
    return Path(root).expanduser()


def is_offline() -> bool:
    """True when `KERAZOO_OFFLINE` is set to 1/true/yes/on: nothing may be downloaded."""
    return os.environ.get(OFFLINE_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def resolve_data_dir(data_dir: str | os.PathLike | None = None, dataset: str | None = None) -> Path:
    """Finds the root folder that holds the data sets (it never downloads; `kerazoo.data.load` does).

    Args:
        data_dir: Explicit root; wins over everything else.
        dataset: Optional sub-folder that must exist under the root (e.g. "camvid").

    Returns:
        The root directory (not the data set sub-folder).

    Raises:
        DataNotFoundError: naming the path tried, how to point at another root and how to download.
    """
    root = data_home(data_dir)
    if root.is_dir() and (dataset is None or (root / dataset).is_dir()):
        return root
    what = f"data set folder {str(root / dataset)!r}" if dataset else f"data directory {str(root)!r}"
    hint = ""
    if dataset:
        from kerazoo.data.catalog import DATASETS  # the catalogue knows which data sets can be downloaded

        if dataset in DATASETS and DATASETS[dataset].download:
            hint = f"; `kerazoo.data.download_dataset({dataset!r})` downloads it"
    raise DataNotFoundError(
        f"Could not find the {what}. Pass data_dir=... or set the {ENV_VAR} environment variable to "
        f"the folder that holds '{dataset or '<dataset>'}/' (default {DEFAULT_HOME}){hint}."
    )
