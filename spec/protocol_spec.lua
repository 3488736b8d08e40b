-- Protocols as Lua tables: the reference's state machines as callback
-- sequences, the defaults of missing methods, and errors in every
-- callback (handler, abort, connection_lost with the error).
local helper = require "spec.helper"
local tapio = helper.tapio

local run, pair, recorder = helper.run, helper.pair, helper.recorder

describe("the stream protocol state machine", function()
  it("is made, data*, eof, lost when the peer closes", function()
    run(function(loop)
      local server, t, p, sp = pair(loop)
      t:write("one")
      sp:bytes(3):await()
      t:write("two")
      sp:bytes(6):await()
      t:close()
      assert.are.equal(false, sp.lost:await())
      assert.are.same({ "made", "data", "data", "eof", "lost" }, sp.events)
      assert.are.equal(false, p.lost:await())
      assert.are.same({ "made", "lost" }, p.events)
      server:close()
    end)
  end)

  it("stays half-open when eof_received returns true", function()
    run(function(loop)
      local server, t, p, sp = pair(loop)
      sp.keep_open = true
      t:write_eof()
      sp.eof_fut:await() -- a loop iteration after eof_received returned
      assert.is_false(sp.transport:is_closing())
      assert.is_false(sp.transport:is_reading()) -- nothing after eof
      sp.transport:write("still here")
      p:bytes(10):await()
      sp.transport:close()
      sp.lost:await()
      assert.are.same({ "made", "eof", "lost" }, sp.events)
      p.lost:await()
      server:close()
    end)
  end)

  it("closes on eof when eof_received is missing or returns false",
    function()
    run(function(loop)
      local server, t, p, sp = pair(loop, recorder(loop, {
        eof_received = false })) -- no method at all
      sp.eof_received = nil
      t:write_eof()
      assert.are.equal(false, sp.lost:await())
      assert.are.same({ "made", "lost" }, sp.events)
      p.eof_fut:await()
      server:close()
    end)
  end)

  it("works with an empty protocol: every method has its default",
    function()
    run(function(loop)
      local server = loop:create_server(function() return {} end,
        "127.0.0.1", 0)
      local t, p = loop:create_connection(function() return recorder(loop) end,
        "127.0.0.1", helper.port(server))
      t:write("ignored")
      t:write_eof()
      assert.are.equal(false, p.lost:await()) -- the server closed on eof
      assert.are.same({ "made", "eof", "lost" }, p.events)
      server:close()
    end)
  end)

  it("gets connection_lost with ECANCELED when the loop closes", function()
    local loop = tapio.new_loop()
    local server = loop:run_until_complete(loop:create_server(function()
      return {}
    end, "127.0.0.1", 0))
    local p = recorder(loop)
    local t = loop:run_until_complete(loop:create_connection(function()
      return p
    end, "127.0.0.1", helper.port(server)))
    loop:close()
    assert.are.same({ "made", "lost" }, p.events)
    assert.are.equal(tapio.ECANCELED, p.lost_with.code)
    assert.are.equal("tapio.transport (closed)", tostring(t))
    assert.are.equal("tapio.server (closed)", tostring(server))
    assert.are.equal(0, loop:_debug().refs)
  end)
end)

