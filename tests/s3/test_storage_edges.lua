-- Storage edge cases from Lua against s3rver, each a regression test for a
-- defect that was found and fixed: arguments that would silently address
-- something other than an object (an empty key is the bucket itself: rm would
-- delete the bucket, put would create one), destination names near the file
-- system's limit, partial failures of prefix transfers.
local src = os.getenv("SKYRUN_SOURCE_DIR")
package.path = src .. "/tests/lua/?.lua;" .. src .. "/tests/s3/?.lua;" .. package.path
local t = require "testlib"
local h = require "s3testlib"
local st = h.storage()

t.test("an empty key is refused by every object operation and never reaches the bucket", function()
  local b = h.fresh_bucket(st, "edge-emptykey")
  local other = h.bucket_name("edge-emptykey-new")
  -- Without the check, rm(b, "") was DELETE /b: the (empty) bucket was deleted.
  t.raises(function() st:rm(b, "") end, "s3 rm", b, "key is needed")
  t.eq(#st:ls(b, ""), 0, "the bucket still answers a listing")
  -- put(other, "", …) was PUT /other: CreateBucket.
  t.raises(function() st:put(other, "", "x") end, "s3 put", other, "key is needed")
  t.raises(function() st:ls(other, "") end, "NoSuchBucket")
  -- get was a bucket listing returned as the object's bytes; exists was true.
  t.raises(function() st:get(b, "") end, "s3 get", "key is needed")
  t.raises(function() st:exists(b, "") end, "s3 head", "key is needed")
  t.raises(function() st:copy(b, "", b, "k") end, "s3 copy", "key is needed")
  t.raises(function() st:presign(b, "", { method = "DELETE" }) end, "s3 presign", "key is needed")
  t.raises(function() st:get("", "k") end, "no bucket name")
  t.raises(function() st:put(b, ("k"):rep(1025), "x") end, "at most 1024 bytes")
end)

t.test("a download to a destination whose name is near NAME_MAX works and leaves no temp file", function()
  local b = h.fresh_bucket(st, "edge-longname")
  st:put(b, "short.txt", "long destination")
  local dir = h.dir .. "/longname"
  h.sh("mkdir -p " .. h.q(dir))
  -- 250 bytes is a valid file name; name + ".skyrun-tmp-XXXXXX" is not.
  local name = ("n"):rep(250)
  t.eq(st:download(b, "short.txt", dir .. "/" .. name), 1, "files downloaded")
  t.eq(h.read_file(dir .. "/" .. name), "long destination", "destination")
  t.same(h.list_dir(dir), { name }, "files in the folder")
end)

os.exit = (function(exit) return function(...) h.cleanup(); exit(...) end end)(os.exit)
t.run()
