#!/usr/bin/env bash
# testbed.sh: a throwaway multi-host SSH test bed on one machine, for the ssh
# provider's tests. Every "host" is a network namespace + a mount namespace + a
# UTS namespace with its own OpenSSH server; the hosts sit on a private bridge
# together with an s3rver that they can reach. Needs root, iproute2, util-linux
# (unshare, nsenter, flock), openssh-server/-client and s3rver (.deps/npm, from
# scripts/install-deps.sh). Exits 77 with the reason when this machine cannot
# run it (not root, no ip/sshd, network namespaces not allowed).
#
#   testbed.sh up DIR N        N >= 3 hosts, all state in DIR (created if absent);
#                              writes DIR/env (sourceable, see below)
#   testbed.sh down DIR        stop and remove everything `up DIR` made; idempotent.
#                              Run it before removing DIR: DIR holds the bed's state
#   testbed.sh env DIR         print DIR/env
#   testbed.sh known-hosts DIR print known_hosts lines for the hosts' CURRENT keys
#                              (DIR/known_hosts keeps the keys of `up`, also after rekey)
#   testbed.sh host DIR I ACT  fault injection / inspection on host I (1..N):
#       netdown | netup   cut / restore the host's network (link down on the
#                         bridge side of its veth): connections hang, new ones
#                         time out or get "No route to host"
#       kill-sshd         SIGKILL the host's listening sshd only; sessions it
#                         started keep running (as when sshd crashes)
#       kill-all          SIGKILL every process in the host's namespaces: the
#                         machine is gone (its /tmp, ~/.cache and mounts too)
#       start-sshd        start its sshd again (after kill-all: a fresh boot,
#                         empty /tmp); waits until it accepts; no-op if running
#       rekey             a new ed25519 host key and a restarted sshd:
#                         DIR/known_hosts now mismatches ("host key changed");
#                         the new public key is DIR/hI/ssh_host_ed25519_key.pub
#       exec CMD...       run CMD inside the host's network, mount and UTS
#                         namespaces (what a session there would see)
#   testbed.sh leftovers DIR [SETTLE_S]
#                              print what is still running or mounted on any host
#                              (every process but the host's sshd listener, so
#                              s3fs, skyrun-worker and sshd sessions; mounts made
#                              since up, fuse ones included; /tmp/skyrun-* and
#                              ~/.cache/skyrun*); exit 1 if anything. Re-checks
#                              for up to SETTLE_S seconds (default 5) first, so a
#                              session that is just exiting is not reported.
#
# DIR/env: BED_DIR BED_N BED_HOSTS ("10.213.K.2 10.213.K.3 ...") BED_HOSTNAMES
#   BED_KEY (client private key, ed25519, no passphrase) BED_KNOWN_HOSTS (all hosts'
#   keys, OpenSSH format) BED_KNOWN_HOSTS_EMPTY BED_S3_ENDPOINT (http://10.213.K.1:PORT,
#   s3rver: access key/secret S3RVER/S3RVER) BED_BRIDGE BED_NETNS BED_SSH_OPTS
#   (ssh(1) options for the key and known_hosts, BatchMode, ConnectTimeout=5; ssh
#   keeps the FIRST value of an option, so put your own -o before them).
# Checked with libssh2 1.10 (Debian 12): it negotiates the ed25519 host key, reads
# DIR/known_hosts (libssh2_knownhost_readfile, OPENSSH) and matches it (mismatch
# after rekey, not found with known_hosts.empty), and authenticates with
# DIR/id_ed25519 + .pub (libssh2_userauth_publickey_fromfile).
#
# Layout: bridge sbdTAG (TAG = 4 hex digits from a hash of DIR, bumped past names
# in use) with 10.213.K.1/24, K the first third octet no interface or route on the
# machine uses (chosen under a lock, /run/lock/skyrun-sshbed.lock, so parallel
# beds never pick the same one); host I = netns sbdTAG-I, veth sbdTAGhI (bridge
# side) / eth0 (inside) with 10.213.K.(1+I), hostname bedTAG-hI, sshd on port 22.
# Each host's namespaces are held by a "holder" process (sleep, named
# sshbed-holder) so that they outlive a killed sshd: kill-sshd + start-sshd keeps
# /tmp, kill-all + start-sshd is a reboot. sshd runs in the foreground (-D) under
# setsid, its pid recorded by us; sessions inherit its namespaces.
#
# What the hosts do NOT have of their own (know this when writing a test):
# - the PID namespace: a host's `ps` shows every process of the machine, and a
#   pid printed on a host is the same pid outside; never `pkill NAME` on a host
#   (it would hit all hosts and the machine), kill by pid;
# - the file system outside /tmp and /root/.cache (so /usr, the build tree and
#   DIR are the same everywhere), /dev, /sys, /run;
# - name resolution: the hostname bedTAG-hI resolves nowhere, and there is no
#   default route (only 10.213.K.0/24 and lo).
#
# Quirks met:
# - The hosts get a private tmpfs on /tmp and on /root (root's home: a fresh
#   machine's, so this machine's ~/.bashrc does not slow every session down,
#   and a ~/.cache of its own). When DIR itself lies
#   below one of them (e.g. DIR=/tmp/x), DIR is bound back into the new tmpfs at
#   the same path (the tmpfs is prepared at a staging point, DIR bound into it,
#   then the whole is moved over /tmp), since sshd reads its keys, config and
#   authorized keys from DIR. `leftovers` ignores DIR's own ancestors.
# - AuthorizedKeysFile is the bed's public key (absolute path); StrictModes no,
#   because DIR's parents may be group/world-writable (/tmp).
# - Namespaces are entered with nsenter, not `ip netns exec` (which remounts /sys
#   in its own mount namespace; /sys here is the machine's).
# - Daemons get no inherited fds: ctest waits for EOF on its output pipes, and the
#   lock's fd must not outlive `up`.
# - /run/sshd (sshd's privilege separation dir), /root/.cache (mount point) and
#   /run/netns are created when missing and left in place (shared, harmless).
# - The s3rver (like tests/support/s3rver.sh) runs under `timeout` (BED_MAX_LIFETIME_S,
#   default 7200) and so do the holders; sshd listeners die with `down` or kill-all.
# Knobs: BED_WATCH_PID (up: a detached watchdog runs `down DIR` once that process
#   is gone, so a test killed before its trap still leaves nothing; give the test's
#   $$), BED_TIMEOUT_S (waits, default 30), BED_TMPFS_SIZE (default 1g),
#   BED_KEEP_LOGS=1 (down keeps DIR/hI/sshd.log and DIR/s3rver.log).
set -u
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export LC_ALL=C

