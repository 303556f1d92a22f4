-- ssh provider benchmark, the skyrun side (bench/ssh.sh drives it on a test
-- bed and measures the OpenSSH references). One measurement per run:
--   skyrun bench/ssh.lua bringup            -- pool of every host in BENCH_HOSTS,
--                                           -- 1 worker each: seconds to sky.compute's
--                                           -- return and to the first result
--   skyrun bench/ssh.lua rtt CALLS          -- first host, 1 worker: round trip of a
--                                           -- trivial call, p50 / p99 in µs
--   skyrun bench/ssh.lua arg FILE REPS      -- first host: FILE's bytes as one string
--                                           -- argument to a function returning #s
--                                           -- (seconds and skyrun's CPU seconds per rep)
-- The hosts and credentials come from the environment: BENCH_HOSTS (space
-- separated), BENCH_KEY (identity file), BENCH_KNOWN_HOSTS.
local sky = require "sky"

local mode = arg[1]
local hosts = {}
for h in (os.getenv("BENCH_HOSTS") or ""):gmatch("%S+") do hosts[#hosts + 1] = h end
assert(#hosts > 0, "BENCH_HOSTS is empty")

local function provider(host_list)
  return sky.providers.ssh {
    hosts = host_list, user = "root", workers = 1, connect_timeout = 5,
    identity = assert(os.getenv("BENCH_KEY"), "BENCH_KEY is not set"),
    known_hosts = assert(os.getenv("BENCH_KNOWN_HOSTS"), "BENCH_KNOWN_HOSTS is not set"),
  }
end

local function percentile(sorted, p) return sorted[math.max(1, math.floor(#sorted * p))] end

if mode == "bringup" then
  local t0 = sky.now()
  local pool <close> = sky.compute { provider = provider(hosts) }
  local t_started = sky.now() - t0
  local first = sky.fn(function() return "up" end)() >> pool
  local t_first = sky.now() - t0
  assert(first == "up")
  print(("bringup hosts=%d started=%.4f first_result=%.4f"):format(#hosts, t_started, t_first))
elseif mode == "rtt" then
  local calls = tonumber(arg[2]) or 2000
  local pool <close> = sky.compute { provider = provider({ hosts[1] }) }
  local trivial = sky.fn(function(x) return x end)
  for i = 1, math.max(200, calls // 10) do local _ = trivial(i) >> pool end   -- warm up
  local t = {}
  for i = 1, calls do
    local t0 = sky.now()
    local r = trivial(i) >> pool
    t[i] = (sky.now() - t0) * 1e6
    assert(r == i)
  end
  table.sort(t)
  print(("rtt calls=%d p50=%.1f p99=%.1f"):format(calls, percentile(t, 0.50), percentile(t, 0.99)))
elseif mode == "arg" then
  local path, reps = assert(arg[2], "arg FILE REPS"), tonumber(arg[3]) or 3
  local f = assert(io.open(path, "rb"))
  local bytes = f:read("a")
  f:close()
  local pool <close> = sky.compute { provider = provider({ hosts[1] }) }
  local length = sky.fn(function(s) return #s end)
  assert((length("warm") >> pool) == 4)   -- the pool is up and the function known
  for rep = 1, reps do
    local t0, c0 = sky.now(), os.clock()
    local n = length(bytes) >> pool
    local dt, cpu = sky.now() - t0, os.clock() - c0   -- os.clock: this process's CPU, all threads
    assert(n == #bytes, "the function saw " .. tostring(n) .. " bytes")
    print(("arg rep=%d bytes=%d seconds=%.4f mib_per_s=%.1f cpu_seconds=%.3f"):format(
      rep, #bytes, dt, #bytes / dt / 1048576, cpu))
  end
else
  error("usage: skyrun bench/ssh.lua bringup | rtt CALLS | arg FILE REPS")
end
