-- sky: the user-facing `sky` module (compiled into skyrun and libskyrun).
--
-- The C core (`sky.core`) does the heavy lifting: encoding closures, the
-- pool's scheduler, S3. This file gives it the shape scripts use:
--
--   local square = sky.fn(function(x) return x * x end)
--   local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 2 } }
--   print(square(3) >> pool)                      --> 9
--   local r = (square(3) & square(4)) >> pool      --> { 9, 16 }
--   local a, b = pool:run(square(3) & square(4))   --> 9, 16
local core = ...

local sky = { version = core.version }

--- sky.now() -> seconds on a monotonic clock (for timing, not dates).
sky.now = core.now

local pack, unpack = table.pack, table.unpack

---------------------------------------------------------------------------
-- Remote errors
---------------------------------------------------------------------------

local RemoteError = {}
RemoteError.__index = RemoteError
RemoteError.__tostring = function(e) return e.text end

-- Where the user's code called us: the first frame outside this file.
local function user_where()
  for level = 3, 40 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if info.source ~= "=[sky/sky.lua]" and info.what ~= "C" then
      if info.currentline and info.currentline > 0 then
        return info.short_src .. ":" .. info.currentline .. ": "
      end
      return ""
    end
  end
  return ""
end

local function indent(text, pad)
  return (text:gsub("\n$", ""):gsub("\n", "\n" .. pad))
end

-- Raises the error table a failed call produced, formatted for people and
-- keeping its fields (message, traceback, node, worker, host, kind) for code.
local function raise_remote(err)
  local e = setmetatable(err, RemoteError)
  local where = user_where()
  local head
  if err.kind == "interrupted" then
    e.text = where .. "interrupted"
  elseif err.node and err.node >= 0 then
    head = ("%sremote %s on node %d (worker %d, host %s)"):format(where,
      err.kind == "error" and "error" or err.kind, err.node, err.worker, err.host or "?")
    local text = head .. ":\n  " .. indent(err.message or "", "  ")
    if err.traceback and err.traceback ~= "" then
      text = text .. "\n  remote " .. indent(err.traceback, "    ")
    end
    e.text = text
  else
    e.text = where .. (err.message or "remote call failed")
  end
  error(e, 0)
end
sky.RemoteError = RemoteError

---------------------------------------------------------------------------
-- Remote functions and pending calls
---------------------------------------------------------------------------

local Fn, Call, Group = {}, {}, {}
Fn.__index, Call.__index, Group.__index = Fn, Call, Group

--- sky.fn(f [, opts]) wraps a Lua function to run remotely. opts.timeout
--- (seconds) is the default for its calls; opts.name names it in messages.
function sky.fn(f, opts)
  if type(f) ~= "function" then
    error("sky.fn: expected a function, got " .. type(f), 2)
  end
  opts = opts or {}
  return setmetatable({ f = f, timeout = opts.timeout, name = opts.name }, Fn)
end

function sky.is_fn(v) return getmetatable(v) == Fn end

--- sky.metatable(name, mt) -> mt. Tables whose metatable is mt keep it when
--- they travel: workers get a copy of mt (methods included) with them, and
--- tables coming back get mt itself, so `getmetatable(r) == mt` holds.
--- Other metatables are dropped on the way.
function sky.metatable(name, mt)
  if type(name) ~= "string" then
    error("sky.metatable: expected a name (string), got " .. type(name), 2)
  end
  if type(mt) ~= "table" then
    error("sky.metatable: expected a metatable (table), got " .. type(mt), 2)
  end
  local ok, err = pcall(core.register_metatable, name, mt)
  if not ok then error("sky.metatable: " .. err, 2) end
  return mt
end

-- Calling a remote function runs nothing: it makes a pending call.
Fn.__call = function(fn, ...)
  return setmetatable({ fn = fn, args = pack(...), limit = fn.timeout }, Call)
end

--- call:timeout(seconds) -> the call, with a per-call timeout.
function Call:timeout(seconds)
  if type(seconds) ~= "number" or seconds <= 0 then
    error("timeout: expected a positive number of seconds", 2)
  end
  self.limit = seconds
  return self
end

