"""Downloading data sets from their public sources, verified file by file.

A data set that can be downloaded names a manifest (`DatasetInfo.download`): a small JSON file in
`kerazoo/data/manifests/` listing every file with its sha256 and size, and the `base_url` the files
come from (raw files at a pinned commit of the upstream repository). Optional `archives` entries are
downloaded, verified and unpacked into the folder the same way.

The data set folder appears whole or not at all: files are fetched into a staging folder beside it,
each checked against its sha256, and the staging folder is renamed into place only when every file
arrived (`kerazoo.utils.files.atomic_directory`). A failed, corrupt or interrupted download leaves nothing.

Environment:
    KERAZOO_DATA: the root that holds one folder per data set (default `~/.keras/datasets`).
    KERAZOO_OFFLINE=1: never download; a missing data set is an error that says how to get it.
    KERAZOO_DATA_MIRROR: a URL prefix used instead of each manifest's `base_url`; a file `path` of
        data set `name` is fetched from `<mirror>/<name>/<path>`. Serving a data root (for instance
        `~/.keras/datasets`) over https, or http on 127.0.0.1 for tests, makes such a mirror.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import tempfile
from pathlib import Path

from kerazoo.data.catalog import DATASETS, DatasetInfo, list_datasets
from kerazoo.data.paths import OFFLINE_VAR, DataNotFoundError, data_home, is_offline
from kerazoo.utils.download import ChecksumError, DownloadError, download, extract_archive, progress_bar
from kerazoo.utils.files import atomic_directory

__all__ = ["Manifest", "MIRROR_VAR", "download_dataset", "ensure_dataset", "load_manifest"]

MIRROR_VAR = "KERAZOO_DATA_MIRROR"
MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The files of one downloadable data set.

    Attributes:
        name: Data set name; also the folder name under the data root.
        base_url: URL prefix of every file (ends with "/").
        files: `(relative path, sha256, bytes)` for each file, placed at that path in the folder.
        archives: `(relative URL path, sha256, bytes)` of archives unpacked into the folder.
        source: Human-readable origin (repository at a commit).
        license: The terms stated at the source.
    """

    name: str
    base_url: str
    files: tuple[tuple[str, str, int], ...]
    archives: tuple[tuple[str, str, int], ...] = ()
    source: str = ""
    license: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(size for _, _, size in self.files + self.archives)


def load_manifest(manifest: str | os.PathLike) -> Manifest:
    """Reads a manifest: a name in `kerazoo/data/manifests/` (e.g. "camvid") or a path to a JSON file."""
    path = Path(manifest)
    if path.suffix != ".json":
        path = MANIFEST_DIR / f"{manifest}.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        known = sorted(p.stem for p in MANIFEST_DIR.glob("*.json"))
        raise ValueError(f"No data set manifest {str(manifest)!r}; shipped manifests: {known}") from None
    entries = {key: tuple((str(p), str(h).lower(), int(n)) for p, h, n in raw.get(key, ()))
               for key in ("files", "archives")}
    for relative, _, _ in entries["files"] + entries["archives"]:
        if relative.startswith("/") or ".." in Path(relative).parts:
            raise ValueError(f"{path}: entry {relative!r} is not a plain relative path")
    return Manifest(name=raw["name"], base_url=raw["base_url"].rstrip("/") + "/", files=entries["files"],
                    archives=entries["archives"], source=raw.get("source", ""), license=raw.get("license", ""))


def _info(name_or_info) -> DatasetInfo:
    if isinstance(name_or_info, DatasetInfo):
        return name_or_info
    return DATASETS.get(name_or_info)


def _base_url(manifest: Manifest, mirror: str | None) -> str:
    mirror = mirror or os.environ.get(MIRROR_VAR)
    return f"{mirror.rstrip('/')}/{manifest.name}/" if mirror else manifest.base_url


