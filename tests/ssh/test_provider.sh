#!/usr/bin/env bash
# test_provider.sh: the ssh provider on a bed of three hosts (tests/ssh/testbed.sh:
# each a network, mount and UTS namespace with its own sshd; an s3rver on the
# bridge). What a user relies on: the same scripts as on localhost with only the
# provider line changed — the reference pipeline with volumes and an image —;
# host keys checked (unknown refused with its SHA256 fingerprint unless
# accept-new records it; a changed key always refused); the worker copied only
# when that build is missing from a host's cache; an unreachable host named;
# a host lost mid-map → its calls retried on the others, every result right;
# skyrun SIGKILLed mid-call → nothing left on any host within the bound.
# Needs root (netns); exits 77 otherwise.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
TESTBED=$here/testbed.sh
[ "$(id -u)" -eq 0 ] || { echo "skipped: needs root (network namespaces)"; exit 77; }

BEDROOT=$(mktemp -d "${TMPDIR:-/tmp}/skyrun-sshprov.XXXXXX")
BED=$BEDROOT/bed
bed_down() { "$TESTBED" down "$BED" >/dev/null 2>&1 || true; rm -rf "$BEDROOT"; }
rc=0
BED_WATCH_PID=$$ "$TESTBED" up "$BED" 3 >"$BEDROOT/up.log" 2>&1 || rc=$?
if [ $rc -ne 0 ]; then
  cat "$BEDROOT/up.log" >&2
  bed_down
  [ $rc -eq 77 ] && { echo "skipped: the test bed cannot run here"; exit 77; }
  echo "FAIL - the test bed did not come up" >&2
  exit 1
fi
# shellcheck disable=SC1091
. "$BED/env"
export S3_ENDPOINT=$BED_S3_ENDPOINT AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
# shellcheck source=../s3/lib.sh
. "$here/../s3/lib.sh"
trap 'cleanup_lib; bed_down' EXIT
read -r -a HOSTS <<<"$BED_HOSTS"
SRC=${SKYRUN_SOURCE_DIR:?}

# The provider line of a test script, for the bed's hosts.
provider() {
  local kh=${1:-$BED_KNOWN_HOSTS} extra=${2:-}
  printf 'sky.providers.ssh { hosts = { "%s", "%s", "%s" }, user = "root", identity = "%s", known_hosts = "%s", connect_timeout = 5%s }' \
    "${HOSTS[0]}" "${HOSTS[1]}" "${HOSTS[2]}" "$BED_KEY" "$kh" "$extra"
}

host_exec() { "$TESTBED" host "$BED" "$1" exec "${@:2}"; }

# Nothing of a pool is left on any host: no process, mount or node folder.
# (The per-user cache of worker binaries, ~/.cache/skyrun, stays by design.)
nothing_left() {
  "$TESTBED" leftovers "$BED" "${1:-15}" >"$WORK/left" 2>&1 || true
  if grep -v -e '/root/.cache/skyrun$' -e '^leftovers:' "$WORK/left" | grep -q .; then
    cat "$WORK/left" >&2
    fail "left on the hosts"
  fi
}

test_map_runs_on_every_host() {
  cat >"$WORK/map.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = $(provider), workers = 2 }
local where = sky.fn(function(i)
  local f = io.open("/proc/sys/kernel/hostname"); local h = f:read("l"); f:close()
  return { i = i * i, host = h, node = sky.instance_info().node }
end)
local args = {}
for i = 1, 300 do args[i] = i end
local seen, n = {}, 0
for i, r in ipairs(pool:map(where, args)) do
  assert(r.i == i * i, "wrong result for " .. i)
  if not seen[r.host] then seen[r.host] = true; n = n + 1 end
end
print("hosts used: " .. n)
LUA
  expect_exit 0 "$SKYRUN" "$WORK/map.lua"
  expect_in "$WORK/out" "hosts used: 3"
  nothing_left
}

