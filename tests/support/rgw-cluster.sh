#!/usr/bin/env bash
# rgw-cluster.sh - a throwaway, multi-threaded S3 server (Ceph RADOS Gateway 16.2) on loopback.
#
# The storage tests use it through tests/support/rgw.sh (ctest fixture `rgw`),
# which never lets it install packages (they come from scripts/install-deps.sh).
#
#   rgw-cluster.sh start PORT DIR
#       Starts a single-node Ceph cluster (1 ceph-mon, 1 ceph-osd, pool size 1, cephx
#       off, no mgr) and radosgw with the beast frontend on 127.0.0.1:PORT. Everything
#       (config, mon store, OSD store, logs, admin sockets, pid list) lives under DIR,
#       which must be absent or empty. Creates an S3 user, waits until a signed S3
#       request succeeds, prints exactly one line
#           endpoint=http://127.0.0.1:PORT access=AK secret=SK
#       and exits 0 with the daemons left running (DIR/pids). On failure it says why on
#       stderr (with the tail of the daemon logs), stops what it started, removes what
#       it created, and exits non-zero.
#   rgw-cluster.sh stop DIR
#       Stops exactly the daemons recorded in DIR/pids (pid + start time, never by
#       name), waits for them to exit, removes DIR. Nothing to stop is not an error.
#
# Clients: path-style addressing (or virtual-host style on *.localhost), region
# us-east-1 (any region string is accepted in signatures).
#
# Knobs (environment):
#   RGW_OBJECTSTORE   bluestore (default: sparse file DIR/osd-block, O_DIRECT, 128 MiB
#                     cache, OSD RSS stays ~150-200 MiB) or memstore (objects kept in
#                     the OSD's heap: faster start, but RSS grows ~2x the stored bytes)
#   RGW_DISK_BYTES    bluestore file size (default 20 GiB, sparse)
#   RGW_MEM_BYTES     memstore capacity (default 8 GiB)
#   RGW_THREADS       radosgw thread pool size (default 16; Ceph's default is 512)
#   RGW_DEBUG         debug_rgw level (default 1: an access-log line per request)
#   RGW_ACCESS_KEY / RGW_SECRET_KEY   fixed credentials (default: random)
#   RGW_START_TIMEOUT seconds to wait for the cluster (default 120)
#   RGW_EXTRA_CONF    extra lines for the [global] section of ceph.conf
#   RGW_GLIBC_TUNABLES GLIBC_TUNABLES for the daemons (default keeps freed buffers
#                     instead of returning them to the kernel; page faults are very
#                     costly in VMs and made GET 4-5x slower; set empty to disable)
#   RGW_KEEP_ON_FAILURE=1  keep DIR (logs) when start fails
# Needs root only to apt-get install ceph-mon ceph-osd radosgw ceph-common if missing.
set -u
PROG=rgw-cluster.sh
err() { echo "$PROG: $*" >&2; }

usage() {
  echo "usage: $PROG start PORT DIR | $PROG stop DIR" >&2
  exit 2
}

# ---------------------------------------------------------------- processes
# The start time (field 22 of /proc/PID/stat) pins a pid to one process, so a
# recycled pid is never signalled.
proc_field() { # proc_field PID -> "STATE STARTTIME"
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  echo "$1 ${20}"
}
# alive: the process runs (a zombie has exited and counts as gone)
alive() {
  local f
  [ -n "$2" ] || return 1
  f=$(proc_field "$1") || return 1
  [ "${f#* }" = "$2" ] && [ "${f%% *}" != Z ]
}
# exists: the process (even as a zombie not yet reaped) still has its pid
exists() {
  local f
  f=$(proc_field "$1") || return 1
  [ "${f#* }" = "$2" ]
}

