-- st:sync and st:mv from Lua against a real s3rver: every direction, a
-- second run that copies nothing, --delete, dry runs that change nothing,
-- filters in order, checksum mode, a move that empties its source, the
-- summary table, and errors that name what failed. tests/s3/test_sync.sh
-- covers the CLI and aws-cli interop.
local src = os.getenv("SKYRUN_SOURCE_DIR")
package.path = src .. "/tests/lua/?.lua;" .. src .. "/tests/s3/?.lua;" .. package.path
local t = require "testlib"
local h = require "s3testlib"
local st = h.storage()

-- A folder with a few files whose times are an hour in the past, so every
-- upload is newer than its file whatever the clock's sub-second phase.
local function make_tree(name, files)
  local dir = h.dir .. "/" .. name
  for path, data in pairs(files) do
    local full = dir .. "/" .. path
    h.sh("mkdir -p " .. h.q(full:match("^(.*)/[^/]*$")))
    h.write_file(full, data)
    h.sh("touch -d '-1 hour' " .. h.q(full))
  end
  h.sh("mkdir -p " .. h.q(dir))
  return dir
end

local function ops(summary)
  local out = {}
  for i, a in ipairs(summary.actions) do out[i] = a.op .. " " .. a.from .. (a.to and (" " .. a.to) or "") end
  table.sort(out)
  return out
end

local function keys(b, prefix)
  local list = st:ls(b, prefix or "")
  table.sort(list)
  return list
end

