-- A tapio Lua client for the echo servers of the embedding tests (the
-- hosts, the LuaJIT FFI and Python programs): N connections at once, each
-- sending its own bytes (of several sizes, up to 200 KB, in pieces) and
-- checking that exactly those bytes come back, then closing.
-- Usage: tapio echo_clients.lua PORT [N]; prints "echoed N" and exits 0,
-- or raises (exit 1) naming the connection and the first wrong byte.
local tapio = require "tapio"

local port = assert(tonumber(arg[1]), "usage: echo_clients.lua PORT [N]")
local n = tonumber(arg[2]) or 5

local function message(i)
  local parts, size = {}, ({ 1, 100, 5000, 65536, 200000 })[(i - 1) % 5 + 1]
  for k = 1, size do
    parts[k] = string.char((i * 31 + k * 7) % 256)
  end
  return table.concat(parts)
end

local Client = {}
Client.__index = Client

function Client:connection_made(transport)
  self.transport = transport
  local m, step = self.message, 4096
  for k = 1, #m, step do
    transport:write(m:sub(k, k + step - 1))
  end
end

function Client:data_received(data)
  self.got[#self.got + 1] = data
  self.count = self.count + #data
  if self.count >= #self.message then
    self.transport:close()
  end
end

function Client:connection_lost(err)
  self.done:set_result(err)
end

tapio.run(function()
  local loop = tapio.get_running_loop()
  local clients = {}
  for i = 1, n do
    local c = setmetatable({ message = message(i), got = {}, count = 0,
                             done = loop:create_future() }, Client)
    clients[i] = c
    loop:create_connection(function() return c end, "127.0.0.1", port)
  end
  for i, c in ipairs(clients) do
    local err = c.done:await()
    assert(err == nil, ("connection %d lost: %s"):format(i, tostring(err)))
    local got = table.concat(c.got)
    if got ~= c.message then
      local k = 1
      while got:byte(k) == c.message:byte(k) do k = k + 1 end
      error(("connection %d: %d bytes back of %d, first wrong at %d")
        :format(i, #got, #c.message, k))
    end
  end
  print("echoed " .. n)
end)
