--- tapio: asyncio's Transports and Protocols for Lua.
--
-- This is the pure-Lua layer over the C module tapio.core: futures, tasks
-- (coroutines the loop resumes), tapio.run, tapio.sleep, and the loop and
-- server methods that complete later. They all follow one rule, the
-- async rule (see lua/README.md):
--
--   Called inside a task, an operation that completes later suspends the
--   task and returns its results, or raises its error. Called anywhere
--   else (a protocol method, a call_soon callback, the main chunk), it
--   returns a future; add_done_callback on it, or hand it to
--   loop:run_until_complete.
--
-- Works on Lua 5.4 and on LuaJIT (Lua 5.1 API).
local core = require "tapio.core"

local tapio = {}

local unpack = table.unpack or unpack
local pack = table.pack or function(...)
  return { n = select("#", ...), ... }
end

local Loop = core.loop_methods
local Server = core.server_methods
local loop_mt, server_mt = core.loop_metatable, core.server_metatable

tapio.version = core.version
tapio.new_loop = core.new_loop
tapio.error = core.error
tapio.strerror = core.strerror
tapio.errors = core.errors
tapio.buffer = core.buffer
tapio.socketpair = core.socketpair
tapio.send = core.send
tapio.close_fd = core.close_fd
tapio.AF_UNSPEC, tapio.AF_INET, tapio.AF_INET6 =
  core.AF_UNSPEC, core.AF_INET, core.AF_INET6
for name, code in pairs(core.errors) do
  tapio[name] = code -- tapio.ECONNREFUSED, ...
end

local ECANCELED = core.errors.ECANCELED

-- What tapio's C side calls a value's type in its errors.
local function typename(v)
  local mt = getmetatable(v)
  local name = type(mt) == "table" and rawget(mt, "__name")
  return type(name) == "string" and name or type(v)
end

-- Argument checks of the methods written in Lua raise at the caller of
-- the method (level 3, unless given), as the C methods do.
local function check_self(v, mt, fn, level)
  if getmetatable(v) ~= mt then
    error(("tapio: %s: bad self (%s expected, got %s)")
      :format(fn, mt.__name, typename(v)), level or 3)
  end
end

local function check_loop(loop, fn)
  check_self(loop, loop_mt, fn, 4)
  if loop:is_closed() then
    error(("tapio: %s: the loop is closed"):format(fn), 3)
  end
end

local function check_callable(f, fn, n, name)
  local mt = type(f) ~= "function" and getmetatable(f)
  if type(f) ~= "function" and not (type(mt) == "table" and mt.__call) then
    error(("tapio: %s: bad argument #%d '%s' (function expected, got %s)")
      :format(fn, n, name, type(f)), 3)
  end
end

-- ---- Errors --------------------------------------------------------------

--- A cancellation error: what awaiting a cancelled future raises.
function tapio.cancelled_error(message)
  return core.error(ECANCELED, message or "cancelled")
end

function tapio.is_cancelled(err)
  return type(err) == "table" and getmetatable(err) == core.error_metatable
    and err.code == ECANCELED
end
local is_cancelled = tapio.is_cancelled

local function safe_tostring(v)
  local ok, s = pcall(tostring, v)
  return ok and s or "(error object is a " .. type(v) .. " value)"
end

-- ---- Tasks: which coroutine is one ---------------------------------------

-- coroutine -> task; weak both ways, as 5.1 has no ephemerons (the task
-- holds its coroutine).
local tasks = setmetatable({}, { __mode = "kv" })
local all_tasks = setmetatable({}, { __mode = "k" }) -- loop -> {task=true}

local function current_task()
  local co = coroutine.running()
  return co and tasks[co] or nil
end
tapio.current_task = current_task

-- A task's coroutine yields AWAIT and a future; the task resumes it with
-- CANCEL when the task is cancelled while the future could not be.
local AWAIT, CANCEL = {}, {}

local function await(fut)
  if not fut:done() then
    local signal = coroutine.yield(AWAIT, fut)
    if signal == CANCEL then
      error(tapio.cancelled_error(), 0)
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

-- ---- Futures -------------------------------------------------------------

local Future = {}
Future.__index = Future
tapio.Future = Future