local function is_pool(v) return type(v) == "userdata" and v._submit ~= nil end

local function check_pool(pool, what)
  if not is_pool(pool) then
    error(("%s: the right side of >> must be a pool (sky.compute{…}), got %s"):format(what, type(pool)), 3)
  end
end

local function submit(pool, call, node)
  if getmetatable(call) ~= Call then
    error("expected a pending call (a sky.fn called with its arguments), got " .. type(call), 3)
  end
  local id, err = pool:_submit(call.fn.f, call.args, call.limit, node)
  if not id then error(user_where() .. err, 0) end
  return id
end

-- Submits every call, or none: when call i cannot be sent, the ones already
-- queued are released and the error names call i. nodes[i] pins call i.
local function submit_all(pool, calls, nodes)
  local ids = {}
  for i, call in ipairs(calls) do
    if getmetatable(call) ~= Call then
      for _, id in ipairs(ids) do pool:_release(id) end
      error(("%scall %d: expected a pending call (a sky.fn called with its arguments), got %s")
        :format(user_where(), i, type(call)), 0)
    end
    local id, err = pool:_submit(call.fn.f, call.args, call.limit, nodes and nodes[i])
    if not id then
      for _, queued in ipairs(ids) do pool:_release(queued) end
      error(("%scall %d: %s"):format(user_where(), i, err), 0)
    end
    ids[i] = id
  end
  return ids
end

-- Waits for a call and returns its results, or raises its remote error.
local function await(pool, id)
  local r = pack(pool:_wait(id))
  if not r[1] then raise_remote(r[2]) end
  return unpack(r, 2, r.n)
end

-- `call >> pool` runs the call on one worker and returns its result. Lua
-- keeps one value of any operator, so `>>` gives the first result; use
-- pool:run(call) for all of them.
Call.__shr = function(call, pool)
  check_pool(pool, ">>")
  return (await(pool, submit(pool, call)))
end

-- `a & b & c` groups calls; `group >> pool` runs them in parallel and
-- returns the list of their first results, in order (pool:run(group)
-- returns them as separate values).
local function as_list(x)
  if getmetatable(x) == Group then return x.calls end
  if getmetatable(x) == Call then return { x } end
  error("& expects pending calls (sky.fn called with arguments), got " .. type(x), 3)
end