-- The protocol method raises err; the handler gets it, the transport is
-- aborted and connection_lost gets the very same value.
local function raising(method, trigger)
  return function()
    local err = setmetatable({ what = method }, {
      __tostring = function() return "raised in " .. method end })
    local _, errors = run(function(loop, errors)
      local server, t, p, sp = pair(loop)
      local lost = loop:create_future()
      sp[method] = function() error(err) end
      sp.connection_lost = function(_, e) lost:set_result(e) end
      trigger(loop, t, sp)
      local got = lost:await()
      assert.are.equal(err, got)
      t:resume_reading() -- some triggers pause it
      p.lost:await() -- the peer saw the connection go
      -- the loop goes on: another connection works
      local server2, t2, _, sp2 = pair(loop)
      t2:write("fine")
      assert.are.equal("fine", sp2:bytes(4):await())
      t2:close()
      server2:close()
      server:close()
      t:close()
      return nil, errors
    end, { errors_ok = true })
    assert.are.equal(1, #errors)
    local ctx = errors[1]
    assert.are.equal(("error in protocol.%s()"):format(method), ctx.message)
    assert.are.equal(err, ctx.exception)
    assert.matches("^raised in " .. method .. "\nstack traceback:\n",
      ctx.traceback)
    assert.matches("protocol_spec.lua", ctx.traceback)
    assert.are.equal("tapio.transport (closed)", tostring(ctx.transport))
    assert.is_table(ctx.protocol)
  end
end

-- Closing or aborting from inside a callback takes effect after it
-- returns: the sequence ends with exactly one connection_lost.
describe("closing from inside a callback", function()
  local cases = {
    { "connection_made", { "made", "lost" } },
    { "data_received", { "made", "data", "lost" } },
    { "eof_received", { "made", "data", "eof", "lost" } },
  }
  for _, case in ipairs(cases) do
    for _, action in ipairs({ "close", "abort" }) do
      it(("%s in %s ends with one connection_lost"):format(action, case[1]),
        function()
          run(function(loop)
            local rec = helper.recorder(loop)
            local inner = rec[case[1]]
            rec[case[1]] = function(self, ...)
              local result = inner(self, ...)
              self.transport[action](self.transport)
              self.transport[action](self.transport) -- twice: harmless
              assert.is_true(self.transport:is_closing())
              return result
            end
            local server, t, p, sp = pair(loop, rec)
            t:write("x")
            t:write_eof()
            assert.are.equal(false, sp.lost:await())
            p.lost:await() -- more turns of the loop: nothing may follow
            assert.are.same(case[2], sp.events)
            sp.transport:close() -- a closed shell: still harmless
            sp.transport:abort()
            assert.is_true(sp.transport:is_closing())
            server:close()
          end)
        end)
    end
  end
end)

describe("an error in a protocol method", function()
  it("in data_received reaches the handler and connection_lost",
    raising("data_received", function(_, t) t:write("x") end))

  it("in eof_received reaches the handler and connection_lost",
    raising("eof_received", function(_, t) t:write_eof() end))

  it("in pause_writing (called from inside write) too",
    raising("pause_writing", function(loop, t, sp)
      t:write("go")
      loop:call_soon(function()
        local chunk = ("p"):rep(1024 * 1024)
        t:pause_reading()
        -- until the socket is full: pause_writing then fails the transport
        for _ = 1, 256 do
          if sp.transport:is_closing() then
            break
          end
          sp.transport:write(chunk)
        end
      end)
    end))

  it("in resume_writing too",
    raising("resume_writing", function(loop, t, sp)
      local paused = false
      sp.pause_writing = function() paused = true end
      t:pause_reading()
      sp.transport:set_write_buffer_limits(1)
      local chunk = ("r"):rep(1024 * 1024)
      for _ = 1, 256 do
        if paused then
          break
        end
        sp.transport:write(chunk)
      end
      loop:call_soon(function() t:resume_reading() end)
    end))

  it("in connection_made too", function()
    local err = { "made failed" }
    local _, errors = run(function(loop, errors)
      local lost = loop:create_future()
      local server = loop:create_server(function()
        return {
          connection_made = function() error(err) end,
          data_received = function() error("never called") end,
          connection_lost = function(_, e) lost:set_result(e) end,
        }
      end, "127.0.0.1", 0)
      local _, p = loop:create_connection(function() return recorder(loop) end,
        "127.0.0.1", helper.port(server))
      assert.are.equal(err, lost:await())
      p.lost:await()
      server:close()
      return nil, errors
    end, { errors_ok = true })
    assert.are.equal(1, #errors)
    assert.are.equal("error in protocol.connection_made()", errors[1].message)
    assert.are.equal(err, errors[1].exception)
  end)

  it("in connection_lost reaches the handler", function()
    local _, errors = run(function(loop, errors)
      local server, t, p = pair(loop)
      local called = loop:create_future()
      p.connection_lost = function()
        called:set_result(true)
        error("lost failed")
      end
      t:close()
      called:await()
      tapio.sleep(0)
      server:close()
      return nil, errors
    end, { errors_ok = true })
    assert.are.equal(1, #errors)
    assert.are.equal("error in protocol.connection_lost()", errors[1].message)
    assert.matches("lost failed", errors[1].exception)
  end)

  it("as a string keeps its position for connection_lost", function()
    run(function(loop)
      local server, t, _, sp = pair(loop)
      local lost = loop:create_future()
      sp.data_received = function() error("plain string") end
      sp.connection_lost = function(_, e) lost:set_result(e) end
      t:write("x")
      assert.matches("^.*protocol_spec.lua:%d+: plain string$", lost:await())
      server:close()
      t:close()
    end, { errors_ok = true })
  end)
end)

-- Values that are no error value, raised: connection_lost must still tell
-- a failure from a clean close.
local function bad_tostring()
  return setmetatable({}, { __tostring = function() error("no words") end })
end

describe("a protocol method raising what is no error value", function()
  for _, case in ipairs({
    { "nil", function() error(nil) end },
    { "false", function() error(false) end },
  }) do
    it(("(%s) gives connection_lost an ECALLBACK error value"):format(case[1]),
      function()
      local _, errors = run(function(loop, errors)
        local server, t, _, sp = pair(loop)
        sp.data_received = case[2]
        t:write("x")
        local err = sp.lost:await()
        assert.are.equal(getmetatable(tapio.error(-1)), getmetatable(err))
        assert.are.equal(tapio.ECALLBACK, err.code)
        assert.are.equal(("error object is a %s value (ECALLBACK)")
          :format(case[1] == "nil" and "nil" or "boolean"), tostring(err))
        t:close()
        server:close()
        return nil, errors
      end, { errors_ok = true })
      assert.are.equal(1, #errors)
      assert.are.equal("error in protocol.data_received()", errors[1].message)
      assert.are.equal(tapio.ECALLBACK, errors[1].exception.code)
      assert.matches(
        "^error object is a %a+ value %(ECALLBACK%)\nstack traceback:",
        errors[1].traceback)
    end)
  end

  it("(an object whose __tostring raises) gives connection_lost the object",
    function()
    local obj = bad_tostring()
    local _, errors = run(function(loop, errors)
      local server, t, _, sp = pair(loop)
      sp.data_received = function() error(obj) end
      t:write("x")
      assert.are.equal(obj, sp.lost:await())
      t:close()
      server:close()
      return nil, errors
    end, { errors_ok = true })
    assert.are.equal(1, #errors)
    assert.are.equal(obj, errors[1].exception)
    assert.matches("^%(error object is a table value%)\nstack traceback:",
      errors[1].traceback)
  end)

  it("(nil, in a scheduled callback) reaches the handler as an error value",
    function()
    local _, errors = run(function(loop, errors)
      loop:call_soon(function() error() end)
      tapio.sleep(0)
      return nil, errors
    end, { errors_ok = true })
    assert.are.equal(1, #errors)
    assert.are.equal(tapio.ECALLBACK, errors[1].exception.code)
  end)
end)

describe("a protocol factory", function()
  it("that raises on a server rejects the connection, via the handler",
    function()
    local _, errors = run(function(loop, errors)
      local server = loop:create_server(function()
        error("no protocol for you")
      end, "127.0.0.1", 0)
      local _, p = loop:create_connection(function() return recorder(loop) end,
        "127.0.0.1", helper.port(server))
      p.lost:await()
      assert.are.same({ "made", "eof", "lost" }, p.events)
      server:close()
      return nil, errors
    end, { errors_ok = true })
    assert.are.equal(1, #errors)
    assert.matches("factory", errors[1].message)
    assert.matches("no protocol for you", errors[1].exception)
    assert.matches("stack traceback", errors[1].traceback)
  end)

  it("that returns no table on a server is rejected the same way",
    function()
    local _, errors = run(function(loop, errors)
      local server = loop:create_server(function() return 42 end,
        "127.0.0.1", 0)
      local _, p = loop:create_connection(function() return recorder(loop) end,
        "127.0.0.1", helper.port(server))
      p.lost:await()
      server:close()
      return nil, errors
    end, { errors_ok = true })
    assert.are.equal(1, #errors)
    assert.matches("the protocol factory returned number, not a table",
      errors[1].exception)
  end)

  -- asyncio: the create call raises it, and nothing goes to the handler
  it("that raises on a client makes create_connection raise it, only",
    function()
    run(function(loop)
      local accepted = recorder(loop)
      local server = loop:create_server(function() return accepted end,
        "127.0.0.1", 0)
      local err = { "client factory" }
      local ok, got = pcall(loop.create_connection, loop, function()
        error(err)
      end, "127.0.0.1", helper.port(server))
      assert.is_false(ok)
      assert.are.equal(err, got)
      accepted.lost:await() -- the connection was closed
      server:close()
    end) -- fails on any call of the exception handler
  end)

  it("that raises on a client fails the future outside a task, only",
    function()
    run(function(loop)
      local a, b = tapio.socketpair()
      local fut
      loop:call_soon(function()
        fut = loop:connect_accepted_socket(function() error(nil) end, a)
      end)
      tapio.sleep(0)
      local ok, got = pcall(fut.await, fut)
      assert.is_false(ok)
      assert.are.equal(tapio.ECALLBACK, got.code)
      tapio.close_fd(b)
    end)
  end)
end)
