--- tapio.future (internal): futures, and the async rule every operation
-- that completes later follows (see lua/README.md):
--
--   Called inside a task, an operation that completes later suspends the
--   task and returns its results, or raises its error. Called anywhere
--   else (a protocol method, a call_soon callback, the main chunk), it
--   returns a future; add_done_callback on it, or hand it to
--   loop:run_until_complete.
local core = require "tapio.core"
local U = require "tapio.util"

local M = { api = {} } -- api: what `tapio` holds too (see tapio.util)
local pack, unpack = U.pack, U.unpack
local check_self, check_callable = U.check_self, U.check_callable
local cancelled_error = U.api.cancelled_error
local Loop = core.loop_methods

-- ---- Tasks: which coroutine is one ---------------------------------------

-- coroutine -> task; weak both ways, as 5.1 has no ephemerons (the task
-- holds its coroutine).
local tasks = setmetatable({}, { __mode = "kv" })

local function current_task()
  local co = coroutine.running()
  return co and tasks[co] or nil
end
M.api.current_task = current_task

-- A task's coroutine yields AWAIT and a future; the task resumes it with
-- CANCEL when the task is cancelled while the future could not be, SELF
-- when the future is the task itself, OTHER when it is another loop's
-- (nothing would end those waits). It
-- yields PARK and an object to wait until tapio.task's unpark(task, obj)
-- resumes it directly (see park below).
local AWAIT, CANCEL, PARK, SELF, OTHER = {}, {}, {}, {}, {}

local cancelled -- (below)

-- A cancel that could not cancel fut raises the task's cancel message;
-- fut cancelled meanwhile (by an earlier cancel), its own (asyncio's).
local function await(fut)
  if not fut:done() then
    local signal = coroutine.yield(AWAIT, fut)
    if signal == CANCEL and not fut:cancelled() then
      cancelled()
    elseif signal == SELF then -- asyncio's "Task cannot await on itself"
      error(("tapio: await: a task cannot await itself (%s)")
        :format(tostring(fut)), 0)
    elseif signal == OTHER then -- an operation of another loop's
      error(("tapio: await: %s belongs to another loop than the task's "
        .. "(nothing of this loop would complete it)"):format(
        tostring(fut)), 0)
    end
  end
  return fut:result()
end

-- The async rule.
local function resolve(fut)
  if current_task() then
    return await(fut)
  end
  return fut
end

-- Parks the running task on obj until unpark(task, obj) (tapio.task)
-- resumes it, directly from whatever event unparks it: no future, no
-- scheduled call, one coroutine switch. For waits that are most of a
-- task's life (a stream read, drain): the waker keeps the task and
-- checks task._parked == obj. A cancelled park raises the cancellation.
-- (A hot path may inline it: `if yield(PARK, obj) == CANCEL then
-- cancelled() end`.)
function cancelled()
  local task = current_task()
  local message = task._cancel_message
  task._cancel_message = nil
  error(cancelled_error(message), 0)
end

local function park(obj)
  if coroutine.yield(PARK, obj) == CANCEL then
    cancelled()
  end
end

-- The hot methods of streams (read, readline, drain) check their self and
-- that a task runs them with one lookup, in a set of the objects made
-- (owners(): weak both ways) that holds for each the task that last ran
-- one of them (NOBODY at first): set[self]._co == coroutine.running()
-- proves both. Otherwise the method checks self, and bind looks the task
-- up and keeps it (a lookup in tasks costs about three field reads).
local NOBODY = { _co = false }

local function owners()
  return setmetatable({}, { __mode = "kv" })
end

--- The running task (nil outside one), now set[obj]'s; fn (a method of
-- obj) is refused at its caller when obj is another loop's than the
-- task's: nothing of the task's loop would wake a wait on it, and
-- future:await refuses another loop's future so (level: where, 3 unless
-- given: the caller of bind's caller). Here, where a task takes obj over,
-- the check costs the methods' usual case nothing.
local function bind(set, obj, co, fn, level)
  local task = tasks[co]
  if task then
    local loop = obj._loop
    if loop and loop ~= task._loop then
      error(("tapio: %s: the %s belongs to another loop than the task's")
        :format(fn, fn:match("^%a+")), level or 3)
    end
    set[obj] = task
  end
  return task
