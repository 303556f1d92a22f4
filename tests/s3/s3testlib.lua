-- s3testlib: what the Lua storage tests share — a storage object for the
-- suite's s3rver, bucket names unique to this run, a scratch directory that is
-- removed at exit, and small shell helpers (files of random bytes, cmp).
--
-- The server comes from S3_ENDPOINT, set by tests/support/s3rver.sh when ctest
-- runs a test inside the `s3rver` fixture.
local sky = require "sky"

local M = {}

M.endpoint = os.getenv("S3_ENDPOINT")
  or error("S3_ENDPOINT is not set: run this test through ctest (tests/support/s3rver.sh env)")

-- Quotes a string for /bin/sh.
function M.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs a shell command; raises with the command and its output on failure.
function M.sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, how, code = p:close()
  if not ok then error(("command failed (%s %s): %s\n%s"):format(how, code, cmd, out), 2) end
  return out
end

-- Runs a shell command and returns whether it succeeded (no output kept).
function M.ok(cmd) return os.execute(cmd .. " >/dev/null 2>&1") == true end

-- A scratch directory for this test file; removed by M.cleanup().
M.dir = M.sh("mktemp -d \"${TMPDIR:-/tmp}/skyrun-s3lua.XXXXXX\""):gsub("%s+$", "")
function M.cleanup() M.ok("rm -rf " .. M.q(M.dir)) end

-- Bucket names are unique per run so test files and repeated runs never meet.
local run = M.dir:match("%.(%w+)$"):lower()   -- mktemp's random suffix
local serial = 0
function M.bucket_name(what)
  serial = serial + 1
  return ("%s-%s-%d"):format(what, run, serial):gsub("[^a-z0-9-]", "")
end

-- Storage settings for the suite's server; `extra` overrides or adds fields.
function M.settings(extra)
  local o = { endpoint = M.endpoint, region = "us-east-1", access_key = "S3RVER",
              secret_key = "S3RVER", path_style = true }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

function M.storage(extra) return sky.storage.s3(M.settings(extra)) end

-- A new, empty bucket on st.
function M.fresh_bucket(st, what)
  local name = M.bucket_name(what)
  st:create_bucket(name)
  return name
end

-- Writes n random bytes to a new file under the scratch dir; returns its path.
function M.random_file(name, n)
  local path = M.dir .. "/" .. name
  M.sh(("head -c %d /dev/urandom > %s"):format(n, M.q(path)))
  return path
end

function M.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

function M.exists(path) return M.ok("test -e " .. M.q(path)) end

-- True when the two files have identical bytes.
function M.same_file(a, b) return M.ok(("cmp -s %s %s"):format(M.q(a), M.q(b))) end

-- Names in a directory (not recursive), sorted.
function M.list_dir(path)
  local names = {}
  for name in M.sh("ls -A " .. M.q(path)):gmatch("[^\n]+") do names[#names + 1] = name end
  table.sort(names)
  return names
end

return M
