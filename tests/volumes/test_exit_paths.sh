#!/usr/bin/env bash
# Nothing leaks, ever: a pool with a writable s3fs volume and a read-only
# copied one, left by every exit path — normal end, a Lua error, os.exit,
# Ctrl-C, SIGTERM while the host waits for a call, and SIGKILL of skyrun
# mid-call. After each (bounded: 15 s), no s3fs process, no mount, no
# credentials file, no worker, no node folder and no mount point it created
# is left; and where the host could run its teardown, a file a function
# wrote and closed is an object in the bucket.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../s3/lib.sh
. "$here/../s3/lib.sh"

BOUND_S=15
mp_root=/skyrun-exit-$RUN_ID

script() {
  cat >"$WORK/exit.lua" <<'LUA'
local sky = require "sky"
local how, bucket, root, marker = arg[1], arg[2], arg[3], arg[4]
local st = sky.storage.s3 { endpoint = os.getenv("S3_ENDPOINT"), region = "us-east-1", path_style = true }
local pool <close> = sky.compute {
  provider = sky.providers.localhost { nodes = 2 },
  volumes = {
    sky.volume { bucket = bucket, prefix = "out/", mount = root .. "/out", read_only = false, storage = st },
    sky.volume { bucket = bucket, prefix = "in/", mount = root .. "/in", storage = st, mode = "copy" },
  },
}
local facts = table.concat(pool:broadcast(sky.fn(function(r)
  local f = io.open(r .. "/out/written-" .. sky.instance_info().node, "w"); f:write("kept"); f:close()
  local p = io.popen("ps -o args= -C s3fs")
  local passwd = ""
  for line in p:lines() do
    if line:find(r, 1, true) then passwd = passwd .. (line:match("passwd_file=([^,%s]+)") or "") .. " " end
  end
  p:close()
  return passwd
end)(root)), " ")
local m = io.open(marker .. ".tmp", "w")
m:write(table.concat(pool:pids(), " "), "\n", facts, "\n")
m:close()
os.rename(marker .. ".tmp", marker)
if how == "error" then error("deliberate failure") end
if how == "os_exit" then os.exit(3) end
if how == "signal" then
  local _ = sky.fn(function() while true do os.execute("sleep 0.05") end end)() >> pool
end
print("finished")
LUA
}

wait_marker() {
  local i
  for ((i = 0; i < 600; i++)); do [ -s "$1" ] && return 0; sleep 0.05; done
  fail "the pool never came up (no $1)"
}

# Everything gone within the bound: processes, mounts, files, folders.
assert_clean() {
  local pids=$1 passwd=$2 i left
  for ((i = 0; i < BOUND_S * 10; i++)); do
    left=""
    pgrep -f "s3fs .*$mp_root" >/dev/null && left="$left s3fs"
    for p in $pids; do [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && left="$left worker:$p"; done
    grep -q " $mp_root" /proc/self/mountinfo && left="$left host-mount"
    for f in $passwd; do [ -e "$f" ] && left="$left $f"; done
    [ -e "$mp_root" ] && left="$left $mp_root"
    ls -d "$TMPDIR"/skyrun-?????? >/dev/null 2>&1 && left="$left node-folders"
    [ -z "$left" ] && return 0
    sleep 0.1
  done
  fail "left after ${BOUND_S} s:$left"
}

# run_case HOW SIGNAL EXPECTED_STATUS KEEPS_WRITES
run_case() {
  local how=$1 sig=$2 want=$3 keeps=$4 b pid rc=0
  b=$(fresh_bucket exit)
  awscp - "s3://$b/in/data.txt" <<<"input"
  script
  rm -f "$WORK/marker"
  "$SKYRUN" "$WORK/exit.lua" "$how" "$b" "$mp_root" "$WORK/marker" >"$WORK/out" 2>"$WORK/err" &
  pid=$!
  wait_marker "$WORK/marker"
  local pids passwd
  pids=$(sed -n 1p "$WORK/marker")
  passwd=$(sed -n 2p "$WORK/marker")
  [ -n "${passwd// /}" ] || fail "no credentials file was found while the pool ran"
  if [ "$sig" != none ]; then
    sleep 0.2
    kill "-$sig" "$pid"
  fi
  local i
  for ((i = 0; i < 600; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; fail "skyrun did not end"; }
  wait "$pid" || rc=$?
  [ "$rc" -eq "$want" ] || { cat "$WORK/err" >&2; fail "exit status $rc, expected $want"; }
  assert_clean "$pids" "$passwd"
  if [ "$keeps" = yes ]; then
    for node in 0 1; do
      [ "$(awss3 s3 cp "s3://$b/out/written-$node" - 2>/dev/null)" = kept ] \
        || fail "node $node's file is not in the bucket after the pool's teardown"
    done
  fi
}

test_normal_end() { run_case normal none 0 yes; }
test_lua_error() { run_case error none 1 yes; expect_in "$WORK/err" "deliberate failure"; }
test_os_exit() { run_case os_exit none 3 yes; }
test_ctrl_c() { run_case signal INT 130 yes; }
test_sigterm() { run_case signal TERM 143 yes; }
test_sigkill() { run_case signal KILL 137 no; }

if ! command -v s3fs >/dev/null || [ ! -e /dev/fuse ] || [ "$(id -u)" -ne 0 ]; then
  skip_all "needs root, s3fs and /dev/fuse"
fi
test_case "normal end leaves nothing, writes are in the bucket" test_normal_end
test_case "a Lua error leaves nothing, writes are in the bucket" test_lua_error
test_case "os.exit leaves nothing (the node keepers clean up)" test_os_exit
test_case "Ctrl-C during a call leaves nothing, writes are in the bucket" test_ctrl_c
test_case "SIGTERM during a call leaves nothing, writes are in the bucket" test_sigterm
test_case "SIGKILL of skyrun mid-call leaves nothing within the bound" test_sigkill
finish
