#!/usr/bin/env bash
# Runs the compute benchmarks in one go on this machine: the raw pipe
# ping-pong floor, then skyrun's call round trip, pipelined throughput and
# idle worker RSS. Builds a Release tree in build-bench first.
#   bash bench/compute.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DSKYRUN_TESTS=OFF > /dev/null
cmake --build build-bench -j"$(nproc)" --target skyrun skyrun-worker > /dev/null
cc -O2 -o build-bench/pipe_pingpong bench/pipe_pingpong.c
echo "# $(date -u +%FT%TZ) on $(nproc) cores, $(uname -r)"
build-bench/pipe_pingpong 20000
build-bench/skyrun bench/compute.lua "$@"
