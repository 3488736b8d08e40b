-- The reference's UDP echo server: sends every datagram back to where it
-- came from, for an hour.
-- Usage: tapio examples/udp_echo_server.lua [port]   (127.0.0.1, 9999)
local tapio = require "tapio"

local port = tonumber(arg and arg[1]) or 9999

local EchoServerProtocol = {}
EchoServerProtocol.__index = EchoServerProtocol

function EchoServerProtocol:connection_made(transport)
  self.transport = transport
end

function EchoServerProtocol:datagram_received(data, addr)
  local message = data
  print(("Received %s from %s"):format(tapio.repr(message), tostring(addr)))
  print(("Send %s to %s"):format(tapio.repr(message), tostring(addr)))
  self.transport:sendto(data, addr)
end

tapio.run(function()
  print("Starting UDP server")
  -- The loop, as the reference's main gets it for the low-level API.
  local loop = tapio.get_running_loop()
  -- One protocol instance serves every client.
  local transport = loop:create_datagram_endpoint(function()
    return setmetatable({}, EchoServerProtocol)
  end, { local_addr = { "127.0.0.1", port } })
  local ok, err = pcall(tapio.sleep, 3600) -- serve for an hour
  transport:close()
  if not ok then
    error(err, 0)
  end
end)
