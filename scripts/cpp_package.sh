#!/usr/bin/env bash
# The C++ package as another project uses it: build convcore, `cmake --install` it into a
# temporary prefix, then configure the consumer project examples/cpp against that prefix
# (find_package(convcore CONFIG), target convcore::convcore), build it and run it. The example
# checks a training step against direct loops and exits 1 on any mismatch.
#   bash scripts/cpp_package.sh          # build tree in build/install
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build/install}
PREFIX=$(mktemp -d "${TMPDIR:-/tmp}/convcore-prefix.XXXXXX")
trap 'rm -rf "$PREFIX"' EXIT

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCONVCORE_BUILD_TESTS=OFF
cmake --build "$BUILD" -j "$(nproc)"
cmake --install "$BUILD" --prefix "$PREFIX"

# Only the install prefix is searched: not this source tree, not a package registry.
rm -rf "$BUILD-example"
cmake -S examples/cpp -B "$BUILD-example" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIX" \
      -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
cmake --build "$BUILD-example"
"$BUILD-example/train_step"