end

-- The async rule for the methods written in Lua (of readers, writers,
-- processes, locks, queues): in a task, fn(obj, a, b) runs now (and may
-- suspend the task); elsewhere it runs as a task of its own, on obj's
-- loop or the running one, and that task (a future) is returned.
local running = coroutine.running

local function async(obj, name, fn, a, b)
  local co = running()
  if co and tasks[co] then
    return fn(obj, a, b)
  end
  local loop = obj._loop or core.get_running_loop()
  if not loop then
    error(("tapio: %s: not in a task, and no loop to make one on")
      :format(name), 3)
  end
  return loop:create_task(fn, obj, a, b)
end
M.async = async

M.tasks, M.AWAIT, M.CANCEL, M.PARK = tasks, AWAIT, CANCEL, PARK
M.SELF, M.OTHER = SELF, OTHER
M.NOBODY, M.owners, M.bind = NOBODY, owners, bind
M.await, M.resolve, M.park, M.cancelled = await, resolve, park, cancelled

-- ---- Futures -------------------------------------------------------------

local Future = {}
Future.__index = Future
M.Future = Future

local function new_future(loop, mt)
  return setmetatable({ _loop = loop, _state = "pending", _callbacks = {} },
    mt or Future)
end

function Loop:create_future()
  check_self(self, U.loop_mt, "loop:create_future")
  return new_future(self)
end

local function is_future(v)
  return type(v) == "table" and type(v.add_done_callback) == "function"
    and type(v.done) == "function"
end
M.api.is_future = is_future
M.new_future = new_future

-- Context variables (tapio.context, which requires this module): on once
-- one exists (an upvalue: the paths below test it per future); then a
-- callback added to a pending future has the context current then at its
-- place in fut._contexts, and runs there.
local contexts_on = false
local context = { state = { on = false } }
M.context = context
function context.turn_on()
  contexts_on = true
end
local call_soon = Loop.call_soon -- the binding's: captures no context

-- Done callbacks run from the loop, never from inside set_result.
local function schedule_callbacks(fut)
  local cbs = fut._callbacks
  fut._callbacks = {}
  local contexts = contexts_on and fut._contexts
  if contexts then
    fut._contexts = nil
    for i = 1, #cbs do
      context.schedule(fut, cbs[i], contexts[i])
    end
    return
  end
  for i = 1, #cbs do
    call_soon(fut._loop, cbs[i], fut)
  end
end

local function not_pending(fut, fn)
  if fut._state ~= "pending" then
    error(("tapio: %s: the future is already done"):format(fn), 3)
  end
end

function Future:done()
  return self._state ~= "pending"
end

function Future:cancelled()
  return self._state == "cancelled"
end

function Future:get_loop()
  return self._loop
end

