#!/usr/bin/env bash
# Installs convcore (with its test and demo extras) into a fresh virtual environment and runs
# every test: pytest (with the PyTorch parity tests when torch is installed), then the C++ unit
# tests through ctest, with and without OpenMP.
#   bash scripts/test.sh            # venv in .venv
#   VENV=/tmp/v bash scripts/test.sh
#   CONVCORE_WITH_TORCH=0 ...       # skip installing torch (its tests are then skipped)
#   CONVCORE_WITH_MPI=0 ...         # skip the mpi extra (the multi-rank tests are then skipped)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
BUILD=${BUILD_DIR:-build/ctest}

"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
# The demo's extras too, so that its tests run rather than skip.
EXTRAS=test,demo
if [[ ${CONVCORE_WITH_MPI:-1} == 1 ]]; then
  # The mpi extra (mpi4py and the mpich wheel, which brings mpiexec): the multi-rank tests run
  # under mpiexec, and must run — CONVCORE_REQUIRE_MPI turns their skip into a failure.
  EXTRAS=$EXTRAS,mpi
  export CONVCORE_REQUIRE_MPI=1
fi
"$VENV/bin/python" -m pip install ".[$EXTRAS]"
if [[ ${CONVCORE_WITH_TORCH:-1} == 1 ]]; then
  # The CPU build of PyTorch, used only as a test oracle.
  "$VENV/bin/python" -m pip install "torch==2.13.0" || echo "torch not installable here: its tests will be skipped"
fi

# pytest from outside the source tree, so the installed package (with its native module) is tested.
VENV_PY="$(cd "$VENV" && pwd)/bin/python"  # VENV may be relative or absolute
(cd tests && "$VENV_PY" -m pytest -c ../pyproject.toml --rootdir=.. -q)

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCONVCORE_BUILD_TESTS=ON
cmake --build "$BUILD" -j "$(nproc)"
ctest --test-dir "$BUILD" --output-on-failure

# The same C++ tests built without OpenMP: single-threaded, every test must still pass.
cmake -S . -B "$BUILD-serial" -DCMAKE_BUILD_TYPE=Release -DCONVCORE_BUILD_TESTS=ON -DCONVCORE_USE_OPENMP=OFF
cmake --build "$BUILD-serial" -j "$(nproc)"
ctest --test-dir "$BUILD-serial" --output-on-failure