SKIP=77
say() { echo "testbed: $*" >&2; }
die() { say "$*"; exit 1; }
skip() { say "skipped: $*"; exit $SKIP; }

here=$(cd "$(dirname "$0")/../.." && pwd)
S3RVER_BIN=${S3RVER_BIN:-$here/.deps/npm/node_modules/.bin/s3rver}
TMO=${BED_TIMEOUT_S:-30}
LIFETIME=${BED_MAX_LIFETIME_S:-7200}
TMPFS_SIZE=${BED_TMPFS_SIZE:-1g}
ROOT_HOME=$(getent passwd root | cut -d: -f6); ROOT_HOME=${ROOT_HOME:-/root}
SSHD=/usr/sbin/sshd
SUBNET_PREFIX=10.213
LOCK=/run/lock/skyrun-sshbed.lock
[ -d /run/lock ] || LOCK=/tmp/skyrun-sshbed.lock

cmd=${1:-}; DIR=${2:-}
usage="usage: $0 up DIR N | down DIR | env DIR | known-hosts DIR | host DIR I netdown|netup|kill-sshd|kill-all|start-sshd|rekey|exec CMD... | leftovers DIR [SETTLE_S]"
[ -n "$cmd" ] && [ -n "$DIR" ] || die "$usage"

# ---------- helpers ----------

# Closes every fd above 2 of the calling (sub)shell: daemons must not hold
# ctest's pipes or the allocation lock.
close_fds() { local f; for f in /proc/$BASHPID/fd/*; do f=${f##*/}; [ "$f" -gt 2 ] 2>/dev/null && eval "exec $f>&-"; done; }

# pid_ok PID WORD: PID is alive, not a zombie, and its command line mentions WORD
# (guards against recycled pids).
pid_ok() {
  [ -n "${1:-}" ] && [ -r "/proc/$1/cmdline" ] || return 1
  [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ] || return 1
  tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2"
}

