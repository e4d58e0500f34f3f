#!/usr/bin/env bash
# The fuzz target (cpp/fuzz/fuzz_conv2d.cpp) as a real libFuzzer binary: built with clang under
# AddressSanitizer + UndefinedBehaviorSanitizer, the library instrumented for coverage
# (CONVCORE_FUZZ), then run for a bounded time from the checked-in corpus cpp/fuzz/corpus/.
# A crash, a sanitizer finding, a disagreement with the direct-loop reference, a hang or an
# oversized allocation stops the run and fails this script; the input is left in
# $BUILD/artifacts/ and printed (base64) in the log.
#   bash scripts/fuzz.sh                        # 60 s
#   CONVCORE_FUZZ_SECONDS=600 bash scripts/fuzz.sh
# clang is installed with apt-get when it is missing; when that is impossible the script fails.
# The build is single-threaded (no OpenMP): scripts/sanitize.sh runs the same target threaded.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD_DIR:-build/fuzz}
FUZZ_SECONDS=${CONVCORE_FUZZ_SECONDS:-60}

if ! command -v clang++ >/dev/null; then
  echo "fuzz.sh: clang++ not found, installing clang and its sanitizer and libFuzzer runtimes with apt-get"
  if ! command -v apt-get >/dev/null || [[ $(id -u) != 0 ]]; then
    echo "fuzz.sh: FAILED: no clang++, and apt-get is missing or this is not root;" \
         "install clang (with its libFuzzer runtime) to build the fuzz target" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang libclang-rt-dev
fi
clang++ --version | head -n 1

CC=clang CXX=clang++ cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCONVCORE_BUILD_TESTS=ON -DCONVCORE_SANITIZE=ON -DCONVCORE_FUZZ=ON -DCONVCORE_USE_OPENMP=OFF
cmake --build "$BUILD" -j "$(nproc)" --target fuzz_conv2d

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# New inputs go to a scratch corpus; cpp/fuzz/corpus (seeds and past findings) is only read.
mkdir -p "$BUILD/corpus" "$BUILD/artifacts"
status=0
"$BUILD/cpp/fuzz/fuzz_conv2d" -max_total_time="$FUZZ_SECONDS" -timeout=30 -rss_limit_mb=2048 \
  -max_len=64 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/" \
  "$BUILD/corpus" cpp/fuzz/corpus || status=$?
if [[ $status != 0 ]]; then
  echo "fuzz.sh: FAILED (exit $status). Reproduce with: $BUILD/cpp/fuzz/fuzz_conv2d <input>;" \
       "add the input to cpp/fuzz/corpus/ once fixed" >&2
  ls -l "$BUILD/artifacts" >&2
  exit "$status"
fi
echo "fuzz.sh: ${FUZZ_SECONDS} s of libFuzzer, no finding"
