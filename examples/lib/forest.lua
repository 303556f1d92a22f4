-- forest: a random-forest classifier in plain Lua 5.4, the model the reference
-- pipeline trains on a worker and checks on the host. No C module: it runs on
-- the static skyrun-worker as on the host, and both give the same model, bit
-- for bit, for a seed (its own integer PRNG; math.random is never used).
--
--   local forest = require "forest"            -- or dofile "examples/lib/forest.lua"
--   local rows = forest.read_csv("examples/data/iris.csv", { header = true })
--   local m = forest.fit(rows, { trees = 100, seed = 42 })
--   print(m:predict(rows[1]), m:accuracy(rows), m:save("model.bin"))
--   local same = forest.load("model.bin")
--
-- Rows are lists of numbers whose last element is the class label (an
-- integer). A model is a table { nfeatures, labels (ascending), trees }
-- whose methods are predict, accuracy and save. Misuse (bad arguments, bad rows given to fit) raises with the
-- caller's position; trouble with a file raises a message that starts with
-- the function's name or the file's name and names the path.
local forest = {}

local math_type, tointeger, floor, sqrt = math.type, math.tointeger, math.floor, math.sqrt
local spack, sunpack, sbyte = string.pack, string.unpack, string.byte

--------------------------------------------------------------------------------
-- Random numbers: xoshiro256** seeded from splitmix64, on Lua's wrapping
-- 64-bit integers, so every Lua 5.4 draws the same sequence.

local GOLDEN = 0x9e3779b97f4a7c15 -- wraps to a negative integer; arithmetic wraps too

-- The k-th output (k >= 1) of splitmix64 started from seed.
local function splitmix64(seed, k)
  local z = seed + k * GOLDEN
  z = (z ~ (z >> 30)) * 0xbf58476d1ce4e5b9
  z = (z ~ (z >> 27)) * 0x94d049bb133111eb
  return z ~ (z >> 31)
end

-- Tree t draws from its own xoshiro256** stream, seeded with splitmix64
-- outputs 4t-3 .. 4t: the trees do not depend on each other's draws.
-- Returns below(n): a uniform integer in [0, n), for 1 <= n < 2^62.
local function tree_rng(seed, t)
  local s0, s1, s2, s3 = splitmix64(seed, 4 * t - 3), splitmix64(seed, 4 * t - 2),
                         splitmix64(seed, 4 * t - 1), splitmix64(seed, 4 * t)
  return function(n)
    while true do
      local x = s1 * 5
      local result = ((x << 7) | (x >> 57)) * 9
      local tt = s1 << 17
      s2 = s2 ~ s0; s3 = s3 ~ s1; s1 = s1 ~ s2; s0 = s0 ~ s3
      s2 = s2 ~ tt; s3 = (s3 << 45) | (s3 >> 19)
      local bits = result >> 1            -- 63 uniform bits, non-negative
      local v = bits % n
      -- Reject the incomplete last block of size n (the sum then wraps
      -- negative), so every value is equally likely.
      if bits - v + (n - 1) >= 0 then return v end
    end
  end
end

--------------------------------------------------------------------------------
-- Small helpers.

local function check_options(fname, opts, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("%s: options must be a table, got %s"):format(fname, type(opts)), 3)
  end
  for k in pairs(opts) do
    if not known[k] then error(("%s: unknown option '%s'"):format(fname, tostring(k)), 3) end
  end
  return opts
end

local function integer_option(fname, opts, name, default, min)
  local v = opts[name]
  if v == nil then return default end
  local i = tointeger(v)
  if not i or i < min then
    local bound = min == math.mininteger and "" or (" >= %d"):format(min)
    error(("%s: option '%s' must be an integer%s, got %s"):format(fname, name, bound, tostring(v)), 3)
  end
  return i
end

