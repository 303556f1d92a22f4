#!/usr/bin/env bash
# tests/slurm/testbed.sh: adapted from ../shared/testbed/slurm_testbed.sh (each slurmd also gets a mount
# namespace of its own, STB_OWN_MOUNTS=0 turns that off; batch_sched_delay=0 for tests).
# Throwaway Slurm cluster on one machine, for tests (checked on Debian 12: slurm-wlm 22.05.8-4+deb12u3,
# munge 0.5.15-2+deb12u1).
# Needs root and: apt-get install slurmctld slurmd slurm-client munge   (with a policy-rc.d that stops the
# packages from starting their own daemons; nothing from /etc/slurm or /etc/munge is used).
#
#   slurm_testbed.sh up DIR N            munged + slurmctld + N slurmd (node1..nodeN), all state in DIR; prints
#                                        "export SLURM_CONF=DIR/slurm.conf"  (eval "$(slurm_testbed.sh up DIR 3)")
#   slurm_testbed.sh down DIR            stop everything `up DIR` started (daemons, slurmstepd, job tasks),
#                                        remove its netns/bridge/veths and DIR/run/*.utsns mounts; idempotent.
#                                        Run it before deleting DIR (the .utsns bind mounts make rm -rf fail)
#   slurm_testbed.sh env DIR             print the exports again
#   slurm_testbed.sh node DIR I ACTION   fault injection on nodeI:
#        stop     SIGKILL the node's slurmd only (slurmstepd and tasks keep running, as when slurmd crashes)
#        crash    SIGKILL every process of the node (slurmd, slurmstepd, tasks), like a power loss. slurmctld
#                 sets the node DOWN and ends its jobs ~15-20 s later (SlurmdTimeout=10); srun then prints
#                 "srun: error: Node failure on nodeI" but (Slurm 22.05) does NOT exit: the caller must kill it
#        start    start its slurmd again (same hostname/namespaces) and wait until the node is back in service;
#                 after a crash it first waits for slurmctld to set the node DOWN (else the node's jobs would stay
#                 RUNNING for ever as ghosts: a slurmd that comes back too soon does not make slurmctld notice)
#        netdown  / netup   (netns mode) cut / restore the node's network link
#
# Modes (STB_MODE, default auto = the first that works, in this order):
#   netns   each node in its own network + UTS namespace: hostname nodeI, eth0 = 10.77.X.(10+I)/24 on bridge
#           stbTAG; slurmctld in its own namespace (hostname ctl, 10.77.X.2:6817); host side of the bridge is
#           10.77.X.1 so srun/sbatch/squeue work from the host. Nothing is routed outside 10.77.X.0/24.
#   ports   no network namespaces: every daemon on 127.0.0.1 with its own free port; each slurmd still in its
#           own UTS namespace (hostname nodeI) when unshare is allowed
#   single  one slurmd on 127.0.0.1 (N is forced to 1)
# UTS namespaces are kept alive by bind mounts on DIR/run/NAME.utsns (as `ip netns` does for network ones), so
# their inode numbers cannot be recycled by someone else's namespace while the cluster is up.
# The filesystem, /tmp and the process table are shared: a task sees the same files as the caller.
# Knobs: STB_CPUS (CPUs declared per node, default 8; SlurmdParameters=config_overrides lets it exceed the real
#   count), STB_TIMEOUT (seconds to wait for daemons, default 60), STB_INACTIVE_LIMIT (slurm.conf InactiveLimit,
#   default 0 = an srun killed together with its shepherd leaves its job running), STB_EXTRA_CONF (extra lines).
# Seen with Slurm 22.05: srun hands a task's stdout on only at newlines (or when its buffer fills) unless
#   `srun -u`, which makes the task's stdout a pty in raw mode (binary-safe); stdin goes to every task unless
#   --input=0. SIGKILL of srun alone: its shepherd child cancels the job (tasks gone in ~25 ms). SIGKILL of srun
#   and its shepherd (e.g. the whole process group) leaves the job running (until InactiveLimit, if set).
set -u
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export LC_ALL=C

die(){ echo "slurm_testbed: $*" >&2; exit 1; }
say(){ echo "slurm_testbed: $*" >&2; }

