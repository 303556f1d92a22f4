#!/usr/bin/env bash
# accelerator= on a pool, with the nodes' GPU facts read from fixture folders
# in the format of /proc/driver/nvidia/gpus/*/information (no GPU is needed):
# a node with the GPUs asked for is used and each worker gets its own
# CUDA_VISIBLE_DEVICES slice, shown by sky.instance_info().accelerators; a
# request no node can serve is refused naming what each node has.
source "$(dirname "$0")/lib.sh"
skyrun=$1
make_tmp
gpus=$SKYRUN_SOURCE_DIR/tests/data/gpus

cat > "$TMP/slices.lua" <<'LUA'
local sky = require "sky"
local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 1, workers = 2 },
                                   accelerator = arg[1] }
local each = sky.fn(function()
  os.execute("sleep 0.3")   -- both calls run at once: one on each worker
  local me = sky.instance_info()
  local names = {}
  for _, a in ipairs(me.accelerators or {}) do names[#names + 1] = a.bus .. "=" .. a.name end
  return me.worker, os.getenv("CUDA_VISIBLE_DEVICES"), os.getenv("CUDA_DEVICE_ORDER"), table.concat(names, ";")
end)
local got = {}
local a, b = pool:submit(each()), pool:submit(each())
for _, f in ipairs({ a, b }) do
  local w, cuda, order, names = f:wait()
  got[w] = cuda .. " " .. order .. " " .. names
end
print("worker0 " .. got[0])
print("worker1 " .. got[1])
LUA

SKYRUN_GPU_INFO_DIR=$gpus/h100x4 "$skyrun" "$TMP/slices.lua" "H100" > "$TMP/out" 2> "$TMP/err" \
  || fail "a pool asking for H100 on a node with 4 failed: $(cat "$TMP/err")"
grep -qx "worker0 0,1 PCI_BUS_ID 0000:17:00.0=NVIDIA H100 80GB HBM3;0000:3b:00.0=NVIDIA H100 80GB HBM3" "$TMP/out" \
  || fail "worker 0's slice: $(cat "$TMP/out")"
grep -qx "worker1 2,3 PCI_BUS_ID 0000:65:00.0=NVIDIA H100 80GB HBM3;0000:ca:00.0=NVIDIA H100 80GB HBM3" "$TMP/out" \
  || fail "worker 1's slice: $(cat "$TMP/out")"

SKYRUN_GPU_INFO_DIR=$gpus/h100x4 "$skyrun" "$TMP/slices.lua" "H100:2" > "$TMP/out" 2> "$TMP/err" \
  || fail "a pool asking for H100:2 failed: $(cat "$TMP/err")"
grep -q "^worker0 0 " "$TMP/out" && grep -q "^worker1 1 " "$TMP/out" \
  || fail "H100:2 over 2 workers is one GPU each: $(cat "$TMP/out")"

set +e
SKYRUN_GPU_INFO_DIR=$gpus/l4 "$skyrun" "$TMP/slices.lua" "H100:8" > "$TMP/out" 2> "$TMP/err"
status=$?
set -e
[ "$status" -eq 1 ] || fail "a request no node serves exited with $status"
grep -q "no node has the accelerator 'H100:8': node 0 has NVIDIA L4" "$TMP/err" \
  || fail "the error does not name what the node has: $(cat "$TMP/err")"

set +e
SKYRUN_GPU_INFO_DIR=$TMP/none "$skyrun" -e 'local sky = require "sky"
  local p <close> = sky.compute { accelerator = sky.accelerators.L4(1) }' > "$TMP/out" 2> "$TMP/err"
status=$?
set -e
[ "$status" -eq 1 ] && grep -q "node 0 has no GPU" "$TMP/err" || fail "no GPU at all: $(cat "$TMP/err")"
echo "ok - accelerators: nodes matched, workers sliced, mismatches named"
