-- Futures, tasks, tapio.run, tapio.sleep and the async rule.
local helper = require "spec.helper"
local tapio = helper.tapio

describe("a future", function()
  local loop
  before_each(function()
    loop = tapio.new_loop()
  end)
  after_each(function()
    loop:close()
  end)

  it("starts pending and keeps several results", function()
    local fut = loop:create_future()
    assert.is_false(fut:done())
    assert.is_false(fut:cancelled())
    assert.has_error(function() fut:result() end,
      "tapio: future:result: the result is not ready")
    fut:set_result(1, nil, "three")
    assert.is_true(fut:done())
    local a, b, c = fut:result()
    assert.are.same({ 1, nil, "three" }, { a, b, c })
    assert.is_nil(fut:exception())
    assert.are.equal(loop, fut:get_loop())
  end)

  it("raises the exception it was given, as it is", function()
    local fut = loop:create_future()
    local err = { reason = "mine" }
    fut:set_exception(err)
    assert.is_true(fut:done())
    local ok, got = pcall(fut.result, fut)
    assert.is_false(ok)
    assert.are.equal(err, got)
    assert.are.equal(err, fut:exception())
  end)

  it("refuses a second result and a nil exception", function()
    local fut = loop:create_future()
    assert.has_error(function() fut:set_exception(nil) end)
    fut:set_result(true)
    assert.has_error(function() fut:set_result(false) end,
      "tapio: future:set_result: the future is already done")
    assert.has_error(function() fut:set_exception("x") end,
      "tapio: future:set_exception: the future is already done")
  end)

  it("is cancelled once; then result raises a cancellation error", function()
    local fut = loop:create_future()
    assert.is_true(fut:cancel("stop it"))
    assert.is_false(fut:cancel())
    assert.is_true(fut:cancelled())
    assert.is_true(fut:done())
    local ok, err = pcall(fut.result, fut)
    assert.is_false(ok)
    assert.is_true(tapio.is_cancelled(err))
    assert.are.equal(tapio.ECANCELED, err.code)
    assert.are.equal("stop it", err.message)
    assert.has_error(function() fut:exception() end)
  end)

  it("runs done callbacks from the loop, in order, never at once", function()
    local fut = loop:create_future()
    local calls = {}
    local function second(f) calls[#calls + 1] = { "second", f } end
    fut:add_done_callback(function(f) calls[#calls + 1] = { "first", f } end)
    fut:add_done_callback(second)
    fut:add_done_callback(function() calls[#calls + 1] = { "third" } end)
    assert.are.equal(1, fut:remove_done_callback(second))
    fut:set_result("x")
    assert.are.same({}, calls)
    helper.wait_until(loop, function() return #calls == 2 end)
    assert.are.equal("first", calls[1][1])
    assert.are.equal(fut, calls[1][2])
    assert.are.equal("third", calls[2][1])
    -- added after it is done: still from the loop
    local late = false
    fut:add_done_callback(function() late = true end)
    assert.is_false(late)
    helper.wait_until(loop, function() return late end)
  end)

  it("sends a done callback's error to the exception handler", function()
    local contexts = {}
    loop:set_exception_handler(function(_, ctx)
      contexts[#contexts + 1] = ctx
    end)
    local fut = loop:create_future()
    local after = false
    fut:add_done_callback(function() error("in a done callback") end)
    fut:add_done_callback(function() after = true end)
    fut:set_result()
    helper.wait_until(loop, function() return after end)
    assert.are.equal(1, #contexts)
    assert.are.equal("error in a scheduled callback", contexts[1].message)
    assert.matches("in a done callback", contexts[1].exception)
  end)

  it("cannot be awaited outside a task", function()
    local fut = loop:create_future()
    assert.has_error(function() fut:await() end)
    assert.has_error(function() tapio.await(fut) end)
    assert.has_error(function() tapio.await(42) end)
  end)

  it("checks add_done_callback's argument", function()
    local fut = loop:create_future()
    assert.has_error(function() fut:add_done_callback(42) end,
      "tapio: future:add_done_callback: bad argument #1 'fn' "
      .. "(function expected, got number)")
  end)
end)

describe("a task", function()
  it("returns its function's results", function()
    local a, b = helper.run(function(loop)
      local task = loop:create_task(function(x, y) return x + y, "two" end,
        40, 2)
      assert.is_false(task:done())
      return task:await()
    end)
    assert.are.equal(42, a)
    assert.are.equal("two", b)
  end)

  it("awaits futures set from callbacks", function()
    local got = helper.run(function(loop)
      local fut = loop:create_future()
      loop:call_soon(function() fut:set_result("later") end)
      return fut:await()
    end)
    assert.are.equal("later", got)
  end)

  it("raises the error of an awaited future, and can catch it", function()
    helper.run(function(loop)
      local fut = loop:create_future()
      loop:call_soon(function() fut:set_exception("boom") end)
      local ok, err = pcall(fut.await, fut)
      assert.is_false(ok)
      assert.are.equal("boom", err)
    end)
  end)

  it("fails with its function's error and keeps its traceback", function()
    helper.run(function(loop)
      local task = loop:create_task(function()
        error({ code = 7 })
      end)
      local ok, err = pcall(task.await, task)
      assert.is_false(ok)
      assert.are.equal(7, err.code)
      assert.is_true(task:done())
      assert.are.equal(err, task:exception())
      assert.matches("stack traceback", task:get_traceback())
    end)
  end)

  it("is cancelled while it waits, and may catch the cancellation",
    function()
    helper.run(function(loop)
      local steps = {}
      local task = loop:create_task(function()
        local ok, err = pcall(tapio.sleep, 30)
        steps[#steps + 1] = ok and "slept" or
          (tapio.is_cancelled(err) and "cancelled" or tostring(err))
        tapio.sleep(0)
        steps[#steps + 1] = "went on"
        return "done anyway"
      end)
      tapio.sleep(0)
      assert.is_true(task:cancel())
      assert.are.equal("done anyway", task:await())
      assert.are.same({ "cancelled", "went on" }, steps)
      assert.is_false(task:cancelled())
    end)
  end)

  it("ends cancelled when the cancellation is not caught", function()
    helper.run(function(loop)
      local reached = false
      local task = loop:create_task(function()
        tapio.sleep(30)
        reached = true
      end)
      tapio.sleep(0)
      task:cancel()
      local ok, err = pcall(task.await, task)
      assert.is_false(ok)
      assert.is_true(tapio.is_cancelled(err))
      assert.is_true(task:cancelled())
      assert.is_false(reached)
      assert.is_false(task:cancel())
    end)
  end)

  it("never runs when cancelled before its first step", function()
    helper.run(function(loop)
      local ran = false
      local task = loop:create_task(function() ran = true end)
      task:cancel()
      assert.has_error(function() task:await() end)
      assert.is_true(task:cancelled())
      assert.is_false(ran)
    end)
  end)

  it("is cancelled even if the awaited future was done already", function()
    helper.run(function(loop)
      local fut = loop:create_future()
      local task = loop:create_task(function() return fut:await() end)
      tapio.sleep(0) -- the task waits on fut
      fut:set_result(1) -- its wake-up is queued...
      task:cancel()     -- ...and cannot cancel fut any more
      local ok, err = pcall(task.await, task)
      assert.is_false(ok)
      assert.is_true(tapio.is_cancelled(err))
    end)
  end)

  it("cancelling a task that awaits another cancels that one", function()
    helper.run(function(loop)
      local inner = loop:create_task(function() tapio.sleep(30) end)
      local outer = loop:create_task(function() return inner:await() end)
      tapio.sleep(0)
      outer:cancel()
      assert.has_error(function() outer:await() end)
      assert.is_true(inner:cancelled())
    end)
  end)

  it("raises the message of cancel(msg) wherever the cancel reaches it, " ..
     "as asyncio does", function()
    helper.run(function(loop)
      local function message(task)
        local err = helper.fails(task.await, task)
        assert.is_true(tapio.is_cancelled(err))
        assert.is_true(task:cancelled())
        return err.message
      end
      local function sleeper() tapio.sleep(30) end
      local seen = {} -- what the task's own code caught
      local function catches(fn)
        return function()
          local err = helper.fails(fn)
          seen[#seen + 1] = err.message
          error(err, 0)
        end
      end
      -- before its first step; twice: the last one's
      local fresh = loop:create_task(sleeper)
      fresh:cancel("before")
      local twice = loop:create_task(sleeper)
      twice:cancel("one")
      twice:cancel("two")
      assert.are.equal("before", message(fresh))
      assert.are.equal("two", message(twice))
      -- asked of itself, then it waits, or returns
      local itself = loop:create_task(catches(function()
        tapio.current_task():cancel("self")
        tapio.sleep(30)
      end))
      local returns = loop:create_task(function()
        tapio.current_task():cancel("returns")
        return 5
      end)
      assert.are.equal("self", message(itself))
      assert.are.equal("returns", message(returns))
      -- its wait has ended, its wake-up queued
      local fut = loop:create_future()
      local woken = loop:create_task(catches(function() fut:await() end))
      tapio.sleep(0)
      fut:set_result(1)
      woken:cancel("late")
      assert.are.equal("late", message(woken))
      -- twice while it waits: the first, which cancelled its future
      local waits = loop:create_task(sleeper)
      tapio.sleep(0)
      waits:cancel("first")
      waits:cancel("second")
      assert.are.equal("first", message(waits))
      assert.are.same({ "self", "late" }, seen)
    end)
  end)

  it("awaiting itself raises there, as asyncio's 'Task cannot await on " ..
     "itself', and goes on", function()
    helper.run(function(loop)
      local function awaits(how)
        return loop:create_task(function()
          local err = helper.fails(how, tapio.current_task())
          assert.matches("tapio: await: a task cannot await itself " ..
            "%(tapio.Task 'Task%-%d+' %(pending%)%)", err)
          tapio.sleep(0)
          return "went on"
        end)
      end
      local direct = awaits(function(me) return me:await() end)
      local timed = awaits(function(me) return tapio.wait_for(me, 30) end)
      assert.are.equal("went on", direct:await())
      assert.are.equal("went on", timed:await())
      local cancelled = loop:create_task(function() -- a cancel first
        local me = tapio.current_task()
        me:cancel("then")
        return me:await()
      end)
      assert.are.equal("then", helper.fails(cancelled.await, cancelled)
        .message)
    end)
  end)

  it("counts cancel requests; uncancel takes them back, and drops a " ..
     "cancel it asked of itself once none is left, not one of a task " ..
     "that waits", function()
    helper.run(function(loop)
      local me = tapio.current_task()
      me:cancel() -- pending: delivered where it waits next...
      me:cancel()
      assert.are.equal(2, me:cancelling())
      assert.are.equal(1, me:uncancel())
      assert.is_true(tapio.is_cancelled(helper.fails(tapio.sleep, 0)))
      assert.are.equal(0, me:uncancel())
      me:cancel()
      assert.are.equal(0, me:uncancel()) -- ...unless none is left
      tapio.sleep(0)
      local parked = loop:create_task(function() -- waits in a read
        local reader = tapio.StreamReader()
        return select(2, pcall(reader.read, reader))
      end)
      tapio.sleep(0)
      parked:cancel()
      assert.are.equal(0, parked:uncancel()) -- taken back: still delivered
      assert.is_true(tapio.is_cancelled(parked:await()))
    end)
  end)

  it("drops a cancel taken back before it reached a task that has not " ..
     "run yet or whose wait has just ended (cpython gh-116720)", function()
    helper.run(function(loop)
      -- asyncio 3.13 (PR #117407): uncancel() at 0 resets _must_cancel
      local fresh = loop:create_task(function() return "ran" end)
      fresh:cancel()
      assert.are.equal(0, fresh:uncancel())
      assert.are.equal("ran", fresh:await())
      local fut = loop:create_future()
      local woken = loop:create_task(function() return fut:await() + 1 end)
      tapio.sleep(0) -- it waits on fut
      fut:set_result(41) -- its wake-up is scheduled
      woken:cancel() -- too late for fut: held for its next step...
      assert.are.equal(1, woken:cancelling())
      assert.are.equal(0, woken:uncancel()) -- ...and taken back
      assert.are.equal(42, woken:await())
      assert.is_false(woken:cancelled())
    end)
  end)

  it("fails when it yields without awaiting", function()
    helper.run(function(loop)
      local line = debug.getinfo(1, "l").currentline + 1
      local task = loop:create_task(function() coroutine.yield(1) end)
      local ok, err = pcall(task.await, task)
      assert.is_false(ok)
      assert.matches("yielded without awaiting", err)
      -- the traceback shows where it yielded
      assert.matches("futures_spec%.lua:" .. line .. ":", task:get_traceback())
    end)
  end)

  it("knows it is the current task; the main chunk is none", function()
    assert.is_nil(tapio.current_task())
    helper.run(function(loop)
      local task
      task = loop:create_task(function()
        return tapio.current_task()
      end)
      assert.are.equal(task, task:await())
      local all = tapio.all_tasks(loop) -- pending ones: only this one
      assert.are.equal(1, #all)
      assert.are.equal(tapio.current_task(), all[1])
    end)
  end)

  it("reports an error nobody retrieved when it is collected", function()
    local _, errors = helper.run(function(loop, errors)
      loop:create_task(function() error("lost error") end)
      tapio.sleep(0)
      tapio.sleep(0)
      helper.collect()
      return nil, errors
    end, { errors_ok = true })
    assert.are.equal(1, #errors)
    assert.matches("never retrieved", errors[1].message)
    assert.matches("lost error", errors[1].exception)
    assert.matches("stack traceback", errors[1].traceback)
    -- which task it was, as asyncio's context has it (task and future)
    local task = errors[1].task
    assert.are.equal(tapio.Task, getmetatable(task))
    assert.are.equal(task, errors[1].future)
    assert.is_true(task:done())
  end)

  it("is named Task-N unless set_name names it; tostring shows it",
    function()
      helper.run(function(loop)
        local a = loop:create_task(function() end)
        local b = tapio.create_task(function() end)
        local n = tonumber(a:get_name():match("^Task%-(%d+)$"))
        assert.is_number(n)
        assert.are.equal("Task-" .. (n + 1), b:get_name())
        assert.are.equal(b, b:set_name("worker"))
        assert.are.equal("worker", b:get_name())
        assert.are.equal("tapio.Task 'worker' (pending)", tostring(b))
        a:set_name(42)
        assert.are.equal("42", a:get_name())
        b:await()
        assert.are.equal("tapio.Task 'worker' (finished)", tostring(b))
      end)
    end)

  it("is named by the default handler when its error is lost", function()
    local out, status = helper.run_script([[
local tapio = require "tapio"
tapio.run(function()
  tapio.create_task(function() error("lost error") end):set_name("pump")
  tapio.sleep(0)
  collectgarbage("collect")
  collectgarbage("collect")
end)
]])
    assert.are.equal(0, status)
    assert.matches("task exception was never retrieved", out, 1, true)
    assert.matches("lost error", out, 1, true)
    assert.matches("  task: tapio.Task 'pump' (failed)", out, 1, true)
  end)
end)

describe("an error never retrieved", function()
  -- asyncio's "Future/Task exception was never retrieved": reported when
  -- the future is collected, unless result, exception, await or cancel
  -- looked at it first; done callbacks change nothing.
  it("of a task is reported, though the task has a done callback",
    function()
      local heard = helper.unretrieved(function(loop)
        local task = loop:create_task(function() error("lost error") end)
        task:add_done_callback(function() end) -- looks at nothing
        tapio.sleep(0)
      end)
      assert.are.equal(1, #heard)
      local ctx = heard[1]
      assert.are.equal("task exception was never retrieved", ctx.message)
      assert.matches("lost error", ctx.exception)
      assert.matches("stack traceback", ctx.traceback)
      assert.are.equal(tapio.Task, getmetatable(ctx.task))
      assert.are.equal(ctx.task, ctx.future)
    end)

  it("of a future is reported as the future's", function()
    local heard = helper.unretrieved(function(loop)
      local fut = loop:create_future()
      fut:add_done_callback(function() end)
      fut:set_exception("lost error")
    end)
    assert.are.equal(1, #heard)
    local ctx = heard[1]
    assert.are.equal("future exception was never retrieved", ctx.message)
    assert.are.equal("lost error", ctx.exception)
    assert.are.equal(tapio.Future, getmetatable(ctx.future))
    assert.is_true(ctx.future:done())
    assert.is_nil(ctx.task)
    assert.is_nil(ctx.traceback)
  end)

  it("is not reported once a done callback looked at it", function()
    assert.are.same({}, helper.unretrieved(function(loop)
      local a = loop:create_task(function() error("seen") end)
      a:add_done_callback(function(t) t:exception() end)
      local b = loop:create_future()
      b:add_done_callback(function(f) pcall(f.result, f) end)
      b:set_exception("seen")
      tapio.sleep(0)
    end))
  end)

  it("is not reported once awaited", function()
    assert.are.same({}, helper.unretrieved(function(loop)
      local task = loop:create_task(function() error("awaited") end)
      assert.is_false(pcall(task.await, task))
      local fut = loop:create_future()
      loop:call_soon(fut.set_exception, fut, "awaited")
      assert.is_false(pcall(tapio.await, fut))
    end))
  end)

  it("is not reported once cancel was asked of the failed future " ..
     "(asyncio's cancel too)", function()
    assert.are.same({}, helper.unretrieved(function(loop)
      local fut = loop:create_future()
      fut:set_exception("given up")
      assert.is_false(fut:cancel())
      local task = loop:create_task(function() error("given up") end)
      tapio.sleep(0)
      assert.matches("%(failed%)$", tostring(task))
      assert.is_false(task:cancel())
    end))
  end)

  it("is never a cancellation", function()
    assert.are.same({}, helper.unretrieved(function(loop)
      local fut = loop:create_future()
      fut:add_done_callback(function() end)
      fut:cancel()
      local task = loop:create_task(tapio.sleep, 1)
      task:add_done_callback(function() end)
      local quits = loop:create_task(function()
        error(tapio.cancelled_error("quits"))
      end)
      tapio.sleep(0)
      task:cancel()
      tapio.sleep(0)
      assert.is_true(task:cancelled() and quits:cancelled())
    end))
  end)

  it("of a future is printed by the default handler, with the future",
    function()
      local out, status = helper.run_script([[
local tapio = require "tapio"
tapio.run(function()
  (function()
    tapio.get_running_loop():create_future():set_exception("lost error")
  end)()
  collectgarbage("collect")
  collectgarbage("collect")
end)
]])
      assert.are.equal(0, status)
      assert.matches("tapio: future exception was never retrieved\nlost "
        .. "error\n  future: tapio.Future (failed)\n", out, 1, true)
    end)

  it("is not reported of an operation that loop:close ended", function()
    -- a pending create fails with ECANCELED at the close, where nothing
    -- runs to look at it (asyncio's close leaves it pending)
    local out, status = helper.run_script([[
local testing = require "tapio.testing"
local loop = testing.new_loop()
local fut = loop:create_server(function() end, "127.0.0.1", 0)
loop:close()
assert(fut:done())
fut = nil
collectgarbage("collect")
collectgarbage("collect")
print("collected")
]])
    assert.are.equal(0, status)
    assert.are.equal("collected\n", out)
  end)

  it("is retrieved by run_until_complete, which raises it", function()
    local loop = tapio.new_loop()
    local heard = {}
    loop:set_exception_handler(function(_, ctx)
      heard[#heard + 1] = ctx
    end)
    assert.is_false(pcall(loop.run_until_complete, loop, function()
      error("raised")
    end))
    helper.collect()
    loop:close()
    assert.are.same({}, heard)
  end)
end)

describe("tapio.sleep", function()
  it("waits at least its delay and returns its extra values", function()
    helper.run(function(loop)
      local t0 = loop:time()
      local a, b = tapio.sleep(0.05, "a", "b")
      assert.is_true(loop:time() - t0 >= 0.05)
      assert.are.same({ "a", "b" }, { a, b })
    end)
  end)

  it("returns a future outside a task", function()
    helper.run(function(loop)
      local fut
      loop:call_soon(function() fut = tapio.sleep(0, "v") end)
      tapio.sleep(0)
      assert.is_true(tapio.is_future(fut))
      assert.are.equal("v", fut:await())
    end)
  end)

  it("needs a running loop and a number", function()
    -- named for the function called, at the caller's line
    local ok, err = pcall(function() tapio.sleep(1) end)
    assert.is_false(ok)
    assert.matches("^[^:]*futures_spec%.lua:%d+: tapio: sleep: no running " ..
      "event loop$", err)
    ok, err = pcall(function() tapio.create_task(print) end)
    assert.matches("^[^:]*futures_spec%.lua:%d+: tapio: create_task: no " ..
      "running event loop$", err)
    local function loop_of()
      return tapio.get_running_loop(), "not a tail call"
    end
    local line = debug.getinfo(1, "l").currentline - 2
    ok, err = pcall(function() loop_of() end)
    assert.matches("^[^:]*futures_spec%.lua:" .. line .. ": tapio: " ..
      "get_running_loop: no running event loop$", err)
    ok, err = pcall(function() tapio.all_tasks() end)
    assert.matches("^[^:]*futures_spec%.lua:%d+: tapio: all_tasks: no " ..
      "running event loop$", err)
    helper.run(function()
      assert.has_error(function() tapio.sleep("1") end,
        "tapio: sleep: bad argument #1 'delay' (number expected, got string)")
      -- refused, and said so (asyncio 3.13 raises too: cpython gh-105331)
      assert.has_error(function() tapio.sleep(0 / 0) end,
        "tapio: sleep: bad argument #1 'delay' (number expected, got NaN)")
    end)
  end)
end)

describe("the async rule", function()
  it("gives plain callbacks futures and tasks results", function()
    helper.run(function(loop)
      local server = loop:create_server(function()
        return helper.recorder(loop)
      end, "127.0.0.1", 0)
      assert.are.equal("tapio.server (serving)", tostring(server))
      local fut
      loop:call_soon(function()
        fut = loop:create_connection(function()
          return helper.recorder(loop)
        end, "127.0.0.1", helper.port(server))
      end)
      tapio.sleep(0)
      assert.is_true(tapio.is_future(fut))
      local transport, protocol = fut:await()
      assert.are.equal(transport, protocol.transport)
      transport:close()
      protocol.lost:await()
      server:close()
    end)
  end)

  it("lets a host use futures and run_until_complete without tasks",
    function()
    local loop = tapio.new_loop()
    local server = loop:run_until_complete(loop:create_server(function()
      return helper.recorder(loop)
    end, "127.0.0.1", 0))
    local done = false
    local fut = loop:create_connection(function()
      return helper.recorder(loop)
    end, "127.0.0.1", helper.port(server))
    fut:add_done_callback(function(f)
      local transport = f:result()
      transport:close()
      done = true
    end)
    helper.wait_until(loop, function() return done end)
    server:close()
    loop:close()
  end)
end)

-- asyncio raises at once (RuntimeError in the task, ValueError from
-- run_until_complete): nothing of this loop would ever complete it.
describe("a future of another loop", function()
  it("raises at once where a task awaits it", function()
    local other = tapio.new_loop()
    local fut = other:create_future()
    local task
    helper.run(function(loop)
      local line = debug.getinfo(1, "l").currentline
      local ok, err = pcall(function() local r = fut:await() return r end)
      assert.is_false(ok)
      assert.are.equal(("%s:%d: tapio: future:await: the future belongs to "
        .. "another loop than the task's"):format(
          debug.getinfo(1, "S").short_src, line + 1), err)
      ok, err = pcall(function() local r = tapio.await(fut) return r end)
      assert.is_false(ok)
      assert.matches("^.-futures_spec.lua:%d+: tapio: future:await: the "
        .. "future belongs to another loop than the task's$", err)
      task = other:create_task(function() end)
      assert.has_error(function() task:await() end, "tapio: future:await: "
        .. "the future belongs to another loop than the task's")
      assert.is_true(loop:create_future() ~= nil) -- the loop goes on
      tapio.sleep(0)
    end, { deadline = 2 })
    other:run_until_complete(task) -- its own loop runs it to its end
    other:close()
  end)

  it("raises at once through every call that waits for it, a task of "
     .. "the other loop too", function()
    local other = tapio.new_loop()
    local fut = other:create_future()
    local task = other:create_task(function() end)
    helper.run(function()
      for _, aw in ipairs({ fut, task }) do
        for name, call in pairs({
          wait_for = function() return tapio.wait_for(aw, 1) end,
          gather = function() return tapio.gather({ aw }) end,
          shield = function() return tapio.shield(aw) end,
          wait = function() return tapio.wait({ aw }) end,
          as_completed = function()
            for f in tapio.as_completed({ aw }) do f:await() end
          end,
        }) do
          assert.matches("tapio: " .. name .. ": the future belongs to "
            .. "another loop", helper.fails(call))
        end
      end
    end, { deadline = 2 })
    other:run_until_complete(task) -- its own loop runs it to its end
    other:close()
  end)

  it("raises at once where a task calls an operation of the other loop",
     function()
    local other = tapio.new_loop()
    local a, b = tapio.socketpair()
    helper.run(function(loop)
      local inner = loop:create_future() -- a future of another kind (no
      local duck = { -- loop of its own to tell) is still awaited
        done = function() return inner:done() end,
        add_done_callback = function(self, fn)
          inner:add_done_callback(function() fn(self) end)
        end,
        result = function() return inner:result() end,
        cancel = function() return inner:cancel() end,
        cancelled = function() return inner:cancelled() end,
      }
      loop:call_soon(function() inner:set_result("quack") end)
      assert.are.equal("quack", tapio.wait_for(duck, 1))
      for name, call in pairs({
        getaddrinfo = function() return other:getaddrinfo("127.0.0.1", 80) end,
        create_server = function()
          return other:create_server(function() return {} end, "127.0.0.1", 0)
        end,
        sock_recv = function() return other:sock_recv(a, 10) end,
        run_in_executor = function()
          return other:run_in_executor(nil, function() return 1 end)
        end,
      }) do
        local ok, err = pcall(call)
        assert.is_false(ok, name)
        assert.matches("loop:" .. name .. ": the loop is another loop than "
          .. "the task's", err, 1, true)
      end
    end, { deadline = 2 })
    other:close()
    tapio.close_fd(a)
    tapio.close_fd(b)
  end)

  it("is refused by run_until_complete", function()
    local loop, other = tapio.new_loop(), tapio.new_loop()
    local fut = other:create_future()
    loop:call_later(1, function() loop:stop() end) -- a guard, not a wait
    assert.has_error(function() loop:run_until_complete(fut) end,
      "tapio: loop:run_until_complete: the future belongs to another loop")
    loop:close()
    other:close()
  end)
end)

describe("loop:run_until_complete", function()
  it("takes a function as a task, with arguments", function()
    local loop = tapio.new_loop()
    assert.are.equal(6, loop:run_until_complete(function(a, b)
      tapio.sleep(0)
      return a * b
    end, 2, 3))
    loop:close()
  end)

  it("raises the future's error", function()
    local loop = tapio.new_loop()
    local ok, err = pcall(loop.run_until_complete, loop, function()
      error("inside")
    end)
    assert.is_false(ok)
    assert.matches("inside", err)
    assert.has_error(function() loop:run_until_complete(42) end)
    loop:close()
  end)

  it("raises when the loop stops first", function()
    local loop = tapio.new_loop()
    local fut = loop:create_future()
    loop:call_soon(function() loop:stop() end)
    assert.has_error(function() loop:run_until_complete(fut) end,
      "tapio: loop:run_until_complete: the loop stopped before the future "
      .. "completed")
    loop:close()
  end)
end)

describe("tapio.run", function()
  it("runs main in a task on a new loop and returns its results", function()
    local seen
    local a, b = tapio.run(function(x)
      seen = tapio.get_running_loop()
      assert.is_true(seen:is_running())
      tapio.sleep(0)
      return x, "ok"
    end, "arg")
    assert.are.same({ "arg", "ok" }, { a, b })
    assert.is_true(seen:is_closed())
  end)

  it("raises main's error and keeps its traceback", function()
    local ok, err = pcall(tapio.run, function()
      tapio.sleep(0)
      error("main failed")
    end)
    assert.is_false(ok)
    assert.matches("main failed", err)
    assert.matches("stack traceback", tapio._traceback(err))
  end)

  it("cancels the tasks still running when main returns, and says so",
     function()
    local task
    local heard = {}
    tapio.run(function()
      tapio.get_running_loop():set_exception_handler(function(_, ctx)
        heard[#heard + 1] = ctx.message
      end)
      task = tapio.create_task(function() tapio.sleep(30) end)
      tapio.sleep(0)
    end)
    assert.is_true(task:cancelled())
    assert.are.same({ "tapio.run() ended what main left running: "
      .. "cancelled 1 task" }, heard)
  end)

  it("refuses to run inside a running loop", function()
    tapio.run(function()
      assert.has_error(function() tapio.run(function() end) end,
        "tapio: run: cannot be called from a running event loop")
    end)
  end)

  it("has no running loop outside", function()
    assert.has_error(function() tapio.get_running_loop() end)
  end)
end)
