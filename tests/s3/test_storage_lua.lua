-- Storage from Lua against a real s3rver on loopback: every operation of a
-- storage object round-trips, listings page past 1,000 keys, prefix deletes
-- are batched, directories and multipart files come back byte for byte, and
-- failures raise errors that name the operation, bucket, key and S3 code
-- while leaving nothing half-done behind.
local src = os.getenv("SKYRUN_SOURCE_DIR")
package.path = src .. "/tests/lua/?.lua;" .. src .. "/tests/s3/?.lua;" .. package.path
local t = require "testlib"
local h = require "s3testlib"
local MiB = 1024 * 1024
local st = h.storage()

local function sorted(list)
  local copy = {}
  for i, v in ipairs(list) do copy[i] = v end
  table.sort(copy)
  return copy
end

-- ls returns key strings, or tables with a `key` field when details are asked.
local function keys_of(list)
  local keys = {}
  for i, v in ipairs(list) do keys[i] = type(v) == "table" and v.key or v end
  table.sort(keys)
  return keys
end

t.test("put then get returns the same bytes, binary and empty strings included", function()
  local b = h.fresh_bucket(st, "lua-putget")
  local binary = {}
  for i = 0, 255 do binary[#binary + 1] = string.char(i) end
  binary = table.concat(binary):rep(300)
  st:put(b, "bin/all-bytes", binary)
  st:put(b, "empty", "")
  st:put(b, "dir/with spaces & ünïcode.txt", "hello")
  t.eq(st:get(b, "bin/all-bytes"), binary, "binary object")
  t.eq(st:get(b, "empty"), "", "empty object")
  t.eq(st:get(b, "dir/with spaces & ünïcode.txt"), "hello", "key with spaces and UTF-8")
end)

t.test("exists is true for a stored key and false for a missing one", function()
  local b = h.fresh_bucket(st, "lua-exists")
  st:put(b, "here", "x")
  t.eq(st:exists(b, "here"), true, "stored key")
  t.eq(st:exists(b, "not-here"), false, "missing key")
end)

t.test("copy duplicates an object under a new key and keeps the source", function()
  local b = h.fresh_bucket(st, "lua-copy")
  local b2 = h.fresh_bucket(st, "lua-copy-dst")
  st:put(b, "src", "payload")
  st:copy(b, "src", b2, "nested/dst")
  t.eq(st:get(b2, "nested/dst"), "payload", "copy")
  t.eq(st:get(b, "src"), "payload", "source")
end)

t.test("rm of one key removes it and leaves its neighbours", function()
  local b = h.fresh_bucket(st, "lua-rm")
  st:put(b, "a/1", "1")
  st:put(b, "a/2", "2")
  st:rm(b, "a/1")
  t.eq(st:exists(b, "a/1"), false, "removed key")
  t.eq(st:exists(b, "a/2"), true, "neighbour")
end)

t.test("ls with a prefix lists only the keys under it, with sizes when details are asked", function()
  local b = h.fresh_bucket(st, "lua-ls")
  st:put(b, "logs/a.txt", "aa")
  st:put(b, "logs/b.txt", "bbbb")
  st:put(b, "logsX/c.txt", "c")
  st:put(b, "other/d.txt", "d")
  t.same(keys_of(st:ls(b, "logs/", { recursive = true })), { "logs/a.txt", "logs/b.txt" })
  local details = st:ls(b, "logs/", { recursive = true, details = true })
  local sizes = {}
  for _, o in ipairs(details) do sizes[o.key] = o.size end
  t.same(sizes, { ["logs/a.txt"] = 2, ["logs/b.txt"] = 4 })
end)

t.test("upload of a file then download gives a byte-identical file", function()
  local b = h.fresh_bucket(st, "lua-file")
  local path = h.random_file("small.bin", 300 * 1024 + 7)
  st:upload(b, path, { key = "data/small.bin" })
  local back = h.dir .. "/small.back"
  st:download(b, "data/small.bin", back)
  t.truthy(h.same_file(path, back), "downloaded bytes differ from the uploaded file")
end)

t.test("multipart upload of a file larger than part_size round-trips byte for byte", function()
  local big <close> = h.storage({ part_size = 5 * MiB, parallel = 4 })
  local b = h.fresh_bucket(big, "lua-multipart")
  local path = h.random_file("mp.bin", 25 * MiB + 12345)
  big:upload(b, path, { key = "mp.bin" })
  local info = big:ls(b, "mp.bin", { recursive = true, details = true })
  t.eq(#info, 1, "one object")
  t.eq(info[1].size, 25 * MiB + 12345, "object size")
  -- Parallel ranged GETs: the download is split in part_size ranges.
  local back = h.dir .. "/mp.back"
  big:download(b, "mp.bin", back)
  t.truthy(h.same_file(path, back), "ranged parallel download differs from the original")
end)

-- 1,005 keys under one prefix plus a neighbour, created once for the two
-- tests that need more than one page (S3 pages at 1,000 keys).
local many_bucket
local function bucket_with_many_keys()
  if many_bucket then return many_bucket end
  many_bucket = h.fresh_bucket(st, "lua-many")
  local dir = h.dir .. "/many"
  h.sh("mkdir -p " .. h.q(dir))
  for i = 1, 1005 do h.write_file(("%s/k%04d"):format(dir, i), tostring(i)) end
  st:upload(many_bucket, dir, { key = "many/" })
  st:put(many_bucket, "keep/this", "neighbour")
  return many_bucket
end

t.test("ls pages past 1,000 keys and returns every key exactly once", function()
  local b = bucket_with_many_keys()
  local keys = keys_of(st:ls(b, "many/", { recursive = true }))
  t.eq(#keys, 1005, "number of keys")
  for i = 1, 1005 do t.eq(keys[i], ("many/k%04d"):format(i)) end
end)

t.test("rm of a prefix with more than 1,000 keys deletes them all (batched) and nothing else", function()
  local b = bucket_with_many_keys()
  st:rm(b, "many/", { recursive = true })
  t.eq(#st:ls(b, "many/", { recursive = true }), 0, "keys left under the prefix")
  t.eq(st:get(b, "keep/this"), "neighbour", "key outside the prefix")
end)

t.test("directory upload and recursive download reproduce the tree", function()
  local b = h.fresh_bucket(st, "lua-dir")
  local tree = h.dir .. "/tree"
  h.sh(("mkdir -p %s/a/b/c"):format(h.q(tree)))
  h.write_file(tree .. "/top.txt", "top")
  h.write_file(tree .. "/a/one.txt", "one")
  h.write_file(tree .. "/a/b/c/deep.bin", ("\0\1\2"):rep(1000))
  h.write_file(tree .. "/a/b/empty", "")
  st:upload(b, tree, { key = "snap/" })
  t.same(keys_of(st:ls(b, "snap/", { recursive = true })),
         { "snap/a/b/c/deep.bin", "snap/a/b/empty", "snap/a/one.txt", "snap/top.txt" })
  local back = h.dir .. "/tree.back"
  st:download(b, "snap/", back)
  t.truthy(h.ok(("diff -r %s %s"):format(h.q(tree), h.q(back))), "downloaded tree differs")
end)

t.test("a presigned GET URL can be fetched by curl without credentials", function()
  local b = h.fresh_bucket(st, "lua-presign")
  st:put(b, "shared/report.txt", "presigned content")
  local url = st:presign(b, "shared/report.txt", { expires = 300 })
  t.contains(url, "X-Amz-Signature=", "presigned URL")
  t.eq(h.sh("curl -sf --max-time 20 " .. h.q(url)), "presigned content")
end)

t.test("a presigned PUT URL lets curl upload an object", function()
  local b = h.fresh_bucket(st, "lua-presign-put")
  local url = st:presign(b, "incoming.txt", { method = "PUT", expires = 300 })
  local path = h.dir .. "/incoming.txt"
  h.write_file(path, "uploaded with curl")
  h.sh(("curl -sf --max-time 20 -T %s %s"):format(h.q(path), h.q(url)))
  t.eq(st:get(b, "incoming.txt"), "uploaded with curl")
end)

t.test("create_bucket makes a usable bucket and delete_bucket removes it", function()
  local name = h.bucket_name("lua-bucket")
  st:create_bucket(name)
  st:put(name, "k", "v")
  st:rm(name, "k")
  st:delete_bucket(name)
  t.raises(function() st:ls(name, "") end, name, "NoSuchBucket")
end)

t.test("a storage object declared <close> works in its scope and refuses use after it", function()
  local b = h.fresh_bucket(st, "lua-close")
  local escaped
  do
    local scoped <close> = h.storage()
    scoped:put(b, "k", "inside")
    t.eq(scoped:get(b, "k"), "inside")
    escaped = scoped
  end
  t.raises(function() escaped:get(b, "k") end, "closed")
  t.eq(st:get(b, "k"), "inside", "the object outlives the storage handle")
end)

-- Errors ---------------------------------------------------------------------

t.test("get from a missing bucket raises NoSuchBucket naming the bucket and key", function()
  local name = h.bucket_name("lua-nobucket")
  t.raises(function() st:get(name, "some/key") end, "NoSuchBucket", name, "some/key")
end)

t.test("get of a missing key raises NoSuchKey naming the bucket and key", function()
  local b = h.fresh_bucket(st, "lua-nokey")
  t.raises(function() st:get(b, "missing/key.txt") end, "NoSuchKey", b, "missing/key.txt")
end)

t.test("download of a missing key raises NoSuchKey and creates no file", function()
  local b = h.fresh_bucket(st, "lua-nokey-dl")
  local dest = h.dir .. "/nokey-dest/file.bin"
  h.sh("mkdir -p " .. h.q(h.dir .. "/nokey-dest"))
  t.raises(function() st:download(b, "absent.bin", dest) end, "NoSuchKey", b, "absent.bin")
  t.same(h.list_dir(h.dir .. "/nokey-dest"), {}, "files left in the destination directory")
end)

t.test("a failed download leaves an existing destination file untouched", function()
  local b = h.fresh_bucket(st, "lua-keep-dest")
  local dest = h.dir .. "/precious.txt"
  h.write_file(dest, "old content")
  t.raises(function() st:download(b, "absent.txt", dest) end, "NoSuchKey")
  t.eq(h.read_file(dest), "old content", "destination")
end)

t.test("an unknown access key raises InvalidAccessKeyId naming the bucket, without the secret", function()
  local secret = "LuaSecretThatMustNeverShow-7c1e"
  local bad = h.storage({ access_key = "NOT-A-KEY", secret_key = secret })
  local msg = t.raises(function() bad:get("any-bucket-x", "k") end, "InvalidAccessKeyId", "any-bucket-x")
  t.truthy(not msg:find(secret, 1, true), "the error message contains the secret key")
end)

t.test("an unreachable endpoint raises an error naming the endpoint, bucket and key", function()
  -- Port 1 on loopback: nothing listens there, connections are refused at once.
  local dead = h.storage({ endpoint = "http://127.0.0.1:1", retries = 0 })
  t.raises(function() dead:get("some-bucket", "some/key") end, "127.0.0.1:1", "some-bucket", "some/key")
end)

t.test("retries counts the attempts after the first: 0 is one attempt, the default is 4", function()
  -- Refused connections are retried; the message says how many attempts were made.
  local function attempts(opts)
    local dead = h.storage(opts)
    local msg = t.raises(function() dead:get("some-bucket", "k") end, "127.0.0.1:1")
    dead:close()
    return tonumber(msg:match("after (%d+) attempts")) or 1
  end
  t.eq(attempts({ endpoint = "http://127.0.0.1:1", retries = 0 }), 1, "attempts with retries = 0")
  t.eq(attempts({ endpoint = "http://127.0.0.1:1", retries = 2 }), 3, "attempts with retries = 2")
  t.eq(attempts({ endpoint = "http://127.0.0.1:1" }), 5, "attempts by default")
  t.raises(function() h.storage({ retries = -1 }) end, "retries", "0 to 20")
end)

t.test("upload of a missing local file raises naming the path and creates no object", function()
  local b = h.fresh_bucket(st, "lua-nofile")
  local missing = h.dir .. "/does-not-exist.bin"
  t.raises(function() st:upload(b, missing, { key = "x.bin" }) end, missing)
  t.eq(st:exists(b, "x.bin"), false, "object created by a failed upload")
end)

-- testlib.run() ends the process: remove the scratch directory on the way out.
local exit = os.exit
os.exit = function(...) h.cleanup(); exit(...) end
t.run()
