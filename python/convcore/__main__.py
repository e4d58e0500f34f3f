"""Command line: ``python -m convcore demo | info | bench``."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from .demo import add_arguments as add_demo_arguments


def _info(_args) -> int:
    import convcore

    for key, value in convcore.info().items():
        print(f"{key:>15}: {value}")
    return 0


def _demo(args) -> int:
    from .demo import run

    return run(args)


def _bench(args) -> int:
    from .bench import main as bench_main

    return bench_main(args.rest)


def main(argv: Optional[List[str]] = None) -> int:
    # The epilog is kept on lines of its own: argparse would otherwise wrap a command in two.
    parser = argparse.ArgumentParser(prog="convcore", description="convcore command line",
                                     epilog="'convcore COMMAND --help' shows a command's options,\n"
                                            "e.g. 'convcore bench --help'.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a small CNN on scikit-learn's handwritten digits",
                          description="Train a small CNN on scikit-learn's 8x8 handwritten digits "
                                      "and report the test accuracy (needs convcore[demo]).")
    add_demo_arguments(demo).set_defaults(func=_demo)
    sub.add_parser("info", help="print version, kernel path, threads and OpenMP status").set_defaults(func=_info)
    bench = sub.add_parser("bench", help="time convcore against PyTorch and NumPy", add_help=False)
    bench.set_defaults(func=_bench)
    args, rest = parser.parse_known_args(argv)
    if rest and args.func is not _bench:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
