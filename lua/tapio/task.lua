--- tapio.task (internal): tasks (coroutines the loop resumes), sleep,
-- loop:run_until_complete (tapio.run and tapio.Runner: tapio.runner).
local core = require "tapio.core"
local U = require "tapio.util"
local F = require "tapio.future"
local C = require "tapio.context"

local M = { api = {} } -- api: what `tapio` holds too (see tapio.util)
local api = M.api
local pack, unpack = U.pack, U.unpack
local check_loop, check_callable = U.check_loop, U.check_callable
local check_self = U.check_self
local is_cancelled, safe_tostring = U.api.is_cancelled, U.safe_tostring
local Future, new_future, is_future = F.Future, F.new_future, F.api.is_future
local resolve, retrieved = F.resolve, F.retrieved
local tasks, AWAIT, CANCEL, PARK = F.tasks, F.AWAIT, F.CANCEL, F.PARK
local SELF, OTHER = F.SELF, F.OTHER
local Loop = core.loop_methods

local co_resume, monotonic = coroutine.resume, core._monotonic
local resume = co_resume -- or resume_timed in debug mode (below)
local all_tasks = setmetatable({}, { __mode = "k" }) -- loop -> {task=true}
local task_count = 0 -- tasks made: the default names ("Task-N")

local Task = setmetatable({}, { __index = Future })
Task.__index = Task
Task.__tostring = function(t)
  return ("tapio.Task '%s' (%s)"):format(t:get_name(), t._state)
end
M.Task = Task

Task._kind = "task" -- "task exception was never retrieved" (tapio.future)