test_the_worker_is_copied_once_per_host() {
  local i
  for i in 1 2 3; do host_exec "$i" sh -c 'rm -rf /root/.cache/skyrun'; done
  cat >"$WORK/one.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = $(provider) }
print(sky.fn(function() return "ran" end)() >> pool)
LUA
  SKYRUN_LOG=debug expect_exit 0 "$SKYRUN" "$WORK/one.lua"
  [ "$(grep -c '(copied)' "$WORK/err")" = 3 ] || { cat "$WORK/err" >&2; fail "the worker was not copied to each of 3 hosts"; }
  host_exec 2 sh -c 'ls /root/.cache/skyrun' >"$WORK/cache"
  [ "$(grep -c '^skyrun-worker-' "$WORK/cache")" = 1 ] || fail "the cache holds: $(cat "$WORK/cache")"
  grep -q '^\.incoming' "$WORK/cache" && fail "a partial copy is left in the cache"
  SKYRUN_LOG=debug expect_exit 0 "$SKYRUN" "$WORK/one.lua"
  expect_not_in "$WORK/err" "(copied)"
  [ "$(grep -c '(have)' "$WORK/err")" = 0 ] || true
  expect_in "$WORK/out" "ran"
}

test_an_unknown_host_is_refused_with_its_fingerprint() {
  local fp
  fp=$(ssh-keygen -l -E sha256 -f "$BED_DIR/h1/ssh_host_ed25519_key.pub" | awk '{print $2}')
  : >"$WORK/known_hosts"
  cat >"$WORK/strict.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = $(provider "$WORK/known_hosts") }
print("the pool started")
LUA
  expect_exit 1 "$SKYRUN" "$WORK/strict.lua"
  expect_in "$WORK/err" "${HOSTS[0]}"
  expect_in "$WORK/err" "not a known host"
  expect_in "$WORK/err" "$fp"
  expect_in "$WORK/err" "accept-new"
  nothing_left
  # accept-new records the three hosts, OpenSSH's way, and connects
  sed "s|connect_timeout = 5|connect_timeout = 5, host_key_policy = \"accept-new\"|" "$WORK/strict.lua" >"$WORK/new.lua"
  expect_exit 0 "$SKYRUN" "$WORK/new.lua"
  expect_in "$WORK/out" "the pool started"
  [ "$(wc -l <"$WORK/known_hosts")" = 3 ] || fail "known_hosts holds: $(cat "$WORK/known_hosts")"
  ssh -i "$BED_KEY" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes \
    -o UserKnownHostsFile="$WORK/known_hosts" "root@${HOSTS[0]}" true || fail "OpenSSH does not accept the recorded key"
  # and the strict policy now accepts them
  expect_exit 0 "$SKYRUN" "$WORK/strict.lua"
}

test_a_changed_host_key_is_always_refused() {
  cp "$BED_KNOWN_HOSTS" "$WORK/kh_changed"
  "$TESTBED" host "$BED" 3 rekey >/dev/null
  cat >"$WORK/changed.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = $(provider "$WORK/kh_changed" ', host_key_policy = "accept-new"') }
print("the pool started")
LUA
  expect_exit 1 "$SKYRUN" "$WORK/changed.lua"
  expect_in "$WORK/err" "${HOSTS[2]}"
  expect_in "$WORK/err" "CHANGED"
  expect_in "$WORK/err" "$(ssh-keygen -l -E sha256 -f "$BED_DIR/h3/ssh_host_ed25519_key.pub" | awk '{print $2}')"
  expect_not_in "$WORK/out" "the pool started"
  cmp -s "$BED_KNOWN_HOSTS" "$WORK/kh_changed" || fail "known_hosts was changed"
  nothing_left
  # the bed's own known_hosts follows the new key for the other cases
  local line; line="${HOSTS[2]} $(cut -d' ' -f1,2 "$BED_DIR/h3/ssh_host_ed25519_key.pub")"
  grep -v "^${HOSTS[2]} " "$BED_KNOWN_HOSTS" >"$WORK/kh" || true
  echo "$line" >>"$WORK/kh"
  cat "$WORK/kh" >"$BED_KNOWN_HOSTS"
}

test_an_unreachable_host_is_named() {
  "$TESTBED" host "$BED" 2 netdown >/dev/null
  cat >"$WORK/down.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = $(provider) }
print("the pool started")
LUA
  local rc=0
  expect_exit 1 "$SKYRUN" "$WORK/down.lua" || rc=$?
  "$TESTBED" host "$BED" 2 netup >/dev/null
  [ $rc -eq 0 ] || return 1
  expect_in "$WORK/err" "node 1"
  expect_in "$WORK/err" "host ${HOSTS[1]}"
  expect_in "$WORK/err" "unreachable"
  nothing_left
}

