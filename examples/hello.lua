-- hello: remote functions on a localhost pool — the smallest skyrun pipeline.
--   skyrun examples/hello.lua [nodes]
local sky = require "sky"

local nodes = tonumber(arg and arg[1]) or 2

local square = sky.fn(function(x) return x * x end)

local greet = sky.fn(function(name)
  local me = sky.instance_info()
  print(("hello %s from node %d of %d (pid %d)"):format(name, me.node, me.nodes, me.pid))
  return me.hostname
end)

local pool <close> = sky.compute {
  provider = sky.providers.localhost { nodes = nodes, workers = 2 },
}

print("square(7) =", square(7) >> pool)
local a, b, c = pool:run(square(2) & square(3) & square(4))
print("in parallel:", a, b, c)
print("map:", table.concat(pool:map(square, { 1, 2, 3, 4, 5 }), " "))

local hosts = pool:broadcast(greet("skyrun"))
print(("broadcast reached %d nodes on %s"):format(#hosts, hosts[1]))

for i, r in pool:stream({ square(10), square(11), square(12) }) do
  print("stream: call " .. i .. " ->", r)
end

local ok, err = pcall(function()
  return sky.fn(function() error("boom") end)() >> pool
end)
print("a remote error comes back with its traceback:\n" .. tostring(err))
