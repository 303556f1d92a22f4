#!/usr/bin/env bash
# A pool is torn down on every exit path of the host: normal end, Lua error,
# SIGINT, SIGTERM, SIGINT while Lua code runs in a coroutine, a second SIGINT
# while the host is stuck in C (os.execute) — and even when the host is
# SIGKILLed (PDEATHSIG). After each, no worker process remains, and (except
# after SIGKILL) no node working directory.
# usage: teardown.sh normal_end|lua_error|sigint|sigterm|host_sigkill|sigint_in_coroutine|second_sigint SKYRUN
source "$(dirname "$0")/lib.sh"
mode=$1 skyrun=$2
make_tmp

cat > "$TMP/script.lua" <<LUA
local sky = require "sky"
local mode = arg[1]
local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 2, workers = 2 } }
local f = io.open("$TMP/pids.tmp", "w")
f:write(table.concat(pool:pids(), " "), "\n")
f:close()
os.rename("$TMP/pids.tmp", "$TMP/pids")
local wd = sky.fn(function() local p = io.popen("pwd"); local d = p:read("l"); p:close(); return d end)
local d = io.open("$TMP/workdir", "w"); d:write((wd() >> pool), "\n"); d:close()
if mode == "lua_error" then error("deliberate failure") end
if mode == "sigint_in_coroutine" then
  local ready = io.open("$TMP/looping", "w"); ready:write("1"); ready:close()
  coroutine.wrap(function() while true do end end)()
end
if mode == "second_sigint" then
  local ready = io.open("$TMP/looping", "w"); ready:write("1"); ready:close()
  -- the host blocks in C where no Lua hook runs and EINTR is retried
  -- (pclose's waitpid loop; os.execute would ignore SIGINT altogether):
  -- only a second signal ends it at once
  io.popen("sleep 10"):close()
end
if mode == "sigint" or mode == "sigterm" or mode == "host_sigkill" then
  -- a long call: the host is blocked in the pool's wait when the signal comes
  local spin = sky.fn(function() while true do os.execute("sleep 0.05") end end)
  local _ = spin() >> pool
end
print("finished")
LUA

TMPDIR="$TMP" "$skyrun" "$TMP/script.lua" "$mode" > "$TMP/out" 2> "$TMP/err" &
host=$!
wait_for_file "$TMP/workdir" 30
read -r -a pids < "$TMP/pids"
[ "${#pids[@]}" -eq 4 ] || fail "expected 4 worker pids, got: ${pids[*]}"
workdir=$(cat "$TMP/workdir")
case $workdir in "$TMP"/skyrun-*/node-*) ;; *) fail "unexpected node working directory $workdir" ;; esac

case $mode in
  sigint_in_coroutine) wait_for_file "$TMP/looping" 30; sleep 0.2; kill -INT "$host" ;;
  second_sigint) wait_for_file "$TMP/looping" 30; sleep 0.2
                 kill -INT "$host"; sleep 0.3; kill -INT "$host" ;;
  sigint) sleep 0.3; kill -INT "$host" ;;
  sigterm) sleep 0.3; kill -TERM "$host" ;;
  host_sigkill) sleep 0.3; kill -KILL "$host" ;;
esac
wait_exit "$host" 30

case $mode in
  normal_end) [ "$EXIT_STATUS" -eq 0 ] || fail "exit status $EXIT_STATUS, expected 0"
              grep -q finished "$TMP/out" || fail "script did not finish" ;;
  lua_error) [ "$EXIT_STATUS" -eq 1 ] || fail "exit status $EXIT_STATUS, expected 1"
             grep -q "script.lua:10: deliberate failure" "$TMP/err" || { cat "$TMP/err"; fail "no file:line in the error"; } ;;
  sigint|sigint_in_coroutine)
          [ "$EXIT_STATUS" -eq 130 ] || { cat "$TMP/err"; fail "exit status $EXIT_STATUS, expected 130"; }
          grep -q interrupted "$TMP/err" || fail "no 'interrupted' message" ;;
  second_sigint) [ "$EXIT_STATUS" -eq 130 ] || fail "exit status $EXIT_STATUS, expected 130"
                 # killed by the second signal, not stopped cleanly by the first
                 ! grep -q interrupted "$TMP/err" || fail "the first signal already stopped the host: this test needs a host stuck in C" ;;
  sigterm) [ "$EXIT_STATUS" -eq 143 ] || { cat "$TMP/err"; fail "exit status $EXIT_STATUS, expected 143"; } ;;
  host_sigkill) [ "$EXIT_STATUS" -eq 137 ] || fail "exit status $EXIT_STATUS, expected 137" ;;
esac
assert_gone "${pids[@]}"
if [ "$mode" != host_sigkill ]; then
  # (a SIGKILLed host cannot clean its folder; every process is still gone)
  [ ! -e "$workdir" ] || fail "node working directory $workdir left behind"
fi
echo "ok - teardown on $mode: ${#pids[@]} workers gone"
