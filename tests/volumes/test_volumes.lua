-- Volumes and images on a localhost pool, against the suite's real s3rver,
-- with real s3fs mounts (mode "mount") and real copies (mode "copy"): what
-- a function sees, what it may not do, where its writes end up, and the
-- error each bad volume or image gets before any node starts.
--
-- Mount points are unique to this run (/skyrun-test-…/data), so test files
-- running at the same time never share one.
package.path = os.getenv("SKYRUN_SOURCE_DIR") .. "/tests/lua/?.lua;"
  .. os.getenv("SKYRUN_SOURCE_DIR") .. "/tests/s3/?.lua;" .. package.path
local t = require "testlib"
local s3t = require "s3testlib"
local sky = require "sky"

local st = s3t.storage()
local root = "/skyrun-test-" .. s3t.dir:match("%.(%w+)$"):lower()
local modes = { "mount", "copy" }

local function bucket_with(what, files)
  local b = s3t.fresh_bucket(st, what)
  for key, body in pairs(files or {}) do st:put(b, key, body) end
  return b
end

local function pool_with(volumes, extra)
  local o = { provider = sky.providers.localhost { nodes = (extra or {}).nodes or 1 }, volumes = volumes }
  for k, v in pairs(extra or {}) do if k ~= "nodes" then o[k] = v end end
  return sky.compute(o)
end

local read_file = sky.fn(function(path)
  local f, err = io.open(path)
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  return s
end)

local write_file = sky.fn(function(path, body)
  local f, err = io.open(path, "w")
  if not f then error(err, 0) end
  f:write(body)
  f:close()
  return true
end)

local list = sky.fn(function(dir)
  local p = io.popen("ls -A " .. dir .. " 2>&1")
  local s = p:read("a")
  p:close()
  return s
end)

