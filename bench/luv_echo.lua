-- The echo benchmark's luv server: libuv through luv (Debian's lua-luv),
-- with the echo written as a protocol table, as tapio's Lua users write it,
-- so both pay for one method lookup and one call per event.
-- Usage: lua5.4 luv_echo.lua PORT
local uv = require "luv"
local port = assert(tonumber(arg[1]), "usage: luv_echo.lua PORT")

local Echo = {}
Echo.__index = Echo
function Echo:connection_made(transport) self.transport = transport end
function Echo:data_received(data) self.transport:write(data) end
function Echo:connection_lost() self.transport = nil end

-- The smallest transport over a luv TCP handle that protocol needs.
local Transport = {}
Transport.__index = Transport
function Transport:write(data) self.handle:write(data) end
function Transport:close() self.handle:close() end

local function serve(handle)
  local proto = setmetatable({}, Echo)
  local transport = setmetatable({handle = handle}, Transport)
  handle:nodelay(true)
  proto:connection_made(transport)
  handle:read_start(function(err, data)
    if data then
      proto:data_received(data)
    else
      handle:close()
      proto:connection_lost(err)
    end
  end)
end

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", port))
assert(server:listen(1024, function(err)
  assert(not err, err)
  local client = uv.new_tcp()
  server:accept(client)
  serve(client)
end))
print("ready")
io.stdout:flush()
uv.run()
