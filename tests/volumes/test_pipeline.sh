#!/usr/bin/env bash
# The reference pipeline (examples/s3_volumes.lua) end to end on a localhost
# pool against the suite's s3rver, in both volume modes: its output reads
# as the three phases, the model trained on a worker is downloaded and
# reproduces the worker's accuracy here, and nothing is left behind.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../s3/lib.sh
. "$here/../s3/lib.sh"
example=$SKYRUN_SOURCE_DIR/examples/s3_volumes.lua

run_pipeline() {
  local mode=$1
  # A fresh server namespace per mode: the example makes its own buckets.
  expect_exit 0 "$SKYRUN" "$example" "$mode" 2
  expect_in "$WORK/out" "== phase 1: upload =="
  expect_in "$WORK/out" "uploaded:	iris/iris.csv"
  expect_in "$WORK/out" "== phase 2: train on a pool (2 nodes, volumes by $mode) =="
  expect_in "$WORK/out" "150 samples, accuracy 1.0000"
  expect_in "$WORK/out" "== phase 3: download =="
  expect_in "$WORK/out" "ok: the model trained on the pool reproduces its accuracy here"
  [ "$(grep -n 'phase' "$WORK/out" | cut -d: -f1 | tr '\n' ' ')" = "1 3 6 " ] \
    || fail "the phases are not in order: $(cat "$WORK/out")"
  awss3 s3 ls "s3://models/experiment-001/model.bin" >/dev/null || fail "no model in the bucket"
  ! ls -d "$TMPDIR"/skyrun-?????? 2>/dev/null || fail "node folders left"
  [ ! -e /data ] && [ ! -e /output ] || fail "a mount point was left"
}

test_mount() {
  command -v s3fs >/dev/null && [ -e /dev/fuse ] && [ "$(id -u)" -eq 0 ] || skip "needs root, s3fs and /dev/fuse"
  run_pipeline mount
}
test_copy() { run_pipeline copy; }

if [ -e /data ] || [ -e /output ]; then
  skip_all "/data or /output exists on this machine (the example mounts there)"
fi
test_case "the reference pipeline runs with s3fs mounts (mode mount)" test_mount
test_case "the reference pipeline runs with copied volumes (mode copy)" test_copy
finish
