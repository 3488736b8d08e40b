-- The echo benchmark's tapio Lua server: the protocol a Lua user writes,
-- run by the tapio host program.  Usage: tapio tapio_echo.lua PORT
-- [reuse_port] (several of it, in threads, on one port: lua_threads.c)
local tapio = require "tapio"
local port = assert(tonumber(arg[1]), "usage: tapio_echo.lua PORT")

local Echo = {}
Echo.__index = Echo
function Echo:connection_made(transport) self.transport = transport end
function Echo:data_received(data) self.transport:write(data) end

tapio.run(function()
  local loop = tapio.get_running_loop()
  local server = loop:create_server(function()
    return setmetatable({}, Echo)
  end, "127.0.0.1", port, {backlog = 1024,
                           reuse_port = arg[2] == "reuse_port"})
  print("ready")
  server:serve_forever()
end)
