-- What contexts cost the Lua layer's two busiest paths, counted under
-- callgrind (see bench/README.md, "Context variables"):
--
--   lua5.4 bench/context_cost.lua tasks|calls [N] [on]
--
-- tasks: N trivial tasks made by one task and run (create_task + steps);
-- calls: N loop:call_soon callbacks. With "on", a ContextVar is made and
-- set first, so that every task and callback captures and switches.
-- The collector is stopped: when it runs moves with the heap's size, by
-- more than the few instructions a change to these paths makes.
local tapio = require "tapio"
collectgarbage("stop")

local what, n, on = arg[1] or "tasks", tonumber(arg[2]) or 100000, arg[3]
if on == "on" and tapio.ContextVar then
  tapio.ContextVar("request"):set(1)
end
local loop = tapio.new_loop()
local function nop() end

if what == "tasks" then
  loop:run_until_complete(function()
    local last
    for _ = 1, n do
      last = tapio.create_task(nop)
    end
    if last then
      last:await()
    end
  end)
elseif what == "calls" then
  for _ = 1, n do
    loop:call_soon(nop)
  end
  loop:call_soon(function() loop:stop() end)
  loop:run_forever()
else
  error("context_cost.lua: tasks or calls, not " .. tostring(what))
end
loop:close()
