"""Verified downloads and safe archive extraction for the preset zoo and the data sets.

Everything here is standard library (urllib, hashlib, tarfile, zipfile) plus `rich` for the
progress bar. A download streams into a temporary file next to its destination, is checked against
the expected length and sha256, and only then is renamed into place, so a failed, interrupted or
corrupt transfer never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import ipaddress
import os
import socket
import stat
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from kerazoo.utils.progress import progress_bar as _progress_bar

__all__ = [
    "ChecksumError", "DownloadError", "UnsafeArchiveError", "check_url", "download", "extract_archive",
    "progress_bar", "sha256_file",
]

USER_AGENT = "kerazoo (+https://pypi.org/project/kerazoo)"
CHUNK_BYTES = 1 << 20
# Guards against archive bombs; the largest encoder-decoder here (FCN-8s on VGG) is ~540 MB in float32.
MAX_EXTRACTED_BYTES = 4 << 30


class DownloadError(OSError):
    """A download failed; the message names the URL, what went wrong and that nothing was kept."""


class ChecksumError(DownloadError):
    """Downloaded bytes do not have the expected sha256 (not retried: the server sent other bytes)."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the target directory, or is a link or device."""


class _RetryableError(Exception):
    """A transfer fault worth another attempt (timeout, reset, truncated body, HTTP 5xx)."""


def sha256_file(path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_loopback(host) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url) -> str:
    """Returns `url` if it may be fetched: https anywhere, plain http only on the loopback interface.

    Plain http to 127.0.0.1 / ::1 / localhost exists for tests and local mirrors; anywhere else the
    weights would travel unauthenticated, so it is refused.

    Raises:
        ValueError: for other schemes, or http to a non-loopback host.
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "https" and parsed.hostname:
        return url
    if parsed.scheme == "http" and parsed.hostname and _is_loopback(parsed.hostname):
        return url
    raise ValueError(f"Refusing to download {url!r}: only https:// URLs are allowed "
                     "(plain http:// only for 127.0.0.1, ::1 or localhost).")


def progress_bar(enabled):
    """A byte-progress bar on stderr, or None when disabled (`kerazoo.utils.progress`)."""
    return _progress_bar(enabled, unit="bytes")


def _attempt(url, partial, timeout, progress):
    """One GET of `url` into the open file `partial`; returns the sha256 of what was written."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    digest = hashlib.sha256()
    partial.seek(0)
    partial.truncate()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            received = 0
            with progress_bar(progress) as bar:
                name = Path(urllib.parse.urlsplit(url).path).name or url
                task = bar.add_task(name, total=expected) if bar is not None else None
                # The socket timeout bounds each read, so a stalled server raises instead of hanging.
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    partial.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(task, advance=len(chunk))
            # http.client returns a short body without error when the connection drops early.
            if expected is not None and received != expected:
                raise _RetryableError(f"truncated transfer: got {received} of {expected} bytes")
    except urllib.error.HTTPError as error:
        if error.code >= 500 or error.code in (408, 429):
            raise _RetryableError(f"HTTP {error.code} {error.reason}") from error
        raise DownloadError(f"HTTP {error.code} {error.reason}") from error
    except (TimeoutError, socket.timeout) as error:
        raise _RetryableError(f"timed out after {timeout} s without data") from error
    except urllib.error.URLError as error:
        if isinstance(error.reason, (TimeoutError, socket.timeout)):
            raise _RetryableError(f"timed out after {timeout} s connecting") from error
        raise _RetryableError(f"connection failed: {error.reason}") from error
    except (ConnectionError, http.client.HTTPException) as error:
        raise _RetryableError(f"connection broken: {error!r}") from error
    partial.flush()
    return digest.hexdigest()


