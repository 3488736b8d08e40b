-- The UDP echo benchmark's tapio Lua server: the DatagramProtocol a Lua
-- user writes, run by the tapio host program.
-- Usage: tapio tapio_udp_echo.lua PORT
local tapio = require "tapio"
local port = assert(tonumber(arg[1]), "usage: tapio_udp_echo.lua PORT")

local Echo = {}
Echo.__index = Echo
function Echo:connection_made(transport) self.transport = transport end
function Echo:datagram_received(data, addr) self.transport:sendto(data, addr) end

tapio.run(function()
  local loop = tapio.get_running_loop()
  loop:create_datagram_endpoint(function()
    return setmetatable({}, Echo)
  end, { local_addr = { "127.0.0.1", port } })
  print("ready")
  tapio.sleep(1e9)
end)
