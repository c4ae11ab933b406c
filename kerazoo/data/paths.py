"""Finding the data directory: explicit argument, then $KERAZOO_DATA, then ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["resolve_data_dir", "DataNotFoundError"]

ENV_VAR = "KERAZOO_DATA"


class DataNotFoundError(FileNotFoundError):
    """A data directory or data set folder is missing."""


def _candidates() -> list[Path]:
    # The checkout sits next to ../shared, so look beside the working directory and beside the repo.
    repo = Path(__file__).resolve().parents[2]
    found = []
    for path in (Path.cwd() / ".." / "shared" / "data", repo / ".." / "shared" / "data"):
        path = path.resolve()
        if path not in found:
            found.append(path)
    return found


def resolve_data_dir(data_dir: str | os.PathLike | None = None, dataset: str | None = None) -> Path:
    """Finds the root folder that holds the data sets.

    Args:
        data_dir: Explicit root; wins over everything else.
        dataset: Optional sub-folder that must exist under the root (e.g. "camvid").

    Returns:
        The root directory (not the dataset sub-folder).

    Raises:
        DataNotFoundError: naming every path tried and how to set `KERAZOO_DATA`.
    """
    if data_dir is not None:
        tried = [Path(data_dir).expanduser()]
    elif os.environ.get(ENV_VAR):
        tried = [Path(os.environ[ENV_VAR]).expanduser()]
    else:
        tried = _candidates()
    for root in tried:
        if root.is_dir() and (dataset is None or (root / dataset).is_dir()):
            return root
    what = f"data set folder '{dataset}'" if dataset else "data directory"
    paths = ", ".join(str(p / dataset) if dataset else str(p) for p in tried)
    raise DataNotFoundError(
        f"Could not find the {what}; tried: {paths}. Pass data_dir=... or set the "
        f"{ENV_VAR} environment variable to the folder that holds '{dataset or '<dataset>'}/'."
    )
