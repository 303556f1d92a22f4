-- workflows/sweep.lua: the grid, the parallel evaluation, the best point.
package.path = os.getenv("SKYRUN_SOURCE_DIR") .. "/tests/lua/?.lua;" .. package.path
local t = require "testlib"
local sky = require "sky"
local sweep = dofile(os.getenv("SKYRUN_SOURCE_DIR") .. "/workflows/sweep.lua")

t.test("the grid has every combination, in a stable order", function()
  local pts = sweep.points { b = { 1, 2 }, a = { "x", "y", "z" } }
  t.eq(#pts, 6)
  t.same(pts[1], { a = "x", b = 1 })
  t.same(pts[6], { a = "z", b = 2 })
end)

t.test("an empty grid entry is refused with its name", function()
  t.raises(function() return sweep.points { a = {} } end, "grid entry 'a'")
end)

t.test("run evaluates every point on the pool and finds the best", function()
  local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 2 } }
  local f = sky.fn(function(p) return -(p.x - 2) ^ 2, p.x * 10 end)
  local best, all = sweep.run(pool, f, { x = { 0, 1, 2, 3, 4 } })
  t.eq(#all, 5)
  t.eq(best.params.x, 2)
  t.eq(best.extra, 20)
  for i, r in ipairs(all) do t.eq(r.params.x, i - 1) end
end)

t.run()
