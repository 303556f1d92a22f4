# Helpers for the compute shell tests: bounded waits and process checks.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }

# wait_for_file PATH SECONDS
wait_for_file() {
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    [ -s "$1" ] && return 0
    sleep 0.05
  done
  fail "timed out waiting for $1"
}

# wait_exit PID SECONDS -> sets EXIT_STATUS
wait_exit() {
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    if ! kill -0 "$1" 2>/dev/null; then
      set +e; wait "$1"; EXIT_STATUS=$?; set -e
      return 0
    fi
    sleep 0.05
  done
  kill -9 "$1" 2>/dev/null || true
  fail "process $1 did not exit within $2 s"
}

# assert_gone PID... : none of them exists any more (allow a short bounded reap delay)
assert_gone() {
  local pid i alive
  for ((i = 0; i < 40; i++)); do
    alive=""
    for pid in "$@"; do
      if [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
        alive="$alive $pid"
      fi
    done
    [ -z "$alive" ] && return 0
    sleep 0.05
  done
  ps -o pid,ppid,pgid,stat,cmd -p ${alive// /,} >&2 || true
  fail "processes outlived their pool:$alive"
}

make_tmp() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/skyrun-test-XXXXXX")
  trap 'rm -rf "$TMP"' EXIT
}