local function group(a, b)
  local calls = {}
  for _, c in ipairs(as_list(a)) do calls[#calls + 1] = c end
  for _, c in ipairs(as_list(b)) do calls[#calls + 1] = c end
  return setmetatable({ calls = calls }, Group)
end
Call.__band, Group.__band = group, group

Group.__shr = function(g, pool)
  check_pool(pool, ">>")
  return pool:gather(g.calls)
end

---------------------------------------------------------------------------
-- Pool verbs (added to the C pool's methods)
---------------------------------------------------------------------------

local Pool = core.pool_methods

--- pool:run(call) -> every result of the call;
--- pool:run(a & b & c) -> the first result of each, as separate values.
function Pool:run(call)
  if getmetatable(call) == Group then
    local results = self:gather(call.calls)
    return unpack(results, 1, #call.calls)
  end
  return await(self, submit(self, call))
end

local function wait_each(pool, ids)
  local out, err = pool:_wait_each(ids)
  if out == false then raise_remote(err) end
  return out
end

--- pool:gather(calls) -> list of each call's first result, in order.
function Pool:gather(calls)
  return wait_each(self, submit_all(self, calls))
end

local Future = {}
Future.__index = Future
-- A future dropped without its result: the pool lets go of the call.
Future.__gc = function(self)
  if not self.results then self.pool:_forget(self.id) end
end

--- pool:submit(call) -> future with :wait() (results or raise) and :done().
function Pool:submit(call)
  return setmetatable({ pool = self, id = submit(self, call) }, Future)
end

function Future:wait()
  local r = self.results
  if not r then
    r = pack(self.pool:_wait(self.id))
    -- an interrupted wait abandons the call: the future has no result to keep
    if r[1] or r[2].kind ~= "interrupted" then self.results = r end
  end
  if not r[1] then raise_remote(r[2]) end
  return unpack(r, 2, r.n)
end

function Future:done()
  return self.results ~= nil or self.pool:_done(self.id)
end

--- pool:map(fn, list) -> { fn(list[1]), fn(list[2]), … } run in parallel.
function Pool:map(fn, list)
  if not sky.is_fn(fn) then error("map: expected a sky.fn, got " .. type(fn), 2) end
  if type(list) ~= "table" then error("map: expected a list, got " .. type(list), 2) end
  local ids, err = self:_submit_each(fn.f, list, fn.timeout)
  if not ids then error(user_where() .. err, 0) end
  return wait_each(self, ids)
end

--- pool:broadcast(call) -> { [node+1] = result } : the call once on every node.
function Pool:broadcast(call)
  local calls, nodes = {}, {}
  for node = 0, self:info().nodes - 1 do
    calls[#calls + 1] = call
    nodes[#nodes + 1] = node
  end
  return wait_each(self, submit_all(self, calls, nodes))
end

--- for i, result in pool:stream(calls) do … end — in completion order;
--- i is the call's position in calls. Leaving the loop early (break, error)
--- releases the calls not yet handed out.
function Pool:stream(calls)
  local ids, index = submit_all(self, calls), {}
  for i, id in ipairs(ids) do index[id] = i end
  local ok, stream = pcall(self._stream_open, self, ids)
  if not ok then
    for _, id in ipairs(ids) do self:_release(id) end
    error(stream, 2)
  end
  local function close()
    if stream then
      self:_stream_close(stream, index)
      stream, index = nil, {}
    end
  end
  local closer = setmetatable({}, { __close = close })
  return function()
    if not stream then return nil end
    local id = self:_stream_next(stream)
    if id == nil then close(); return nil end
    if id == false then close(); raise_remote({ kind = "interrupted" }) end
    local i = index[id]
    index[id] = nil
    local r = pack(self:_wait(id))
    if not r[1] then close(); raise_remote(r[2]) end
    return i, unpack(r, 2, r.n)
  end, nil, nil, closer
end

---------------------------------------------------------------------------
-- Compute
---------------------------------------------------------------------------

sky.providers = {}

--- sky.providers.localhost{ nodes = N, workers = W } — nodes on this machine.
function sky.providers.localhost(opts)
  opts = opts or {}
  return { type = "localhost", nodes = opts.nodes, workers = opts.workers }
end

--- sky.providers.ssh{ hosts = {"h1", "user@h2:2222", …}, user =, identity =, port =,
---   known_hosts =, host_key_policy = "strict" | "accept-new", ssh_config =,
---   connect_timeout =, workers = } — one node per host, over SSH (docs/REMOTE.md).
function sky.providers.ssh(opts)
  local known = { hosts = true, user = true, identity = true, port = true, known_hosts = true,
    host_key_policy = true, ssh_config = true, connect_timeout = true, workers = true }
  if type(opts) ~= "table" then error("sky.providers.ssh: expected a table of options", 2) end
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for name in pairs(known) do names[#names + 1] = name end
      table.sort(names)
      error(("sky.providers.ssh: unknown option '%s' (known: %s)"):format(tostring(k), table.concat(names, ", ")), 2)
    end
  end
  local hosts = opts.hosts
  if type(hosts) == "string" then hosts = { hosts } end
  if type(hosts) ~= "table" or #hosts == 0 then
    error("sky.providers.ssh: hosts must be a non-empty list of host names", 2)
  end
  for i, h in ipairs(hosts) do
    if type(h) ~= "string" or h == "" then error(("sky.providers.ssh: hosts[%d] must be a host name"):format(i), 2) end
  end
  for _, k in ipairs { "user", "identity", "known_hosts", "ssh_config" } do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then error(("sky.providers.ssh: %s must be a string"):format(k), 2) end
  end
  local policy = opts.host_key_policy
  if policy ~= nil and policy ~= "strict" and policy ~= "accept-new" then
    error("sky.providers.ssh: host_key_policy must be \"strict\" (the default) or \"accept-new\"", 2)
  end
  if opts.port ~= nil and (math.type(opts.port) ~= "integer" or opts.port < 1 or opts.port > 65535) then
    error("sky.providers.ssh: port must be an integer from 1 to 65535", 2)
  end
  return { type = "ssh", hosts = hosts, nodes = #hosts, workers = opts.workers, user = opts.user,
    identity = opts.identity, port = opts.port, known_hosts = opts.known_hosts, host_key_policy = policy,
    ssh_config = opts.ssh_config, connect_timeout = opts.connect_timeout }
end

--- sky.providers.slurm{ nodes =, workers_per_node =, partition =, account =, qos =,
---   constraint =, time =, cpus_per_worker =, gpus_per_node =, sbatch = {…}, start_timeout = }
--- — one Slurm batch job per pool, a node per allocated node, every worker a
--- job step (docs/PROVIDERS.md, "slurm"). sbatch flags pass through verbatim.
function sky.providers.slurm(opts)
  local known = { nodes = true, workers_per_node = true, workers = true, partition = true, account = true,
    qos = true, constraint = true, time = true, cpus_per_worker = true, gpus_per_node = true, sbatch = true,
    start_timeout = true }
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then error("sky.providers.slurm: expected a table of options", 2) end
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for name in pairs(known) do names[#names + 1] = name end
      table.sort(names)
      error(("sky.providers.slurm: unknown option '%s' (known: %s)"):format(tostring(k), table.concat(names, ", ")), 2)
    end
  end
  local function posint(k)
    local v = opts[k]
    if v ~= nil and (math.type(v) ~= "integer" or v < 1) then
      error(("sky.providers.slurm: %s must be a positive integer"):format(k), 3)
    end
    return v
  end
  local nodes, wpn, cpus = posint("nodes"), posint("workers_per_node"), posint("cpus_per_worker")
  wpn = wpn or posint("workers")
  for _, k in ipairs { "partition", "account", "qos", "constraint", "gpus_per_node" } do
    if opts[k] ~= nil and (type(opts[k]) ~= "string" or opts[k] == "") then
      error(("sky.providers.slurm: %s must be a non-empty string"):format(k), 2)
    end
  end
  local time = opts.time
  if math.type(time) == "integer" and time > 0 then
    time = tostring(time)
  elseif time ~= nil and (type(time) ~= "string" or not time:match("^[%d:-]+$")) then
    error("sky.providers.slurm: time must be minutes (an integer) or a Slurm time such as \"2:00:00\" or \"1-00:00:00\"", 2)
  end
  if time == "0" or time == "UNLIMITED" then
    error("sky.providers.slurm: time must be a limit (a pool's job never runs unlimited)", 2)
  end
  local sbatch = opts.sbatch
  if type(sbatch) == "string" then sbatch = { sbatch } end
  if sbatch ~= nil then
    if type(sbatch) ~= "table" then error("sky.providers.slurm: sbatch must be a list of flags", 2) end
    for i, f in ipairs(sbatch) do
      if type(f) ~= "string" then error(("sky.providers.slurm: sbatch[%d] must be a string"):format(i), 2) end
    end
  end
  if opts.start_timeout ~= nil and (type(opts.start_timeout) ~= "number" or opts.start_timeout <= 0) then
    error("sky.providers.slurm: start_timeout must be a positive number of seconds", 2)
  end
  return { type = "slurm", nodes = nodes or 1, workers = wpn, partition = opts.partition, account = opts.account,
    qos = opts.qos, constraint = opts.constraint, time = time, cpus_per_worker = cpus,
    gpus_per_node = opts.gpus_per_node, sbatch = sbatch or {}, start_timeout = opts.start_timeout }
end

--- sky.providers.named(NAME) — the provider `providers.NAME` of skyrun.yaml
--- (docs/CONFIGURATION.md), e.g. `type: ssh` with `hosts: [ … ]`, `user:` ….
--- `sky.compute{ provider = "NAME" }` is the same.
function sky.providers.named(name)
  if type(name) ~= "string" then error("sky.providers.named: expected a provider name", 2) end
  local t, where = core.provider_config(name)
  local kind = t.type
  local make = (kind == "ssh" or kind == "localhost" or kind == "slurm") and sky.providers[kind]
  if not make then
    error(("%s: providers.%s.type must be ssh, slurm or localhost, got %s"):format(where, name, tostring(kind)), 2)
  end
  local opts = {}
  for k, v in pairs(t) do
    if k ~= "type" then opts[k] = v end
  end
  for _, k in ipairs { "port", "workers", "nodes", "connect_timeout", "workers_per_node", "cpus_per_worker",
      "start_timeout" } do
    if opts[k] ~= nil then
      local n = tonumber(opts[k])
      if not n then error(("%s: providers.%s.%s must be a number"):format(where, name, k), 2) end
      opts[k] = math.tointeger(n) or n
    end
  end
  local ok, p = pcall(make, opts)
  if not ok then error(("%s: providers.%s: %s"):format(where, name, tostring(p):gsub("^[^:]*:%d+: ", "")), 2) end
  return p
end

-- Options tables are checked by name: a typo is an error, never a default.
local function check_keys(what, opts, known, level)
  if type(opts) ~= "table" then
    error(("%s: expected a table of options, got %s"):format(what, type(opts)), level + 1)
  end
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for name in pairs(known) do names[#names + 1] = name end
      table.sort(names)
      error(("%s: unknown option '%s' (known: %s)"):format(what, tostring(k), table.concat(names, ", ")),
        level + 1)
    end
  end
end

-- A string or a list of strings, as a list.
local function strings(what, v, level)
  if v == nil then return {} end
  if type(v) == "string" then return { v } end
  if type(v) ~= "table" then
    error(("%s: expected a string or a list of strings, got %s"):format(what, type(v)), level + 1)
  end
  local out = {}
  for i, s in ipairs(v) do
    if type(s) ~= "string" then
      error(("%s[%d]: expected a string, got %s"):format(what, i, type(s)), level + 1)
    end
    out[i] = s
  end
  return out
end

local Volume, Image = {}, {}
Volume.__index, Image.__index = Volume, Image
Volume.__tostring = function(v)
  return ("sky.volume (s3://%s/%s at %s, %s, %s)"):format(v.bucket, v.prefix, v.mount,
    v.read_only and "read-only" or "writable", v.mode)
end

--- sky.volume{ bucket =, prefix = "", mount =, read_only = true, storage =, mode = "mount" }
--- An S3 prefix seen as a folder on every node of a pool it is given to
--- (sky.compute{ volumes = {…} }): mounted with s3fs ("mount"), or copied
--- there before workers start and, when writable, back at teardown
--- ("copy", for nodes without FUSE). storage: a sky.storage object
--- (default: sky.storage.s3{} from the environment and profiles).
function sky.volume(opts)
  check_keys("sky.volume", opts, { bucket = true, prefix = true, mount = true, read_only = true,
    storage = true, mode = true }, 2)
  if type(opts.bucket) ~= "string" or opts.bucket == "" then
    error("sky.volume: bucket (a string) is required", 2)
  end
  if type(opts.mount) ~= "string" then
    error("sky.volume: mount (an absolute path, like \"/data\") is required", 2)
  end
  if opts.prefix ~= nil and type(opts.prefix) ~= "string" then
    error("sky.volume: prefix must be a string", 2)
  end
  local mode = opts.mode or "mount"
  if mode ~= "mount" and mode ~= "copy" then
    error(("sky.volume: mode must be \"mount\" or \"copy\", not %q"):format(tostring(mode)), 2)
  end
  if opts.read_only ~= nil and type(opts.read_only) ~= "boolean" then
    error("sky.volume: read_only must be true or false", 2)
  end
  local storage = opts.storage
  if storage == nil then
    local ok, st = pcall(sky.storage.s3, {})
    if not ok then error("sky.volume: no storage given and the default one cannot be made: " .. tostring(st), 2) end
    storage = st
  end
  return setmetatable({ bucket = opts.bucket, prefix = opts.prefix or "", mount = opts.mount,
    read_only = opts.read_only ~= false, storage = storage, mode = mode }, Volume)
end

function sky.is_volume(v) return getmetatable(v) == Volume end

--- sky.image{ apt = {…}, env = { NAME = "value" }, setup = "cmd" or {…}, includes = {…} }
--- What every node of a pool gets before its workers start: apt packages
--- (checked on localhost, installed elsewhere), environment for workers
--- and setup commands, setup commands (sh -c, in order), and includes:
--- local Lua files and folders put first on the workers' package.path.
function sky.image(opts)
  check_keys("sky.image", opts or {}, { apt = true, env = true, setup = true, includes = true }, 2)
  opts = opts or {}
  local env = {}
  if opts.env ~= nil then
    if type(opts.env) ~= "table" then error("sky.image: env must be a table of NAME = value", 2) end
    local names = {}
    for k, v in pairs(opts.env) do
      if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") then
        error(("sky.image: env name %q is not a valid variable name"):format(tostring(k)), 2)
      end
      if type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean" then
        error(("sky.image: env %s must be a string, number or boolean, got %s"):format(k, type(v)), 2)
      end
      names[#names + 1] = k
    end
    table.sort(names)
    for _, k in ipairs(names) do env[#env + 1] = k .. "=" .. tostring(opts.env[k]) end
  end
  return setmetatable({
    apt = strings("sky.image: apt", opts.apt, 2),
    env = env,
    setup = strings("sky.image: setup", opts.setup, 2),
    includes = strings("sky.image: includes", opts.includes, 2),
  }, Image)
end

function sky.is_image(v) return getmetatable(v) == Image end

--- sky.accelerators.TYPE(n) -> "TYPE:n": sky.accelerators.H100(8) is "H100:8".
sky.accelerators = setmetatable({}, { __index = function(_, kind)
  return function(n)
    if n == nil then return kind end
    if math.type(n) ~= "integer" or n < 1 then
      error(("sky.accelerators.%s: the count must be a positive integer"):format(kind), 2)
    end
    return kind .. ":" .. n
  end
end })

--- sky.compute{ provider =, nodes =, workers =, retries =, timeout =, image =, volumes =,
---              accelerator = } -> pool.
--- Use it as `local pool <close> = sky.compute{…}`: leaving the scope in any
--- way tears the pool down (workers stopped, volumes written back and
--- unmounted, credentials removed, node folders deleted).
function sky.compute(opts)
  opts = opts or {}
  check_keys("sky.compute", opts, { provider = true, nodes = true, workers = true, retries = true,
    timeout = true, worker = true, quiet = true, image = true, volumes = true, accelerator = true, heartbeat = true }, 2)
  if opts.accelerator ~= nil and type(opts.accelerator) ~= "string" then
    error("sky.compute: accelerator must be a GPU type like \"L4\" or \"H100:8\" (or sky.accelerators.L4(2))", 2)
  end
  local provider = opts.provider or sky.providers.localhost()
  if type(provider) == "string" then provider = sky.providers.named(provider) end
  if type(provider) ~= "table" or type(provider.type) ~= "string" then
    error("sky.compute: provider must come from sky.providers (e.g. sky.providers.localhost{…})", 2)
  end
  if opts.image ~= nil and not sky.is_image(opts.image) then
    error("sky.compute: image must come from sky.image{…}", 2)
  end
  local volumes = opts.volumes or {}
  if type(volumes) ~= "table" then error("sky.compute: volumes must be a list of sky.volume{…}", 2) end
  for i, v in ipairs(volumes) do
    if not sky.is_volume(v) then
      error(("sky.compute: volumes[%d] must come from sky.volume{…}, got %s"):format(i, type(v)), 2)
    end
  end
  local spec = {
    provider = provider,
    nodes = opts.nodes or provider.nodes or 1,
    workers = opts.workers or provider.workers or 1,
    retries = opts.retries,
    timeout = opts.timeout,
    worker = opts.worker,
    quiet = opts.quiet,
    image = opts.image,
    volumes = volumes,
    accelerator = opts.accelerator,
    heartbeat = opts.heartbeat,
  }
  local ok, pool = pcall(core.pool_new, spec)
  if not ok then error(pool, 2) end
  return pool
end

---------------------------------------------------------------------------
-- Storage (lua/storage.lua)
---------------------------------------------------------------------------

if package.preload["sky.storage"] then sky.storage = require "sky.storage" end

return sky
