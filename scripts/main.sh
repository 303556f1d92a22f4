#!/usr/bin/env bash
# The main job: build skyrun and run the example pipeline on the built-in
# local defaults (a localhost pool). Extra arguments go to the script.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)"
exec build/skyrun examples/hello.lua "$@"
