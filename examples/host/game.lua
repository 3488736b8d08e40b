-- A game's network script: the host (game_host.c) runs it once, then
-- calls game:update(frame) every frame and quits when it returns true.
--   game_host game.lua TCP_PORT UDP_PORT LINES
local tapio = require "tapio"
local tcp_port, udp_port, lines = ...
lines = tonumber(lines)
local host = "127.0.0.1"

local game = {replies = {}, positions = 0}

-- The chat: one line sent every few frames, its reply read in the task;
-- the task waits across frames, the frame loop never waits on it.
local outbox = tapio.Queue()
game.chat = loop:create_task(function()
  local reader, writer = tapio.open_connection(host, tonumber(tcp_port))
  for _ = 1, lines do
    writer:write(outbox:get() .. "\n")
    writer:drain()
    game.replies[#game.replies + 1] = reader:readline()
  end
  writer:close()
  writer:wait_closed()
end)

-- Positions: one datagram per frame while the chat goes on.
local Position = {}
function Position:connection_made(t) game.udp = t end
function Position:connection_lost() game.udp_closed = true end
loop:create_datagram_endpoint(function() return Position end,
  {remote_addr = {host, tonumber(udp_port)}})

function game:update(frame)
  if self.chat:done() then
    if self.udp and not self.udp:is_closing() then
      self.udp:close()
    end
    if self.udp_closed or not self.udp then
      self.chat:result() -- raises the task's error, if any
      return true
    end
  else
    if frame % 5 == 0 then
      outbox:put_nowait("line " .. frame)
    end
    if self.udp then
      self.udp:sendto(("position %d %d %d"):format(frame, frame * 2, frame * 3))
      self.positions = self.positions + 1
    end
  end
end

function game:summary()
  return ("replies %d positions %d last %s"):format(#self.replies,
    self.positions, tostring(self.replies[#self.replies]))
end

return game
