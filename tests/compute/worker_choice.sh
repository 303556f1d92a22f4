#!/usr/bin/env bash
# Which worker a node runs: a pool whose image names apt packages runs
# skyrun-worker-dynamic (C modules) where it starts on the node, and falls
# back to the static skyrun-worker where it does not; a pool without such an
# image runs the static one.
source "$(dirname "$0")/lib.sh"
skyrun=$1
make_tmp
if [ "${SKYRUN_SANITIZE:-0}" = 1 ]; then
  echo "skipped: sanitizer builds have no static worker"
  exit 77
fi
mkdir -p "$TMP/bin"
cp "$SKYRUN_WORKER" "$TMP/bin/skyrun-worker"
cat > "$TMP/which.lua" <<'LUA'
local sky = require "sky"
local image = arg[1] == "apt" and sky.image { apt = { "lua5.4" } } or nil
local pool <close> = sky.compute { image = image }
print(sky.fn(function()
  local p = io.popen("readlink /proc/" .. sky.instance_info().pid .. "/exe")
  local exe = p:read("l")
  p:close()
  return exe:match("[^/]+$")
end)() >> pool)
LUA
run() { SKYRUN_WORKER=$TMP/bin/skyrun-worker "$skyrun" "$TMP/which.lua" "$@"; }

# a dynamic worker beside it that starts
cp "$SKYRUN_BUILD_DIR/skyrun-worker-dynamic" "$TMP/bin/"
[ "$(run apt)" = skyrun-worker-dynamic ] || fail "an image with apt packages did not get the dynamic worker"
[ "$(run)" = skyrun-worker ] || fail "a pool without packages did not get the static worker"
# one that cannot start on this node (another C library, say)
printf '#!/bin/sh\nexit 127\n' > "$TMP/bin/skyrun-worker-dynamic"
[ "$(run apt)" = skyrun-worker ] || fail "no fall back to the static worker"
echo "ok - the dynamic worker where it starts and packages ask for it, else the static one"
