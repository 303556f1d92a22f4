-- volumes benchmark (run by bench/volumes.sh): pool bring-up with two
-- volumes against without, and reading a large object through an s3fs
-- mount. Prints one line per measure.
--   skyrun bench/volumes.lua BUCKET KEY REPS
local sky = require "sky"
local bucket, key, reps = arg[1], arg[2], tonumber(arg[3]) or 5
local st = sky.storage.s3 { endpoint = os.getenv("S3_ENDPOINT"), region = "us-east-1", path_style = true }

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

local function bring_up(volumes)
  local times = {}
  for i = 1, reps do
    local t0 = sky.now()
    local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 2 }, volumes = volumes() }
    local _ = sky.fn(function() return 1 end)() >> pool   -- ready for calls
    times[i] = sky.now() - t0
  end
  return median(times), times
end

local none = bring_up(function() return {} end)
local two = bring_up(function()
  return { sky.volume { bucket = bucket, prefix = "in/", mount = "/bench-data", storage = st },
           sky.volume { bucket = bucket, prefix = "out/", mount = "/bench-out", read_only = false, storage = st } }
end)
print(("bring-up, 2 nodes: %.3f s without volumes, %.3f s with two (+%.3f s)"):format(none, two, two - none))

local pool <close> = sky.compute { volumes = { sky.volume { bucket = bucket, prefix = "big/", mount = "/bench-big", storage = st } } }
local read = sky.fn(function(path)
  local t0 = sky.now and sky.now() or nil
  local p = io.popen("/usr/bin/time -f '%e' cat " .. path .. " 2>&1 >/dev/null")
  local s = p:read("a")
  p:close()
  return tonumber(s:match("([%d.]+)%s*$"))
end)
local times = {}
for i = 1, 3 do times[i] = read("/bench-big/" .. key) >> pool end
print(("read through the mount: %.3f s median of %s"):format(median(times), table.concat(times, ", ")))
