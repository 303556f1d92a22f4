-- examples/lib/forest.lua: reading CSV, training, predicting, the model file
-- format and its errors, and training on a real worker.
package.path = os.getenv("SKYRUN_SOURCE_DIR") .. "/tests/lua/?.lua;" .. package.path
local t = require "testlib"
local sky = require "sky"

-- Workers run in their own directories: hand them absolute paths.
local function absolute(p)
  if p:sub(1, 1) == "/" then return p end
  return os.getenv("PWD") .. "/" .. p
end
local SOURCE = absolute(os.getenv("SKYRUN_SOURCE_DIR"))
local BUILD = absolute(os.getenv("SKYRUN_BUILD_DIR") or "/tmp")
local LIB = SOURCE .. "/examples/lib/forest.lua"
local IRIS = SOURCE .. "/examples/data/iris.csv"

local forest = dofile(LIB)
local iris = forest.read_csv(IRIS, { header = true })

-- Temporary paths under the build directory, removed (with any ".tmp"
-- sibling) when the variable holding them goes out of scope.
local function temp_files()
  local paths = {}
  return setmetatable({}, {
    __index = {
      path = function(_, name)
        local p = ("%s/tmp-forest-%s-%d"):format(BUILD, name, math.random(1e9))
        paths[#paths + 1] = p
        return p
      end,
    },
    __close = function()
      for _, p in ipairs(paths) do os.remove(p); os.remove(p .. ".tmp") end
    end,
  })
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

t.test("read_csv reads iris as 150 rows of four numbers and an integer label", function()
  t.eq(#iris, 150)
  t.same(iris[1], { 5.1, 3.5, 1.4, 0.2, 0 })
  local per_label = {}
  for _, row in ipairs(iris) do
    t.eq(#row, 5)
    t.eq(math.type(row[5]), "integer")
    per_label[row[5]] = (per_label[row[5]] or 0) + 1
  end
  t.same(per_label, { [0] = 50, [1] = 50, [2] = 50 })
end)

t.test("read_csv skips blank lines and tolerates CRLF line ends", function()
  local tmp <close> = temp_files()
  local p = tmp:path("crlf.csv")
  write(p, "x,y,label\r\n1,2.5,0\r\n\r\n   \r\n-3,4e1,1\r\n")
  t.same(forest.read_csv(p, { header = true }), { { 1, 2.5, 0 }, { -3, 40.0, 1 } })
  write(p, "1,2,0\r\n3,4,1")
  t.same(forest.read_csv(p), { { 1, 2, 0 }, { 3, 4, 1 } })
end)

t.test("read_csv names the file and line of a row with the wrong number of fields", function()
  local tmp <close> = temp_files()
  local p = tmp:path("short.csv")
  write(p, "a,b,c,d,label\n1,2,3,4,0\n\n1,2,3\n")
  t.raises(function() return forest.read_csv(p, { header = true }) end,
    p .. ":4: expected 5 numeric fields, got 3")
end)

t.test("read_csv names the file, line and field of a value that is not a number", function()
  local tmp <close> = temp_files()
  local p = tmp:path("word.csv")
  write(p, "1,2,0\n1,two,1\n")
  t.raises(function() return forest.read_csv(p) end, p .. ":2: field 2 is not a number", '"two"')
  write(p, "1,2,0\n1,2,0.5\n")
  t.raises(function() return forest.read_csv(p) end, p .. ":2: the label (field 3) must be an integer")
end)

t.test("read_csv of a missing file names the path and the reason", function()
  local p = BUILD .. "/no-such-forest-data.csv"
  t.raises(function() return forest.read_csv(p) end,
    "forest.read_csv: cannot open " .. p .. ": No such file or directory")
end)

t.test("100 trees with seed 42 classify the iris training rows with accuracy >= 0.95", function()
  local m = forest.fit(iris, { trees = 100, seed = 42 })
  local acc = m:accuracy(iris)
  t.truthy(acc >= 0.95 and acc <= 1, "accuracy " .. acc)
  t.eq(m:predict(iris[1]), 0)
  t.eq(m:predict({ 6.7, 3.0, 5.2, 2.3 }), 2)
end)

t.test("the same seed gives byte-identical model files, another seed a different one", function()
  local tmp <close> = temp_files()
  local a, b, c = tmp:path("a"), tmp:path("b"), tmp:path("c")
  forest.fit(iris, { trees = 100, seed = 42 }):save(a)
  forest.fit(iris, { trees = 100, seed = 42 }):save(b)
  forest.fit(iris, { trees = 100, seed = 43 }):save(c)
  t.truthy(read(a) == read(b), "seed 42 twice gave different files")
  t.truthy(read(a) ~= read(c), "seeds 42 and 43 gave the same file")
end)

t.test("a saved and loaded model predicts every row as the original does", function()
  local tmp <close> = temp_files()
  local p = tmp:path("model")
  local m = forest.fit(iris, { trees = 30, seed = 7, features = 3 })
  m:save(p)
  local back = forest.load(p)
  for i, row in ipairs(iris) do t.eq(back:predict(row), m:predict(row), "row " .. i) end
  t.eq(back:accuracy(iris), m:accuracy(iris))
end)

t.test("save returns the bytes written, starts with the magic and leaves no temporary file", function()
  local tmp <close> = temp_files()
  local p = tmp:path("model")
  local bytes = forest.fit(iris, { trees = 10, seed = 1 }):save(p)
  local data = read(p)
  t.eq(bytes, #data)
  t.eq(data:sub(1, 10), "SKYFOREST\1")
  t.eq(exists(p .. ".tmp"), false)
end)

t.test("save into a missing directory raises naming the path", function()
  local p = BUILD .. "/no-such-forest-dir/model.bin"
  local m = forest.fit(iris, { trees = 2 })
  t.raises(function() return m:save(p) end, "forest.save: cannot write " .. p .. ".tmp", "No such file or directory")
end)

t.test("load of a truncated model file raises 'truncated' naming the path", function()
  local tmp <close> = temp_files()
  local p = tmp:path("model")
  forest.fit(iris, { trees = 10 }):save(p)
  local data = read(p)
  for _, keep in ipairs({ 5, 20, #data // 2, #data - 1 }) do
    write(p, data:sub(1, keep))
    t.raises(function() return forest.load(p) end, "forest.load: " .. p .. ": truncated")
  end
end)

t.test("load of a file that is not a model raises 'not a forest model' naming the path", function()
  local tmp <close> = temp_files()
  local p = tmp:path("random")
  local bytes, x = {}, 12345
  for i = 1, 4096 do x = (x * 1103515245 + 12345) % 2147483648; bytes[i] = string.char(x >> 16 & 255) end
  write(p, table.concat(bytes))
  t.raises(function() return forest.load(p) end, "forest.load: " .. p .. ": not a forest model")
  write(p, "")
  t.raises(function() return forest.load(p) end, "forest.load: " .. p .. ": not a forest model")
end)

t.test("load of a model from a later version raises 'unsupported version N'", function()
  local tmp <close> = temp_files()
  local p = tmp:path("model")
  forest.fit(iris, { trees = 3 }):save(p)
  local data = read(p)
  write(p, data:sub(1, 9) .. "\2" .. data:sub(11))
  t.raises(function() return forest.load(p) end, "forest.load: " .. p .. ": unsupported version 2")
end)

t.test("load of a model with a changed byte raises 'corrupt' naming the path", function()
  local tmp <close> = temp_files()
  local p = tmp:path("model")
  forest.fit(iris, { trees = 3 }):save(p)
  local data = read(p)
  local i = #data // 2
  write(p, data:sub(1, i - 1) .. string.char(data:byte(i) ~ 0x10) .. data:sub(i + 1))
  t.raises(function() return forest.load(p) end, "forest.load: " .. p .. ": corrupt")
  write(p, data .. "x")
  t.raises(function() return forest.load(p) end, "forest.load: " .. p .. ": corrupt")
end)

t.test("load of a missing file names the path and the reason", function()
  local p = BUILD .. "/no-such-forest-model.bin"
  t.raises(function() return forest.load(p) end,
    "forest.load: cannot open " .. p .. ": No such file or directory")
end)

t.test("a hand-written version-1 file loads, and a tied vote goes to the smallest label", function()
  -- The documented format: header, labels, trees in preorder, FNV-1a trailer.
  -- Tree 1 splits on feature 1 at 0.5 (left: label 3, right: label 7); tree 2 always says 7.
  local body = string.pack("<i8i8", 3, 7)
    .. string.pack("<I1d", 1, 0.5) .. string.pack("<I1I1", 0, 1) .. string.pack("<I1I1", 0, 2)
    .. string.pack("<I1I1", 0, 2)
  local header = string.pack("<c9 B I4 I4 I4 B B I4", "SKYFOREST", 1,
    string.packsize("<c9 B I4 I4 I4 B B I4") + #body + 4, 1, 2, 1, 1, 2)
  local data = header .. body
  local h = 0x811c9dc5
  for i = 1, #data do h = ((h ~ data:byte(i)) * 0x01000193) & 0xffffffff end
  local tmp <close> = temp_files()
  local p = tmp:path("hand")
  write(p, data .. string.pack("<I4", h))
  local m = forest.load(p)
  t.eq(m:predict({ 0.0 }), 3)
  t.eq(m:predict({ 1.0 }), 7)
  local p2 = tmp:path("again")
  t.eq(m:save(p2), #data + 4)
  t.eq(read(p2), read(p))
end)

t.test("fit refuses malformed rows and unknown options, naming them", function()
  t.raises(function() return forest.fit({ { 1, 0 }, { 1, 2, 0 } }) end, "forest.fit: row 2 has 3 fields, expected 2")
  t.raises(function() return forest.fit({ { 1, 0 }, { "x", 1 } }) end, "forest.fit: row 2 field 1 is not a number")
  t.raises(function() return forest.fit({ { 1, 0.5 } }) end, "forest.fit: row 1: the label must be an integer")
  t.raises(function() return forest.fit({}) end, "forest.fit: rows must be a non-empty list")
  t.raises(function() return forest.fit(iris, { tree = 3 }) end, "forest.fit: unknown option 'tree'")
  t.raises(function() return forest.fit(iris, { features = 5 }) end, "option 'features' is 5 but the rows have 4 features")
  t.raises(function() return forest.fit(iris, { trees = 0 }) end, "option 'trees' must be an integer >= 1")
end)

t.test("predict raises naming a missing feature", function()
  local m = forest.fit(iris, { trees = 2 })
  t.raises(function() return m:predict({ 1, 2, 3 }) end, "forest: predict: field 4 is not a number")
end)

t.test("training on a worker gives the host's model, and the accuracy the worker measured", function()
  local tmp <close> = temp_files()
  local out = tmp:path("worker-model")
  local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 1 } }
  local train = sky.fn(function(lib, csv, path)
    local forest = dofile(lib)
    local rows = forest.read_csv(csv, { header = true })
    local m = forest.fit(rows, { trees = 100, seed = 42 })
    local bytes = m:save(path)
    return { samples = #rows, accuracy = m:accuracy(rows), model_bytes = bytes }
  end)
  local r = train(LIB, IRIS, out) >> pool
  t.eq(r.samples, 150)
  t.eq(r.model_bytes, #read(out))
  local m = forest.load(out)
  t.eq(m:accuracy(iris), r.accuracy)
  t.truthy(r.accuracy >= 0.95, "worker accuracy " .. r.accuracy)
  local here = tmp:path("host-model")
  forest.fit(iris, { trees = 100, seed = 42 }):save(here)
  t.truthy(read(here) == read(out), "the worker and the host trained different models")
end)

t.run()
