-- A UDP heartbeat and failure detector, as a DatagramProtocol: a node
-- sends "HB <name>" to each of its peers every second, and declares a
-- peer down when three of its beats are missed (no beat for 3.5 s: half
-- a beat of slack for the network), up again at the next beat it hears.
--
-- Nothing here knows about tests: the timers are the loop's call_later,
-- which follow tapio.testing's virtual clock.
local Node = {}
Node.__index = Node

local M = { INTERVAL = 1, MISSES = 3 }

--- heartbeat.new(name, peers [, opts]): a protocol for one endpoint.
-- peers: a list of addresses { host, port } to send beats to.
-- opts.on_change(name, "up" | "down"): called at each change.
-- opts.interval (1 s), opts.misses (3).
function M.new(name, peers, opts)
  opts = opts or {}
  return setmetatable({
    name = name, peers = peers,
    interval = opts.interval or M.INTERVAL,
    misses = opts.misses or M.MISSES,
    on_change = opts.on_change or function() end,
    up = {},     -- peer name -> true while up
    timers = {}, -- peer name -> the timer that declares it down
  }, Node)
end

function Node:beat()
  for _, addr in ipairs(self.peers) do
    self.t:sendto("HB " .. self.name, addr)
  end
  self.beat_timer = self.loop:call_later(self.interval, function()
    self:beat()
  end)
end

function Node:connection_made(t)
  self.t, self.loop = t, t:get_loop()
  self:beat()
end

-- A beat from `peer`: it is up, and down if the next ones do not come.
function Node:heard(peer)
  if self.timers[peer] then
    self.timers[peer]:cancel()
  end
  local silence = (self.misses + 0.5) * self.interval
  self.timers[peer] = self.loop:call_later(silence, function()
    self.timers[peer], self.up[peer] = nil, nil
    self.on_change(peer, "down")
  end)
  if not self.up[peer] then
    self.up[peer] = true
    self.on_change(peer, "up")
  end
end

function Node:datagram_received(data)
  local peer = data:match("^HB (%S+)$")
  if peer then
    self:heard(peer)
  end
end

-- A peer that is not there yet refuses (ECONNREFUSED): its beats come
-- when it starts.
function Node:error_received()
end

function Node:connection_lost()
  self.beat_timer:cancel()
  for _, timer in pairs(self.timers) do
    timer:cancel()
  end
end

return M
