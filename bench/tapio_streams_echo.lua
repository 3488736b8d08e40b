-- The streams echo benchmark's tapio Lua server: what a Lua user writes
-- with streams, a task per connection. Usage:
--   tapio tapio_streams_echo.lua PORT          reads up to 64 KiB, writes
--                                              it back, drains
--   tapio tapio_streams_echo.lua PORT lines    reads a line, writes it
--                                              back, drains
-- (under luajit too, with tapio's LuaJIT module on LUA_CPATH).
local tapio = require "tapio"
local port = assert(tonumber(arg[1]), "usage: tapio_streams_echo.lua PORT [lines]")

local function echo(reader, writer)
  while true do
    local data = reader:read(65536)
    if data == "" then
      break
    end
    writer:write(data)
    writer:drain()
  end
  writer:close()
end

local function lines(reader, writer)
  while true do
    local line = reader:readline()
    if line == "" then
      break
    end
    writer:write(line)
    writer:drain()
  end
  writer:close()
end

tapio.run(function()
  local server = tapio.start_server(arg[2] == "lines" and lines or echo,
                                    "127.0.0.1", port, { backlog = 1024 })
  print("ready")
  server:serve_forever()
end)
