-- workflows/forest.lua: forests for several seeds trained in parallel on a
-- pool whose workers read the CSV from a volume and write the models to
-- another; the models are objects in the bucket when run returns, and each
-- loads here with the accuracy its worker measured.
package.path = os.getenv("SKYRUN_SOURCE_DIR") .. "/tests/lua/?.lua;"
  .. os.getenv("SKYRUN_SOURCE_DIR") .. "/tests/s3/?.lua;" .. package.path
local t = require "testlib"
local s3t = require "s3testlib"
local sky = require "sky"
local src = os.getenv("SKYRUN_SOURCE_DIR")
local flow = dofile(src .. "/workflows/forest.lua")
local forest = dofile(src .. "/examples/lib/forest.lua")

local st = s3t.storage()
local iris = src .. "/examples/data/iris.csv"

for _, mode in ipairs({ "mount", "copy" }) do
  t.test(mode .. ": one model per seed, each in the bucket and reproducing its accuracy here", function()
    local data, models = s3t.fresh_bucket(st, "fdata"), s3t.fresh_bucket(st, "fmodels")
    st:upload(data, iris, { key = "sets/iris.csv" })
    local best, all = flow.run { storage = st, data = { bucket = data, key = "sets/iris.csv" },
      models = { bucket = models, prefix = "run1" }, seeds = { 1, 2, 3 }, trees = 20,
      provider = sky.providers.localhost { nodes = 2 }, mode = mode }
    t.eq(#all, 3)
    local rows = forest.read_csv(iris, { header = true })
    for i, r in ipairs(all) do
      t.eq(r.seed, i)
      t.eq(r.key, ("run1/model-%d.bin"):format(i))
      local path = s3t.dir .. "/" .. mode .. "-" .. i .. ".bin"
      st:download(models, r.key, path)
      t.eq(forest.load(path):accuracy(rows), r.accuracy)
      t.truthy(best.accuracy >= r.accuracy, "best is the most accurate")
    end
  end)
end

t.test("a data key that names no file is refused", function()
  t.raises(function()
    return flow.run { storage = st, data = { bucket = "x", key = "dir/" }, models = { bucket = "y" } }
  end, "data.key must name the CSV object")
end)

t.after = s3t.cleanup
t.run()