for _, mode in ipairs(modes) do
  t.test(mode .. ": a read-only volume shows the prefix as files and refuses writes, for root too", function()
    local b = bucket_with("ro-" .. mode, { ["in/a.txt"] = "alpha", ["in/sub/b.txt"] = "beta" })
    local mount = root .. "/ro-" .. mode
    local pool <close> = pool_with({ sky.volume { bucket = b, prefix = "in/", mount = mount, storage = st, mode = mode } })
    t.eq(read_file(mount .. "/a.txt") >> pool, "alpha")
    t.eq(read_file(mount .. "/sub/b.txt") >> pool, "beta")
    t.raises(function() return write_file(mount .. "/new.txt", "x") >> pool end, "Read-only file system", "remote error")
    t.raises(function() return write_file(mount .. "/a.txt", "x") >> pool end, "Read-only file system")
    t.eq(st:get(b, "in/a.txt"), "alpha")
  end)

  t.test(mode .. ": a file outside the prefix is invisible", function()
    local b = bucket_with("scope-" .. mode, { ["in/a.txt"] = "alpha", ["out/secret.txt"] = "no", ["top.txt"] = "no" })
    local mount = root .. "/scope-" .. mode
    local pool <close> = pool_with({ sky.volume { bucket = b, prefix = "/in//", mount = mount, storage = st, mode = mode } })
    t.eq((list(mount) >> pool):gsub("%s+$", ""), "a.txt")
    local missing, err = pool:run(read_file(mount .. "/../out/secret.txt"))
    t.eq(missing, nil)
    t.contains(err, "No such file")
  end)

  t.test(mode .. ": a file a function wrote is an object when the pool's close returns", function()
    local b = bucket_with("rw-" .. mode, { ["exp/old.txt"] = "old", ["exp/gone.txt"] = "bye" })
    local mount = root .. "/rw-" .. mode
    do
      local pool <close> = pool_with({ sky.volume { bucket = b, prefix = "exp", mount = mount, read_only = false,
                                                    storage = st, mode = mode } })
      t.truthy(write_file(mount .. "/model.bin", "weights") >> pool)
      t.truthy(write_file(mount .. "/old.txt", "new") >> pool)
      t.truthy(sky.fn(function(p) return os.remove(p) end)(mount .. "/gone.txt") >> pool)
    end
    t.eq(st:get(b, "exp/model.bin"), "weights")
    t.eq(st:get(b, "exp/old.txt"), "new")
    t.eq(st:exists(b, "exp/gone.txt"), false, "a file removed on the node is removed from the bucket")
  end)

  t.test(mode .. ": two nodes have mounts of their own and the host has none", function()
    local b = bucket_with("nodes-" .. mode, {})
    local mount = root .. "/nodes-" .. mode
    local pool <close> = pool_with({ sky.volume { bucket = b, prefix = "", mount = mount, read_only = false,
                                                  storage = st, mode = mode } }, { nodes = 2 })
    local who = sky.fn(function(m)
      local f = io.open("/proc/self/mountinfo")
      local info = f:read("a")
      f:close()
      for line in info:gmatch("[^\n]+") do
        local id, point = line:match("^(%d+) %d+ [^ ]+ [^ ]+ ([^ ]+)")
        if point == m then return id end
      end
    end)
    local ids = pool:broadcast(who(mount))
    t.truthy(ids[1] and ids[2], "each node has the volume mounted")
    t.truthy(ids[1] ~= ids[2], "the nodes' mounts are not the same mount")
    local host = io.open("/proc/self/mountinfo"):read("a")
    t.truthy(not host:find(" " .. mount .. " ", 1, true), "the host's mount table has no volume")
    -- A write on node 0 reaches node 1 only through S3 (never a shared folder).
    t.truthy(pool:run(sky.fn(function(p) local f = io.open(p, "w"); f:write("from node 0"); f:close(); return true end)(mount .. "/n0.txt")))
    local on_node = sky.fn(function(p) local f = io.open(p); if not f then return false end; local s = f:read("a"); f:close(); return s end)
    if mode == "mount" then
      -- the object is in the bucket as soon as the file is closed
      t.eq(st:get(b, "n0.txt"), "from node 0")
    end
    local seen = pool:broadcast(on_node(mount .. "/n0.txt"))
    t.eq(#seen, 2)
  end)
end

t.test("mount: an image's includes, env and setup reach the workers", function()
  local b = bucket_with("image", { ["d/x"] = "x" })
  local lib = s3t.dir .. "/mylib"
  s3t.sh("mkdir -p " .. s3t.q(lib .. "/pkg") .. " && printf 'return { answer = 42 }' > " .. s3t.q(lib .. "/pkg/init.lua")
    .. " && printf 'return \"single\"' > " .. s3t.q(s3t.dir .. "/single.lua"))
  local pool <close> = sky.compute {
    provider = sky.providers.localhost { nodes = 2 },
    image = sky.image { env = { SKY_TEST_VALUE = "v1" }, includes = { lib, s3t.dir .. "/single.lua" },
                        setup = { "echo prepared > prepared.txt" } },
    volumes = { sky.volume { bucket = b, prefix = "d/", mount = root .. "/img", storage = st } },
  }
  local probe = sky.fn(function()
    local f = io.open("prepared.txt")
    return os.getenv("SKY_TEST_VALUE"), require("mylib.pkg").answer, require("single"), f and f:read("l")
  end)
  local env, answer, single, prepared = pool:run(probe())
  t.eq(env, "v1")
  t.eq(answer, 42)
  t.eq(single, "single")
  t.eq(prepared, "prepared")
end)

t.test("includes are shipped only when their content changed", function()
  local lib = s3t.dir .. "/shipped.lua"
  local function write(body) s3t.sh("printf %s " .. s3t.q(body) .. " > " .. s3t.q(lib)) end
  local stamp = sky.fn(function()
    local dir = package.path:match("^([^;]*)/%?%.lua")
    local p = io.popen("stat -c %Y.%i " .. dir)
    local s = p:read("l")
    p:close()
    return require("shipped"), dir, s
  end)
  write("return 1")
  local function run()
    local pool <close> = sky.compute { image = sky.image { includes = { lib } } }
    return pool:run(stamp())
  end
  local v1, dir1, stamp1 = run()
  local v2, dir2, stamp2 = run()
  t.eq(v1, 1)
  t.eq(v2, 1)
  t.eq(dir1, dir2)
  t.eq(stamp1, stamp2, "the same content is not shipped again")
  write("return 2")
  local v3, dir3 = run()
  t.eq(v3, 2)
  t.truthy(dir3 ~= dir1, "changed content goes to a new folder")
end)

t.test("bad volumes are refused before any node starts, each naming what is wrong", function()
  local b = bucket_with("bad", {})
  local function bad(opts, ...)
    local v = sky.volume(opts)
    return t.raises(function() return sky.compute { volumes = { v } } end, ...)
  end
  bad({ bucket = b, mount = "data", storage = st }, "mount 'data' must be an absolute path")
  bad({ bucket = b, mount = "/", storage = st }, "must not be / or a system folder")
  bad({ bucket = b, mount = "/etc/skyrun", storage = st }, "system folder")
  bad({ bucket = b, mount = "/usr", storage = st }, "system folder")
  bad({ bucket = b, mount = root .. "/x/../y", storage = st }, "must not contain '.' or '..'")
  bad({ bucket = b, prefix = "a/../../b", mount = root .. "/p", storage = st }, "prefix 'a/../../b'", "could escape")
  bad({ bucket = "no-such-bucket-" .. s3t.bucket_name("x"), mount = root .. "/nb", storage = st },
    "does not exist (NoSuchBucket)", "no-such-bucket-")
  bad({ bucket = b, mount = root .. "/creds", storage = s3t.storage { access_key = "NOT-A-KEY" } },
    "cannot list bucket '" .. b .. "'", "InvalidAccessKeyId")
  local v1 = sky.volume { bucket = b, mount = root .. "/same", storage = st }
  local v2 = sky.volume { bucket = b, mount = root .. "/same/", storage = st }
  t.raises(function() return sky.compute { volumes = { v1, v2 } } end, "volumes 1 and 2 both mount at " .. root .. "/same")
  local v3 = sky.volume { bucket = b, mount = root .. "/same/inner", storage = st }
  t.raises(function() return sky.compute { volumes = { v1, v3 } } end, "nested")
  t.raises(function() return sky.volume { bucket = b, mount = "/x", mode = "fuse" } end, "mode must be")
  t.raises(function() return sky.volume { bucket = b, mount = "/x", readonly = true } end, "unknown option 'readonly'")
end)

t.test("a mount point that is not empty is refused, and one that had to be created is removed", function()
  local b = bucket_with("mp", { ["k"] = "v" })
  local full = root .. "/full"
  s3t.sh("mkdir -p " .. s3t.q(full) .. " && touch " .. s3t.q(full .. "/keep"))
  t.raises(function()
    return sky.compute { volumes = { sky.volume { bucket = b, mount = full, storage = st } } }
  end, "node 0", "not empty")
  t.truthy(s3t.ok("test -e " .. s3t.q(full .. "/keep")), "nothing of the user's was touched")
  s3t.sh("rm -rf " .. s3t.q(full))
  local made = root .. "/made/deeper"
  do
    local pool <close> = sky.compute { volumes = { sky.volume { bucket = b, mount = made, storage = st } } }
    t.eq(read_file(made .. "/k") >> pool, "v")
  end
  t.truthy(not s3t.ok("test -e " .. s3t.q(root .. "/made")), "the created mount point is gone")
end)

t.test("bad images are refused, naming the node and the phase", function()
  t.raises(function() return sky.compute { image = sky.image { apt = { "lua5.4", "no-such-package-skyrun" } } } end,
    "node 0", "image.apt", "no-such-package-skyrun", "does not install packages")
  local msg = t.raises(function()
    return sky.compute { image = sky.image { setup = { "true", "echo step two says hi; exit 7" } } }
  end, "node 0", "image setup command 2", "exited with status 7", "step two says hi")
  t.truthy(not msg:find("setup command 1", 1, true))
  t.raises(function() return sky.compute { image = sky.image { includes = { s3t.dir .. "/no-such.lua" } } } end,
    "image.includes", "no-such.lua", "No such file")
  t.raises(function() return sky.image { env = { ["bad name"] = "x" } } end, "not a valid variable name")
  t.raises(function() return sky.compute { image = sky.image { apt = { "rm -rf" } } } end, "'rm -rf' is not a package name")
  t.raises(function() return sky.image { setup = { 1 } } end, "setup[1]")
  t.raises(function() return sky.image { packages = {} } end, "unknown option 'packages'")
end)

t.test("a credentials file is 0600, outside the mount and the workdir, and gone after the pool", function()
  local b = bucket_with("cred", { ["k"] = "v" })
  local mount = root .. "/cred"
  local passwd, perm, body, args, env, pwd
  do
    local pool <close> = sky.compute { volumes = { sky.volume { bucket = b, mount = mount, storage = st } } }
    passwd, perm, body, args, env, pwd = pool:run(sky.fn(function(m)
      local p = io.popen("ps -o args= -C s3fs")
      local args = ""
      for line in p:lines() do if line:find(m, 1, true) then args = line end end
      p:close()
      local passwd = args:match("passwd_file=([^,%s]+)")
      local f = passwd and io.open(passwd)
      local body = f and f:read("a")
      local q = passwd and io.popen("stat -c %a " .. passwd)
      local perm = q and q:read("l")
      if q then q:close() end
      local env = io.open("/proc/self/environ"):read("a")
      return passwd, perm, body, args, env, io.popen("pwd"):read("l")
    end)(mount))
  end
  t.truthy(passwd, "s3fs reads its keys from a file")
  t.eq(perm, "600")
  t.eq(body, "S3RVER:S3RVER\n")
  t.truthy(not passwd:find(mount, 1, true) and not passwd:find(pwd, 1, true), "outside the mount and workdir")
  t.truthy(not args:find("S3RVER:S3RVER", 1, true), "no secret in s3fs's arguments")
  t.truthy(not (env .. "\0"):find("=S3RVER\0", 1, true), "no secret in the workers' environment")
  t.truthy(not s3t.ok("test -e " .. s3t.q(passwd)), "the credentials file is removed")
end)

t.after = function()
  s3t.cleanup()
  os.execute("rmdir " .. s3t.q(root) .. " 2>/dev/null")
end
t.run()