local function new_future(loop, mt)
  return setmetatable({ _loop = loop, _state = "pending", _callbacks = {} },
    mt or Future)
end

function Loop:create_future()
  check_self(self, loop_mt, "loop:create_future")
  return new_future(self)
end

local function is_future(v)
  return type(v) == "table" and type(v.add_done_callback) == "function"
    and type(v.done) == "function"
end
tapio.is_future = is_future

-- Done callbacks run from the loop, never from inside set_result.
local function schedule_callbacks(fut)
  local cbs = fut._callbacks
  fut._callbacks = {}
  for i = 1, #cbs do
    fut._loop:call_soon(cbs[i], fut)
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

--- Cancels a pending future; returns false if it was done already.
function Future:cancel(message)
  if self._state ~= "pending" then
    return false
  end
  self._state = "cancelled"
  self._cancel_message = message
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
  schedule_callbacks(self)
end

local function retrieved(fut)
  if fut._unobserved then
    fut._unobserved.retrieved = true
  end
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
    error(tapio.cancelled_error(self._cancel_message), 0)
  end
  error("tapio: future:result: the result is not ready", 2)
end

function Future:exception()
  local state = self._state
  if state == "cancelled" then
    error(tapio.cancelled_error(self._cancel_message), 0)
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
    self._callbacks[#self._callbacks + 1] = fn
  end
end

function Future:remove_done_callback(fn)
  local kept, removed = {}, 0
  for _, cb in ipairs(self._callbacks) do
    if rawequal(cb, fn) then
      removed = removed + 1
    else
      kept[#kept + 1] = cb
    end
  end
  self._callbacks = kept
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
function tapio.await(fut)
  if not is_future(fut) then
    error("tapio: await: bad argument #1 'future' (future expected, got "
      .. type(fut) .. ")", 2)
  end
  return fut:await()
end

-- ---- Tasks ---------------------------------------------------------------

local Task = setmetatable({}, { __index = Future })
Task.__index = Task
Task.__tostring = function(t)
  return ("tapio.Task (%s)"):format(t._state)
end
tapio.Task = Task

-- A failed task whose error nobody looked at is reported when the task is
-- collected, as asyncio logs "Task exception was never retrieved".
local function gc_hook(fn)
  if newproxy then -- LuaJIT / 5.1: tables have no __gc
    local p = newproxy(true)
    getmetatable(p).__gc = fn
    return p
  end
  return setmetatable({}, { __gc = fn })
end

local function watch_unobserved(task, err, traceback)
  local state = { retrieved = false }
  local loop = task._loop
  task._unobserved = state
  task._gc = gc_hook(function()
    if state.retrieved then
      return
    end
    local context = { message = "task exception was never retrieved",
                      exception = err, traceback = traceback }
    if loop:is_closed() then
      pcall(Loop.default_exception_handler, loop, context)
    else
      pcall(Loop.call_exception_handler, loop, context)
    end
  end)
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
  if #task._callbacks == 0 then
    watch_unobserved(task, err, task._traceback)
  end
end

-- Runs the task's coroutine until it awaits a future or ends.
function step(task, _)
  if task._state ~= "pending" then
    return
  end
  local co, value = task._co, nil
  if task._must_cancel then
    task._must_cancel = false
    if not task._started then -- cancelled before it ever ran
      Future.cancel(task)
      return
    end
    value = CANCEL
  end
  task._waiter = nil
  local r
  if not task._started then
    task._started = true
    local args = task._args
    task._args = nil
    r = pack(coroutine.resume(co, unpack(args, 1, args.n)))
  else
    r = pack(coroutine.resume(co, value))
  end
  if not r[1] then
    task_failed(task, r[2])
  elseif coroutine.status(co) == "dead" then
    if task._must_cancel then -- cancel() from inside, then it returned
      Future.cancel(task)
    else
      Future.set_result(task, unpack(r, 2, r.n))
    end
  elseif r[2] == AWAIT then
    local fut = r[3]
    task._waiter = fut
    fut:add_done_callback(wakeup(task))
    if task._must_cancel and fut:cancel() then
      task._must_cancel = false
    end
  else
    -- A plain coroutine.yield in a task: nothing would ever resume it.
    Future.set_exception(task, "tapio: a task yielded without awaiting a "
      .. "future (coroutine.yield inside a task; use tapio.sleep(0))")
  end
end

--- loop:create_task(fn, ...): runs fn(...) in a coroutine the loop
-- resumes; returns the task, a future of fn's results.
function Loop:create_task(fn, ...)
  check_loop(self, "loop:create_task")
  check_callable(fn, "loop:create_task", 1, "fn")
  local task = new_future(self, Task)
  task._args = pack(...)
  task._co = coroutine.create(function(...)
    return fn(...)
  end)
  tasks[task._co] = task
  local set = all_tasks[self]
  if not set then
    set = setmetatable({}, { __mode = "k" })
    all_tasks[self] = set
  end
  set[task] = true
  self:call_soon(step, task)
  return task
end

--- Requests cancellation: the task gets a cancellation error where it
-- waits (which it may catch). False if the task is done.
function Task:cancel(message)
  if self._state ~= "pending" then
    return false
  end
  if self._waiter and self._waiter:cancel(message) then
    return true
  end
  self._must_cancel = true
  return true
end

function Task:get_coro()
  return self._co
end

--- The traceback of the error the task failed with, if it failed.
function Task:get_traceback()
  return self._traceback
end

function tapio.all_tasks(loop)
  loop = loop or tapio.get_running_loop()
  local list = {}
  for task in pairs(all_tasks[loop] or {}) do
    if not task:done() then
      list[#list + 1] = task
    end
  end
  return list
end

-- ---- The running loop, sleep ---------------------------------------------

function tapio.get_running_loop()
  local loop = core.get_running_loop()
  if not loop then
    error("tapio: get_running_loop: no running event loop", 2)
  end
  return loop
end

function tapio.create_task(fn, ...)
  return tapio.get_running_loop():create_task(fn, ...)
end

--- tapio.sleep(seconds, ...): returns ... after seconds (the async rule:
-- a future outside a task).
function tapio.sleep(delay, ...)
  if type(delay) ~= "number" or delay ~= delay then
    error("tapio: sleep: bad argument #1 'delay' (number expected, got "
      .. type(delay) .. ")", 2)
  end
  local loop = tapio.get_running_loop()
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

-- The last error tapio.run raised and its task's traceback, for hosts
-- that print tracebacks (tapio._traceback).
local last_failure = setmetatable({}, { __mode = "v" })

function tapio._traceback(err)
  if last_failure.traceback and rawequal(last_failure.err, err) then
    return last_failure.traceback
  end
  if type(err) == "string" and err == last_failure.text then
    return last_failure.traceback
  end
end

-- Cancels what tasks remain and lets them finish, as asyncio.run does.
local function cancel_all(loop)
  local pending = tapio.all_tasks(loop)
  if #pending == 0 then
    return
  end
  local left = #pending
  for _, task in ipairs(pending) do
    task:cancel()
    task:add_done_callback(function()
      left = left - 1
      if left == 0 then
        loop:stop()
      end
    end)
  end
  loop:run_forever()
  for _, task in ipairs(pending) do
    if task:done() and not task:cancelled() and task._state == "failed" then
      retrieved(task)
      loop:call_exception_handler({
        message = "unhandled error in a task during tapio.run() shutdown",
        exception = task._exception, traceback = task._traceback })
    end
  end
end

--- tapio.run(main, ...): a new loop runs main(...) as a task until it
-- finishes; other tasks are then cancelled and the loop closed. Returns
-- main's results or raises its error.
function tapio.run(main, ...)
  check_callable(main, "run", 1, "main")
  if core.get_running_loop() then
    error("tapio: run: cannot be called from a running event loop", 2)
  end
  local loop = core.new_loop()
  local task = loop:create_task(main, ...)
  local r = pack(pcall(loop.run_until_complete, loop, task))
  local ok2, err2 = pcall(cancel_all, loop)
  loop:close()
  if not r[1] then
    local err = r[2]
    if task:done() and task._state == "failed" and rawequal(task._exception,
                                                             err) then
      retrieved(task)
      last_failure.err = type(err) ~= "string" and err or nil
      last_failure.text = type(err) == "string" and err or nil
      last_failure.traceback = task._traceback
    end
    error(err, 0)
  end
  if not ok2 then
    error(err2, 0)
  end
  return unpack(r, 2, r.n)
end

-- ---- Loop methods that complete later ------------------------------------

-- The completion callback the C side calls with (err) or (nil, ...).
local function completion(fut)
  return function(err, obj, ...)
    if fut:done() then -- cancelled meanwhile: nobody wants what came
      if err == nil and obj then
        obj:close()
      end
      return
    end
    if err ~= nil then
      fut:set_exception(err)
    else
      fut:set_result(obj, ...)
    end
  end
end

-- The async rule for the C side's create calls: c_create(self, completion
-- callback, the user's arguments) checks them all, then returns true, or
-- nil, err when the operation failed at once. It is called through pcall,
-- so its argument errors carry no position: they are raised again at the
-- caller's line, as errors of the method itself.
local function completing(c_create)
  return function(self, ...)
    local fut = new_future(self)
    local ok, started, err = pcall(c_create, self, completion(fut), ...)
    if not ok then
      error(started, 2)
    end
    if not started then
      fut:set_exception(err)
    end
    return resolve(fut)
  end
end

--- loop:create_connection(factory, host, port, opts) -> transport, protocol
-- loop:create_connection(factory, {sock = fd, ...}) wraps a connected fd.
Loop.create_connection = completing(Loop._create_connection)

--- loop:create_unix_connection(factory, path, opts) -> transport, protocol
Loop.create_unix_connection = completing(Loop._create_unix_connection)

--- loop:connect_accepted_socket(factory, fd, opts) -> transport, protocol
Loop.connect_accepted_socket = completing(Loop._connect_accepted_socket)

--- loop:create_server(factory, host, port, opts) -> server
-- host: nil (every interface), a string, or a list of strings.
Loop.create_server = completing(Loop._create_server)

--- loop:create_unix_server(factory, path, opts) -> server
Loop.create_unix_server = completing(Loop._create_unix_server)

-- ---- Servers -------------------------------------------------------------

local server_forever = setmetatable({}, { __mode = "k" }) -- server -> future
local c_close = Server.close

--- server:close(): stops listening (connections stay open); a pending
-- serve_forever returns.
function Server:close()
  c_close(self)
  local fut = server_forever[self]
  if fut then
    server_forever[self] = nil
    if not fut:done() then
      fut:set_result()
    end
  end
end

--- server:wait_closed(): once closed and every connection it accepted is
-- gone.
function Server:wait_closed()
  check_self(self, server_mt, "server:wait_closed")
  local loop = self:get_loop()
  if not loop or loop:is_closed() then
    return nil
  end
  local fut = loop:create_future()
  local function done()
    if not fut:done() then
      fut:set_result()
    end
  end
  if not self:_wait_closed(done) then
    done()
  end
  return resolve(fut)
end

--- server:serve_forever(): serves until the server is closed (then
-- returns) or the task is cancelled (then closes the server and raises
-- the cancellation).
function Server:serve_forever()
  check_self(self, server_mt, "server:serve_forever")
  local loop = self:get_loop()
  if server_forever[self] then
    error("tapio: server:serve_forever: already serving forever", 2)
  end
  if not self:is_serving() then
    self:start_serving()
  end
  local fut = loop:create_future()
  server_forever[self] = fut
  if not current_task() then
    return fut
  end
  local ok, err = pcall(await, fut)
  if not ok then
    if is_cancelled(err) then
      self:close()
    end
    error(err, 0)
  end
end

-- ---- Printing like Python ------------------------------------------------

--- tapio.repr(s): a string as Python's repr() prints it ('...' quoted,
-- escaped), so examples print what the reference's Python versions print.
function tapio.repr(v)
  if type(v) ~= "string" then
    return tostring(v)
  end
  local q = "'"
  if v:find("'", 1, true) and not v:find('"', 1, true) then
    q = '"'
  end
  local escapes = { ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r",
                    ["\t"] = "\\t", [q] = "\\" .. q }
  -- bytes from 128 up pass as they are: UTF-8 text prints as Python
  -- prints the decoded str
  local body = v:gsub("[%z\1-\31\\'\"\127]", function(c)
    if escapes[c] then
      return escapes[c]
    end
    if c == "'" or c == '"' then
      return c
    end
    return ("\\x%02x"):format(c:byte())
  end)
  return q .. body .. q
end

return tapio
