-- The Lua side of examples/host/frame_host.c: a TCP echo server on the
-- loop the host made and handed over as the global `loop`. The host steps
-- the loop; this script only sets things up and returns. Each connection
-- is echoed until the client closes it; `served` counts the connections
-- that ended cleanly. Usage (through the host): frame_host echo_server.lua
-- FRAMES [PORT]; port 0 (the default) takes a free one.
local port = tonumber(arg and arg[1]) or 0

served = 0

local Echo = {}
Echo.__index = Echo

function Echo:connection_made(transport)
  self.transport = transport
end

function Echo:data_received(data)
  self.transport:write(data)
end

function Echo:connection_lost(err)
  if err == nil then
    served = served + 1
  end
end

loop:create_server(function()
  return setmetatable({}, Echo)
end, "127.0.0.1", port):add_done_callback(function(fut)
  local server = fut:result()
  print("listening on " .. server:addresses()[1].port)
end)
