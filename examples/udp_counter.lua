-- A counter service over UDP, ported from python/udp_counter.py, with a
-- datagram protocol as asyncio.DatagramProtocol. The server keeps named
-- counters: "ID INC NAME" adds one to NAME and is answered "ID NAME=N". A
-- request it has answered before (the client sent it again) gets the
-- same answer, so a retry never counts twice; and, to show the retries,
-- it drops the first copy of each request with an even ID, as a lossy
-- network would. The client sends its requests over a connected
-- endpoint, one at a time: it waits TIMEOUT seconds for each answer
-- (call_later and a future) and sends again, and where nothing listens
-- yet the port unreachable ICMP reaches error_received (ECONNREFUSED): it
-- says so once, and tries again later.
-- Usage: tapio examples/udp_counter.lua server PORT
--        tapio examples/udp_counter.lua client PORT NAME COUNT
-- Spec: examples/testing/udp_counter_spec.lua.
local tapio = require "tapio"

local MODE, PORT = arg[1], tonumber(arg[2])
local TIMEOUT = 0.2 -- seconds for an answer
local TRIES = 25

local CounterServer = {}
CounterServer.__index = CounterServer

function CounterServer.new()
  return setmetatable({ counters = {}, answers = {}, dropped = {} },
                      CounterServer)
end

function CounterServer:connection_made(transport)
  self.transport = transport
end

function CounterServer:datagram_received(data, addr)
  local id, command, name = data:match("^(%d+) (%S+) (%S+)$")
  local key = tostring(addr) .. " " .. id -- addresses compare by value
  if not self.answers[key] then
    if id % 2 == 0 and not self.dropped[key] then
      self.dropped[key] = true
      print(("dropped request %s (%s %s)"):format(id, command, name))
      return
    end
    self.counters[name] = (self.counters[name] or 0) + 1
    self.answers[key] = ("%s %s=%d"):format(id, name, self.counters[name])
  end
  self.transport:sendto(self.answers[key], addr)
end

local CounterClient = {}
CounterClient.__index = CounterClient

function CounterClient.new()
  return setmetatable({ pending = {}, -- ID -> the future of its answer
                        told = false }, -- that the server is not up
                      CounterClient)
end

function CounterClient:connection_made(transport)
  self.transport = transport
end

function CounterClient:datagram_received(data)
  local id, answer = data:match("^(%d+) (.*)$")
  local future = self.pending[tonumber(id)]
  if future and not future:done() then -- not a late answer
    future:set_result(answer)
  end
end

function CounterClient:error_received(err) -- nobody listens there (yet)
  for _, future in pairs(self.pending) do
    if not future:done() then
      future:set_exception(err)
    end
  end
end

local function expire(future)
  if not future:done() then
    future:set_exception(tapio.error("ETIMEDOUT"))
  end
end

local function request(protocol, id, text)
  local loop = tapio.get_running_loop()
  for _ = 1, TRIES do
    local answer = loop:create_future()
    protocol.pending[id] = answer
    local timer = loop:call_later(TIMEOUT, expire, answer)
    protocol.transport:sendto(id .. " " .. text)
    local ok, result = pcall(answer.await, answer)
    timer:cancel()
    protocol.pending[id] = nil
    if ok then
      return result
    elseif result.code == tapio.ECONNREFUSED then
      if not protocol.told then
        print("the server is not up yet: trying again")
        protocol.told = true
      end
      tapio.sleep(TIMEOUT)
    elseif result.code ~= tapio.ETIMEDOUT then -- not lost, nor late
      error(result, 0)
    end
  end
  error(tapio.error("ETIMEDOUT", ("no answer to request %d after %d tries")
                                 :format(id, TRIES)), 0)
end

-- require "examples.udp_counter" (its spec, examples/testing/) gets the
-- parts; run as a program, it serves or counts.
if ... == "examples.udp_counter" then
  return { CounterServer = CounterServer, CounterClient = CounterClient,
           request = request, TIMEOUT = TIMEOUT }
end

tapio.run(function()
  local loop = tapio.get_running_loop()
  if MODE == "server" then
    loop:create_datagram_endpoint(CounterServer.new,
                                  { local_addr = { "127.0.0.1", PORT } })
    tapio.Event():wait() -- serve until killed
  end
  local name, count = arg[3], tonumber(arg[4])
  local transport, protocol = loop:create_datagram_endpoint(
    CounterClient.new, { remote_addr = { "127.0.0.1", PORT } })
  for id = 1, count do
    print(("INC %s: %s"):format(name, request(protocol, id, "INC " .. name)))
  end
  transport:close()
end)
