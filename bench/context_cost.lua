-- What contexts cost the Lua layer's two busiest paths, counted under
-- callgrind (see bench/README.md, "Context variables"):
--
--   lua5.4 bench/context_cost.lua tasks|calls|data [N] [on]
--
-- tasks: N trivial tasks made by one task and run (create_task + steps);
-- calls: N loop:call_soon callbacks; data: N round trips of one byte
-- between a client and an echo server on 127.0.0.1 (two data_received
-- and two writes each: protocol callbacks in their transports' contexts).
-- With "on", a ContextVar is made and set first, so that every task and
-- callback captures and switches.
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
elseif what == "data" then
  loop:run_until_complete(function()
    local server = loop:create_server(function()
      local p = {}
      function p.connection_made(_, t) p.t = t end
      function p.data_received(_, data) p.t:write(data) end
      return p
    end, "127.0.0.1", 0)
    local done, left = loop:create_future(), n
    local c = {}
    function c.connection_made(_, t) c.t = t end
    function c.data_received(_, data)
      left = left - 1
      if left > 0 then
        c.t:write(data)
      else
        done:set_result(true)
      end
    end
    local t = loop:create_connection(function() return c end, "127.0.0.1",
      server:addresses()[1][2])
    if n > 0 then
      t:write("x")
      done:await()
    end
    t:close()
    server:close()
  end)
else
  error("context_cost.lua: tasks, calls or data, not " .. tostring(what))
end
loop:close()
