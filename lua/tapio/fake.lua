--- tapio.fake (internal): tapio.testing's fake programs. On a virtual
-- loop, subprocess_exec of a registered name starts a fake child (the
-- core's, capi/tapio.h "Fake programs") whose ends this module turns into
-- a StreamReader and StreamWriters for a Lua function that plays the
-- child as a task. testing.fake_program is M.fake_program.
local core = require "tapio.core"
local tapio = require "tapio"
local U = require "tapio.util"
local F = require "tapio.future"
local R = require "tapio.reader"
local S = require "tapio.streams"
local T = require "tapio.task"

local K = core.testing
local M = {}
local typename = U.typename

-- A fake's output that is not piped (DEVNULL, INHERIT, a descriptor):
-- what is written there goes nowhere.
local Sink = {}
Sink.__index = Sink
Sink.__name = "tapio.testing.sink"
local function nothing() end
for _, name in ipairs({ "write", "writelines", "write_eof", "close",
                        "drain", "wait_closed" }) do
  Sink[name] = nothing
end
function Sink.is_closing() return false end
function Sink.can_write_eof() return false end
function Sink.get_extra_info(_, _, default) return default end


local Child = {}
Child.__index = Child
Child.__name = "tapio.testing.child"
M.Child = Child -- the class (spec/embed/test_meta.lua)

-- child:exit() inside the child's own function ends it there.
local EXIT = setmetatable({}, { __tostring = function()
  return "fake child exited"
end })

local function signal_number(sig, fn)
  local n = type(sig) == "string" and (tapio.signals[sig]
    or tapio.signals["SIG" .. sig]) or sig
  if type(n) ~= "number" or n < 1 or n > 64 or n ~= math.floor(n) then
    error(("tapio: %s: bad argument #1 'sig' (a signal number or name "
      .. "expected, got %s)"):format(fn, tostring(sig)), 3)
  end
  return n
end

--- child:exit([status]): the child exits with status (0..255, default
-- 0): its pipes close (flushed), the parent's returncode is status. In
-- the child's own function it ends the function there; elsewhere (a
-- signal handler) the function is cancelled.
function Child:exit(status)
  status = status or 0
  if type(status) ~= "number" or status ~= math.floor(status)
     or status < 0 or status > 255 then
    error("tapio: child:exit: bad argument #1 'status' (an integer 0..255 "
      .. "expected, got " .. tostring(status) .. ")", 2)
  end
  K._child_exit(self._handle, status)
  local task = self._task
  if task and not task:done() then
    if F.api.current_task() == task then
      error(EXIT, 0)
    end
    task:cancel()
  end
end

--- child:on_signal(sig, fn): sig (a number or "SIGTERM", "TERM") is
-- caught: fn(sig) runs as a task of its own, and the child runs on (an
-- error in fn exits 1, as one in the program's function); nil
-- restores the default (the end of the child, for most signals).
-- SIGKILL cannot be caught.
function Child:on_signal(sig, fn)
  sig = signal_number(sig, "child:on_signal")
  if fn ~= nil then
    U.check_callable(fn, "child:on_signal", 2, "fn")
  end
  if sig == tapio.signals.SIGKILL then
    error("tapio: child:on_signal: SIGKILL cannot be caught", 2)
  end
  self._signals[sig] = fn
end

function Child:__tostring()
  return ("tapio.testing.child (%s)"):format(self.program)
end

-- The function ended: its status (an integer, default 0), or for an
-- error, its message on the child's stderr, the loop's exception handler
-- told (testing.run fails unless errors_ok), and status 1.
-- task is the program's function or one of its signal handlers (handler
-- true): an error in either exits 1; only the function's return exits.
local function child_done(child, name, task, handler)
  if task:cancelled() then
    return
  end
  -- looked at first: an error of a child already ended is nobody's
  local err, status = task:exception(), nil
  if err == EXIT or child.returncode ~= nil or (handler and err == nil) then
    return
  end
  if err == nil then
    status = task:result()
    if status == nil then
      status = 0
    elseif type(status) ~= "number" or status ~= math.floor(status)
        or status < 0 or status > 255 then
      err = ("fake program '%s' returned %s, not a status 0..255")
        :format(name, tostring(status))
    end
  end
  if err ~= nil then
    pcall(child.stderr.write, child.stderr, tostring(err) .. "\n")
    task:get_loop():call_exception_handler({
      message = ("error in fake program '%s'"):format(name),
      exception = err, traceback = task:get_traceback() })
    status = 1
  end
  K._child_exit(child._handle, status)
