#!/usr/bin/env bash
# Runs worker_kill.lua under one kind of host and checks what it cannot see
# itself: how the host ended (never by a signal: SIGPIPE is 141) and that no
# worker process it ever had is left.
# usage: worker_kill.sh skyrun|lua5.4|embed map|stream|broadcast|exit SKYRUN EMBED_HOST
source "$(dirname "$0")/lib.sh"
host=$1 verb=$2 skyrun=$3 embed=$4
tries=${SKYRUN_KILL_TRIES:-6}
make_tmp
mkdir -p "$TMP/tmp"
script=$(dirname "$0")/worker_kill.lua

case $host in
  skyrun) cmd=("$skyrun" "$script") ;;
  embed) cmd=("$embed" "$script") ;;
  lua5.4)
    if [ "${SKYRUN_SANITIZE:-0}" = 1 ]; then
      echo "skipped: a sanitized sky.so cannot be loaded into an uninstrumented lua5.4"
      exit 77
    fi
    command -v lua5.4 >/dev/null || { echo "skipped: no lua5.4"; exit 77; }
    export LUA_CPATH="$SKYRUN_BUILD_DIR/lua/?.so;;"
    cmd=(lua5.4 "$script") ;;
  *) fail "unknown host $host" ;;
esac

set +e
TMPDIR=$TMP/tmp timeout 240 "${cmd[@]}" "$verb" "$tries" "$TMP/pids" > "$TMP/out" 2> "$TMP/err"
rc=$?
set -e
cat "$TMP/out"
if [ $rc -ne 0 ]; then
  sed 's/^/  | /' "$TMP/err" >&2
  [ $rc -gt 128 ] && [ $rc -ne 124 ] && fail "$host was killed by signal $((rc - 128)) during $verb"
  fail "$host exited with status $rc during $verb"
fi
[ -s "$TMP/pids" ] || fail "the script recorded no worker pids"
read -r -a pids < "$TMP/pids"
assert_gone "${pids[@]}"
echo "ok - $host $verb: never killed by SIGPIPE, no worker left"
