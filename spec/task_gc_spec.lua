-- A task collected while pending (asyncio's "Task was destroyed but it is
-- pending!"): nothing holds a waiting task but what would wake it, so a
-- task dropped with the future it awaits can never run again; it is
-- collected and reported once to the loop's exception handler. A task
-- that ended, or that something still reaches, is never reported.
local helper = require "spec.helper"
local tapio = helper.tapio

local heard_of = helper.unretrieved -- the handler's contexts, after make

local function destroyed(heard)
  local list = {}
  for _, ctx in ipairs(heard) do
    if ctx.message:find("destroyed", 1, true) then
      list[#list + 1] = ctx
    end
  end
  return list
end

-- Where pump waits (the line of its await), for the report's words.
local SOURCE = debug.getinfo(1, "S").source:sub(2)
local WAIT_LINE

local function pump(fut)
  WAIT_LINE = debug.getinfo(1, "l").currentline + 1
  fut:await()
end

describe("a task collected while pending", function()
  it("is reported once, by name and where it waits", function()
    local names = {}
    local heard = heard_of(function(loop)
      local task = loop:create_task(pump, loop:create_future())
      task:set_name("pump")
      tapio.sleep(0) -- it awaits the future nobody else holds
      assert.are.equal("pending", task._state)
      assert.are.equal(2, #tapio.all_tasks(loop)) -- this one and pump
      for _, t in ipairs(tapio.all_tasks(loop)) do
        names[#names + 1] = t:get_name()
      end
    end) -- both dropped here; heard_of collects twice
    assert.truthy(names[1] == "pump" or names[2] == "pump")
    assert.are.equal(1, #heard)
    local ctx = heard[1]
    assert.are.equal(("task was destroyed but it is pending! (task 'pump', "
      .. "waiting at %s:%d in function <%s:%d>)"):format(SOURCE, WAIT_LINE,
      SOURCE, WAIT_LINE - 2), ctx.message)
    assert.are.equal(tapio.Task, getmetatable(ctx.task))
    assert.are.equal("pump", ctx.task:get_name())
    assert.is_false(ctx.task:done())
    assert.matches("stack traceback", ctx.traceback)
    assert.is_nil(ctx.exception)
  end)

  it("is no longer in all_tasks, and is not reported again", function()
    local loop = tapio.new_loop()
    local heard, kept = {}, nil
    loop:set_exception_handler(function(_, ctx)
      heard[#heard + 1] = ctx
      kept = ctx.task -- reachable again: the report is still the only one
    end)
    loop:run_until_complete(function()
      loop:create_task(pump, loop:create_future()):set_name("kept")
      tapio.sleep(0)
    end)
    helper.collect()
    assert.are.equal(1, #heard)
    assert.are.equal("kept", kept:get_name())
    assert.are.same({}, tapio.all_tasks(loop))
    helper.collect()
    assert.are.equal(1, #heard)
    kept = nil
    helper.collect()
    assert.are.equal(1, #heard)
    loop:close()
  end)

  it("is reported by the default handler, naming the task", function()
    local out, status = helper.run_script([[
local tapio = require "tapio"
local loop = tapio.new_loop()
loop:run_until_complete(function()
  loop:create_task(function()
    loop:create_future():await()
  end):set_name("orphan")
  tapio.sleep(0)
end)
collectgarbage("collect")
collectgarbage("collect")
print("collected")
loop:close()
]])
    assert.are.equal(0, status)
    assert.matches("tapio: task was destroyed but it is pending! (task "
      .. "'orphan', waiting at SCRIPT:5 in function <SCRIPT:4>)", out, 1,
      true)
    assert.matches("  task: tapio.Task 'orphan' (pending)", out, 1, true)
    assert.is_true(out:find("destroyed", 1, true)
      < out:find("collected", 1, true))
  end)
end)

describe("a task is never reported as destroyed", function()
  it("once it ended: finished, failed or cancelled", function()
    assert.are.same({}, destroyed(heard_of(function(loop)
      local done = loop:create_task(function() return 1 end)
      local failed = loop:create_task(function() error("seen") end)
      local cancelled = loop:create_task(pump, loop:create_future())
      local early = loop:create_task(pump, loop:create_future())
      early:cancel() -- before its first step
      tapio.sleep(0)
      cancelled:cancel()
      tapio.sleep(0)
      assert.are.equal(1, done:result())
      assert.matches("seen", failed:exception())
      assert.is_true(cancelled:cancelled() and early:cancelled())
    end)))
  end)

  it("while what would wake it is reachable", function()
    local loop = tapio.new_loop()
    local heard = {}
    loop:set_exception_handler(function(_, ctx)
      heard[#heard + 1] = ctx
    end)
    local fut = loop:create_future()
    loop:run_until_complete(function()
      loop:create_task(pump, fut):set_name("held") -- only fut holds it
      local reader = tapio.StreamReader()
      loop:create_task(reader.read, reader, 10):set_name("parked")
      tapio.sleep(0)
      _G.task_gc_reader = reader
    end)
    helper.collect()
    assert.are.same({}, heard)
    local names = {}
    for _, t in ipairs(tapio.all_tasks(loop)) do
      names[#names + 1] = t:get_name()
    end
    table.sort(names)
    assert.are.same({ "held", "parked" }, names)
    fut:set_result()
    _G.task_gc_reader:feed_eof()
    _G.task_gc_reader = nil
    loop:run_until_complete(function()
      tapio.sleep(0)
      tapio.sleep(0)
    end)
    assert.are.same({}, tapio.all_tasks(loop))
    helper.collect()
    assert.are.same({}, heard)
    loop:close()
  end)
end)
