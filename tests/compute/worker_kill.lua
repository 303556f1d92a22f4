-- Workers lost in the middle of pipelined calls: a worker SIGKILLed at a
-- random moment of a `map`, a `stream` or a run of `broadcast`s (while the
-- host writes calls to it, while it waits for results, or while it is idle),
-- and a worker that exits on its own with calls queued behind it. Every try
-- must end with every result correct, the lost calls retried on a new
-- worker, and nothing left behind: no worker process, no node folder.
-- Never a host killed by SIGPIPE (exit 141) — whatever the host: skyrun,
-- lua5.4 + require "sky", or a C program embedding libskyrun.
--
-- usage: HOST worker_kill.lua map|stream|broadcast|exit TRIES PIDFILE
-- TMPDIR must be a folder of the test's own (checked empty after each try).
local sky = require "sky"
local verb, tries, pidfile = arg[1], tonumber(arg[2]), arg[3]
local tmpdir = assert(os.getenv("TMPDIR"), "TMPDIR must be set")
math.randomseed(tonumber(os.getenv("SKYRUN_TEST_SEED") or "") or os.time())

local square = sky.fn(function(x) return x * x end)
local all_pids = {}

local function fail(fmt, ...) error(("%s try: " .. fmt):format(verb, ...), 0) end

local function leftovers()
  local p = io.popen('ls -A "' .. tmpdir .. '"')
  local s = p:read("a")
  p:close()
  return s
end

local function remember(pool)
  for _, pid in ipairs(pool:pids()) do all_pids[#all_pids + 1] = pid end
end

-- Runs the verb once on pool; checks every result.
local N_MAP, N_BROADCASTS = 30000, 400
local function run(pool)
  if verb == "map" then
    local xs = {}
    for i = 1, N_MAP do xs[i] = i end
    local r = pool:map(square, xs)
    for i = 1, N_MAP do if r[i] ~= i * i then fail("map result %d is %s", i, tostring(r[i])) end end
  elseif verb == "stream" then
    local calls, seen, count = {}, {}, 0
    for i = 1, N_MAP // 3 do calls[i] = square(i) end
    for i, r in pool:stream(calls) do
      if r ~= i * i or seen[i] then fail("stream result %d is %s", i, tostring(r)) end
      seen[i], count = true, count + 1
    end
    if count ~= #calls then fail("stream handed out %d of %d results", count, #calls) end
  elseif verb == "broadcast" then
    local who = sky.fn(function(x) return sky.instance_info().node * 1000000 + x end)
    for k = 1, N_BROADCASTS do
      local r = pool:broadcast(who(k))
      for node = 0, 1 do
        if r[node + 1] ~= node * 1000000 + k then fail("broadcast %d node %d gave %s", k, node, tostring(r[node + 1])) end
      end
    end
  end
end

local function kill_later(pid, delay)
  -- a process of the test's own, outside the host: the kill lands whatever the host is doing
  os.execute(("(sleep %.4f; kill -9 %d) 2>/dev/null &"):format(delay, pid))
end

local function new_pool()
  return sky.compute { provider = sky.providers.localhost {
    nodes = verb == "broadcast" and 2 or 1, workers = 2 }, retries = 3, quiet = true }
end

-- How long one run takes here, so kills land anywhere inside the next ones.
local span
do
  local pool <close> = new_pool()
  remember(pool)
  local t0 = sky.now()
  if verb ~= "exit" then run(pool) end
  span = sky.now() - t0
end

for try = 1, tries do
  local lost
  do
    local pool <close> = new_pool()
    remember(pool)
    if verb == "exit" then
      -- Element k ends its worker with os.exit on its first attempt, while
      -- many short calls are pipelined behind it on the same worker.
      local marker = tmpdir .. "/../exit-marker-" .. try
      local k = math.random(1, 2000)
      local sometimes_exit = sky.fn(function(x, m, kk)
        if x == kk then
          local f = io.open(m)
          if not f then io.open(m, "w"):close(); os.exit(3) end
          f:close()
        end
        return x * x
      end)
      local calls = {}
      for i = 1, 5000 do calls[i] = sometimes_exit(i, marker, k) end
      local r = pool:gather(calls)
      for i = 1, #calls do if r[i] ~= i * i then fail("result %d is %s", i, tostring(r[i])) end end
      os.remove(marker)
    else
      local victims = pool:pids()
      local idle = try % 4 == 0   -- now and then the worker dies while the pool is idle
      if idle then
        os.execute(("kill -9 %d"):format(victims[1]))
        os.execute("sleep 0.05")
      else
        kill_later(victims[math.random(#victims)], math.random() * span * 1.2)
      end
      run(pool)
      os.execute("sleep " .. (span * 1.3 + 0.05))   -- a late kill has landed before we check
      run(pool)                                    -- the pool goes on with its new worker
    end
    lost = pool:stats().workers_lost
    remember(pool)
  end
  if lost < 1 then fail("no worker was lost in try %d", try) end
  local left = leftovers()
  if left ~= "" then fail("try %d left in TMPDIR: %s", try, left) end
end

local f = assert(io.open(pidfile, "w"))
f:write(table.concat(all_pids, " "), "\n")
f:close()
print(("ok - %s: %d tries, a worker lost in each, every result correct"):format(verb, tries))