# stop_recorded FILE: stop the processes listed in FILE ("name pid starttime"),
# newest first: SIGTERM, up to 15 s, then SIGKILL. The OSD gets SIGKILL at once
# (its data is thrown away anyway; memstore would first dump itself to disk).
stop_recorded() {
  local f=$1 name pid st sig i
  [ -s "$f" ] || return 0
  while read -r name pid st; do
    alive "$pid" "$st" || continue
    sig=TERM
    case $name in osd*) sig=KILL ;; esac
    kill -s "$sig" "$pid" 2>/dev/null
    for ((i = 0; i < 150; i++)); do
      alive "$pid" "$st" || break
      sleep 0.1
    done
    if alive "$pid" "$st"; then
      err "$name (pid $pid) ignored SIG$sig for 15 s, sending SIGKILL"
      kill -s KILL "$pid" 2>/dev/null
      for ((i = 0; i < 100; i++)); do
        alive "$pid" "$st" || break
        sleep 0.1
      done
    fi
    wait "$pid" 2>/dev/null # reaps it when it is our own child (start's failure path)
  done < <(tac "$f")
  # Exited daemons are reaped by init; wait (at most 5 s) until their pids are gone
  # too, so that "kill -0 PID" or "ps -p PID" right after stop finds nothing.
  for ((i = 0; i < 50; i++)); do
    local any=0
    while read -r name pid st; do
      exists "$pid" "$st" && any=1
    done <"$f"
    [ $any = 0 ] && break
    sleep 0.1
  done
  return 0
}

