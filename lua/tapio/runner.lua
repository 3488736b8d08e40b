--- tapio.runner (internal): tapio.Runner (asyncio.Runner: a loop that
-- runs one main function after another, then ends what they left
-- running and closes), and tapio.run, a Runner used once: its clean exit
-- (cancel the tasks left, close the servers and transports left, say
-- so) and SIGINT's cancel of the main task are the Runner's.
local core = require "tapio.core"
local U = require "tapio.util"
local F = require "tapio.future"
local T = require "tapio.task"
local C = require "tapio.context"

local M = { api = {} } -- api: what `tapio` holds too (see tapio.util)
local api = M.api
local pack, unpack = U.pack, U.unpack
local check_callable, typename = U.check_callable, U.typename
local retrieved = F.retrieved

-- The last error tapio.run raised and its task's traceback, for hosts
-- that print tracebacks (tapio._traceback).
local last_failure = setmetatable({}, { __mode = "v" })

function api._traceback(err)
  if last_failure.traceback and rawequal(last_failure.err, err) then
    return last_failure.traceback
  end
  if type(err) == "string" and err == last_failure.text then
    return last_failure.traceback
  end
end

-- Cancels what tasks remain and lets them finish, as asyncio.run does;
-- returns the list of them.
local function cancel_all(loop, who)
  local pending = T.api.all_tasks(loop)
  if #pending == 0 then
    return pending
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
        message = "unhandled error in a task during " .. who .. " shutdown",
        exception = task._exception, traceback = task._traceback,
        task = task, future = task })
    end
  end
  return pending
end

-- tapio.run's and a Runner's settings: fields of the `tapio` table, which
-- tapio/init.lua makes this table (see there).
M.settings = { shutdown_timeout = 5, handle_sigint = false }

