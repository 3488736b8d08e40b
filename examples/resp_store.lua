-- The keyspace of examples/resp_server.lua: one database of strings and
-- lists, kept in memory only.
--
-- Expiry: a key with a time to live has a timer of the loop
-- (loop:call_later) that deletes it, so nothing scans the keys, and the
-- timers follow tapio.testing's virtual clock. A key read after its
-- time, before its timer ran, is deleted then (Redis's lazy expiry).

-- data[key] is a string or a list ({ first =, last =, [first..last] =
-- values }); timers[key] the loop's timer that deletes it; size: how
-- many keys there are.
local Store = {}
Store.__index = Store

local function new(loop)
  return setmetatable({ loop = loop, data = {}, timers = {}, size = 0 },
                      Store)
end

function Store:delete(key)
  if self.data[key] == nil then
    return false
  end
  self:persist(key)
  self.data[key] = nil
  self.size = self.size - 1
  return true
end

-- The key's value; nil if there is none or its time is up.
function Store:get(key)
  local t = self.timers[key]
  if t and t:when() <= self.loop:time() then
    self:delete(key)
  end
  return self.data[key]
end

-- Sets a value; keep_ttl keeps its timer, else it has none.
function Store:set(key, value, keep_ttl)
  if self:get(key) == nil then
    self.size = self.size + 1
  elseif not keep_ttl then
    self:persist(key)
  end
  self.data[key] = value
end

-- The keys there are that match the Lua pattern.
function Store:keys(pattern)
  local found = {}
  for key in pairs(self.data) do -- get may delete key: allowed here
    if string.find(key, pattern) and self:get(key) ~= nil then
      found[#found + 1] = key
    end
  end
  return found
end

-- Drops the key's timer; whether it had one.
function Store:persist(key)
  local t = self.timers[key]
  if t then
    t:cancel()
    self.timers[key] = nil
  end
  return t ~= nil
end

-- The key goes in ms milliseconds (at once if ms <= 0).
function Store:expire(key, ms)
  if ms <= 0 then
    return self:delete(key)
  end
  self:persist(key)
  self.timers[key] = self.loop:call_later(ms / 1000, self.delete, self, key)
  return true
end

-- Milliseconds left: -2 no such key, -1 no expiry.
function Store:pttl(key)
  if self:get(key) == nil then
    return -2
  end
  local t = self.timers[key]
  if not t then
    return -1
  end
  return math.floor((t:when() - self.loop:time()) * 1000 + 0.5)
end

function Store:flush()
  for _, t in pairs(self.timers) do
    t:cancel()
  end
  self.data, self.timers, self.size = {}, {}, 0
end

return { new = new }
