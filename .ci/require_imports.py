"""CI: fails, naming each module that does not import, so that the tests needing them cannot silently skip.

    python .ci/require_imports.py "export and data extras" tf2onnx onnx ...

An extra that is installed but broken (its import raises) counts as missing.
"""

import importlib
import sys


def main(what, modules):
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:
            missing.append(f"{name} ({type(error).__name__}: {error})")
    if missing:
        return f"CI: {what} missing or broken, their tests would be skipped or fail: " + "; ".join(missing)
    print(f"CI: {what} import ({', '.join(modules)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
