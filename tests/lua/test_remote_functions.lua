-- Remote functions on a real localhost pool: calls, groups, map, broadcast,
-- futures, streams, timeouts, errors, serialization of closures.
package.path = os.getenv("SKYRUN_SOURCE_DIR") .. "/tests/lua/?.lua;" .. package.path
local t = require "testlib"
local sky = require "sky"

local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 2, workers = 2 } }

local square = sky.fn(function(x) return x * x end)

t.test("a call runs on a worker and returns its result", function()
  t.eq(square(7) >> pool, 49)
end)

t.test("pool:run returns every result; >> the first", function()
  local f = sky.fn(function(a, b) return a + b, a * b, "three", nil, 5 end)
  t.eq(f(3, 4) >> pool, 7)
  t.eq(select("#", f(3, 4) >> pool), 1)
  local r = table.pack(pool:run(f(3, 4)))
  t.eq(r.n, 5)
  t.eq(r[1], 7); t.eq(r[2], 12); t.eq(r[3], "three"); t.eq(r[4], nil); t.eq(r[5], 5)
end)

t.test("calls grouped with & run in parallel and return in order", function()
  t.same((square(2) & square(3) & square(4)) >> pool, { 4, 9, 16 })
  local a, b, c = pool:run(square(2) & square(3) & square(4))
  t.eq(a, 4); t.eq(b, 9); t.eq(c, 16)
end)

