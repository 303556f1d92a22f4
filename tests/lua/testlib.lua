-- testlib: a small specification-style test runner for skyrun's Lua tests.
--
--   local t = require "testlib"
--   t.test("a remote error carries the worker traceback", function() ... end)
--   t.run()   -- prints each result and "N passed, M failed"; exits 1 on failure
--
-- Assertions raise with the caller's line, so a failure names where it is.
local M = {}
local tests = {}

function M.test(name, fn) tests[#tests + 1] = { name = name, fn = fn } end

-- Ends the running test as skipped (this machine cannot run it): the file
-- then exits 77, which ctest reports as skipped, unless another test failed.
local SKIP = setmetatable({}, { __tostring = function() return "skipped" end })
function M.skip(reason) error(setmetatable({ reason = reason }, getmetatable(SKIP)), 0) end

local function fail(msg, level) error(msg, (level or 1) + 2) end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

function M.eq(actual, expected, what)
  if actual ~= expected then
    fail(("%sexpected %s, got %s"):format(what and (what .. ": ") or "", show(expected), show(actual)))
  end
end

function M.truthy(v, what) if not v then fail((what or "expected a true value") .. ", got " .. show(v)) end end

local function deep_eq(a, b, seen)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  seen = seen or {}
  if seen[a] == b then return true end
  seen[a] = b
  for k, v in pairs(a) do if not deep_eq(v, b[k], seen) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
M.deep_eq = deep_eq

function M.same(actual, expected, what)
  if not deep_eq(actual, expected) then
    local function dump(t, d)
      if type(t) ~= "table" then return show(t) end
      if (d or 0) > 3 then return "{…}" end
      local parts = {}
      for k, v in pairs(t) do parts[#parts + 1] = "[" .. show(k) .. "]=" .. dump(v, (d or 0) + 1) end
      table.sort(parts)
      return "{" .. table.concat(parts, ", ") .. "}"
    end
    fail(("%sexpected %s, got %s"):format(what and (what .. ": ") or "", dump(expected), dump(actual)))
  end
end

-- Runs fn, which must raise; returns the error message (a string) and checks
-- it contains every plain substring given.
function M.raises(fn, ...)
  local ok, err = pcall(fn)
  if ok then fail("expected an error, none was raised") end
  local msg = type(err) == "string" and err or tostring(err)
  for _, needle in ipairs({ ... }) do
    if not msg:find(needle, 1, true) then
      fail(("error %s does not mention %s"):format(show(msg), show(needle)))
    end
  end
  return msg, err
end

function M.contains(haystack, needle, what)
  if type(haystack) ~= "string" or not haystack:find(needle, 1, true) then
    fail(("%s%s does not contain %s"):format(what and (what .. ": ") or "", show(haystack), show(needle)))
  end
end

-- M.after, when set, runs once all tests have run (cleanup).
function M.run()
  local passed, failed, skipped = 0, 0, 0
  for _, t in ipairs(tests) do
    local ok, err = xpcall(t.fn, function(e)
      if getmetatable(e) == getmetatable(SKIP) then return e end
      return debug.traceback(e)
    end)
    if not ok and getmetatable(err) == getmetatable(SKIP) then
      skipped = skipped + 1
      print("skip - " .. t.name .. " (" .. tostring(err.reason) .. ")")
    elseif ok then
      passed = passed + 1
      print("ok   - " .. t.name)
    else
      failed = failed + 1
      print("FAIL - " .. t.name .. "\n" .. tostring(err))
    end
  end
  print(("%d passed, %d failed, %d skipped"):format(passed, failed, skipped))
  if M.after then M.after() end
  os.exit(failed > 0 and 1 or skipped > 0 and 77 or 0)
end

return M
