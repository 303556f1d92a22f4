-- Liveness and head-of-line blocking: calls queued behind a slow call move
-- to an idle worker; a worker that stops answering is given up after the
-- heartbeat and its call runs elsewhere; the host keeps workers alive
-- while the script runs Lua code between waits.
package.path = os.getenv("SKYRUN_SOURCE_DIR") .. "/tests/lua/?.lua;" .. package.path
local t = require "testlib"
local sky = require "sky"

local square = sky.fn(function(x) return x * x end)
local dir = os.getenv("SKYRUN_BUILD_DIR") .. "/tmp-liveness-" .. math.random(1e9)
os.execute("mkdir -p " .. dir)
t.after = function() os.execute("rm -rf " .. dir) end

t.test("calls queued behind a slow call move to an idle worker instead of waiting", function()
  local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 1, workers = 2 } }
  pool:map(square, { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 })   -- calls are short: pipelining is on
  -- The slow call waits for a gate that opens only once every fast call is
  -- back: a fast call stuck behind it would hold the gate shut until the
  -- slow call gives up.
  local gate = dir .. "/gate"
  local slow = sky.fn(function(path)
    for _ = 1, 400 do
      local f = io.open(path)
      if f then f:close() return "opened" end
      os.execute("sleep 0.05")
    end
    return "gave up"
  end)
  local calls = { slow(gate) }
  for i = 1, 300 do calls[#calls + 1] = square(i) end
  local fast_left = 300
  local slow_result
  for i, r in pool:stream(calls) do
    if i == 1 then
      slow_result = r
    else
      t.eq(r, (i - 1) * (i - 1))
      fast_left = fast_left - 1
      if fast_left == 0 then io.open(gate, "w"):close() end
    end
  end
  t.eq(slow_result, "opened", "no fast call waited behind the slow one")
  t.truthy(pool:stats().calls_moved > 0, "calls queued behind the slow call were moved")
end)

t.test("a worker that stops answering is given up after the heartbeat; its call runs elsewhere", function()
  local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 1, workers = 2 },
                                     heartbeat = 1, retries = 2 }
  local stop_me = sky.fn(function(marker)
    local f = io.open(marker)
    if not f then
      io.open(marker, "w"):close()
      os.execute("kill -STOP " .. sky.instance_info().pid)   -- frozen: no answer, no EOF
    else
      f:close()
    end
    return "done"
  end)
  t.eq(stop_me(dir .. "/frozen") >> pool, "done")
  local st = pool:stats()
  t.eq(st.workers_lost, 1)
  t.eq(st.retries, 1)
end)

t.test("workers stay alive while the script runs Lua code between waits", function()
  local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 1, workers = 2 },
                                     heartbeat = 0.6 }
  t.eq(square(2) >> pool, 4)
  local until_ = sky.now() + 2.5   -- four heartbeats of Lua code, no pool wait
  local n = 0
  while sky.now() < until_ do n = n + 1 end
  t.eq(square(3) >> pool, 9)
  t.eq(pool:stats().workers_lost, 0, "no worker gave its host up")
end)

t.test("a heartbeat that is not a number of seconds is refused", function()
  t.raises(function() return sky.compute { heartbeat = -1 } end, "heartbeat must be")
end)

t.run()
