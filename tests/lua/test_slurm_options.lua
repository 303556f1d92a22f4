-- sky.providers.slurm's options (no cluster needed): a typo or a value Slurm
-- could not take is refused when the script names the provider, never a
-- default; an unlimited time is refused (the cluster cases are
-- tests/slurm/test_provider.sh).
package.path = os.getenv("SKYRUN_SOURCE_DIR") .. "/tests/lua/?.lua;" .. package.path
local t = require "testlib"
local sky = require "sky"

t.test("the options become the provider's table", function()
  local p = sky.providers.slurm { nodes = 3, workers_per_node = 2, partition = "debug", time = 30,
    sbatch = { "--mem=1G" }, cpus_per_worker = 2 }
  t.eq(p.type, "slurm")
  t.eq(p.nodes, 3)
  t.eq(p.workers, 2)
  t.eq(p.time, "30")
  t.eq(p.sbatch[1], "--mem=1G")
  t.eq(sky.providers.slurm { time = "1-00:00:00" }.time, "1-00:00:00")
  t.eq(sky.providers.slurm {}.nodes, 1)
end)

t.test("an unknown option is named with the known ones", function()
  t.raises(function() return sky.providers.slurm { node = 3 } end, "unknown option 'node'")
end)

t.test("values Slurm could not take are refused", function()
  t.raises(function() return sky.providers.slurm { nodes = 0 } end, "nodes must be a positive integer")
  t.raises(function() return sky.providers.slurm { workers_per_node = 1.5 } end, "workers_per_node must be")
  t.raises(function() return sky.providers.slurm { time = "soon" } end, "time must be minutes")
  t.raises(function() return sky.providers.slurm { time = "0" } end, "never runs unlimited")
  t.raises(function() return sky.providers.slurm { sbatch = { 1 } } end, "sbatch[1] must be a string")
  t.raises(function() return sky.providers.slurm { partition = "" } end, "partition must be")
end)

t.run()
