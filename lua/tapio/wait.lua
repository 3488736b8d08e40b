--- tapio.wait (internal): deadlines and groups of futures, asyncio's
-- wait_for, timeout, gather and shield, under the async rule (inside a
-- task they suspend it; elsewhere they return a future).
--
-- A deadline cancels the task that waits, as asyncio.timeout does, and
-- turns that cancellation into a timeout error where the deadline was set.
-- Whose cancellation it was is told by the task's count of cancel
-- requests (task:cancelling(), asyncio's): a deadline that expired takes
-- its own request back (uncancel) and raises a timeout only when no other
-- request is left over what was there when it was set, so a task
-- cancelled from outside at the same moment stays cancelled, and of two
-- nested deadlines that expire together the outer one raises.
local core = require "tapio.core"
local U = require "tapio.util"
local F = require "tapio.future"

local M = { api = {} } -- api: what `tapio` holds too (see tapio.util)
local api = M.api
local pack, unpack = U.pack, U.unpack
local is_cancelled, check_callable = U.api.is_cancelled, U.check_callable
local is_future, current_task = F.api.is_future, F.api.current_task
local await, resolve = F.await, F.resolve
local ETIMEDOUT = core.errors.ETIMEDOUT

local argerror = U.argerror

-- Seconds, or nil (no deadline) where nil_ok.
local function check_delay(delay, fn, n, name, nil_ok)
  if delay == nil and nil_ok then
    return
  end
  if type(delay) ~= "number" or delay ~= delay then
    argerror(fn, n, name, "seconds expected, got " .. U.typename(delay))
  end
end

-- The loop to wait on: the running task's, the running one, or aw's (a
-- future's: from a main chunk that will run its loop).
local function loop_for(fn, aw)
  local task = current_task()
  local loop = task and task._loop or core.get_running_loop()
  if not loop and is_future(aw) and type(aw.get_loop) == "function" then
    loop = aw:get_loop()
  end
  if not loop then
    error(("tapio: %s: no running event loop (and no future to take "
      .. "one from)"):format(fn), 3)
  end
  return loop, task
end
M.loop_for = loop_for

-- What argument n (or its item) stands for: a function, a task of it on
-- loop; a future, itself, when it is loop's. An item (of a list) is
-- checked by as_futures, one call deeper than the api function.
local function as_future(loop, aw, fn, n, item)
  if type(aw) == "function" then
    return loop:create_task(aw)
  end
  local level = item and 5 or 4
  if not is_future(aw) then
    -- wait_for(reader:readline(), 5), as Python writes it, waited for the
    -- line already and hands over a string: say what to write instead.
    argerror(fn, n, item and "list" or "future", (item and "item " .. item
      .. ": " or "") .. "future or function expected, got "
      .. U.typename(aw) .. (current_task() and "; in a task a call "
      .. "waits at once: give a function that makes it" or ""), level)
  end
  if type(aw.get_loop) == "function" and aw:get_loop() ~= loop then
    error(("tapio: %s: the future belongs to another loop"):format(fn),
      level - 1)
  end
  return aw
end

-- The timeout error of name's deadline, delay seconds after it was set
-- (0 or less: it had passed then, asyncio's words being none).
local function timed_out(name, delay)
  local why = delay > 0 and ("timed out after %g s"):format(delay)
    or "timed out, the deadline had passed"
  return core.error(ETIMEDOUT, name .. ": " .. why)
end

-- Runs fn(...) in task with a deadline delay seconds from now: its
-- results, or a timeout error raised once the cancellation it makes has
-- come through fn. See the top of the file for whose cancellation it is.
--
-- aw: wait_for's future (nil for timeout). Finished, not cancelled,
-- though a cancellation came out of fn, it finished first, in the
-- instant the waiting task was cancelled (its wake-up still to run): its
-- outcome is returned. A cancellation of the deadline's own is taken
-- back; one from elsewhere is raised at the task's next wait (or ends
-- it cancelled if it waits no more). asyncio raises either at once and
-- drops the outcome (cpython gh-86296): a connection made then was
-- never closed.
local function deadline(task, name, delay, aw, fn, ...)
  if delay == nil and not aw then -- no deadline (asyncio's None)
    return fn(...)
  end
  local before, expired, handle = task._cancels, false, nil
  if delay ~= nil then
    handle = task._loop:call_later(delay, function()
      expired = true
      task:cancel()
    end)
  end
  local r = pack(pcall(fn, ...))
  if handle then
    handle:cancel()
  end
  local own = expired and task:uncancel() <= before
  if not r[1] and is_cancelled(r[2]) then
    if aw and aw:done() and not aw:cancelled() then
      if not own then -- raised at the next wait, as a cancel from inside
        task._must_cancel, task._cancel_message = true, r[2].message
      end
      return aw:result()
    elseif own then
      error(timed_out(name, delay), 0)
    end
  end
  if not r[1] then
    error(r[2], 0)
  end
  return unpack(r, 2, r.n)
end

-- Cancels fut and waits until it has finished (this wait alone being
-- cancellable, as asyncio's _cancel_and_wait).
local function cancel_and_wait(loop, fut)
  local waiter = loop:create_future()
  local function release()
    if not waiter:done() then
      waiter:set_result()
    end
  end
  fut:add_done_callback(release)
  fut:cancel()
  local ok, err = pcall(await, waiter)
  fut:remove_done_callback(release)
  if not ok then
    error(err, 0)
  end
end

-- A timeout of 0 or less cancels fut at once, as asyncio 3.12+ does (a
-- task not started never runs), then returns what it ended with, or
-- raises the timeout if it ended cancelled.
local function wait_for(fut, delay)
  local task = current_task()
  if delay == nil or delay > 0 then
    return deadline(task, "wait_for", delay, fut, await, fut)
  end
  if not fut:done() then
    cancel_and_wait(task._loop, fut)
    if fut:cancelled() then
      error(timed_out("wait_for", delay), 0)
    end
  end
  return fut:result()
end

--- tapio.wait_for(aw, timeout): aw's results (a future, or a function run
-- as a task), or, after timeout seconds (nil: none), aw cancelled and,
-- once its cancellation has finished, a timeout error (code ETIMEDOUT).
-- What aw returns even so (it caught the cancellation) is returned, as
-- is what it finished with in the instant the deadline expired or the
-- waiting task was cancelled (see deadline).
-- Cancelling the waiting task cancels aw.
function api.wait_for(aw, timeout)
  check_delay(timeout, "wait_for", 2, "timeout", true)
  local loop, task = loop_for("wait_for", aw)
  local fut = as_future(loop, aw, "wait_for", 1)
  if task then
    return wait_for(fut, timeout)
  end
  return loop:create_task(wait_for, fut, timeout)
end

-- deadline(task, ...) in the calling task, or outside a task in a task of
-- its own on loop (the async rule).
local function with_deadline(loop, task, ...)
  if task then
    return deadline(task, ...)
  end
  local args = pack(...)
  return loop:create_task(function()
    return deadline(current_task(), unpack(args, 1, args.n))
  end)
end

--- tapio.timeout(delay, fn, ...): fn(...)'s results, run in the task that
-- calls it, or a timeout error (code ETIMEDOUT) when it has not returned
-- after delay seconds (nil: no deadline): the task is cancelled where it
-- waits, and the cancellation that comes out of fn is the timeout
-- (asyncio.timeout).
function api.timeout(delay, fn, ...)
  check_delay(delay, "timeout", 1, "delay", true)
  check_callable(fn, "timeout", 2, "fn")
  local loop, task = loop_for("timeout")
  return with_deadline(loop, task, "timeout", delay, nil, fn, ...)
end

--- tapio.timeout_at(when, fn, ...): tapio.timeout with the deadline at
-- when on loop:time()'s clock (nil: none), asyncio.timeout_at.
function api.timeout_at(when, fn, ...)
  check_delay(when, "timeout_at", 1, "when", true)
  check_callable(fn, "timeout_at", 2, "fn")
  local loop, task = loop_for("timeout_at")
  return with_deadline(loop, task, "timeout_at", when and when - loop:time(),
    nil, fn, ...)
end

-- ---- gather --------------------------------------------------------------

local Gathering = setmetatable({}, { __index = F.Future })
Gathering.__index = Gathering
Gathering.__tostring = F.Future.__tostring

--- Cancelling a gather cancels every child not done; it ends cancelled
-- once they have all finished (asyncio's).
function Gathering:cancel(message)
  if self._state ~= "pending" then
    return false
  end
  local any = false
  for _, child in ipairs(self._children) do
    any = child:cancel(message) or any
  end
  if any then
    self._cancel_requested = true
    self._cancel_asked = message -- what it ends with (settle)
  end
  return any
end

-- A child's error, having looked at it (so none is reported as never
-- retrieved); a cancelled child's is a cancellation error.
local function child_error(child)
  if child:cancelled() then
    return select(2, pcall(child.result, child))
  end
  return child:exception()
end

-- Every child has finished: the list, or the gather cancelled if that
-- was asked (with the message it was asked with).
local function settle(outer, children)
  if outer._cancel_requested then
    F.Future.cancel(outer, outer._cancel_asked)
    return
  end
  local results = { n = #children }
  for i, child in ipairs(children) do
    local err = child_error(child)
    if err ~= nil then
      results[i] = err
    else
      results[i] = (child:result())
    end
  end
  outer:set_result(results)
end

-- early: the children that were done when their turn came (see
-- as_futures). asyncio 3.12+ counts them at once, after every other
-- child has its callback: a gather of children that all finished (eager
-- tasks, futures resolved already) is done when it is returned.
local function gathering(loop, children, return_exceptions, early)
  local outer = F.new_future(loop, Gathering)
  outer._children = children
  local left = #children
  local function done(child)
    left = left - 1
    if outer:done() then
      child_error(child)
      return
    end
    if not return_exceptions then
      local err = child_error(child)
      if err ~= nil and outer._cancel_requested and child:cancelled() then
        F.Future.cancel(outer, err.message) -- the child's (asyncio's)
        return
      elseif err ~= nil then
        outer:set_exception(err)
        return
      end
    end
    if left == 0 then
      settle(outer, children)
    end
  end
  for _, child in ipairs(children) do
    if not early[child] then
      child:add_done_callback(done)
    end
  end
  if #children == 0 then
    outer:set_result({ n = 0 })
  end
  for _, child in ipairs(children) do
    if early[child] then
      done(child)
    end
  end
  return outer
end

-- Argument 1 of fn, a list (of futures and functions), and argument 2,
-- an options table or nil; raised at the user's line.
local function check_list(list, opts, fn)
  if type(list) ~= "table" or is_future(list) then
    argerror(fn, 1, "list", "list of futures expected, got "
      .. U.typename(list))
  end
  -- A table keyed by futures (a port of asyncio's dict) would look empty.
  local n = #list
  for k in pairs(list) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then
      argerror(fn, 1, "list", "list of futures expected, got a table "
        .. "with the key " .. (type(k) == "string" and ("'%s'"):format(k)
        or U.safe_tostring(k)))
    end
  end
  if opts ~= nil and type(opts) ~= "table" then
    argerror(fn, 2, "opts", "table expected, got " .. type(opts))
  end
end

-- The futures list's items stand for, in its order: every item is
-- checked before any task is made of a function. With early (a table),
-- early[fut] tells whether fut was done when its first turn came, as
-- asyncio's gather looks (an eager task made later may finish a future
-- listed before it: that one was not done at its turn).
local function as_futures(loop, list, fn, early)
  local futs = {}
  for i = 1, #list do
    if type(list[i]) ~= "function" then
      futs[i] = as_future(loop, list[i], fn, 1, i)
    end
  end
  for i = 1, #list do
    local fut = futs[i] or loop:create_task(list[i])
    futs[i] = fut
    if early and early[fut] == nil then
      early[fut] = fut:done()
    end
  end
  return futs
end

--- tapio.gather(list [, opts]): the first result of each future or
-- function (run as a task) of list, as a list in list's order. The first
-- child to fail makes gather fail with its error (the others run on);
-- with opts.return_exceptions, a child's error (a cancellation error for
-- a cancelled child) takes its place in the list instead. Children done
-- already count at once (asyncio 3.12+). Cancelling the gather cancels
-- the children.
function api.gather(list, opts)
  check_list(list, opts, "gather")
  local loop = loop_for("gather", list[1])
  local early = {}
  local children = as_futures(loop, list, "gather", early)
  return resolve(gathering(loop, children,
    opts ~= nil and opts.return_exceptions and true or false, early))
end

-- ---- wait and as_completed ----------------------------------------------

-- The futures of list, each once (asyncio takes a set), in list's order.
local function distinct(futs)
  local seen, out = {}, {}
  for _, fut in ipairs(futs) do
    if not seen[fut] then
      seen[fut] = true
      out[#out + 1] = fut
    end
  end
  return out
end

local WHEN = { FIRST_COMPLETED = true, FIRST_EXCEPTION = true,
               ALL_COMPLETED = true }
for name in pairs(WHEN) do
  api[name] = name -- tapio.FIRST_COMPLETED, ...
end

-- opts of wait and as_completed: timeout (seconds or nil) and, where
-- when, return_when (default ALL_COMPLETED).
local function check_opts(opts, fn, when)
  opts = opts or {}
  for k in pairs(opts) do
    if k ~= "timeout" and not (when and k == "return_when") then
      error(("tapio: %s: unknown option '%s'"):format(fn, tostring(k)), 3)
    end
  end
  local timeout = opts.timeout
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout)
  then
    error(("tapio: %s: bad option 'timeout' (seconds expected, got %s)")
      :format(fn, U.typename(timeout)), 3)
  end
  local return_when = opts.return_when or "ALL_COMPLETED"
  if when and not WHEN[return_when] then
    error(("tapio: %s: bad option 'return_when' (FIRST_COMPLETED, "
      .. "FIRST_EXCEPTION or ALL_COMPLETED expected, got %s)")
      :format(fn, U.safe_tostring(return_when)), 3)
  end
  return timeout, return_when
end

-- The futures done and those not, each a list in futs' order.
local function split(futs)
  local done, pending = {}, {}
  for _, fut in ipairs(futs) do
    local into = fut:done() and done or pending
    into[#into + 1] = fut
  end
  return done, pending
end

local function failed(fut)
  return not fut:cancelled() and fut:exception() ~= nil
end

-- asyncio's _wait: suspends the task until return_when holds or the
-- timeout has passed; the futures are not touched.
local function wait(loop, futs, timeout, return_when)
  local waiter = loop:create_future()
  local left = #futs
  local function completed(fut)
    left = left - 1
    -- In asyncio's order: under FIRST_EXCEPTION the error of each future
    -- but the last is looked at (so retrieved), the waiter done or not.
    if (left == 0 or return_when == "FIRST_COMPLETED"
        or return_when == "FIRST_EXCEPTION" and failed(fut))
       and not waiter:done() then
      waiter:set_result()
    end
  end
  for _, fut in ipairs(futs) do
    fut:add_done_callback(completed)
  end
  local handle = timeout and loop:call_later(timeout, function()
    if not waiter:done() then
      waiter:set_result()
    end
  end)
  local ok, err = pcall(await, waiter)
  if handle then
    handle:cancel()
  end
  for _, fut in ipairs(futs) do
    fut:remove_done_callback(completed)
  end
  if not ok then
    error(err, 0)
  end
  return split(futs)
end

--- tapio.wait(list [, opts]) -> done, pending: waits for the futures (or
-- functions, run as tasks) of list until opts.return_when holds
-- ("FIRST_COMPLETED", "FIRST_EXCEPTION" or, the default,
-- "ALL_COMPLETED") or opts.timeout seconds have passed; done and pending
-- are lists of the futures in list's order, each once. Raises neither
-- their errors nor a timeout, and cancels none.
function api.wait(list, opts)
  check_list(list, opts, "wait")
  local timeout, return_when = check_opts(opts, "wait", true)
  if #list == 0 then
    argerror("wait", 1, "list", "empty: nothing to wait for", 3)
  end
  local loop, task = loop_for("wait", list[1])
  local futs = distinct(as_futures(loop, list, "wait"))
  if task then
    return wait(loop, futs, timeout, return_when)
  end
  return loop:create_task(wait, loop, futs, timeout, return_when)
end

-- The iterator of as_completed: its state, and each step.
local Completion = {}
Completion.__index = Completion

function Completion:completed(fut)
  if self.todo[fut] then
    self.todo[fut] = nil
    self:push(fut)
    if self.handle and next(self.todo) == nil then
      self.handle:cancel() -- all in time
    end
  end
end

function Completion:push(fut)
  self.last = self.last + 1
  self.queue[self.last] = fut
  if self.waiter and not self.waiter:done() then
    self.waiter:set_result()
  end
end

-- The deadline: every future not done yet becomes a timeout of a step.
function Completion:expire()
  for fut in pairs(self.todo) do
    self.todo[fut] = nil
    fut:remove_done_callback(self.on_done)
    self:push(false)
  end
end

function Completion:step()
  if self.left == 0 then
    return nil
  end
  local task = current_task()
  if not task or task._loop ~= self.loop then
    error("tapio: as_completed: the iteration must run in a task of the "
      .. "futures' loop", 2)
  end
  self.left = self.left - 1
  while self.first > self.last do
    self.waiter = self.loop:create_future()
    await(self.waiter)
  end
  local fut = self.queue[self.first]
  self.queue[self.first] = nil
  self.first = self.first + 1
  if not fut then
    error(timed_out("as_completed", self.timeout), 0)
  end
  return fut
end

--- tapio.as_completed(list [, opts]): for a generic for in a task: the
-- futures of list (functions become tasks), each once, in the order they
-- complete; each step waits for the next. Once opts.timeout seconds have
-- passed (from this call), a step that would wait raises a timeout error.
function api.as_completed(list, opts)
  check_list(list, opts, "as_completed")
  local timeout = check_opts(opts, "as_completed", false)
  local loop, task = loop_for("as_completed", list[1])
  if not task then
    error("tapio: as_completed: not inside a task (a for loop cannot "
      .. "wait anywhere else)", 2)
  end
  local futs = distinct(as_futures(loop, list, "as_completed"))
  local c = setmetatable({ loop = loop, todo = {}, left = #futs, queue = {},
    first = 1, last = 0, timeout = timeout }, Completion)
  c.on_done = function(fut)
    c:completed(fut)
  end
  for _, fut in ipairs(futs) do
    c.todo[fut] = true
    fut:add_done_callback(c.on_done)
  end
  if timeout and #futs > 0 then
    c.handle = loop:call_later(timeout, function()
      c:expire()
    end)
  end
  return function()
    return c:step()
  end
end

--- tapio.shield(aw): aw's results, but cancelling what waits (the task,
-- or the future returned) does not cancel aw, which runs on. Once what
-- waits has given up, aw is let go of (asyncio 3.13): nothing piles up
-- on it, and an error of it nobody retrieves is reported.
function api.shield(aw)
  local loop = loop_for("shield", aw)
  local inner = as_future(loop, aw, "shield", 1)
  if inner:done() then
    return resolve(inner)
  end
  local outer = loop:create_future()
  local function inner_done()
    if outer:done() then
      child_error(inner)
    elseif inner:cancelled() then
      outer:cancel()
    elseif inner:exception() ~= nil then
      outer:set_exception(inner:exception())
    else
      outer:set_result(inner:result())
    end
  end
  inner:add_done_callback(inner_done)
  outer:add_done_callback(function()
    if not inner:done() then
      inner:remove_done_callback(inner_done)
    end
  end)
  return resolve(outer)
end

return M