-- io.open's message starts with the path; keep only the reason.
local function reason(msg, path)
  msg = tostring(msg)
  if msg:sub(1, #path + 2) == path .. ": " then return msg:sub(#path + 3) end
  return msg
end

--------------------------------------------------------------------------------
-- CSV.

--- Reads a CSV file of numbers. opts.header = true skips its first non-blank
--- line. Returns a list of rows (lists of numbers); the last field of each
--- row is the class label, an integer. Blank lines are skipped; CRLF line
--- ends and a UTF-8 byte-order mark are tolerated. Raises "PATH:LINE: what"
--- for a malformed row and "forest.read_csv: cannot open PATH: reason".
function forest.read_csv(path, opts)
  if type(path) ~= "string" then
    error(("forest.read_csv: path must be a string, got %s"):format(type(path)), 2)
  end
  opts = check_options("forest.read_csv", opts, { header = true })
  local f, err = io.open(path, "rb")
  if not f then error(("forest.read_csv: cannot open %s: %s"):format(path, reason(err, path)), 0) end
  local text, rerr = f:read("a")
  f:close()
  if not text then error(("forest.read_csv: cannot read %s: %s"):format(path, tostring(rerr)), 0) end
  if text:sub(1, 3) == "\239\187\191" then text = text:sub(4) end

  local rows, width, skip_header = {}, nil, opts.header and true or false
  local lineno = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    if line:sub(-1) == "\r" then line = line:sub(1, -2) end
    if line:find("%S") then
      local fields = {}
      for field in (line .. ","):gmatch("([^,]*),") do fields[#fields + 1] = field end
      if skip_header then
        skip_header = false
        width = #fields
      else
        if not width then width = #fields end
        if width < 2 then
          error(("%s:%d: expected at least 2 fields (features and a label), got %d"):format(path, lineno, width), 0)
        end
        if #fields ~= width then
          error(("%s:%d: expected %d numeric fields, got %d"):format(path, lineno, width, #fields), 0)
        end
        local row = {}
        for i, field in ipairs(fields) do
          local v = tonumber(field)
          if not v then
            error(("%s:%d: field %d is not a number: %q"):format(path, lineno, i, field), 0)
          end
          row[i] = v
        end
        local label = tointeger(row[width])
        if not label then
          error(("%s:%d: the label (field %d) must be an integer, got %s"):format(path, lineno, width, fields[width]), 0)
        end
        row[width] = label
        rows[#rows + 1] = row
      end
    end
  end
  return rows
end

--------------------------------------------------------------------------------
-- Training.

-- Checks rows and turns them into columns: col[f][r] is feature f of row r,
-- y[r] the index of row r's label in the ascending list labels.
local function columns(rows)
  if type(rows) ~= "table" or #rows == 0 then
    error("forest.fit: rows must be a non-empty list of rows", 3)
  end
  local width = type(rows[1]) == "table" and #rows[1] or 0
  if width < 2 then
    error("forest.fit: row 1 must be a list of at least one feature and a label", 3)
  end
  local nfeat = width - 1
  local col = {}
  for f = 1, nfeat do col[f] = {} end
  local raw, seen, labels = {}, {}, {}
  for r, row in ipairs(rows) do
    if type(row) ~= "table" or #row ~= width then
      error(("forest.fit: row %d has %s fields, expected %d"):format(
        r, type(row) == "table" and tostring(#row) or "no", width), 3)
    end
    for f = 1, nfeat do
      local v = row[f]
      if type(v) ~= "number" then
        error(("forest.fit: row %d field %d is not a number (%s)"):format(r, f, type(v)), 3)
      elseif v ~= v then
        error(("forest.fit: row %d field %d is NaN"):format(r, f), 3)
      end
      col[f][r] = v + 0.0
    end
    local label = tointeger(row[width])
    if not label then
      error(("forest.fit: row %d: the label must be an integer, got %s"):format(r, tostring(row[width])), 3)
    end
    raw[r] = label
    if not seen[label] then seen[label] = true; labels[#labels + 1] = label end
  end
  if #rows ~= #raw then error("forest.fit: rows must be a list without holes", 3) end
  table.sort(labels)
  local index = {}
  for k, label in ipairs(labels) do index[label] = k end
  local y = {}
  for r = 1, #raw do y[r] = index[raw[r]] end
  return col, y, labels, nfeat
end

-- The class with the largest count, the smallest index on a tie.
local function majority(counts, nclasses)
  local best, bestk = -1, 1
  for k = 1, nclasses do
    if counts[k] > best then best, bestk = counts[k], k end
  end
  return bestk
end

-- A threshold between two distinct sorted values a < b: their midpoint,
-- or a itself when the midpoint rounds onto b or overflows.
local function midpoint(a, b)
  local m = (a + b) * 0.5
  if m >= a and m < b then return m end
  return a
end

-- Grows one tree on a bootstrap sample of the rows. Every split puts the
-- rows with x[feature] <= threshold on the left. Nodes are numbered in
-- preorder: a split's left child is the next node, right[i] its right one;
-- feature[i] == 0 marks a leaf whose value[i] is a class index.
--
-- The sample is kept as one array per feature, sorted by that feature
-- (from the presorted order); a node is a range [lo, hi] of every array,
-- holding the same rows in each, and a split partitions each range stably.
local function grow_tree(ctx, below)
  local n, nfeat, nclasses, col, y, order = ctx.n, ctx.nfeat, ctx.nclasses, ctx.col, ctx.y, ctx.order
  local mtry, min_split, max_depth = ctx.mtry, ctx.min_split, ctx.max_depth

  local w = {}
  for r = 1, n do w[r] = 0 end
  for _ = 1, n do
    local r = below(n) + 1
    w[r] = w[r] + 1
  end
  local sorted, m = {}, 0
  for f = 1, nfeat do
    local a, of, j = {}, order[f], 0
    for i = 1, n do
      local r = of[i]
      if w[r] > 0 then j = j + 1; a[j] = r end
    end
    sorted[f], m = a, j
  end

  local perm = {}
  for f = 1, nfeat do perm[f] = f end
  local counts, cl, cr, left, tmp = {}, {}, {}, {}, {}
  local feature, value, right, nn = {}, {}, {}, 0
  -- Pending nodes, popped in preorder: range, depth, and the split whose
  -- right child the node is (0 for a root or a left child).
  local s_lo, s_hi, s_depth, s_parent, top = { 1 }, { m }, { 0 }, { 0 }, 1

  while top > 0 do
    local lo, hi, depth, parent = s_lo[top], s_hi[top], s_depth[top], s_parent[top]
    top = top - 1
    nn = nn + 1
    right[nn] = 0
    if parent > 0 then right[parent] = nn end

    for k = 1, nclasses do counts[k] = 0 end
    local total, a1 = 0, sorted[1]
    for i = lo, hi do
      local r = a1[i]
      local k, wr = y[r], w[r]
      counts[k] = counts[k] + wr
      total = total + wr
    end
    local sum2, pure = 0, false
    for k = 1, nclasses do
      local c = counts[k]
      sum2 = sum2 + c * c
      if c == total then pure = true end
    end

    local best_f, best_thr, best_score, best_pos = 0, 0.0, -math.huge, 0
    if not pure and total >= min_split and (not max_depth or depth < max_depth) then
      -- Features in a random order (partial Fisher-Yates): try mtry of them,
      -- then more only while none of those tried can split this node.
      for i = 1, nfeat do
        if i > mtry and best_f ~= 0 then break end
        local j = i + below(nfeat - i + 1)
        perm[i], perm[j] = perm[j], perm[i]
        local f = perm[i]
        local a, x = sorted[f], col[f]
        for k = 1, nclasses do cl[k] = 0; cr[k] = counts[k] end
        -- Gini: minimising the weighted impurity of the two sides is
        -- maximising sumL2/wl + sumR2/wr, where sum*2 = sum of squared counts.
        local wl, suml2, sumr2 = 0, 0, sum2
        local xi = x[a[lo]]
        for p = lo, hi - 1 do
          local r = a[p]
          local k, wr = y[r], w[r]
          local c = cl[k]
          suml2 = suml2 + wr * (2 * c + wr)
          cl[k] = c + wr
          c = cr[k]
          sumr2 = sumr2 + wr * (wr - 2 * c)
          cr[k] = c - wr
          wl = wl + wr
          local xn = x[a[p + 1]]
          if xi < xn then
            local score = suml2 / wl + sumr2 / (total - wl)
            if score > best_score then
              best_score, best_f, best_thr, best_pos = score, f, midpoint(xi, xn), p
            end
          end
          xi = xn
        end
      end
    end

    if best_f == 0 then
      feature[nn], value[nn] = 0, majority(counts, nclasses)
    else
      feature[nn], value[nn] = best_f, best_thr
      local a = sorted[best_f]
      for p = lo, hi do left[a[p]] = p <= best_pos end
      for f = 1, nfeat do
        if f ~= best_f then
          local b, jl, jr = sorted[f], lo, 0
          for p = lo, hi do
            local r = b[p]
            if left[r] then b[jl] = r; jl = jl + 1 else jr = jr + 1; tmp[jr] = r end
          end
          for q = 1, jr do b[jl + q - 1] = tmp[q] end
        end
      end
      top = top + 1
      s_lo[top], s_hi[top], s_depth[top], s_parent[top] = best_pos + 1, hi, depth + 1, nn
      top = top + 1
      s_lo[top], s_hi[top], s_depth[top], s_parent[top] = lo, best_pos, depth + 1, 0
    end
  end
  return { feature = feature, value = value, right = right }
end

local Model = {}
Model.__index = Model

--- Trains a forest. opts: trees (100), seed (42; any integer), max_depth
--- (nil: unlimited; 0 makes every tree a single leaf), min_samples_split (2:
--- a node with fewer bootstrap draws is a leaf), features (floor(sqrt(number
--- of features)), at least 1: how many features each split considers).
--- Each tree sees a bootstrap sample of the rows; splits minimise Gini
--- impurity, thresholds lie midway between neighbouring distinct values.
function forest.fit(rows, opts)
  opts = check_options("forest.fit", opts,
    { trees = true, seed = true, max_depth = true, min_samples_split = true, features = true })
  local col, y, labels, nfeat = columns(rows)
  local ntrees = integer_option("forest.fit", opts, "trees", 100, 1)
  local seed = integer_option("forest.fit", opts, "seed", 42, math.mininteger)
  local max_depth = integer_option("forest.fit", opts, "max_depth", nil, 0)
  local min_split = integer_option("forest.fit", opts, "min_samples_split", 2, 2)
  local mtry = integer_option("forest.fit", opts, "features", math.max(1, floor(sqrt(nfeat))), 1)
  if mtry > nfeat then
    error(("forest.fit: option 'features' is %d but the rows have %d features"):format(mtry, nfeat), 2)
  end

  local n = #y
  local order = {}
  for f = 1, nfeat do
    local o, x = {}, col[f]
    for r = 1, n do o[r] = r end
    -- Ties broken by row number: a total order, so the result never
    -- depends on how the sort picks its pivots.
    table.sort(o, function(p, q)
      local xp, xq = x[p], x[q]
      if xp ~= xq then return xp < xq end
      return p < q
    end)
    order[f] = o
  end

  local ctx = { n = n, nfeat = nfeat, nclasses = #labels, col = col, y = y, order = order,
                mtry = mtry, min_split = min_split, max_depth = max_depth }
  local trees = {}
  for t = 1, ntrees do trees[t] = grow_tree(ctx, tree_rng(seed, t)) end
  return setmetatable({ nfeatures = nfeat, labels = labels, trees = trees }, Model)
end

--------------------------------------------------------------------------------
-- Prediction.

local function check_row(self, row, what, level)
  if type(row) ~= "table" then
    error(("forest: %s: expected a row (a table), got %s"):format(what, type(row)), level + 1)
  end
  for f = 1, self.nfeatures do
    local v = row[f]
    if type(v) ~= "number" then
      error(("forest: %s: field %d is not a number (%s); the model needs %d features"):format(
        what, f, type(v), self.nfeatures), level + 1)
    end
  end
end

local function vote(self, row, votes)
  local nclasses = #self.labels
  for k = 1, nclasses do votes[k] = 0 end
  for _, tree in ipairs(self.trees) do
    local feature, value, right = tree.feature, tree.value, tree.right
    local i = 1
    local f = feature[1]
    while f ~= 0 do
      if row[f] <= value[i] then i = i + 1 else i = right[i] end
      f = feature[i]
    end
    local k = value[i]
    votes[k] = votes[k] + 1
  end
  return self.labels[majority(votes, nclasses)]
end

--- The label most trees vote for (the smallest label on a tie). The row
--- needs the model's features first; anything after them is ignored.
function Model:predict(row)
  check_row(self, row, "predict", 2)
  return vote(self, row, {})
end

--- The fraction of rows, each features then label, predicted correctly.
function Model:accuracy(rows)
  if type(rows) ~= "table" or #rows == 0 then
    error("forest: accuracy: rows must be a non-empty list of rows", 2)
  end
  local votes, correct = {}, 0
  for r, row in ipairs(rows) do
    check_row(self, row, "accuracy: row " .. r, 2)
    if #row ~= self.nfeatures + 1 then
      error(("forest: accuracy: row %d has %d fields, expected %d (features and a label)"):format(
        r, #row, self.nfeatures + 1), 2)
    end
    if vote(self, row, votes) == row[#row] then correct = correct + 1 end
  end
  return correct / #rows
end

--------------------------------------------------------------------------------
-- Model files. Version 1, little-endian:
--
--   c9  "SKYFOREST"     B  version (1)         I4 file length, checksum included
--   I4  features        I4 classes             B  feature-index bytes F (1, 2, 4)
--   B   class-index bytes C (1, 2, 4)          I4 trees
--   classes x i8        the labels, ascending
--   every tree, its nodes in preorder (a split, its left subtree, its right):
--     I[F] feature, 0 for a leaf; then a leaf's I[C] class (1-based index
--     into the labels) or a split's d threshold (x <= threshold: left)
--   I4  FNV-1a (32-bit) of every byte before it

local MAGIC, VERSION = "SKYFOREST", 1
local HEADER = "<c9 B I4 I4 I4 B B I4"
local HEADER_SIZE = string.packsize(HEADER)

local function index_size(count)
  if count < 0x100 then return 1 elseif count < 0x10000 then return 2 else return 4 end
end

local function fnv1a32(s, last)
  local h = 0x811c9dc5
  for i = 1, last, 256 do
    local bytes = { sbyte(s, i, math.min(i + 255, last)) }
    for j = 1, #bytes do h = ((h ~ bytes[j]) * 0x01000193) & 0xffffffff end
  end
  return h
end

local function encode(self)
  local nfeat, labels, trees = self.nfeatures, self.labels, self.trees
  local fsz, csz = index_size(nfeat), index_size(#labels)
  local leaf_fmt, split_fmt = "<I" .. fsz .. "I" .. csz, "<I" .. fsz .. "d"
  local parts = { "" } -- the header, once the length is known
  for _, label in ipairs(labels) do parts[#parts + 1] = spack("<i8", label) end
  for _, tree in ipairs(trees) do
    local feature, value = tree.feature, tree.value
    for i = 1, #feature do
      local f = feature[i]
      parts[#parts + 1] = spack(f == 0 and leaf_fmt or split_fmt, f, value[i])
    end
  end
  local body = table.concat(parts)
  local length = HEADER_SIZE + #body + 4
  local data = spack(HEADER, MAGIC, VERSION, length, nfeat, #labels, fsz, csz, #trees) .. body
  return data .. spack("<I4", fnv1a32(data, #data))
end

--- Writes the model to path (through path .. ".tmp", renamed into place)
--- and returns the number of bytes written. Raises naming the path.
function Model:save(path)
  if type(path) ~= "string" then
    error(("forest: save: path must be a string, got %s"):format(type(path)), 2)
  end
  local data = encode(self)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then error(("forest.save: cannot write %s: %s"):format(tmp, reason(err, tmp)), 0) end
  local ok, werr = f:write(data)
  local closed, cerr = f:close()
  if not ok or not closed then
    os.remove(tmp)
    error(("forest.save: cannot write %s: %s"):format(tmp, tostring(werr or cerr)), 0)
  end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then
    os.remove(tmp)
    error(("forest.save: cannot rename %s to %s: %s"):format(tmp, path, reason(rerr, tmp)), 0)
  end
  return #data
end

-- Parses a model file's bytes; raises "what is wrong" (load adds the path).
local function decode(data)
  local header_size = HEADER_SIZE
  if #data == 0 then error("not a forest model (empty file)", 0) end
  if data:sub(1, #MAGIC) ~= MAGIC:sub(1, #data) then error("not a forest model", 0) end
  if #data < #MAGIC + 1 then error(("truncated (%d bytes)"):format(#data), 0) end
  local version = sbyte(data, #MAGIC + 1)
  if version ~= VERSION then error(("unsupported version %d"):format(version), 0) end
  if #data < header_size then error(("truncated (%d bytes)"):format(#data), 0) end
  local _, _, length, nfeat, nclasses, fsz, csz, ntrees, pos = sunpack(HEADER, data)
  if #data < length then error(("truncated (%d of %d bytes)"):format(#data, length), 0) end
  if #data > length then error(("corrupt (%d bytes after the end)"):format(#data - length), 0) end
  if length < header_size + 4 then error("corrupt (length too small)", 0) end
  local stored = sunpack("<I4", data, length - 3)
  if fnv1a32(data, length - 4) ~= stored then error("corrupt (checksum mismatch)", 0) end

  local stop = length - 4 -- last byte of the trees
  local function corrupt(what) error("corrupt (" .. what .. ")", 0) end
  if nfeat < 1 or nclasses < 1 or ntrees < 1 then corrupt("empty model") end
  if (fsz ~= 1 and fsz ~= 2 and fsz ~= 4) or (csz ~= 1 and csz ~= 2 and csz ~= 4) then
    corrupt("bad index size")
  end
  if nclasses * 8 > stop - pos + 1 then corrupt("label list runs past the end") end
  local labels = {}
  for k = 1, nclasses do
    labels[k], pos = sunpack("<i8", data, pos)
    if k > 1 and labels[k] <= labels[k - 1] then corrupt("labels not ascending") end
  end
  local ffmt, cfmt = "<I" .. fsz, "<I" .. csz
  local trees = {}
  for t = 1, ntrees do
    local feature, value, right, nn = {}, {}, {}, 0
    -- Slots to fill, in preorder: 0 for a root or left child, p for the right child of p.
    local slots, top = { 0 }, 1
    while top > 0 do
      local parent = slots[top]
      top = top - 1
      if pos + fsz - 1 > stop then corrupt(("tree %d ends early"):format(t)) end
      local f
      f, pos = sunpack(ffmt, data, pos)
      nn = nn + 1
      right[nn] = 0
      if parent > 0 then right[parent] = nn end
      if f == 0 then
        if pos + csz - 1 > stop then corrupt(("tree %d ends early"):format(t)) end
        local k
        k, pos = sunpack(cfmt, data, pos)
        if k < 1 or k > nclasses then corrupt(("tree %d: class %d out of range"):format(t, k)) end
        feature[nn], value[nn] = 0, k
      else
        if f > nfeat then corrupt(("tree %d: feature %d out of range"):format(t, f)) end
        if pos + 7 > stop then corrupt(("tree %d ends early"):format(t)) end
        local thr
        thr, pos = sunpack("<d", data, pos)
        if thr ~= thr then corrupt(("tree %d: NaN threshold"):format(t)) end
        feature[nn], value[nn] = f, thr
        slots[top + 1], slots[top + 2], top = nn, 0, top + 2
      end
    end
    trees[t] = { feature = feature, value = value, right = right }
  end
  if pos ~= stop + 1 then corrupt(("%d unread bytes after the trees"):format(stop + 1 - pos)) end
  return setmetatable({ nfeatures = nfeat, labels = labels, trees = trees }, Model)
end

--- Reads a model written by save. Raises "forest.load: PATH: what is wrong"
--- (not a forest model, truncated, unsupported version N, corrupt (...))
--- or "forest.load: cannot open PATH: reason".
function forest.load(path)
  if type(path) ~= "string" then
    error(("forest.load: path must be a string, got %s"):format(type(path)), 2)
  end
  local f, err = io.open(path, "rb")
  if not f then error(("forest.load: cannot open %s: %s"):format(path, reason(err, path)), 0) end
  local data, rerr = f:read("a")
  f:close()
  if not data then error(("forest.load: cannot read %s: %s"):format(path, tostring(rerr)), 0) end
  local ok, model = pcall(decode, data)
  if not ok then error(("forest.load: %s: %s"):format(path, tostring(model)), 0) end
  return model
end

return forest
