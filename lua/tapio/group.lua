--- tapio.group (internal): asyncio's TaskGroup, as a function around a
-- body (Lua has no `async with`): tapio.TaskGroup(fn, ...) runs
-- fn(tg, ...) in the calling task, and returns once fn and every task
-- made by tg:create_task have finished.
--
-- The first child to fail with an error cancels the others and the body
-- (the calling task, where it waits: its own cancel request, taken back
-- with uncancel at the end, so that a request from outside is told
-- apart, as tapio.timeout tells its own); the group then raises one
-- ExceptionGroup error value holding every error. A cancellation from
-- outside cancels the children, waits for them, and goes on as a
-- cancellation; a cancellation that meets errors leaves the task
-- cancelled (cpython gh-116720) while the errors are raised.
local core = require "tapio.core"
local U = require "tapio.util"
local F = require "tapio.future"
local W = require "tapio.wait"
local CX = require "tapio.context"

local M = { api = {} } -- api: what `tapio` holds too (see tapio.util)
local api = M.api
local pack, unpack = U.pack, U.unpack
local is_cancelled, check_callable = U.api.is_cancelled, U.check_callable
local current_task, await = F.api.current_task, F.await

local TaskGroup, check_group = U.class("tapio.TaskGroup")
M.TaskGroup = TaskGroup

--- The error a group raises: name "ExceptionGroup", code ECALLBACK (the
-- tasks' functions raised), exceptions the list of the errors (the
-- children's in the order they failed, then the body's), and a message
-- that shows each.
local function exception_group(errors)
  local shown = {}
  for i, err in ipairs(errors) do
    shown[i] = ("[%d] %s"):format(i, U.safe_tostring(err))
  end
  return U.named_error(core.errors.ECALLBACK, "ExceptionGroup",
    ("unhandled errors in a TaskGroup (%d sub-error%s): %s"):format(#errors,
      #errors == 1 and "" or "s", table.concat(shown, "; ")),
    { exceptions = errors })
end

-- Cancels every child not done, in the order they were made.
local function abort(tg)
  tg._aborting = true
  local list = {}
  for task, n in pairs(tg._tasks) do
    list[#list + 1] = { n, task }
  end
  table.sort(list, function(a, b) return a[1] < b[1] end)
  for _, item in ipairs(list) do
    item[2]:cancel()
  end
end

-- A child has finished: its error, looked at (so it is never reported as
-- not retrieved), joins the group's; the first one aborts the group.
local function child_done(tg, task)
  tg._tasks[task] = nil
  tg._left = tg._left - 1
  if tg._left == 0 and tg._waiter and not tg._waiter:done() then
    tg._waiter:set_result()
  end
  if task:cancelled() then
    return
  end
  local err = task:exception()
  if err == nil then
    return
  end
  tg._errors[#tg._errors + 1] = err
  if not tg._aborting and not tg._parent_cancel_requested then
    abort(tg)
    tg._parent_cancel_requested = true
    tg._parent:cancel()
  end
end

-- Raises at the caller of the method name when tg takes no more tasks.
local function check_open(tg, name)
  if tg._exiting and tg._left == 0 then
    error(("tapio: %s: the TaskGroup is finished"):format(name), 3)
  elseif tg._aborting then
    error(("tapio: %s: the TaskGroup is shutting down"):format(name), 3)
  end
end

-- The group's task now: counted, and its end watched; one that ended
-- inside create_task (an eager task) is taken at once, as asyncio 3.13
-- does: its error shuts the group down before the caller goes on.
local function adopt(self, task)
  self._made = self._made + 1
  self._tasks[task] = self._made
  self._left = self._left + 1
  if task:done() then
    child_done(self, task)
  else
    task:add_done_callback(self._on_done)
  end
  return task
end

--- tg:create_task(fn, ...): a task of fn(...) in the group; an error once
-- the group shuts down (a child failed, the body raised, the task was
-- cancelled) or has finished.
function TaskGroup:create_task(fn, ...)
  check_group(self, "taskgroup:create_task")
  check_callable(fn, "taskgroup:create_task", 1, "fn")
  check_open(self, "taskgroup:create_task")
  return adopt(self, self._parent._loop:create_task(fn, ...))
end

--- tg:create_task_in(ctx, fn, ...): create_task with ctx itself as the
-- task's context (asyncio's tg.create_task(coro, context=ctx)).
function TaskGroup:create_task_in(ctx, fn, ...)
  check_group(self, "taskgroup:create_task_in")
  CX.check_given(ctx, "taskgroup:create_task_in")
  check_callable(fn, "taskgroup:create_task_in", 2, "fn")
  check_open(self, "taskgroup:create_task_in")
  return adopt(self, self._parent._loop:create_task_in(ctx, fn, ...))
end

function TaskGroup:__tostring()
  return ("tapio.TaskGroup (%d task%s left%s)"):format(self._left,
    self._left == 1 and "" or "s", self._aborting and ", shutting down"
    or "")
end

-- Waits until every child has finished. A cancellation that comes
-- meanwhile, not of the group's making, aborts the group and is what it
-- raises then (unless errors come first); returned.
local function wait_children(tg, propagate)
  while tg._left > 0 do
    tg._waiter = tg._parent._loop:create_future()
    local ok, err = pcall(await, tg._waiter)
    tg._waiter = nil
    if not ok and not tg._aborting then
      propagate = err
      abort(tg)
    end
  end
  return propagate
end

-- The body has ended (r: pcall's results): asyncio's __aexit__.
local function finish(tg, r)
  tg._exiting = true
  local propagate, body_err
  if not r[1] then
    if is_cancelled(r[2]) then
      propagate = r[2]
    else
      body_err = r[2]
    end
    if not tg._aborting then
      abort(tg)
    end
  end
  propagate = wait_children(tg, propagate)
  local parent, errors = tg._parent, tg._errors
  if tg._parent_cancel_requested and parent:uncancel() == 0 then
    propagate = nil -- the group's own cancellation: over
  end
  if propagate and #errors == 0 then
    error(propagate, 0)
  end
  errors[#errors + 1] = body_err
  if #errors > 0 then
    -- Cancelled from outside too: the request stays, and is delivered
    -- where the task waits next (asyncio 3.13, gh-116720).
    if parent:cancelling() > 0 then
      parent:uncancel()
      parent:cancel()
    end
    error(exception_group(errors), 0)
  end
  return unpack(r, 2, r.n)
end

local function run(task, fn, ...)
  local tg = setmetatable({ _parent = task, _tasks = {}, _made = 0,
    _left = 0, _errors = {}, _exiting = false, _aborting = false,
    _parent_cancel_requested = false }, TaskGroup)
  tg._on_done = function(child)
    child_done(tg, child)
  end
  return finish(tg, pack(pcall(fn, tg, ...)))
end

--- tapio.TaskGroup(fn, ...) (also tapio.task_group): fn(tg, ...)'s
-- results, run in the calling task, once every task of tg:create_task has
-- finished; or the ExceptionGroup of their errors and fn's, or the
-- cancellation that came from outside. Outside a task: a task of it.
function api.TaskGroup(fn, ...)
  check_callable(fn, "TaskGroup", 1, "fn")
  local task = current_task()
  if task then
    return run(task, fn, ...)
  end
  local args = pack(...)
  return W.loop_for("TaskGroup"):create_task(function()
    return run(current_task(), fn, unpack(args, 1, args.n))
  end)
end
api.task_group = api.TaskGroup

return M
