"""``python -m convcore.bench``: the benchmark's own entry point, also used for its child processes
(the torch(heap) timings and memory mode)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
