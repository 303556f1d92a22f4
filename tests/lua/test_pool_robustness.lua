-- The pool under misuse and failure: what a long-running pipeline relies on
-- when things go wrong (regressions found in review).
package.path = os.getenv("SKYRUN_SOURCE_DIR") .. "/tests/lua/?.lua;" .. package.path
local t = require "testlib"
local sky = require "sky"

local square = sky.fn(function(x) return x * x end)
local function tmpdir(tag)
  local d = os.getenv("SKYRUN_BUILD_DIR") .. "/tmp-" .. tag .. "-" .. math.random(1e9)
  os.execute("mkdir -p " .. d)
  return d
end

t.test("a map that fails early over many elements leaves the pool usable", function()
  local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 1, workers = 1 } }
  local boom = sky.fn(function(x) if x == 1 then error("first element fails") end return x end)
  local xs = {}
  for i = 1, 100000 do xs[i] = i end
  t.raises(function() return pool:map(boom, xs) end, "first element fails")
  t.eq(square(3) >> pool, 9)
end)

t.test("a pool closed by a finalizer around a wait fails cleanly, never crashes", function()
  -- Finalizers that close the pool may run before or during the wait (the
  -- sanitizer build checks that nothing freed is touched either way).
  local pool = sky.compute { provider = sky.providers.localhost { nodes = 1 } }
  local big = sky.fn(function() local r = {} for i = 1, 20000 do r[i] = { i } end return r end)
  local f = pool:submit(big())
  for _ = 1, 200 do setmetatable({}, { __gc = function() pool:close() end }) end
  local ok, r = pcall(f.wait, f)
  if ok then t.eq(#r, 20000) else t.contains(tostring(r), "the pool is closed") end
  collectgarbage()
  t.raises(function() return square(2) >> pool end, "the pool is closed")
end)

t.test("calls queued behind a timed-out call are not charged for it", function()
  local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 1, workers = 1 }, retries = 0 }
  for i = 1, 50 do t.eq(square(i) >> pool, i * i) end   -- short calls: pipelining is on
  -- blocked in C (os.execute), the worker's own hook cannot stop it: the host kills it
  local stuck = pool:submit(sky.fn(function() os.execute("sleep 5") end)():timeout(0.3))
  local quick = {}
  for i = 1, 10 do quick[i] = pool:submit(square(i)) end
  t.raises(function() return stuck:wait() end, "timed out")
  for i = 1, 10 do t.eq(quick[i]:wait(), i * i) end
end)

t.test("a worker that crashes now and then is restarted as long as it completes calls", function()
  local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 1, workers = 1 }, retries = 1 }
  local dir = tmpdir("respawn")
  local flaky = sky.fn(function(d, i)
    local marker = d .. "/" .. i
    local f = io.open(marker)
    if not f then
      io.open(marker, "w"):close()
      os.exit(3)          -- the first attempt of every call crashes its worker
    end
    f:close()
    return i
  end)
  for i = 1, 20 do t.eq(flaky(dir, i) >> pool, i) end
  os.execute("rm -rf " .. dir)
  t.eq(pool:stats().workers_lost, 20)
end)

t.test("a negative timeout is refused at once", function()
  t.raises(function() return sky.compute { timeout = -1 } end, "timeout must be")
  local pool <close> = sky.compute {}
  t.raises(function() return square(2):timeout(-1) >> pool end, "positive")
end)

t.test("a group with an unsendable call queues none of its calls and names the call", function()
  local pool <close> = sky.compute {}
  local before = pool:stats().calls_sent
  t.raises(function() return (square(1) & square(2) & square(coroutine.create(print))) >> pool end,
    "call 3", "cannot be sent")
  t.eq(square(4) >> pool, 16)
  t.eq(pool:stats().calls_sent, before + 1)
end)

t.test("arguments or results over the frame limit are a clear error, and the pool works on", function()
  local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 1, workers = 1 } }
  local len = sky.fn(function(s) return #s end)
  local huge = string.rep("x", 257 * 1048576)
  t.raises(function() return len(huge) >> pool end, "too large to send", "257.0 MiB", "256 MiB")
  t.raises(function() return pool:map(len, { "small", huge }) end, "map element 2", "too large to send")
  huge = nil
  collectgarbage()
  local make = sky.fn(function(mb) return string.rep("y", mb * 1048576) end)
  t.raises(function() return make(257) >> pool end, "results are too large to send back", "256 MiB")
  t.eq(len("still works") >> pool, 11)
  t.eq(pool:stats().calls_held, 0)
end)

t.test("host files do not leak into workers", function()
  local path = os.getenv("SKYRUN_BUILD_DIR") .. "/tmp-leak-" .. math.random(1e9)
  local held = io.open(path, "w")
  local pool <close> = sky.compute {}
  local fds = sky.fn(function()
    local p = io.popen("ls -l /proc/" .. sky.instance_info().pid .. "/fd")
    local s = p:read("a")
    p:close()
    return s
  end)
  local listing = fds() >> pool
  held:close()
  os.remove(path)
  t.truthy(not listing:find(path, 1, true), "the worker holds the host's open file")
end)

t.run()
