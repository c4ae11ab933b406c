"""Quiet TensorFlow's C++ log lines (oneDNN, absl, CPU features) for the command line and the demo."""

import os
import sys
import tempfile

QUIET_FLAGS = ("--verbose", "-v")

TF_IMPORT_NOISE = ("All log messages before absl::InitializeLog", "oneDNN custom operations",
                   "cpu_feature_guard", "rebuild TensorFlow with the appropriate compiler flags")


def _import_tensorflow_filtered():
    """Imports TensorFlow with stderr captured at the file-descriptor level, then writes back every
    captured line except `TF_IMPORT_NOISE`, so a real error still shows."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not any(noise in line for noise in TF_IMPORT_NOISE)))


def quiet_tensorflow(argv) -> bool:
    """Silences TensorFlow's C++ log lines (oneDNN, absl, CPU features) unless `--verbose` (or `-v`)
    comes before the sub-command; call it before anything imports TensorFlow.

    Returns:
        True when TensorFlow stays quiet.
    """
    leading = []
    for token in argv:
        if not token.startswith("-"):
            break
        leading.append(token)
    verbose = any(flag in leading for flag in QUIET_FLAGS)
    # Explicit either way: some modules set a default of their own when imported.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else "3"
    if not verbose and "tensorflow" not in sys.modules:
        _import_tensorflow_filtered()
    return not verbose
