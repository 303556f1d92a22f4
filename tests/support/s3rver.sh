#!/usr/bin/env bash
# s3rver.sh: start and stop a throwaway S3-compatible server (s3rver) on a free
# loopback port, for the storage tests and the benchmark.
#
#   s3rver.sh start STATE_FILE   start one; write S3_ENDPOINT, S3RVER_PID and
#                                S3RVER_DATA (shell assignments) to STATE_FILE
#   s3rver.sh stop STATE_FILE    kill that PID, remove its data dir and STATE_FILE
#   s3rver.sh env STATE_FILE -- CMD...   run CMD with S3_ENDPOINT and the
#                                s3rver credentials exported (how ctest runs a test)
#
# The port is chosen by the kernel (-p 0) and read back from s3rver's own
# "listening" line, so two build trees never race for a port. Every wait is
# bounded, and the server itself is bounded by `timeout` so a test run that
# dies before its cleanup fixture leaves nothing running for long.
set -euo pipefail

here=$(cd "$(dirname "$0")/../.." && pwd)
S3RVER_BIN=${S3RVER_BIN:-$here/.deps/npm/node_modules/.bin/s3rver}
START_WAIT_S=${S3RVER_START_WAIT_S:-30}
MAX_LIFETIME_S=${S3RVER_MAX_LIFETIME_S:-7200}
ADDR=${S3RVER_ADDRESS:-127.0.0.1}   # another address of this machine (a test bed's bridge) where nodes reach it

die() { echo "s3rver.sh: $*" >&2; exit 1; }

# Waits (bounded) until the endpoint answers an HTTP request at all.
wait_until_answering() {
  local endpoint=$1 deadline=$((SECONDS + START_WAIT_S))
  while [ $SECONDS -lt $deadline ]; do
    if curl -s -o /dev/null --max-time 2 "$endpoint/"; then return 0; fi
    sleep 0.1
  done
  return 1
}

start() {
  local state=$1
  [ -x "$S3RVER_BIN" ] || die "s3rver not found at $S3RVER_BIN (run scripts/install-deps.sh)"
  [ ! -e "$state" ] || stop "$state"   # a stale server from an interrupted run
  mkdir -p "$(dirname "$state")"
  local data log pid port="" deadline
  data=$(mktemp -d "${TMPDIR:-/tmp}/skyrun-s3rver.XXXXXX")
  log=$data.log
  : >"$log"      # exists before the server starts writing, so polling it never fails
  # Node 20 needs the legacy provider: s3rver encrypts continuation tokens
  # with DES, and without it every paginated ListObjectsV2 is InternalError.
  NODE_OPTIONS=--openssl-legacy-provider setsid timeout "$MAX_LIFETIME_S" \
    "$S3RVER_BIN" -d "$data/fs" -a "$ADDR" -p 0 --silent >"$log" 2>&1 </dev/null &
  pid=$!
  deadline=$((SECONDS + START_WAIT_S))
  while [ -z "$port" ] && [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; rm -rf "$data" "$log"; die "s3rver exited at start"; }
    port=$(sed -n "s/^S3rver listening on ${ADDR//./\\.}:\([0-9]*\).*/\1/p" "$log" 2>/dev/null || true)
    [ -n "$port" ] || sleep 0.1
  done
  if [ -z "$port" ] || ! wait_until_answering "http://$ADDR:$port"; then
    kill "$pid" 2>/dev/null || true
    rm -rf "$data" "$log"
    die "s3rver did not answer within ${START_WAIT_S}s"
  fi
  {
    echo "S3_ENDPOINT=http://$ADDR:$port"
    echo "S3RVER_PID=$pid"
    echo "S3RVER_DATA=$data"
  } >"$state.tmp"
  mv "$state.tmp" "$state"
  echo "s3rver: http://$ADDR:$port (pid $pid, data $data)"
}

# Kills the process recorded in the state file (the `timeout` wrapper, whose
# child s3rver it takes down with it), bounded: TERM, then KILL.
stop() {
  local state=$1 S3RVER_PID="" S3RVER_DATA=""
  [ -f "$state" ] || { echo "s3rver: nothing to stop ($state absent)"; return 0; }
  # shellcheck disable=SC1090
  . "$state"
  if [ -n "$S3RVER_PID" ] && kill -0 "$S3RVER_PID" 2>/dev/null; then
    # setsid made the wrapper a group leader: the group is s3rver and nothing else.
    kill -TERM -- "-$S3RVER_PID" 2>/dev/null || kill -TERM "$S3RVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$S3RVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$S3RVER_PID" 2>/dev/null || true
  fi
  # Only a folder start made (by its name); not tied to today's $TMPDIR, which
  # a caller may have changed between start and stop (tests/s3/lib.sh does).
  case "$S3RVER_DATA" in
    /*/skyrun-s3rver.*) rm -rf "$S3RVER_DATA" "$S3RVER_DATA.log" ;;
  esac
  rm -f "$state"
  echo "s3rver: stopped"
}

run_with_env() {
  local state=$1; shift
  [ "${1:-}" = "--" ] && shift
  [ -f "$state" ] || die "no running s3rver ($state absent): the s3 fixture did not start"
  local S3_ENDPOINT=""
  # shellcheck disable=SC1090
  . "$state"
  export S3_ENDPOINT S3RVER_DATA
  export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1
  exec "$@"
}

case "${1:-}" in
  start) [ $# -eq 2 ] || die "usage: s3rver.sh start STATE_FILE"; start "$2" ;;
  stop)  [ $# -eq 2 ] || die "usage: s3rver.sh stop STATE_FILE"; stop "$2" ;;
  env)   [ $# -ge 3 ] || die "usage: s3rver.sh env STATE_FILE -- CMD..."; shift; run_with_env "$@" ;;
  *) die "usage: s3rver.sh start|stop|env STATE_FILE" ;;
esac
