"""The `kerazoo` command line: the same vocabulary as the Python API."""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _list(args):
    import kerazoo
    from kerazoo.models import MODELS

    for name, entry in MODELS.items():
        encoders = ", ".join(entry.encoders) if entry.encoders else "(own topology)"
        print(f"{name:14s} encoders: {encoders}\n{'':14s} {entry.reference}")
    print("encoders:", ", ".join(kerazoo.list_encoders()))


def build_parser():
    parser = argparse.ArgumentParser(prog="kerazoo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list models and encoders").set_defaults(run=_list)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
