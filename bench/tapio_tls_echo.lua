-- The TLS rows' tapio Lua server: tapio_echo.lua's protocol on a server
-- whose ssl option is a context made from CERT and KEY, run by the tapio
-- host program.  Usage: tapio tapio_tls_echo.lua PORT CERT KEY
local tapio = require "tapio"
local port = assert(tonumber(arg[1]), "usage: tapio_tls_echo.lua PORT CERT KEY")

local Echo = {}
Echo.__index = Echo
function Echo:connection_made(transport) self.transport = transport end
function Echo:data_received(data) self.transport:write(data) end
function Echo:pause_writing() self.transport:pause_reading() end
function Echo:resume_writing() self.transport:resume_reading() end

tapio.run(function()
  local loop = tapio.get_running_loop()
  local ctx = tapio.tls_context { side = "server", cert_file = arg[2],
                                  key_file = arg[3] }
  local server = loop:create_server(function()
    return setmetatable({}, Echo)
  end, "127.0.0.1", port, { backlog = 1024, ssl = ctx })
  print("ready")
  server:serve_forever()
end)
