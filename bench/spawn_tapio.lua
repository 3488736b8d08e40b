-- The spawn benchmark's tapio Lua side: N children of PROGRAM, K in
-- flight, each a subprocess_exec with stdio on /dev/null; a new one starts
-- from the connection_lost of each that ends.
-- Usage: tapio spawn_tapio.lua PROGRAM N K
local tapio = require "tapio"
local program, total, k = arg[1], tonumber(arg[2]), tonumber(arg[3])
assert(program and total and k, "usage: spawn_tapio.lua PROGRAM N K")

local opts = { stdin = "devnull", stdout = "devnull", stderr = "devnull" }

tapio.run(function()
  local loop = tapio.get_running_loop()
  local done = loop:create_future()
  local started, ended = 0, 0
  local Child = {}
  Child.__index = Child
  local function start_one()
    started = started + 1
    loop:subprocess_exec(function() return setmetatable({}, Child) end,
      program, nil, opts)
  end
  function Child:connection_made(t) self.transport = t end
  function Child:connection_lost()
    assert(self.transport:get_returncode() == 0, "a child failed")
    ended = ended + 1
    if ended == total then
      done:set_result(true)
    elseif started < total then
      start_one()
    end
  end
  local start, cpu0 = loop:time(), os.clock()
  for _ = 1, math.min(k, total) do
    start_one()
  end
  done:await()
  local secs, cpu = loop:time() - start, os.clock() - cpu0
  print(("children=%d seconds=%.4f spawns_per_s=%.1f cpu_us_per_spawn=%.1f")
    :format(total, secs, total / secs, cpu * 1e6 / total))
end)
