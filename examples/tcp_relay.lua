-- A TCP relay (a proxy): each client's connection is joined to a new
-- connection to the upstream server and bytes pass both ways, with flow
-- control (a side whose peer cannot take more stops reading), each end
-- passed on (write_eof: half-close), both closed together, and an idle
-- timeout per pair.
-- Usage: tapio examples/tcp_relay.lua [port [upstream_port [idle]]]
--        (127.0.0.1; 8889, 8888, 60 seconds)
local tapio = require "tapio"

local port = tonumber(arg and arg[1]) or 8889
local upstream = tonumber(arg and arg[2]) or 8888
local idle = tonumber(arg and arg[3]) or 60

-- One side of a pair; what it receives goes out of its peer's transport.
local Side = {}
Side.__index = Side

function Side:connection_made(transport)
  self.transport = transport
end

function Side:data_received(data)
  self.bytes = self.bytes + #data
  self.pair:touch()
  self.peer.transport:write(data)
end

function Side:eof_received()
  self.peer.transport:write_eof()
  self.pair.ended = self.pair.ended + 1
  return self.pair.ended < 2 -- stay half-open until both have ended
end

function Side:pause_writing() -- our buffer is full: the peer waits
  self.peer.transport:pause_reading()
end

function Side:resume_writing()
  self.peer.transport:resume_reading()
end

function Side:connection_lost()
  self.pair:close()
end

local Pair = {}
Pair.__index = Pair

local function new_pair(loop)
  local pair = setmetatable({ loop = loop, ended = 0 }, Pair)
  pair.client = setmetatable({ pair = pair, bytes = 0 }, Side)
  pair.server = setmetatable({ pair = pair, bytes = 0 }, Side)
  pair.client.peer, pair.server.peer = pair.server, pair.client
  pair:touch()
  return pair
end

function Pair:touch() -- restarts the idle timer
  if self.timer then
    self.timer:cancel()
  end
  self.timer = self.loop:call_later(idle, function()
    print("idle for " .. idle .. " s: closing")
    self:close()
  end)
end

function Pair:close()
  if self.closed then
    return
  end
  self.closed = true
  self.timer:cancel()
  for _, side in ipairs({ self.client, self.server }) do
    if side.transport then
      side.transport:close() -- sends what it holds first
    end
  end
  print(("relayed %d bytes up, %d down"):format(self.client.bytes,
                                                self.server.bytes))
end

tapio.run(function()
  local loop = tapio.get_running_loop()
  local server = loop:create_server(function()
    local pair = new_pair(loop)
    -- The client waits unread until its upstream connection is made.
    function pair.client.connection_made(side, transport)
      side.transport = transport
      transport:pause_reading()
      loop:create_connection(function() return pair.server end,
                             "127.0.0.1", upstream)
        :add_done_callback(function(f)
          local ok, err = pcall(f.result, f)
          if not ok then
            print("upstream: " .. tostring(err))
            pair:close()
          elseif pair.closed then -- the client went meanwhile
            pair.server.transport:close()
          else
            transport:resume_reading()
          end
        end)
    end
    return pair.client
  end, "127.0.0.1", port)
  print(("relaying 127.0.0.1:%d to 127.0.0.1:%d"):format(port, upstream))
  server:serve_forever()
end)
