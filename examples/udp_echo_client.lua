-- The reference's UDP echo client: sends a message, prints the answer and
-- closes the endpoint.
-- Usage: tapio examples/udp_echo_client.lua [port]   (127.0.0.1, 9999)
local tapio = require "tapio"

local port = tonumber(arg and arg[1]) or 9999

local EchoClientProtocol = {}
EchoClientProtocol.__index = EchoClientProtocol

function EchoClientProtocol.new(message, loop)
  return setmetatable({ message = message, loop = loop,
                        on_con_lost = loop:create_future() },
                      EchoClientProtocol)
end

function EchoClientProtocol:connection_made(transport)
  self.transport = transport
  print("Send: " .. self.message)
  self.transport:sendto(self.message)
end

function EchoClientProtocol:datagram_received(data, addr)
  print("Received: " .. data)
  print("Close the socket")
  self.transport:close()
end

function EchoClientProtocol:error_received(exc)
  print("Error received: " .. tostring(exc))
end

function EchoClientProtocol:connection_lost(exc)
  print("Connection closed")
  self.on_con_lost:set_result(true)
end

tapio.run(function()
  local loop = tapio.get_running_loop()
  local message = "Hello World!"
  local transport, protocol = loop:create_datagram_endpoint(function()
    return EchoClientProtocol.new(message, loop)
  end, { remote_addr = { "127.0.0.1", port } })
  local ok, err = pcall(protocol.on_con_lost.await, protocol.on_con_lost)
  transport:close()
  if not ok then
    error(err, 0)
  end
end)
