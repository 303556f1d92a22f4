#!/usr/bin/env bash
# print() on a worker reaches the host console while the call is still
# running, prefixed with the node. The remote function prints a line, then
# waits for a file that this test creates only after reading that line from
# skyrun's stdout: if output were held until the call ended, the call would
# give up waiting and the test fails.
source "$(dirname "$0")/lib.sh"
skyrun=$1
make_tmp

cat > "$TMP/script.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 1 } }
local f = sky.fn(function(go)
  print("waiting for the go file")
  io.write("partial ", "line\n")
  for _ = 1, 600 do
    local g = io.open(go)
    if g then g:close(); print("got it"); return "done" end
    os.execute("sleep 0.05")
  end
  return "gave up"
end)
print("result: " .. (f("$TMP/go") >> pool))
LUA

mkfifo "$TMP/out"
"$skyrun" "$TMP/script.lua" > "$TMP/out" 2> "$TMP/err" &
host=$!
exec 3< "$TMP/out"
saw=""
while IFS= read -r -t 30 line <&3; do
  echo "host saw: $line"
  saw="$saw|$line"
  case $line in
    "[node 0] waiting for the go file") touch "$TMP/go" ;;
    "result: "*) break ;;
  esac
done
wait_exit "$host" 30
[ "$EXIT_STATUS" -eq 0 ] || { cat "$TMP/err"; fail "skyrun exited $EXIT_STATUS"; }
case $saw in
  *"|[node 0] waiting for the go file|[node 0] partial line|[node 0] got it|result: done"*) ;;
  *) fail "unexpected output order: $saw" ;;
esac
echo "ok - worker output is live and prefixed"
