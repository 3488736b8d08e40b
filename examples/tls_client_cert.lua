-- Mutual TLS: a server that requires a client certificate signed by its
-- CA and lets in only the names it knows (the certificate's commonName,
-- from peercert), and five clients: one it knows, one it does not, one
-- without a certificate, one whose certificate has expired, one its CA
-- never signed. TLS 1.3 ends a client's handshake before the server has checked
-- its certificate, so a refused client learns why at its first read.
-- Usage: tapio examples/tls_client_cert.lua [certdir]
--        (certdir holds ca.pem and the .pem/.key of server, client, other,
--        expired and self, as spec/tls/make_certs.sh makes them)
local tapio = require "tapio"

local dir = (arg and arg[1] or ".") .. "/"
local allowed = { ["tapio client"] = true }

local function common_name(cert)
  for _, entry in ipairs(cert.subject) do
    if entry[1] == "commonName" then
      return entry[2]
    end
  end
end

local function serve(reader, writer) -- runs once the handshake is done
  local name = common_name(writer:get_extra_info("peercert"))
  writer:write(allowed[name] and ("hello, " .. name .. "\n") or "denied\n")
  writer:close()
end

local function client(port, who)
  local ctx = tapio.tls_context {
    cafile = dir .. "ca.pem",
    cert_file = who and dir .. who .. ".pem",
    key_file = who and dir .. who .. ".key",
  }
  local reader, writer = tapio.open_connection("127.0.0.1", port,
    { ssl = ctx, server_hostname = "localhost" })
  local ok, answer = pcall(reader.readline, reader)
  print(("%-8s %s"):format(who or "none", ok and answer:gsub("\n", "")
    or ("%s: %s"):format(answer.name, answer.message)))
  writer:close()
end

tapio.run(function()
  local server = tapio.start_server(serve, "127.0.0.1", 0, {
    ssl = tapio.tls_context {
      side = "server",
      cert_file = dir .. "server.pem", key_file = dir .. "server.key",
      cafile = dir .. "ca.pem",       -- whose certificates it trusts
      verify = "required",            -- no certificate, no connection
    },
  })
  local port = server:addresses()[1].port
  for _, who in ipairs { "client", "other", false, "expired", "self" } do
    client(port, who or nil)
  end
  server:close()
end)