test_a_host_lost_mid_map_moves_its_calls() {
  cat >"$WORK/lost.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = $(provider), workers = 2, retries = 3 }
local slow = sky.fn(function(i) local t = os.time() + 0; local x = 0
  for _ = 1, 200000 do x = x + 1 end
  local f = io.open("/proc/sys/kernel/hostname"); local h = f:read("l"); f:close()
  return { v = i * 3, host = h } end)
local args = {}
for i = 1, 3000 do args[i] = i end
io.stdout:write("mapping\\n"); io.stdout:flush()
local hosts = {}
for i, r in ipairs(pool:map(slow, args)) do
  assert(r.v == i * 3, "wrong result for " .. i)
  hosts[r.host] = (hosts[r.host] or 0) + 1
end
print("all results right")
LUA
  "$SKYRUN" "$WORK/lost.lua" >"$WORK/out" 2>"$WORK/err" &
  local pid=$! i
  for ((i = 0; i < 300; i++)); do grep -q mapping "$WORK/out" 2>/dev/null && break; sleep 0.1; done
  sleep "0.$((RANDOM % 9 + 1))"
  "$TESTBED" host "$BED" 2 kill-all >/dev/null
  local rc=0
  for ((i = 0; i < 1200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; fail "skyrun did not finish within 120 s"; }
  wait "$pid" || rc=$?
  "$TESTBED" host "$BED" 2 start-sshd >/dev/null
  [ $rc -eq 0 ] || { cat "$WORK/err" >&2; fail "skyrun exited $rc"; }
  expect_in "$WORK/out" "all results right"
  nothing_left
}

test_a_host_cut_off_mid_map_is_detected_and_its_calls_move() {
  # The network goes, the host stays up: no FIN, no RST — only silence. The
  # connection's keepalives and TCP's user timeout (15 s) find it.
  cat >"$WORK/cut.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = $(provider), workers = 2, retries = 3 }
local f = sky.fn(function(i) local x = 0; for _ = 1, 1000000 do x = x + 1 end; return i * 7 end)
local args = {}
for i = 1, 3000 do args[i] = i end
io.stdout:write("mapping\n"); io.stdout:flush()
for i, r in ipairs(pool:map(f, args)) do assert(r == i * 7, "wrong result for " .. i) end
print("all results right; lost workers: " .. pool:stats().workers_lost)
LUA
  "$SKYRUN" "$WORK/cut.lua" >"$WORK/out" 2>"$WORK/err" &
  local pid=$! i rc=0
  for ((i = 0; i < 300; i++)); do grep -q mapping "$WORK/out" 2>/dev/null && break; sleep 0.1; done
  sleep "0.$((RANDOM % 9 + 1))"
  "$TESTBED" host "$BED" 1 netdown >/dev/null
  for ((i = 0; i < 1200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; "$TESTBED" host "$BED" 1 netup >/dev/null; fail "skyrun did not finish within 120 s"; }
  wait "$pid" || rc=$?
  "$TESTBED" host "$BED" 1 netup >/dev/null
  [ $rc -eq 0 ] || { cat "$WORK/err" >&2; fail "skyrun exited $rc"; }
  expect_in "$WORK/out" "all results right"
  expect_not_in "$WORK/out" "lost workers: 0"
  # host 1 learns of it when its workers have heard nothing for a heartbeat
  # (30 s) and exit: sshd's next packet meets a closed socket, the session
  # ends, its keeper cleans up.
  nothing_left 60
}

test_skyrun_killed_mid_call_leaves_nothing() {
  local try
  for try in 1 2 3; do
    cat >"$WORK/kill.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = $(provider), workers = 2 }
io.stdout:write("up\\n"); io.stdout:flush()
-- busy in Lua, or waiting on a child process (which must go too)
pool:map(sky.fn(function(i)
  if i % 2 == 0 then os.execute("sleep 60") return i end
  local t = os.time(); while os.time() - t < 60 do end; return i
end), { 1, 2, 3, 4, 5, 6, 7, 8 })
LUA
    "$SKYRUN" "$WORK/kill.lua" >"$WORK/out" 2>"$WORK/err" &
    local pid=$! i
    for ((i = 0; i < 300; i++)); do grep -q up "$WORK/out" 2>/dev/null && break; sleep 0.1; done
    grep -q up "$WORK/out" || { cat "$WORK/err" >&2; kill -9 "$pid" 2>/dev/null; fail "the pool did not start"; }
    sleep "0.$((RANDOM % 9))"
    kill -9 "$pid" || fail "skyrun ended before it was killed: $(cat "$WORK/err")"
    wait "$pid" 2>/dev/null || true
    nothing_left
  done
}

test_the_reference_pipeline_runs_with_only_the_provider_changed() {
  local script=$WORK/s3_volumes_ssh.lua
  mkdir -p "$WORK/examples"
  cp -r "$SRC/examples/data" "$SRC/examples/lib" "$WORK/examples/"
  sed "s|sky.providers.localhost { nodes = nodes }|$(provider)|" "$SRC/examples/s3_volumes.lua" >"$WORK/examples/s3_volumes.lua"
  cmp -s "$SRC/examples/s3_volumes.lua" "$WORK/examples/s3_volumes.lua" && fail "the provider line was not found"
  [ "$(diff "$SRC/examples/s3_volumes.lua" "$WORK/examples/s3_volumes.lua" | grep -c '^>')" = 1 ] ||
    fail "more than the provider line changed"
  expect_exit 0 "$SKYRUN" "$WORK/examples/s3_volumes.lua" mount
  expect_in "$WORK/out" "ok: the model trained on the pool reproduces its accuracy here"
  awss3 s3 ls "s3://models/experiment-001/model.bin" >/dev/null || fail "the model is not in the bucket"
  nothing_left
}

test_volumes_on_hosts_read_write_and_refuse_read_only() {
  local b
  b=$(fresh_bucket sshvol)
  printf 'hello' | awss3 s3 cp - "s3://$b/in/x.txt" >/dev/null
  cat >"$WORK/vol.lua" <<LUA
local sky = require "sky"
local st = sky.storage.s3 { endpoint = "$S3_ENDPOINT", region = "us-east-1", path_style = true }
local pool <close> = sky.compute {
  provider = $(provider),
  image = sky.image { env = { GREETING = "hi" }, setup = { "echo set-up > setup-mark" } },
  volumes = {
    sky.volume { bucket = "$b", prefix = "in/", mount = "/data", read_only = true, storage = st },
    sky.volume { bucket = "$b", prefix = "out/", mount = "/output", read_only = false, storage = st },
  },
}
local r = pool:broadcast(sky.fn(function()
  local n = sky.instance_info().node
  local m = assert(io.open("setup-mark")); local mark = m:read("l"); m:close()
  local f = assert(io.open("/data/x.txt")); local s = f:read("a"); f:close()
  local g = assert(io.open("/output/n" .. n .. ".txt", "w")); g:write(s .. "+" .. n); g:close()
  local ok, err = io.open("/data/new.txt", "w")
  return { read = s, ro = tostring(err), env = os.getenv("GREETING"), mark = mark }
end)())
for _, x in ipairs(r) do
  assert(x.read == "hello", x.read)
  assert(x.ro:find("Read%-only file system"), x.ro)
  assert(x.env == "hi")
  assert(x.mark == "set-up")
end
print("nodes: " .. #r)
LUA
  expect_exit 0 "$SKYRUN" "$WORK/vol.lua"
  expect_in "$WORK/out" "nodes: 3"
  local n
  for n in 0 1 2; do
    [ "$(awss3 s3 cp "s3://$b/out/n$n.txt" -)" = "hello+$n" ] || fail "node $n's write is not in the bucket"
  done
  nothing_left
}

test_image_apt_installs_what_is_missing_on_hosts() {
  # (the bed's hosts share this machine's files: nothing may really be
  # installed, so a package that exists nowhere shows the install path
  # running on the host and its failure quoted; one that is present passes.)
  cat >"$WORK/apt.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = $(provider), image = sky.image { apt = { "lua5.4", "skyrun-no-such-package" } } }
print("the pool started")
LUA
  expect_exit 1 "$SKYRUN" "$WORK/apt.lua"
  expect_in "$WORK/err" "image.apt (apt-get install on"
  expect_in "$WORK/err" "Unable to locate package skyrun-no-such-package"
  expect_not_in "$WORK/err" "lua5.4"
  nothing_left
  sed -i 's/, "skyrun-no-such-package"//' "$WORK/apt.lua"
  expect_exit 0 "$SKYRUN" "$WORK/apt.lua"
  expect_in "$WORK/out" "the pool started"
}

test_a_named_inventory_and_ssh_config_aliases() {
  mkdir -p "$HOME/.ssh"
  cat >"$HOME/.ssh/config" <<CONF
# aliases as a user writes them; HostName, User and IdentityFile are followed
Host bed-*
    User root
    IdentityFile $BED_KEY
Host bed-one
    HostName ${HOSTS[0]}
Host bed-two
    HostName ${HOSTS[1]}
Host bed-three
    HostName ${HOSTS[2]}
CONF
  cat >"$WORK/skyrun.yaml" <<YAML
providers:
  bed:
    type: ssh
    hosts: [ bed-one, bed-two, bed-three ]
    known_hosts: $BED_KNOWN_HOSTS
    workers: 2
YAML
  cat >"$WORK/named.lua" <<'LUA'
local sky = require "sky"
local pool <close> = sky.compute { provider = "bed" }
print(pool:info().nodes .. " nodes")
print(pool:map(sky.fn(function(x) return x + 1 end), { 1, 2, 3, 4 })[4])
LUA
  SKYRUN_CONFIG=$WORK/skyrun.yaml expect_exit 0 "$SKYRUN" "$WORK/named.lua"
  expect_in "$WORK/out" "3 nodes"
  expect_in "$WORK/out" "5"
  # a provider that is not in the file is named with the file
  sed -i 's/provider = "bed"/provider = "nope"/' "$WORK/named.lua"
  SKYRUN_CONFIG=$WORK/skyrun.yaml expect_exit 1 "$SKYRUN" "$WORK/named.lua"
  expect_in "$WORK/err" "has no provider 'nope'"
  rm -f "$HOME/.ssh/config"
  nothing_left
}

test_accelerators_pick_the_host_that_has_them() {
  # Host 2 "has" four H100s: the fixture (the format of the NVIDIA driver's
  # /proc/driver/nvidia/gpus/*/information) is mounted there, in that host's
  # own mount namespace, where the worker reads its GPUs from.
  # (through the bed's folder: a host does not see this machine's /tmp)
  rm -rf "$BED_DIR/gpus" && cp -r "$SRC/tests/data/gpus/h100x4" "$BED_DIR/gpus"
  host_exec 2 sh -c "mount -t tmpfs skyrun-gpus /proc/driver && mkdir /proc/driver/nvidia &&
    cp -r '$BED_DIR/gpus' /proc/driver/nvidia/gpus" || { host_exec 2 umount /proc/driver; fail "cannot give host 2 its GPUs"; }
  cat >"$WORK/gpu.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = $(provider), workers = 2, accelerator = arg[1] }
local r = pool:broadcast(sky.fn(function()
  local f = io.open("/proc/sys/kernel/hostname"); local h = f:read("l"); f:close()
  local me = sky.instance_info()
  return h .. " " .. #(me.accelerators or {}) .. " " .. tostring(os.getenv("CUDA_VISIBLE_DEVICES"))
end)())
print(#r .. " node(s): " .. table.concat(r, "; "))
LUA
  local rc=0
  expect_exit 0 "$SKYRUN" "$WORK/gpu.lua" "H100:4" || rc=$?
  if [ $rc -eq 0 ]; then
    expect_in "$WORK/out" "1 node(s): $(echo "$BED_HOSTNAMES" | cut -d' ' -f2) 2 0,1" || rc=1
    expect_exit 1 "$SKYRUN" "$WORK/gpu.lua" "A100" || rc=1
    expect_in "$WORK/err" "no node has the accelerator 'A100'" || rc=1
    expect_in "$WORK/err" "node 1 has 4 x NVIDIA H100" || rc=1
  fi
  host_exec 2 umount /proc/driver
  [ $rc -eq 0 ] || return 1
  nothing_left
}

test_an_encrypted_key_works_through_the_agent() {
  ssh-keygen -q -t ed25519 -N "s3cret-pass" -C skyrun-test -f "$WORK/id_locked"
  cat "$WORK/id_locked.pub" >>"$BED_DIR/id_ed25519.pub"   # the bed's AuthorizedKeysFile
  cat >"$WORK/agent.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = sky.providers.ssh { hosts = { "${HOSTS[0]}" }, user = "root",
  identity = "$WORK/id_locked", known_hosts = "$BED_KNOWN_HOSTS", connect_timeout = 5 } }
print(sky.fn(function() return "in" end)() >> pool)
LUA
  # no agent: the key cannot be used, and the error says what to do
  env -u SSH_AUTH_SOCK "$SKYRUN" "$WORK/agent.lua" >"$WORK/out" 2>"$WORK/err" && fail "an encrypted key was used without its passphrase"
  expect_in "$WORK/err" "$WORK/id_locked (encrypted: add it to ssh-agent with ssh-add"
  expect_not_in "$WORK/err" "s3cret-pass"
  # with the key in an agent it works, and the passphrase is nowhere
  local agent_pid rc=0
  eval "$(ssh-agent -s)" >/dev/null
  agent_pid=$SSH_AGENT_PID
  printf '#!/bin/sh\necho s3cret-pass\n' >"$WORK/askpass"; chmod 700 "$WORK/askpass"
  SSH_ASKPASS=$WORK/askpass SSH_ASKPASS_REQUIRE=force DISPLAY=none ssh-add "$WORK/id_locked" </dev/null >/dev/null 2>&1 || rc=1
  [ $rc -eq 0 ] && { expect_exit 0 "$SKYRUN" "$WORK/agent.lua" || rc=1; }
  kill "$agent_pid" 2>/dev/null || true
  unset SSH_AUTH_SOCK SSH_AGENT_PID
  [ $rc -eq 0 ] || fail "the pool did not start with the key in ssh-agent"
  expect_in "$WORK/out" "in"
  nothing_left
}

test_case "an encrypted key works through ssh-agent; without it the error says so" test_an_encrypted_key_works_through_the_agent
test_a_host_of_another_kind_is_refused_by_name() {
  # Host 3 says it is an aarch64 machine (uname, in that host's namespace).
  printf '#!/bin/sh\n[ "$1" = -sm ] && { echo "Linux aarch64"; exit 0; }\necho Linux\n' >"$BED_DIR/fake-uname"
  chmod 755 "$BED_DIR/fake-uname"
  host_exec 3 sh -c "mount --bind '$BED_DIR/fake-uname' \$(command -v uname)"
  cat >"$WORK/arch.lua" <<LUA
local sky = require "sky"
local pool <close> = sky.compute { provider = $(provider) }
print("the pool started")
LUA
  local rc=0
  expect_exit 1 "$SKYRUN" "$WORK/arch.lua" || rc=1
  host_exec 3 sh -c 'umount "$(command -v uname)"'
  [ $rc -eq 0 ] || return 1
  expect_in "$WORK/err" "node 2 (${HOSTS[2]}) runs Linux aarch64; this skyrun's worker is built for Linux $(uname -m)"
  nothing_left
}

test_case "a host of another processor is refused, naming both" test_a_host_of_another_kind_is_refused_by_name
test_case "accelerator= picks the host that has the GPUs, each worker its slice" test_accelerators_pick_the_host_that_has_them
test_case "a named inventory in skyrun.yaml, hosts as ~/.ssh/config aliases" test_a_named_inventory_and_ssh_config_aliases
test_case "a map runs on every host, each result right" test_map_runs_on_every_host
test_case "the worker is copied to a host once, then found in its cache" test_the_worker_is_copied_once_per_host
test_case "an unknown host is refused with its SHA256 fingerprint; accept-new records it" test_an_unknown_host_is_refused_with_its_fingerprint
test_case "a host lost mid-map: its calls go to the others, every result right" test_a_host_lost_mid_map_moves_its_calls
test_case "a host cut off mid-map (network down) is found out, its calls move" test_a_host_cut_off_mid_map_is_detected_and_its_calls_move
test_case "skyrun SIGKILLed mid-call leaves nothing on any host" test_skyrun_killed_mid_call_leaves_nothing
test_case "volumes and an image on hosts: read, write, read-only refused, nothing left" test_volumes_on_hosts_read_write_and_refuse_read_only
test_case "the reference pipeline runs with only the provider line changed" test_the_reference_pipeline_runs_with_only_the_provider_changed
test_case "image.apt installs what a host lacks (apt-get's own error quoted)" test_image_apt_installs_what_is_missing_on_hosts
test_case "an unreachable host is named with the reason" test_an_unreachable_host_is_named
test_case "a changed host key is refused, even with accept-new" test_a_changed_host_key_is_always_refused
finish
