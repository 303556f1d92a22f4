#!/usr/bin/env bash
# The main job: build skyrun and run the example pipeline on the built-in
# local defaults (a localhost pool). Extra arguments go to the script.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
echo "building skyrun (log: build/build.log)..." >&2
mkdir -p build
if ! { cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
       cmake --build build -j"$(nproc 2>/dev/null || echo 2)"; } > build/build.log 2>&1; then
  tail -n 40 build/build.log >&2
  exit 1
fi
exec build/skyrun examples/hello.lua "$@"
