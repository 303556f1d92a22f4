#!/usr/bin/env bash
# test_provider.sh: the slurm provider on a real Slurm cluster of three nodes on
# this machine (tests/slurm/testbed.sh: munged, slurmctld and three slurmd, each
# node in its own network, UTS and mount namespace; an s3rver on the bridge).
# What a user relies on: a map over every node, each result right; the
# reference pipeline with volumes and an image, only the provider line changed;
# a node crashed mid-map → its calls retried on the others; skyrun SIGKILLed →
# no job, no step, no worker left within the documented bound; the job
# cancelled from outside → an error naming the job; a failing sbatch → Slurm's
# own message. Every case also checks that nothing is left (squeue empty).
# Needs root and Debian's slurmctld slurmd slurm-client munge; exits 77 otherwise.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
TESTBED=$here/testbed.sh
[ "$(id -u)" -eq 0 ] || { echo "skipped: needs root (a Slurm cluster in namespaces)"; exit 77; }
for b in munged slurmctld slurmd sbatch srun squeue scancel; do
  PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH command -v "$b" >/dev/null ||
    { echo "skipped: $b is not installed (scripts/install-deps.sh installs slurmctld slurmd slurm-client munge)"; exit 77; }
done
SRC=${SKYRUN_SOURCE_DIR:?}
[ -x "$SRC/.deps/npm/node_modules/.bin/s3rver" ] || { echo "skipped: no s3rver (scripts/install-deps.sh)"; exit 77; }

BEDROOT=$(mktemp -d "${TMPDIR:-/tmp}/skyrun-slurmprov.XXXXXX")
chmod 755 "$BEDROOT"   # munged wants every folder above its socket searchable
CLUSTER=$BEDROOT/cluster
bed_down() {
  [ -f "$BEDROOT/s3.state" ] && bash "$SRC/tests/support/s3rver.sh" stop "$BEDROOT/s3.state" >/dev/null 2>&1
  "$TESTBED" down "$CLUSTER" >/dev/null 2>&1 || true
  rm -rf "$BEDROOT"
}
trap bed_down EXIT
rc=0
STB_TIMEOUT=60 "$TESTBED" up "$CLUSTER" 3 >"$BEDROOT/env" 2>"$BEDROOT/up.log" || rc=$?
if [ $rc -ne 0 ]; then
  cat "$BEDROOT/up.log" >&2
  echo "FAIL - the Slurm test cluster did not come up" >&2
  exit 1
fi
# shellcheck disable=SC1091
. "$BEDROOT/env"
# shellcheck disable=SC1091
. "$CLUSTER/testbed.state"
# The nodes reach this machine at the bridge's address (netns mode) or on loopback.
addr=127.0.0.1
[ "$MODE" = netns ] && addr=$SUBNET.1
S3RVER_ADDRESS=$addr bash "$SRC/tests/support/s3rver.sh" start "$BEDROOT/s3.state" >/dev/null
# shellcheck disable=SC1091
. "$BEDROOT/s3.state"
export S3_ENDPOINT AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
# shellcheck source=../s3/lib.sh
. "$here/../s3/lib.sh"
trap 'cleanup_lib; bed_down' EXIT
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

provider() {   # the provider line of a test script
  printf 'sky.providers.slurm { nodes = 3, workers_per_node = 2, time = 10%s }' "${1:-}"
}

# Nothing of a pool is left: no job in the queue (the watchdog's bound), no
# worker, keeper or srun of this build, no node folder.
nothing_left() {
  local limit=${1:-30} i
  for ((i = 0; i < limit * 5; i++)); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  [ -z "$(squeue -h)" ] || { squeue -s >&2; fail "a job is still in the queue after ${limit}s"; }
  for ((i = 0; i < 50; i++)); do pgrep -f "$SKYRUN_BUILD_DIR/skyrun-worker" >/dev/null || break; sleep 0.2; done
  if pgrep -af "$SKYRUN_BUILD_DIR/skyrun-worker" >&2; then fail "workers or keepers are left"; fi
  if compgen -G "$TMPDIR/skyrun-*" >/dev/null; then ls -d "$TMPDIR"/skyrun-* >&2; fail "node folders are left"; fi
}

