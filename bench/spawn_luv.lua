-- The spawn benchmark's luv side (libuv through Debian's lua-luv): N
-- children of PROGRAM, K in flight, each a uv.spawn (libuv gives an unset
-- stdin, stdout, stderr /dev/null) whose exit callback starts the next.
-- Usage: lua5.4 spawn_luv.lua PROGRAM N K
local uv = require "luv"
local program, total, k = arg[1], tonumber(arg[2]), tonumber(arg[3])
assert(program and total and k, "usage: spawn_luv.lua PROGRAM N K")

local started, ended = 0, 0
local function start_one()
  started = started + 1
  local handle
  handle = uv.spawn(program, { args = {} }, function(code)
    assert(code == 0, "a child failed")
    handle:close()
    ended = ended + 1
    if ended < total and started < total then
      start_one()
    end
  end)
  assert(handle, "spawn failed")
end

local start, cpu0 = uv.hrtime(), os.clock()
for _ = 1, math.min(k, total) do
  start_one()
end
uv.run()
local secs, cpu = (uv.hrtime() - start) / 1e9, os.clock() - cpu0
print(("children=%d seconds=%.4f spawns_per_s=%.1f cpu_us_per_spawn=%.1f")
  :format(total, secs, total / secs, cpu * 1e6 / total))