# ---------------------------------------------------------------- packages
BINS="ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool"
ensure_packages() {
  local b missing=0
  for b in $BINS; do
    command -v "$b" >/dev/null 2>&1 || missing=1
  done
  for b in setsid curl tac; do
    command -v "$b" >/dev/null 2>&1 || { err "missing $b (util-linux/curl/coreutils)"; return 1; }
  done
  [ $missing = 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    err "ceph packages missing and not root: apt-get install ceph-mon ceph-osd radosgw ceph-common"
    return 1
  fi
  err "installing ceph-mon ceph-osd radosgw ceph-common with apt-get (once, ~1 min)"
  if ! apt-cache policy radosgw 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    timeout 600 apt-get update -qq >&2 || { err "apt-get update failed"; return 1; }
  fi
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends \
    ceph-mon ceph-osd radosgw ceph-common >/dev/null 2>&1 || {
    err "apt-get install ceph-mon ceph-osd radosgw ceph-common failed"
    return 1
  }
  for b in $BINS; do
    command -v "$b" >/dev/null 2>&1 || { err "still missing $b after install"; return 1; }
  done
}

# port_busy PORT: some socket listens on PORT (any address, IPv4 or IPv6)
port_busy() {
  awk -v p="$(printf '%04X' "$1")" 'FNR > 1 && $4 == "0A" { split($2, a, ":"); if (a[length(a)] == p) f = 1 }
    END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    port_busy "$p" || { echo "$p"; return 0; }
  done
  return 1
}

randstr() { # randstr CHARSET LEN
  local s
  s=$(LC_ALL=C tr -dc "$1" </dev/urandom | head -c "$2")
  echo "$s"
}

uuid() { cat /proc/sys/kernel/random/uuid; }

# ---------------------------------------------------------------- start
DIR='' CREATED=0 OK=0
on_exit() {
  [ "$OK" = 1 ] && return
  [ -n "$DIR" ] || return
  local l run
  if [ -f "$DIR/pids" ]; then
    for l in mon.a osd.0 radosgw; do
      [ -s "$DIR/log/$l.log" ] || continue
      echo "---- last lines of $DIR/log/$l.log" >&2
      tail -n 8 "$DIR/log/$l.log" >&2
    done
    for l in "$DIR"/log/*.out; do
      [ -s "$l" ] || continue
      echo "---- $l" >&2
      tail -n 5 "$l" >&2
    done
  fi
  stop_recorded "$DIR/pids"
  if [ -f "$DIR/run-dir" ]; then
    run=$(cat "$DIR/run-dir")
    case $run in /tmp/rgw-run.*) rm -rf -- "$run" ;; esac
  fi
  if [ "${RGW_KEEP_ON_FAILURE:-0}" = 1 ]; then
    err "kept $DIR for inspection (daemons stopped; remove it with: $PROG stop $DIR)"
  elif [ "$CREATED" = 1 ]; then
    rm -rf -- "$DIR"
  else
    find "$DIR" -mindepth 1 -delete 2>/dev/null
  fi
}

# launch NAME CMD...: run a daemon in the foreground of a session of its own,
# detached from our stdio, and record "NAME PID STARTTIME" in DIR/pids.
launch() {
  local name=$1 pid f
  shift
  GLIBC_TUNABLES=$TUNABLES setsid "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
  pid=$!
  f=$(proc_field "$pid") || { err "$name died at once"; return 1; }
  echo "$name $pid ${f#* }" >>"$DIR/pids"
}

all_alive() {
  local name pid st
  while read -r name pid st; do
    alive "$pid" "$st" || { err "$name (pid $pid) exited"; return 1; }
  done <"$DIR/pids"
}

deadline_left() { [ "$(date +%s)" -lt "$DEADLINE" ]; }

do_start() {
  local port=$1 dir=$2 monport fsid osd_uuid osd_id ak sk code t0 run
  t0=$(date +%s.%N)
  case $port in '' | *[!0-9]*) err "PORT must be a number"; exit 2 ;; esac
  { [ "$port" -ge 1 ] && [ "$port" -le 65535 ]; } || { err "PORT out of range"; exit 2; }
  local store=${RGW_OBJECTSTORE:-bluestore}
  case $store in memstore | bluestore) ;; *) err "RGW_OBJECTSTORE must be bluestore or memstore"; exit 2 ;; esac
  if [ -e "$dir" ]; then
    [ -d "$dir" ] || { err "$dir exists and is not a directory"; exit 1; }
    if [ -n "$(ls -A "$dir")" ]; then
      if [ -f "$dir/pids" ]; then
        err "$dir already holds a cluster (stop it first: $PROG stop $dir)"
      else
        err "$dir is not empty; refusing to use it"
      fi
      exit 1
    fi
  fi
  ensure_packages || exit 1
  if port_busy "$port"; then err "port $port is already in use"; exit 1; fi
  monport=$(free_port) || { err "no free port for ceph-mon"; exit 1; }
  TUNABLES=${RGW_GLIBC_TUNABLES-glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824}

  if [ ! -e "$dir" ]; then
    mkdir -p -- "$dir" || { err "cannot create $dir"; exit 1; }
    CREATED=1
  fi
  DIR=$(cd -- "$dir" && pwd -P)
  trap on_exit EXIT
  trap 'exit 130' INT TERM HUP
  run="$DIR/run"
  if [ ${#run} -gt 80 ]; then
    # admin sockets are unix sockets (108-byte path limit): keep their dir short
    run=$(mktemp -d /tmp/rgw-run.XXXXXX)
    echo "$run" >"$DIR/run-dir"
  fi
  mkdir -p "$DIR"/{mon,osd,log,crash,rgw} "$run"
  : >"$DIR/pids"

  fsid=$(uuid)
  local osd_store_conf
  if [ "$store" = memstore ]; then
    osd_store_conf="osd objectstore = memstore
memstore device bytes = ${RGW_MEM_BYTES:-$((8 << 30))}"
  else
    osd_store_conf="osd objectstore = bluestore
bluestore block path = $DIR/osd-block
bluestore block create = true
bluestore block size = ${RGW_DISK_BYTES:-$((20 << 30))}
bluestore fsck on mkfs = false
bluestore fsck on mount = false
bluestore cache autotune = false
bluestore cache size = 134217728
bdev enable discard = false"
  fi
  cat >"$DIR/ceph.conf" <<EOF
# generated by rgw.sh: throwaway single-node cluster, loopback only
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$monport]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = $run
admin socket = $run/\$name.asok
crash dir = $DIR/crash
log file = $DIR/log/\$name.log
log to stderr = false
err to stderr = false
mon cluster log file = $DIR/log/cluster.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
mon warn on insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
# commit map changes (OSD boot, pool creation) at once instead of batching for 1 s
paxos propose interval = 0.01
paxos min wait = 0.01
${RGW_EXTRA_CONF:-}

[mon.a]
mon data = $DIR/mon
keyring = $DIR/mon/keyring

[osd]
osd data = $DIR/osd
keyring = /dev/null
$osd_store_conf
osd class load list = *
osd class default list = *

[client]
keyring = /dev/null
[client.admin]
admin socket =
log file = $DIR/log/client.admin.log

[client.rgw.s3]
rgw frontends = beast endpoint=127.0.0.1:$port
rgw thread pool size = ${RGW_THREADS:-16}
rgw dns name = localhost
rgw data = $DIR/rgw
log file = $DIR/log/radosgw.log
debug rgw = ${RGW_DEBUG:-1}
rgw gc obj min wait = 60
rgw gc processor period = 60
rgw enable usage log = false
rgw crypt require ssl = false
# radosgw defaults to a "secure" mon connection, which auth "none" cannot give
ms mon client mode = crc
EOF
  DEADLINE=$(($(date +%s) + ${RGW_START_TIMEOUT:-120}))

  # --- monitor
  {
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$monport]" "$DIR/monmap" &&
      ceph-mon -c "$DIR/ceph.conf" -i a --mkfs --monmap "$DIR/monmap" --keyring /dev/null
  } >"$DIR/log/mkfs.out" 2>&1 || { err "ceph-mon --mkfs failed"; exit 1; }
  touch "$DIR/mon/keyring"
  launch mon.a ceph-mon -f -c "$DIR/ceph.conf" -i a || exit 1

  # --- OSD
  osd_uuid=$(uuid)
  osd_id=$(timeout 60 ceph -c "$DIR/ceph.conf" --connect-timeout 30 osd new "$osd_uuid" 2>>"$DIR/log/mkfs.out") || {
    all_alive; err "ceph-mon did not answer (ceph osd new failed)"; exit 1
  }
  [ "$osd_id" = 0 ] || { err "unexpected OSD id '$osd_id'"; exit 1; }
  timeout 120 ceph-osd -c "$DIR/ceph.conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$DIR/log/mkfs.out" 2>&1 || {
    err "ceph-osd --mkfs failed"; exit 1
  }
  launch osd.0 ceph-osd -f -c "$DIR/ceph.conf" -i 0 || exit 1
  # radosgw's first pool writes stall for seconds if the OSD is not up yet, so wait
  # for the OSD's own "booting -> active" log line (debug_osd 1) before starting it
  until grep -q 'state: booting -> active' "$DIR/log/osd.0.log" 2>/dev/null; do
    all_alive || exit 1
    deadline_left || { err "ceph-osd did not boot within ${RGW_START_TIMEOUT:-120} s"; exit 1; }
    sleep 0.1
  done

  # --- radosgw (creates its pools and the default zone on first start)
  launch radosgw radosgw -f -c "$DIR/ceph.conf" -n client.rgw.s3 || exit 1
  while :; do
    all_alive || exit 1
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$port/" 2>/dev/null)
    [ -n "$code" ] && [ "$code" != 000 ] && break
    deadline_left || { err "radosgw did not answer on 127.0.0.1:$port within ${RGW_START_TIMEOUT:-120} s"; exit 1; }
    sleep 0.2
  done

  # --- S3 user
  ak=${RGW_ACCESS_KEY:-$(randstr 'A-Z0-9' 20)}
  sk=${RGW_SECRET_KEY:-$(randstr 'A-Za-z0-9' 40)}
  timeout 60 radosgw-admin -c "$DIR/ceph.conf" user create --uid=tester --display-name=tester \
    --access-key="$ak" --secret-key="$sk" >"$DIR/log/user.out" 2>&1 || {
    err "radosgw-admin user create failed"; exit 1
  }
  # a signed ListBuckets must succeed before we say we are ready (curl 7.88's
  # --aws-sigv4 needs the x-amz-content-sha256 header spelled out for RGW)
  while :; do
    code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
      -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' --user "$ak:$sk" "http://127.0.0.1:$port/" 2>/dev/null)
    [ "$code" = 200 ] && break
    all_alive || exit 1
    deadline_left || { err "signed ListBuckets still answers HTTP $code"; exit 1; }
    sleep 0.2
  done
  printf 'started in %s s (%s); mon on 127.0.0.1:%s; conf %s\n' \
    "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')" "$store" "$monport" "$DIR/ceph.conf" >"$DIR/started"
  OK=1
  echo "endpoint=http://127.0.0.1:$port access=$ak secret=$sk"
  exit 0
}

# ---------------------------------------------------------------- stop
do_stop() {
  local dir=$1 run name pid st left=0
  if [ ! -e "$dir" ]; then
    err "$dir does not exist; nothing to stop"
    return 0
  fi
  [ -d "$dir" ] || { err "$dir is not a directory"; return 1; }
  if [ ! -f "$dir/pids" ] && [ ! -f "$dir/ceph.conf" ]; then
    err "$dir was not made by $PROG (no pids, no ceph.conf); not touching it"
    return 1
  fi
  stop_recorded "$dir/pids"
  if [ -f "$dir/pids" ]; then
    while read -r name pid st; do
      alive "$pid" "$st" && { err "$name (pid $pid) did not exit"; left=1; }
    done <"$dir/pids"
  fi
  [ $left = 0 ] || { err "leaving $dir in place"; return 1; }
  if [ -f "$dir/run-dir" ]; then
    run=$(cat "$dir/run-dir")
    case $run in /tmp/rgw-run.*) rm -rf -- "$run" ;; esac
  fi
  rm -rf -- "$dir"
}

case ${1:-} in
  start) [ $# = 3 ] || usage; do_start "$2" "$3" ;;
  stop) [ $# = 2 ] || usage; do_stop "$2" ;;
  *) usage ;;
esac
