#!/usr/bin/env python3
"""Time convcore against PyTorch and a NumPy im2col + matmul baseline.

The same as ``python -m convcore bench``; ``--help`` lists the options and README.md in this
directory explains the output. Needs convcore installed (``pip install .``); PyTorch and
matplotlib are optional.
"""

import sys

from convcore.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
