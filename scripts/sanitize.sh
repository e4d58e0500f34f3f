#!/usr/bin/env bash
# The C++ tests and the fuzz target under AddressSanitizer + UndefinedBehaviorSanitizer.
# Any finding aborts the test that hit it, so ctest fails.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build/sanitize}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCONVCORE_BUILD_TESTS=ON -DCONVCORE_SANITIZE=ON
cmake --build "$BUILD" -j "$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export CONVCORE_FUZZ_RUNS=${CONVCORE_FUZZ_RUNS:-20000}
ctest --test-dir "$BUILD" --output-on-failure