t.test("a folder syncs up, a second sync copies nothing, and the summary says so", function()
  local b = h.fresh_bucket(st, "lsync-up")
  local dir = make_tree("up", { ["a.txt"] = "a", ["d/b.txt"] = "bb", ["d/e/c.txt"] = "ccc" })
  local s = st:sync(dir, "s3://" .. b .. "/pre")
  t.eq(s.copied, 3, "copied")
  t.eq(s.bytes, 6, "bytes")
  t.same(ops(s), { "upload " .. dir .. "/a.txt s3://" .. b .. "/pre/a.txt",
                   "upload " .. dir .. "/d/b.txt s3://" .. b .. "/pre/d/b.txt",
                   "upload " .. dir .. "/d/e/c.txt s3://" .. b .. "/pre/d/e/c.txt" }, "actions")
  t.same(keys(b), { "pre/a.txt", "pre/d/b.txt", "pre/d/e/c.txt" }, "keys")
  local again = st:sync(dir, "s3://" .. b .. "/pre/")
  t.eq(again.copied, 0, "copied by the second run")
  t.eq(again.unchanged, 3, "unchanged")
  t.eq(#again.actions, 0, "actions of the second run")
end)

t.test("a prefix syncs down with the objects' times, and back up copies nothing", function()
  local b = h.fresh_bucket(st, "lsync-down")
  st:put(b, "p/x.txt", "xx")
  st:put(b, "p/y/z.txt", "zzz")
  local out = h.dir .. "/down/new-folder"
  local s = st:sync("s3://" .. b .. "/p", out)
  t.eq(s.copied, 2, "copied")
  t.eq(h.read_file(out .. "/y/z.txt"), "zzz", "content")
  local listed = st:ls(b, "p/x.txt", { details = true })[1]
  t.eq(tonumber(h.sh("stat -c %Y " .. h.q(out .. "/x.txt")):match("%d+")), listed.mtime,
       "the file's mtime is the object's LastModified")
  t.eq(st:sync("s3://" .. b .. "/p", out).copied, 0, "second download")
  t.eq(st:sync(out, "s3://" .. b .. "/p").copied, 0, "upload of what was downloaded")
end)

t.test("a prefix syncs to another bucket and a second run copies nothing", function()
  local b = h.fresh_bucket(st, "lsync-s3s3")
  local b2 = h.fresh_bucket(st, "lsync-s3s3-dst")
  st:put(b, "src/1", "one")
  st:put(b, "src/2/3", "three")
  st:put(b, "src-not-this/4", "no")
  t.eq(st:sync("s3://" .. b .. "/src", "s3://" .. b2 .. "/copy").copied, 2, "copied")
  t.same(keys(b2), { "copy/1", "copy/2/3" }, "keys")
  t.eq(st:get(b2, "copy/2/3"), "three", "content")
  t.eq(st:sync("s3://" .. b .. "/src", "s3://" .. b2 .. "/copy").copied, 0, "second run")
end)

t.test("a changed size is copied again; delete removes what the source lacks, a dry run nothing", function()
  local b = h.fresh_bucket(st, "lsync-delete")
  local dir = make_tree("del", { keep = "k", gone = "g", ["sub/gone2"] = "g2" })
  st:sync(dir, "s3://" .. b)
  os.remove(dir .. "/gone")
  os.remove(dir .. "/sub/gone2")
  h.write_file(dir .. "/keep", "longer now")
  local dry = st:sync(dir, "s3://" .. b, { delete = true, dryrun = true })
  t.same(ops(dry), { "delete s3://" .. b .. "/gone", "delete s3://" .. b .. "/sub/gone2",
                     "upload " .. dir .. "/keep s3://" .. b .. "/keep" }, "dry-run actions")
  t.same(keys(b), { "gone", "keep", "sub/gone2" }, "keys after the dry run")
  t.eq(st:get(b, "keep"), "k", "content after the dry run")
  local s = st:sync(dir, "s3://" .. b, { delete = true })
  t.eq(s.deleted, 2, "deleted")
  t.same(keys(b), { "keep" }, "keys")
  t.eq(st:get(b, "keep"), "longer now", "content")
end)

t.test("exclude and include decide in order; excluded objects are never deleted", function()
  local b = h.fresh_bucket(st, "lsync-filters")
  local dir = make_tree("filters", { ["a.txt"] = "1", ["b.log"] = "2", ["logs/c.txt"] = "3", ["d.bin"] = "4" })
  st:put(b, "old.log", "stays: excluded")
  st:put(b, "old.txt", "goes")
  local s = st:sync(dir, "s3://" .. b, { delete = true, exclude = { "*.log", "logs/*" } })
  t.same(keys(b), { "a.txt", "d.bin", "old.log" }, "keys")
  t.eq(s.excluded, 2, "excluded")
  local b2 = h.fresh_bucket(st, "lsync-filters2")
  st:sync(dir, "s3://" .. b2, { exclude = { "*" }, include = { "*.txt" } })
  t.same(keys(b2), { "a.txt", "logs/c.txt" }, "exclude everything, include *.txt ('*' crosses '/')")
  local b3 = h.fresh_bucket(st, "lsync-filters3")
  st:sync(dir, "s3://" .. b3, { filters = { { include = "*.txt" }, { exclude = "logs/*" } } })
  t.same(keys(b3), { "a.txt", "b.log", "d.bin" }, "filters in their own order")
end)

t.test("checksum mode copies a same-size file whose content changed, even when older", function()
  local b = h.fresh_bucket(st, "lsync-checksum")
  local dir = make_tree("sum", { f = "aaaa", g = "same" })
  st:sync(dir, "s3://" .. b)
  h.write_file(dir .. "/f", "bbbb")
  h.sh("touch -d '-2 hours' " .. h.q(dir .. "/f"))
  t.eq(st:sync(dir, "s3://" .. b).copied, 0, "by size and time: up to date")
  local s = st:sync(dir, "s3://" .. b, { checksum = true })
  t.same(ops(s), { "upload " .. dir .. "/f s3://" .. b .. "/f" }, "checksum actions")
  t.eq(st:get(b, "f"), "bbbb", "content")
  t.eq(st:sync(dir, "s3://" .. b, { checksum = true }).copied, 0, "checksum second run")
end)

t.test("mv moves a folder's files up and a prefix down, deleting each source", function()
  local b = h.fresh_bucket(st, "lsync-mv")
  local dir = make_tree("mv", { ["1"] = "one", ["x/2"] = "two", ["skip.tmp"] = "t" })
  local s = st:mv(dir, "s3://" .. b .. "/m", { exclude = { "*.tmp" } })
  t.eq(s.copied, 2, "moved")
  t.same(keys(b), { "m/1", "m/x/2" }, "keys")
  t.eq(h.exists(dir .. "/1"), false, "moved file still there")
  t.eq(h.exists(dir .. "/skip.tmp"), true, "excluded file gone")
  local out = h.dir .. "/mv-back"
  st:mv("s3://" .. b .. "/m", out)
  t.same(keys(b), {}, "keys after moving down")
  t.eq(h.read_file(out .. "/x/2"), "two", "content")
end)

t.test("failures name what failed: a missing bucket, a source that is no folder, bad options", function()
  local dir = make_tree("err", { f = "x" })
  t.raises(function() st:sync(dir, "s3://no-such-bucket-" .. h.bucket_name("x")) end, "NoSuchBucket")
  t.raises(function() st:sync(dir .. "/f", "s3://whatever") end, dir .. "/f is not a folder")
  t.raises(function() st:sync(dir, h.dir) end, "must be an s3:// URL")
  t.raises(function() st:sync(dir, "s3://b", { exclude = { 1 } }) end, "exclude[1] must be a string")
  t.raises(function() st:sync(dir, "s3://b", { filters = { "x" } }) end, "filters[1]")
end)

-- testlib.run() ends the process: remove the scratch directory on the way out.
local exit = os.exit
os.exit = function(...) h.cleanup(); exit(...) end
t.run()