-- The transports of subprocesses that have exited: they are over
-- (proc:wait() returns at the exit, possibly before the child's pipes are
-- seen closed), and closing them lets go of the pipes, nothing main left
-- running. (A subprocess's pipe transports are not in loop:_open's list:
-- the subprocess's transport stands for them.)
local function exited(transports)
  local over = {}
  for _, t in ipairs(transports) do
    if t.get_returncode and t:get_returncode() then
      over[t] = true
    end
  end
  return over
end

-- Closes the servers still listening and the transports still open, and
-- runs the loop until every transport is lost or shutdown_timeout has
-- passed. Returns the servers and the transports it closed.
local function close_all(loop)
  local servers, transports = loop:_open()
  local closed = {}
  for _, server in ipairs(servers) do
    server:close()
  end
  local over = exited(transports)
  for _, transport in ipairs(transports) do
    if not transport:is_closing() then
      if not over[transport] then
        closed[#closed + 1] = transport
      end
      transport:close()
    end
  end
  if #transports > 0 then
    local timed_out = false
    local timer = loop:call_later(M.settings.shutdown_timeout, function()
      timed_out = true
    end)
    while not timed_out and #select(2, loop:_open()) > 0 do
      loop:run_once(true)
    end
    timer:cancel()
  end
  return servers, closed
end

local function plural(n, what)
  return ("%d %s%s"):format(n, what, n == 1 and "" or "s")
end

-- What tapio.run had to end for main, through the exception handler (as
-- asyncio reports what it finds left over), when anything.
local function report_left(loop, said, tasks, servers, transports)
  if #tasks + #servers + #transports == 0 then
    return
  end
  local parts = {}
  if #tasks > 0 then
    parts[#parts + 1] = "cancelled " .. plural(#tasks, "task")
  end
  if #servers + #transports > 0 then
    local closed = {}
    if #servers > 0 then
      closed[#closed + 1] = plural(#servers, "server")
    end
    if #transports > 0 then
      closed[#closed + 1] = plural(#transports, "transport")
    end
    parts[#parts + 1] = "closed " .. table.concat(closed, " and ")
  end
  loop:call_exception_handler({
    message = said.who .. " ended what " .. said.what .. " left running: "
      .. table.concat(parts, ", "),
    tasks = tasks, servers = servers, transports = transports })
end

-- The clean exit: cancel the tasks left, close the servers and transports
-- left, say so.
local function shutdown(loop, said)
  local tasks = cancel_all(loop, said.who)
  local servers, transports = close_all(loop)
  report_left(loop, said, tasks, servers, transports)
end

local EINTR = core.errors.EINTR

-- SIGINT cancels task; returns the state it keeps, or nil where the
-- loop watches no signal: a virtual-clock loop's (tapio.testing's)
-- refuses them, as they come on real time (SIGINT then ends the program).
local function watch_sigint(loop, task)
  local state = { count = 0 }
  local watched = pcall(loop.add_signal_handler, loop, "SIGINT", function()
    state.count = state.count + 1
    loop:remove_signal_handler("SIGINT") -- the next one: at once
    -- where main waits: what the traceback of the interruption shows
    state.traceback = debug.traceback(task:get_coro(),
      "interrupted (SIGINT)", 0)
    task:cancel("interrupted (SIGINT)")
  end)
  return watched and state or nil
end

local function unwatch_sigint(loop, state)
  if state and state.count == 0 then
    loop:remove_signal_handler("SIGINT")
  end
end

-- The error tapio.run raises when SIGINT cancelled main.
local function interrupted_error(state)
  local err = core.error(EINTR, "interrupted (SIGINT)")
  last_failure.err = err
  last_failure.text = nil
  last_failure.traceback = state.traceback
  last_failure.interrupted = err
  return err
end

--- tapio._interrupted(err): true if err is what tapio.run raised for a
-- SIGINT (the tapio program exits with status 130 then).
function api._interrupted(err)
  return err ~= nil and rawequal(last_failure.interrupted, err)
end

-- ---- tapio.Runner ----------------------------------------------------------

local Runner, check_runner = U.class("tapio.Runner")
M.Runner = Runner

-- Who ended what was left, in close's reports.
local RUNNER = { who = "runner:close()", what = "the runs" }
local RUN = { who = "tapio.run()", what = "main" }

local OPTIONS = { debug = "boolean", loop_factory = "function" }

local function check_options(options)
  if options == nil then
    return {}
  elseif type(options) ~= "table" then
    U.argerror("Runner", 1, "options", "table expected, got "
      .. typename(options), 4)
  end
  for k, v in pairs(options) do
    local want = OPTIONS[k]
    if not want then
      error(("tapio: Runner: unknown option '%s'"):format(tostring(k)), 3)
    elseif want == "function" then
      check_callable(v, "Runner", 1, "options." .. k, 4)
    elseif type(v) ~= want then
      U.argerror("Runner", 1, "options." .. k, want .. " expected, got "
        .. typename(v), 4)
    end
  end
  return options
end

--- tapio.Runner([options]): asyncio.Runner. options: debug (true or
-- false: loop:set_debug, else the loop's own), loop_factory (a function
-- returning the loop, else tapio.new_loop). The loop is made at the
-- first run or get_loop.
function api.Runner(options)
  options = check_options(options)
  return setmetatable({ _state = "created", _debug = options.debug,
    _factory = options.loop_factory, _said = RUNNER }, Runner)
end

-- The Runner's loop, made now if not yet (asyncio's _lazy_init); raises
-- at the caller of the method name if the Runner is closed.
local function lazy_init(self, name)
  if self._state == "closed" then
    error(("tapio: %s: the Runner is closed"):format(name), 3)
  elseif self._state == "created" then
    local loop
    if self._factory then
      loop = self._factory()
    else
      loop = core.new_loop()
    end
    if getmetatable(loop) ~= U.loop_mt then
      error(("tapio: %s: the loop_factory returned %s (a tapio.loop "
        .. "expected)"):format(name, typename(loop)), 3)
    end
    if self._debug ~= nil then
      loop:set_debug(self._debug)
    end
    self._loop, self._state = loop, "initialized"
    -- Every run's context (asyncio's): a copy of this one. Before the
    -- first ContextVar all are empty (see run_main).
    if C.state.on then
      self._context = C.api.copy_context()
    end
  end
  return self._loop
end

--- runner:get_loop(): the Runner's loop (made now if not yet).
function Runner:get_loop()
  check_runner(self, "runner:get_loop")
  local loop = lazy_init(self, "runner:get_loop")
  return loop
end

-- The error a run raises: main's (its traceback kept for the host), or
-- the interruption when SIGINT cancelled main.
local function run_error(task, err, sigint)
  if sigint and sigint.count > 0 and task:cancelled() then
    return interrupted_error(sigint)
  end
  if task:done() and task._state == "failed"
     and rawequal(task._exception, err) then
    retrieved(task)
    last_failure.err = type(err) ~= "string" and err or nil
    last_failure.text = type(err) == "string" and err or nil
    last_failure.traceback = task._traceback
  end
  return err
end

-- main(...) as a task on the Runner's loop, in ctx (nil: the Runner's
-- context), until it ends; its results, or raises its error. name is the
-- function called, for errors (raised at its caller: it calls this as a
-- tail call).
--
-- The Runner's context costs nothing before the first ContextVar: the
-- first run's task makes its own when asked for, and the Runner takes it
-- after the run if a ContextVar came meanwhile; one that came between
-- runs finds it still empty, as asyncio's copy made before.
local function run_main(self, name, ctx, main, ...)
  if core.get_running_loop() then
    error(("tapio: %s: cannot be called from a running event loop")
      :format(name), 2)
  end
  local loop = lazy_init(self, name)
  if not self._context and C.state.on then
    self._context = C.empty_context()
  end
  local own = ctx or self._context
  local task = own and loop:create_task_in(own, main, ...)
    or loop:create_task(main, ...)
  local sigint = M.settings.handle_sigint and watch_sigint(loop, task)
  local r = pack(pcall(loop.run_until_complete, loop, task))
  unwatch_sigint(loop, sigint)
  if not ctx and not self._context and C.state.on then
    self._context = C.of_task(task) -- the first ContextVar came in main
  end
  if not r[1] then
    error(run_error(task, r[2], sigint), 0)
  end
  return unpack(r, 2, r.n)
end

--- runner:run(fn, ...): fn(...) as a task on the Runner's loop until it
-- ends, in the Runner's context (one for every run: what a run sets, the
-- next sees); returns its results or raises its error. The tasks it
-- leaves keep running in the next run; close ends them.
function Runner:run(fn, ...)
  check_runner(self, "runner:run")
  check_callable(fn, "runner:run", 1, "fn")
  return run_main(self, "runner:run", nil, fn, ...)
end

--- runner:run_in(ctx, fn, ...): run, in ctx itself (asyncio's
-- run(coro, context=ctx)).
function Runner:run_in(ctx, fn, ...)
  check_runner(self, "runner:run_in")
  C.check_given(ctx, "runner:run_in")
  check_callable(fn, "runner:run_in", 2, "fn")
  return run_main(self, "runner:run_in", ctx, fn, ...)
end

--- runner:close(): cancels the tasks left and lets them finish, closes
-- the servers and transports left (as tapio.run's exit), closes the
-- loop. Nothing if the Runner made no loop yet (it can still run, as
-- asyncio's) or is closed already.
function Runner:close()
  check_runner(self, "runner:close")
  if self._state ~= "initialized" then
    return
  end
  if core.get_running_loop() then
    error("tapio: runner:close: cannot be called from a running event "
      .. "loop", 2)
  end
  local loop = self._loop
  local ok, err = pcall(shutdown, loop, self._said)
  -- what main dropped with an error nobody retrieved is reported now, to
  -- this loop's handler: os.exit(tapio.run(main)) never collects it
  collectgarbage()
  loop:close()
  self._loop, self._state = nil, "closed"
  if not ok then
    error(err, 0)
  end
end

-- `local runner <close> = tapio.Runner()` (Lua 5.4): closed at the
-- block's end, as asyncio's `with Runner() as runner`.
Runner.__close = function(self)
  self:close()
end

function Runner:__tostring()
  return ("tapio.Runner (%s)"):format(self._state)
end

--- tapio.run(main, ...): a Runner that runs main(...) once and closes:
-- main as a task on a new loop until it ends; then the tasks left are
-- cancelled, the servers and transports left closed (what had to be
-- ended goes to the exception handler), and the loop closed. Returns
-- main's results or raises its error.
function api.run(main, ...)
  check_callable(main, "run", 1, "main")
  if core.get_running_loop() then
    error("tapio: run: cannot be called from a running event loop", 2)
  end
  local runner = api.Runner()
  runner._said = RUN
  local r = pack(pcall(run_main, runner, "run", nil, main, ...))
  local ok, err = pcall(runner.close, runner)
  if not r[1] then
    error(r[2], 0)
  elseif not ok then
    error(err, 0)
  end
  return unpack(r, 2, r.n)
end

return M
