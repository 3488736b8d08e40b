-- The reference's TCP echo client with TLS: a client context that trusts
-- the CA in cafile (the system's CAs when none is given), the server's
-- certificate checked against "localhost", and what the handshake agreed.
-- Usage: tapio examples/tls_echo_client.lua [cafile [port]]
--        (127.0.0.1, 8443)
local tapio = require "tapio"

local cafile = arg and arg[1]
local port = tonumber(arg and arg[2]) or 8443

local EchoClientProtocol = {}
EchoClientProtocol.__index = EchoClientProtocol

function EchoClientProtocol.new(message, on_con_lost)
  return setmetatable({ message = message, on_con_lost = on_con_lost },
                      EchoClientProtocol)
end

function EchoClientProtocol:connection_made(transport)
  local cert = transport:get_extra_info("peercert")
  print(("TLS: %s, certificate of %s"):format(
    transport:get_extra_info("tls_version"), cert.subject[1][2]))
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
  local context = tapio.tls_context { cafile = cafile }
  local transport = loop:create_connection(function()
    return EchoClientProtocol.new("Hello World!", on_con_lost)
  end, "127.0.0.1", port, { ssl = context, server_hostname = "localhost" })
  local ok, err = pcall(on_con_lost.await, on_con_lost)
  transport:close()
  if not ok then
    error(err, 0)
  end
end)
