-- Lua C modules on workers: a function of a pool whose image names apt
-- packages can `require` a C module installed on its node (Debian's
-- lua-cjson, lua-lpeg) through the dynamic worker; where the static worker
-- runs, or a module is missing, the error names the module and why.
package.path = os.getenv("SKYRUN_SOURCE_DIR") .. "/tests/lua/?.lua;" .. package.path
local t = require "testlib"
local sky = require "sky"

local function installed(mod)
  for dir in ("/usr/lib/x86_64-linux-gnu/lua/5.4 /usr/lib/aarch64-linux-gnu/lua/5.4 /usr/local/lib/lua/5.4 /usr/lib/lua/5.4"):gmatch("%S+") do
    local f = io.open(dir .. "/" .. mod .. ".so")
    if f then f:close() return true end
  end
  return false
end

t.test("a function requires C modules installed on its node (lua-cjson, lua-lpeg)", function()
  if not (installed("cjson") and installed("lpeg")) then
    error("lua-cjson and lua-lpeg must be installed for this test (scripts/install-deps.sh installs them)")
  end   -- a dependency, not a reason to skip
  local pool <close> = sky.compute { image = sky.image { apt = { "lua-cjson", "lua-lpeg" } } }
  local json, match = pool:run(sky.fn(function()
    local cjson, lpeg = require "cjson", require "lpeg"
    return cjson.encode({ answer = 42 }), lpeg.match(lpeg.C(lpeg.R("az") ^ 1), "skyrun!")
  end)())
  t.eq(json, '{"answer":42}')
  t.eq(match, "skyrun")
end)

t.test("a missing module is named in the remote error", function()
  local pool <close> = sky.compute {}
  t.raises(function() return sky.fn(function() return require "no_such_module_skyrun" end)() >> pool end,
    "module 'no_such_module_skyrun' not found", "remote error on node 0")
end)

t.test("the static worker refuses C modules, naming the module and why", function()
  if os.getenv("SKYRUN_SANITIZE") == "1" then t.skip("the sanitizer build has no static worker") end
  local pool <close> = sky.compute {}   -- no native packages in the image: the static worker
  t.raises(function() return sky.fn(function() return require "cjson" end)() >> pool end,
    "no C module 'cjson'", "static skyrun-worker", "names apt packages")
  t.raises(function() return sky.fn(function() return package.loadlib("x.so", "f") end)() >> pool end,
    "statically linked")
end)

t.run()