# alive PID...: succeeds if any PID still exists and is not a zombie.
alive() { local p; for p; do [ -e "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] && return 0; done; return 1; }

# kill_wait SECS PID...: SIGTERM, up to SECS for them to go, then SIGKILL (bounded).
kill_wait() {
  local secs=$1 i; shift; [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null
  for ((i = 0; i < secs * 20; i++)); do alive "$@" || return 0; sleep 0.05; done
  kill -KILL "$@" 2>/dev/null
  for ((i = 0; i < 100; i++)); do alive "$@" || return 0; sleep 0.05; done
  return 1
}

# ns_members "net:INO mnt:INO ...": pids of processes in any of those namespaces,
# never the caller's own namespaces.
ns_members() {
  [ -n "$*" ] || return 0
  local self; self="net:$(stat -L -c %i /proc/$$/ns/net) mnt:$(stat -L -c %i /proc/$$/ns/mnt)"
  stat -L -c '%n %i' /proc/[0-9]*/ns/net /proc/[0-9]*/ns/mnt 2>/dev/null |
    awk -v want="$*" -v self="$self" 'BEGIN{n=split(want,w," "); for(i=1;i<=n;i++) W[w[i]]=1
        m=split(self,s," "); for(i=1;i<=m;i++) delete W[s[i]]}
      {split($1,a,"/"); if ((a[5] ":" $2) in W) print a[3]}' | sort -un
}

# wait_for SECS DESC CMD...: poll CMD every 0.1 s, at most SECS.
wait_for() {
  local secs=$1 desc=$2; shift 2; local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || { say "timeout (${secs}s) waiting for $desc"; return 1; }
    sleep 0.1
  done
}

load_state() { [ -f "$STATE" ] || die "no test bed is up in $DIR"; . "$STATE"; }

host_ok() { [[ "${1:-}" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le "$N" ] || die "no host ${1:-} (1..$N)"; }
host_addr() { echo "$SUBNET.$((1 + $1))"; }
host_ns() { echo "sbd$TAG-$1"; }
host_veth() { echo "sbd${TAG}h$1"; }
host_name() { echo "bed$TAG-h$1"; }
# the holder counts once it has become `sleep` named sshbed-holder-TAG-I (its mounts are made by then)
holder_pid() {
  local p; p=$(cat "$DIR/h$1/holder.pid" 2>/dev/null) && alive "$p" || return 1
  [ "$(tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | head -n1)" = "sshbed-holder-$TAG-$1" ] && echo "$p"
}
sshd_pid() { local p; p=$(cat "$DIR/h$1/sshd.pid0" 2>/dev/null) && pid_ok "$p" "$DIR/h$1/sshd_config" && echo "$p"; }

# "net:INO mnt:INO" of host I (mnt only while its holder lives).
host_nslist() {
  local l="" p ino
  ino=$(stat -L -c %i "/run/netns/$(host_ns "$1")" 2>/dev/null) && l="net:$ino"
  p=$(holder_pid "$1") && ino=$(stat -L -c %i "/proc/$p/ns/mnt" 2>/dev/null) && l+=" mnt:$ino"
  echo "$l"
}

# ---------- host start ----------

# The script the holder runs in its fresh mount + UTS namespaces (bash -c).
# Arguments: DIR HOSTNAME TMPFS_SIZE NAME LIFETIME ROOT_HOME
holder_script='
set -e
dir=$1 name=$2 size=$3 home=$6
hostname "$name"
# private_tmpfs TARGET MODE: a new tmpfs over TARGET; DIR bound back in if it lies below TARGET
private_tmpfs() {
  local target=$1 mode=$2 stage rel
  stage=$(mktemp -d "$dir/stage.XXXXXX")
  mkdir -p "$target"
  mount -t tmpfs -o "mode=$mode,size=$size" sshbed "$stage"
  case "$dir/" in
    "$target"/*) rel=${dir#"$target"/}; mkdir -p "$stage/$rel"; mount --bind "$dir" "$stage/$rel" ;;
  esac
  mount --move "$stage" "$target"
  rmdir "$stage" 2>/dev/null || true
}
private_tmpfs /tmp 1777
private_tmpfs "$home" 0700   # a home of its own: no rc files of this machine, its own ~/.cache
mkdir -p "$home/.cache"
exec -a "$4" sleep "$5"
'

# start_holder I: namespaces for host I (new mount + UTS namespace inside its netns).
start_holder() {
  local i=$1 ns hn p
  ns=$(host_ns "$i"); hn=$(host_name "$i")
  (close_fds; exec setsid nsenter --net="/run/netns/$ns" -- unshare -m -u --propagation private \
      bash -c "$holder_script" sshbed-holder "$DIR" "$hn" "$TMPFS_SIZE" "sshbed-holder-$TAG-$i" "$LIFETIME" "$ROOT_HOME") \
    </dev/null >>"$DIR/h$i/holder.log" 2>&1 &
  p=$!
  echo "$p" >"$DIR/h$i/holder.pid"
  # ready once the pid runs sleep (the exec -a comes after the mounts); fail fast if it died
  local end=$((SECONDS + TMO))
  until holder_pid "$i" >/dev/null; do
    alive "$p" && [ $SECONDS -lt $end ] || { say "host $i: namespaces not set up"; cat "$DIR/h$i/holder.log" >&2; return 1; }
    sleep 0.05
  done
  nsenter -t "$p" -m -- cat /proc/self/mountinfo | awk '{print $5}' | sort >"$DIR/h$i/mounts.base"
}

# sshd_answers I: a TCP connect to host I's sshd from inside its netns gets an SSH banner.
sshd_answers() {
  local p; p=$(holder_pid "$1") || return 1
  nsenter -t "$p" -n -- timeout 2 bash -c 'exec 3<>/dev/tcp/$0/22 && head -c 4 <&3' "$(host_addr "$1")" 2>/dev/null |
    grep -q '^SSH-'
}

# start_sshd I: holder (if gone) + sshd in its namespaces, bounded wait until it accepts.
start_sshd() {
  local i=$1 h p
  [ -z "$(sshd_pid "$i")" ] || { say "host $i: sshd already running"; return 0; }
  h=$(holder_pid "$i") || { start_holder "$i" || return 1; h=$(holder_pid "$i"); }
  mkdir -p /run/sshd
  (close_fds; exec setsid nsenter -t "$h" -n -m -u -- "$SSHD" -D -f "$DIR/h$i/sshd_config" -E "$DIR/h$i/sshd.log") \
    </dev/null >>"$DIR/h$i/sshd.out" 2>&1 &
  p=$!
  echo "$p" >"$DIR/h$i/sshd.pid0"
  wait_for "$TMO" "host $i's sshd to accept" sshd_answers "$i" ||
    { tail -n 5 "$DIR/h$i/sshd.log" "$DIR/h$i/sshd.out" >&2 2>/dev/null; return 1; }
}

write_sshd_config() {
  local i=$1
  cat >"$DIR/h$i/sshd_config" <<EOF
# sshd of test bed host $i ($(host_name "$i")), generated by testbed.sh
Port 22
ListenAddress $(host_addr "$i")
HostKey $DIR/h$i/ssh_host_ed25519_key
PidFile $DIR/h$i/sshd.pid
AuthorizedKeysFile $DIR/id_ed25519.pub
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
MaxSessions 64
MaxStartups 64
MaxAuthTries 6
LogLevel VERBOSE
Subsystem sftp internal-sftp
EOF
  # OpenSSH >= 9.8 would shut out a host's clients after crashes and failed logins,
  # which fault-injection tests provoke on purpose (9.2 does not know the option)
  if "$SSHD" -t -f "$DIR/h$i/sshd_config" -o PerSourcePenalties=no >/dev/null 2>&1; then
    echo "PerSourcePenalties no" >>"$DIR/h$i/sshd_config"; fi
}

known_hosts_line() { echo "$(host_addr "$1") $(cut -d' ' -f1,2 "$DIR/h$1/ssh_host_ed25519_key.pub")"; }

new_host_key() {
  local i=$1
  rm -f "$DIR/h$i/ssh_host_ed25519_key" "$DIR/h$i/ssh_host_ed25519_key.pub"
  ssh-keygen -q -t ed25519 -N '' -C "$(host_name "$i")" -f "$DIR/h$i/ssh_host_ed25519_key" </dev/null >/dev/null
}

# ---------- up ----------

net_setup() { # under the lock: tag, subnet, bridge, namespaces, veths
  local t k used i ns hv
  t=$(printf %s "$DIR" | cksum | awk '{print $1 % 65536}')
  for ((k = 0; k < 65536; k++)); do
    TAG=$(printf %04x $(((t + k) % 65536)))
    ip link show "sbd$TAG" >/dev/null 2>&1 || [ -e "/run/netns/sbd$TAG-1" ] || break
  done
  used=$( (ip -4 -o addr show | awk '{print $4}'; ip -4 route show table all | awk '{print $1}'; ip -4 route show table all | awk '{print $2}') 2>/dev/null)
  for ((k = 0; k < 256; k++)); do
    awk -v p="$SUBNET_PREFIX.$k." 'index($0, p) == 1 {found = 1} END {exit !found}' <<<"$used" || break
  done
  [ "$k" -lt 256 ] || { say "no free $SUBNET_PREFIX.K.0/24"; return 1; }
  SUBNET=$SUBNET_PREFIX.$k; BRIDGE=sbd$TAG
  printf 'TAG=%s\nSUBNET=%s\nN=%s\n' "$TAG" "$SUBNET" "$N" >>"$STATE"
  ip link add "$BRIDGE" type bridge || return 1
  echo "BRIDGE=$BRIDGE" >>"$STATE"
  ip addr add "$SUBNET.1/24" dev "$BRIDGE" && ip link set "$BRIDGE" up || return 1
  NETNS_LIST=""; VETHS=""
  for i in $(seq 1 "$N"); do
    ns=$(host_ns "$i"); hv=$(host_veth "$i")
    ip netns add "$ns" || return 1
    NETNS_LIST+=" $ns"; echo "NETNS_LIST='$NETNS_LIST'" >>"$STATE"
    ip link add "$hv" type veth peer name "sbd${TAG}n$i" || return 1
    VETHS+=" $hv"; echo "VETHS='$VETHS'" >>"$STATE"
    ip link set "sbd${TAG}n$i" netns "$ns" && ip link set "$hv" master "$BRIDGE" && ip link set "$hv" up &&
      ip -n "$ns" link set "sbd${TAG}n$i" name eth0 && ip -n "$ns" addr add "$(host_addr "$i")/24" dev eth0 &&
      ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up || return 1
  done
}

start_s3rver() {
  local log=$DIR/s3rver.log port="" end
  mkdir -p "$DIR/s3rver"
  : >"$log"
  # Node 20 needs the legacy provider (s3rver encrypts continuation tokens with DES)
  (close_fds; NODE_OPTIONS=--openssl-legacy-provider exec setsid timeout "$LIFETIME" \
      "$S3RVER_BIN" -d "$DIR/s3rver" -a "$SUBNET.1" -p 0 --silent) </dev/null >"$log" 2>&1 &
  echo "$!" >"$DIR/s3rver.pid"
  S3_PID=$!
  end=$((SECONDS + TMO))
  while [ -z "$port" ] && [ $SECONDS -lt $end ]; do
    alive "$S3_PID" || { cat "$log" >&2; say "s3rver exited at start"; return 1; }
    port=$(grep -o "listening on $SUBNET.1:[0-9]*" "$log" | head -n1 | sed 's/.*://')
    [ -n "$port" ] || sleep 0.1
  done
  [ -n "$port" ] || { say "s3rver did not say its port within ${TMO}s"; return 1; }
  S3_ENDPOINT=http://$SUBNET.1:$port
  wait_for "$TMO" "s3rver to answer" curl -s -o /dev/null --max-time 2 "$S3_ENDPOINT/"
}

write_env() {
  local i hosts="" names="" known
  for i in $(seq 1 "$N"); do hosts+=" $(host_addr "$i")"; names+=" $(host_name "$i")"; done
  known=$DIR/known_hosts
  cat >"$DIR/env.tmp" <<EOF
# test bed in $DIR (testbed.sh); source it
export BED_DIR='$DIR'
export BED_N=$N
export BED_HOSTS='${hosts# }'
export BED_HOSTNAMES='${names# }'
export BED_KEY='$DIR/id_ed25519'
export BED_KNOWN_HOSTS='$known'
export BED_KNOWN_HOSTS_EMPTY='$DIR/known_hosts.empty'
export BED_S3_ENDPOINT='$S3_ENDPOINT'
export BED_BRIDGE='$BRIDGE'
export BED_NETNS='${NETNS_LIST# }'
export BED_SSH_OPTS='-i $DIR/id_ed25519 -o IdentitiesOnly=yes -o UserKnownHostsFile=$known -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5'
EOF
  mv "$DIR/env.tmp" "$DIR/env"
}

try_up() {
  local i
  echo "# testbed.sh state" >"$STATE"
  (flock -w "$TMO" 9 || { say "could not take $LOCK"; exit 1; }; net_setup; rc=$?; for v in TAG SUBNET BRIDGE NETNS_LIST VETHS; do printf '%s=%q\n' "$v" "${!v-}"; done >"$DIR/.net"; exit $rc) 9>>"$LOCK" ||
    { say "network setup failed"; return 1; }
  . "$DIR/.net"; rm -f "$DIR/.net"
  # from here on, a killed owner (even one killed during up) takes the bed down
  [ -z "${BED_WATCH_PID:-}" ] || start_watchdog "$BED_WATCH_PID" || return 1
  ssh-keygen -q -t ed25519 -N '' -C "testbed-$TAG" -f "$DIR/id_ed25519" </dev/null >/dev/null || return 1
  : >"$DIR/known_hosts"; : >"$DIR/known_hosts.empty"
  for i in $(seq 1 "$N"); do
    mkdir -p "$DIR/h$i"
    new_host_key "$i" || return 1
    write_sshd_config "$i"
    known_hosts_line "$i" >>"$DIR/known_hosts"
  done
  start_s3rver || return 1
  for i in $(seq 1 "$N"); do start_sshd "$i" || return 1; done
  write_env
}

# start_watchdog PID: a detached process that runs `down DIR` once PID is gone
# (the test that owns the bed was killed, e.g. by ctest's timeout, before its own
# cleanup), or after the bed's lifetime. Down ends it (unless down is it).
watchdog_script='
pid=$1 start=$2 lifetime=$3 self=$4 dir=$5 end=$((SECONDS + lifetime))
started() { sed "s/.*) //" "/proc/$pid/stat" 2>/dev/null | cut -d" " -f20; }
while [ "$(started)" = "$start" ] && [ $SECONDS -lt $end ]; do sleep 1; done
exec "$self" down "$dir"
'
start_watchdog() {
  local pid=$1 start
  [[ "$pid" =~ ^[0-9]+$ ]] && start=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f20) && [ -n "$start" ] ||
    { say "BED_WATCH_PID=$pid: no such process"; return 1; }
  (close_fds; exec setsid bash -c "$watchdog_script" "sshbed-watchdog-$TAG" "$pid" "$start" "$LIFETIME" \
      "$(cd "$(dirname "$0")" && pwd)/$(basename "$0")" "$DIR") </dev/null >>"$DIR/watchdog.log" 2>&1 &
  echo "$!" >"$DIR/watchdog.pid"
}

# ---------- down ----------

do_down() {
  # one down at a time per bed (the test's trap and a watchdog may meet)
  exec 8<"$DIR" && flock -w $((TMO * 4)) 8 || say "could not lock $DIR; going on"
  [ -f "$STATE" ] || { say "nothing up in $DIR"; return 0; }
  . "$STATE"
  local i p f pids=() nslist="" left
  N=${N:-0}
  for ((i = 1; i <= N; i++)); do nslist+=" $(host_nslist "$i")"; done
  pids+=($(ns_members $nslist))
  for ((i = 1; i <= N; i++)); do
    p=$(sshd_pid "$i") && pids+=("$p")
    p=$(holder_pid "$i") && pids+=("$p")
  done
  kill_wait 2 "${pids[@]}"
  p=$(cat "$DIR/watchdog.pid" 2>/dev/null)
  [ "$p" != "$$" ] && pid_ok "$p" "sshbed-watchdog-$TAG" && kill_wait 1 "$p"
  p=$(cat "$DIR/s3rver.pid" 2>/dev/null)
  if pid_ok "$p" "$DIR/s3rver"; then
    kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null
    for ((i = 0; i < 50; i++)); do alive "$p" || break; sleep 0.1; done
    kill -KILL -- "-$p" 2>/dev/null
  fi
  left=$(ns_members $nslist)   # while our namespaces still exist (their inodes are still ours)
  for f in ${NETNS_LIST:-}; do ip netns del "$f" 2>/dev/null; done
  for f in ${VETHS:-}; do ip link del "$f" 2>/dev/null; done
  [ -n "${BRIDGE:-}" ] && ip link del "$BRIDGE" 2>/dev/null
  for ((i = 1; i <= N; i++)); do
    if [ "${BED_KEEP_LOGS:-0}" = 1 ]; then
      find "$DIR/h$i" -mindepth 1 -maxdepth 1 ! -name sshd.log -exec rm -rf {} + 2>/dev/null
    else rm -rf "$DIR/h$i"; fi
  done
  rm -rf "$DIR/s3rver" "$DIR/s3rver.pid" "$DIR/id_ed25519" "$DIR/id_ed25519.pub" "$DIR/known_hosts" \
    "$DIR/known_hosts.empty" "$DIR/env" "$DIR/env.tmp" "$DIR/.net" "$DIR"/stage.* "$DIR/watchdog.pid"
  [ "${BED_KEEP_LOGS:-0}" = 1 ] || rm -f "$DIR/s3rver.log" "$DIR/watchdog.log"
  rm -f "$STATE"
  rmdir "$DIR" 2>/dev/null
  [ -z "$left" ] || { say "processes still alive: $(echo $left)"; return 1; }
  return 0
}

# ---------- leftovers ----------

# all_leftovers: one line per thing still on any host (one pass over /proc, one
# nsenter per host: forks are slow on a loaded 2-core machine)
all_leftovers() {
  local i h sshd ino want="" skip=" " p host anc
  for ((i = 1; i <= N; i++)); do
    ino=$(stat -L -c %i "/run/netns/$(host_ns "$i")" 2>/dev/null) && want+=" net:$ino=$i"
    if h=$(holder_pid "$i"); then
      skip+="$h "; ino=$(stat -L -c %i "/proc/$h/ns/mnt" 2>/dev/null) && want+=" mnt:$ino=$i"; fi
    sshd=$(sshd_pid "$i") && skip+="$sshd "
  done
  stat -L -c '%n %i' /proc/[0-9]*/ns/net /proc/[0-9]*/ns/mnt 2>/dev/null |
    awk -v want="$want" -v skip="$skip" 'BEGIN{n=split(want,w," "); for(k=1;k<=n;k++){split(w[k],a,"="); W[a[1]]=a[2]}}
      {split($1,a,"/"); key=a[5] ":" $2; if ((key in W) && index(skip, " " a[3] " ") == 0) print a[3], W[key]}' |
    sort -un -k1,1 | while read -r p host; do
      alive "$p" || continue
      echo "host $host: process $p: $({ tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | cut -c1-200)"
    done
  # DIR's own ancestor right below /tmp is the bound-back DIR, not a leftover
  anc=$DIR; while [ "$(dirname "$anc")" != / ] && [ "$(dirname "$anc")" != /tmp ]; do anc=$(dirname "$anc"); done
  for ((i = 1; i <= N; i++)); do
    h=$(holder_pid "$i") || continue
    nsenter -t "$h" -m -- sh -c 'cat /proc/self/mountinfo; echo ---; for f in /tmp/skyrun-* "$2"/.cache/skyrun*; do
        [ -e "$f" ] && [ "$f" != "$1" ] && echo "$f"; done; true' sh "$anc" "$ROOT_HOME" 2>/dev/null |
      awk -v host="$i" -v basefile="$DIR/h$i/mounts.base" '
        BEGIN{while ((getline l < basefile) > 0) base[l]=1}
        $0 == "---" {files=1; next}
        files {print "host " host ": file " $0; next}
        {for (j = 7; j <= NF; j++) if ($j == "-") break
         if (!($5 in base)) print "host " host ": mount " $5 " (" $(j+1) ", " $(j+2) ")"}'
  done
}

do_leftovers() {
  load_state
  local settle=${1:-5} end out i
  end=$((SECONDS + settle))
  while :; do
    out=$(all_leftovers)
    [ -n "$out" ] && [ $SECONDS -lt $end ] || break
    sleep 0.2
  done
  [ -z "$out" ] && return 0
  echo "$out"
  return 1
}

# ---------- host actions ----------

do_host() {
  local i=${1:-} act=${2:-} p pids
  load_state
  host_ok "$i"
  shift 2
  case $act in
    netdown) ip link set "$(host_veth "$i")" down ;;
    netup) ip link set "$(host_veth "$i")" up ;;
    kill-sshd)
      p=$(sshd_pid "$i") || { say "host $i: sshd not running"; return 0; }
      kill -KILL "$p"; kill_wait 1 "$p" ;;
    kill-all)
      pids=$(ns_members $(host_nslist "$i"))
      p=$(sshd_pid "$i") && pids+=" $p"
      p=$(holder_pid "$i") && pids+=" $p"
      [ -n "${pids// /}" ] || return 0
      kill -KILL $pids 2>/dev/null
      for ((p = 0; p < 100; p++)); do alive $pids || return 0; sleep 0.05; done
      say "host $i: processes survived SIGKILL: $pids"; return 1 ;;
    start-sshd) start_sshd "$i" ;;
    rekey)
      p=$(sshd_pid "$i") && { kill -KILL "$p"; kill_wait 1 "$p"; }
      new_host_key "$i" && start_sshd "$i" ;;
    exec)
      [ $# -gt 0 ] || die "exec needs a command"
      p=$(holder_pid "$i") || die "host $i is down (kill-all); start-sshd boots it again"
      exec nsenter -t "$p" -n -m -u -- "$@" ;;
    *) die "$usage" ;;
  esac
}

