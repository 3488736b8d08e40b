-- The spec of line_protocol.lua, written with tapio.testing: the protocol
-- on the kit (memory pairs on a virtual clock), with faults, and the same
-- exchanges on a real socket giving the same events.
-- Run: busted examples/testing/line_spec.lua (from the top of the tree,
-- with tapio's modules on LUA_PATH/LUA_CPATH; `make test` runs it).
local tapio = require "tapio"
local testing = require "tapio.testing"
local line_protocol = require "examples.testing.line_protocol"

-- What a client sees: its callbacks, bytes merged whatever their chunks.
local function client()
  return testing.recorder(nil, { merge = true })
end

-- A real clock (a loop's time is the monotonic clock's unless virtual).
local real_clock = tapio.new_loop()
local function now()
  return real_clock:time()
end

describe("the line protocol, on the kit", function()
  it("answers each line, the bytes arriving one by one",
     testing.run(function(clock)
    local c = client()
    local tc = testing.pipe_pair(c, line_protocol.new(), { chunk = 1 })
    tc:write("PING\nhello\nQUIT\n")
    clock:run_until_idle()
    assert.same({ "connection_made", "data_received:PONG\nECHO hello\nBYE\n",
                  "eof_received", "connection_lost:nil" }, c.events)
  end))

  it("hangs up on a client silent for 30 seconds, in well under a second",
     testing.run(function(clock)
    local t0 = now()
    local c = client()
    testing.pipe_pair(c, line_protocol.new())
    clock:advance(29.999)
    assert.same({ "connection_made" }, c.events)
    clock:advance(0.001)
    assert.same({ "connection_made", "data_received:TIMEOUT\n",
                  "eof_received", "connection_lost:nil" }, c.events)
    assert.equal(30, clock:time())
    -- about 0.2 ms here; the bound leaves room for ASan, valgrind and a
    -- loaded machine, and still says the 30 s were not waited for
    assert.is_true(now() - t0 < 1, "took " .. (now() - t0) .. " s")
  end))

  it("counts the 30 seconds from the last input", testing.run(function(clock)
    local c = client()
    local tc = testing.pipe_pair(c, line_protocol.new())
    clock:advance(20)
    tc:write("PI") -- half a line is input too
    clock:advance(20)
    tc:write("NG\n")
    clock:advance(29)
    assert.same({ "connection_made", "data_received:PONG\n" }, c.events)
    clock:advance(1)
    assert.equal("data_received:PONG\nTIMEOUT\n", c.events[2])
    assert.equal(70, clock:time())
  end))

  it("takes the idle timeout it is given, with a tapio.sleep in the test",
     testing.run(function(clock)
    local c = client()
    testing.pipe_pair(c, line_protocol.new({ idle_timeout = 3600 }))
    tapio.sleep(3600) -- with autojump, an hour passes at once
    c:wait("connection_lost")
    assert.equal(3600, clock:time())
    assert.equal("data_received:TIMEOUT\n", c.events[2])
  end, { autojump = true }))

  it("drops a line cut by the client's end", testing.run(function(clock)
    local c = client()
    local server = testing.recorder(line_protocol.new(), { merge = true })
    local tc = testing.pipe_pair(c, server)
    -- The server's input ends in the middle of the second line (as if
    -- the client had sent no more; nothing is left unread, so the
    -- server's close is a clean one, not a reset).
    testing.fault(testing.peer(tc), { eof_after = 9 })
    tc:write("PING\nPING")
    clock:run_until_idle()
    assert.same({ "connection_made", "data_received:PING\nPING",
                  "eof_received", "connection_lost:nil" }, server.events)
    assert.same({ "connection_made", "data_received:PONG\n", "eof_received",
                  "connection_lost:nil" }, c.events)
  end))

  it("forgets its timer when the client resets", testing.run(function(clock)
    local c = client()
    local server = testing.recorder(line_protocol.new())
    local tc = testing.pipe_pair(c, server)
    testing.fault(tc, { reset_after = 5 }) -- the client resets mid-answer
    tc:write("hello\n")
    clock:run_until_idle()
    assert.same({ "connection_made", "data_received:ECHO ",
                  "connection_lost:ECONNRESET" }, c.events)
    assert.equal("connection_lost:ECONNRESET", server.events[#server.events])
    assert.is_nil(clock:next_timer()) -- no idle timer left behind
  end))

  it("answers whatever the chunking, for many seeds", function()
    for seed = 1, 50 do
      testing.run(function(clock)
        local c = client()
        local tc = testing.pipe_pair(c, line_protocol.new(),
          { chunk = { 1, 5 }, seed = seed })
        tc:write("PING\nabc\nPING\nQUIT\n")
        clock:run_until_idle()
        assert.same({ "connection_made",
                      "data_received:PONG\nECHO abc\nPONG\nBYE\n",
                      "eof_received", "connection_lost:nil" }, c.events)
      end, { seed = seed })()
    end
  end)
end)

-- The same exchanges on 127.0.0.1, on the kit's network (the same code,
-- create_server and create_connection, on a virtual loop) and on a
-- memory pair: the same events, on both sides.
describe("the line protocol, on a real socket and on the kit", function()
  -- A server and a client on the running loop, real or virtual.
  local function exchange(idle, send)
    local loop = tapio.get_running_loop()
    local s = testing.recorder(line_protocol.new({ idle_timeout = idle }),
      { merge = true })
    local server = loop:create_server(function() return s end,
      "127.0.0.1", 0)
    local port = server:addresses()[1][2]
    local c = client()
    local tc = loop:create_connection(function() return c end,
      "127.0.0.1", port)
    if send then
      tc:write(send)
    end
    -- Waits on events, with a deadline: a hang fails instead of
    -- blocking (the abort ends both sides' waits).
    local late = false
    local deadline = loop:call_later(10, function()
      late = true
      tc:abort()
    end)
    c:wait("connection_lost")
    s:wait("connection_lost")
    deadline:cancel()
    server:close()
    assert.is_false(late, "the exchange did not end within 10 s")
    return { c.events, s.events }
  end

  local function on_socket(idle, send)
    local events
    tapio.run(function()
      events = exchange(idle, send)
    end)
    return events
  end

  local function on_network(idle, send)
    local events
    testing.run(function()
      events = exchange(idle, send)
    end, { autojump = true })()
    return events
  end

  local function on_kit(idle, send)
    local events
    testing.run(function(clock)
      local s = testing.recorder(line_protocol.new({ idle_timeout = idle }),
        { merge = true })
      local c = client()
      local tc = testing.pipe_pair(c, s, { chunk = { 1, 3 } })
      if send then
        tc:write(send)
      end
      clock:advance(idle)
      events = { c.events, s.events }
    end)()
    return events
  end

  it("gives the same events for an exchange", function()
    local send = "PING\nhello\nQUIT\n"
    local real, kit = on_socket(30, send), on_kit(30, send)
    assert.same(kit, real)
    assert.same(kit, on_network(30, send))
  end)

  it("gives the same events for an idle client", function()
    local real, kit = on_socket(0.05, nil), on_kit(0.05, nil)
    assert.same({ "connection_made", "data_received:TIMEOUT\n",
                  "eof_received", "connection_lost:nil" }, kit[1])
    assert.same(kit, real)
    assert.same(kit, on_network(0.05, nil))
  end)
end)

-- line_server.lua, run by the tapio program (TAPIO_HOST, as make test
-- sets it), answers a real client and hangs up on it when it goes idle.
describe("line_server.lua", function()
  it("serves the protocol", function()
    local host = assert(os.getenv("TAPIO_HOST"), "TAPIO_HOST is not set")
    local events
    tapio.run(function()
      local loop = tapio.get_running_loop()
      local banner = loop:create_future()
      local out = ""
      local child = {}
      function child:pipe_data_received(_, data)
        out = out .. data
        if out:find("\n") and not banner:done() then
          banner:set_result(out)
        end
      end
      local gone = loop:create_future()
      function child:connection_lost()
        if not banner:done() then
          banner:set_result(out)
        end
        gone:set_result()
      end
      local proc = loop:subprocess_exec(function() return child end, host,
        { "examples/testing/line_server.lua", "0", "0.2" },
        { stdin = "devnull", stderr = "stdout" })
      local deadline = loop:call_later(10, function() proc:kill() end)
      local port = tonumber(banner:await():match("127%.0%.0%.1:(%d+)"))
      assert(port, "the server printed: " .. out)
      local c = client()
      local tc = loop:create_connection(function() return c end,
        "127.0.0.1", port)
      tc:write("PING\nhi\n")
      c:wait("connection_lost") -- the idle timeout, 0.2 s after
      proc:terminate()
      gone:await() -- the child exited and was reaped
      deadline:cancel()
      events = c.events
    end)
    assert.same({ "connection_made", "data_received:PONG\nECHO hi\n"
      .. "TIMEOUT\n", "eof_received", "connection_lost:nil" }, events)
  end)
end)
