-- forest: a reusable pipeline — random forests trained on a pool from a CSV
-- in S3, the models written back to S3. One forest per seed, in parallel;
-- workers see the data and the models as plain folders (volumes), never S3.
-- Use it as a library:
--
--   local forest_flow = dofile "workflows/forest.lua"
--   local best, all = forest_flow.run {
--     storage  = sky.storage.s3 { … },
--     data     = { bucket = "datasets", key = "iris/iris.csv" },
--     models   = { bucket = "models", prefix = "experiment-002/" },
--     seeds    = { 1, 2, 3, 4 }, trees = 50,
--     provider = sky.providers.localhost { nodes = 2, workers = 2 },   -- or ssh, Slurm
--     mode     = "mount",                                              -- or "copy"
--     mount_root = "/scratch/forest",   -- where the volumes appear (default: a new /skyrun-forest-…)
--   }
--   print(best.seed, best.accuracy, best.key)
--
-- or as a script, against the endpoint in S3_ENDPOINT (the data must be
-- there already; examples/s3_volumes.lua uploads it):
--
--   skyrun workflows/forest.lua datasets iris/iris.csv models sweep/ [seeds…]
--
-- The forest is examples/lib/forest.lua, shipped with image.includes. A
-- model's accuracy is measured on the training rows (a demonstration, not
-- a validation protocol).
local sky = require "sky"

local forest_flow = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
forest_flow.forest_lua = here .. "/../examples/lib/forest.lua"

local function need(opts, name, kind)
  if type(opts[name]) ~= kind then
    error(("forest.run: '%s' must be a %s"):format(name, kind), 3)
  end
end

--- Trains one forest per seed; returns the best { seed =, accuracy =, key =,
--- bytes =, node = } and all of them, in the order of the seeds.
function forest_flow.run(opts)
  need(opts, "storage", "userdata")
  need(opts, "data", "table")
  need(opts, "models", "table")
  local key = opts.data.key
  if type(key) ~= "string" or not key:find("[^/]$") then
    error("forest.run: data.key must name the CSV object (like \"iris/iris.csv\")", 2)
  end
  local prefix, file = key:match("^(.-)([^/]+)$")
  local seeds = opts.seeds or { 42 }
  if type(seeds) ~= "table" or #seeds == 0 then error("forest.run: seeds must be a non-empty list", 2) end
  local models_prefix = opts.models.prefix or ""
  if models_prefix ~= "" and not models_prefix:find("/$") then models_prefix = models_prefix .. "/" end

  local train = sky.fn(function(seed, csv, out, trees)
    local forest = require "forest"
    local rows = forest.read_csv(csv, { header = true })
    local m = forest.fit(rows, { trees = trees, seed = seed })
    local name = ("model-%d.bin"):format(seed)
    local bytes = m:save(out .. "/" .. name)
    return { seed = seed, accuracy = m:accuracy(rows), name = name, bytes = bytes,
             node = sky.instance_info().node }
  end)

  -- Mount points of this run's own: two runs at once never share one.
  local root = opts.mount_root or ("/skyrun-forest-%x"):format(math.floor((sky.now() % 1) * 2 ^ 31) ~ math.random(1 << 30))
  local data_dir, models_dir = root .. "/data", root .. "/models"
  local results
  do
    local pool <close> = sky.compute {
      provider = opts.provider or sky.providers.localhost(),
      image = sky.image { includes = { forest_flow.forest_lua } },
      volumes = {
        sky.volume { bucket = opts.data.bucket, prefix = prefix, mount = data_dir,
                     storage = opts.storage, mode = opts.mode },
        sky.volume { bucket = opts.models.bucket, prefix = models_prefix, mount = models_dir,
                     read_only = false, storage = opts.storage, mode = opts.mode },
      },
    }
    local calls = {}
    for i, seed in ipairs(seeds) do
      calls[i] = train(seed, data_dir .. "/" .. file, models_dir, opts.trees or 100)
    end
    results = pool:gather(calls)
  end -- the models are objects in the bucket now
  local best
  for _, r in ipairs(results) do
    r.key = models_prefix .. r.name
    r.name = nil
    if not best or r.accuracy > best.accuracy then best = r end
  end
  return best, results
end

if arg and arg[0] and arg[0]:match("workflows/forest%.lua$") then
  local data_bucket, data_key, models_bucket, models_prefix = arg[1], arg[2], arg[3], arg[4]
  if not (data_bucket and data_key and models_bucket and models_prefix) then
    io.stderr:write("usage: skyrun workflows/forest.lua DATA_BUCKET DATA_KEY MODELS_BUCKET MODELS_PREFIX [seed…]\n")
    os.exit(2)
  end
  local seeds = {}
  for i = 5, #arg do seeds[#seeds + 1] = math.tointeger(tonumber(arg[i])) end
  local storage <close> = sky.storage.s3 { endpoint = os.getenv "S3_ENDPOINT", region = "us-east-1",
                                            path_style = true }
  local best, all = forest_flow.run {
    storage = storage, data = { bucket = data_bucket, key = data_key },
    models = { bucket = models_bucket, prefix = models_prefix },
    seeds = #seeds > 0 and seeds or { 1, 2, 3, 4 },
    provider = sky.providers.localhost { nodes = 2, workers = 2 },
    mode = (os.getenv("SKYRUN_VOLUME_MODE") or "mount"),
  }
  for _, r in ipairs(all) do
    print(("seed %d: accuracy %.4f, %d bytes at s3://%s/%s (node %d)"):format(r.seed, r.accuracy, r.bytes,
      models_bucket, r.key, r.node))
  end
  print(("best: seed %d"):format(best.seed))
end

return forest_flow