# ---------- main ----------

preflight() {
  [ "$(id -u)" = 0 ] || skip "needs root"
  command -v ip >/dev/null || skip "no ip (iproute2)"
  [ -x "$SSHD" ] || skip "no $SSHD (openssh-server)"
  local b; for b in ssh ssh-keygen nsenter unshare flock setsid timeout curl; do command -v $b >/dev/null || skip "no $b"; done
  [ -x "$S3RVER_BIN" ] || skip "no s3rver at $S3RVER_BIN (scripts/install-deps.sh)"
  local probe=sbdprobe$$
  ip netns add "$probe" 2>/dev/null || skip "network namespaces not allowed here (ip netns add failed)"
  ip netns del "$probe"
  unshare -m -u --propagation private true 2>/dev/null || skip "mount/UTS namespaces not allowed here (unshare failed)"
  ip link add "$probe" type bridge 2>/dev/null || skip "cannot create a bridge here"
  ip link del "$probe"
}

if [ "$cmd" = up ]; then
  preflight
  mkdir -p "$DIR" || die "cannot create $DIR"
fi
if [ ! -d "$DIR" ]; then [ "$cmd" = down ] && exit 0; die "no directory $DIR"; fi
DIR=$(cd "$DIR" && pwd -P)
STATE=$DIR/bed.state

