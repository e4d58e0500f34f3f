"""Command line: ``python -m convcore info``."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def _info(_args) -> int:
    import convcore

    for key, value in convcore.info().items():
        print(f"{key:>15}: {value}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="convcore", description="convcore command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print version, kernel path, threads and OpenMP status").set_defaults(func=_info)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
