-- tapio.wait_for, tapio.timeout, tapio.gather and tapio.shield, on the
-- testing kit's virtual clock (every time asserted is the loop's), and
-- once on a real loop.
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"

local jump = { autojump = true }
local pack = table.pack or function(...)
  return { n = select("#", ...), ... }
end
local unpack = table.unpack or unpack

local raised = helper.fails -- the error a call raised (it must raise)

local function is_timeout(err, name, delay)
  assert.are.equal(tapio.ETIMEDOUT, err.code)
  -- a deadline already passed says so, not "after -10 s"
  assert.are.equal(delay > 0 and ("%s: timed out after %g s"):format(name,
    delay) or name .. ": timed out, the deadline had passed", err.message)
end

-- A task that sleeps for delay, then returns its results; its log says
-- what happened to it.
local function sleeper(log, delay, ...)
  local results = pack(...)
  return function()
    local ok, err = pcall(tapio.sleep, delay)
    if not ok then
      log[#log + 1] = ("cancelled at %g"):format(
        tapio.get_running_loop():time())
      error(err, 0)
    end
    log[#log + 1] = ("slept until %g"):format(
      tapio.get_running_loop():time())
    return unpack(results, 1, results.n)
  end
end

describe("tapio.wait_for", function()
  it("returns every result of what finishes in time, a function run as " ..
     "a task or a future", testing.run(function(clock, loop)
    local log = {}
    local a, b, c = tapio.wait_for(sleeper(log, 1, "x", nil, 3), 2)
    assert.are.same({ "x", nil, 3 }, { a, b, c })
    assert.are.equal(1, clock:time())
    local fut = loop:create_future()
    loop:call_later(0.5, function() fut:set_result("y") end)
    assert.are.equal("y", tapio.wait_for(fut, 1))
    assert.are.equal(1.5, clock:time())
    assert.are.equal("z", tapio.wait_for(sleeper(log, 3600, "z"), nil))
    assert.are.same({ "slept until 1", "slept until 3601.5" }, log)
  end, jump))

  it("cancels what is late and raises a timeout once its cancellation " ..
     "has finished", testing.run(function(clock, loop)
    local log = {}
    local task = loop:create_task(function()
      local ok, err = pcall(tapio.sleep, 10)
      log[#log + 1] = ("cancelled at %g"):format(clock:time())
      assert.is_false(ok)
      tapio.sleep(0.25) -- its cleanup takes a while: wait_for waits for it
      error(err, 0)
    end)
    local err = raised(tapio.wait_for, task, 2)
    is_timeout(err, "wait_for", 2)
    assert.are.same({ "cancelled at 2" }, log)
    assert.are.equal(2.25, clock:time())
    assert.is_true(task:cancelled())
    assert.are.equal(0, tapio.current_task():cancelling())
  end, jump))

  it("returns what the late one returns when it swallows its " ..
     "cancellation", testing.run(function(clock)
    local got = tapio.wait_for(function()
      pcall(tapio.sleep, 10)
      return "kept"
    end, 1)
    assert.are.equal("kept", got)
    assert.are.equal(1, clock:time())
  end, jump))

  it("returns what finished at the deadline's instant, before the " ..
     "deadline's cancel reached the waiting task (asyncio drops it, " ..
     "cpython gh-86296: a connection made then leaked)",
     testing.run(function(clock, loop)
    -- each due at 1 with the deadline, and scheduled before it: it fires
    -- first, and the waiting task's wake-up is still to run
    local fut = loop:create_future()
    loop:call_later(1, function() fut:set_result("made", 2) end)
    local a, b = tapio.wait_for(fut, 1)
    assert.are.same({ "made", 2 }, { a, b })
    assert.are.equal(1, clock:time())
    assert.are.equal(0, tapio.current_task():cancelling())
    local failed = loop:create_future()
    loop:call_later(1, function() failed:set_exception("boom") end)
    assert.are.equal("boom", raised(tapio.wait_for, failed, 1))
    assert.are.equal(2, clock:time())
    assert.are.equal(0, tapio.current_task():cancelling())
  end, jump))

  it("cancelled from outside in that instant, returns what finished and "
     .. "raises the cancellation at the task's next wait (asyncio drops "
     .. "what finished), with or without a deadline",
     testing.run(function(clock, loop)
    for _, timeout in ipairs({ 10, false }) do
      local fut = loop:create_future()
      loop:call_later(1, function() fut:set_result("made") end)
      local got, after = {}, nil
      local outer = loop:create_task(function()
        got = { tapio.wait_for(fut, timeout or nil) }
        local ok, err = pcall(tapio.sleep, 0) -- the cancellation is here
        after = ok
        error(err, 0)
      end)
      loop:call_later(1, function() outer:cancel("stop") end)
      local err = raised(outer.await, outer)
      assert.is_true(tapio.is_cancelled(err))
      assert.are.equal("stop", err.message)
      assert.are.same({ "made" }, got)
      assert.is_false(after)
      assert.are.equal(1, outer:cancelling())
    end
    -- a task that waits no more ends cancelled
    local fut = loop:create_future()
    loop:call_later(1, function() fut:set_result("made") end)
    local outer = loop:create_task(tapio.wait_for, fut, 10)
    loop:call_later(1, function() outer:cancel() end)
    assert.is_true(tapio.is_cancelled(raised(outer.await, outer)))
    assert.is_true(outer:cancelled())
    assert.are.equal(3, clock:time())
  end, jump))

  it("with a timeout of 0 returns what is done and times out what is not",
     testing.run(function(clock, loop)
    local fut = loop:create_future()
    fut:set_result(1)
    assert.are.equal(1, tapio.wait_for(fut, 0))
    assert.are.equal(1, tapio.wait_for(fut, -1))
    local pending = loop:create_future()
    is_timeout(raised(tapio.wait_for, pending, 0), "wait_for", 0)
    assert.is_true(pending:cancelled())
    assert.are.equal(0, clock:time())
  end))

  it("with a timeout of 0 cancels at once what is not done: a function " ..
     "or a task not started never runs; what swallows the cancel is " ..
     "returned (asyncio 3.12+)", testing.run(function(clock, loop)
    local ran = {}
    local function quick(name)
      return function()
        ran[#ran + 1] = name
        return name
      end
    end
    is_timeout(raised(tapio.wait_for, quick("fn"), 0), "wait_for", 0)
    local task = loop:create_task(quick("task"))
    is_timeout(raised(tapio.wait_for, task, -1), "wait_for", -1)
    assert.is_true(task:cancelled())
    local swallows = loop:create_task(function()
      pcall(tapio.sleep, 10)
      tapio.sleep(0.5) -- its cleanup: waited for
      return "kept"
    end)
    tapio.sleep(0)
    assert.are.equal("kept", tapio.wait_for(swallows, 0))
    assert.are.equal(0.5, clock:time())
    assert.are.same({}, ran)
    assert.are.equal(0, tapio.current_task():cancelling())
  end, jump))

  it("cancelled itself, cancels what it waits for and ends cancelled, " ..
     "not timed out, also when the deadline falls at the same time",
     testing.run(function(clock, loop)
    for _, cancel_at in ipairs({ 0.5, 1 }) do
      local log = {}
      local inner = loop:create_task(sleeper(log, 10))
      local outer = loop:create_task(tapio.wait_for, inner, 1)
      loop:call_later(cancel_at, function() outer:cancel() end)
      assert.is_true(tapio.is_cancelled(raised(outer.await, outer)))
      assert.is_true(outer:cancelled())
      assert.is_true(inner:cancelled())
      assert.are.same({ ("cancelled at %g"):format(clock:time()) }, log)
    end
  end, jump))

  it("outside a task returns a future of it, on the future's loop",
     function()
    local loop, clock = testing.new_loop()
    local fut = loop:create_future()
    local waiting = tapio.wait_for(fut, 5)
    assert.is_true(tapio.is_future(waiting))
    clock:advance(5)
    is_timeout(raised(waiting.result, waiting), "wait_for", 5)
    assert.is_true(fut:cancelled())
    loop:close()
  end)

  it("reads a stream with a deadline; the reader stays usable",
     testing.run(function(clock)
    local _, wa, rb, wb = testing.open_pair()
    local err = raised(tapio.wait_for, function()
      return rb:readline()
    end, 1)
    is_timeout(err, "wait_for", 1)
    assert.are.equal(1, clock:time())
    wa:write("late\n")
    assert.are.equal("late\n", tapio.wait_for(function()
      return rb:readline()
    end, 1))
    wa:close()
    wb:close()
  end, jump))

  it("refuses what is not a future or a function, and a timeout that " ..
     "is not seconds, at the caller's line", testing.run(function()
    assert.matches("wait_spec.lua:%d+: tapio: wait_for: bad argument #1 " ..
      "'future' %(future or function expected, got number; in a task a " ..
      "call waits at once: give a function that makes it%)",
      raised(function() tapio.wait_for(42, 1) end))
    local loop = tapio.get_running_loop()
    loop:call_soon(function() -- no hint outside a task
      assert.matches("got string%)$",
        raised(function() tapio.wait_for("line\n", 1) end))
    end)
    tapio.sleep(0)
    assert.matches("wait_for: bad argument #2 'timeout' %(seconds " ..
      "expected, got string%)", raised(tapio.wait_for, function() end, "1"))
    assert.matches("seconds expected, got NaN%)", -- cpython gh-105331
      raised(tapio.wait_for, function() end, 0 / 0))
    local other = testing.new_loop()
    assert.matches("wait_for: the future belongs to another loop",
      raised(tapio.wait_for, other:create_future(), 1))
    other:close()
  end))
end)

describe("tapio.timeout", function()
  it("returns fn's results, run in the same task, when in time",
     testing.run(function(clock)
    local me = tapio.current_task()
    local a, b = tapio.timeout(2, function(x)
      assert.are.equal(me, tapio.current_task())
      tapio.sleep(1)
      return x, "b"
    end, "a")
    assert.are.same({ "a", "b" }, { a, b })
    assert.are.equal(1, clock:time())
    assert.are.equal(0, me:cancelling())
  end, jump))

  it("cancels the task where it waits and raises a timeout where it was " ..
     "set", testing.run(function(clock)
    local seen
    local err = raised(tapio.timeout, 1.5, function()
      local ok, e = pcall(tapio.sleep, 10)
      seen = { ok, tapio.is_cancelled(e), clock:time() }
      error(e, 0)
    end)
    is_timeout(err, "timeout", 1.5)
    assert.are.same({ false, true, 1.5 }, seen)
    assert.are.equal(0, tapio.current_task():cancelling())
    tapio.sleep(1) -- the task goes on, not cancelled
    assert.are.equal(2.5, clock:time())
  end, jump))

  it("of two nested that expire together, the outer raises the timeout " ..
     "and the inner lets the cancellation through",
     testing.run(function()
    local inner_err
    local err = raised(tapio.timeout, 1, function()
      inner_err = raised(tapio.timeout, 1, tapio.sleep, 5)
      error(inner_err, 0)
    end)
    assert.is_true(tapio.is_cancelled(inner_err))
    is_timeout(err, "timeout", 1)
    assert.are.equal(0, tapio.current_task():cancelling())
  end, jump))

  it("an inner deadline's timeout passes through an outer one in time",
     testing.run(function()
    local err = raised(tapio.timeout, 5, function()
      tapio.timeout(1, tapio.sleep, 5)
    end)
    is_timeout(err, "timeout", 1)
  end, jump))

  it("leaves a cancellation from outside a cancellation",
     testing.run(function(_, loop)
    local task = loop:create_task(tapio.timeout, 1, tapio.sleep, 5)
    loop:call_later(1, function() task:cancel() end) -- with the deadline
    assert.is_true(tapio.is_cancelled(raised(task.await, task)))
    assert.is_true(task:cancelled())
  end, jump))

  it("with a delay of 0 leaves a cancel asked before it a cancellation "
     .. "(cpython gh-134471)", testing.run(function()
    local me = tapio.current_task()
    is_timeout(raised(tapio.timeout, 0, tapio.sleep, 1), "timeout", 0)
    me:cancel() -- before the deadline is set, not its own
    local err = raised(tapio.timeout, 0, tapio.sleep, 1)
    assert.is_true(tapio.is_cancelled(err)) -- asyncio gave TimeoutError
    assert.are.equal(1, me:cancelling())
    me:uncancel()
  end, jump))

  it("with a delay of nil runs fn with no deadline (asyncio's None)",
     testing.run(function(clock)
    assert.are.same({ n = 3, "a", nil, "c" },
      pack(tapio.timeout(nil, tapio.sleep, 1e6, "a", nil, "c")))
    assert.are.equal(1e6, clock:time())
    assert.are.equal(0, tapio.current_task():cancelling())
  end, jump))

  it("timeout_at: the deadline at a time of the loop's clock",
     testing.run(function(clock, loop)
    clock:advance(10)
    assert.are.same({ n = 2, "a", "b" },
      pack(tapio.timeout_at(12, tapio.sleep, 1, "a", "b")))
    assert.are.equal(11, clock:time())
    is_timeout(raised(tapio.timeout_at, 12, tapio.sleep, 5), "timeout_at", 1)
    assert.are.equal(12, clock:time())
    is_timeout(raised(tapio.timeout_at, 2, tapio.sleep, 5), "timeout_at", -10)
    assert.are.equal(12, clock:time()) -- passed: at the first wait
    assert.are.equal("c", tapio.timeout_at(nil, tapio.sleep, 100, "c"))
    local t
    loop:call_soon(function() t = tapio.timeout_at(113, tapio.sleep, 5) end)
    tapio.sleep(0)
    clock:advance(1)
    is_timeout(raised(t.result, t), "timeout_at", 1)
    assert.matches("wait_spec.lua:%d+: tapio: timeout_at: bad argument #1 " ..
      "'when' %(seconds expected, got string%)",
      raised(function() tapio.timeout_at("1", print) end))
    assert.matches("timeout_at: bad argument #2 'fn' %(function expected",
      raised(tapio.timeout_at, 1, 2))
  end, jump))

  it("outside a task returns a task of it; bad arguments raise",
     function()
    local loop, clock = testing.new_loop()
    local t
    loop:call_soon(function() t = tapio.timeout(1, tapio.sleep, 5) end)
    clock:advance(1)
    is_timeout(raised(t.result, t), "timeout", 1)
    assert.matches("timeout: bad argument #1 'delay' %(seconds expected",
      raised(tapio.timeout, "1", print))
    assert.matches("timeout: bad argument #2 'fn' %(function expected",
      raised(tapio.timeout, 1, 2))
    assert.matches("timeout_at: bad argument #1 'when' %(seconds " ..
      "expected, got NaN%)", raised(tapio.timeout_at, 0 / 0, print))
    loop:close()
  end)
end)

describe("tapio.gather", function()
  it("gives each one's first result in the list's order",
     testing.run(function(clock, loop)
    local log = {}
    local fut = loop:create_future()
    loop:call_later(2, function() fut:set_result("f", "dropped") end)
    local r = tapio.gather({ sleeper(log, 3, "a"), fut, sleeper(log, 1, "c"),
                             function() return nil end })
    assert.are.same({ n = 4, "a", "f", "c", nil }, r)
    assert.are.equal(3, clock:time())
    assert.are.same({ n = 0 }, tapio.gather({}))
  end, jump))

  it("fails with the first error at once; the others run on",
     testing.run(function(clock, loop)
    local log = {}
    local slow = loop:create_task(sleeper(log, 5, "slow"))
    local err = raised(tapio.gather, { slow, function()
      tapio.sleep(1)
      error("broken", 0)
    end })
    assert.are.equal("broken", err)
    assert.are.equal(1, clock:time())
    assert.are.equal("slow", slow:await())
    assert.are.same({ "slept until 5" }, log)
  end, jump))

  it("with return_exceptions puts errors and cancellations in their places",
     testing.run(function(_, loop)
    local cancelled = loop:create_task(tapio.sleep, 5)
    loop:call_later(1, function() cancelled:cancel("stop") end)
    local r = tapio.gather({ function() error({ why = "mine" }, 0) end,
                             cancelled, function() return 3 end },
                           { return_exceptions = true })
    assert.are.same({ why = "mine" }, r[1])
    assert.is_true(tapio.is_cancelled(r[2]))
    assert.are.equal("stop", r[2].message)
    assert.are.equal(3, r[3])
  end, jump))

  it("cancelled, cancels its children and ends cancelled once they have",
     testing.run(function(clock, loop)
    local log = {}
    local outer = loop:create_task(tapio.gather,
      { sleeper(log, 5), sleeper(log, 6) })
    loop:call_later(1, function() outer:cancel() end)
    assert.is_true(tapio.is_cancelled(raised(outer.await, outer)))
    assert.is_true(outer:cancelled())
    assert.are.same({ "cancelled at 1", "cancelled at 1" }, log)
    assert.are.equal(1, clock:time())
  end, jump))

  it("cancelled with a message, raises that message, with " ..
     "return_exceptions or not", testing.run(function(_, loop)
    local log = {}
    local waits = loop:create_task(tapio.gather,
      { sleeper(log, 5), sleeper(log, 6) })
    local returns = loop:create_task(tapio.gather,
      { sleeper(log, 5) }, { return_exceptions = true })
    local gathered -- the gather's own future, made outside a task
    loop:call_soon(function()
      gathered = tapio.gather({ sleeper(log, 5) })
    end)
    loop:call_later(1, function()
      waits:cancel("stop")
      returns:cancel("halt")
      gathered:cancel("enough")
    end)
    assert.are.equal("stop", raised(waits.await, waits).message)
    assert.are.equal("halt", raised(returns.await, returns).message)
    assert.are.equal("enough", raised(gathered.await, gathered).message)
    assert.is_true(gathered:cancelled())
    assert.are.equal(4, #log)
  end, jump))

  it("checks every item before it makes any task", testing.run(function()
    local ran = false
    assert.matches("gather: bad argument #1 'list' %(item 2: future or " ..
      "function expected, got number; in a task a call waits at once"
      .. ": give a function that makes it%)", raised(tapio.gather,
        { function() ran = true end, 7 }))
    assert.matches("gather: bad argument #1 'list' %(list of futures " ..
      "expected, got nil%)", raised(tapio.gather))
    assert.matches("gather: bad argument #2 'opts' %(table expected",
      raised(tapio.gather, {}, true))
    tapio.sleep(0)
    assert.is_false(ran)
    assert.are.equal(1, #tapio.all_tasks())
  end))
end)

describe("tapio.shield", function()
  it("lets what it guards run on when the waiting task is cancelled",
     testing.run(function(clock, loop)
    local log = {}
    local inner = loop:create_task(sleeper(log, 3, "done"))
    local waiter = loop:create_task(tapio.shield, inner)
    loop:call_later(1, function() waiter:cancel() end)
    assert.is_true(tapio.is_cancelled(raised(waiter.await, waiter)))
    assert.are.equal(1, clock:time())
    assert.is_false(inner:done())
    assert.are.equal("done", inner:await())
    assert.are.same({ "slept until 3" }, log)
  end, jump))

  it("passes results and errors through", testing.run(function(_, loop)
    assert.are.equal(2, tapio.shield(function() tapio.sleep(1) return 2 end))
    assert.are.equal("no", raised(tapio.shield, function()
      tapio.sleep(1)
      error("no", 0)
    end))
    local done = loop:create_future()
    done:set_result("now")
    assert.are.equal("now", tapio.shield(done))
  end, jump))
end)

describe("deadlines on a real loop", function()
  it("time out a read from a silent socket and keep the loop running",
     function()
    local got = tapio.run(function()
      local loop = tapio.get_running_loop()
      local ticks = 0
      local function tick()
        ticks = ticks + 1
        loop:call_later(0.01, tick)
      end
      tick()
      local finished = loop:create_future()
      local server = tapio.start_server(function(reader, writer)
        reader:read() -- silent: reads until the client closes
        writer:close()
        finished:set_result()
      end, "127.0.0.1", 0)
      local reader, writer = tapio.open_connection("127.0.0.1",
        server:addresses()[1].port)
      local t0 = loop:time()
      local err = raised(tapio.wait_for, function()
        return reader:readline()
      end, 0.2)
      local waited = loop:time() - t0
      writer:close()
      finished:await()
      server:close()
      return { err.code, waited >= 0.2, ticks > 1 }
    end)
    assert.are.same({ tapio.ETIMEDOUT, true, true }, got)
  end)
end)

-- A future set to result (or failed with err) after delay seconds.
local function later(loop, delay, result, err)
  local fut = loop:create_future()
  loop:call_later(delay, function()
    if err ~= nil then
      fut:set_exception(err)
    else
      fut:set_result(result)
    end
  end)
  return fut
end

describe("tapio.wait", function()
  it("by default waits for all and gives them done, in the list's order, " ..
     "each once; errors stay in their futures", testing.run(function(clock,
                                                                loop)
    local a, b = later(loop, 2, "a"), later(loop, 1, nil, "bad")
    local done, pending = tapio.wait({ a, b, a, function()
      tapio.sleep(3)
      return "c"
    end })
    assert.are.equal(3, clock:time())
    assert.are.equal(0, #pending)
    assert.are.equal(3, #done)
    assert.are.equal(a, done[1])
    assert.are.equal(b, done[2])
    assert.is_true(getmetatable(done[3]) == tapio.Task)
    assert.are.equal("c", done[3]:result())
    assert.are.equal("bad", b:exception())
  end, jump))

  it("FIRST_COMPLETED returns at the first to finish, cancelling none",
     testing.run(function(clock, loop)
    local a, b, c = later(loop, 2, "a"), later(loop, 1, "b"),
      later(loop, 3, "c")
    local done, pending = tapio.wait({ a, b, c },
      { return_when = tapio.FIRST_COMPLETED })
    assert.are.equal(1, clock:time())
    assert.are.same({ b }, done)
    assert.are.same({ a, c }, pending)
    assert.are.equal("c", c:await())
    assert.are.equal("a", a:result())
  end, jump))

  it("FIRST_EXCEPTION returns at the first error, a cancellation being " ..
     "none, else when all are done", testing.run(function(clock, loop)
    local cancelled = loop:create_future()
    loop:call_later(1, function() cancelled:cancel() end)
    local bad, slow = later(loop, 2, nil, "bad"), later(loop, 3, "slow")
    local done, pending = tapio.wait({ slow, cancelled, bad },
      { return_when = "FIRST_EXCEPTION" })
    assert.are.equal(2, clock:time())
    assert.are.same({ cancelled, bad }, done)
    assert.are.same({ slow }, pending)
    done, pending = tapio.wait({ slow, cancelled },
      { return_when = "FIRST_EXCEPTION" })
    assert.are.equal(3, clock:time())
    assert.are.same({ slow, cancelled }, done)
    assert.are.same({}, pending)
  end, jump))

  it("at the timeout gives what is done and what is not, raising nothing " ..
     "and cancelling nothing", testing.run(function(clock, loop)
    local a, b = later(loop, 1, "a"), later(loop, 5, "b")
    local done, pending = tapio.wait({ b, a }, { timeout = 2 })
    assert.are.equal(2, clock:time())
    assert.are.same({ a }, done)
    assert.are.same({ b }, pending)
    assert.are.equal("b", b:await())
    done = tapio.wait({ a }, { timeout = 2 }) -- in time: no timer left
    assert.are.same({ a }, done)
    assert.are.equal(5, clock:time())
  end, jump))

  it("cancelled, leaves the futures alone", testing.run(function(_, loop)
    local a = later(loop, 5, "a")
    local task = loop:create_task(tapio.wait, { a })
    loop:call_later(1, function() task:cancel() end)
    assert.is_true(tapio.is_cancelled(raised(task.await, task)))
    assert.is_false(a:done())
    assert.are.same({ n = 1, "a" }, pack(a:await()))
  end, jump))

  it("outside a task returns a task of done, pending", function()
    local loop, clock = testing.new_loop()
    local a, b = later(loop, 1, "a"), later(loop, 3, "b")
    local t = tapio.wait({ a, b }, { timeout = 2 })
    assert.is_true(tapio.is_future(t))
    clock:advance(2)
    local done, pending = t:result()
    assert.are.same({ a }, done)
    assert.are.same({ b }, pending)
    clock:advance(1)
    loop:close()
  end)

  it("refuses an empty list, bad options and items, at the caller's line",
     testing.run(function(_, loop)
    assert.matches("wait_spec.lua:%d+: tapio: wait: bad argument #1 " ..
      "'list' %(empty: nothing to wait for%)",
      raised(function() tapio.wait({}) end))
    assert.matches("wait_spec.lua:%d+: tapio: wait: bad argument #1 " ..
      "'list' %(list of futures expected, got nil%)",
      raised(function() tapio.wait() end))
    local fut = loop:create_future()
    assert.matches("wait: bad argument #1 'list' %(list of futures " ..
      "expected, got table%)", raised(tapio.wait, fut))
    assert.matches("wait_spec.lua:%d+: tapio: wait: bad argument #1 " ..
      "'list' %(item 2: future or function expected, got string",
      raised(function() tapio.wait({ fut, "x" }) end))
    assert.matches("wait_spec.lua:%d+: tapio: wait: bad option " ..
      "'return_when' %(FIRST_COMPLETED, FIRST_EXCEPTION or " ..
      "ALL_COMPLETED expected, got FIRST%)", raised(function()
        tapio.wait({ fut }, { return_when = "FIRST" })
      end))
    assert.matches("wait_spec.lua:%d+: tapio: wait: bad option 'timeout' " ..
      "%(seconds expected, got string%)", raised(function()
        tapio.wait({ fut }, { timeout = "1" })
      end))
    assert.matches("tapio: wait: bad option 'timeout' %(seconds " ..
      "expected, got NaN%)", raised(function()
        tapio.wait({ fut }, { timeout = 0 / 0 })
      end))
    assert.matches("wait_spec.lua:%d+: tapio: wait: unknown option " ..
      "'timout'", raised(function() tapio.wait({ fut }, { timout = 1 }) end))
    assert.are.equal("ALL_COMPLETED", tapio.ALL_COMPLETED)
    assert.are.equal(1, #tapio.all_tasks())
  end))
end)

describe("tapio.as_completed", function()
  it("gives the list's own futures in the order they complete, each " ..
     "once, waiting for each", testing.run(function(clock, loop)
    local a, b = later(loop, 3, "a"), later(loop, 1, nil, "bad")
    local got = {}
    for fut in tapio.as_completed({ a, b, a, function()
      tapio.sleep(2)
      return "c"
    end }) do
      got[#got + 1] = { clock:time(), select(2, pcall(fut.await, fut)) }
      if #got == 1 then
        assert.are.equal(b, fut)
      elseif #got == 3 then
        assert.are.equal(a, fut)
      end
    end
    assert.are.same({ { 1, "bad" }, { 2, "c" }, { 3, "a" } }, got)
    for _ in tapio.as_completed({}) do
      error("an empty list gives nothing")
    end
  end, jump))

  it("after the timeout, a step that would wait raises a timeout error",
     testing.run(function(clock, loop)
    local a, b, c = later(loop, 1, "a"), later(loop, 1.5, "b"),
      later(loop, 5, "c")
    local got = {}
    local iter = tapio.as_completed({ c, b, a }, { timeout = 2 })
    tapio.sleep(1.75) -- a and b are done before the first step
    local err = raised(function()
      for fut in iter do
        got[#got + 1] = fut:await()
      end
    end)
    assert.are.same({ "a", "b" }, got)
    assert.are.equal(tapio.ETIMEDOUT, err.code)
    assert.are.equal("as_completed: timed out after 2 s", err.message)
    assert.are.equal(2, clock:time())
    assert.is_false(c:done()) -- not cancelled
    assert.are.equal("c", c:await())
    for fut in tapio.as_completed({ a }, { timeout = 1 }) do -- in time:
      assert.are.equal(a, fut)                             -- no timer left
    end
    -- a timeout of 0 or less: the deadline had passed, and says so
    err = raised(function()
      for _ in tapio.as_completed({ loop:create_future() }, { timeout = -3 })
      do end
    end)
    assert.are.equal("as_completed: timed out, the deadline had passed",
                     err.message)
  end, jump))

  it("refuses to run outside a task, and bad arguments",
     testing.run(function(_, loop)
    local fut = loop:create_future()
    loop:call_soon(function()
      assert.matches("wait_spec.lua:%d+: tapio: as_completed: not inside " ..
        "a task", raised(function() tapio.as_completed({ fut }) end))
    end)
    tapio.sleep(0)
    local iter = tapio.as_completed({ fut })
    loop:call_soon(function()
      assert.matches("wait_spec.lua:%d+: tapio: as_completed: the " ..
        "iteration must run in a task", raised(function() iter() end))
      fut:set_result()
    end)
    tapio.sleep(0)
    assert.are.equal(fut, iter())
    assert.matches("wait_spec.lua:%d+: tapio: as_completed: bad option " ..
      "'timeout' %(seconds expected, got boolean%)", raised(function()
        tapio.as_completed({ fut }, { timeout = true })
      end))
    assert.matches("as_completed: unknown option 'return_when'",
      raised(tapio.as_completed, { fut }, { return_when = "x" }))
    assert.matches("as_completed: bad argument #1 'list' %(list of " ..
      "futures expected", raised(tapio.as_completed, 1))
  end))

  it("refuses a table that is no list (asyncio takes a dict's keys), " ..
     "as gather and wait do", testing.run(function(_, loop)
    local fut = loop:create_future()
    fut:set_result("done")
    local by_future = { [fut] = "job 1" } -- a port of as_completed(dict)
    for _, fn in ipairs({ "as_completed", "gather", "wait" }) do
      assert.matches("wait_spec.lua:%d+: tapio: " .. fn .. ": bad " ..
        "argument #1 'list' %(list of futures expected, got a table " ..
        "with the key tapio.Future", raised(function()
          for _ in tapio[fn](by_future) do end
        end))
      assert.matches(fn .. ": bad argument #1 'list' %(list of futures " ..
        "expected, got a table with the key 'n'%)",
        raised(tapio[fn], { fut, n = 1 }))
      assert.matches(fn .. ": bad argument #1 'list' %(list of futures " ..
        "expected, got a table with the key 3%)",
        raised(tapio[fn], { fut, [3] = fut }))
    end
  end))
end)

describe("errors never retrieved", function()
  -- Each function here looks at the errors asyncio's counterpart looks at
  -- (so they are not reported when collected), and leaves the rest to
  -- the caller. helper.unretrieved: on a real loop, then collected.
  local function exceptions(heard)
    local list = {}
    for i, ctx in ipairs(heard) do
      assert.are.equal("task exception was never retrieved", ctx.message)
      list[i] = ctx.exception
    end
    table.sort(list)
    return list
  end

  it("gather looks at every child's error, with return_exceptions or not",
     function()
    assert.are.same({}, helper.unretrieved(function(loop)
      local second = loop:create_future()
      assert.are.equal("first", raised(tapio.gather, {
        function() error("first", 0) end, second }))
      second:set_exception("second") -- once the gather has failed
      local r = tapio.gather({ function() error("kept", 0) end },
                             { return_exceptions = true })
      assert.are.equal("kept", r[1])
    end))
  end)

  it("a gather's own error nobody looks at is reported, as a future's",
     function()
    local heard = helper.unretrieved(function(loop)
      loop:call_soon(function() -- not in a task: a future, dropped
        tapio.gather({ function() error("lost", 0) end })
      end)
      tapio.sleep(0)
      tapio.sleep(0)
    end)
    assert.are.equal(1, #heard)
    assert.are.equal("future exception was never retrieved",
      heard[1].message)
    assert.are.equal("lost", heard[1].exception)
  end)

  it("shield looks at what it guards while its waiter waits; once the " ..
     "waiter gave up, lets go of it (asyncio 3.13)", function()
    local inner, gone = nil, setmetatable({}, { __mode = "k" })
    local heard = helper.unretrieved(function(loop)
      assert.are.equal("no", raised(tapio.shield, function()
        tapio.sleep(0)
        error("no", 0)
      end))
      local guarded = loop:create_future()
      local waiter = loop:create_task(tapio.shield, guarded)
      tapio.sleep(0)
      waiter:cancel()
      tapio.sleep(0)
      assert.is_true(waiter:cancelled())
      guarded:set_exception("after the waiter gave up") -- nobody's now
      -- waiters given up leave nothing on what they guarded
      inner = loop:create_future()
      loop:call_soon(function()
        for _ = 1, 20 do
          local outer = tapio.shield(inner) -- (not in a task: its future)
          gone[outer] = true
          outer:cancel()
        end
      end)
      tapio.sleep(0)
    end)
    helper.collect()
    assert.is_nil(next(gone))
    assert.are.equal(1, #heard)
    assert.are.equal("after the waiter gave up", heard[1].exception)
    assert.are.equal("future exception was never retrieved",
      heard[1].message)
  end)

  it("wait_for raises the error of what it waits for, also one made " ..
     "of its cancellation", function()
    assert.are.same({}, helper.unretrieved(function()
      assert.are.equal("late", raised(tapio.wait_for, function()
        tapio.sleep(0)
        error("late", 0)
      end, 5))
      local cleans = tapio.create_task(function()
        pcall(tapio.sleep, 5)
        error("cleaning up", 0)
      end)
      tapio.sleep(0) -- it sleeps (a function would never start: timeout 0)
      assert.are.equal("cleaning up", raised(tapio.wait_for, cleans, 0))
    end))
  end)

  it("wait leaves the errors of what is done to the caller", function()
    local heard = helper.unretrieved(function(loop)
      local a = loop:create_task(function() error("a", 0) end)
      local b = loop:create_task(function() error("b", 0) end)
      assert.are.equal(2, #tapio.wait({ a, b }))
      local c = loop:create_task(function() error("c", 0) end)
      local done = tapio.wait({ c }, { return_when = "FIRST_COMPLETED" })
      assert.are.equal("c", done[1]:exception()) -- looked at
    end)
    assert.are.same({ "a", "b" }, exceptions(heard))
  end)

  it("wait under FIRST_EXCEPTION looks at the errors it checks, each " ..
     "but the last to complete (asyncio's)", function()
    local heard = helper.unretrieved(function(loop)
      local function fails(name) -- at its first step
        return loop:create_task(function() error(name, 0) end)
      end
      local a, b = fails("checked"), fails("checked too") -- at one turn
      local after = loop:create_task(function()
        tapio.sleep(0)
        error("after", 0)
      end)
      local first = { return_when = "FIRST_EXCEPTION" }
      assert.are.same({ a, b }, (tapio.wait({ a, b, after }, first)))
      local fine = loop:create_task(function() end)
      local last = loop:create_task(function()
        tapio.sleep(0)
        error("last", 0)
      end)
      assert.are.equal(2, #tapio.wait({ fine, last }, first))
      tapio.sleep(0)
    end)
    assert.are.same({ "after", "last" }, exceptions(heard))
  end)

  it("as_completed leaves each error to the caller's await", function()
    local heard = helper.unretrieved(function()
      local n = 0
      for fut in tapio.as_completed({
        function() error("seen", 0) end,
        function() tapio.sleep(0) error("skipped", 0) end }) do
        n = n + 1
        if n == 1 then
          assert.are.equal("seen", raised(fut.await, fut))
        end
      end
    end)
    assert.are.same({ "skipped" }, exceptions(heard))
  end)
end)
