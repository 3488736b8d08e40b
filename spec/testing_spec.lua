-- tapio.testing: the virtual clock, memory pairs, faults, the recorder and
-- the busted helper; the reference's stream state machine re-run through
-- memory byte by byte; the same protocol on a real socket and on the kit.
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"

-- A protocol that answers each line it receives with "echo:<line>\n".
local function line_echo()
  local p = { buf = "" }
  function p:connection_made(t)
    self.t = t
  end
  function p:data_received(data)
    self.buf = self.buf .. data
    while true do
      local line, rest = self.buf:match("^([^\n]*)\n(.*)$")
      if not line then
        break
      end
      self.buf = rest
      self.t:write("echo:" .. line .. "\n")
    end
  end
  return p
end

describe("the virtual clock", function()
  it("moves only when told, firing timers in order at their times",
     function()
    local loop, clock = testing.new_loop()
    local fired = {}
    assert.equal(0, clock:time())
    loop:call_later(30, function() fired[#fired + 1] = loop:time() end)
    loop:call_later(1, function() fired[#fired + 1] = loop:time() end)
    assert.equal(1, clock:next_timer())
    clock:run_until_idle()
    assert.same({}, fired)
    clock:advance(29.999)
    assert.same({ 1 }, fired)
    clock:advance(0.001)
    assert.same({ 1, 30 }, fired)
    assert.equal(30, clock:time())
    assert.is_nil(clock:next_timer())
    loop:close()
  end)

  it("fires a timer due before its start at once, holding no later one "
     .. "back (call_at, timeout_at a deadline passed)", testing.run(
     function(clock, loop)
    local fired = {}
    loop:call_later(1, function() fired[#fired + 1] = "later 1" end)
    loop:call_at(-1, function() fired[#fired + 1] = "at -1" end)
    clock:advance(2)
    assert.same({ "at -1", "later 1" }, fired)
    local ok, err = pcall(tapio.timeout_at, loop:time() - 10, function()
      tapio.sleep(1)
    end)
    assert.is_false(ok)
    assert.equal("ETIMEDOUT", err.name)
    assert.equal(2, clock:time())
  end))

  it("is advanced from a task, which waits there",
     testing.run(function(clock)
    local slept = tapio.create_task(function()
      tapio.sleep(5)
      return clock:time()
    end)
    clock:advance(10)
    assert.equal(10, clock:time())
    assert.equal(5, slept:result())
  end))

  it("jumps to the next timer while the body waits, with autojump",
     testing.run(function(clock)
    local t0 = os.clock()
    tapio.sleep(3600)
    assert.equal(3600, clock:time())
    assert.equal("done", tapio.sleep(86400, "done"))
    assert.equal(90000, clock:time())
    assert.is_true(os.clock() - t0 < 0.5)
  end, { autojump = true }))

  it("returns a future from a callback; runs never sleep", function()
    local loop, clock = testing.new_loop()
    local got
    loop:call_soon(function()
      clock:advance(2):add_done_callback(function()
        got = loop:time()
      end)
    end)
    loop:run_forever() -- moves the clock for the pending advance, returns
    assert.equal(2, got)
    loop:call_later(100, function() end)
    loop:run_forever() -- nothing to move the clock for: returns at once
    assert.equal(2, loop:time())
    loop:close()
  end)

  it("refuses real I/O, raising at the caller's line", function()
    local loop = testing.new_loop()
    local ok, err = pcall(function()
      local fut = loop:getnameinfo({ "127.0.0.1", 80 })
      return fut -- not a tail call: the caller's line is this function's
    end)
    assert.is_false(ok)
    assert.matches("testing_spec.lua:%d+: tapio: loop:getnameinfo: "
      .. "real I/O is refused on a virtual%-clock loop %(its servers and "
      .. "connections meet in memory", err)
    -- a child is a fake program's (spec/testing_subprocess_spec.lua)
    ok, err = pcall(loop.subprocess_exec, loop, function() end, "true")
    assert.matches("loop:subprocess_exec: no fake program 'true' on this "
      .. "virtual loop, which starts no real child", err)
    -- nor is a descriptor watched: its readiness comes on real time
    ok, err = pcall(function()
      loop:add_reader(0, function() end)
      return true
    end)
    assert.matches("testing_spec.lua:%d+: tapio: loop:add_reader: real "
      .. "I/O is refused on a virtual%-clock loop", err)
    -- nor a signal watched: it comes on real time too
    ok, err = pcall(function()
      loop:add_signal_handler("SIGUSR1", function() end)
      return true
    end)
    assert.matches("testing_spec.lua:%d+: tapio: loop:add_signal_handler: "
      .. "real I/O is refused on a virtual%-clock loop %(a signal comes on "
      .. "real time%)", err)
    assert.is_false(loop:remove_signal_handler("SIGUSR1"))
    -- its network's calls are not refused (spec/testing_vnet_spec.lua)
    assert.is_truthy(loop:create_server(function() end, "127.0.0.1", 0))
    assert.equal("EVIRTUAL", tapio.error(tapio.EVIRTUAL).name)
    loop:close()
  end)

  it("runs a Runner's main with handle_sigint set, watching no signal",
     function()
    local was = tapio.handle_sigint
    tapio.handle_sigint = true -- as the tapio program sets it
    local runner = tapio.Runner({ loop_factory = testing.new_loop })
    local ok, got = pcall(runner.run, runner, function()
      tapio.sleep(0)
      return "ok"
    end)
    tapio.handle_sigint = was
    runner:close()
    assert.is_true(ok, got)
    assert.are.equal("ok", got)
  end)

  it("checks its arguments", function()
    local loop, clock = testing.new_loop()
    assert.has_error(function() clock:advance("1") end,
      "tapio: clock:advance: bad argument #1 'seconds' (number expected, "
      .. "got string)")
    assert.has_error(function() clock:advance(0 / 0) end,
      "tapio: clock:advance: bad argument #1 'seconds' (number expected, "
      .. "got NaN)")
    assert.has_error(function() testing.clock(tapio.new_loop()) end,
      "tapio: testing.clock: the loop has no virtual clock "
      .. "(testing.new_loop makes one)")
    loop:close()
  end)
end)

describe("memory pairs", function()
  it("join two protocols: the reference's order, both ways",
     testing.run(function(clock)
    local a, b = testing.recorder(), testing.recorder()
    local ta, tb = testing.pipe_pair(a, b)
    assert.same({}, a.events) -- connection_made comes from the loop
    ta:write("abc")
    ta:write_eof()
    clock:run_until_idle()
    assert.same({ "connection_made", "data_received:abc", "eof_received",
                  "connection_lost:nil" }, b.events)
    assert.same({ "connection_made", "eof_received", "connection_lost:nil" },
      a.events)
    assert.equal(tb, b.transport)
  end))

  it("deliver as the test says: every byte on its own, cuts, seeds, delay",
     testing.run(function(clock)
    local b = testing.recorder()
    local ta = testing.pipe_pair(testing.recorder(), b, { chunk = 1 })
    ta:write("xyz")
    clock:run_until_idle()
    assert.same({ "connection_made", "data_received:x", "data_received:y",
                  "data_received:z" }, b.events)
    ta:close()

    b = testing.recorder()
    ta = testing.pipe_pair(testing.recorder(), b,
      { a = { splits = { 2, 5 }, delay = 1.5 } })
    ta:write("abcdefg")
    clock:advance(1.4999)
    assert.equal("abcdefg", testing.in_flight(ta))
    clock:advance(0.0001)
    assert.same({ "connection_made", "data_received:ab", "data_received:cde",
                  "data_received:fg" }, b.events)
    ta:close() -- the end takes the delay too, as a FIN would
    clock:advance(1.4999)
    assert.equal("data_received:fg", b.events[#b.events])
    clock:advance(0.0001)
    assert.equal("connection_lost:nil", b.events[#b.events])

    local function chunks(seed)
      local r = testing.recorder()
      local t = testing.pipe_pair(testing.recorder(), r,
        { chunk = { 1, 4 }, seed = seed })
      t:write(("x"):rep(40))
      clock:run_until_idle()
      t:close()
      return table.concat(r.events, ",")
    end
    assert.equal(chunks(7), chunks(7))
    assert.not_equal(chunks(7), chunks(8))
  end))

  it("carry flow control: a peer that stops reading fills the buffers",
     testing.run(function(clock)
    local a = testing.recorder()
    local b = testing.recorder()
    local ta, tb = testing.pipe_pair(a, b, { capacity = 100 })
    clock:run_until_idle()
    tb:pause_reading()
    ta:set_write_buffer_limits(1000)
    ta:write(("x"):rep(5000))
    clock:run_until_idle()
    assert.same({ "connection_made", "pause_writing" }, a.events)
    assert.equal(100, #testing.in_flight(ta))
    clock:advance(2)
    tb:resume_reading()
    clock:run_until_idle()
    assert.same({ "connection_made", "pause_writing", "resume_writing" },
      a.events)
    assert.equal(2000000, ta:get_stats().write_paused_usec)
    ta:close()
    tb:close()
  end))

  it("serve BufferedProtocols", testing.run(function(clock)
    local buf = tapio.buffer(4)
    local inner = {}
    function inner:get_buffer() return buf end
    function inner:buffer_updated() end
    local b = testing.recorder(inner, { merge = true })
    local ta = testing.pipe_pair({}, b)
    ta:write("0123456789")
    ta:close()
    clock:run_until_idle()
    assert.same({ "connection_made", "buffer_updated:0123456789",
                  "eof_received", "connection_lost:nil" }, b.events)
  end))

  it("reset when a side leaves bytes unread, as the kernel does",
     testing.run(function(clock)
    local a, b = testing.recorder(), testing.recorder()
    local ta, tb = testing.pipe_pair(a, b)
    clock:run_until_idle()
    tb:pause_reading()
    ta:write("unread")
    clock:run_until_idle()
    tb:abort()
    clock:run_until_idle()
    assert.same({ "connection_made", "connection_lost:ECONNRESET" }, a.events)
  end))

  it("check their options", function()
    local loop = testing.new_loop()
    local function pair(opts)
      return function() testing.pipe_pair({}, {}, opts) end
    end
    assert.has_error(pair({ loop = loop, chunk = 0 }),
      "tapio: testing.pipe_pair: bad argument #3 'opts' (chunk: a size >= 1 "
      .. "or {min, max} expected)")
    assert.has_error(pair({ loop = loop, a = { splits = { 3, 2 } } }),
      "tapio: testing.pipe_pair: bad argument #3 'opts.a' (splits: "
      .. "ascending offsets >= 1 expected)")
    assert.has_error(pair({ loop = loop, chunks = 1 }),
      "tapio: testing.pipe_pair: bad argument #3 'opts' (unknown option "
      .. "'chunks')")
    assert.has_error(function() testing.pipe_pair({}, {}) end,
      "tapio: testing.pipe_pair: no running loop (give opts.loop)")
    assert.has_error(function() testing.pipe_pair(nil, {}, { loop = loop })
      end, "tapio: testing.pipe_pair: bad argument #1 'protocol_a' (table "
      .. "expected, got nil)")
    assert.equal(0, testing.transport_count(loop))
    loop:close()
  end)
end)

describe("faults", function()
  it("reset after N bytes, both ways", testing.run(function(clock)
    local a, b = testing.recorder(), testing.recorder()
    local ta, tb = testing.pipe_pair(a, b)
    local set = testing.fault(tb, { reset_after = 5 })
    assert.same({ reset_after = 5 }, set)
    ta:write("0123456789")
    clock:run_until_idle()
    assert.same({ "connection_made", "data_received:01234",
                  "connection_lost:ECONNRESET" }, b.events)
    assert.same({ "connection_made", "connection_lost:ECONNRESET" }, a.events)
  end))

  it("end the input in the middle of a message", testing.run(function(clock)
    local b = testing.recorder()
    local ta, tb = testing.pipe_pair(testing.recorder(), b)
    assert.equal(tb, testing.peer(ta))
    testing.fault(tb, { eof_after = 3 })
    ta:write("hello\n")
    clock:run_until_idle()
    assert.same({ "connection_made", "data_received:hel", "eof_received",
                  "connection_lost:nil" }, b.events)
  end))

  it("fail a write with a given error", testing.run(function(clock)
    local a = testing.recorder()
    local ta = testing.pipe_pair(a, testing.recorder())
    testing.fault(ta, { write_error = "EPIPE", write_error_after = 2 })
    ta:write("abcd")
    clock:run_until_idle()
    assert.same({ "connection_made", "connection_lost:EPIPE" }, a.events)
  end))

  it("stop a peer reading, then let it go on", testing.run(function(clock)
    local a = testing.recorder()
    local b = testing.recorder(nil, { merge = true })
    local ta, tb = testing.pipe_pair(a, b, { capacity = 10 })
    ta:set_write_buffer_limits(100)
    testing.fault(tb, { stop_reading = 4 })
    ta:write(("y"):rep(500))
    clock:run_until_idle()
    assert.same({ "connection_made", "pause_writing" }, a.events)
    assert.same({ "connection_made", "data_received:yyyy" }, b.events)
    testing.clear_faults(tb)
    clock:run_until_idle()
    assert.same({ "connection_made", "pause_writing", "resume_writing" },
      a.events)
    assert.equal("data_received:" .. ("y"):rep(500), b.events[2])
    ta:close()
    tb:close()
  end))

  it("drip slowly, in virtual time", testing.run(function(clock)
    local b = testing.recorder()
    local ta, tb = testing.pipe_pair(testing.recorder(), b)
    testing.fault(tb, { drip = 2, drip_interval = 10 })
    ta:write("abcdef")
    clock:advance(15)
    assert.same({ "connection_made", "data_received:ab", "data_received:cd" },
      b.events)
    clock:advance(5)
    assert.equal("data_received:ef", b.events[4])
    ta:close()
    clock:advance(10) -- the end waits for the drip too
    assert.equal("connection_lost:nil", b.events[#b.events])
  end))

  it("draw their place from the seed, the same each time", function()
    local places = {}
    for i = 1, 2 do
      testing.seed(99)
      local loop = testing.new_loop()
      local ta, tb = testing.pipe_pair({}, {}, { loop = loop })
      places[i] = testing.fault(tb, { eof_after = { 10, 1000 } }).eof_after
      assert.is_true(places[i] >= 10 and places[i] <= 1000)
      loop:close()
    end
    assert.equal(places[1], places[2])
  end)

  it("check their spec", function()
    local loop = testing.new_loop()
    local ta = testing.pipe_pair({}, {}, { loop = loop })
    assert.has_error(function() testing.fault(ta, { reset = 1 }) end,
      "tapio: testing.fault: bad argument #2 'spec' (unknown fault 'reset')")
    assert.has_error(function() testing.fault(ta, { write_error = "nope" })
      end, "tapio: testing.fault: bad argument #2 'spec' (write_error: an "
      .. "error name ('ECONNRESET') or code expected)")
    loop:close()
  end)

  it("set nothing when the spec raises", testing.run(function(clock)
    local a = testing.recorder()
    local ta, tb = testing.pipe_pair(a, {})
    assert.has_error(function()
      testing.fault(tb, { eof_after = 0, write_error = "ENOPE" })
    end)
    assert.has_error(function()
      testing.fault(tb, { eof_after = 0, drip = -1 })
    end)
    tb:write("still open") -- eof_after = 0 was not set
    clock:run_until_idle()
    assert.same({ "connection_made", "data_received:still open" }, a.events)
    ta:close()
  end))

  it("raise at the caller's line", testing.run(function(clock)
    local ta = testing.pipe_pair({}, {})
    local function raised(fn)
      local ok, err = pcall(fn)
      assert.is_false(ok)
      return err
    end
    local at = "^[^\n]*testing_spec%.lua:%d+: tapio: testing%."
    assert.matches(at .. "fault: bad argument #2 'spec' %(read_error: ",
      raised(function() testing.fault(ta, { read_error = "ENOPE" }) end))
    assert.matches(at .. "fault: bad argument #2 'spec' %(drip: ",
      raised(function() testing.fault(ta, { drip = -1 }) end))
    assert.matches(at .. "pipe_pair: bad argument #2 'protocol_b' %(table "
      .. "expected, got function%)",
      raised(function() testing.pipe_pair({}, function() end) end))
    ta:close()
    clock:run_until_idle()
    assert.matches(at .. "fault: transport is closed",
      raised(function() testing.fault(ta, { eof_after = 0 }) end))
  end))
end)

describe("the recorder", function()
  it("passes every call on and returns what the inner protocol returns",
     testing.run(function(clock)
    local inner = { calls = 0 }
    function inner:data_received() self.calls = self.calls + 1 end
    function inner:eof_received() return true end -- stays half-open
    local b = testing.recorder(inner)
    local ta, tb = testing.pipe_pair(testing.recorder(), b)
    ta:write("hi")
    ta:write_eof()
    clock:run_until_idle()
    assert.equal(1, inner.calls)
    assert.same({ "connection_made", "data_received:hi", "eof_received" },
      b.events)
    assert.is_false(tb:is_closing())
    tb:close()
    assert.equal("connection_lost:nil", b:wait("connection_lost"))
  end))
  it("shows bytes escaped in a failed expectation's message", function()
    -- luassert printed them raw: the terminal's output stopped at the NUL
    local rec = testing.recorder()
    rec:data_received("\0\1AB\x80")
    local ok, err = pcall(assert.same,
      { "data_received:\0\1AC\x80" }, rec.events)
    assert.is_false(ok)
    local text = tostring(type(err) == "table" and err.message or err)
    assert.truthy(text:find("'data_received:\\x00\\x01AB\\x80'", 1, true),
      text)
    assert.truthy(text:find("'data_received:\\x00\\x01AC\\x80'", 1, true),
      text)
    assert.truthy(text:find("*[1]", 1, true), text) -- luassert's mark
    assert.same({ "data_received:\0\1AB\x80" }, rec.events) -- untouched
  end)
end)

describe("tapio.repr", function()
  it("prints as Python's repr of the text, or of the bytes where not UTF-8",
     function()
    -- each as python3 prints repr(b.decode("utf-8", "surrogateescape"))
    -- with its \udcXX written as \xXX
    local cases = {
      { "a\0b\x80\xff\n", [['a\x00b\x80\xff\n']] },
      { "h\xc3\xa9llo \xe2\x82\xac", "'h\xc3\xa9llo \xe2\x82\xac'" },
      { "\xf0\x9f\x98\x80", "'\xf0\x9f\x98\x80'" },
      { "\xed\xa0\x80", [['\xed\xa0\x80']] }, -- a surrogate
      { "\xe2\x82", [['\xe2\x82']] },          -- cut short
      { "\xc0\xaf", [['\xc0\xaf']] },          -- overlong
      { "it's", [["it's"]] },
      { "say \"x\" it's", [['say "x" it\'s']] },
      { "\\t\t\127", [['\\t\t\x7f']] },
    }
    for _, c in ipairs(cases) do
      assert.equal(c[2], tapio.repr(c[1]))
    end
  end)
end)

describe("testing.run", function()
  local function failure(body, opts)
    local ok, err = pcall(testing.run(body, opts))
    assert.is_false(ok)
    return err
  end

  it("fails with the body's traceback and the seed", function()
    local err = failure(function() error("boom") end, { seed = 5 })
    assert.matches("boom", err)
    assert.matches("traceback", err)
    assert.matches("seed 5: TAPIO_TEST_SEED=5 replays it", err)
  end)

  it("keeps a failed assertion a failure, not an error", function()
    -- busted reports it as a failure by its value's metatable
    local _, thrown = pcall(assert.equal, 1, 2)
    local err = failure(function() assert.equal(1, 2) end, { seed = 6 })
    assert.equal(getmetatable(thrown), getmetatable(err))
    assert.matches("Expected objects to be equal", tostring(err))
    assert.matches("seed 6: TAPIO_TEST_SEED=6 replays it", tostring(err))
  end)

  it("fails a body that waits with nothing to wake it", function()
    local err = failure(function(clock)
      clock.loop:call_later(30, function() end)
      clock.loop:create_future():await()
    end)
    assert.matches("the test body waits and nothing is left to run: the "
      .. "loop is idle at t=0 %(next timer at t=30: advance the clock%)", err)
  end)

  it("never jumps to a sleep for ever, which a real loop never ends",
     function()
    local err = failure(function()
      tapio.create_task(function() tapio.sleep(math.huge) end):await()
    end, { autojump = true })
    assert.matches("the test body waits and nothing is left to run: the "
      .. "loop is idle at t=0 %(no timer but at t=inf, never due%)", err)
    local loop, clock = testing.new_loop()
    assert.has_error(function() clock:advance(math.huge) end,
      "tapio: clock:advance: bad argument #1 'seconds' (number expected, "
      .. "got inf)")
    loop:close()
  end)

  it("fails a body that leaves tasks or transports open", function()
    local err = failure(function()
      tapio.create_task(function() tapio.sleep(1) end)
    end)
    assert.matches("left 1 task%(s%) pending:\n  tapio%.Task 'Task%-%d+' "
      .. "%(pending%), waiting at:\nstack traceback:", err)
    err = failure(function(clock)
      testing.pipe_pair(testing.recorder(),
        setmetatable({}, { __tostring = function() return "my.Server" end }))
      clock:run_until_idle()
    end)
    assert.matches("left 2 transport%(s%) open", err)
    -- which: each with its protocol, and a recorder's last event
    assert.matches("\n  tapio%.transport %(memory%), protocol table: "
      .. "[^\n]*, last event 'connection_made'\n  tapio%.transport "
      .. "%(memory%), protocol my%.Server\n", err)
  end)

  it("fails a test whose leftover task raises when it is cancelled",
    function()
    local err = failure(function(_, loop)
      local never = loop:create_future()
      tapio.create_task(function()
        local ok, cancel = pcall(never.await, never)
        assert(not ok and tapio.is_cancelled(cancel))
        error("cleanup broke", 0)
      end)
      tapio.sleep(0)
    end, { tasks_ok = true })
    assert.matches("a task the test body left running failed when "
      .. "testing.run cancelled it: cleanup broke", err)
    testing.run(function(_, loop) -- one that ends cancelled: allowed
      local never = loop:create_future()
      tapio.create_task(never.await, never)
      tapio.sleep(0)
    end, { tasks_ok = true })()
  end)

  it("runs the tasks it cancels to their end, as asyncio.run does",
    function()
    -- a cleanup that takes loop turns (real) or virtual time: it ends
    -- before the loop closes (else it would be a task destroyed while
    -- pending), and an error it raises fails the test
    for _, real in ipairs({ true, false }) do
      local ended = false
      testing.run(function()
        tapio.create_task(function()
          pcall(tapio.sleep, 3600)
          for _ = 1, 3 do
            tapio.sleep(0)
          end
          tapio.sleep(real and 0.01 or 30)
          ended = true
        end)
        tapio.sleep(0)
      end, { tasks_ok = true, real = real or nil })()
      assert.is_true(ended)
      local err = failure(function()
        tapio.create_task(function()
          pcall(tapio.sleep, 3600)
          tapio.sleep(0)
          tapio.sleep(real and 0.01 or 30)
          error("cleanup broke", 0)
        end)
        tapio.sleep(0)
      end, { tasks_ok = true, real = real or nil })
      assert.matches("a task the test body left running failed when "
        .. "testing.run cancelled it: cleanup broke", err)
    end
    -- one that waits on after its cancel for what never comes fails it
    -- (a real loop gives it a second)
    for _, real in ipairs({ false, true }) do
      local err = failure(function(_, loop)
        local never = loop:create_future()
        tapio.create_task(function()
          pcall(tapio.sleep, 3600)
          never:await()
        end):set_name("stubborn")
        tapio.sleep(0)
      end, { tasks_ok = true, real = real or nil })
      assert.matches("a task the test body left running did not end when "
        .. "testing.run cancelled it:\n  tapio%.Task 'stubborn' "
        .. "%(pending%), waiting at:\nstack traceback:", err)
    end
  end)

  it("fails a test whose task failed with an error nobody retrieved",
     function()
    -- Lua may collect the task, and report its error, long after the
    -- test; testing.run reports it at the end, as CPython at once.
    local err = failure(function()
      tapio.create_task(function() error("lost in the background") end)
      tapio.sleep(0)
    end)
    assert.matches("unexpected call of the exception handler: task "
      .. "exception was never retrieved %(tapio%.Task 'Task%-%d+' %(failed%)%)"
      .. "\n[^\n]*lost in the background", err)
    local errors
    testing.run(function(clock)
      local t = tapio.create_task(function() error("seen", 0) end)
      tapio.sleep(0)
      assert.equal("seen", t:exception()) -- retrieved: not reported
      tapio.create_task(function() error("allowed", 0) end)
      errors = clock.errors
    end, { errors_ok = true })()
    assert.equal(1, #errors)
    assert.equal("allowed", errors[1].exception)
  end)

  it("adds what the exception handler got to the body's failure",
     function()
    -- the body times out because a task it waits for died: both show
    local err = failure(function()
      local ready = tapio.Event()
      tapio.create_task(function()
        tapio.sleep(1)
        error("the real cause")
        ready:set()
      end)
      tapio.timeout(5, ready.wait, ready)
    end, { autojump = true })
    assert.matches("timeout: timed out after 5 s", err)
    assert.matches("\nthe exception handler was called too: task exception "
      .. "was never retrieved %([^\n]*%)\n[^\n]*the real cause", err)
  end)

  it("fails a body that keeps autojump jumping, at its deadline",
     function()
    -- a retry loop that never ends: the clock would jump for ever
    local err = failure(function()
      while true do
        tapio.sleep(4)
      end
    end, { autojump = true, deadline = 0.1 })
    assert.matches("the test body did not end within its deadline of 0.1 "
      .. "s of real time %(autojump had moved the clock to t=%d+%); it "
      .. "waits at:\nstack traceback:", err)
  end)

  it("fails a body that keeps the loop busy at one virtual time",
     function()
    -- sleep(0) in a loop never lets the clock move: without the step
    -- limit, the run would never return
    local core = require "tapio.core"
    local t0 = core._monotonic()
    local err = failure(function()
      tapio.create_task(function()
        while true do
          tapio.sleep(0)
        end
      end):set_name("poller")
      tapio.sleep(1)
    end, { step_limit = 1000 })
    assert.matches("^tapio: loop:run_forever: the loop made 1000 steps at "
      .. "virtual time t=0 and its clock never moved: code that keeps "
      .. "itself ready %(a call_soon that calls call_soon, a task that "
      .. "sleeps 0 in a loop%) lets no virtual time pass %(the limit: "
      .. "tapio.testing.step_limit, or testing.run's opts.step_limit%)\n"
      .. "2 task%(s%) pending:\n  tapio.Task '", err)
    assert.matches("\n  tapio.Task 'Task%-%d+' %(pending%), waiting at:\n",
      err)
    assert.matches("\n  tapio.Task 'poller' %(pending%), waiting at:\n"
      .. "stack traceback:\n.-testing_spec.lua", err)
    -- a callback that schedules itself, under autojump, past a jump
    err = failure(function(_, loop)
      tapio.sleep(5)
      local function again()
        loop:call_soon(again)
      end
      again()
      tapio.sleep(1)
    end, { autojump = true, step_limit = 1000 })
    assert.matches("the loop made 1000 steps at virtual time t=5 ", err)
    assert.matches("\n1 task%(s%) pending:\n  tapio.Task", err)
    assert.is_true(core._monotonic() - t0 < 1)
  end)

  it("lets the default step limit end a busy loop, and changes it",
     function()
    local loop = testing.new_loop()
    assert.equal(100000, testing.step_limit(loop))
    assert.equal(10, testing.step_limit(loop, 10))
    local n = 0
    local function again()
      n = n + 1
      if n < 11 then
        loop:call_soon(again)
      end
    end
    loop:call_soon(again) -- 11 steps: one too many
    assert.has_error(function() loop:run_forever() end)
    assert.equal(10, n)
    loop:run_forever() -- the work stayed queued: it runs on
    assert.equal(11, n)
    testing.step_limit(loop, 0) -- none
    assert.equal(0, testing.step_limit(loop))
    loop:close()
    local real = tapio.new_loop()
    assert.has_error(function() testing.step_limit(real) end,
      "tapio: testing.step_limit: the loop has no virtual clock "
      .. "(tapio.testing.new_loop makes one)")
    real:close()
    assert.has_error(function() testing.run(function() end,
      { step_limit = -1 }) end, "tapio: testing.run: bad argument #2 "
      .. "'opts' (opts.step_limit: an integer >= 0 expected, got -1)")
    assert.has_error(function() testing.run(function() end,
      { step_limit = 5, real = true }) end, "tapio: testing.run: bad "
      .. "argument #2 'opts' (opts.step_limit is a virtual loop's (a real "
      .. "loop's time moves on its own))")
  end)

  it("raises a busy loop's error into a pcall that the program survives",
     function()
    -- the callbacks ran on the loop's own thread: see pcall_compiled
    local loop, clock = testing.new_loop()
    testing.step_limit(loop, 10)
    local function again()
      loop:call_soon(again)
    end
    loop:call_soon(again)
    for _ = 1, 2 do -- the work stays queued: busy again
      local ok, err = helper.pcall_compiled(loop.run_forever, loop)
      assert.is_false(ok)
      assert.matches("^tapio: loop:run_forever: the loop made 10 steps", err)
    end
    local ok, err = helper.pcall_compiled(clock.advance, clock, 1)
    assert.is_false(ok)
    assert.matches("^tapio: clock:advance: the loop made 10 steps", err)
    testing.step_limit(loop, 0)
    loop:close() -- again() is dropped
  end)

  it("refuses an option it does not know", function()
    assert.has_error(function()
      testing.run(function() end, { autojmp = true })
    end, "tapio: testing.run: bad argument #2 'opts' (unknown option "
      .. "'autojmp')")
  end)

  it("names where each transport and server left open is", function()
    local err = failure(function(_, loop)
      local server = loop:create_server(function() return {} end,
        "127.0.0.1", 0)
      loop:create_connection(function() return {} end, "127.0.0.1",
        server:addresses()[1][2])
    end)
    assert.matches("left 2 transport%(s%) open %(close them, or "
      .. "opts.transports_ok%):\n  tapio%.transport %(memory%) at "
      .. "%('127%.0%.0%.1', 32769%) to %('127%.0%.0%.1', 32768%), protocol "
      .. "table: [^\n]*\n  tapio%.transport %(memory%) at %('127%.0%.0%.1', "
      .. "32768%) to %('127%.0%.0%.1', 32769%)", err)
    assert.matches("\nthe test body left 1 server%(s%) open %(close them, "
      .. "or opts.servers_ok%):\n  tapio%.server %(serving%) at "
      .. "%('127%.0%.0%.1', 32768%)\n", err)
  end)

  it("fails a body that leaves a timer pending, unless allowed",
     function()
    local err = failure(function(clock)
      clock.loop:call_later(30, function() end) -- a keepalive never stopped
    end)
    assert.matches("the test body left a timer pending, due at t=30 "
      .. "%(cancel its handle, or opts.timers_ok%)", err)
    testing.run(function(clock)
      clock.loop:call_later(30, function() end)
    end, { timers_ok = true })()
    testing.run(function(clock) -- cancelled: nothing left
      clock.loop:call_later(30, function() end):cancel()
    end)()
    testing.run(function() -- a left task's sleep goes with it, cancelled
      tapio.create_task(function() tapio.sleep(5) end)
      tapio.sleep(1)
    end, { tasks_ok = true, autojump = true })()
  end)

  it("runs a body on a real loop with opts.real, checking what it leaves",
     function()
    testing.run(function(clock, loop)
      assert.is_nil(clock)
      assert.has_error(function() testing.clock(loop) end) -- not virtual
      local got = testing.recorder(nil, { merge = true })
      local server = loop:create_server(function()
        return { data_received = function(self, data)
          self.transport:write(data:upper())
        end, connection_made = function(self, t)
          self.transport = t
        end }
      end, "127.0.0.1", 0)
      local t = loop:create_connection(function() return got end,
        "127.0.0.1", server:addresses()[1][2])
      t:write("real")
      got:wait("data_received:REAL")
      t:close() -- the server's side ends within the grace second
      server:close()
    end, { real = true })()
    local err = failure(function(_, loop)
      local server = loop:create_server(function() return {} end,
        "127.0.0.1", 0)
      loop:create_connection(function() return {} end, "127.0.0.1",
        server:addresses()[1][2])
      server:close()
    end, { real = true })
    assert.matches("left 2 transport%(s%) open", err)
    err = failure(function(_, loop)
      loop:create_future():await() -- nothing will set it
    end, { real = true, deadline = 0.05 })
    assert.matches("the test body did not end within its deadline of 0.05 "
      .. "s; it waits at:\n.*testing_spec.lua", err)
    assert.has_error(function() testing.run(function() end,
      { deadline = 0 }) end, "tapio: testing.run: bad argument #2 'opts' "
      .. "(opts.deadline: a number of seconds > 0 expected, got 0)")
  end)

  it("fails on a call of the exception handler unless allowed", function()
    local function body(clock)
      local ta = testing.pipe_pair({}, {
        data_received = function() error("bad data") end })
      ta:write("x")
      clock:run_until_idle()
      return clock
    end
    assert.matches("unexpected call of the exception handler: error in "
      .. "protocol.data_received%(%)", failure(body))
    testing.run(function(clock)
      body(clock)
      assert.equal(1, #clock.errors)
    end, { errors_ok = true, transports_ok = true })()
  end)
end)

-- The reference's state machine through memory: three messages split at
-- every pair of places, both directions, the parsed lines the same and
-- every callback in the reference's order.
describe("the stream state machine on memory pairs", function()
  it("holds for every split of a three-message exchange", function()
    local msg = "one\ntwo\nthree\n"
    local runs, t0 = 0, os.clock()
    for i = 1, #msg - 1 do
      for j = i + 1, #msg - 1 do
        testing.run(function(clock)
          local server = line_echo()
          local client = testing.recorder(nil, { merge = true })
          local srec = testing.recorder(server)
          local tc = testing.pipe_pair(client, srec,
            { splits = { i, j } })
          tc:write(msg)
          tc:write_eof()
          clock:run_until_idle()
          local n = 0
          for _, ev in ipairs(srec.events) do
            if ev:match("^data_received:") then n = n + 1 end
          end
          assert.equal(3, n)
          assert.same({ "connection_made", "data_received:echo:one\n"
            .. "echo:two\necho:three\n", "eof_received",
            "connection_lost:nil" }, client.events)
          assert.equal("connection_lost:nil", srec.events[#srec.events])
        end)()
        runs = runs + 1
      end
    end
    assert.equal((#msg - 1) * (#msg - 2) / 2, runs)
    assert.is_true(os.clock() - t0 < 5) -- CPU: a guard against a blow-up
  end)
end)

-- The reference's half-close with a BufferedProtocol, every byte count
-- per read: the server gets its buffer filled, eof_received (returning
-- true: it stays open to write), answers, closes; each side's callbacks
-- in the reference's order whatever the chunking.
describe("the half-closed BufferedProtocol on memory pairs", function()
  it("holds for every chunk size", function()
    local msg = "one\ntwo\nthree\n"
    for size = 1, #msg do
      testing.run(function(clock)
        local buf = tapio.buffer(5)
        local got = {}
        local server = {}
        function server:connection_made(t) self.t = t end
        function server:get_buffer() return buf end
        function server:buffer_updated(n) got[#got + 1] = buf:sub(1, n) end
        function server:eof_received()
          self.t:write(table.concat(got):upper())
          self.t:close()
          return true
        end
        local srec = testing.recorder(server)
        local client = testing.recorder(nil, { merge = true })
        local tc = testing.pipe_pair(client, srec, { chunk = size })
        tc:write(msg)
        tc:write_eof()
        clock:run_until_idle()
        local reads = math.ceil(#msg / math.min(size, 5))
        -- as asyncio's: a buffer is asked for before the read that finds
        -- the end too
        assert.equal(1 + 2 * reads + 3, #srec.events)
        assert.equal("get_buffer:-1", srec.events[2 * reads + 2])
        assert.equal("connection_made", srec.events[1])
        for i = 1, reads do
          assert.equal("get_buffer:-1", srec.events[2 * i])
          assert.matches("^buffer_updated:", srec.events[2 * i + 1])
        end
        assert.same({ "eof_received", "connection_lost:nil" },
          { srec.events[#srec.events - 1], srec.events[#srec.events] })
        assert.equal(msg, table.concat(got))
        assert.same({ "connection_made", "data_received:ONE\nTWO\nTHREE\n",
                      "eof_received", "connection_lost:nil" }, client.events)
      end)()
    end
  end)
end)

describe("the same protocol on a real socket and on the kit", function()
  local function exchange(a, ta)
    ta:write("one\ntwo\n")
    ta:write_eof()
  end

  it("gives the same events", function()
    local real = helper.run(function(loop)
      local srec = testing.recorder(line_echo(), { merge = true })
      local crec = testing.recorder(nil, { merge = true })
      local server = loop:create_server(function() return srec end,
        "127.0.0.1", 0)
      local tc = loop:create_connection(function() return crec end,
        "127.0.0.1", helper.port(server))
      exchange(crec, tc)
      crec:wait("connection_lost")
      srec:wait("connection_lost")
      server:close()
      return { crec.events, srec.events }
    end)
    local kit
    testing.run(function(clock)
      local srec = testing.recorder(line_echo(), { merge = true })
      local crec = testing.recorder(nil, { merge = true })
      local tc = testing.pipe_pair(crec, srec, { chunk = { 1, 3 } })
      exchange(crec, tc)
      clock:run_until_idle()
      kit = { crec.events, srec.events }
    end)()
    assert.same(real, kit)
    assert.same({ "connection_made", "data_received:echo:one\necho:two\n",
                  "eof_received", "connection_lost:nil" }, kit[1])
  end)
end)

-- Faults go on real transports too: a layer between the transport and
-- its socket, inserted by testing.fault, on a real loop.
describe("faults on a real socket", function()
  local function connected(loop)
    local srec = testing.recorder(nil, { merge = true })
    local crec = testing.recorder(nil, { merge = true })
    local server = loop:create_server(function() return srec end,
      "127.0.0.1", 0)
    local tc = loop:create_connection(function() return crec end,
      "127.0.0.1", helper.port(server))
    srec:wait("connection_made")
    return server, tc, crec, srec
  end

  -- The server's transport faulted by spec, the client sending data:
  -- both sides' events once both ended.
  local function faulted(spec, data)
    return helper.run(function(loop)
      local server, tc, crec, srec = connected(loop)
      testing.fault(srec.transport, spec)
      tc:write(data)
      srec:wait("connection_lost")
      crec:wait("connection_lost")
      server:close()
      return srec.events, crec.events
    end)
  end

  it("end the input in the middle of a message", function()
    local server, client = faulted({ eof_after = 3 }, "hello\n")
    assert.same({ "connection_made", "data_received:hel", "eof_received",
                  "connection_lost:nil" }, server)
    -- the server closed with "lo\n" unread: the kernel resets
    assert.same({ "connection_made", "connection_lost:ECONNRESET" }, client)
  end)

  it("reset after N bytes, the peer seeing the RST", function()
    local server, client = faulted({ reset_after = 2 }, "abcdef")
    assert.same({ "connection_made", "data_received:ab",
                  "connection_lost:ECONNRESET" }, server)
    assert.same({ "connection_made", "connection_lost:ECONNRESET" }, client)
  end)

  it("stop taking a transport's output: pause_writing comes", function()
    helper.run(function(loop)
      local server, tc, crec, srec = connected(loop)
      testing.fault(tc, { stop_writing = true })
      tc:set_write_buffer_limits(1000)
      tc:write(("z"):rep(4000))
      crec:wait("pause_writing")
      assert.equal(4000, tc:get_write_buffer_size())
      testing.clear_faults(tc)
      crec:wait("resume_writing")
      tc:close()
      srec:wait("connection_lost")
      server:close()
      assert.same({ "connection_made", "data_received:" .. ("z"):rep(4000),
                    "eof_received", "connection_lost:nil" }, srec.events)
    end)
  end)

  -- A close with 5000 bytes held by stop_writing: for 0.1 s of the
  -- loop's time the peer gets nothing, not even the end, and
  -- connection_lost does not come.
  local function close_held(loop)
    local server, tc, crec, srec = connected(loop)
    testing.fault(tc, { stop_writing = true })
    tc:write(("z"):rep(5000))
    tc:close()
    tapio.sleep(0.1)
    assert.same({ "connection_made" }, crec.events)
    assert.same({ "connection_made" }, srec.events)
    assert.equal(5000, tc:get_write_buffer_size())
    return server, tc, crec, srec
  end

  it("hold a close's bytes until the fault is cleared", function()
    helper.run(function(loop)
      local server, tc, crec, srec = close_held(loop)
      testing.clear_faults(tc)
      srec:wait("connection_lost")
      crec:wait("connection_lost")
      tapio.sleep(0.05) -- nothing after connection_lost
      server:close()
      assert.same({ "connection_made", "data_received:" .. ("z"):rep(5000),
                    "eof_received", "connection_lost:nil" }, srec.events)
      assert.same({ "connection_made", "connection_lost:nil" }, crec.events)
    end)
  end)

  -- abort does not wait: the socket closes with a FIN (nothing unread
  -- here, so no RST) and the peer reads the end with none of the bytes.
  it("drop the held bytes at an abort", function()
    helper.run(function(loop)
      local server, tc, crec, srec = close_held(loop)
      tc:abort()
      srec:wait("connection_lost")
      crec:wait("connection_lost")
      tapio.sleep(0.05)
      server:close()
      assert.same({ "connection_made", "eof_received", "connection_lost:nil" },
                  srec.events)
      assert.same({ "connection_made", "connection_lost:nil" }, crec.events)
    end)
  end)
end)