cmd=${1:-}; DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || die "usage: $0 up DIR N | down DIR | env DIR | node DIR I stop|crash|start|netdown|netup"
[ "$(id -u)" = 0 ] || die "must run as root"
if [ "$cmd" = up ]; then mkdir -p "$DIR" || die "cannot create $DIR"; fi
[ -d "$DIR" ] || die "no directory $DIR"
DIR=$(cd "$DIR" && pwd -P)
STATE=$DIR/testbed.state
TMO=${STB_TIMEOUT:-60}
export SLURM_CONF=$DIR/slurm.conf   # never let a client fall back to DNS SRV (configless) look-ups

# ---------- helpers ----------
close_fds(){ local f; for f in /proc/$BASHPID/fd/*; do f=${f##*/}; [ "$f" -gt 2 ] 2>/dev/null && eval "exec $f>&-"; done; }

# pid_ok PID WORD: PID is alive and its command line mentions WORD (guards against recycled pids)
pid_ok(){ [ -n "${1:-}" ] && [ -r /proc/$1/cmdline ] && tr '\0' ' ' </proc/$1/cmdline | grep -qF -- "$2"; }

# pids living in any of the namespaces given as "net:INODE" / "uts:INODE"; never the caller's own namespaces
ns_members(){ [ $# -gt 0 ] || return 0
  local self; self="net:$(stat -L -c %i /proc/$$/ns/net) uts:$(stat -L -c %i /proc/$$/ns/uts)"
  stat -L -c '%n %i' /proc/[0-9]*/ns/net /proc/[0-9]*/ns/uts 2>/dev/null |
    awk -v want="$*" -v self="$self" 'BEGIN{n=split(want,w," "); for(i=1;i<=n;i++) W[w[i]]=1
        m=split(self,s," "); for(i=1;i<=m;i++) delete W[s[i]]}
      {split($1,a,"/"); if ((a[5] ":" $2) in W) print a[3]}' | sort -un; }   # $1 = /proc/PID/ns/TYPE

# ns_ino FILE: inode of the namespace bind-mounted on FILE (nothing if FILE is not such a mount)
ns_ino(){ mountpoint -q "$1" 2>/dev/null && stat -L -c %i "$1"; }

# holds_file PID PATH: PID has a file open whose path is PATH or starts with PATH (give DIR/ for a prefix)
holds_file(){ local f; for f in /proc/$1/fd/*; do [[ $(readlink "$f" 2>/dev/null) == "$2"* ]] && return 0; done; return 1; }

descendants(){ ps -e -o pid=,ppid= | awk -v r="$1" '{par[$1]=$2} END{for(p in par){q=p; while((q in par) && q>1){q=par[q]; if(q==r){print p; break}}}}'; }

kill_wait(){ # kill_wait SECS PID... : SIGTERM, wait up to SECS (zombies count as gone), then SIGKILL
  local secs=$1; shift; [ $# -gt 0 ] || return 0
  local list i; list=$(IFS=,; echo "$*")
  kill -TERM "$@" 2>/dev/null
  for ((i=0; i<secs*20; i++)); do ps -o stat= -p "$list" 2>/dev/null | grep -qv '^Z' || return 0; sleep 0.05; done
  kill -KILL "$@" 2>/dev/null
  for ((i=0; i<40; i++)); do ps -o stat= -p "$list" 2>/dev/null | grep -qv '^Z' || return 0; sleep 0.05; done; }

free_port(){ local p used
  used=$(awk 'NR>1{split($2,a,":"); print strtonum("0x" a[2])}' /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -un)
  for p in $(shuf -i 20000-59999 -n 200); do grep -qx "$p" <<<"$used" || { echo "$p"; return; }; done; echo 0; }

wait_for(){ # wait_for SECS DESC CMD... : poll CMD every 0.2 s
  local secs=$1 desc=$2; shift 2; local end=$((SECONDS+secs))
  while ! "$@" >/dev/null 2>&1; do [ $SECONDS -ge $end ] && { say "timeout waiting for $desc"; return 1; }; sleep 0.2; done; }

# mk_uts NAME HOSTNAME: a new UTS namespace with HOSTNAME, kept alive by a bind mount on DIR/run/NAME.utsns
mk_uts(){ local f=$DIR/run/$1.utsns; : >"$f" && unshare --uts="$f" hostname "$2"; }
uts_release(){ local f; for f in "$DIR"/run/*.utsns; do mountpoint -q "$f" 2>/dev/null && umount "$f"; done; }

# launch NAME NETNS CMD... : start a daemon in the background, detached (own session, stdio to DIR/log/NAME.out,
# no inherited fds), inside the UTS namespace DIR/run/NAME.utsns (if UTS=1) and inside NETNS (if given).
# Records its pid in DIR/run/NAME.pid0 (setsid and nsenter exec, so it is the daemon's pid).
launch(){ local name=$1 ns=$2; shift 2; local enter=()
  # nsenter, not `ip netns exec`: that one remounts /sys, which hides /sys/fs/cgroup, and slurmd 22.05 then
  # dies with "Unable to initialize cgroup plugin"
  [ -n "$ns" ] && enter+=(--net="/run/netns/$ns")
  [ "$UTS" = 1 ] && enter+=(--uts="$DIR/run/$name.utsns")
  [ ${#enter[@]} -gt 0 ] && set -- nsenter "${enter[@]}" -- "$@"
  ( close_fds; exec setsid "$@" ) </dev/null >>"$DIR/log/$name.out" 2>&1 &
  echo $! >"$DIR/run/$name.pid0"; }

load_state(){ [ -f "$STATE" ] || die "no cluster is up in $DIR"; . "$STATE"; }

node_nslist(){ # "net:INO uts:INO ..." of node $1's namespaces, or of all the cluster's namespaces with "all"
  local f ino l=
  if [ "$1" = all ]; then set -- "$DIR"/run/*.utsns; for f in ${NETNS_LIST:-}; do set -- "$@" "/run/netns/$f"; done
  else set -- "$DIR/run/slurmd.node$1.utsns"; [ "${MODE:-}" = netns ] && set -- "$@" "/run/netns/stb$TAG-$1"; fi
  for f; do ino=$(ns_ino "$f") || continue; [[ $f == /run/netns/* ]] && l+=" net:$ino" || l+=" uts:$ino"; done
  echo "$l"; }

start_slurmd(){ local i=$1 ns=
  mkdir -p "$DIR/spool/node$i"; chmod 755 "$DIR/spool/node$i"
  [ "$MODE" = netns ] && ns=stb$TAG-$i
  # a restarted slurmd goes back into the node's UTS namespace (where a 'stop'ped one's slurmstepd may still run)
  if [ "$UTS" = 1 ] && [ -z "$(ns_ino "$DIR/run/slurmd.node$i.utsns")" ]; then mk_uts "slurmd.node$i" "node$i" || return 1; fi
  # each node's mounts (a volume's s3fs, made by a job step) are its own, as on a real machine
  local own=()
  [ "${STB_OWN_MOUNTS:-1}" = 1 ] && unshare -m --propagation private true 2>/dev/null && own=(unshare -m --propagation private)
  launch "slurmd.node$i" "$ns" "${own[@]}" slurmd -D -N "node$i" -f "$DIR/slurm.conf"; }

# ---------- down ----------
do_down(){
  [ -f "$STATE" ] || { say "nothing recorded in $DIR"; return 0; }
  . "$STATE"
  local pids=() p f nslist
  nslist=$(node_nslist all)
  # every process in a namespace we made: daemons, slurmstepd, job tasks and whatever they spawned
  pids+=($(ns_members $nslist))
  # daemons from pid files (only if they really are ours)
  for f in "$DIR"/run/*.pid0 "$DIR"/run/*.pid; do [ -f "$f" ] || continue; p=$(cat "$f" 2>/dev/null)
    pid_ok "$p" "$DIR" && pids+=("$p"); done
  # without namespaces (UTS=0): slurmstepd of this cluster hold its log file open; take their process trees
  for p in $(pgrep -x slurmstepd); do holds_file "$p" "$DIR/" && pids+=($p $(descendants $p)); done
  pids=($(printf '%s\n' "${pids[@]}" | grep -vx "$$" | sort -un))
  # slurmctld's SIGTERM shutdown can take >5 s (it waits on RPCs to nodes that are going away); its state
  # is thrown away anyway (the next up starts it with -c), so 2 s grace and then SIGKILL
  kill_wait 2 "${pids[@]}"
  p=$(cat "$DIR/munge/munged.pid" 2>/dev/null); pid_ok "$p" "$DIR" && kill_wait 5 "$p"
  # checked while our namespaces are still held, so that their inode numbers cannot belong to anybody else yet
  local left=($(ns_members $nslist))
  for f in ${NETNS_LIST:-}; do ip netns del "$f" 2>/dev/null; done
  [ -n "${BRIDGE:-}" ] && ip link del "$BRIDGE" 2>/dev/null
  for f in ${VETH_HOST:-}; do ip link del "$f" 2>/dev/null; done
  uts_release
  # the first `ip netns add` on a machine creates /run/netns and bind-mounts it onto itself; undo what we
  # caused once no namespace (ours or anybody's) is left there
  if [ "${RUN_NETNS_MOUNTED_BY_US:-0}" = 1 ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
    umount /run/netns 2>/dev/null; fi
  [ "${RUN_NETNS_CREATED_BY_US:-0}" = 1 ] && rmdir /run/netns 2>/dev/null
  rm -f "$DIR"/run/*.pid "$DIR"/run/*.pid0 "$DIR"/run/*.utsns "$DIR/munge/munge.sock" "$DIR/munge/munged.pid"
  mv -f "$STATE" "$STATE.down"
  [ ${#left[@]} -eq 0 ] || { say "processes still alive: ${left[*]}"; return 1; }
  say "down: $DIR"
}

# ---------- up ----------
write_conf(){ # uses MODE TAG CTL_HOST CTL_ADDR CTL_PORT NODE_LINES
  : >"$DIR/plugstack.conf"
  cat >"$DIR/slurm.conf" <<EOF
# generated by slurm_testbed.sh (mode $MODE)
ClusterName=stb$TAG
SlurmctldHost=$CTL_HOST($CTL_ADDR)
SlurmctldPort=$CTL_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.sock
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.%n.log
PlugStackConfig=$DIR/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=10
MessageTimeout=5
TCPTimeout=2
KillWait=2
MinJobAge=10
InactiveLimit=${STB_INACTIVE_LIMIT:-0}
SchedulerParameters=batch_sched_delay=0
SlurmctldDebug=info
SlurmdDebug=info
$NODE_LINES
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
${STB_EXTRA_CONF:-}
EOF
}

net_setup(){ # netns mode: bridge + one namespace per node + one for slurmctld
  local x i used ns hv nv addr
  [ -d /run/netns ] || echo "RUN_NETNS_CREATED_BY_US=1" >>"$STATE"
  mountpoint -q /run/netns 2>/dev/null || echo "RUN_NETNS_MOUNTED_BY_US=1" >>"$STATE"
  used=$(ip -4 -o addr show | awk '{print $4}'; ip -4 route show | awk '{print $1}')
  for x in $(seq 0 255); do grep -q "^10\.77\.$x\." <<<"$used" || break; done
  [ "$x" -le 254 ] || { say "no free 10.77.X.0/24"; return 1; }
  SUBNET=10.77.$x; BRIDGE=stb$TAG
  echo "SUBNET=$SUBNET" >>"$STATE"
  ip link add "$BRIDGE" type bridge || return 1
  echo "BRIDGE=$BRIDGE" >>"$STATE"
  ip addr add "$SUBNET.1/24" dev "$BRIDGE" && ip link set "$BRIDGE" up || return 1
  NETNS_LIST=; VETH_HOST=
  for i in c $(seq 1 "$N"); do
    ns=stb$TAG-$i; hv=stb${TAG}h$i; nv=stb${TAG}n$i
    [ "$i" = c ] && addr=$SUBNET.2 || addr=$SUBNET.$((10+i))
    ip netns add "$ns" || return 1
    NETNS_LIST+=" $ns"; echo "NETNS_LIST='$NETNS_LIST'" >>"$STATE"
    ip link add "$hv" type veth peer name "$nv" || return 1
    VETH_HOST+=" $hv"; echo "VETH_HOST='$VETH_HOST'" >>"$STATE"
    ip link set "$nv" netns "$ns" && ip link set "$hv" master "$BRIDGE" && ip link set "$hv" up &&
      ip -n "$ns" link set "$nv" name eth0 && ip -n "$ns" addr add "$addr/24" dev eth0 &&
      ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up || return 1
  done
}

try_mode(){ # try_mode MODE : configure and start; non-zero if it fails (caller cleans up)
  MODE=$1
  uts_release
  rm -rf "$DIR/ctld" "$DIR/spool" "$DIR/run" "$DIR/log" "$DIR/munge" "$STATE" "$STATE.down"
  mkdir -p "$DIR/ctld" "$DIR/spool" "$DIR/run" "$DIR/log" "$DIR/munge"
  # munged insists that every directory above its socket is world-searchable
  chmod 755 "$DIR" "$DIR/spool" "$DIR/run" "$DIR/log" "$DIR/munge"; chmod 700 "$DIR/ctld"
  echo "MODE=$MODE; N=$N; TAG=$TAG" >"$STATE"
  UTS=0; mk_uts slurmctld ctl 2>/dev/null && UTS=1
  echo "UTS=$UTS" >>"$STATE"
  local i hn NODE_LINES=
  case $MODE in
    netns)
      [ "$UTS" = 1 ] || { say "netns mode needs unshare --uts"; return 1; }
      net_setup || { say "network namespace setup failed"; return 1; }
      CTL_HOST=ctl; CTL_ADDR=$SUBNET.2; CTL_PORT=6817
      for i in $(seq 1 "$N"); do
        NODE_LINES+="NodeName=node$i NodeHostname=node$i NodeAddr=$SUBNET.$((10+i)) Port=6818 CPUs=${STB_CPUS:-8} State=UNKNOWN"$'\n'
      done ;;
    ports|single)
      [ "$MODE" = single ] && N=1 && sed -i 's/ N=[0-9]*;/ N=1;/' "$STATE"
      CTL_ADDR=127.0.0.1; CTL_PORT=$(free_port)
      if [ "$UTS" = 1 ]; then CTL_HOST=ctl; else CTL_HOST=$(hostname -s); fi
      for i in $(seq 1 "$N"); do
        if [ "$UTS" = 1 ]; then hn=node$i; else hn=$(hostname -s); fi
        NODE_LINES+="NodeName=node$i NodeHostname=$hn NodeAddr=127.0.0.1 Port=$(free_port) CPUs=${STB_CPUS:-8} State=UNKNOWN"$'\n'
      done ;;
    *) say "unknown mode $MODE"; return 1 ;;
  esac
  write_conf

  # munge: own key, socket, pid, log, seed; --force because DIR's parents may not pass munged's checks
  if command -v mungekey >/dev/null; then mungekey --create --keyfile="$DIR/munge/munge.key" >/dev/null 2>&1
  else dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 2>/dev/null; fi
  chmod 600 "$DIR/munge/munge.key"
  ( close_fds; exec timeout 10 munged --force --socket="$DIR/munge/munge.sock" --key-file="$DIR/munge/munge.key" \
      --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" ) \
      </dev/null >>"$DIR/log/munged.out" 2>&1
  wait_for 10 munged sh -c "munge -S '$DIR/munge/munge.sock' -n | unmunge -S '$DIR/munge/munge.sock'" || return 1

  local ctl_ns=; [ "$MODE" = netns ] && ctl_ns=stb$TAG-c
  launch slurmctld "$ctl_ns" slurmctld -D -c -f "$DIR/slurm.conf"
  wait_for "$TMO" slurmctld sh -c "timeout 5 scontrol ping | grep -q 'is UP'" ||
    { tail -n 5 "$DIR/log/slurmctld.log" "$DIR/log/slurmctld.out" >&2 2>/dev/null; return 1; }
  for i in $(seq 1 "$N"); do start_slurmd "$i" || return 1; done
  wait_for "$TMO" "$N idle nodes" sh -c "[ \$(timeout 5 sinfo -h -N -t idle -o %N | sort -u | wc -l) -eq $N ]" ||
    { timeout 5 sinfo -N >&2; for f in "$DIR"/log/slurmd.*.log; do tail -n 3 "$f" >&2; done; return 1; }
}

do_env(){
  . "$STATE"
  echo "export SLURM_CONF=$DIR/slurm.conf"
  echo "# mode=$MODE nodes=node[1-$N] controller=$(awk -F'[()]' '/^SlurmctldHost/{print $2}' "$DIR/slurm.conf"):$(awk -F= '/^SlurmctldPort/{print $2}' "$DIR/slurm.conf") logs=$DIR/log"
}

do_node(){
  local i=${1:-} act=${2:-} p
  load_state
  [[ "$i" =~ ^[0-9]+$ ]] && [ "$i" -ge 1 ] && [ "$i" -le "$N" ] || die "no node $i (1..$N)"
  case $act in
    stop) p=$(cat "$DIR/run/slurmd.node$i.pid0" 2>/dev/null)
      pid_ok "$p" "$DIR" && kill -KILL "$p" ;;
    crash) local pids=($(ns_members $(node_nslist "$i")))
      p=$(cat "$DIR/run/slurmd.node$i.pid0" 2>/dev/null); pid_ok "$p" "$DIR" && pids+=("$p")
      # (what finds them when UTS=0) the node's slurmstepd hold its slurmd log open; take their process trees
      for p in $(pgrep -x slurmstepd); do
        holds_file "$p" "$DIR/log/slurmd.node$i.log" && pids+=($p $(descendants $p)); done
      [ ${#pids[@]} -gt 0 ] && kill -KILL "${pids[@]}" 2>/dev/null; : >"$DIR/run/node$i.crashed" ;;
    start) p=$(cat "$DIR/run/slurmd.node$i.pid0" 2>/dev/null)
      pid_ok "$p" "$DIR" && die "slurmd of node$i is running"
      if [ -f "$DIR/run/node$i.crashed" ]; then
        wait_for $((TMO+30)) "slurmctld to set node$i DOWN" sh -c "timeout 5 sinfo -h -n node$i -o %t | grep -q '^down'" ||
          die "node$i is not DOWN yet"
        rm -f "$DIR/run/node$i.crashed"; fi
      start_slurmd "$i" || die "slurmd did not start"
      wait_for "$TMO" "node$i back in service" sh -c "timeout 5 sinfo -h -n node$i -o %t | grep -qE '^(idle|mix|alloc|comp)\$'" ;;
    netdown|netup) [ "$MODE" = netns ] || die "$act needs netns mode"
      ip link set "stb${TAG}h$i" "$([ "$act" = netdown ] && echo down || echo up)" ;;
    *) die "node action must be stop|crash|start|netdown|netup" ;;
  esac
}

case $cmd in
  up)
    N=${3:-}; [[ "$N" =~ ^[0-9]+$ ]] && [ "$N" -ge 1 ] && [ "$N" -le 200 ] || die "N must be 1..200"
    for b in munged munge slurmctld slurmd scontrol sinfo srun unshare; do command -v $b >/dev/null || die "$b not installed"; done
    if [ -f "$STATE" ]; then p=$(cat "$DIR/run/slurmctld.pid0" 2>/dev/null)
      pid_ok "$p" "$DIR" && die "a cluster is already up in $DIR (run down first)"; do_down >/dev/null 2>&1; fi
    # a 4-hex-digit tag names the bridge/namespaces/veths (interface names must stay under 16 characters)
    t=$(printf %s "$DIR" | cksum | awk '{print $1 % 65536}')
    for ((k=0; k<65536; k++)); do TAG=$(printf %04x $(( (t+k) % 65536 )))
      ip link show "stb$TAG" >/dev/null 2>&1 || [ -e "/run/netns/stb$TAG-c" ] || break; done
    modes=${STB_MODE:-auto}; [ "$modes" = auto ] && modes="netns ports single"
    N0=$N; ok=
    for m in $modes; do N=$N0
      if try_mode "$m"; then ok=1; break; fi
      say "mode $m failed; cleaning up"; do_down >/dev/null 2>&1
    done
    [ -n "$ok" ] || die "could not start a cluster (logs in $DIR/log)"
    say "up: mode=$MODE nodes=$N in ${SECONDS}s"
    do_env ;;
  down) do_down ;;
  env) load_state; do_env ;;
  node) do_node "${3:-}" "${4:-}" ;;
  *) die "unknown command $cmd" ;;
esac
