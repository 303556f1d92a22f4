#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this script):
#  1. install missing Debian packages and the test S3 server (scripts/install-deps.sh);
#  2. build and run every test (ctest): unit, Lua integration, compute, storage, CLI;
#  3. the same suite built with AddressSanitizer + UndefinedBehaviorSanitizer;
#  4. the libFuzzer targets, each for SKYRUN_FUZZ_SECONDS (default 30).
# Options: --quick  skip the sanitizer build and the fuzzers.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
quick=0
[ "${1:-}" = --quick ] && quick=1
jobs=$(nproc 2>/dev/null || echo 2)

bash scripts/install-deps.sh

step() { printf '\n=== %s ===\n' "$*"; }

step "build (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build -j"$jobs"
step "tests"
ctest --test-dir build --output-on-failure -j"$jobs"

[ $quick = 1 ] && exit 0

step "build with AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSKYRUN_SANITIZE=ON > /dev/null
cmake --build build-asan -j"$jobs"
step "tests under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs"

step "fuzzers (libFuzzer, ${SKYRUN_FUZZ_SECONDS:-30} s each)"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DSKYRUN_FUZZ=ON -DSKYRUN_TESTS=OFF > /dev/null
cmake --build build-fuzz -j"$jobs" --target fuzzers
for fuzzer in build-fuzz/fuzzers/fuzz_*; do
  [ -x "$fuzzer" ] || continue
  name=$(basename "$fuzzer")
  corpus="build-fuzz/fuzzers/corpus-$name"
  mkdir -p "$corpus"
  echo "--- $name"
  # A crash exits non-zero (and set -e stops the run); its input is saved as crash-*.
  seeds="tests/fuzz/corpus/$name"   # hand-written seeds (real S3 documents, a skyrun.yaml)
  "$fuzzer" -max_total_time="${SKYRUN_FUZZ_SECONDS:-30}" -print_final_stats=1 \
    -artifact_prefix=build-fuzz/fuzzers/ "$corpus" $( [ -d "$seeds" ] && echo "$seeds" ) 2>&1 | tail -n 4
done
echo "fuzzers: no crash"