def download(url, destination, sha256=None, *, timeout=30.0, retries=3, backoff=1.0, progress=None):
    """Downloads `url` to `destination` atomically, verifying its sha256.

    The body streams into a temporary file in `destination`'s directory; only a transfer of the
    announced length whose sha256 matches is renamed to `destination`. Timeouts, dropped or
    truncated transfers and HTTP 5xx / 408 / 429 are retried `retries` times with exponential
    backoff (`backoff`, 2 x `backoff`, ...); other HTTP errors and a wrong sha256 are not.

    Args:
        url: an https:// URL (http:// only on the loopback interface, see `check_url`).
        destination: final file path; its directory must exist.
        sha256: expected hex digest, or None to accept any bytes (the caller checks them otherwise).
        timeout: seconds a connect or a single read may wait for data.
        retries: attempts after the first one.
        backoff: seconds before the first retry; doubles each retry.
        progress: show a rich progress bar on stderr; None shows it only on a terminal.

    Returns:
        The sha256 hex digest of the downloaded file.

    Raises:
        DownloadError: the transfer failed; nothing was written at `destination`.
        ChecksumError: the bytes arrived but their sha256 differs from `sha256`.
    """
    check_url(url)
    destination = Path(destination)
    sha256 = sha256.lower() if sha256 else None
    descriptor, partial_path = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.",
                                                suffix=".partial")
    try:
        with os.fdopen(descriptor, "wb") as partial:
            attempts, last_error = retries + 1, None
            for attempt in range(attempts):
                if attempt:
                    time.sleep(backoff * 2 ** (attempt - 1))
                try:
                    digest = _attempt(url, partial, timeout, progress)
                    break
                except _RetryableError as error:
                    last_error = error
                except DownloadError as error:
                    raise DownloadError(f"Download of {url} failed: {error}. Nothing was written to "
                                        f"{destination}.") from error
            else:
                raise DownloadError(f"Download of {url} failed after {attempts} attempt(s); last error: "
                                    f"{last_error}. Nothing was written to {destination}.") from last_error
            os.fsync(partial.fileno())
        if sha256 is not None and digest != sha256:
            raise ChecksumError(f"Download of {url} has sha256 {digest}, expected {sha256}: the file is corrupt "
                                f"or was replaced on the server. Nothing was written to {destination}.")
        os.replace(partial_path, destination)
        return digest
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial_path)


def _check_member_path(name, target, archive):
    """Raises unless archive member `name` lands strictly inside `target`."""
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    resolved = (target / name).resolve()
    if resolved != target and target not in resolved.parents:
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside {target}; "
                                 "refusing to extract")


def extract_archive(archive, target, max_bytes=MAX_EXTRACTED_BYTES):
    """Extracts a .tar(.gz/.bz2/.xz) or .zip archive into the existing directory `target`.

    Every member is checked before anything is written: absolute paths, paths that leave `target`,
    links and device files are rejected (tar extraction also runs with `filter="data"`, the
    standard library's own guard). The format is detected from the content, not the file name.

    Raises:
        UnsafeArchiveError: a member is unsafe, or the archive unpacks to more than `max_bytes`.
        ValueError: the file is neither a tar nor a zip archive.
    """
    archive, target = Path(archive), Path(target).resolve()
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            total = 0
            for member in members:
                _check_member_path(member.name, target, archive)
                if not (member.isfile() or member.isdir()):
                    raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a link or special file; "
                                             "presets hold regular files only")
                total += member.size
            if total > max_bytes:
                raise UnsafeArchiveError(f"{archive}: unpacks to {total} bytes, over the {max_bytes} byte limit")
            tar.extractall(target, members=members, filter="data")
        return target
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zip_file:
            infos = zip_file.infolist()
            for info in infos:
                _check_member_path(info.filename, target, archive)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symbolic link; "
                                             "presets hold regular files only")
            total = sum(info.file_size for info in infos)
            if total > max_bytes:
                raise UnsafeArchiveError(f"{archive}: unpacks to {total} bytes, over the {max_bytes} byte limit")
            zip_file.extractall(target)
        return target
    raise ValueError(f"{archive} is neither a tar nor a zip archive")
