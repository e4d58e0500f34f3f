#!/usr/bin/env bash
# Types, as a user of the installed package sees them:
#   1. the committed stubs of the native module (python/convcore/_core.pyi) are what
#      pybind11-stubgen generates from the installed module (scripts/stubs.py);
#   2. mypy --strict passes on examples/ against the installed package (py.typed + the stubs).
# Needs convcore installed with its test extra (mypy, pybind11-stubgen), e.g. by scripts/test.sh:
#   bash scripts/typecheck.sh                 # uses .venv
#   VENV=/tmp/v bash scripts/typecheck.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYBIN="$VENV/bin/python"

"$PYBIN" scripts/stubs.py
# From the repository root, where no convcore/ folder shadows the installed package.
"$PYBIN" -m mypy --strict --no-incremental examples/
