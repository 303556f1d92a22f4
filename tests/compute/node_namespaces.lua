-- Each localhost node has its own working directory and, when the host may
-- create mount namespaces (root), its own mount namespace.
package.path = os.getenv("SKYRUN_SOURCE_DIR") .. "/tests/lua/?.lua;" .. package.path
local t = require "testlib"
local sky = require "sky"

local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 2, workers = 2 } }

local where = sky.fn(function()
  local p = io.popen("pwd; readlink /proc/self/ns/mnt")
  local dir, ns = p:read("l"), p:read("l")
  p:close()
  return { dir = dir, ns = ns, node = sky.instance_info().node }
end)

local function host_ns()
  local p = io.popen("readlink /proc/self/ns/mnt")
  local ns = p:read("l")
  p:close()
  return ns
end

local function is_root()
  local p = io.popen("id -u")
  local uid = p:read("l")
  p:close()
  return uid == "0"
end

t.test("each node has its own working directory", function()
  local r = pool:broadcast(where())
  t.truthy(r[1].dir ~= r[2].dir, "node directories differ")
  t.contains(r[1].dir, "node-0")
  t.contains(r[2].dir, "node-1")
end)

t.test("workers of one node share its directory and namespace", function()
  local seen = {}
  for _, v in ipairs(pool:map(where, { 1, 2, 3, 4, 5, 6, 7, 8 })) do
    seen[v.node] = seen[v.node] or v
    t.eq(v.dir, seen[v.node].dir)
    t.eq(v.ns, seen[v.node].ns)
  end
end)

t.test("as root, each node has a private mount namespace", function()
  if not is_root() then
    print("skipped: not root, nodes share the host's mount namespace")
    return
  end
  local r = pool:broadcast(where())
  t.truthy(r[1].ns ~= r[2].ns, "nodes have different mount namespaces")
  t.truthy(r[1].ns ~= host_ns(), "node 0 is not in the host's namespace")
end)

t.run()
