-- The reference's TCP echo server: echoes the first data of each
-- connection, then closes it.
-- Usage: tapio examples/tcp_echo_server.lua [port]   (127.0.0.1, 8888)
local tapio = require "tapio"

local port = tonumber(arg and arg[1]) or 8888

local EchoServerProtocol = {}
EchoServerProtocol.__index = EchoServerProtocol

function EchoServerProtocol:connection_made(transport)
  local peername = transport:get_extra_info("peername")
  print(("Connection from %s"):format(tostring(peername)))
  self.transport = transport
end

function EchoServerProtocol:data_received(data)
  local message = data
  print(("Data received: %s"):format(tapio.repr(message)))
  print(("Send: %s"):format(tapio.repr(message)))
  self.transport:write(data)
  print("Close the client socket")
  self.transport:close()
end

tapio.run(function()
  -- The loop, as the reference's main gets it for the low-level API.
  local loop = tapio.get_running_loop()
  local server = loop:create_server(function()
    return setmetatable({}, EchoServerProtocol)
  end, "127.0.0.1", port)
  server:serve_forever()
end)