-- ---- A pending task collected (asyncio's "Task was destroyed but it is
-- pending!") --------------------------------------------------------------
--
-- Nothing holds a waiting task but what will wake it (the future it
-- awaits, the object it is parked on, the loop's queue); all_tasks and
-- tasks are weak. A task collected while pending was dropped with all of
-- that, so it can never run again: its finalizer reports it. In 5.4 that
-- is Task's __gc (no object more per task: a sentinel table holding the
-- task cost 1,700 instructions more per task made, run and collected).
-- LuaJIT's tables have no __gc: there each task holds a sentinel, made
-- once per task, a userdata whose environment is the task (a weak table
-- could not map it to its task there: no ephemerons).
local destroyed -- (below: it names where the task waits)
local sentinel -- (LuaJIT's)
if newproxy then
  local getfenv, setfenv = debug.getfenv, debug.setfenv
  local proto = newproxy(true)
  getmetatable(proto).__gc = function(p)
    destroyed(getfenv(p))
  end
  function sentinel(task)
    return setfenv(newproxy(proto), task)
  end
else
  Task.__gc = function(task)
    destroyed(task)
  end
end

local step

local function wakeup(task)
  return function()
    step(task)
  end
end

local function task_failed(task, err)
  if is_cancelled(err) then
    Future.cancel(task, err.message)
    return
  end
  local co = task._co
  task._traceback = debug.traceback(co, safe_tostring(err))
  Future.set_exception(task, err)
end

-- Work left for when the running task stops running (waits or ends),
-- as pairs fn, obj: tapio.streams sends the writes a task batched then.
-- Two lists swapped, so that running them allocates nothing.
local deferred, spare = {}, {}

--- Runs fn(obj) once the running task stops running (it waits or ends).
-- fn must not raise.
function M.defer(fn, obj)
  local n = #deferred
  deferred[n + 1], deferred[n + 2] = fn, obj
end

local function run_deferred()
  local list = deferred
  deferred, spare = spare, list
  for i = 1, #list, 2 do
    list[i](list[i + 1])
  end
  for i = #list, 1, -1 do
    list[i] = nil
  end
end

-- What the task's coroutine did when it stopped: ok and what it raised
-- or yielded (its function's results are in task._results: see
-- create_task, so no call here takes a variable number of values). PARK
-- is checked first: it is the hot path (a task in a stream read).
local function stopped(task, ok, what, obj)
  if deferred[1] then
    run_deferred()
  end
  if what == PARK and ok then
    task._parked = obj
    if task._must_cancel then -- cancel() from inside, then it parked
      task._parked = nil
      task._cancel_woke = true
      task._loop:call_soon(step, task)
    end
  elseif not ok then
    task_failed(task, what)
  elseif coroutine.status(task._co) == "dead" then
    local r = task._results
    task._results = nil
    if task._must_cancel then -- cancel() from inside, then it returned
      Future.cancel(task, task._cancel_message)
    else
      Future.set_result(task, unpack(r, 1, r.n))
    end
  else
    if what == AWAIT and obj == task then -- raised where it awaits, in
      task._loop:call_soon(step, task, SELF) -- a step (a cancel first)
    elseif what == AWAIT and obj._loop ~= task._loop and obj._loop then
      task._loop:call_soon(step, task, OTHER) -- (a call of another loop's
      -- made here; a future of another kind has no _loop: awaited as is)
    elseif what == AWAIT then
      task._waiter = obj
      obj:add_done_callback(wakeup(task))
      if task._must_cancel and obj:cancel(task._cancel_message) then
        task._must_cancel = false
      end
    else
      -- A plain coroutine.yield in a task: nothing would ever resume it.
      -- Failed as an error is, with the traceback of the yield.
      task_failed(task, "tapio: a task yielded without awaiting "
        .. "a future (coroutine.yield inside a task; use tapio.sleep(0))")
    end
  end
end

-- Runs the task's coroutine until it awaits a future, parks or ends;
-- its wait ends with signal (nil but for SELF, OTHER: see stopped).
function step(task, signal)
  if task._state ~= "pending" then
    return
  end
  local co, value = task._co, signal
  if task._must_cancel then
    task._must_cancel, task._cancel_woke = false, false
    if not task._started then -- cancelled before it ever ran
      Future.cancel(task, task._cancel_message)
      return
    end
    value = CANCEL
  end
  task._waiter, task._parked = nil, nil
  if not task._started then
    task._started = true
    local args = task._args
    task._args = nil
    stopped(task, resume(co, unpack(args, 1, args.n)))
  else
    stopped(task, resume(co, value))
  end
end

-- Debug mode (loop:set_debug) names the task whose step made a callback
-- slow, as asyncio does. While a loop is in debug mode, or TAPIO_DEBUG is
-- set, every resume is timed and a step that took its loop's
-- slow_callback_duration or longer is noted; the callback's report
-- (lua/callback.c) takes the note. Otherwise resume is coroutine.resume
-- itself: a step pays nothing.
local slow_step = setmetatable({ start = 0 }, { __mode = "v" }) -- weak: a
-- note nobody takes must not keep its task (and its error) from the collector
local debug_loops = setmetatable({}, { __mode = "k" })
local debug_env = os.getenv("TAPIO_DEBUG")
debug_env = debug_env ~= nil and debug_env ~= "" and debug_env ~= "0"

local function noted(task, t0, ...)
  local on, limit = task._loop:get_debug()
  if on and monotonic() - t0 >= limit then
    slow_step.task, slow_step.start = task, t0
  end
  return ...
end

local function resume_timed(co, ...)
  local t0 = monotonic()
  return noted(tasks[co], t0, co_resume(co, ...))
end

local contexts_on = false -- C.state.on, as an upvalue for create_task

local function choose_resume()
  resume = (debug_env or next(debug_loops)) and resume_timed or co_resume
  contexts_on = C.state.on
  if contexts_on then -- context variables exist: steps in their contexts
    resume = C.resuming(resume)
  end
end

local function on_debug(loop, on)
  debug_loops[loop] = on or nil
  choose_resume()
end

local function slow_task(since)
  local task = slow_step.task
  slow_step.task = nil
  if task and slow_step.start >= since then
    return task, task:get_name()
  end
end

core._debug_hooks(on_debug, slow_task)
choose_resume()
C.hooks.on, C.hooks.after_step = choose_resume, M.defer
C.own[step] = true -- a step makes its task's context current itself

--- Resumes a task parked on obj (future.lua's park), there and then,
-- its park returning value (nil if not given); false if it no longer
-- waits there (cancelled meanwhile: cancel() clears _parked).
function M.unpark(task, obj, value)
  if task._parked ~= obj then
    return false
  end
  task._parked = nil
  local ok, what, on = resume(task._co, value)
  -- The hot path, a task that parks again (in its next read) with no
  -- work deferred and no cancel pending, is stopped's first case inline.
  if what == PARK and ok and not deferred[1] and not task._must_cancel then
    task._parked = on
  else
    stopped(task, ok, what, on)
  end
  return true
end

--- The same from the loop, soon: for the events that end something
-- (the end of a stream, a child's exit), so that the task sees the state
-- that follows the callback that woke it.
function M.unpark_soon(task, obj)
  if task._parked ~= obj then
    return false
  end
  task._parked = nil
  task._loop:call_soon(step, task)
  return true
end

-- The loops' task factories (loop:set_task_factory). create_task is
-- the one place tasks are made: tapio.Task and eager_task_factory reach
-- it past the factory by setting `making` ("lazy", or "eager": the first
-- step now). hooked is true while a factory was ever set or making is
-- set, and only then does create_task look: with no factory it pays that
-- one test (a Lua call more, to a function making the task for both,
-- would cost about 1% of a trivial task's making and running).
local factories = setmetatable({}, { __mode = "k" })
local any_factory, hooked, making = false, false, nil
local eager_task_factory -- tapio.eager_task_factory (below)
local call_soon = Loop.call_soon

-- An eager task's first step, where create_task would schedule it.
local function run_now(_, fn, task)
  fn(task)
end

-- What the loop's factory made; raises at create_task's caller.
local function from_factory(factory, loop, fn, ...)
  local task = factory(loop, fn, ...)
  if not is_future(task) then
    error("tapio: loop:create_task: the task factory returned "
      .. U.typename(task) .. " (a task expected)", 3)
  end
  return task
end

--- loop:create_task(fn, ...): runs fn(...) in a coroutine the loop
-- resumes; returns the task, a future of fn's results. With a task
-- factory set, factory(loop, fn, ...) makes it.
local function create_task(self, fn, ...)
  check_loop(self, "loop:create_task")
  check_callable(fn, "loop:create_task", 1, "fn")
  local start = call_soon -- the first step: scheduled, or run_now
  if hooked then
    local own, factory = making, factories[self]
    making, hooked = nil, any_factory
    if own then
      start = own == "eager" and run_now or call_soon
    elseif factory == eager_task_factory then -- its task, made here
      start = self:is_running() and run_now or call_soon
    elseif factory then
      local task = from_factory(factory, self, fn, ...)
      return task -- (no tail call: the error's level)
    end
  end
  local task = new_future(self, Task)
  task._args = pack(...)
  task._must_cancel = false -- present: unpark reads it per wake-up
  task._cancel_woke = false -- the step scheduled is the cancel's own
  task._cancels = 0 -- cancel requests not taken back (cancelling())
  task_count = task_count + 1
  task._number = task_count -- the name is made when asked for
  if contexts_on then -- else made when asked for (all empty until then)
    task._context = C.capture()
  end
  task._co = coroutine.create(function(...)
    task._results = pack(fn(...))
  end)
  tasks[task._co] = task
  if sentinel then -- LuaJIT
    task._sentinel = sentinel(task)
  end
  local set = all_tasks[self]
  if not set then
    set = setmetatable({}, { __mode = "k" })
    all_tasks[self] = set
  end
  set[task] = true
  start(self, step, task)
  return task
end
Loop.create_task = create_task

--- Requests cancellation: the task gets a cancellation error where it
-- waits (which it may catch). False if the task is done.
function Task:cancel(message)
  if self._state ~= "pending" then
    retrieved(self) -- as Future:cancel
    return false
  end
  self._cancels = self._cancels + 1
  if self._waiter and self._waiter:cancel(message) then
    return true
  end
  self._must_cancel = true
  if not self._cancel_woke then -- the message of the cancel that ended
    self._cancel_message = message -- the wait, else the last one's
  end -- (asyncio's: the waiter's cancellation, else _cancel_message)
  local parked = self._parked
  if parked then -- nothing else would resume it
    self._parked = nil
    self._cancel_woke = true
    self._loop:call_soon(step, self)
    if parked._on_cancel then -- what it waits on goes now (a job queued)
      parked._on_cancel(parked)
    end
  end
  return true
end

--- The number of cancel requests made and not taken back (asyncio's
-- cancelling()): tapio.timeout and wait_for tell their own by it.
function Task:cancelling()
  return self._cancels
end

--- Takes one cancel request back (asyncio's uncancel(), for code that
-- turns its own cancellation into something else); returns the count
-- left. A cancellation already thrown into the task is not stopped. One
-- not yet delivered is dropped when no request is left (asyncio 3.13,
-- gh-116720: a TaskGroup's re-cancel inside a tapio.timeout that takes
-- its own back): one the running task asked of itself, or one held for
-- a task not yet started or whose wait has ended (its wake-up is
-- scheduled). Not one that woke a task from its wait (cancelled a
-- future it awaited, or ended its park): that wake-up must deliver.
function Task:uncancel()
  if self._cancels > 0 then
    self._cancels = self._cancels - 1
    if self._cancels == 0 and not self._cancel_woke then
      self._must_cancel = false
    end
  end
  return self._cancels
end

--- The task's name: what set_name gave it, else "Task-N" (N counts the
-- tasks made in this Lua state, as asyncio's names do per process).
function Task:get_name()
  local name = self._name
  if name == nil then
    return "Task-" .. self._number
  end
  return name
end

--- Names the task (tostring of any value, as asyncio's str()); returns
-- the task, so that `loop:create_task(fn):set_name("worker")` reads as
-- asyncio's create_task(coro, name=...).
function Task:set_name(name)
  self._name = tostring(name)
  return self
end

--- The task's context (tapio.context): a copy of the current one when
-- the task was made, where its steps run.
function Task:get_context()
  return C.of_task(self)
end

function Task:get_coro()
  return self._co
end

--- The traceback of the error the task failed with, if it failed.
function Task:get_traceback()
  return self._traceback
end

-- ---- A task's stack ------------------------------------------------------

-- Frames of tapio's own Lua modules (their sources share task.lua's
-- directory) are left out of a stack, as C functions are.
local OWN = debug.getinfo(1, "S").source:match("^(.*[/\\])") or "\0"

local function own(info)
  return info.what == "C" or info.source:sub(1, #OWN) == OWN
end

-- A frame, as get_stack gives it: source (the chunk's file, or its
-- name), line (the line running, or raising), name (the function's, as
-- Lua knows it from its call: its caller's name for it). A function
-- tapio called (a task's own) or one Lua has no name for is named as
-- Lua's tracebacks name it: "function <source:line where defined>".
local function frame(info, caller)
  local source = info.source
  local name = info.name
  if info.what == "main" then
    name = "main chunk"
  elseif not name or not caller or own(caller) then
    name = ("function <%s:%d>"):format(info.short_src, info.linedefined)
  end
  return { source = source:sub(1, 1) == "@" and source:sub(2)
    or info.short_src, line = info.currentline, name = name }
end

-- The Lua frames of co's stack, innermost first, up to limit (nil: all).
local function frames_of(co, limit)
  local list, level = {}, 0
  local info = debug.getinfo(co, 0, "Sln")
  while info and (not limit or #list < limit) do
    local caller = debug.getinfo(co, level + 1, "Sln")
    if not own(info) then
      list[#list + 1] = frame(info, caller)
    end
    level, info = level + 1, caller
  end
  return list
end

local function reversed(list)
  local n = #list
  for i = 1, math.floor(n / 2) do
    list[i], list[n + 1 - i] = list[n + 1 - i], list[i]
  end
  return list
end

local function check_limit(opts, name)
  if opts ~= nil and type(opts) ~= "table" then
    U.argerror(name, 1, "options", "table expected, got "
      .. U.typename(opts), 4)
  end
  local limit = opts and opts.limit
  if limit ~= nil and type(limit) ~= "number" then
    U.argerror(name, 1, "options.limit", "number expected, got "
      .. U.typename(limit), 4)
  end
  return limit
end

-- The stack: a waiting task's where it waits (its newest limit frames),
-- a failed one's where it raised (its oldest limit frames: the error
-- left its coroutine's stack as it was), oldest first; else none.
local function stack(task, limit)
  if limit and limit <= 0 then
    return {}
  elseif task._state == "pending" then
    return reversed(frames_of(task._co, limit))
  elseif task._state == "failed" then
    local all = reversed(frames_of(task._co))
    for i = #all, (limit or #all) + 1, -1 do
      all[i] = nil
    end
    return all
  end
  return {}
end

--- task:get_stack([{limit = n}]): the task's frames (see frame above),
-- oldest first: where a waiting task waits, or the running one runs
-- (the newest n), where a failed one raised (the oldest n); none for a
-- task done otherwise or not started (asyncio's get_stack, with every
-- frame of the coroutine: asyncio gives a waiting task's outermost only).
function Task:get_stack(opts)
  check_self(self, Task, "task:get_stack")
  return stack(self, check_limit(opts, "task:get_stack"))
end

-- The text of line n of file path, trimmed; nil if not readable.
local function source_line(path, n)
  local file = n and n > 0 and io.open(path)
  if not file then
    return nil
  end
  local i, text = 0, nil
  for line in file:lines() do
    i = i + 1
    if i == n then
      text = line:match("^%s*(.-)%s*$")
      break
    end
  end
  file:close()
  return text
end

-- Whether f has a write method (indexing a userdata without __index
-- raises, hence the pcall).
local function has_write(f)
  if type(f) ~= "userdata" and type(f) ~= "table" then
    return false
  end
  local ok, write = pcall(function() return f.write end)
  return ok and write ~= nil
end

-- Where a pending task waits: "file:line in name" of its newest frame
-- outside tapio, or "before its first step".
local function waits_at(task)
  if not task._started then
    return "before its first step"
  end
  local f = frames_of(task._co, 1)[1]
  if not f then
    return "in tapio"
  end
  return ("at %s:%d in %s"):format(f.source, f.line, f.name)
end

-- The sentinel's finalizer: a task collected while pending. It is
-- dropped from all_tasks at once (a weak key of a collected object stays
-- there until the next collection in 5.4) and reported once.
function destroyed(task)
  if getmetatable(task) ~= Task or task._state ~= "pending" then
    return -- it ended (or it is the prototype's environment: LuaJIT)
  end
  local loop = task._loop
  local set = all_tasks[loop]
  if set then
    set[task] = nil
  end
  if task._not_reported then
    return
  end
  local message = ("task was destroyed but it is pending! (task '%s', "
    .. "waiting %s)"):format(task:get_name(), waits_at(task))
  F.to_handler(loop, { message = message, task = task,
                       traceback = debug.traceback(task._co, message) })
end

--- Marks a pending task whose end was told otherwise: it is not
-- reported when it is collected (tapio.fake's child that the loop's close
-- killed: a real child process is no task; a task testing.run's failure
-- names as not ended when cancelled).
function M.not_reported(task)
  task._not_reported = true
end

--- task:print_stack([{limit = n, file = f}]): get_stack's frames
-- written to f (io.stderr if not given; anything with a write method)
-- as asyncio's print_stack writes them, each with its source line when
-- its file can be read; a failed task's error last.
function Task:print_stack(opts)
  check_self(self, Task, "task:print_stack")
  local frames = stack(self, check_limit(opts, "task:print_stack"))
  local file = opts and opts.file or io.stderr
  if not has_write(file) then
    U.argerror("task:print_stack", 1, "options.file", "file expected, got "
      .. U.typename(file), 3)
  end
  local failed = self._state == "failed"
  local lines = { ("%s for %s%s"):format(#frames == 0 and "No stack"
    or failed and "Traceback" or "Stack", tostring(self),
    #frames == 0 and "" or " (most recent call last):") }
  for _, f in ipairs(frames) do
    lines[#lines + 1] = ('  File "%s", line %d, in %s'):format(f.source,
      f.line, f.name)
    local text = source_line(f.source, f.line)
    if text then
      lines[#lines + 1] = "    " .. text
    end
  end
  if failed then
    lines[#lines + 1] = safe_tostring(self._exception)
  end
  file:write(table.concat(lines, "\n"), "\n")
end

--- Reports the errors nobody retrieved of the loop's failed tasks (but
-- `except`), in the order the tasks were made (for testing.run).
function M.report_unretrieved(loop, except)
  local failed = {}
  for task in pairs(all_tasks[loop] or {}) do
    if task ~= except and task._unretrieved then
      failed[#failed + 1] = task
    end
  end
  table.sort(failed, function(a, b) return a._number < b._number end)
  for _, task in ipairs(failed) do
    F.report_unretrieved(task)
  end
end

function api.all_tasks(loop)
  loop = loop or U.running_loop("all_tasks")
  local list = {}
  for task in pairs(all_tasks[loop] or {}) do
    if not task:done() then
      list[#list + 1] = task
    end
  end
  return list
end

-- ---- Task factories and eager tasks --------------------------------------

--- loop:set_task_factory(factory): from now on every task the loop makes
-- (loop:create_task, so tapio.create_task, tg:create_task, a server's
-- client tasks, ...) is factory(loop, fn, ...)'s, a task that tapio.Task
-- or tapio.eager_task_factory made; nil: the default again.
function Loop:set_task_factory(factory)
  check_self(self, U.loop_mt, "loop:set_task_factory")
  if factory ~= nil then
    check_callable(factory, "loop:set_task_factory", 1, "factory")
  end
  factories[self] = factory
  any_factory = any_factory or factory ~= nil
  hooked = hooked or any_factory
end

--- The factory set_task_factory set, or nil (the default).
function Loop:get_task_factory()
  check_self(self, U.loop_mt, "loop:get_task_factory")
  return factories[self]
end

-- A task of fn(...) on loop made as create_task makes it with no
-- factory, its first step scheduled, or (how == "eager", the loop
-- running) run now; the arguments checked at the caller of the function
-- name, which calls this (not as a tail call: the errors' level).
local function own_task(name, how, loop, fn, ...)
  if getmetatable(loop) ~= U.loop_mt then
    U.argerror(name, 1, "loop", "tapio.loop expected, got "
      .. U.typename(loop))
  elseif loop:is_closed() then
    error(("tapio: %s: the loop is closed"):format(name), 3)
  end
  check_callable(fn, name, 2, "fn", 4)
  if how == "eager" and not loop:is_running() then
    how = "lazy" -- the step must run where the loop runs, as in asyncio
  end
  making, hooked = how, true -- (create_task takes them at once)
  return create_task(loop, fn, ...)
end

--- tapio.Task(loop, fn, ...): a task of fn(...) on loop, scheduled as
-- loop:create_task schedules it with no factory (asyncio's Task(coro,
-- loop=loop)): what a factory of its own calls.
-- While a factory of create_eager_task_factory calls its constructor:
-- the next tapio.Task starts eagerly (asyncio's eager_start=True, which
-- that factory passes its constructor).
local eager_next = false

getmetatable(Task).__call = function(_, loop, fn, ...)
  local how = eager_next and "eager" or "lazy"
  eager_next = false
  local task = own_task("Task", how, loop, fn, ...)
  return task
end

--- tapio.eager_task_factory(loop, fn, ...): a task whose first step runs
-- now, in the caller's stead, up to where fn first waits (asyncio's
-- eager_start): fn that never waits is done when this returns, its done
-- callbacks scheduled; its error or cancellation is the task's, never
-- raised here. A loop not running schedules the task as create_task does.
-- A factory for loop:set_task_factory, or called as it is for one eager
-- task.
function eager_task_factory(loop, fn, ...)
  local task = own_task("eager_task_factory", "eager", loop, fn, ...)
  return task
end
api.eager_task_factory = eager_task_factory

local function made_by(task, ok, ...)
  eager_next = false
  if not ok then
    error(task, 0)
  end
  return task, ...
end

--- tapio.create_eager_task_factory(custom_task_constructor): a factory
-- for loop:set_task_factory that calls custom_task_constructor(loop, fn,
-- ...) (what tapio.Task receives), the tapio.Task it calls starting
-- eagerly as eager_task_factory's tasks do (asyncio's eager_start=True).
-- create_eager_task_factory(tapio.Task) makes what eager_task_factory
-- makes.
function api.create_eager_task_factory(custom_task_constructor)
  check_callable(custom_task_constructor, "create_eager_task_factory", 1,
    "custom_task_constructor")
  return function(loop, fn, ...)
    eager_next = true
    local ok, task = pcall(custom_task_constructor, loop, fn, ...)
    return (made_by(task, ok))
  end
end

-- ---- The running loop, sleep ---------------------------------------------

function api.get_running_loop()
  local loop = U.running_loop("get_running_loop") -- no tail call: the
  return loop -- error's position is the caller's, two levels up
end

function api.create_task(fn, ...)
  return U.running_loop("create_task"):create_task(fn, ...)
end

--- tapio.sleep(seconds, ...): returns ... after seconds (the async rule:
-- a future outside a task).
function api.sleep(delay, ...)
  if type(delay) ~= "number" or delay ~= delay then
    error("tapio: sleep: bad argument #1 'delay' (number expected, got "
      .. U.typename(delay) .. ")", 2)
  end
  local loop = U.running_loop("sleep")
  local fut = loop:create_future()
  local results = pack(...)
  local handle = loop:call_later(delay, function()
    if not fut:done() then
      fut:set_result(unpack(results, 1, results.n))
    end
  end)
  fut:add_done_callback(function()
    handle:cancel() -- a cancelled sleep leaves no timer behind
  end)
  return resolve(fut)
end

-- ---- Running -------------------------------------------------------------

--- loop:run_until_complete(future or fn, ...): runs the loop until the
-- future (or a task made of fn) is done; returns its results or raises.
function Loop:run_until_complete(fut, ...)
  check_loop(self, "loop:run_until_complete")
  local running = core.get_running_loop()
  if running then -- checked first: a function must not become a task
    error("tapio: loop:run_until_complete: " .. (running == self
      and "the loop is already running"
      or "another loop is running on this thread (loops do not nest)"), 2)
  end
  if type(fut) == "function" then
    fut = self:create_task(fut, ...)
  elseif not is_future(fut) then
    error("tapio: loop:run_until_complete: bad argument #1 'future' "
      .. "(future or function expected, got " .. type(fut) .. ")", 2)
  elseif type(fut.get_loop) == "function" and fut:get_loop() ~= self then
    error("tapio: loop:run_until_complete: the future belongs to another "
      .. "loop", 2)
  end
  if not fut:done() then
    local loop = self
    local function stop()
      loop:stop()
    end
    fut:add_done_callback(stop)
    local ok, err = pcall(self.run_forever, self)
    fut:remove_done_callback(stop)
    if not ok then
      error(err, 0)
    end
    if not fut:done() then
      error("tapio: loop:run_until_complete: the loop stopped before the "
        .. "future completed", 2)
    end
  end
  return fut:result()
end

return M
