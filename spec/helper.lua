-- Shared by the busted specs: a deadline-bounded loop runner that raises a
-- failure with its traceback, a protocol that records its callbacks, and
-- a connected pair of transports on 127.0.0.1 (port 0). No sleeps: every
-- wait is on a loop event, bounded by a deadline.
local tapio = require "tapio"

local helper = { tapio = tapio }

local unpack = table.unpack or unpack
local pack = table.pack or function(...)
  return { n = select("#", ...), ... }
end

helper.DEADLINE = 10 -- seconds any one spec may run its loop

local function describe_context(ctx)
  local parts = { tostring(ctx.message) }
  if ctx.traceback then
    parts[#parts + 1] = ctx.traceback
  elseif ctx.exception ~= nil then
    parts[#parts + 1] = tostring(ctx.exception)
  end
  return table.concat(parts, "\n")
end
helper.describe_context = describe_context

--- What a spec left of loop's tasks but `except` as it closes the loop:
-- a message naming each (and where it waits), or nil. A task still
-- pending at the close is reported by the collector as destroyed while
-- pending, at whatever collection finds it (the interpreter's exit at
-- the latest); this says it at once, whenever the collector runs.
function helper.tasks_left(loop, except)
  local lines = {}
  for _, t in ipairs(tapio.all_tasks(loop)) do
    if t ~= except then
      lines[#lines + 1] = ("\n  %s, waiting at:%s"):format(tostring(t),
        debug.traceback(t:get_coro(), "", 0))
    end
  end
  if #lines > 0 then
    return ("the spec left %d task(s) pending at the loop's close (cancel "
      .. "or await them):%s"):format(#lines, table.concat(lines))
  end
end

--- helper.run(fn, opts): a new loop runs fn(loop, errors) as a task until
-- it ends or the deadline passes, then closes the loop. Returns fn's
-- results. Errors (fn's, or the deadline's) are raised with the task's
-- traceback. The loop's exception handler appends each context to
-- `errors`; unless opts.errors_ok, any such call fails the spec. So does
-- a task other than fn's still pending when the loop closes.
-- opts.keep_open leaves the loop open (and returns it after the results).
function helper.run(fn, opts)
  opts = opts or {}
  local loop = tapio.new_loop()
  local errors = {}
  loop:set_exception_handler(function(_, ctx)
    errors[#errors + 1] = ctx
  end)
  local task = loop:create_task(fn, loop, errors)
  local timed_out = false
  local deadline = loop:call_later(opts.deadline or helper.DEADLINE,
    function()
      timed_out = true
      loop:stop()
    end)
  local r = pack(pcall(loop.run_until_complete, loop, task))
  deadline:cancel()
  if timed_out then
    local where = debug.traceback(task:get_coro(), "", 0)
    loop:close()
    error(("deadline of %gs passed; the task waits at:%s")
      :format(opts.deadline or helper.DEADLINE, where), 0)
  end
  local left = not opts.keep_open and helper.tasks_left(loop, task)
  if not opts.keep_open then
    loop:close()
  end
  if not r[1] then
    local tb = task.get_traceback and task:get_traceback()
    error(tb or tostring(r[2]), 0)
  end
  if #errors > 0 and not opts.errors_ok then
    error("unexpected call of the exception handler:\n"
      .. describe_context(errors[1]), 0)
  end
  if left then
    error(left, 0)
  end
  if opts.keep_open then
    r[r.n + 1] = loop
    r.n = r.n + 1
  end
  return unpack(r, 2, r.n)
end

--- Runs the loop until cond() is true, bounded by the deadline; for specs
-- that use no tasks (plain callbacks, as a host would).
function helper.wait_until(loop, cond, deadline)
  local timed_out = false
  local h = loop:call_later(deadline or helper.DEADLINE, function()
    timed_out = true
  end)
  while not cond() and not timed_out do
    loop:run_once(true)
  end
  h:cancel()
  if timed_out then
    error("deadline passed while waiting", 2)
  end
end

-- p with methods (a table, or nil) added or overriding its own.
local function with_methods(p, methods)
  for k, v in pairs(methods or {}) do
    p[k] = v
  end
  return p
end

--- A protocol that records its callbacks in self.events ("made", "data",
-- "eof", "lost", "pause", "resume") and resolves futures on them:
-- self.made, self.eof_fut, self.lost (with the error, or false if clean).
-- methods (optional) override or add methods.
function helper.recorder(loop, methods)
  local p = { events = {}, received = "", chunks = {},
              made = loop:create_future(), lost = loop:create_future(),
              eof_fut = loop:create_future(), waiters = {} }
  function p:connection_made(transport)
    self.events[#self.events + 1] = "made"
    self.transport = transport
    self.made:set_result(transport)
  end
  function p:data_received(data)
    self.events[#self.events + 1] = "data"
    self.chunks[#self.chunks + 1] = data
    self.received = self.received .. data
    self:check_waiters()
  end
  function p:eof_received()
    self.events[#self.events + 1] = "eof"
    self.eof_fut:set_result(true)
    return self.keep_open
  end
  function p:connection_lost(err)
    self.events[#self.events + 1] = "lost"
    self.lost_with = err
    if err == nil then
      self.lost:set_result(false)
    else
      self.lost:set_result(err)
    end
  end
  function p:pause_writing()
    self.events[#self.events + 1] = "pause"
  end
  function p:resume_writing()
    self.events[#self.events + 1] = "resume"
  end
  function p:check_waiters()
    for i = #self.waiters, 1, -1 do
      local w = self.waiters[i]
      if #self.received >= w.n and not w.fut:done() then
        table.remove(self.waiters, i)
        w.fut:set_result(self.received)
      end
    end
  end
  --- A future of everything received once it has at least n bytes.
  function p:bytes(n)
    local fut = loop:create_future()
    self.waiters[#self.waiters + 1] = { n = n, fut = fut }
    self:check_waiters()
    return fut
  end
  return with_methods(p, methods)
end

--- helper.recorder's protocol with the datagram methods: datagrams
-- ({data, addr}) and errors recorded too, "data:N" (or "data:" ..
-- self.show(data) when methods has show) and "err:NAME" events, and
-- p:got(n), the n-th datagram and its sender once it came (in a task).
-- With p.echo, each datagram goes back as (p.echo_prefix or "resp:") ..
-- data.
function helper.dgram_recorder(loop, methods)
  local dgram = {}
  function dgram:datagram_received(data, addr)
    self.events[#self.events + 1] = "data:"
      .. (self.show and self.show(data) or #data)
    self.datagrams[#self.datagrams + 1] = { data = data, addr = addr }
    if self.echo then
      self.transport:sendto((self.echo_prefix or "resp:") .. data, addr)
    end
    local w = self.dwaiters[#self.datagrams]
    if w then
      w:set_result(data, addr)
    end
  end
  function dgram:error_received(err)
    self.events[#self.events + 1] = "err:" .. err.name
    self.errors[#self.errors + 1] = err
  end
  function dgram:got(n)
    if self.datagrams[n] then
      return self.datagrams[n].data, self.datagrams[n].addr
    end
    self.dwaiters[n] = self.dwaiters[n] or loop:create_future()
    return self.dwaiters[n]:await()
  end
  for k, v in pairs(methods or {}) do
    dgram[k] = v
  end
  local p = helper.recorder(loop, dgram)
  p.datagrams, p.errors, p.dwaiters = {}, {}, {}
  return p
end

--- A datagram endpoint of helper.dgram_recorder(loop, methods), made
-- with opts: its transport and protocol (in a task).
function helper.dgram_endpoint(loop, opts, methods)
  local p = helper.dgram_recorder(loop, methods)
  local t = loop:create_datagram_endpoint(function() return p end, opts)
  return t, p
end

--- Inside a task: a server on 127.0.0.1 port 0 and one client connected
-- to it. Returns server, client transport, client protocol, server
-- protocol (its connection_made has run).
function helper.pair(loop, server_proto, client_proto, server_opts)
  local accepted = loop:create_future()
  local server = loop:create_server(function()
    local p = server_proto or helper.recorder(loop)
    if not accepted:done() then
      accepted:set_result(p)
    end
    return p
  end, "127.0.0.1", 0, server_opts)
  local port = server:addresses()[1][2]
  local t, p = loop:create_connection(function()
    return client_proto or helper.recorder(loop)
  end, "127.0.0.1", port)
  local sp = accepted:await()
  if sp.made then
    sp.made:await()
  end
  return server, t, p, sp
end

--- pcall(fn, ...) expecting a failure: returns the error value.
function helper.fails(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  return err
end

-- A loop LuaJIT compiles (at once: see below); its end leaves the
-- compiled code through LuaJIT's trace exit.
local function compiled(n)
  local s = 0
  for i = 1, n do
    if i % 3 == 0 then
      s = s + i
    else
      s = s - 1
    end
  end
  return s
end
for _ = 1, 100 do
  compiled(100)
end

--- pcall(fn, ...), then at once (a call of a C function between would
-- hide the fault) code that LuaJIT compiled. LuaJIT without its fix of
-- its issue #1066 (Debian 12's LuaJIT) kept the loop's thread, where
-- callbacks run, as the running one when a C function that had run
-- callbacks raised into a pcall, and then crashed leaving compiled code.
-- Returns what pcall returned.
function helper.pcall_compiled(fn, ...)
  local ok, err = pcall(fn, ...)
  local s = compiled(1000)
  assert(s == 166166, "compiled code after the pcall went wrong")
  return ok, err
end

--- Inside a task: turns of the loop until cond() (the spec's deadline
-- bounds it).
function helper.until_true(cond)
  while not cond() do
    tapio.sleep(0)
  end
end

--- Inside a task: runs fn(...) as a task that awaits a create call's
-- future, and cancels that task as the future gets its result, before
-- the task resumes (the window between a call's completion and its
-- task's step: another task's timeout firing then, say); asserts that
-- the task ends cancelled, and returns the future's results (what the
-- call made, which the task never returned).
function helper.cancel_when_made(loop, fn, ...)
  local Future = require("tapio.future").Future
  local set_result = Future.set_result
  local t, fut
  Future.set_result = function(self, ...) -- every future's, for a while
    set_result(self, ...)
    if t and t._waiter == self then
      Future.set_result, fut = set_result, self
      assert(t:cancel(), "the task had ended")
    end
  end
  t = loop:create_task(fn, ...)
  local ok, err = pcall(t.await, t)
  Future.set_result = set_result
  assert(not ok and tapio.is_cancelled(err), "the task was not cancelled")
  return fut:result()
end

--- Runs fn(loop, finish) from a call_soon callback of a new loop (no
-- task: the async rule gives futures) until finish(...) is called, or the
-- deadline passes (an error); closes the loop and returns finish's
-- arguments.
function helper.in_callback(fn)
  local loop = tapio.new_loop()
  local result
  loop:call_soon(fn, loop, function(...)
    result = pack(...)
    loop:stop()
  end)
  local deadline = loop:call_later(helper.DEADLINE, function()
    loop:stop()
  end)
  loop:run_forever()
  deadline:cancel()
  loop:close()
  assert(result, "deadline passed before finish()")
  return unpack(result, 1, result.n)
end

--- Inside a task: writes data and drains, a loop turn apart, up to n
-- times, until drain raises; returns that error (nil if it never did).
function helper.write_until_error(writer, data, n)
  for _ = 1, n do
    writer:write(data)
    local ok, err = pcall(writer.drain, writer)
    if not ok then
      return err
    end
    tapio.sleep(0)
  end
end

--- Inside a task: a task of fn(...) that has run until it waits.
function helper.started(loop, fn, ...)
  local task = loop:create_task(fn, ...)
  tapio.sleep(0)
  return task
end

--- In a task: a parent's exchange with `cat`, line by line, through the
-- Process's streams (process_streams_spec.lua runs it with a real cat,
-- testing_subprocess_spec.lua with a fake one).
function helper.cat_lines()
  local assert = require "luassert" -- busted's, as the specs have it
  local p = tapio.create_subprocess_exec("cat", nil,
    { stdin = "pipe", stdout = "pipe", stderr = "pipe" })
  assert.are.equal("tapio.StreamWriter", getmetatable(p.stdin).__name)
  for i = 1, 3 do
    p.stdin:write("line " .. i .. "\n")
    p.stdin:drain()
    assert.are.equal("line " .. i .. "\n", p.stdout:readline())
  end
  p.stdin:close()
  p.stdin:wait_closed()
  assert.are.equal("", p.stdout:read())
  assert.are.equal("", p.stderr:read())
  assert.are.equal(0, p:wait())
end

--- Whether pid names no process (it was reaped, so not a zombie either).
function helper.gone(pid)
  local r = os.execute("kill -0 " .. pid .. " 2>/dev/null")
  if type(r) == "number" then -- LuaJIT: the status
    return r ~= 0
  end
  return not r
end

--- This process's children, zombies too (a child is listed until reaped),
-- as a sorted list of pids.
function helper.children()
  local pid = helper.pid()
  local f = assert(io.open(("/proc/%s/task/%s/children"):format(pid, pid)))
  local list = {}
  for child in f:read("*a"):gmatch("%d+") do
    list[#list + 1] = tonumber(child)
  end
  f:close()
  table.sort(list)
  return list
end

--- The port of a server's first listening socket.
function helper.port(server)
  return server:addresses()[1][2]
end

--- Registry entries that are not free-list links (numbers): what anchors
-- objects.
function helper.registry_count()
  local n = 0
  for _, v in pairs(debug.getregistry()) do
    if type(v) ~= "number" then
      n = n + 1
    end
  end
  return n
end

--- A full collection, twice (finalizers may free more).
function helper.collect()
  collectgarbage("collect")
  collectgarbage("collect")
end

--- The descriptors this process has open, each number's file as
-- /proc names it ("socket:[1234]"), and their count (the listing's own
-- among them: one more in every count alike). Listed here, with
-- LuaFileSystem (busted's), not by a child such as ls: the parent of a
-- popen may not have closed its copy of the child's end yet.
function helper.open_fds()
  local lfs = require "lfs"
  local files, n = {}, 0
  for name in lfs.dir("/proc/self/fd") do
    local fd = tonumber(name)
    if fd then
      files[fd] = lfs.symlinkattributes("/proc/self/fd/" .. name, "target")
                  or "?"
      n = n + 1
    end
  end
  return files, n
end

--- What loop and the Lua state hold, after a full collection: Lua's
-- memory in KiB (lua), the loop's registry references (refs), the
-- registry's anchors (registry), the core's memory (core) and this
-- process's descriptors (fds; files: each one's file).
function helper.measure(loop)
  if jit then
    jit.flush() -- LuaJIT's compiled traces are collectable objects too
  end
  helper.collect()
  local files, fds = helper.open_fds()
  helper.collect() -- the listing's directory
  return { lua = collectgarbage("count"), refs = loop:_debug().refs,
           registry = helper.registry_count(), core = loop:memory(),
           fds = fds, files = files }
end

-- The descriptors open in after (a helper.measure) and not in before
-- ("+7 socket:[123]"), or the other way round ("-7 ..."): a string of
-- the first 8.
local function fds_changed(before, after)
  local out = {}
  for fd, file in pairs(after.files) do
    if before.files[fd] ~= file then
      out[#out + 1] = ("+%d %s"):format(fd, file)
    end
  end
  for fd, file in pairs(before.files) do
    if after.files[fd] ~= file then
      out[#out + 1] = ("-%d %s"):format(fd, file)
    end
  end
  table.sort(out)
  local shown = table.concat(out, ", ", 1, math.min(#out, 8))
  return #out > 8 and ("%s, ... %d in all"):format(shown, #out) or shown
end

--- Asserts that after (a helper.measure) holds what before did: the same
-- references, anchors, core memory and descriptors, and Lua's memory at
-- most lua_kib (KiB) more. what names the operations in the message.
function helper.assert_steady(before, after, what, lua_kib)
  for _, k in ipairs { "refs", "registry", "core", "fds" } do
    if before[k] ~= after[k] then
      error(("%s: %s went from %s to %s%s"):format(what, k,
        tostring(before[k]), tostring(after[k]),
        k == "fds" and " (" .. fds_changed(before, after) .. ")" or ""), 2)
    end
  end
  if after.lua - before.lua > lua_kib then
    error(("%s: Lua memory grew by %.1f KiB (more than %g)"):format(what,
      after.lua - before.lua, lua_kib), 2)
  end
end

--- What the exception handler of a new loop hears once make(loop) has
-- run there as a task, the loop has turned a few more times (for the
-- done callbacks left) and what make dropped is collected: for the
-- reports of errors never retrieved. A list of contexts.
function helper.unretrieved(make)
  local loop = tapio.new_loop()
  local heard = {}
  loop:set_exception_handler(function(_, ctx)
    heard[#heard + 1] = ctx
  end)
  loop:run_until_complete(make, loop)
  loop:run_until_complete(function()
    for _ = 1, 3 do
      tapio.sleep(0)
    end
  end)
  helper.collect()
  loop:close()
  return heard
end

--- Runs a command through the shell; returns its output (stdout and
-- stderr together unless split) and exit status.
function helper.execute(cmd)
  local f = assert(io.popen(cmd .. " 2>&1; echo \"exit:$?\""))
  local out = f:read("*a")
  f:close()
  local status = tonumber(out:match("exit:(%d+)%s*$"))
  return out:gsub("exit:%d+%s*$", ""), status
end

--- A temporary file of size bytes that differ with their position, open
-- for reading; its content and its path (for a peer to compare with; the
-- caller removes it).
function helper.data_file(size)
  local parts = {}
  for i = 0, math.floor(size / 8) do
    parts[#parts + 1] = ("%08x"):format(i * 8)
  end
  local content = table.concat(parts):sub(1, size)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  return assert(io.open(path, "rb")), content, path
end

--- A new temporary directory holding files (name -> contents); its path.
function helper.files_dir(files)
  local dir = os.tmpname()
  os.remove(dir)
  local out, status = helper.execute("mkdir " .. dir)
  assert(status == 0, out)
  for name, contents in pairs(files) do
    local f = assert(io.open(dir .. "/" .. name, "wb"))
    f:write(contents)
    f:close()
  end
  return dir
end

--- Removes a directory files_dir made, with what is in it.
function helper.remove_dir(dir)
  helper.execute("rm -r " .. dir)
end

--- The `tapio` host program.
helper.HOST = os.getenv("TAPIO_HOST") or "build/tapio"

--- Inside a task: a server program of examples/ started by the `tapio`
-- program with args (a list), its stdout piped; returns the Process and
-- the port ending the first line it prints ("Serving on ... 8888)" or
-- "...:8888"), once it listens.
function helper.start_server_program(script, args)
  local argv = { script }
  for _, a in ipairs(args) do
    argv[#argv + 1] = a
  end
  local p = tapio.create_subprocess_exec(helper.HOST, argv,
                                         { stdout = tapio.PIPE })
  local line = p.stdout:readline()
  return p, tonumber(line:match("(%d+)%)?\n$"))
end

--- Inside a task: SIGTERM to a program started so; the lines it printed
-- after the first, once it exited with 0.
function helper.stop_server_program(p)
  p:send_signal("SIGTERM")
  return helper.output_lines(p)
end

--- Writes a script, runs `tapio script args...`; returns the output (the
-- script's path in it as SCRIPT) and the exit status.
function helper.run_script(source, args)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(source)
  f:close()
  -- no search paths: the host finds tapio without them
  local out, status = helper.execute(("env -u LUA_PATH -u LUA_CPATH %s %s %s")
    :format(helper.shell_quote(helper.HOST), helper.shell_quote(path),
      args or ""))
  os.remove(path)
  return out:gsub(path:gsub("%p", "%%%0"), "SCRIPT"), status
end

--- Whether a file (of any kind: sockets too) exists.
function helper.exists(path)
  return os.rename(path, path) and true or false
end

--- A Unix stream socket bound at path and listening (a descriptor).
function helper.unix_listener(path)
  local l = assert(tapio.socket(tapio.AF_UNIX, tapio.SOCK_STREAM))
  assert(tapio.bind(l, path))
  assert(tapio.listen(l))
  return l
end

--- Quotes a string for the shell.
function helper.shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- A subprocess protocol that records its callbacks in self.events
-- ("made", "out", "err", "lost0".."lost2", "exited", "lost", "pause",
-- "resume"; consecutive data of one fd counted once) and resolves futures:
-- self.made, self.exited (with the returncode), self.lost (the error or
-- false), self.pipe_lost[fd] (the same). self:output(fd) is what fd said.
-- methods (optional) override or add methods.
function helper.sub_recorder(loop, methods)
  local p = { events = {}, chunks = { {}, {} }, bytes = { 0, 0 },
              made = loop:create_future(), exited = loop:create_future(),
              lost = loop:create_future(),
              pipe_lost = { [0] = loop:create_future(),
                            loop:create_future(), loop:create_future() } }
  local function log(ev)
    if p.events[#p.events] ~= ev or (ev ~= "out" and ev ~= "err") then
      p.events[#p.events + 1] = ev
    end
  end
  function p:connection_made(transport)
    log("made")
    self.transport = transport
    self.pid = transport:get_pid()
    self.made:set_result(transport)
  end
  function p:pipe_data_received(fd, data)
    log(fd == 1 and "out" or "err")
    local c = self.chunks[fd]
    c[#c + 1] = data
    self.bytes[fd] = self.bytes[fd] + #data
  end
  function p:pipe_connection_lost(fd, err)
    log("lost" .. fd)
    self.pipe_lost[fd]:set_result(err or false)
  end
  function p:process_exited()
    log("exited")
    self.exited:set_result(self.transport:get_returncode())
  end
  function p:connection_lost(err)
    log("lost")
    self.lost:set_result(err or false)
  end
  function p:pause_writing()
    log("pause")
  end
  function p:resume_writing()
    log("resume")
  end
  function p:output(fd)
    return table.concat(self.chunks[fd])
  end
  --- Whether the events hold ev.
  function p:saw(ev)
    for _, e in ipairs(self.events) do
      if e == ev then
        return true
      end
    end
    return false
  end
  return with_methods(p, methods)
end

--- Inside a task: runs program with args (a list) and opts to its end;
-- returns the returncode and the recorder.
function helper.run_child(loop, program, args, opts)
  local _, p = loop:subprocess_exec(function()
    return helper.sub_recorder(loop)
  end, program, args, opts)
  p.lost:await()
  return p.exited:result(), p
end

--- Inside a task: the lines a Process (stdout piped) printed to its end;
-- it must exit with 0.
function helper.output_lines(p)
  local out = {}
  for line in p.stdout:read():gmatch("[^\n]+") do
    out[#out + 1] = line
  end
  local status = p:wait()
  assert(status == 0, "the child exited with " .. tostring(status))
  return out
end

--- This process's id (the interpreter running the specs).
function helper.pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*l"):match("^(%d+)")
  f:close()
  return pid
end

--- The sockets this process has open, as a set of their inodes (other
-- descriptors come and go with the run: a child's pipes, the lookups').
function helper.open_sockets()
  local ls = io.popen("ls -l /proc/" .. helper.pid() .. "/fd")
  local set = {}
  for line in ls:lines() do
    local inode = line:match("socket:%[(%d+)%]$")
    if inode then
      set[inode] = true
    end
  end
  ls:close()
  return set
end

--- The sockets open now that were not in before (a set of
-- helper.open_sockets()), as a sorted list of inodes.
function helper.new_sockets(before)
  local out = {}
  for k in pairs(helper.open_sockets()) do
    if not before[k] then
      out[#out + 1] = k
    end
  end
  table.sort(out)
  return out
end

local abstract_names = 0

--- A Linux abstract socket name ("@" not included) no other process holds:
-- prefix, this process's id and a count. The names are shared by every
-- process on the host, and LuaJIT's math.random starts from the same seed
-- in each, so a name from the time and math.random collided when two runs
-- of a spec began in the same second.
function helper.abstract_name(prefix)
  abstract_names = abstract_names + 1
  return ("%s-%s-%d"):format(prefix, helper.pid(), abstract_names)
end

--- Inside a task: sends signal sig (a name, "USR1") to this process from
-- another one (kill(1)); os.execute would not do, system() ignores SIGINT
-- in its caller meanwhile.
function helper.kill(loop, sig)
  local status = helper.run_child(loop, "kill", { "-s", sig, helper.pid() })
  assert(status == 0, "kill -s " .. sig .. " failed")
end

-- ---- TLS -------------------------------------------------------------------

local certs_dir

--- The TLS tests' certificates' directory (TAPIO_TLS_CERTS, or one in
-- TMPDIR), made by spec/tls/make_certs.sh on first use.
function helper.certs()
  if not certs_dir then
    local dir = os.getenv("TAPIO_TLS_CERTS") or
      ((os.getenv("TMPDIR") or "/tmp") .. "/tapio-tls-certs-spec")
    local out, status = helper.execute("sh spec/tls/make_certs.sh "
                                       .. helper.shell_quote(dir))
    assert(status == 0, "could not make the certificates: " .. out)
    certs_dir = dir
  end
  return certs_dir
end

--- The path of one of them ("ca.pem").
function helper.cert(name)
  return helper.certs() .. "/" .. name
end

--- A server context from name.pem and name.key ("server"), with more
-- options.
function helper.server_ctx(name, more)
  local opts = { side = "server", cert_file = helper.cert((name or "server")
                 .. ".pem"), key_file = helper.cert((name or "server")
                 .. ".key") }
  for k, v in pairs(more or {}) do opts[k] = v end
  return tapio.tls_context(opts)
end

--- A client context trusting the tests' CA, with more options.
function helper.client_ctx(more)
  local opts = { cafile = helper.cert("ca.pem") }
  for k, v in pairs(more or {}) do opts[k] = v end
  return tapio.tls_context(opts)
end

return helper
