-- tapio.TaskGroup, asyncio's TaskGroup as a function around a body, on
-- the testing kit's virtual clock (every time asserted is the loop's).
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"

local jump = { autojump = true }

local raised = helper.fails -- the error a call raised (it must raise)

local function now()
  return tapio.get_running_loop():time()
end

-- A task function that sleeps for delay, then returns result; log says
-- what happened to it, under its name.
local function sleeper(log, name, delay, result)
  return function()
    local ok, err = pcall(tapio.sleep, delay)
    if not ok then
      log[#log + 1] = ("%s cancelled at %g"):format(name, now())
      error(err, 0)
    end
    log[#log + 1] = ("%s slept until %g"):format(name, now())
    return result
  end
end

-- A task function that fails with err after delay.
local function failer(log, name, delay, err)
  return function()
    tapio.sleep(delay)
    log[#log + 1] = ("%s fails at %g"):format(name, now())
    error(err, 0)
  end
end

-- What the calling task sees of a body that waits for 10 s: its
-- cancellation, logged, then raised on.
local function waiting_body(log, make)
  return function(tg)
    make(tg)
    local ok, err = pcall(tapio.sleep, 10)
    log[#log + 1] = ("body %s at %g"):format(ok and "slept" or "cancelled",
      now())
    if not ok then
      error(err, 0)
    end
  end
end

local function is_group(err, errors)
  assert.are.equal("table", type(err))
  assert.are.equal("ExceptionGroup", err.name)
  assert.are.equal(tapio.ECALLBACK, err.code)
  assert.are.same(errors, err.exceptions)
end

describe("tapio.TaskGroup", function()
  it("returns the body's results once it and every child have finished; " ..
     "each child's result stays on its task", testing.run(function(clock)
    local log, a, b = {}, nil, nil
    local me = tapio.current_task()
    local x, y = tapio.TaskGroup(function(tg, arg)
      assert.are.equal(me, tapio.current_task())
      a = tg:create_task(sleeper(log, "a", 2, "ra"))
      b = tg:create_task(sleeper(log, "b", 1, "rb"))
      log[#log + 1] = "body returns"
      return arg, "y"
    end, "x")
    assert.are.same({ "x", "y" }, { x, y })
    assert.are.same({ "body returns", "b slept until 1", "a slept until 2" },
      log)
    assert.are.equal(2, clock:time())
    assert.are.equal("ra", a:result())
    assert.are.equal("rb", b:result())
    assert.are.equal(0, me:cancelling())
    assert.are.same({ "z" }, { tapio.task_group(function() return "z" end) })
  end, jump))

  it("at the first child's error cancels the others and the body, then " ..
     "raises an ExceptionGroup; the task goes on", testing.run(function(clock)
    local log = {}
    local err = raised(tapio.TaskGroup, waiting_body(log, function(tg)
      tg:create_task(sleeper(log, "slow", 5))
      tg:create_task(failer(log, "bad", 1, "boom"))
      tg:create_task(sleeper(log, "slower", 6))
    end))
    is_group(err, { "boom" })
    assert.are.equal("unhandled errors in a TaskGroup (1 sub-error): " ..
      "[1] boom (ExceptionGroup)", tostring(err))
    assert.are.same({ "bad fails at 1", "slow cancelled at 1",
      "slower cancelled at 1", "body cancelled at 1" }, log)
    local me = tapio.current_task()
    assert.are.equal(0, me:cancelling())
    tapio.sleep(1) -- not cancelled any more
    assert.are.equal(2, clock:time())
  end, jump))

  it("holds every child's error in the order they failed, also one " ..
     "raised while cancelled; cancelled children are no errors",
     testing.run(function(_, loop)
    local log = {}
    local other = loop:create_future()
    local err = raised(tapio.TaskGroup, function(tg)
      tg:create_task(failer(log, "first", 1, { why = "first" }))
      tg:create_task(function()
        pcall(tapio.sleep, 5)
        tapio.sleep(0.5) -- its cleanup takes a while: the group waits
        log[#log + 1] = ("cleanup fails at %g"):format(now())
        error("cleanup", 0)
      end)
      tg:create_task(function() other:await() end) -- cancelled: no error
      tg:create_task(failer(log, "second", 1, "second"))
    end)
    is_group(err, { { why = "first" }, "second", "cleanup" })
    assert.matches("^unhandled errors in a TaskGroup %(3 sub%-errors%): " ..
      "%[1%] table: [^;]+; %[2%] second; %[3%] cleanup %(ExceptionGroup%)$",
      tostring(err))
    assert.are.same({ "first fails at 1", "second fails at 1",
      "cleanup fails at 1.5" }, log)
    assert.is_true(other:cancelled())
  end, jump))

  it("an error of the body cancels the children and comes last in the " ..
     "group's error", testing.run(function()
    local log = {}
    local err = raised(tapio.TaskGroup, function(tg)
      tg:create_task(sleeper(log, "a", 5))
      tg:create_task(function()
        pcall(tapio.sleep, 5)
        error("b's cleanup", 0)
      end)
      tapio.sleep(1)
      error("body broke", 0)
    end)
    is_group(err, { "b's cleanup", "body broke" })
    assert.are.same({ "a cancelled at 1" }, log)
  end, jump))

  it("cancelled from outside, cancels the children, waits for them, and " ..
     "ends cancelled", testing.run(function(_, loop)
    local log = {}
    local task = loop:create_task(tapio.TaskGroup, function(tg)
      tg:create_task(sleeper(log, "a", 5))
      tg:create_task(function()
        local ok, e = pcall(tapio.sleep, 5)
        tapio.sleep(0.5) -- the group waits for this cleanup
        log[#log + 1] = ("b cleaned up at %g"):format(now())
        error(e, 0)
      end)
    end)
    loop:call_later(1, function() task:cancel() end)
    local err = raised(task.await, task)
    assert.is_true(tapio.is_cancelled(err))
    assert.is_true(task:cancelled())
    assert.are.same({ "a cancelled at 1", "b cleaned up at 1.5" }, log)
    assert.are.equal(1.5, now())
  end, jump))

  it("inside tapio.timeout gives the timeout when the deadline fires",
     testing.run(function()
    local log = {}
    local err = raised(tapio.timeout, 1, tapio.TaskGroup,
      waiting_body(log, function(tg)
        tg:create_task(sleeper(log, "a", 5))
      end))
    assert.are.equal(tapio.ETIMEDOUT, err.code)
    assert.are.equal("timeout: timed out after 1 s", err.message)
    assert.are.same({ "body cancelled at 1", "a cancelled at 1" }, log)
    assert.are.equal(0, tapio.current_task():cancelling())
  end, jump))

  it("a child failing as a deadline around the group fires: the group's " ..
     "error, and the task is not left cancelled", testing.run(function(_,
                                                                loop)
    local log = {}
    local go = loop:create_future()
    loop:call_later(1, function() go:set_result() end) -- before the timer
    local err = raised(tapio.timeout, 1, tapio.TaskGroup,
      waiting_body(log, function(tg)
        tg:create_task(function()
          go:await()
          error("boom", 0)
        end)
      end))
    is_group(err, { "boom" })
    assert.are.same({ "body cancelled at 1" }, log)
    assert.are.equal(0, tapio.current_task():cancelling())
    tapio.sleep(1) -- not cancelled
    assert.are.equal(2, now())
  end, jump))

  it("cancelled from outside while a child fails: raises the errors and " ..
     "the task stays cancelled (cpython gh-116720)",
     testing.run(function(_, loop)
    local log = {}
    local outer = loop:create_task(function()
      local err = raised(tapio.TaskGroup, function(tg)
        tg:create_task(failer(log, "bad", 1, "boom"))
        local ok, e = pcall(tapio.sleep, 10)
        log[#log + 1] = ("body cancelled at %g"):format(now())
        pcall(tapio.sleep, 0.5) -- its cleanup: cancelled from outside
        error(e, 0)
      end)
      is_group(err, { "boom" })
      log[#log + 1] = "group raised"
      local ok, e = pcall(tapio.sleep, 1)
      log[#log + 1] = ("then %s"):format(ok and "slept" or "cancelled")
      error(e, 0)
    end)
    loop:call_later(1.25, function() outer:cancel() end)
    assert.is_true(tapio.is_cancelled(raised(outer.await, outer)))
    assert.is_true(outer:cancelled())
    assert.are.same({ "bad fails at 1", "body cancelled at 1",
      "group raised", "then cancelled" }, log)
    assert.are.equal(1.25, now())
  end, jump))

  it("refuses new tasks once shutting down or finished, making none",
     testing.run(function(_, loop)
    local kept, seen = nil, {}
    local function try(tg)
      local before = #tapio.all_tasks(loop)
      seen[#seen + 1] = raised(function() tg:create_task(print) end)
      assert.are.equal(before, #tapio.all_tasks(loop))
    end
    raised(tapio.TaskGroup, function(tg)
      kept = tg
      tg:create_task(function()
        pcall(tapio.sleep, 5)
        try(tg) -- a child being cancelled
      end)
      tg:create_task(failer({}, "bad", 1, "boom"))
      pcall(tapio.sleep, 10)
      try(tg) -- the body, cancelled
    end)
    try(kept)
    assert.are.equal(3, #seen)
    for i = 1, 2 do
      assert.matches("spec.lua:%d+: tapio: taskgroup:create_task: the " ..
        "TaskGroup is shutting down", seen[i])
    end
    assert.matches("spec.lua:%d+: tapio: taskgroup:create_task: the " ..
      "TaskGroup is finished", seen[3])
    tapio.sleep(0)
    assert.are.equal(1, #tapio.all_tasks(loop))
  end, jump))

  it("takes a child that ended inside create_task (an eager task) at " ..
     "once: one that failed shuts it down before the body goes on " ..
     "(asyncio 3.13)", testing.run(function(_, loop)
    loop:set_task_factory(tapio.eager_task_factory)
    local log, refused = {}, nil
    local err = raised(tapio.TaskGroup, function(tg)
      assert.is_true(tg:create_task(function() return 1 end):done())
      tg:create_task(function() error("now", 0) end)
      refused = raised(function()
        tg:create_task(sleeper(log, "late", 1))
      end)
      tapio.sleep(1)
      log[#log + 1] = "the body went on"
    end)
    loop:set_task_factory(nil)
    assert.are.same({ "now" }, err.exceptions)
    assert.matches("spec.lua:%d+: tapio: taskgroup:create_task: the " ..
      "TaskGroup is shutting down", refused)
    assert.are.same({}, log)
    assert.are.equal(0, tapio.current_task():cancelling())
  end, jump))

  it("takes children made by children while it waits",
     testing.run(function(clock)
    local log, late = {}, nil
    tapio.TaskGroup(function(tg)
      tg:create_task(function()
        tapio.sleep(1)
        late = tg:create_task(sleeper(log, "late", 2, "r"))
      end)
    end)
    assert.are.equal(3, clock:time())
    assert.are.equal("r", late:result())
    assert.are.same({ "late slept until 3" }, log)
  end, jump))

  it("reports its children's errors once: in its own error, never as " ..
     "not retrieved", testing.run(function()
    local err = raised(tapio.TaskGroup, function(tg)
      for i = 1, 3 do
        tg:create_task(function() error("child " .. i, 0) end)
      end
    end)
    is_group(err, { "child 1", "child 2", "child 3" })
    err = nil
    collectgarbage()
    collectgarbage()
    tapio.sleep(0) -- a report goes through the loop's exception handler,
  end))            -- which testing.run would fail on

  it("nested: the inner group's error is one error of the outer's",
     testing.run(function()
    local err = raised(tapio.TaskGroup, function(outer)
      outer:create_task(tapio.TaskGroup, function(inner)
        inner:create_task(function() error("deep", 0) end)
      end)
    end)
    assert.are.equal(1, #err.exceptions)
    is_group(err.exceptions[1], { "deep" })
    assert.are.equal("unhandled errors in a TaskGroup (1 sub-error): [1] " ..
      "unhandled errors in a TaskGroup (1 sub-error): [1] deep " ..
      "(ExceptionGroup) (ExceptionGroup)", tostring(err))
  end))

  it("outside a task returns a task of it", function()
    local loop, clock = testing.new_loop()
    local t
    loop:call_soon(function()
      t = tapio.TaskGroup(function(tg, n)
        tg:create_task(tapio.sleep, n)
        return n
      end, 2)
    end)
    clock:advance(2)
    assert.is_true(t:done())
    assert.are.equal(2, t:result())
    loop:close()
  end)

  it("refuses what is not a function, at the caller's line",
     testing.run(function()
    assert.matches("taskgroup_spec.lua:%d+: tapio: TaskGroup: bad argument "
      .. "#1 'fn' %(function expected, got nil%)", raised(function()
        tapio.TaskGroup()
      end))
    tapio.TaskGroup(function(tg)
      assert.matches("taskgroup_spec.lua:%d+: tapio: taskgroup:create_task: "
        .. "bad argument #1 'fn' %(function expected, got number%)",
        raised(function() tg:create_task(5) end))
      assert.matches("taskgroup:create_task: bad self %(tapio.TaskGroup " ..
        "expected, got table%)", raised(tg.create_task, {}, print))
    end)
  end))
end)
