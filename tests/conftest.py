"""Shared test fixtures: where the real data sets are.

Tests never look for data beside the checkout: they read `KERAZOO_DATA` (the Makefile sets it to
`../shared/data` when that folder exists). A test that needs real data skips when it is absent,
unless `KERAZOO_REQUIRE_DATA=1`, which turns the skip into a failure (for CI runs that must use it).
"""

import os
from pathlib import Path

import pytest

REQUIRE_VAR = "KERAZOO_REQUIRE_DATA"


def _find_shared_data(datasets) -> Path:
    """The `KERAZOO_DATA` root holding every folder in `datasets`; skips (or fails) otherwise."""
    root = os.environ.get("KERAZOO_DATA")
    missing = ([] if root else ["KERAZOO_DATA is not set"]) + [
        f"{Path(root) / name} is missing" for name in datasets if root and not (Path(root) / name).is_dir()]
    if not missing:
        return Path(root)
    message = f"real data not found: {'; '.join(missing)} (set KERAZOO_DATA to the data root)"
    if os.environ.get(REQUIRE_VAR, "").strip().lower() in ("1", "true", "yes", "on"):
        pytest.fail(f"{message}, and {REQUIRE_VAR} is set", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def shared_data_dir():
    """A function: `shared_data_dir("camvid", ...)` returns the data root holding those folders.

    It skips the test when they are absent, or fails it when `KERAZOO_REQUIRE_DATA=1`.
    """
    return lambda *datasets: _find_shared_data(datasets)
