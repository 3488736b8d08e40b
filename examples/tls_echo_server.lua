-- The reference's TCP echo server with TLS: the same protocol, a server
-- context made from a certificate and its key, and one option more
-- (ssl = context). connection_made comes once the handshake is done.
-- Usage: tapio examples/tls_echo_server.lua [certdir [port]]
--        (certdir holds server.pem and server.key; 127.0.0.1, 8443)
local tapio = require "tapio"

local certdir = arg and arg[1] or "."
local port = tonumber(arg and arg[2]) or 8443

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
  self.transport:close() -- flushes, then close_notify
end

tapio.run(function()
  local loop = tapio.get_running_loop()
  local context = tapio.tls_context {
    side = "server",
    cert_file = certdir .. "/server.pem",
    key_file = certdir .. "/server.key",
  }
  local server = loop:create_server(function()
    return setmetatable({}, EchoServerProtocol)
  end, "127.0.0.1", port, { ssl = context })
  server:serve_forever()
end)
