--- tapio.subprocess (internal): create_subprocess_exec and
-- create_subprocess_shell, and the Process they return: a child whose
-- piped stdin is a StreamWriter and whose piped stdout and stderr are
-- StreamReaders, with wait() and communicate().
--
-- wait() returns once the child has exited, even while something else
-- (a grandchild) still holds its pipes open (asyncio waits for the pipes
-- too: cpython#119710); any number of tasks may wait.
local core = require "tapio.core"
local U = require "tapio.util"
local F = require "tapio.future"
local T = require "tapio.task"
local R = require "tapio.reader"
local S = require "tapio.streams"
local L = require "tapio.loop"

local M = { api = {} } -- api: what `tapio` holds too (see tapio.util)
local current_task, await = F.api.current_task, F.await
local async, feed_data = R.async, R.feed_data
local Loop = core.loop_methods

local Process, check_process = U.class("tapio.Process")
M.Process = Process

-- ---- The protocol ----------------------------------------------------------

-- asyncio's SubprocessStreamProtocol: a reader per piped output (at
-- self[1], self[2]), a writer on the piped input, the child's exit.
local ProcessProtocol = {}
ProcessProtocol.__index = ProcessProtocol

local function new_protocol(loop, limit)
  local process = setmetatable({ _loop = loop, _waiters = {} }, Process)
  return setmetatable({ _loop = loop, _limit = limit, _process = process },
                      ProcessProtocol)
end

local OUTPUTS = { "stdout", "stderr" }

function ProcessProtocol:connection_made(transport)
  local process, loop = self._process, self._loop
  process._transport = transport
  process.pid = transport:get_pid()
  local input = transport:get_pipe_transport(0)
  if input then
    process.stdin = S.new_writer(input, nil, loop)
  end
  for fd, name in ipairs(OUTPUTS) do
    local pipe = transport:get_pipe_transport(fd)
    if pipe then
      local reader = R.new_reader(self._limit, loop)
      reader._transport = pipe
      process[name], self[fd] = reader, reader
    end
  end
end

function ProcessProtocol:pipe_data_received(fd, data)
  feed_data(self[fd], data)
end

function ProcessProtocol:pipe_connection_lost(fd, err)
  if fd == 0 then
    S.writer_lost(self._process.stdin, err)
  elseif err == nil then
    self[fd]:feed_eof()
  else
    self[fd]:set_exception(err)
  end
end

local function exited(process)
  if process.returncode == nil then
    process.returncode = process._transport:get_returncode()
    S.wake_all(process, "_waiters", T.unpark_soon)
  end
end

function ProcessProtocol:process_exited()
  exited(self._process)
end

function ProcessProtocol:connection_lost()
  exited(self._process) -- in case the exit came with no process_exited
end

function ProcessProtocol:pause_writing()
  S.pause_writing(self._process.stdin)
end

function ProcessProtocol:resume_writing()
  S.resume_writing(self._process.stdin)
end

-- ---- Process ---------------------------------------------------------------

local function wait(self)
  if self.returncode == nil then
    S.wait_in(self, "_waiters")
  end
  return self.returncode
end

--- process:wait(): the returncode, once the child has exited.
function Process:wait()
  check_process(self, "process:wait")
  return async(self, "process:wait", wait)
end

local function is_broken_pipe(err)
  return type(err) == "table" and (err.name == "EPIPE"
                                   or err.name == "ECONNRESET")
end

-- Writes input (if any) and closes stdin; a child that does not read it
-- all is no error (asyncio ignores BrokenPipeError there too).
local function feed_stdin(self, input)
  local stdin = self.stdin
  if input ~= nil then
    stdin:write(input)
    local ok, err = pcall(stdin.drain, stdin)
    if not ok and not is_broken_pipe(err) then
      error(err, 0)
    end
  end
  stdin:close()
end

local function read_all(reader)
  return reader:read()
end