def _fetch_all(manifest, base_url, staging, *, workers, progress, download_options):
    """Downloads every file (and archive) of `manifest` into `staging`, in parallel, verifying each."""
    jobs = [(relative, sha256, size, staging / relative) for relative, sha256, size in manifest.files]
    unpack = Path(tempfile.mkdtemp(dir=staging, prefix=".archives."))
    jobs += [(relative, sha256, size, unpack / f"{index}_{Path(relative).name}")
             for index, (relative, sha256, size) in enumerate(manifest.archives)]
    for *_, destination in jobs:
        destination.parent.mkdir(parents=True, exist_ok=True)
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    try:
        with progress_bar(progress) as bar:
            task = bar.add_task(manifest.name, total=manifest.total_bytes) if bar is not None else None
            futures = {executor.submit(download, base_url + relative, destination, sha256, progress=False,
                                       **download_options): size
                       for relative, sha256, size, destination in jobs}
            for future in concurrent.futures.as_completed(futures):
                future.result()  # the first failure ends the whole download
                if bar is not None:
                    bar.update(task, advance=futures[future])
    finally:
        # Files already in flight finish (each is bounded by its timeout) before the staging folder goes.
        executor.shutdown(wait=True, cancel_futures=True)
    for archive in sorted(unpack.iterdir()):
        extract_archive(archive, staging)
        archive.unlink()
    unpack.rmdir()


def download_dataset(name: str | DatasetInfo, data_dir: str | os.PathLike | None = None, *,
                     mirror: str | None = None, force: bool = False, workers: int = 8, progress: bool | None = None,
                     timeout: float = 30.0, retries: int = 3, backoff: float = 1.0) -> Path:
    """Downloads a data set into `<root>/<name>/`, verifying every file's sha256.

    Args:
        name: A name from `list_datasets()` whose entry has a `download` manifest, or a `DatasetInfo`.
        data_dir: The data root; None uses `$KERAZOO_DATA`, else `~/.keras/datasets`.
        mirror: URL prefix to fetch from instead of the manifest's `base_url` (files at
            `<mirror>/<name>/<path>`); None uses `$KERAZOO_DATA_MIRROR` when set.
        force: Download again when the folder exists (the old folder is replaced in one rename).
        workers: Files downloaded in parallel.
        progress: Show a progress bar on stderr; None shows it only on a terminal.
        timeout: Per file: seconds a connect or a read may wait (see `kerazoo.utils.download.download`).
        retries: Per file: attempts after the first one.
        backoff: Per file: seconds before the first retry; doubles each retry.

    Returns:
        The data set folder, `<root>/<name>`.

    Raises:
        ValueError: unknown name, or a data set that kerazoo cannot download.
        DataNotFoundError: `KERAZOO_OFFLINE` is set.
        DownloadError, ChecksumError: a file failed or did not match; nothing was kept.
    """
    info = _info(name)
    if not info.download:
        downloadable = [n for n in list_datasets() if DATASETS[n].download]
        raise ValueError(f"kerazoo cannot download {info.name!r}; data sets with a download: {downloadable}")
    manifest = load_manifest(info.download)
    folder = data_home(data_dir) / info.name
    if folder.is_dir() and not force:
        return folder
    if is_offline():
        raise DataNotFoundError(f"{OFFLINE_VAR} is set, so {info.name!r} cannot be downloaded into {folder}.")
    base_url = _base_url(manifest, mirror)
    try:
        with atomic_directory(folder, overwrite=force) as staging:
            _fetch_all(manifest, base_url, staging, workers=workers, progress=progress,
                       download_options=dict(timeout=timeout, retries=retries, backoff=backoff))
    except DownloadError as error:  # ChecksumError included; keep its type for callers that catch it
        raise type(error)(f"Downloading data set {info.name!r} from {base_url} failed: {error} "
                          f"Nothing was kept: {folder} was not created.") from error
    return folder


def ensure_dataset(info: DatasetInfo, data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The folder of `info` under the data root; downloads it first when it is missing and allowed.

    Raises:
        DataNotFoundError: the folder is missing and cannot be downloaded (none is known, `download`
            is False or `KERAZOO_OFFLINE` is set); the message names the folder and how to get it.
    """
    root = data_home(data_dir)
    folder = root / info.name
    if folder.is_dir():
        return folder
    if info.download and download and not is_offline():
        return download_dataset(info, root)
    where = (f"Pass data_dir=... or set KERAZOO_DATA to the folder that holds '{info.name}/' "
             f"(now {root}{'' if data_dir is None else ', from data_dir'})")
    if not info.download:
        raise DataNotFoundError(f"Data set {info.name!r} not found at {folder}. {where}.")
    reason = f"{OFFLINE_VAR} is set" if is_offline() else "download=False was passed"
    source = load_manifest(info.download).source
    raise DataNotFoundError(
        f"Data set {info.name!r} not found at {folder}, and {reason}. {where}, or download it on a machine "
        f"with internet with `kerazoo.data.download_dataset({info.name!r})` ({source}) and copy the folder "
        "here.")