end

-- What ends the child's tasks: killed or exited, it runs no more. When
-- the loop's close killed it, its tasks cannot run their cancel: they
-- are over all the same, not tasks destroyed while pending.
local function child_ended(child, returncode)
  child.returncode = returncode
  for task in pairs(child._tasks) do
    if not task:done() then
      task:cancel()
      if task:get_loop():is_closed() then
        T.not_reported(task)
      end
    end
  end
end

-- Starts one child of fn: its streams on the transports of its ends.
local function start_child(loop, name, fn, handle, program, args, env, cwd,
                           t0, t1, t2)
  local child = setmetatable({ program = program, args = args, cwd = cwd,
                               _handle = handle, _signals = {},
                               _tasks = setmetatable({}, { __mode = "k" })
                             }, Child)
  if env then
    child.env = {}
    for _, entry in ipairs(env) do
      local k, v = entry:match("^([^=]*)=(.*)$")
      child.env[k or entry] = v or ""
    end
  end
  local protocols = {}
  child.stdin = R.new_reader(R.DEFAULT_LIMIT, loop)
  if t0 then
    protocols[1] = tapio.StreamReaderProtocol(child.stdin)
  else
    child.stdin:feed_eof() -- not piped: end of file at once
  end
  for fd, t in pairs({ [1] = t1, [2] = t2 ~= t1 and t2 or nil }) do
    local writer = S.new_writer(t, nil, loop)
    protocols[fd + 1] = setmetatable({ _writer = writer }, S.WriterProtocol)
    child[fd == 1 and "stdout" or "stderr"] = writer
  end
  child.stdout = child.stdout or setmetatable({}, Sink)
  child.stderr = child.stderr or (t2 and child.stdout)
    or setmetatable({}, Sink)
  local task = loop:create_task(fn, child)
  child._task, child._tasks[task] = task, true
  task:add_done_callback(function(t)
    child_done(child, name, t)
  end)
  local function events(what, arg)
    if what == "ended" then
      return child_ended(child, arg)
    end
    local handler = child._signals[arg]
    if handler then
      local t = loop:create_task(handler, arg)
      child._tasks[t] = true
      t:add_done_callback(function()
        child_done(child, name, t, true)
      end)
      return true
    end
    return false
  end
  return protocols[1], protocols[2], protocols[3], events
end

--- testing.fake_program(loop, name, fn): on the virtual loop, every
-- subprocess_exec of name (or of a path ending in /name), and
-- subprocess_shell of the command name (else of "sh", args {"-c", cmd}),
-- starts a fake child: fn(child) runs as a task of the loop, with
-- child.program, child.args, child.env and child.cwd (when given),
-- child.stdin a StreamReader, child.stdout and child.stderr
-- StreamWriters (drain waits while the parent does not read; not piped:
-- stdin at its end, writes dropped). fn's return value is the exit
-- status (default 0); child:exit(n) exits from anywhere; an error exits
-- 1, its message on stderr, and goes to the loop's exception handler.
-- child:on_signal(sig, fn) catches a signal; uncaught, SIGTERM and most
-- others end the child (returncode minus the signal), fn cancelled.
-- fn nil removes the program.
function M.fake_program(loop, name, fn)
  if getmetatable(loop) ~= U.loop_mt then
    error("tapio: testing.fake_program: bad argument #1 'loop' (tapio.loop "
      .. "expected, got " .. typename(loop) .. ")", 2)
  end
  if type(name) ~= "string" or name == "" then
    error("tapio: testing.fake_program: bad argument #2 'name' (a program "
      .. "name expected, got " .. typename(name) .. ")", 2)
  end
  if fn ~= nil then
    U.check_callable(fn, "testing.fake_program", 3, "fn")
  end
  if not K.is_virtual(loop) then
    error("tapio: testing.fake_program: the loop has no virtual clock "
      .. "(testing.new_loop makes one)", 2)
  end
  K._fake_program(loop, name, fn and function(...)
    return start_child(loop, name, fn, ...)
  end)
end

return M