t.test("map returns results in the order of its input", function()
  local xs = {}
  for i = 1, 200 do xs[i] = i end
  local r = pool:map(square, xs)
  t.eq(#r, 200)
  for i = 1, 200 do t.eq(r[i], i * i) end
end)

t.test("map refuses an unsendable element, naming it, and queues nothing", function()
  local before = pool:stats().calls_sent
  t.raises(function() return pool:map(square, { 1, 2, io.stdout and coroutine.create(print) }) end,
    "map element 3", "cannot be sent")
  t.eq(pool:stats().calls_sent, before)
end)

t.test("broadcast runs once on every node", function()
  local where = sky.fn(function() return sky.instance_info().node end)
  local r = pool:broadcast(where())
  t.eq(#r, 2)
  t.eq(r[1], 0); t.eq(r[2], 1)
end)

t.test("instance_info describes the worker and its pool", function()
  local info = sky.fn(function() return sky.instance_info() end)() >> pool
  t.eq(info.nodes, 2); t.eq(info.workers, 2)
  t.truthy(info.node == 0 or info.node == 1, "node id")
  t.truthy(type(info.hostname) == "string" and #info.hostname > 0, "hostname")
  t.truthy(type(info.pid) == "number" and info.pid > 0, "pid")
  t.eq(type(info.accelerators), "table")
end)

t.test("shard gives each node a disjoint, covering slice", function()
  local part = sky.fn(function(xs) return sky.shard(xs) end)
  local xs = {}
  for i = 1, 11 do xs[i] = i end
  local r = pool:broadcast(part(xs))
  local seen = {}
  for _, slice in ipairs(r) do
    for _, v in ipairs(slice) do
      t.eq(seen[v], nil, "element " .. v .. " in two shards")
      seen[v] = true
    end
  end
  for i = 1, 11 do t.truthy(seen[i], "element " .. i .. " in no shard") end
end)

t.test("submit returns a future that waits for the result", function()
  local f = pool:submit(square(12))
  t.eq(f:wait(), 144)
  t.eq(f:done(), true)
  t.eq(f:wait(), 144)
end)

t.test("stream yields results in completion order with their positions", function()
  -- "slow" cannot finish before the host has received "fast": it waits for
  -- a file the loop body below creates when stream() yields "fast".
  local dir = os.getenv("SKYRUN_BUILD_DIR") .. "/tmp-stream-" .. math.random(1e9)
  os.execute("mkdir -p " .. dir)
  local slow = sky.fn(function(d)
    for _ = 1, 3000 do
      local f = io.open(d .. "/host-saw-fast")
      if f then f:close() return "slow" end
      os.execute("sleep 0.01")
    end
    return "gave up"
  end)
  local fast = sky.fn(function() return "fast" end)
  local order = {}
  for i, v in pool:stream({ slow(dir), fast() }) do
    order[#order + 1] = i .. "=" .. v
    if v == "fast" then io.open(dir .. "/host-saw-fast", "w"):close() end
  end
  os.execute("rm -rf " .. dir)
  t.same(order, { "2=fast", "1=slow" })
end)

t.test("stream hands out every call of a large set exactly once", function()
  local double = sky.fn(function(x) return 2 * x end)
  local calls, seen, n = {}, {}, 20000
  for i = 1, n do calls[i] = double(i) end
  local count = 0
  for i, v in pool:stream(calls) do
    t.eq(v, 2 * i)
    t.eq(seen[i], nil, "position " .. i .. " handed out twice")
    seen[i] = true
    count = count + 1
  end
  t.eq(count, n)
  t.eq(pool:stats().calls_held, 0)
end)

t.test("leaving a stream loop early releases the calls not handed out", function()
  -- One worker runs calls in order, so once a later call has returned,
  -- every call submitted before it has finished on the worker.
  local solo <close> = sky.compute { workers = 1 }
  local ident = sky.fn(function(x) return x end)
  local calls = {}
  for i = 1, 50 do calls[i] = ident(i) end
  for _ in solo:stream(calls) do break end
  t.eq(ident("after") >> solo, "after")
  t.eq(solo:stats().calls_held, 0, "calls held after the loop was left")
  local ok = pcall(function()
    for _, v in solo:stream(calls) do if v == 3 then error("stop") end end
  end)
  t.eq(ok, false)
  t.eq(ident("after") >> solo, "after")
  t.eq(solo:stats().calls_held, 0, "calls held after an error in the loop body")
end)

t.test("a future dropped without waiting lets go of its call", function()
  local solo <close> = sky.compute { workers = 1 }
  local ident = sky.fn(function(x) return x end)
  for i = 1, 100 do solo:submit(ident(i)) end
  local kept = solo:submit(ident("kept"))
  collectgarbage(); collectgarbage()
  t.eq(ident("after") >> solo, "after")
  t.eq(solo:stats().calls_held, 1, "only the future still referenced is held")
  t.eq(kept:wait(), "kept")
  t.eq(solo:stats().calls_held, 0)
end)

t.test("a registered metatable travels with its tables and comes back as the host's own", function()
  local Point = sky.metatable("test.Point", { __index = {} })
  function Point.__index.norm2(p) return p.x * p.x + p.y * p.y end
  Point.__add = function(a, b) return setmetatable({ x = a.x + b.x, y = a.y + b.y }, Point) end
  local f = sky.fn(function(a, b) return a:norm2(), a + b, getmetatable(a) == getmetatable(b) end)
  local n, sum, shared = pool:run(f(setmetatable({ x = 3, y = 4 }, Point), setmetatable({ x = 1, y = 1 }, Point)))
  t.eq(n, 25)
  t.eq(shared, true)
  t.eq(getmetatable(sum), Point)
  t.eq(sum:norm2(), 41)
  -- the usual constructor: only the class travels (as an upvalue)
  local new = sky.fn(function(x) return setmetatable({ x = x, y = 0 }, Point) end)
  local made = pool:map(new, { 1, 2, 3 })
  for i, p in ipairs(made) do
    t.eq(getmetatable(p), Point)
    t.eq(p:norm2(), i * i)
  end
  -- an unregistered metatable stays behind
  local bare = sky.fn(function(v) return getmetatable(v) == nil, v.missing end)
  local none, missing = pool:run(bare(setmetatable({}, { __index = function() return "meta" end })))
  t.eq(none, true)
  t.eq(missing, nil)
  t.raises(function() sky.metatable("", {}) end, "sky.metatable", "1 to 200 bytes")
  t.raises(function() sky.metatable("x", 1) end, "expected a metatable")
  t.raises(function() sky.metatable("test.Other", Point) end, "already registered as 'test.Point'")
  t.eq(sky.metatable("test.Point", Point), Point)   -- the same name again is fine
  -- a hierarchy of registered classes keeps its chain both ways
  local Base = sky.metatable("test.Base", {}); Base.__index = Base
  function Base.hello(o) return "base " .. o.n end
  local Derived = sky.metatable("test.Derived", setmetatable({}, Base)); Derived.__index = Derived
  function Derived.twice(o) return 2 * o.n end
  local use = sky.fn(function(o) return o:hello(), o:twice(), setmetatable({ n = 5 }, getmetatable(o)) end)
  local hello, twice, made = pool:run(use(setmetatable({ n = 3 }, Derived)))
  t.eq(hello, "base 3"); t.eq(twice, 6)
  t.eq(getmetatable(made), Derived); t.eq(made:hello(), "base 5")
end)

t.test("upvalues travel by value, nested and recursive functions included", function()
  local base, scale = 10, { factor = 3 }
  local function helper(x) return x * scale.factor end
  local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end
  local f = sky.fn(function(x) return helper(x) + base + fib(10) end)
  t.eq(f(2) >> pool, 2 * 3 + 10 + 55)
end)

t.test("tables keep shared references, cycles, integer/float and NUL bytes", function()
  local shared = { 1 }
  local cyc = { name = "c" }
  cyc.self = cyc
  local echo = sky.fn(function(v) return v end)
  local r = echo({ a = shared, b = shared, c = cyc, i = 3, f = 3.0, s = "a\0b" }) >> pool
  t.truthy(r.a == r.b, "shared reference preserved")
  t.truthy(r.c.self == r.c, "cycle preserved")
  t.eq(math.type(r.i), "integer"); t.eq(math.type(r.f), "float")
  t.eq(r.s, "a\0b")
end)

t.test("standard-library values travel by name", function()
  local fmt, m = string.format, math
  local f = sky.fn(function(x) return fmt("%.2f", m.sqrt(x)) end)
  t.eq(f(2) >> pool, "1.41")
end)

t.test("an unsendable upvalue is refused before sending, naming it", function()
  local conn = io.tmpfile()
  local f = sky.fn(function() return conn end)
  t.raises(function() return f() >> pool end, "upvalue 'conn'", "cannot be sent")
  conn:close()
end)

t.test("an unsendable argument field is refused naming its path", function()
  local f = sky.fn(function(x) return x end)
  t.raises(function() return f(1, { cb = coroutine.create(print) }) >> pool end,
    "argument 2", "field 'cb'")
end)

t.test("a remote error carries message, traceback, node and worker", function()
  local bad = sky.fn(function(x)
    local t2 = nil
    return t2.field + x
  end)
  local msg, err = t.raises(function() return bad(1) >> pool end,
    "remote error on node", "attempt to index a nil value", "remote stack traceback")
  t.contains(msg, "test_remote_functions.lua:")   -- the host-side line of the call
  t.eq(type(err), "table")
  t.eq(err.kind, "error")
  t.truthy(err.node == 0 or err.node == 1, "node")
  t.truthy(err.worker == 0 or err.worker == 1, "worker")
  t.contains(err.traceback, "traceback")
end)

t.test("a call past its timeout fails with a timeout error, and the pool goes on", function()
  local spin = sky.fn(function() while true do end end)
  t.raises(function() return spin():timeout(0.5) >> pool end, "timed out")
  t.eq(square(5) >> pool, 25)
end)

t.test("a user error is never retried", function()
  local dir = os.getenv("SKYRUN_BUILD_DIR") .. "/tmp-retry-" .. tostring(os.time()) .. "-" .. math.random(1e9)
  os.execute("mkdir -p " .. dir)
  local count = sky.fn(function(d)
    local f = io.open(d .. "/attempts", "a"); f:write("x"); f:close()
    error("always fails")
  end)
  t.raises(function() return count(dir) >> pool end, "always fails")
  local f = io.open(dir .. "/attempts"); local n = #f:read("a"); f:close()
  os.execute("rm -rf " .. dir)
  t.eq(n, 1, "attempts")
end)

t.test("a worker killed mid-call is replaced and the call retried elsewhere", function()
  local dir = os.getenv("SKYRUN_BUILD_DIR") .. "/tmp-kill-" .. tostring(os.time()) .. "-" .. math.random(1e9)
  os.execute("mkdir -p " .. dir)
  local victim = sky.fn(function(d, x)
    local me = sky.instance_info()
    local marker = io.open(d .. "/killed")
    if not marker then
      local f = io.open(d .. "/killed", "w"); f:write(me.pid); f:close()
      os.execute("kill -9 " .. me.pid)
      while true do end
    end
    marker:close()
    return x * 2, me.pid
  end)
  local r, pid = victim(dir, 21) >> pool
  local f = io.open(dir .. "/killed"); local killed = tonumber(f:read("a")); f:close()
  os.execute("rm -rf " .. dir)
  t.eq(r, 42)
  t.truthy(pid ~= killed, "retried on another worker process")
  -- the pool still has all its workers
  t.eq(#pool:pids(), 4)
end)

t.test("a function's bytecode is sent to each worker once, then referred to by hash", function()
  local single <close> = sky.compute { provider = sky.providers.localhost { nodes = 1, workers = 1 } }
  local big = {}
  for i = 1, 50 do big[i] = ("%d"):format(i) end
  local f = sky.fn(function(x) return x + #big end)
  for i = 1, 100 do t.eq(f(i) >> single, i + 50) end
  local st = single:stats()
  t.eq(st.calls_sent, 100)
  t.eq(st.defines_sent, 1)
  -- nested functions are prototypes of their own: one more DEFINE, once
  local helper = function(x) return x * 2 end
  local g = sky.fn(function(x) return helper(x) end)
  for i = 1, 10 do t.eq(g(i) >> single, i * 2) end
  t.eq(single:stats().defines_sent, 3)
end)

t.test("retries of a call whose worker keeps dying are bounded", function()
  local few <close> = sky.compute { provider = sky.providers.localhost { nodes = 1, workers = 2 }, retries = 2 }
  local suicide = sky.fn(function()
    os.execute("kill -9 " .. sky.instance_info().pid)
    while true do end
  end)
  local _, err = t.raises(function() return suicide() >> few end, "worker lost", "after 3 attempts")
  t.eq(err.kind, "lost")
  t.eq(few:stats().retries, 2)
  t.eq(square(6) >> few, 36)   -- the pool replaced its workers and goes on
end)

-- (C modules: tests/lua/test_c_modules.lua)

t.run()
