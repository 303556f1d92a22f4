#!/usr/bin/env bash
# What a worker writes to stderr reaches the host's stderr: also the last
# words of a worker that dies, and a final line without a newline, which
# must not run into the next call's output.
source "$(dirname "$0")/lib.sh"
skyrun=$1
make_tmp

cat > "$TMP/script.lua" <<'LUA'
local sky = require "sky"
local pool <close> = sky.compute { retries = 0 }
local partial = sky.fn(function() io.stderr:write("no newline at the end"); io.stderr:flush() end)
local next_call = sky.fn(function() io.stderr:write("next call\n"); io.stderr:flush() end)
local _ = partial() >> pool
_ = next_call() >> pool
local die = sky.fn(function() io.stderr:write("dying message\n"); io.stderr:flush(); os.exit(3) end)
print(pcall(function() return die() >> pool end))
LUA
"$skyrun" "$TMP/script.lua" > "$TMP/out" 2> "$TMP/err" || true
cat "$TMP/err"
grep -qx "\[node 0\] no newline at the end" "$TMP/err" || fail "a partial stderr line was not ended at the end of its call"
grep -qx "\[node 0\] next call" "$TMP/err" || fail "the next call's line was joined to the previous one"
grep -qx "\[node 0\] dying message" "$TMP/err" || fail "a dying worker's last stderr line was lost"
if [ "${SKYRUN_SANITIZE:-0}" = 1 ]; then
  # os.exit skips lua_close: LeakSanitizer reports the live state and changes the status
  grep -q "worker lost: node 0 worker 0" "$TMP/out" || fail "the lost worker is not named"
else
  grep -q "worker lost: node 0 worker 0 exited with status 3" "$TMP/out" || fail "the lost worker's exit status is not named"
fi
echo "ok - worker stderr reaches the host, last words included"