local function communicate(self, input)
  local loop = current_task()._loop
  local tasks = {
    self.stdin and loop:create_task(feed_stdin, self, input) or false,
    self.stdout and loop:create_task(read_all, self.stdout) or false,
    self.stderr and loop:create_task(read_all, self.stderr) or false,
  }
  local results = {}
  for i = 1, 3 do
    if tasks[i] then
      local ok, r = pcall(await, tasks[i])
      if not ok then -- failed or cancelled: so are the others
        for j = 1, 3 do
          if tasks[j] then
            tasks[j]:cancel()
          end
        end
        error(r, 0)
      end
      results[i] = r
    end
  end
  wait(self)
  return results[2], results[3]
end

--- process:communicate([input]): writes input to stdin and closes it,
-- reads stdout and stderr to their end, all at once (no deadlock however
-- large), waits for the exit; returns stdout, stderr (nil where not
-- piped). What a cancelled communicate had read stays in the readers, for
-- the next one; input for a stdin already closed (by an earlier
-- communicate, or stdin:close()) raises, where it would be dropped
-- (asyncio raises too since gh-139373).
function Process:communicate(input)
  check_process(self, "process:communicate")
  if input ~= nil and type(input) ~= "string" then
    error("tapio: process:communicate: bad argument #1 'input' (string or "
      .. "nil expected, got " .. U.typename(input) .. ")", 2)
  end
  local stdin = self.stdin
  if input ~= nil and stdin and (stdin._closing or stdin._eof) then
    error("tapio: process:communicate: bad argument #1 'input' (stdin is "
      .. "closed: an earlier communicate or stdin:close() closed it)", 2)
  end
  return async(self, "process:communicate", communicate, input)
end

--- process:send_signal(sig), terminate(), kill(): true, or nil and an
-- ESRCH error once the child is reaped.
function Process:send_signal(sig)
  check_process(self, "process:send_signal")
  local t = self._transport
  local ok, sent, err = pcall(t.send_signal, t, sig)
  if not ok then -- a bad signal: named as the user called it, at their line
    error((tostring(sent):gsub("^tapio: transport:send_signal:",
                               "tapio: process:send_signal:")), 2)
  end
  return sent, err
end

function Process:terminate()
  check_process(self, "process:terminate")
  return self._transport:terminate()
end

function Process:kill()
  check_process(self, "process:kill")
  return self._transport:kill()
end

function Process:__tostring()
  if self.returncode ~= nil then
    return ("tapio.Process (pid %d, returncode %d)")
      :format(self.pid, self.returncode)
  end
  return ("tapio.Process (pid %d)"):format(self.pid or -1)
end

-- ---- Creating --------------------------------------------------------------

local function started(_, fut, protocol)
  L.await_made(fut) -- cancelled once made: the child is killed
  return protocol._process
end

-- Starts the child: the arguments before opts are ...; opts as
-- subprocess_exec takes them: stdio the parent's unless given (asyncio's
-- defaults), limit taken out. Called as a tail call, so its errors are
-- raised at the caller's line.
local function creating(fn, c_create, opts, n, ...)
  local copts, limit = S.split_options(opts, fn, n)
  copts = copts or {}
  for _, name in ipairs({ "stdin", "stdout", "stderr" }) do
    if copts[name] == nil then
      copts[name] = "inherit"
    end
  end
  local loop = U.running_loop(fn)
  local protocol = new_protocol(loop, limit)
  local args = U.pack(...)
  args[n], args.n = copts, n
  local fut = S.start(fn, 1, c_create, loop, function()
    return protocol
  end, U.unpack(args, 1, args.n))
  return async(protocol, fn, started, fut, protocol)
end

--- tapio.create_subprocess_exec(program, args, opts) -> process
-- opts: subprocess_exec's (stdin, stdout, stderr: "inherit" unless
-- given) and limit (the readers').
function M.api.create_subprocess_exec(program, args, opts)
  if type(args) == "string" then -- asyncio's *args, before opts is checked
    U.argerror("create_subprocess_exec", 2, "args", "list of strings or "
      .. "nil expected, got string: the arguments are one list, as in "
      .. 'create_subprocess_exec("sh", { "-c", cmd })', 3)
  end
  return creating("create_subprocess_exec", Loop._subprocess_exec, opts, 3,
                  program, args)
end

--- tapio.create_subprocess_shell(cmd, opts) -> process
function M.api.create_subprocess_shell(cmd, opts)
  return creating("create_subprocess_shell", Loop._subprocess_shell, opts,
                  2, cmd)
end

return M
