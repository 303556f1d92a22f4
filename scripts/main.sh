#!/usr/bin/env bash
# The main job: build skyrun and run the reference pipeline
# (examples/s3_volumes.lua: upload -> train on a pool with volumes ->
# download) on the built-in local defaults: a localhost pool and a local
# S3-compatible server (s3rver) that this script starts and always stops.
# Arguments go to the pipeline: [mount|copy] [nodes]. Volumes are mounted
# with s3fs as root; without root (no FUSE for this user) they are copied.
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

state=$(mktemp -u "${TMPDIR:-/tmp}/skyrun-main-s3.XXXXXX")
stop_server() { bash tests/support/s3rver.sh stop "$state" >/dev/null 2>&1 || true; }
trap stop_server EXIT
bash tests/support/s3rver.sh start "$state" >&2
# shellcheck disable=SC1090
. "$state"
export S3_ENDPOINT AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1

mode=${1:-}
if [ -z "$mode" ]; then
  if [ "$(id -u)" -eq 0 ]; then mode=mount; else mode=copy; fi
fi
[ $# -gt 0 ] && shift
build/skyrun examples/s3_volumes.lua "$mode" "$@"
