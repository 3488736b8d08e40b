-- The UDP echo benchmark's luv server: libuv through luv (Debian's
-- lua-luv), with the echo written as a DatagramProtocol table over a
-- minimal transport, as tapio's Lua users write it, so both pay for one
-- method lookup and one call per datagram.
-- Usage: lua5.4 luv_udp_echo.lua PORT
local uv = require "luv"
local port = assert(tonumber(arg[1]), "usage: luv_udp_echo.lua PORT")

local Echo = {}
Echo.__index = Echo
function Echo:connection_made(transport) self.transport = transport end
function Echo:datagram_received(data, addr) self.transport:sendto(data, addr) end

-- The smallest datagram transport over a luv UDP handle.
local Transport = {}
Transport.__index = Transport
function Transport:sendto(data, addr)
  self.handle:try_send(data, addr.ip, addr.port)
end

local udp = uv.new_udp()
assert(udp:bind("127.0.0.1", port))
local proto = setmetatable({}, Echo)
proto:connection_made(setmetatable({ handle = udp }, Transport))
udp:recv_start(function(err, data, addr)
  if data then
    proto:datagram_received(data, addr)
  end
end)
print("ready")
io.stdout:flush()
uv.run()
