#!/usr/bin/env bash
# A mount that s3fs cannot make is refused before any worker starts, and the
# error names the node, the volume and s3fs's own reason (s3fs goes to the
# background and would otherwise only tell syslog). The server answers the
# host's own bucket check but refuses s3fs (a fault proxy answers 403 to
# s3fs's requests alone): the case of credentials that may list a bucket
# through one path and not another, or a server that disagrees with s3fs.
# Nothing is left: no s3fs, no mount, no mount point, no node folder.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../s3/lib.sh
. "$here/../s3/lib.sh"

mp=/skyrun-mount-errors-$RUN_ID

test_s3fs_refused_by_the_server_is_quoted() {
  local b
  b=$(fresh_bucket mnterr)
  awscp - "s3://$b/p/x.txt" <<<"x"
  # s3fs asks for the bucket with a trailing slash (GET /BUCKET/…); the
  # host's listing does not (GET /BUCKET?list-type=2…).
  start_proxy --error-rate 100 --status 403 --match "GET /$b/"
  cat >"$WORK/mnt.lua" <<LUA
local sky = require "sky"
local st = sky.storage.s3 { endpoint = "$PROXY_ENDPOINT", region = "us-east-1", path_style = true }
local pool <close> = sky.compute {
  provider = sky.providers.localhost { nodes = 2 },
  volumes = { sky.volume { bucket = "$b", prefix = "p/", mount = "$mp/data", storage = st } },
}
print("the pool started")
LUA
  expect_exit 1 "$SKYRUN" "$WORK/mnt.lua"
  expect_not_in "$WORK/out" "the pool started"
  expect_in "$WORK/err" "node "
  expect_in "$WORK/err" "volume $mp/data"
  expect_in "$WORK/err" "s3fs said:"
  expect_in "$WORK/err" "SignatureDoesNotMatch"
  expect_in "$WORK/err" "invalid credentials"
  expect_not_in "$WORK/err" "$AWS_SECRET_ACCESS_KEY:"
  stop_proxy
  local i left
  for ((i = 0; i < 150; i++)); do
    left=""
    pgrep -f "s3fs $b" >/dev/null && left="$left s3fs"
    grep -q " $mp" /proc/self/mountinfo && left="$left mount"
    [ -e "$mp" ] && left="$left $mp"
    ls -d "$TMPDIR"/skyrun-?????? >/dev/null 2>&1 && left="$left node-folders"
    [ -z "$left" ] && return 0
    sleep 0.1
  done
  fail "left behind:$left"
}

command -v s3fs >/dev/null && [ -e /dev/fuse ] && [ "$(id -u)" -eq 0 ] || skip_all "needs root, s3fs and /dev/fuse"
test_case "s3fs refused by the server: the error quotes s3fs" test_s3fs_refused_by_the_server_is_quoted
finish
