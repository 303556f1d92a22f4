#!/usr/bin/env bash
# rgw.sh: start and stop a throwaway Ceph RADOS Gateway (Debian's radosgw) on a
# loopback port, the stricter second S3 server of the storage tests (it
# verifies SigV4 signatures and Content-MD5, and implements
# ListMultipartUploads and AbortMultipartUpload, which s3rver does not).
#
#   rgw.sh start STATE_FILE   start one (tests/support/rgw-cluster.sh does the
#                             work: 1 ceph-mon, 1 ceph-osd, radosgw); write
#                             S3_ENDPOINT, the credentials, the cluster dir
#                             and the watchdog's PID to STATE_FILE (mode 600)
#   rgw.sh stop STATE_FILE    stop exactly the daemons it started (by PID and
#                             start time), remove the cluster dir and STATE_FILE
#   rgw.sh env STATE_FILE -- CMD...   run CMD with S3_ENDPOINT, S3_SERVER=rgw
#                             and the credentials exported (how ctest runs a test)
#
# Where the ceph packages are missing or cannot run here, `start` exits 77
# (ctest: skipped) and writes why to STATE_FILE.skip; every `env` then exits
# 77 with that reason too, so the RGW suites are visibly skipped, never passed.
# It never installs packages itself (scripts/install-deps.sh does).
#
# Bounded: every wait inside rgw-cluster.sh has a deadline, and a watchdog
# stops the cluster after RGW_MAX_LIFETIME_S (default 7200) even when the run
# that started it died before its cleanup fixture.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
CLUSTER=$here/rgw-cluster.sh
MAX_LIFETIME_S=${RGW_MAX_LIFETIME_S:-7200}
SKIP=77

die() { echo "rgw.sh: $*" >&2; exit 1; }

# skip_start STATE REASON: the fixture cannot run here; say so for every test.
skip_start() {
  echo "$2" >"$1.skip"
  echo "rgw.sh: skipped: $2"
  exit $SKIP
}

# port_busy PORT: some socket listens on PORT (IPv4 or IPv6)
port_busy() {
  awk -v p="$(printf '%04X' "$1")" 'FNR > 1 && $4 == "0A" { split($2, a, ":"); if (a[length(a)] == p) f = 1 }
    END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

pick_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    port_busy "$p" || { echo "$p"; return 0; }
  done
  return 1
}

start() {
  local state=$1 b dir port line attempt out rc
  [ ! -e "$state" ] || stop "$state"    # a stale cluster from an interrupted run
  mkdir -p "$(dirname "$state")"
  rm -f "$state.skip"
  for b in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool; do
    command -v "$b" >/dev/null 2>&1 ||
      skip_start "$state" "$b is not installed (scripts/install-deps.sh installs ceph-mon ceph-osd radosgw ceph-common)"
  done
  # The packages are there; make sure the binaries can run at all here.
  radosgw --version >/dev/null 2>&1 || skip_start "$state" "radosgw is installed but cannot run here: $(radosgw --version 2>&1 | head -n1)"
  for attempt in 1 2; do
    port=$(pick_port) || die "no free port"
    dir=$(mktemp -d "${TMPDIR:-/tmp}/skyrun-rgw.XXXXXX")
    rc=0
    # The keys are random (rgw-cluster.sh's default), printed on stdout only.
    out=$(RGW_START_TIMEOUT=${RGW_START_TIMEOUT:-120} "$CLUSTER" start "$port" "$dir" </dev/null) || rc=$?
    [ $rc -eq 0 ] && break
    rmdir "$dir" 2>/dev/null || true
    # Another process may have taken the port between the check and the bind.
    [ $attempt -eq 1 ] && port_busy "$port" && continue
    die "the RGW cluster did not start (exit $rc; rgw-cluster.sh said why above)"
  done
  line=$(printf '%s\n' "$out" | grep '^endpoint=' | tail -n1)
  local endpoint access secret
  endpoint=$(sed -n 's/.*endpoint=\([^ ]*\).*/\1/p' <<<"$line")
  access=$(sed -n 's/.*access=\([^ ]*\).*/\1/p' <<<"$line")
  secret=$(sed -n 's/.*secret=\([^ ]*\).*/\1/p' <<<"$line")
  [ -n "$endpoint" ] && [ -n "$access" ] && [ -n "$secret" ] || {
    "$CLUSTER" stop "$dir" >/dev/null 2>&1 || true
    die "rgw-cluster.sh printed no endpoint line"
  }
  # The watchdog: a session of its own, so nothing of the test run holds it.
  setsid bash -c 'sleep "$1"; exec "$2" stop "$3"' rgw-watchdog "$MAX_LIFETIME_S" "$CLUSTER" "$dir" \
    </dev/null >/dev/null 2>&1 &
  local watchdog=$!
  (
    umask 077
    {
      echo "S3_ENDPOINT=$endpoint"
      echo "RGW_ACCESS_KEY=$access"
      echo "RGW_SECRET_KEY=$secret"
      echo "RGW_DIR=$dir"
      echo "RGW_WATCHDOG_PID=$watchdog"
    } >"$state.tmp"
  )
  mv "$state.tmp" "$state"
  echo "rgw: $endpoint (cluster dir $dir; $(cat "$dir/started" 2>/dev/null || true))"
}

stop() {
  local state=$1 RGW_DIR="" RGW_WATCHDOG_PID=""
  rm -f "$state.skip"
  [ -f "$state" ] || { echo "rgw: nothing to stop ($state absent)"; return 0; }
  # shellcheck disable=SC1090
  . "$state"
  if [ -n "$RGW_WATCHDOG_PID" ] && kill -0 "$RGW_WATCHDOG_PID" 2>/dev/null; then
    # setsid made it a group leader: the group is the watchdog and its sleep.
    kill -TERM -- "-$RGW_WATCHDOG_PID" 2>/dev/null || true
  fi
  case "$RGW_DIR" in
    "${TMPDIR:-/tmp}"/skyrun-rgw.*) "$CLUSTER" stop "$RGW_DIR" || die "the cluster in $RGW_DIR did not stop" ;;
  esac
  rm -f "$state"
  echo "rgw: stopped"
}

run_with_env() {
  local state=$1; shift
  [ "${1:-}" = "--" ] && shift
  if [ -f "$state.skip" ]; then
    echo "skipped: no RGW here: $(cat "$state.skip")"
    exit $SKIP
  fi
  [ -f "$state" ] || die "no running RGW ($state absent): the rgw fixture did not start"
  local S3_ENDPOINT="" RGW_ACCESS_KEY="" RGW_SECRET_KEY=""
  # shellcheck disable=SC1090
  . "$state"
  unset S3RVER_DATA
  export S3_ENDPOINT S3_SERVER=rgw
  export AWS_ACCESS_KEY_ID=$RGW_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$RGW_SECRET_KEY AWS_DEFAULT_REGION=us-east-1
  exec "$@"
}

case "${1:-}" in
  start) [ $# -eq 2 ] || die "usage: rgw.sh start STATE_FILE"; start "$2" ;;
  stop)  [ $# -eq 2 ] || die "usage: rgw.sh stop STATE_FILE"; stop "$2" ;;
  env)   [ $# -ge 3 ] || die "usage: rgw.sh env STATE_FILE -- CMD..."; shift; run_with_env "$@" ;;
  *) die "usage: rgw.sh start|stop|env STATE_FILE" ;;
esac