-- ---- "exception was never retrieved" (asyncio's __log_traceback) ----------
--
-- A failed future holds a sentinel (fut._unretrieved) until result(),
-- exception() or cancel() retrieves the error; collected with the future
-- before that, the sentinel reports the error to the exception handler.
-- Only a failure pays for it: a future given a result holds none.

local function gc_hook(fn)
  if newproxy then -- LuaJIT / 5.1: tables have no __gc
    local p = newproxy(true)
    getmetatable(p).__gc = fn
    return p
  end
  return setmetatable({}, { __gc = fn })
end

-- What the report calls the future: "task" for tapio.task's tasks.
Future._kind = "future"

--- Gives context to loop's exception handler from a finalizer (a closed
-- loop keeps its handler, as asyncio's); never raises.
local function to_handler(loop, context)
  pcall(Loop.call_exception_handler, loop, context)
end
M.to_handler = to_handler

local function report(fut)
  local kind = fut._kind
  to_handler(fut._loop, { message = kind .. " exception was never retrieved",
                          exception = fut._exception,
                          traceback = fut._traceback, future = fut,
                          task = kind == "task" and fut or nil })
end

local function watch(fut)
  fut._unretrieved = gc_hook(function()
    if fut._unretrieved then
      report(fut)
    end
  end)
end

local function retrieved(fut)
  if fut._unretrieved then -- a read: most futures never failed
    fut._unretrieved = nil
  end
end
M.retrieved = retrieved

--- Reports a failed future's error now if nobody retrieved it, as its
-- collection would (testing.run's end: Lua may collect it much later).
function M.report_unretrieved(fut)
  if fut._unretrieved then
    fut._unretrieved = nil
    report(fut)
  end
end

--- Cancels a pending future; returns false if it was done already.
function Future:cancel(message)
  if self._state ~= "pending" then
    retrieved(self) -- asyncio's cancel() too: the caller has given it up
    return false
  end
  self._state = "cancelled"
  self._cancel_message = message
  local hook = self._cancel_hook -- what was under way stops at once
  if hook then
    self._cancel_hook = nil
    hook()
  end
  schedule_callbacks(self)
  return true
end

function Future:set_result(...)
  not_pending(self, "future:set_result")
  self._result = pack(...)
  self._state = "finished"
  schedule_callbacks(self)
end

function Future:set_exception(err)
  not_pending(self, "future:set_exception")
  if err == nil then
    error("tapio: future:set_exception: bad argument #1 'exception' "
      .. "(an error value expected, got nil)", 2)
  end
  self._exception = err
  self._state = "failed"
  watch(self)
  schedule_callbacks(self)
end

--- The results (several values are several results), or raises the error;
-- raises a cancellation error if cancelled.
function Future:result()
  local state = self._state
  if state == "finished" then
    return unpack(self._result, 1, self._result.n)
  elseif state == "failed" then
    retrieved(self)
    error(self._exception, 0)
  elseif state == "cancelled" then
    error(cancelled_error(self._cancel_message), 0)
  end
  error("tapio: future:result: the result is not ready", 2)
end

function Future:exception()
  local state = self._state
  if state == "cancelled" then
    error(cancelled_error(self._cancel_message), 0)
  elseif state == "pending" then
    error("tapio: future:exception: the exception is not set", 2)
  end
  retrieved(self)
  return self._exception
end

--- fn(future) once done (from the loop, also when done already).
function Future:add_done_callback(fn)
  check_callable(fn, "future:add_done_callback", 1, "fn")
  if self._state ~= "pending" then
    self._loop:call_soon(fn, self)
  else
    local n = #self._callbacks + 1
    self._callbacks[n] = fn
    if contexts_on then
      context.note(self, n)
    end
  end
end

function Future:remove_done_callback(fn)
  local kept, removed = {}, 0
  local contexts = self._contexts
  local kept_contexts = contexts and {}
  for i, cb in ipairs(self._callbacks) do
    if rawequal(cb, fn) then
      removed = removed + 1
    else
      kept[#kept + 1] = cb
      if contexts then
        kept_contexts[#kept] = contexts[i]
      end
    end
  end
  self._callbacks, self._contexts = kept, kept_contexts
  return removed
end

--- Waits for the future inside a task: returns its results or raises.
-- A future of another loop raises at once (asyncio too): nothing of this
-- loop would complete it.
function Future:await()
  local task = current_task()
  if not task then
    error("tapio: future:await: not inside a task (use add_done_callback, "
      .. "or loop:run_until_complete)", 2)
  end
  if self._loop ~= task._loop then
    error("tapio: future:await: the future belongs to another loop than "
      .. "the task's", 2)
  end
  return await(self)
end

function Future:__tostring()
  return ("tapio.Future (%s)"):format(self._state)
end

--- tapio.await(future): future:await().
function M.api.await(fut)
  if not is_future(fut) then
    error("tapio: await: bad argument #1 'future' (future expected, got "
      .. type(fut) .. ")", 2)
  end
  return fut:await()
end

return M
