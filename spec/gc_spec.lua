-- Garbage collection: open transports and servers (and their protocols)
-- are never collected; closed ones are, and 10,000 connections opened and
-- closed leave memory and registry references where they started.
local helper = require "spec.helper"
local tapio = helper.tapio

local run = helper.run

local N = 10000     -- connections in the proof
local BATCH = 100   -- at a time

local function weak()
  return setmetatable({}, { __mode = "kv" })
end

local function count(t)
  local n = 0
  for _ in pairs(t) do
    n = n + 1
  end
  return n
end

local Echo = {}
Echo.__index = Echo
function Echo:connection_made(t) self.t = t end
function Echo:data_received(data) self.t:write(data) end

-- n connections to port, BATCH at a time: each writes, reads the echo,
-- closes and waits for connection_lost. Weak references to every
-- transport and protocol go into seen.
local function cycle(loop, port, n, seen)
  local done = loop:create_future()
  local started, finished = 0, 0
  local Client = {}
  Client.__index = Client
  local start
  function Client:connection_made(t)
    self.t = t
    seen.n = (seen.n or 0) + 2
    seen[seen.n - 1] = t
    seen[seen.n] = self
    t:write("ping")
  end
  function Client:data_received()
    self.t:close()
  end
  function Client:connection_lost(err)
    assert(err == nil, tostring(err))
    finished = finished + 1
    if finished == n then
      done:set_result()
    elseif started < n then
      start()
    end
  end
  function start()
    started = started + 1
    local fut = loop:create_connection(function()
      return setmetatable({}, Client)
    end, "127.0.0.1", port)
    fut:add_done_callback(function(f)
      if f:exception() then
        done:set_exception(f:exception())
      end
    end)
  end
  for _ = 1, math.min(BATCH, n) do
    loop:call_soon(start) -- from a callback: create_connection gives a future
  end
  done:await()
end

local function measure(loop)
  helper.collect()
  return { lua = collectgarbage("count"), refs = loop:_debug().refs,
           registry = helper.registry_count(), core = loop:memory() }
end

describe("garbage collection", function()
  it("keeps open transports, their protocols and servers alive", function()
    run(function(loop)
      local refs = weak()
      local got = {}
      local accepted = loop:create_future()
      refs.server = loop:create_server(function()
        local p = { data_received = function(_, d) got[#got + 1] = d end,
                    connection_made = function(self, t)
                      refs.server_transport = t
                      accepted:set_result()
                    end }
        refs.server_protocol = p
        return p
      end, "127.0.0.1", 0)
      local port = helper.port(refs.server)
      refs.client = loop:create_connection(function() return {} end,
        "127.0.0.1", port)
      accepted:await()
      helper.collect()
      -- nothing but tapio holds the server, its transport and protocol
      assert.is_not_nil(refs.server)
      assert.is_not_nil(refs.server_transport)
      assert.is_not_nil(refs.server_protocol)
      refs.client:write("still served")
      while #got == 0 do
        tapio.sleep(0)
      end
      assert.are.same({ "still served" }, got)
      -- closed, everything goes
      local lost = loop:create_future()
      refs.server_protocol.connection_lost = function() lost:set_result() end
      refs.client:close()
      lost:await()
      refs.server:close()
      tapio.sleep(0)
      helper.collect()
      assert.is_nil(refs.server_transport)
      assert.is_nil(refs.server_protocol)
      assert.is_nil(refs.server)
    end)
  end)

  it(("lets go of all %d connections once closed"):format(N), function()
    run(function(loop)
      local server = loop:create_server(function()
        return setmetatable({}, Echo)
      end, "127.0.0.1", 0)
      local port = helper.port(server)
      cycle(loop, port, 2 * BATCH, {}) -- warm up: buffers, tables' sizes
      while server:client_count() > 0 do
        tapio.sleep(0)
      end
      local before = measure(loop)
      local seen = weak()
      cycle(loop, port, N, seen)
      while server:client_count() > 0 do -- the server's ends, lost last
        tapio.sleep(0)
      end
      helper.collect()
      assert.are.equal(2 * N, seen.n)
      assert.are.equal(1, count(seen)) -- n: every transport and protocol
      seen = nil                       -- went
      local after = measure(loop)
      assert.are.equal(before.refs, after.refs)
      assert.are.equal(before.registry, after.registry)
      assert.are.equal(before.core, after.core)
      -- Lua's own count moves a little (interned strings, table sizes):
      -- what 10,000 connections would leave is megabytes.
      assert.is_true(after.lua - before.lua < 64,
        ("Lua memory grew by %.1f KiB"):format(after.lua - before.lua))
      server:close()
    end, { deadline = 120 })
  end)

  it("lets go of a closed loop's everything", function()
    local loop = tapio.new_loop()
    local seen = weak()
    local server = loop:run_until_complete(loop:create_server(function()
      local p = setmetatable({}, Echo)
      seen[#seen + 1] = p
      return p
    end, "127.0.0.1", 0))
    local t = loop:run_until_complete(loop:create_connection(function()
      return {}
    end, "127.0.0.1", helper.port(server)))
    t:write("x")
    helper.wait_until(loop, function() return #seen == 1 end)
    seen.loop, seen.server, seen.transport = loop, server, t
    loop:close()
    assert.are.equal(0, loop:_debug().refs)
    loop, server, t = nil, nil, nil
    helper.collect()
    assert.are.equal(0, count(seen))
  end)
end)
