"""Optional extras that some tests need (bm3d, scikit-image, the benchmark's peer, the other backends, ...).

A test calls `require_extra("bm3d", "baselines")` (module, the extra that installs it) and gets the module.
Where the module is missing or broken the test skips, naming the install command, so `make test` works on a
machine without the extra. With `KERAZOO_REQUIRE_EXTRAS=1` (CI sets it) the same test fails instead: in CI
a skipped test would hide a broken install.
"""

import importlib
import importlib.util
import os

import pytest

REQUIRE_EXTRAS_VAR = "KERAZOO_REQUIRE_EXTRAS"


def extras_required() -> bool:
    """Whether `KERAZOO_REQUIRE_EXTRAS` turns a missing extra into a failure."""
    return os.environ.get(REQUIRE_EXTRAS_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def require_extra(module: str, extra: str):
    """Imports `module`; skips the calling test when it does not import, or fails it when extras are required.

    Args:
        module: the module to import, e.g. "skimage.metrics".
        extra: the kerazoo extra that installs it, e.g. "dev" or "peer".

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except Exception as error:  # an extra that is installed but broken counts as missing
        _skip_or_fail(f'{module} does not import ({type(error).__name__}: {error}); pip install "kerazoo[{extra}]"')


def require_installed(module: str, extra: str):
    """Like `require_extra`, but only finds `module` without importing it: smp and torch imported into a process
    that loaded TensorFlow first crash it (kerazoo/bench/peer.py), so such tests run them in subprocesses."""
    if importlib.util.find_spec(module) is not None:
        return
    _skip_or_fail(f'{module} is not installed; pip install "kerazoo[{extra}]"')


def _skip_or_fail(message):
    """Skips the calling test for a missing extra, or fails it when extras are required (CI)."""
    if extras_required():
        pytest.fail(f"{message}, and {REQUIRE_EXTRAS_VAR} is set", pytrace=False)
    pytest.skip(message)
