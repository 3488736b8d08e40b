-- The reference's TCP echo client: sends a message, prints the echo and
-- waits until the server closes the connection.
-- Usage: tapio examples/tcp_echo_client.lua [port]   (127.0.0.1, 8888)
local tapio = require "tapio"

local port = tonumber(arg and arg[1]) or 8888

local EchoClientProtocol = {}
EchoClientProtocol.__index = EchoClientProtocol

function EchoClientProtocol.new(message, on_con_lost, loop)
  return setmetatable({ message = message, on_con_lost = on_con_lost,
                        loop = loop }, EchoClientProtocol)
end

function EchoClientProtocol:connection_made(transport)
  transport:write(self.message)
  print(("Data sent: %s"):format(tapio.repr(self.message)))
end

function EchoClientProtocol:data_received(data)
  print(("Data received: %s"):format(tapio.repr(data)))
end

function EchoClientProtocol:connection_lost(exc)
  print("The server closed the connection")
  self.on_con_lost:set_result(true)
end

tapio.run(function()
  local loop = tapio.get_running_loop()
  local on_con_lost = loop:create_future()
  local message = "Hello World!"
  -- Inside a task, create_connection waits and returns both.
  local transport, protocol = loop:create_connection(function()
    return EchoClientProtocol.new(message, on_con_lost, loop)
  end, "127.0.0.1", port)
  -- Wait until the protocol signals that the connection is lost, then
  -- close the transport (try/finally).
  local ok, err = pcall(on_con_lost.await, on_con_lost)
  transport:close()
  if not ok then
    error(err, 0)
  end
end)