test_map_runs_on_every_node() {
  cat >"$WORK/map.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = $(provider) }
local where = sky.fn(function(i)
  local f = io.open("/proc/sys/kernel/hostname"); local h = f:read("l"); f:close()
  return { i = i * i, host = h, leaked = os.getenv("SLURM_SKYRUN_TEST_LEAK") }
end)
local args = {}
for i = 1, 300 do args[i] = i end
local seen, n = {}, 0
for i, r in ipairs(pool:map(where, args)) do
  assert(r.i == i * i, "wrong result for " .. i)
  assert(r.leaked == nil, "the caller's SLURM_* variables reached a worker")
  if not seen[r.host] then seen[r.host] = true; n = n + 1 end
end
print("nodes used: " .. n)
LUA
  SLURM_JOB_ID=999999 SLURM_SKYRUN_TEST_LEAK=1 expect_exit 0 "$SKYRUN" "$WORK/map.lua"
  expect_in "$WORK/out" "nodes used: 3"
  nothing_left
}

test_the_reference_pipeline_runs_with_only_the_provider_changed() {
  mkdir -p "$WORK/examples"
  cp -r "$SRC/examples/data" "$SRC/examples/lib" "$WORK/examples/"
  sed "s|sky.providers.localhost { nodes = nodes }|sky.providers.slurm { nodes = nodes, time = 10 }|" \
    "$SRC/examples/s3_volumes.lua" >"$WORK/examples/s3_volumes.lua"
  [ "$(diff "$SRC/examples/s3_volumes.lua" "$WORK/examples/s3_volumes.lua" | grep -c '^>')" = 1 ] ||
    fail "not exactly the provider line changed"
  expect_exit 0 "$SKYRUN" "$WORK/examples/s3_volumes.lua" mount 3
  expect_in "$WORK/out" "ok: the model trained on the pool reproduces its accuracy here"
  awss3 s3 ls "s3://models/experiment-001/model.bin" >/dev/null || fail "the model is not in the bucket"
  nothing_left
}

