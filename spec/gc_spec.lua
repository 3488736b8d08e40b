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
      local before = helper.measure(loop)
      local seen = weak()
      cycle(loop, port, N, seen)
      while server:client_count() > 0 do -- the server's ends, lost last
        tapio.sleep(0)
      end
      helper.collect()
      assert.are.equal(2 * N, seen.n)
      assert.are.equal(1, count(seen)) -- n: every transport and protocol
      seen = nil                       -- went
      -- Lua's own count moves a little (interned strings, table sizes):
      -- what 10,000 connections would leave is megabytes.
      helper.assert_steady(before, helper.measure(loop), "connections", 64)
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
    do -- a handler that refers to its loop: a cycle
      local held = loop
      loop:set_exception_handler(function() return held end)
    end
    loop:close()
    assert.is_function(loop:get_exception_handler()) -- kept after close
    assert.are.equal(0, loop:_debug().refs)
    loop, server, t = nil, nil, nil
    helper.collect()
    assert.are.equal(0, count(seen))
  end)

  it("lets go of a loop with nothing open whose handler refers to it",
    function()
    local seen = weak()
    do
      local loop = tapio.new_loop()
      loop:set_exception_handler(function() return loop end)
      seen.loop = loop
    end
    helper.collect()
    assert.is_nil(seen.loop)
  end)
end)

-- A loop made in a function that returns, its last reference dropped: what
-- is open on it keeps it (asyncio: a transport holds its loop). The
-- protocols here hold nothing of the loop's, and the spec keeps only a weak
-- reference to it until the collection is over.
describe("a loop nobody references", function()
  local function connected(weak, counts)
    local loop = tapio.new_loop()
    weak.loop = loop
    local server = loop:run_until_complete(loop:create_server(function()
      return {
        data_received = function(_, d)
          counts.received = counts.received + #d
        end,
        connection_lost = function(_, e)
          counts.server_lost = counts.server_lost + 1
          counts.server_err = e
        end,
      }
    end, "127.0.0.1", 0))
    local t = loop:run_until_complete(loop:create_connection(function()
      return { connection_lost = function(_, e)
        counts.client_lost = counts.client_lost + 1
        counts.client_err = e
      end }
    end, "127.0.0.1", helper.port(server)))
    return t, server
  end

  local function new_counts()
    return { received = 0, server_lost = 0, client_lost = 0 }
  end

  it("is kept by an open transport: its output, then connection_lost once",
    function()
    local weak, counts = weak(), new_counts()
    local t = connected(weak, counts) -- the server: forgotten, open
    local big = ("b"):rep(16 * 1024 * 1024)
    t:write(big) -- the server reads nothing yet: most of it is buffered
    assert.is_true(t:get_write_buffer_size() > 0)
    helper.collect()
    assert.is_not_nil(weak.loop)
    t:write("!")
    t:close()
    local loop = t:get_loop()
    helper.wait_until(loop, function()
      return counts.client_lost > 0 and counts.server_lost > 0
    end)
    assert.are.equal(#big + 1, counts.received)
    assert.are.same({ 1, 1 }, { counts.client_lost, counts.server_lost })
    assert.is_nil(counts.client_err)
    assert.is_nil(counts.server_err)
    loop:close()
  end)

  it("is kept by a listening server", function()
    local weak, counts = weak(), new_counts()
    local t, server = connected(weak, counts)
    t:close()
    helper.wait_until(weak.loop, function()
      return counts.client_lost > 0 and counts.server_lost > 0
    end)
    local port = helper.port(server)
    t = nil
    helper.collect()
    assert.is_not_nil(weak.loop)
    local loop = server:get_loop()
    t = loop:run_until_complete(loop:create_connection(function()
      return {}
    end, "127.0.0.1", port))
    t:write("served")
    helper.wait_until(loop, function() return counts.received == 6 end)
    server:close()
    t:close()
    helper.wait_until(loop, function() return counts.server_lost == 2 end)
    loop:close()
  end)

  it("is kept by pending calls and timers, until they run or are cancelled",
    function()
    local refs, ran = weak(), {}
    local function schedule()
      local loop = tapio.new_loop()
      refs.loop = loop
      loop:call_soon(function() ran[#ran + 1] = "soon" end)
      return loop:call_later(0.01, function() ran[#ran + 1] = "later" end)
    end
    local handle = schedule()
    helper.collect()
    assert.is_not_nil(refs.loop)
    helper.wait_until(refs.loop, function() return #ran == 2 end)
    assert.are.same({ "soon", "later" }, ran)
    helper.collect() -- run: nothing holds the loop any more
    assert.is_nil(refs.loop)
    handle = nil
    local function pending()
      local loop = tapio.new_loop()
      refs.loop = loop
      return loop:call_later(3600, print)
    end
    handle = pending()
    helper.collect()
    assert.is_not_nil(refs.loop)
    handle:cancel()
    helper.collect()
    assert.is_nil(refs.loop)
  end)

  it("is kept by a pending connect and a pending server creation",
    function()
    local refs, counts = weak(), new_counts()
    local function start()
      local loop = tapio.new_loop()
      refs.loop = loop
      local server = loop:create_server(function()
        return { data_received = function(_, d)
          counts.received = counts.received + #d
        end }
      end, "127.0.0.1", 0)
      server:add_done_callback(function(f)
        local port = helper.port(f:result())
        loop:create_connection(function()
          return { connection_made = function(_, t) t:write("hello") end }
        end, "127.0.0.1", port)
      end)
    end
    start()
    helper.collect()
    assert.is_not_nil(refs.loop)
    local loop = refs.loop
    helper.wait_until(loop, function() return counts.received == 5 end)
    loop:close()
  end)
end)

describe("lua_close", function()
  -- The Lua state is closed with a server's creation still pending: the
  -- server's __gc runs before its loop's, whose freeing then cancels the
  -- creation (it crashed there).
  it("ends a script that left a server's creation pending", function()
    local interp = jit and "luajit" or "lua5.4"
    local path = os.tmpname()
    os.remove(path)
    local script = ([[
      local tapio = require "tapio"
      local loop = tapio.new_loop()
      loop:create_server(function() return {} end, "127.0.0.1", 0)
      loop:create_unix_server(function() return {} end, %q)
      print("pending")
    ]]):format(path)
    local out, status = helper.execute(("timeout 20 %s -e %s")
      :format(interp, helper.shell_quote(script)))
    os.remove(path)
    assert.are.equal("pending\n", out)
    assert.are.equal(0, status)
  end)
end)
