-- Task factories (loop:set_task_factory, get_task_factory, tapio.Task)
-- and eager tasks (tapio.eager_task_factory), against asyncio's:
-- spec/support/task_factory.py runs each scenario on asyncio (3.12 or
-- later: eager_task_factory) with the eager factory set, with none, or
-- with a factory of its own, and prints its events in order; the same
-- scenarios run here must print the same. Then what asyncio has no
-- counterpart for here: tapio's errors, and the loop's own tasks
-- (a server's client tasks, a subprocess's communicate) under the eager
-- factory.
local helper = require "spec.helper"
local tapio = helper.tapio
local seqs = require "spec.support.sequences"

local raised = helper.fails

-- ---- The scenarios, as task_factory.py writes them ----------------------

local EVENTS, log = seqs.event_log()
local text = seqs.py_text

-- n turns of the loop: a chain of call_soon, then a future's result wakes
-- the caller (as task_factory.py's hops).
local function hops(n)
  local loop = tapio.get_running_loop()
  local fut = loop:create_future()
  local function hop(k)
    if k == 0 then
      fut:set_result()
    else
      loop:call_soon(hop, k - 1)
    end
  end
  loop:call_soon(hop, n)
  fut:await()
end

local function returns(name, value)
  log("child", name, "runs")
  return value
end

-- fn() in a pcall: a cancellation that comes out of it is logged as
-- what, and raised again.
local function logs_cancel(what, fn)
  local ok, err = pcall(fn)
  if not ok and tapio.is_cancelled(err) then
    log(what)
  end
  if not ok then
    error(err, 0)
  end
end

local function never(loop)
  return function()
    loop:create_future():await()
  end
end

local S = {}

function S.sync_result()
  local me = tapio.current_task()
  log("main before")
  local t = tapio.create_task(returns, "a", 42)
  log("created, done:", t:done())
  t:add_done_callback(function(f) log("done callback:", f:result()) end)
  log("current is main:", tapio.current_task() == me)
  hops(3)
  log("main end:", t:result())
end

function S.suspend_once(loop)
  local gate = loop:create_future()
  local t = tapio.create_task(function()
    log("child start")
    local v = gate:await()
    log("child got", v)
    return v
  end)
  log("created, done:", t:done())
  gate:set_result("x")
  log("gate set")
  log("main got", t:await())
end

function S.error()
  local t = tapio.create_task(function()
    log("child raises")
    error("boom", 0)
  end)
  log("created, done:", t:done())
  hops(2)
  log("exception:", tostring(t:exception()))
end

function S.cancel_self(loop)
  local t = tapio.create_task(function()
    log("child start")
    tapio.current_task():cancel()
    log("child cancelling:", tapio.current_task():cancelling())
    logs_cancel("child cancelled at its await", never(loop))
  end)
  log("created, done:", t:done())
  hops(2)
  log("cancelled:", t:cancelled())
end

function S.cancel_by_caller(loop)
  local t = tapio.create_task(function()
    log("child start")
    logs_cancel("child cancelled at its await", never(loop))
  end)
  log("cancel:", t:cancel())
  log("done:", t:done())
  hops(2)
  log("cancelled:", t:cancelled())
end

function S.cancel_raised()
  local t = tapio.create_task(function()
    log("child raises a cancellation")
    error(tapio.cancelled_error(), 0)
  end)
  log("created, done:", t:done(), "cancelled:", t:cancelled())
  hops(2)
  log("cancelled:", t:cancelled())
end

function S.cancel_then_return()
  local t = tapio.create_task(function()
    log("child cancels itself, returns")
    tapio.current_task():cancel()
    return 1
  end)
  log("created, done:", t:done(), "cancelled:", t:cancelled())
  hops(2)
  log("cancelled:", t:cancelled())
end

function S.callbacks_order(loop)
  local t1 = tapio.create_task(returns, "a")
  t1:add_done_callback(function() log("callback a") end)
  loop:call_soon(log, "call_soon")
  local t2 = tapio.create_task(returns, "b")
  t2:add_done_callback(function() log("callback b") end)
  log("main waits")
  hops(4)
  log("main end")
end

local function listed(task)
  for _, t in ipairs(tapio.all_tasks()) do
    if t == task then
      return true
    end
  end
  return false
end

function S.current_task()
  local me, seen = tapio.current_task(), {}
  local t = tapio.create_task(function()
    seen.current = tapio.current_task()
    seen.listed = listed(tapio.current_task())
    hops(1)
    seen.later = tapio.current_task()
  end)
  log("current in child is it:", seen.current == t)
  log("child in all_tasks:", seen.listed)
  log("current is main:", tapio.current_task() == me)
  t:await()
  log("current in child is it:", seen.current == t)
  log("later too:", seen.later == t)
  log("current is main:", tapio.current_task() == me)
end

function S.nested()
  local function grandchild()
    log("grandchild start")
    hops(1)
    log("grandchild end")
  end
  local function child()
    log("child start")
    local g = tapio.create_task(grandchild)
    log("child created the grandchild")
    g:await()
    log("child end")
  end
  log("main before")
  local t = tapio.create_task(child)
  log("main created the child")
  t:await()
  log("main end")
end

function S.taskgroup_ok(loop)
  local gate = loop:create_future()
  local function waits(name)
    log("child", name, "waits")
    local v = gate:await()
    log("child", name, "got", v)
    return v
  end
  local t1, t2
  tapio.TaskGroup(function(tg)
    t1 = tg:create_task(returns, "a", "ra")
    log("a done:", t1:done())
    t2 = tg:create_task(waits, "b")
    log("b done:", t2:done())
    gate:set_result("g")
    log("body end")
  end)
  log("group end:", t1:result(), t2:result())
end

function S.taskgroup_error(loop)
  local ok, err = pcall(tapio.TaskGroup, function(tg)
    local t = tg:create_task(function()
      log("child raises")
      error("boom", 0)
    end)
    log("child done:", t:done())
    log("body waits")
    logs_cancel("body cancelled", never(loop))
  end)
  assert(not ok and err.name == "ExceptionGroup", tostring(err))
  local shown = {}
  for i, e in ipairs(err.exceptions) do
    shown[i] = tostring(e)
  end
  log("group error:", table.concat(shown, " "))
end

function S.timeout_in_step(loop)
  local function child()
    log("child start")
    local ok, err = pcall(tapio.timeout, 0.01, never(loop))
    if not ok and err.code == tapio.ETIMEDOUT then
      log("child timed out")
    elseif not ok then
      error(err, 0)
    end
    return "ok"
  end
  tapio.timeout(10, function()
    local t = tapio.create_task(child)
    log("created")
    log("main got", t:await())
  end)
  log("main cancelling:", tapio.current_task():cancelling())
end

-- A gather's item as task_factory.py's shown() writes it.
local function shown(v)
  if tapio.is_cancelled(v) then
    return "cancelled"
  elseif type(v) == "string" and v:match("^boom") then
    return "error " .. v
  end
  return v
end

-- A function that makes returns(name, value): gather's item.
local function returning(name, value)
  return function()
    return returns(name, value)
  end
end

local function fails(message)
  return function()
    log("child raises")
    error(message, 0)
  end
end

local function cancels_itself()
  log("child cancels itself, returns")
  tapio.current_task():cancel()
  return 1
end

-- What gather returned, shown.
local function gathered(r)
  local words = {}
  for i = 1, r.n do
    words[i] = text(shown(r[i]))
  end
  log("gathered", table.concat(words, " "))
end

function S.gather_eager(loop)
  loop:call_soon(log, "call_soon")
  gathered(tapio.gather({ returning("a", 1), returning("b", 2) }))
  hops(1)
  log("main end")
end

function S.gather_done_futures(loop)
  local f1, f2, f3 = loop:create_future(), loop:create_future(),
    loop:create_future()
  f1:set_result("x")
  f2:set_exception("boom")
  f3:cancel()
  loop:call_soon(log, "call_soon")
  gathered(tapio.gather({ f1, f2, f3, f1 }, { return_exceptions = true }))
  hops(1)
  log("main end")
end

function S.gather_finished_later(loop)
  local f = loop:create_future()
  local function finishes()
    log("child finishes f")
    f:set_result("f")
    return "c"
  end
  loop:call_soon(log, "call_soon")
  gathered(tapio.gather({ f, finishes }))
  hops(1)
  log("main end")
end

function S.gather_eager_error(loop)
  loop:call_soon(log, "call_soon")
  local ok, err = pcall(tapio.gather, { returning("a"), fails("boom"),
    returning("b") })
  if not ok and err == "boom" then
    log("gather raised", err)
  end
  hops(1)
  log("main end")
end

function S.gather_eager_cancelled(loop)
  loop:call_soon(log, "call_soon")
  local ok, err = pcall(tapio.gather, { returning("a"), cancels_itself })
  if not ok and tapio.is_cancelled(err) then
    log("gather raised cancelled")
  end
  log("main cancelling:", tapio.current_task():cancelling())
  gathered(tapio.gather({ cancels_itself, returning("b", 2) },
    { return_exceptions = true }))
  hops(1)
  log("main end")
end

function S.gather_cancel(loop)
  local function waits()
    log("child b waits")
    logs_cancel("child b cancelled", never(loop))
  end
  local g = tapio.create_task(function()
    return tapio.gather({ returning("a", 1), waits })
  end)
  log("g done:", g:done())
  hops(1)
  log("cancel:", g:cancel())
  local ok, err = pcall(g.await, g)
  if not ok and tapio.is_cancelled(err) then
    log("g cancelled:", g:cancelled())
  end
  hops(1)
  log("main end")
end

-- A factory that counts the tasks it makes, as task_factory.py's.
local function counting(eager)
  local made = { n = 0 }
  return function(loop, fn, ...)
    made.n = made.n + 1
    if eager then
      return tapio.eager_task_factory(loop, fn, ...)
    end
    return tapio.Task(loop, fn, ...)
  end, made
end

local function custom(eager)
  return function(loop)
    local factory, made = counting(eager)
    loop:set_task_factory(factory)
    log("factory is it:", loop:get_task_factory() == factory)
    local t1 = loop:create_task(returns, "a")
    local t2 = tapio.create_task(returns, "b")
    log("made", made.n)
    tapio.TaskGroup(function(tg)
      tg:create_task(returns, "c")
    end)
    log("made", made.n)
    tapio.gather({ function() return returns("d") end,
                   function() return returns("e") end })
    t1:await()
    t2:await()
    log("made", made.n)
    loop:set_task_factory(nil)
    log("factory:", loop:get_task_factory())
    tapio.create_task(returns, "f")
    log("made", made.n)
    hops(1)
  end
end

local function bad_factory(loop)
  if not pcall(loop.set_task_factory, loop, 42) then
    log("error")
  end
  log("factory:", loop:get_task_factory())
end

-- create_eager_task_factory with a constructor of its own (as
-- task_factory.py's constructor).
function S.constructor(loop)
  loop:set_task_factory(tapio.create_eager_task_factory(function(l, fn, ...)
    log("constructor")
    return tapio.Task(l, fn, ...)
  end))
  local t = tapio.create_task(function()
    log("outer start")
    local inner = tapio.create_task(returns, "inner", 2)
    log("inner done:", inner:done())
    hops(1)
    return inner:result()
  end)
  log("outer done:", t:done())
  log("result:", t:await())
  loop:set_task_factory(tapio.create_eager_task_factory(function()
    error("no", 0)
  end))
  local ok, err = pcall(tapio.create_task, returns, "x")
  if not ok and err == "no" then
    log("constructor error raised")
  end
  loop:set_task_factory(nil)
end

-- main(loop) in a new loop whose factory mode says; its events.
local function run(mode, main)
  for i = #EVENTS, 1, -1 do
    EVENTS[i] = nil
  end
  helper.run(function(loop)
    if mode == "eager" then
      loop:set_task_factory(tapio.eager_task_factory)
    elseif mode == "ctor" then
      loop:set_task_factory(tapio.create_eager_task_factory(tapio.Task))
    end
    main(loop)
  end)
  return EVENTS
end

-- The factory set on a loop not running: the task waits for it.
local function not_running()
  local loop = tapio.new_loop()
  loop:set_task_factory(tapio.eager_task_factory)
  for i = #EVENTS, 1, -1 do
    EVENTS[i] = nil
  end
  local t = loop:create_task(returns, "a", 1)
  log("created, done:", t:done())
  log("result:", loop:run_until_complete(t))
  loop:close()
  return EVENTS
end

-- The scenarios, in task_factory.py's order: { name, mode, run }.
local SCENARIOS = {}
for _, name in ipairs { "sync_result", "suspend_once", "error",
    "cancel_self", "cancel_by_caller", "cancel_raised",
    "cancel_then_return", "callbacks_order", "current_task", "nested",
    "taskgroup_ok", "taskgroup_error", "timeout_in_step", "gather_eager",
    "gather_done_futures", "gather_finished_later", "gather_eager_error",
    "gather_eager_cancelled", "gather_cancel" } do
  for _, mode in ipairs { "eager", "lazy" } do
    SCENARIOS[#SCENARIOS + 1] = { name, mode, function()
      return run(mode, S[name])
    end }
  end
end
SCENARIOS[#SCENARIOS + 1] = { "custom", "lazy", function()
  return run("lazy", custom(false))
end }
SCENARIOS[#SCENARIOS + 1] = { "custom", "eager", function()
  return run("lazy", custom(true))
end }
SCENARIOS[#SCENARIOS + 1] = { "bad_factory", "lazy", function()
  return run("lazy", bad_factory)
end }
for _, name in ipairs { "sync_result", "suspend_once", "error",
    "cancel_self", "nested", "taskgroup_error", "gather_eager" } do
  SCENARIOS[#SCENARIOS + 1] = { name, "ctor", function()
    return run("ctor", S[name])
  end }
end
SCENARIOS[#SCENARIOS + 1] = { "constructor", "lazy", function()
  return run("lazy", S.constructor)
end }
SCENARIOS[#SCENARIOS + 1] = { "not_running", "eager", not_running }

-- What task_factory.py prints (it needs Python 3.12: a recording
-- stands in, see seqs.asyncio_output).
local function asyncio_output()
  return seqs.asyncio_output("task_factory.py", "task_factory.out")
end

-- task_factory.py's events: "name mode" -> list, and the keys in order.
local asyncio_events
local function asyncio_side()
  if asyncio_events then
    return asyncio_events
  end
  local out = asyncio_output()
  asyncio_events = {}
  for key, event in out:gmatch("([^|\n]+)|([^\n]*)\n") do
    local list = asyncio_events[key] or {}
    asyncio_events[key] = list
    list[#list + 1] = event
  end
  return asyncio_events
end

describe("eager and lazy tasks against asyncio's", function()
  it("asyncio ran every scenario, and no other", function()
    local keys = {}
    for _, s in ipairs(SCENARIOS) do
      keys[s[1] .. " " .. s[2]] = true
    end
    for key in pairs(asyncio_side()) do
      assert(keys[key], "no such scenario here: " .. key)
    end
    for key in pairs(keys) do
      assert(asyncio_side()[key], "asyncio printed nothing for " .. key)
    end
  end)

  for _, s in ipairs(SCENARIOS) do
    local key = s[1] .. " " .. s[2]
    it(key, function()
      assert.are.same(asyncio_side()[key], s[3]())
    end)
  end
end)

-- ---- What tapio adds -----------------------------------------------------

describe("loop:set_task_factory", function()
  it("refuses what is not callable, naming the argument", function()
    local loop = tapio.new_loop()
    local err = raised(loop.set_task_factory, loop, 42)
    assert.matches("tapio: loop:set_task_factory: bad argument #1 "
      .. "'factory' %(function expected, got number%)", err)
    assert.is_nil(loop:get_task_factory())
    local callable = setmetatable({}, { __call = function(_, l, fn, ...)
      return tapio.Task(l, fn, ...)
    end })
    loop:set_task_factory(callable) -- a callable table will do
    assert.are.equal(callable, loop:get_task_factory())
    assert.are.equal(7, loop:run_until_complete(function() return 7 end))
    err = raised(loop.get_task_factory, 42)
    assert.matches("loop:get_task_factory: bad self", err)
    loop:close()
  end)

  it("raises at create_task's caller when the factory makes no task",
     function()
    local loop = tapio.new_loop()
    loop:set_task_factory(function() return 42 end)
    local err = raised(function()
      loop:create_task(function() end)
    end)
    assert.matches("task_factory_spec.lua:%d+: tapio: loop:create_task: "
      .. "the task factory returned number %(a task expected%)", err)
    loop:set_task_factory(function() error("factory says no", 0) end)
    assert.are.equal("factory says no", raised(loop.create_task, loop,
      function() end)) -- a factory's error goes to the caller, as asyncio
    loop:close()
  end)

  it("is the loop's own: another loop's tasks stay lazy", function()
    local other = tapio.new_loop()
    other:set_task_factory(tapio.eager_task_factory)
    helper.run(function(loop)
      local ran = false
      local t = loop:create_task(function() ran = true end)
      assert.is_false(ran)
      t:await()
      assert.is_true(ran)
    end)
    other:close()
  end)
end)

describe("tapio.Task and tapio.eager_task_factory", function()
  it("check their arguments at the caller's line", function()
    for _, name in ipairs { "Task", "eager_task_factory" } do
      local make = tapio[name]
      local err = raised(make, nil, print)
      assert.matches("tapio: " .. name .. ": bad argument #1 'loop' "
        .. "%(tapio.loop expected, got nil%)", err)
      local loop = tapio.new_loop()
      err = raised(function() make(loop, 42) end)
      assert.matches("task_factory_spec.lua:%d+: tapio: " .. name
        .. ": bad argument #2 'fn' %(function expected, got number%)", err)
      loop:close()
      err = raised(function() make(loop, print) end)
      assert.matches("task_factory_spec.lua:%d+: tapio: " .. name
        .. ": the loop is closed", err)
    end
  end)

  it("make a task of fn(...): tapio.Task bypasses the factory", function()
    helper.run(function(loop)
      local made = 0
      loop:set_task_factory(function(l, fn, ...)
        made = made + 1
        return tapio.Task(l, fn, ...)
      end)
      local t = tapio.Task(loop, function(a, b) return a + b end, 1, 2)
      local e = tapio.eager_task_factory(loop, function(...)
        return select("#", ...)
      end, nil, nil)
      assert.are.equal(0, made)
      assert.is_true(e:done()) -- eager: done already
      assert.are.equal(2, e:result()) -- the nils count
      assert.is_false(t:done())
      assert.are.equal(3, t:await())
    end)
  end)

  it("create_eager_task_factory checks its constructor, and starts what "
     .. "it makes only where the loop runs", function()
    local err = raised(tapio.create_eager_task_factory, 42)
    assert.matches("tapio: create_eager_task_factory: bad argument #1 "
      .. "'custom_task_constructor' %(function expected, got number%)", err)
    local loop = tapio.new_loop()
    local calls = 0
    loop:set_task_factory(tapio.create_eager_task_factory(function(...)
      calls = calls + 1
      return tapio.Task(...)
    end))
    local ran = false
    local t = loop:create_task(function() ran = true return "r" end)
    assert.is_false(ran) -- the loop is not running: scheduled
    assert.are.equal("r", loop:run_until_complete(t))
    assert.are.equal(1, calls)
    loop:close()
  end)

  it("an eager step's error is the task's, with its traceback", function()
    helper.run(function(loop)
      loop:set_task_factory(tapio.eager_task_factory)
      local t = tapio.create_task(function() error("eager boom") end)
      assert.is_true(t:done())
      assert.matches("eager boom", tostring(t:exception()))
      assert.matches("in function", t:get_traceback())
    end)
  end)

  it("nests eager steps 100 deep", function()
    helper.run(function(loop)
      loop:set_task_factory(tapio.eager_task_factory)
      local depth = 0
      local function dive(n)
        depth = math.max(depth, n)
        if n < 100 then
          return tapio.create_task(dive, n + 1):result()
        end
        return n
      end
      local t = tapio.create_task(dive, 1)
      assert.are.equal(100, depth)
      assert.are.equal(100, t:result())
    end)
  end)
end)

describe("the loop's own tasks under the eager factory", function()
  it("a server's client task starts in connection_made", function()
    helper.run(function(loop)
      local cb_ran, seen = false, {}
      loop:set_task_factory(function(l, fn, ...)
        local t = tapio.eager_task_factory(l, fn, ...)
        seen[#seen + 1] = cb_ran -- its first step has run
        return t
      end)
      local server = tapio.start_server(function(reader, writer)
        cb_ran = true
        writer:write("hello\n")
        local line = reader:readline()
        writer:write("echo " .. line)
        writer:close()
      end, "127.0.0.1", 0)
      local reader, writer = tapio.open_connection("127.0.0.1",
        helper.port(server))
      assert.are.equal("hello\n", reader:readline())
      writer:write("x\n")
      assert.are.equal("echo x\n", reader:readline())
      assert.are.equal("", reader:read())
      writer:close()
      server:close()
      server:wait_closed()
      assert.are.same({ true }, seen) -- one task: the client's
    end)
  end)

  it("a client callback's eager error goes to the exception handler, "
     .. "and the connection closes", function()
    local errors = helper.run(function(loop, errors)
      loop:set_task_factory(tapio.eager_task_factory)
      local server = tapio.start_server(function()
        error("client cb fails", 0)
      end, "127.0.0.1", 0)
      local reader, writer = tapio.open_connection("127.0.0.1",
        helper.port(server))
      assert.are.equal("", reader:read())
      writer:close()
      server:close()
      server:wait_closed()
      return errors
    end, { errors_ok = true })
    assert.are.equal(1, #errors)
    assert.are.equal("unhandled error in client_connected_cb",
      errors[1].message)
    assert.are.equal("client cb fails", errors[1].exception)
  end)

  it("a subprocess's communicate", function()
    helper.run(function(loop)
      local factory, made = counting(true)
      loop:set_task_factory(factory)
      local p = tapio.create_subprocess_exec("cat", nil,
        { stdin = "pipe", stdout = "pipe", stderr = "pipe" })
      local out, err = p:communicate("some input")
      assert.are.equal("some input", out)
      assert.are.equal("", err)
      assert.are.equal(0, p.returncode)
      assert.are.equal(3, made.n)
    end)
  end)
end)
