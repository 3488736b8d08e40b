-- A tapio Lua echo server for the FFI programs' clients: prints
-- "listening on PORT" (a free port), echoes every connection until its
-- client closes it, and ends after N connections.
-- Usage: tapio echo_server.lua N
local tapio = require "tapio"

local limit = assert(tonumber(arg[1]), "usage: echo_server.lua N")

tapio.run(function()
  local loop = tapio.get_running_loop()
  local done, served = loop:create_future(), 0
  local Echo = {}
  Echo.__index = Echo
  function Echo:connection_made(t) self.t = t end
  function Echo:data_received(data) self.t:write(data) end
  function Echo:connection_lost(err)
    assert(err == nil, tostring(err))
    served = served + 1
    if served == limit then done:set_result(true) end
  end
  local server = loop:create_server(function()
    return setmetatable({}, Echo)
  end, "127.0.0.1", 0)
  print("listening on " .. server:addresses()[1].port)
  done:await()
  server:close()
  print("served " .. served)
end)
