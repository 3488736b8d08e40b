-- The loop: scheduled calls and their handles, running and stopping,
-- closing, the exception handler, argument errors.
local helper = require "spec.helper"
local tapio = helper.tapio

describe("a loop", function()
  local loop
  before_each(function()
    loop = tapio.new_loop()
  end)
  after_each(function()
    loop:close()
  end)

  it("has a monotonic time and knows whether it runs", function()
    local t0 = loop:time()
    assert.is_number(t0)
    assert.is_true(loop:time() >= t0)
    assert.is_false(loop:is_running())
    assert.is_false(loop:is_closed())
    assert.are.equal("tapio.loop (idle)", tostring(loop))
    assert.is_true(loop:memory() >= 0)
    local inside
    loop:call_soon(function()
      inside = { loop:is_running(), tapio.get_running_loop() }
    end)
    loop:run_once()
    assert.are.same({ true, loop }, inside)
  end)

  it("runs call_soon callbacks in order, with their arguments", function()
    local calls = {}
    for i = 1, 5 do
      loop:call_soon(function(a, b) calls[#calls + 1] = a .. b end, i, "x")
    end
    assert.are.same({}, calls) -- never at once
    loop:run_once()
    assert.are.same({ "1x", "2x", "3x", "4x", "5x" }, calls)
  end)

  it("runs a call scheduled by a call in the next iteration", function()
    local calls = {}
    loop:call_soon(function()
      calls[#calls + 1] = "first"
      loop:call_soon(function() calls[#calls + 1] = "second" end)
    end)
    loop:run_once()
    assert.are.same({ "first" }, calls)
    loop:run_once()
    assert.are.same({ "first", "second" }, calls)
  end)

  it("accepts callable tables as callbacks", function()
    local called = false
    local callable = setmetatable({}, { __call = function(_, v)
      called = v
    end })
    loop:call_soon(callable, "yes")
    loop:run_once()
    assert.are.equal("yes", called)
  end)

  it("runs call_later after its delay, same delays in order", function()
    local calls, t0 = {}, loop:time()
    local times = {}
    loop:call_later(0.03, function() calls[#calls + 1] = "b1" end)
    loop:call_later(0.01, function()
      calls[#calls + 1] = "a"
      times.a = loop:time()
    end)
    loop:call_later(0.03, function()
      calls[#calls + 1] = "b2"
      times.b = loop:time()
    end)
    loop:call_later(-1, function() calls[#calls + 1] = "now" end)
    helper.wait_until(loop, function() return #calls == 4 end)
    assert.are.same({ "now", "a", "b1", "b2" }, calls)
    assert.is_true(times.a - t0 >= 0.01)
    assert.is_true(times.b - t0 >= 0.03)
  end)

  it("runs call_at at a loop time", function()
    local at
    local when = loop:time() + 0.02
    local h = loop:call_at(when, function() at = loop:time() end)
    assert.are.equal(when, h:when())
    helper.wait_until(loop, function() return at end)
    assert.is_true(at >= when)
  end)

  it("gives a call_at's handle its time, also one before 0 (a virtual "
     .. "clock's past)", function()
    local vloop = require("tapio.testing").new_loop()
    local h = vloop:call_at(-1, function() end)
    assert.are.equal(-1, h:when())
    h:cancel()
    vloop:close()
  end)

  it("gives handles that cancel", function()
    local calls = {}
    local h1 = loop:call_soon(function() calls[#calls + 1] = 1 end)
    local h2 = loop:call_later(0, function() calls[#calls + 1] = 2 end)
    local h3 = loop:call_soon(function() calls[#calls + 1] = 3 end)
    assert.is_nil(h1:when())
    assert.is_number(h2:when())
    assert.are.equal("tapio.handle (pending)", tostring(h1))
    h1:cancel()
    h2:cancel()
    h2:cancel() -- harmless
    assert.is_true(h1:cancelled())
    assert.are.equal("tapio.handle (cancelled)", tostring(h1))
    helper.wait_until(loop, function() return #calls == 1 end)
    loop:run_once()
    assert.are.same({ 3 }, calls)
    assert.are.equal("tapio.handle (done)", tostring(h3))
    h3:cancel() -- after it ran: harmless, and marks it
    assert.is_true(h3:cancelled())
  end)

  it("runs until stopped", function()
    local n = 0
    local function tick()
      n = n + 1
      if n == 3 then
        loop:stop()
      else
        loop:call_soon(tick)
      end
    end
    loop:call_soon(tick)
    loop:run_forever()
    assert.are.equal(3, n)
    assert.is_false(loop:is_running())
  end)

  it("runs one iteration after a stop that came first", function()
    local ran = false
    loop:call_soon(function() ran = true end)
    loop:stop()
    loop:run_forever()
    assert.is_true(ran)
  end)

  it("steps without waiting, or waits for one event", function()
    local t0 = loop:time()
    loop:run_once() -- nothing to do: returns at once
    loop:run_once(false)
    assert.is_true(loop:time() - t0 < 1)
    local fired = false
    loop:call_later(0.02, function() fired = true end)
    helper.wait_until(loop, function() return fired end)
    assert.is_true(loop:time() - t0 >= 0.02)
  end)

  it("refuses to run twice at once", function()
    local err
    loop:call_soon(function()
      local ok, e = pcall(loop.run_forever, loop)
      err = not ok and e
      ok, e = pcall(loop.run_once, loop)
      err = err and not ok and err
    end)
    loop:run_once()
    assert.are.equal("tapio: loop:run_forever: the loop is already running",
      err)
  end)

  it("sends a callback's error to the exception handler and goes on",
    function()
    local contexts, after = {}, false
    loop:set_exception_handler(function(l, ctx)
      assert.are.equal(loop, l)
      contexts[#contexts + 1] = ctx
    end)
    local err = setmetatable({}, { __tostring = function() return "E!" end })
    loop:call_soon(function() error(err) end)
    loop:call_soon(function() error("plain") end)
    loop:call_soon(function() after = true end)
    loop:run_once()
    assert.is_true(after)
    assert.are.equal(2, #contexts)
    assert.are.equal("error in a scheduled callback", contexts[1].message)
    assert.are.equal(err, contexts[1].exception)
    assert.matches("^E!\nstack traceback:", contexts[1].traceback)
    assert.matches("loop_spec.lua:%d+: plain", contexts[2].exception)
    assert.matches("loop_spec.lua", contexts[2].traceback)
  end)

  it("keeps, returns and resets its exception handler", function()
    assert.is_nil(loop:get_exception_handler())
    local got
    local function handler(_, ctx) got = ctx end
    loop:set_exception_handler(handler)
    assert.are.equal(handler, loop:get_exception_handler())
    loop:call_exception_handler({ message = "by hand" })
    assert.are.equal("by hand", got.message)
    loop:set_exception_handler(nil)
    assert.is_nil(loop:get_exception_handler())
    assert.has_error(function() loop:set_exception_handler(1) end,
      "tapio: loop:set_exception_handler: bad argument #1 'handler' "
      .. "(function expected, got number)")
    assert.has_error(function() loop:call_exception_handler("x") end)
  end)

  it("keeps its exception handler after close, as asyncio's close does",
    function()
    local l = tapio.new_loop()
    local heard = {}
    local function handler(got, ctx)
      assert.are.equal(l, got)
      heard[#heard + 1] = ctx.message
    end
    l:set_exception_handler(handler)
    local fut = l:create_future()
    fut:set_exception("lost") -- nobody retrieves it
    l:close()
    assert.are.equal(handler, l:get_exception_handler())
    l:call_exception_handler({ message = "by hand" })
    fut = nil -- reported when collected, after the close
    helper.collect()
    assert.are.same({ "by hand", "future exception was never retrieved" },
      heard)
    l:set_exception_handler(nil)
    assert.is_nil(l:get_exception_handler())
  end)

  it("reports callbacks slower than slow_callback_duration in debug mode",
    function()
    local contexts = {}
    loop:set_exception_handler(function(_, ctx)
      contexts[#contexts + 1] = ctx
    end)
    local function spin(seconds) -- real time, as a busy callback takes it
      local t0 = tapio.new_loop()
      local start = t0:time()
      while t0:time() - start < seconds do end
      t0:close()
    end
    assert.are.same({ false, 0.1 }, { loop:get_debug() }) -- asyncio's
    loop:call_soon(spin, 0.06)
    loop:run_once()
    assert.are.equal(0, #contexts) -- off: nothing measured
    loop:set_debug(true, 0.05)
    assert.are.same({ true, 0.05 }, { loop:get_debug() })
    loop:call_soon(spin, 0.06)
    loop:call_soon(function() end)
    loop:run_once()
    assert.are.equal(1, #contexts) -- the slow one, not the quick one
    assert.matches("^slow callback: a scheduled callback took %d+%.%d+ s "
      .. "%(the loop's slow_callback_duration: 0%.05 s%)$",
      contexts[1].message)
    assert.is_true(contexts[1].duration >= 0.05)
    assert.is_nil(contexts[1].exception)
    -- a protocol's method: named, with its transport and protocol
    local a, b = tapio.socketpair()
    local proto = { data_received = function() spin(0.06) end }
    local t = loop:run_until_complete(loop:create_connection(function()
      return proto
    end, { sock = a }))
    tapio.send(b, "x")
    helper.wait_until(loop, function() return #contexts == 2 end)
    assert.matches("^slow callback: protocol.data_received%(%) took",
      contexts[2].message)
    assert.are.equal(t, contexts[2].transport)
    assert.are.equal(proto, contexts[2].protocol)
    -- a failing slow callback: its error, then its time
    loop:call_soon(function() spin(0.06) error("late") end)
    loop:run_once()
    assert.are.equal("error in a scheduled callback", contexts[3].message)
    assert.matches("^slow callback: a scheduled callback", contexts[4].message)
    loop:set_debug(false)
    assert.are.same({ false, 0.05 }, { loop:get_debug() })
    t:close()
    tapio.close_fd(b)
    assert.has_error(function() loop:set_debug(true, 0) end,
      "tapio: loop:set_debug: bad argument #2 'slow_callback_duration' "
      .. "(seconds > 0 expected)")
  end)

  it("names the task whose step made a callback slow in debug mode",
    function()
    local contexts = {}
    loop:set_exception_handler(function(_, ctx)
      contexts[#contexts + 1] = ctx
    end)
    local function spin(seconds)
      local clock = tapio.new_loop()
      local start = clock:time()
      while clock:time() - start < seconds do end
      clock:close()
    end
    loop:set_debug(true, 0.05)
    local fut = loop:create_future()
    local slowpoke = loop:create_task(function()
      tapio.sleep(0) -- a first step that is quick
      fut:await() -- woken by a done callback: a second step, slow
      spin(0.06)
    end)
    slowpoke:set_name("slowpoke")
    local quick = loop:create_task(function() end)
    helper.wait_until(loop, function() return quick:done() end)
    loop:call_soon(function() fut:set_result(1) end)
    helper.wait_until(loop, function() return slowpoke:done() end)
    assert.are.equal(1, #contexts)
    assert.matches("^slow callback: task 'slowpoke' %(in a scheduled "
      .. "callback%) took %d+%.%d+ s %(the loop's slow_callback_duration: "
      .. "0%.05 s%)$", contexts[1].message)
    assert.are.equal(slowpoke, contexts[1].task)
    -- a slow callback after it, with no task in it: no task named
    loop:call_soon(spin, 0.06)
    loop:run_once()
    assert.are.equal(2, #contexts)
    assert.matches("^slow callback: a scheduled callback took",
      contexts[2].message)
    assert.is_nil(contexts[2].task)
    -- off again: steps are not timed, nothing is reported
    loop:set_debug(false)
    loop:run_until_complete(loop:create_task(function() spin(0.06) end))
    assert.are.equal(2, #contexts)
    -- a slow step whose callback was not timed (debug mode came on in it,
    -- while another loop's debug mode had steps timed) is not named by a
    -- later slow callback
    local other = tapio.new_loop()
    other:set_debug(true)
    loop:run_until_complete(loop:create_task(function()
      spin(0.06)
      loop:set_debug(true, 0.05)
    end))
    loop:call_soon(spin, 0.06)
    loop:run_once()
    assert.are.equal(3, #contexts)
    assert.is_nil(contexts[3].task)
    other:close()
    -- a stream's task, woken inside its transport's data_received
    local a, b = tapio.socketpair()
    local reading = false
    local reader_task = loop:create_task(function()
      local reader, writer = tapio.open_connection(nil, nil, { sock = a })
      reading = true
      reader:read(1)
      spin(0.06)
      writer:close()
    end)
    reader_task:set_name("reader")
    helper.wait_until(loop, function() return reading end)
    tapio.send(b, "x")
    helper.wait_until(loop, function() return #contexts == 4 end)
    assert.matches("^slow callback: task 'reader' %(in "
      .. "protocol.data_received%(%)%) took", contexts[4].message)
    assert.are.equal(reader_task, contexts[4].task)
    assert.is_not_nil(contexts[4].transport)
    helper.wait_until(loop, function() return reader_task:done() end)
    tapio.close_fd(b)
    loop:set_debug(false)
  end)

  it("answers get_debug on a closed loop, as asyncio does", function()
    local l = tapio.new_loop()
    l:set_debug(true, 0.2)
    l:close()
    assert.are.same({ true, 0.2 }, { l:get_debug() })
  end)

  it("is in debug mode from the start with TAPIO_DEBUG set", function()
    local out, status = helper.execute("TAPIO_DEBUG=1 "
      .. helper.shell_quote(os.getenv("TAPIO_HOST") or "build/tapio")
      .. " -e 'print(require(\"tapio\").new_loop():get_debug())'")
    assert.are.equal(0, status, out)
    assert.are.equal("true\t0.1\n", out)
  end)

  it("raises on bad arguments, naming function and argument", function()
    assert.has_error(function() loop:call_soon(42) end,
      "tapio: loop:call_soon: bad argument #1 'callback' "
      .. "(function expected, got number)")
    assert.has_error(function() loop:call_later("1", print) end,
      "tapio: loop:call_later: bad argument #1 'delay' "
      .. "(number expected, got string)")
    assert.has_error(function() loop:call_at(0 / 0, print) end,
      "tapio: loop:call_at: bad argument #1 'when' "
      .. "(number expected, got NaN)")
    assert.has_error(function() loop.time(42) end,
      "tapio: loop:time: bad self (tapio.loop expected, got number)")
  end)

  it("anchors pending calls until they run or are cancelled", function()
    local base = loop:_debug().refs
    local h = loop:call_later(10, print)
    loop:call_soon(function() end)
    assert.are.equal(base + 3, loop:_debug().refs) -- and the loop itself
    assert.are.equal(2, loop:_debug().calls)
    h:cancel()
    loop:run_once()
    assert.are.equal(base, loop:_debug().refs)
    assert.are.equal(0, loop:_debug().calls)
  end)
end)

describe("closing a loop", function()
  it("is refused while it runs and idempotent after", function()
    local loop = tapio.new_loop()
    local err
    loop:call_soon(function()
      local ok, e = pcall(loop.close, loop)
      err = not ok and e
    end)
    loop:run_once()
    assert.are.equal("tapio: loop:close: cannot close a running loop", err)
    loop:close()
    loop:close()
    assert.is_true(loop:is_closed())
    assert.are.equal("tapio.loop (closed)", tostring(loop))
  end)

  it("drops pending calls and lets go of everything", function()
    local loop = tapio.new_loop()
    local ran = false
    loop:call_soon(function() ran = true end)
    loop:call_later(1, function() ran = true end)
    loop:close()
    assert.is_false(ran)
    assert.are.equal(0, loop:_debug().refs)
    assert.are.equal(0, loop:_debug().calls)
  end)

  it("makes its methods raise", function()
    local loop = tapio.new_loop()
    loop:close()
    assert.has_error(function() loop:call_soon(print) end,
      "tapio: loop:call_soon: the loop is closed")
    assert.has_error(function() loop:run_forever() end,
      "tapio: loop:run_forever: the loop is closed")
    assert.has_error(function() loop:run_once() end,
      "tapio: loop:run_once: the loop is closed")
    assert.has_error(function() loop:run_until_complete(print) end,
      "tapio: loop:run_until_complete: the loop is closed")
    assert.has_error(function() loop:create_task(print) end,
      "tapio: loop:create_task: the loop is closed")
    assert.has_error(function()
      loop:create_connection(print, "127.0.0.1", 1)
    end, "tapio: loop:create_connection: the loop is closed")
    assert.has_error(function() loop:time() end,
      "tapio: loop:time: the loop is closed")
  end)

  -- asyncio: is_running() and create_future() answer on a closed loop;
  -- what would schedule something raises.
  it("still answers is_running and create_future, as asyncio", function()
    local loop = tapio.new_loop()
    loop:close()
    assert.is_false(loop:is_running())
    assert.is_true(loop:is_closed())
    local fut = loop:create_future()
    assert.are.equal(loop, fut:get_loop())
    assert.is_false(fut:done())
    fut:set_result(42) -- no done callback: nothing to schedule
    assert.are.equal(42, fut:result())
    assert.has_error(function() fut:add_done_callback(print) end,
      "tapio: loop:call_soon: the loop is closed")
  end)

  it("is done by the garbage collector when forgotten with nothing open",
    function()
    local loop = tapio.new_loop()
    local h = loop:call_later(10, print)
    local weak = setmetatable({ loop }, { __mode = "v" })
    loop = nil
    helper.collect()
    assert.is_not_nil(weak[1]) -- a pending call keeps it (see gc_spec)
    h:cancel()
    helper.collect()
    assert.is_nil(weak[1])
  end)
end)
