-- s3_volumes: the reference pipeline — upload, train, download.
--
--   S3_ENDPOINT=http://127.0.0.1:9000 skyrun examples/s3_volumes.lua [mount|copy] [nodes]
--
-- (scripts/main.sh starts a local S3-compatible server, sets S3_ENDPOINT
-- and the keys, and runs this.) Credentials come from the usual places:
-- AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws, or skyrun.yaml.
--
-- Phase 1 uploads examples/data/iris.csv to s3://datasets/iris/. Phase 2
-- trains a random forest (examples/lib/forest.lua, shipped to the workers
-- with image.includes) on a worker that reads /data/iris.csv from a
-- read-only volume and writes /output/model.bin to a writable one; the
-- function sees plain files, never S3. Phase 3, after the pool is gone,
-- downloads the model, loads it here and checks that it reproduces the
-- accuracy the worker measured on the same rows.
local sky = require "sky"

local mode = arg[1] or "mount"
local nodes = tonumber(arg[2]) or 2
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local csv = here .. "/data/iris.csv"
local forest_lua = here .. "/lib/forest.lua"

local endpoint = os.getenv "S3_ENDPOINT"
if not endpoint then
  error("set S3_ENDPOINT to an S3-compatible endpoint (scripts/main.sh starts a local one for you)", 0)
end
local storage <close> = sky.storage.s3 { endpoint = endpoint, region = "us-east-1", path_style = true }

local function ensure_bucket(name)
  local ok, err = pcall(storage.ls, storage, name, "", { recursive = false })
  if ok then return end
  if not tostring(err):find("NoSuchBucket", 1, true) then error(err, 0) end
  storage:create_bucket(name)
end

local data = sky.volume { bucket = "datasets", prefix = "iris/", mount = "/data",
                          read_only = true, storage = storage, mode = mode }
local model = sky.volume { bucket = "models", prefix = "experiment-001/", mount = "/output",
                           read_only = false, storage = storage, mode = mode }

-- Runs on a worker. It reads and writes plain files; it knows nothing of S3.
local train = sky.fn(function(data_path, output_dir)
  local forest = require "forest"            -- shipped with image.includes
  local rows = forest.read_csv(data_path, { header = true })
  local m = forest.fit(rows, { trees = 100, seed = 42 })
  local bytes = m:save(output_dir .. "/model.bin")
  return { samples = #rows, accuracy = m:accuracy(rows), model_bytes = bytes,
           node = sky.instance_info().node }
end)

print("== phase 1: upload ==")
ensure_bucket("datasets")
ensure_bucket("models")
storage:upload("datasets", csv, { key = "iris/iris.csv" })
print("uploaded:", table.concat(storage:ls("datasets", "iris/"), " "))

print(("== phase 2: train on a pool (%d nodes, volumes by %s) =="):format(nodes, mode))
local r
do
  local t0 = sky.now()
  local pool <close> = sky.compute {
    provider = sky.providers.localhost { nodes = nodes },
    image    = sky.image { includes = { forest_lua } },
    volumes  = { data, model },
  }
  print(("pool up in %.2f s"):format(sky.now() - t0))
  r = train("/data/iris.csv", "/output") >> pool
  print(("node %d: %d samples, accuracy %.4f, model %d bytes"):format(r.node, r.samples, r.accuracy,
    r.model_bytes))
end -- the pool is gone: workers stopped, /output written back and unmounted

print("== phase 3: download ==")
local local_model = os.tmpname()
storage:download("models", "experiment-001/model.bin", local_model)
local forest = dofile(forest_lua)
local m = forest.load(local_model)
local accuracy = m:accuracy(forest.read_csv(csv, { header = true }))
os.remove(local_model)
print(("downloaded the model; local accuracy %.4f"):format(accuracy))
if accuracy ~= r.accuracy or accuracy < 0.95 then
  error(("the downloaded model does not reproduce the worker's accuracy (%.4f here, %.4f there)")
    :format(accuracy, r.accuracy), 0)
end
print("ok: the model trained on the pool reproduces its accuracy here")
