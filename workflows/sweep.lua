-- sweep: a reusable pipeline that evaluates a function over a parameter grid
-- on a pool and reports the best point. Use it as a library:
--
--   local sweep = dofile "workflows/sweep.lua"
--   local best, all = sweep.run(pool, objective, { lr = { 0.1, 0.01 }, depth = { 2, 4, 8 } })
--
-- or run it as a script on a localhost pool (a demo objective):
--
--   skyrun workflows/sweep.lua [nodes] [workers]
--
-- The objective is a sky.fn taking one table of parameters and returning a
-- score (higher is better) and, optionally, anything else worth keeping.
local sky = require "sky"

local sweep = {}

--- Every combination of the grid's values, in a stable order (keys sorted).
function sweep.points(grid)
  local keys = {}
  for k in pairs(grid) do keys[#keys + 1] = k end
  table.sort(keys)
  local points = { {} }
  for _, k in ipairs(keys) do
    local values = grid[k]
    if type(values) ~= "table" or #values == 0 then
      error(("sweep: grid entry '%s' must be a non-empty list"):format(k), 2)
    end
    local next_points = {}
    for _, p in ipairs(points) do
      for _, v in ipairs(values) do
        local q = {}
        for pk, pv in pairs(p) do q[pk] = pv end
        q[k] = v
        next_points[#next_points + 1] = q
      end
    end
    points = next_points
  end
  return points
end

--- Runs objective on every point of grid on pool, all in parallel.
--- Returns the best { params =, score =, extra = } and the list of all, in grid order.
function sweep.run(pool, objective, grid)
  if not sky.is_fn(objective) then error("sweep.run: objective must be a sky.fn", 2) end
  local points = sweep.points(grid)
  local calls = {}
  for i, p in ipairs(points) do calls[i] = objective(p) end
  local results = {}
  for i, score, extra in pool:stream(calls) do
    if type(score) ~= "number" then
      error(("sweep: the objective returned %s for point %d, expected a number"):format(type(score), i), 2)
    end
    results[i] = { params = points[i], score = score, extra = extra }
  end
  local best = results[1]
  for _, r in ipairs(results) do if r.score > best.score then best = r end end
  return best, results
end

-- Run as a script: a demo objective with a known best point.
if arg and arg[0] and arg[0]:match("sweep%.lua$") then
  local nodes, workers = tonumber(arg[1]) or 2, tonumber(arg[2]) or 2
  local objective = sky.fn(function(p)
    -- a smooth bowl with its top at x = 3, y = -1
    local score = 0 - ((p.x - 3) ^ 2 + (p.y + 1) ^ 2)
    return score, sky.instance_info().node
  end)
  local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = nodes, workers = workers } }
  local grid = { x = {}, y = {} }
  for v = -5, 5 do grid.x[#grid.x + 1] = v; grid.y[#grid.y + 1] = v end
  local best, all = sweep.run(pool, objective, grid)
  print(("%d points on %d nodes: best x=%d y=%d score=%g"):format(#all, nodes, best.params.x, best.params.y, best.score))
end

return sweep