case $cmd in
  up)
    N=${3:-}
    [[ "$N" =~ ^[0-9]+$ ]] && [ "$N" -ge 3 ] && [ "$N" -le 200 ] || die "N must be 3..200"
    [[ "$DIR" != *[[:space:]]* ]] || die "DIR must not contain white space (sshd_config paths): $DIR"
    # held until up is done: a down (the watchdog's, a second up's) waits for it
    exec 8<"$DIR" && flock -w $((TMO * 4)) 8 || die "$DIR is locked by another up or down"
    [ ! -f "$STATE" ] || die "a test bed is already up in $DIR (run down first)"
    if ! try_up; then
      say "up failed; tearing down (logs: $DIR/h*/sshd.log, $DIR/s3rver.log)"
      BED_KEEP_LOGS=1 do_down >/dev/null 2>&1
      exit 1
    fi
    say "up: $N hosts ($SUBNET.2-$((1 + N))) on $BRIDGE, s3rver $S3_ENDPOINT, ${SECONDS}s" ;;
  down) [ "$(id -u)" = 0 ] || skip "needs root"; do_down ;;
  env) load_state; cat "$DIR/env" ;;
  known-hosts) load_state; for ((i = 1; i <= N; i++)); do known_hosts_line "$i"; done ;;
  host) [ "$(id -u)" = 0 ] || skip "needs root"; shift 2; do_host "$@" ;;
  leftovers) [ "$(id -u)" = 0 ] || skip "needs root"; do_leftovers "${3:-5}" ;;
  *) die "$usage" ;;
esac
