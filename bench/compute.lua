-- compute benchmark: round trip of a trivial call on a warm localhost pool
-- (p50, p99), pipelined throughput with 2 workers (map and stream), idle
-- worker RSS, and head-of-line blocking (fast calls streamed among slow ones).
--   skyrun bench/compute.lua [calls_for_latency] [calls_for_throughput]
local sky = require "sky"

local n_latency = tonumber(arg[1]) or 20000
local n_throughput = tonumber(arg[2]) or 200000

local function percentile(sorted, p) return sorted[math.max(1, math.floor(#sorted * p))] end

local function rss_kib(pid)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s+(%d+)"))
end

do
  local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 1, workers = 1 } }
  local trivial = sky.fn(function(x) return x end)
  for i = 1, 2000 do local _ = trivial(i) >> pool end   -- warm up
  local t = {}
  for i = 1, n_latency do
    local t0 = sky.now()
    local _ = trivial(i) >> pool
    t[i] = (sky.now() - t0) * 1e6
  end
  table.sort(t)
  print(("call round trip (1 worker, warm): calls=%d p50=%.1f us p99=%.1f us"):format(
    n_latency, percentile(t, 0.50), percentile(t, 0.99)))

  -- Idle RSS: after the calls, with the pool at rest.
  os.execute("sleep 0.2")
  for _, pid in ipairs(pool:pids()) do
    print(("idle worker RSS: pid=%d rss=%d KiB"):format(pid, rss_kib(pid) or -1))
  end
end

do
  local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 1, workers = 2 } }
  local trivial = sky.fn(function(x) return x end)
  local xs = {}
  for i = 1, n_throughput do xs[i] = i end
  pool:map(trivial, { 1, 2, 3, 4 })   -- warm up
  local t0 = sky.now()
  local r = pool:map(trivial, xs)
  local dt = sky.now() - t0
  assert(#r == n_throughput and r[n_throughput] == n_throughput)
  print(("pipelined throughput (2 workers, pool:map): calls=%d seconds=%.3f calls/s=%.0f"):format(
    n_throughput, dt, n_throughput / dt))

  -- The same calls handed out in completion order.
  local calls = {}
  for i = 1, n_throughput do calls[i] = trivial(i) end
  t0 = sky.now()
  local count = 0
  for _ in pool:stream(calls) do count = count + 1 end
  dt = sky.now() - t0
  assert(count == n_throughput)
  print(("stream throughput (2 workers, pool:stream): calls=%d seconds=%.3f calls/s=%.0f"):format(
    n_throughput, dt, n_throughput / dt))
end

do
  -- 2,000 fast calls and three 1 s calls on 2 workers: when does the last
  -- fast result come? ~1 s when fast calls never wait behind a slow one.
  local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 1, workers = 2 } }
  local fast = sky.fn(function(x) return x end)
  local slow = sky.fn(function() os.execute("sleep 1") return "slow" end)
  pool:map(fast, { 1, 2, 3, 4 })
  local calls = {}
  for i = 1, 2000 do
    calls[#calls + 1] = fast(i)
    if i == 1 or i == 700 or i == 1400 then calls[#calls + 1] = slow() end
  end
  local t0, last_fast = sky.now(), 0
  for _, r in pool:stream(calls) do
    if r ~= "slow" then last_fast = sky.now() - t0 end
  end
  print(("head of line (2 workers, 2,000 fast + three 1 s calls): last fast result at %.2f s, all at %.2f s, %d calls moved")
    :format(last_fast, sky.now() - t0, pool:stats().calls_moved))
end
