-- storage: the user-facing `sky.storage` — S3 clients from explicit settings
-- (`sky.storage.s3{…}`), a named profile (`sky.storage.profile "lab"`) or a
-- provider preset (`sky.storage.aws{…}`, `.r2{account_id=…}`, `.gcs`,
-- `.wasabi`, `.backblaze`, `.minio`, `.hyperstack`). The objects and their
-- methods are C (src/lua/storage.c); endpoint/region/credential resolution
-- is src/s3/credentials.c, shared with `skyrun s3`. docs/STORAGE.md has it all.
local core = require "sky.core"

local M = {}

-- The presets: each fills in its provider's endpoint, region and addressing
-- style; explicit fields in the table still win. The names come from the C
-- side's one list (src/s3/presets.c).
M.presets = core.storage_presets

local function build(opts, preset, profile)
  if opts ~= nil and type(opts) ~= "table" then
    error(("sky.storage: expected a table of options, got %s"):format(type(opts)), 3)
  end
  local ok, st = pcall(core.storage_new, opts or {}, preset, profile)
  if not ok then error(st, 3) end
  return st
end

function M.s3(opts) return build(opts, nil, nil) end

function M.profile(name, opts)
  if type(name) ~= "string" or name == "" then
    error("sky.storage.profile: expected a profile name", 2)
  end
  return build(opts, nil, name)
end

for _, name in ipairs(M.presets) do
  M[name] = function(opts) return build(opts, name, nil) end
end

return M