test_a_node_crashed_mid_map_moves_its_calls() {
  cat >"$WORK/lost.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = $(provider), retries = 3, heartbeat = 5 }
local slow = sky.fn(function(i) os.execute("sleep 0.1")
  local f = io.open("/proc/sys/kernel/hostname"); local h = f:read("l"); f:close()
  return { v = i * 3, host = h } end)
local args = {}
for i = 1, 600 do args[i] = i end
io.stdout:write("mapping\\n"); io.stdout:flush()
local hosts = {}
for i, r in ipairs(pool:map(slow, args)) do
  assert(r.v == i * 3, "wrong result for " .. i)
  hosts[r.host] = (hosts[r.host] or 0) + 1
end
print("all results right")
LUA
  "$SKYRUN" "$WORK/lost.lua" >"$WORK/out" 2>"$WORK/err" &
  local pid=$! i rc=0
  for ((i = 0; i < 600; i++)); do grep -q mapping "$WORK/out" 2>/dev/null && break; sleep 0.1; done
  sleep 2
  "$TESTBED" node "$CLUSTER" 2 crash
  for ((i = 0; i < 1800; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; fail "skyrun did not finish within 180 s"; }
  wait "$pid" || rc=$?
  "$TESTBED" node "$CLUSTER" 2 start || fail "node2 did not come back"
  [ $rc -eq 0 ] || { cat "$WORK/err" >&2; fail "skyrun exited $rc"; }
  expect_in "$WORK/out" "all results right"
  # the crashed node's keeper could not clean up its folder (node-local on a real cluster)
  [ "$(compgen -G "$TMPDIR/skyrun-*" | wc -l)" -le 1 ] || fail "more than the crashed node's folder is left"
  rm -rf "$TMPDIR"/skyrun-*
  nothing_left
}

test_skyrun_killed_leaves_no_job_and_no_worker() {
  local try
  for try in 1 2 3; do
    cat >"$WORK/kill.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = $(provider) }
io.stdout:write("up\\n"); io.stdout:flush()
pool:map(sky.fn(function(i) os.execute("sleep 60") return i end), { 1, 2, 3, 4, 5, 6, 7, 8 })
LUA
    "$SKYRUN" "$WORK/kill.lua" >"$WORK/out" 2>"$WORK/err" &
    local pid=$! i
    for ((i = 0; i < 600; i++)); do grep -q up "$WORK/out" 2>/dev/null && break; sleep 0.1; done
    sleep "0.$((RANDOM % 9))"
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    # the documented bound (docs/PROVIDERS.md): steps end at once, the watchdog within 2 polls
    nothing_left 30
  done
}

test_the_job_cancelled_from_outside_is_named() {
  cat >"$WORK/cancel.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = $(provider) }
io.stdout:write("up\\n"); io.stdout:flush()
local args = {}
for i = 1, 2000 do args[i] = i end
pool:map(sky.fn(function(i) os.execute("sleep 0.1") return i end), args)
print("finished")
LUA
  "$SKYRUN" "$WORK/cancel.lua" >"$WORK/out" 2>"$WORK/err" &
  local pid=$! i job rc=0
  for ((i = 0; i < 600; i++)); do grep -q up "$WORK/out" 2>/dev/null && break; sleep 0.1; done
  # this pool's job, by its name (skyrun.HOST.PID): a job of an earlier case
  # may still be listed while it completes
  job=$(squeue -h -n "skyrun.$(hostname | cut -d. -f1).$pid" -o %i)
  [ -n "$job" ] && [ "$(echo "$job" | wc -l)" = 1 ] || { squeue >&2; fail "not one job of this pool in the queue: $job"; }
  sleep 1
  scancel "$job"
  for ((i = 0; i < 1200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid"
    squeue -s >&2 || true
    sed 's/^/    | /' "$WORK/err" >&2
    fail "skyrun did not finish within 120 s of the scancel"
  fi
  wait "$pid" || rc=$?
  [ $rc -ne 0 ] || fail "skyrun succeeded although its job was cancelled"
  expect_not_in "$WORK/out" "finished"
  expect_in "$WORK/err" "slurm job $job"
  expect_in "$WORK/err" "no longer running"
  nothing_left
}

test_a_refused_job_quotes_slurm() {
  cat >"$WORK/refused.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = $(provider ', partition = "nosuchpartition"') }
LUA
  expect_exit 1 "$SKYRUN" "$WORK/refused.lua"
  expect_in "$WORK/err" "sbatch refused the pool's job"
  expect_in "$WORK/err" "Invalid partition name"
  # extra sbatch flags pass through verbatim: one Slurm rejects is quoted too
  sed 's|partition = "nosuchpartition"|sbatch = { "--mem-per-cpu=notanumber" }|' "$WORK/refused.lua" >"$WORK/flag.lua"
  expect_exit 1 "$SKYRUN" "$WORK/flag.lua"
  expect_in "$WORK/err" "sbatch refused the pool's job"
  expect_in "$WORK/err" "mem"
  nothing_left
}

test_a_missing_slurm_command_is_named() {
  cat >"$WORK/nocmd.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = $(provider) }
LUA
  PATH=$WORK/empty expect_exit 1 "$SKYRUN" "$WORK/nocmd.lua"
  expect_in "$WORK/err" "cannot run sbatch: No such file or directory"
  expect_in "$WORK/err" "Slurm's client installed"
}

test_a_named_provider_in_skyrun_yaml() {
  cat >"$WORK/skyrun.yaml" <<'YAML'
providers:
  cluster:
    type: slurm
    nodes: 3
    workers_per_node: 1
    time: "0:10:00"
    sbatch:
      - --comment=from-skyrun-yaml
YAML
  cat >"$WORK/named.lua" <<'LUA'
local sky = require "sky"
local pool <close> = sky.compute { provider = "cluster" }
print(pool:info().nodes .. " nodes")
print(os.execute("squeue -h -o %k | grep -qx from-skyrun-yaml") and "comment passed" or "no comment")
print(pool:map(sky.fn(function(x) return x + 1 end), { 1, 2, 3, 4 })[4])
LUA
  SKYRUN_CONFIG=$WORK/skyrun.yaml expect_exit 0 "$SKYRUN" "$WORK/named.lua"
  expect_in "$WORK/out" "3 nodes"
  expect_in "$WORK/out" "comment passed"
  expect_in "$WORK/out" "5"
  nothing_left
}

test_slurm_gc_cancels_jobs_whose_client_is_gone() {
  local gone=999999 host
  host=$(hostname -s)
  while kill -0 "$gone" 2>/dev/null; do gone=$((gone - 1)); done
  printf '#!/bin/sh\nsleep 120\n' | sbatch -J "skyrun.$host.$gone" -o /dev/null -D / -t 5 >/dev/null
  printf '#!/bin/sh\nsleep 120\n' | sbatch -J "skyrun.$host.$$" -o /dev/null -D / -t 5 >/dev/null
  printf '#!/bin/sh\nsleep 120\n' | sbatch -J "not-skyrun" -o /dev/null -D / -t 5 >/dev/null
  expect_exit 0 "$SKYRUN" slurm gc --dry-run
  expect_in "$WORK/out" "its client (pid $gone) is gone: would cancel"
  [ "$(squeue -h | wc -l)" = 3 ] || fail "--dry-run cancelled a job"
  expect_exit 0 "$SKYRUN" slurm gc
  expect_in "$WORK/out" "1 job(s) of gone clients cancelled, 1 with a running client kept"
  local left
  left=$(squeue -h -t pending,running -o %j | sort | tr '\n' ' ')
  [ "$left" = "not-skyrun skyrun.$host.$$ " ] || fail "left in the queue: $left"
  scancel -n "skyrun.$host.$$"
  scancel -n not-skyrun
  nothing_left
}

test_cpus_per_worker_asks_each_worker_its_cpus() {
  cat >"$WORK/cpus.lua" <<'LUA'
local sky = require "sky"
local pool <close> = sky.compute { provider = sky.providers.slurm { nodes = 2, workers_per_node = 2,
  cpus_per_worker = 3, time = 10 } }
local p = io.popen("squeue -h -o %C"); print("job cpus " .. p:read("l")); p:close()
local steps = {}
for _, r in ipairs(pool:map(sky.fn(function()
  return os.getenv("SLURM_CPUS_PER_TASK") .. " " .. os.getenv("SLURM_STEP_ID") end), { 1, 2, 3, 4, 5, 6, 7, 8 })) do
  local cpus, step = r:match("(%S+) (%S+)")
  assert(cpus == "3", "a worker step has " .. cpus .. " CPUs")
  steps[step] = true
end
local n = 0
for _ in pairs(steps) do n = n + 1 end
print("worker steps " .. n)
LUA
  expect_exit 0 "$SKYRUN" "$WORK/cpus.lua"
  expect_in "$WORK/out" "job cpus 12"
  expect_in "$WORK/out" "worker steps 4"
  nothing_left
}

test_case "cpus_per_worker: the job holds each worker's CPUs, each worker step asks its own" test_cpus_per_worker_asks_each_worker_its_cpus
test_case "skyrun slurm gc cancels the jobs whose client is gone, and only those" test_slurm_gc_cancels_jobs_whose_client_is_gone
test_case "a missing Slurm command is named" test_a_missing_slurm_command_is_named
test_case "a named provider in skyrun.yaml, extra sbatch flags passed verbatim" test_a_named_provider_in_skyrun_yaml
test_case "a map over three nodes, every result right, caller's SLURM_* not leaked" test_map_runs_on_every_node
test_case "the reference pipeline runs with only the provider line changed" test_the_reference_pipeline_runs_with_only_the_provider_changed
test_case "skyrun SIGKILLed: no job, step or worker left within the bound" test_skyrun_killed_leaves_no_job_and_no_worker
test_case "the job cancelled from outside: a clear error naming the job" test_the_job_cancelled_from_outside_is_named
test_case "a job sbatch refuses: Slurm's own message quoted" test_a_refused_job_quotes_slurm
test_case "a node crashed mid-map: its calls go to the others, every result right" test_a_node_crashed_mid_map_moves_its_calls
finish
