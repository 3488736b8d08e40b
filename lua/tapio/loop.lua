--- tapio.loop (internal): the loop and server methods that complete
-- later (create_connection and friends, server:wait_closed,
-- server:serve_forever), written in Lua over the C side's completion
-- callbacks, with the async rule.
local core = require "tapio.core"
local U = require "tapio.util"
local F = require "tapio.future"

local check_self, is_cancelled = U.check_self, U.api.is_cancelled
local new_future, resolve, await = F.new_future, F.resolve, F.await
local current_task = F.api.current_task
local PARK, CANCEL, cancelled = F.PARK, F.CANCEL, F.cancelled
local pack, unpack, yield = U.pack, U.unpack, coroutine.yield
local unpark = require("tapio.task").unpark
local get_running_loop, running = core.get_running_loop, coroutine.running
local tasks = F.tasks
local Loop = core.loop_methods
local Server = core.server_methods
local server_mt = U.server_mt

-- start: the create calls as futures, for the modules that wrap them
-- (tapio.streams, tapio.subprocess).
local M = {}

-- ---- Loop methods that complete later ------------------------------------

-- fut fails with err; one that loop:close failed (ECANCELED) is not
-- reported, as nothing will run to look (asyncio's close leaves such a
-- future pending).
local function fail(fut, err)
  fut:set_exception(err)
  if fut._loop:is_closed() then
    F.retrieved(fut)
  end
end

-- Cancelling fut cancels what the C side has pending for it: the core
-- frees it and calls nobody.
local function cancels(fut, loop, pending)
  fut._cancel_hook = function()
    loop:_cancel(pending)
  end
end

-- The completion callback the C side calls with (err) or (nil, ...).
local function completion(fut)
  return function(err, obj, ...)
    fut._cancel_hook = nil
    if fut:done() then -- done meanwhile: nobody wants what came
      if err == nil and type(obj) == "userdata" then
        obj:close()
      end
      return
    end
    if err ~= nil then
      fail(fut, err)
    else
      fut:set_result(obj, ...)
    end
  end
end

-- Starts one of the C side's create calls or lookups: c_create(self,
-- completion callback, the user's arguments) checks them all, then returns
-- what is pending, or nil, err when the operation failed at once. Returns
-- the future of its results, or nil and the message of an argument error
-- (raised through pcall, so it carries no position: the caller raises it
-- at its own caller's line, as an error of the method itself). Cancelling
-- the future (or the task awaiting it) cancels what is pending at once:
-- the core frees it and calls nobody (start_tls: the connection closes).
-- Real I/O asked of a virtual-clock loop (tapio.testing's) is a mistake
-- of the program's too: an error message, named after the method (names,
-- from completing).
local EVIRTUAL = core.errors.EVIRTUAL
local names = {}

-- c_create(self, cb, ...) started with cb its completion: what is
-- pending; or nil and the message of an argument error (as start's); or
-- false and the error of an operation that failed at once.
local function begin(c_create, self, cb, ...)
  local ok, pending, err = pcall(c_create, self, cb, ...)
  if not ok then
    return nil, pending
  end
  if pending then
    return pending
  end
  if type(err) == "table" and err.code == EVIRTUAL then
    local name = names[c_create] or "create"
    if name:find("^subprocess_") then -- the core's words say what to do
      return nil, ("tapio: loop:%s: %s"):format(name, err.message)
    end
    return nil, ("tapio: loop:%s: %s (its servers and connections meet "
      .. "in memory; tapio.testing.pipe_pair joins protocols)"):format(
      name, err.message)
  end
  return false, err
end

local function start(c_create, self, ...)
  local fut = new_future(self)
  local pending, err = begin(c_create, self, completion(fut), ...)
  if pending == nil then
    return nil, err
  end
  if not pending then
    fut:set_exception(err)
  elseif c_create == Loop._start_tls then
    -- a handshake under way cannot be taken back: the connection goes,
    -- as asyncio's start_tls closes it
    local transport = ...
    fut._cancel_hook = function()
      transport:close()
    end
  else
    cancels(fut, self, pending)
  end
  return fut
end
M.start = start

-- await_made(fut): await a create call's future in a task, and return
-- what the call made (a transport, a server...). A task cancelled after
-- the call completed and before it resumed never returns it, so nobody
-- could close it, and its loop keeps it open for good: closed here,
-- as asyncio's create calls close what they made when cancelled at
-- their last wait, then the cancellation raised.
local function made(fut, ok, ...)
  if ok then
    return ...
  end
  local err = ...
  if is_cancelled(err) and fut._state == "finished" then
    local obj = fut._result[1]
    if type(obj) == "userdata" then
      obj:close()
    end
  end
  error(err, 0)
end

local function await_made(fut)
  return made(fut, pcall(await, fut))
end
M.await_made = await_made

--- The name of a create call's method ("create_server"), for a module
-- that builds a function of its own on it.
function M.method_name(c_create)
  return names[c_create]
end

-- The async rule for the C side's create calls and lookups; name: the
-- method's. makes: the call makes a transport or a server (closed when
-- its task is cancelled once it was made: see await_made); the others
-- (lookups) await as they are. (The sock_* calls: sock_call, below.)
local function completing(c_create, name, first_only, makes)
  names[c_create] = name
  local wait = makes and await_made or await
  return function(self, ...)
    local task = current_task()
    if task and task._loop ~= self
       and getmetatable(self) == getmetatable(task._loop) then
      error(("tapio: loop:%s: the loop is another loop than the task's "
        .. "(nothing of the task's loop would complete it)"):format(name), 2)
    end
    local fut, msg = start(c_create, self, ...)
    if not fut then
      error(msg, 2)
    end
    if not task then
      return fut
    end
    if first_only then
      return (wait(fut))
    end
    return wait(fut)
  end
end

-- completing for a call that makes a transport or a server.
local function making(c_create, name, first_only)
  return completing(c_create, name, first_only, true)
end

-- asyncio's local_addr = {host, port [, flowinfo, scope_id]} (or an
-- address value, a sockname) is the core's local_host, local_port and
-- local_flowinfo: opts, or a copy with them in its place. fn names the
-- caller in an error, raised at its caller's line.
local function local_addr(opts, fn)
  local addr = type(opts) == "table" and opts.local_addr
  if addr == nil or addr == false then
    return opts
  end
  local host, port, flowinfo = core._address_parts(addr)
  if host == nil then -- port: what is wrong
    error(("tapio: %s: bad option 'local_addr' (%s)"):format(fn, port), 3)
  end
  local copy = {}
  for k, v in pairs(opts) do
    copy[k] = v
  end
  copy.local_addr, copy.local_host, copy.local_port = nil, host, port
  copy.local_flowinfo = flowinfo
  return copy
end
M.local_addr = local_addr

--- loop:create_connection(factory, host, port, opts) -> transport, protocol
-- loop:create_connection(factory, {sock = fd, ...}) wraps a connected fd.
-- (Tail calls: an argument error names the caller's line.)
local create_connection =
  making(Loop._create_connection, "create_connection")
function Loop.create_connection(self, factory, host, port, opts)
  local fn = "loop:create_connection"
  if type(host) == "table" and port == nil and opts == nil then
    return create_connection(self, factory, local_addr(host, fn))
  end
  return create_connection(self, factory, host, port, local_addr(opts, fn))
end

--- loop:create_unix_connection(factory, path, opts) -> transport, protocol
Loop.create_unix_connection =
  making(Loop._create_unix_connection, "create_unix_connection")

--- loop:connect_accepted_socket(factory, fd, opts) -> transport, protocol
Loop.connect_accepted_socket =
  making(Loop._connect_accepted_socket, "connect_accepted_socket")

--- loop:create_datagram_endpoint(factory, opts) -> transport, protocol
-- opts: local_addr, remote_addr ({host, port} or a Unix path), family,
-- reuse_port, allow_broadcast, sock.
Loop.create_datagram_endpoint =
  making(Loop._create_datagram_endpoint, "create_datagram_endpoint")

--- loop:getaddrinfo(host, port, opts) -> list of entries
-- Each entry is {family, type, proto, canonname, addr}, also by name.
Loop.getaddrinfo = completing(Loop._getaddrinfo, "getaddrinfo")

--- loop:getnameinfo(addr, flags) -> host, service
Loop.getnameinfo = completing(Loop._getnameinfo, "getnameinfo")

-- A Lua file handed to a sendfile is left where the core leaves its
-- descriptor, at offset + the bytes sent (as asyncio leaves it), however
-- fut ends: its buffered position follows (file:seek). Done or failed,
-- the count says where; cancelled, the descriptor does (before: its
-- offset before the call; moved only when some was sent).
local function file_follows(loop, fut, file, offset, before)
  if io.type(file) ~= "file" then
    return
  end
  fut:add_done_callback(function(f)
    -- the error, not retrieved: it stays the caller's to look at
    local err = f._state == "failed" and f._exception
    local sent = err and err.count or (f:cancelled() or err) and 0
      or f:result()
    if sent > 0 then
      pcall(file.seek, file, "set", (offset or 0) + sent)
    end
  end)
  local cancel = fut._cancel_hook
  if before and cancel then
    fut._cancel_hook = function()
      cancel()
      local at = loop:_fd_offset(file)
      if at and at ~= before then
        pcall(file.seek, file, "set", at)
      end
    end
  end
end

-- Where a Lua file's descriptor is now (nil for a descriptor given).
local function fd_offset(loop, file)
  return io.type(file) == "file" and loop:_fd_offset(file) or nil
end

local function check_open(file, name)
  if io.type(file) == "closed file" then
    error(("tapio: loop:%s: bad argument #2 'file' (closed file)"):format(
      name), 3)
  end
end

-- loop:sendfile and loop:sock_sendfile: the binding's c_send (named name)
-- sending file to `to` (a transport, or a socket's descriptor), `last`
-- its options (sendfile's opts, sock_sendfile's fallback); a Lua file
-- then follows its descriptor (file_follows).
local function sending(c_send, name)
  names[c_send] = name
  return function(self, to, file, offset, count, last)
    check_self(self, U.loop_mt, "loop:" .. name)
    check_open(file, name)
    local before = fd_offset(self, file)
    local fut, msg = start(c_send, self, to, file, offset, count, last)
    if not fut then
      error(msg, 2)
    end
    file_follows(self, fut, file, offset, before)
    return resolve(fut)
  end
end

--- loop:sendfile(transport, file, offset, count, opts) -> bytes sent
-- asyncio's: file (a Lua file or a descriptor) from offset (0), count
-- bytes (nil: to its end), natively on a plain socket, else read and
-- written (unless opts.fallback is false). A Lua file's position is then
-- offset + sent, also when cancelled (as asyncio leaves it); a failure's
-- error has .count.
Loop.sendfile = sending(Loop._sendfile, "sendfile")

--- loop:sock_sendfile(fd, file, offset, count, fallback) -> bytes sent
-- asyncio's: loop:sendfile's sending on fd, a non-blocking stream socket
-- of the caller's, as the other sock_* operations (below); fallback
-- false: ENOTSUP for a file the kernel cannot send from. Cancelled, the
-- file is at offset + the bytes sent too (asyncio's): a Lua file's
-- position follows its descriptor's.
Loop.sock_sendfile = sending(Loop._sock_sendfile, "sock_sendfile")

-- asyncio's "working with socket objects directly", on a descriptor the
-- caller owns: each tries at once, waits for readiness only when the
-- socket has nothing (or no room) for now; cancelling the task stops the
-- wait and loses no byte.
--
-- In a task of its loop, such a call parks the task on the call, and
-- the call's completion resumes it there and then (tapio.task's unpark),
-- as a stream's read does. Awaiting a future, the task would resume in a
-- step of its own, later: a task cancelled in between raised the
-- cancellation, and what the call had brought was lost (the bytes
-- received, the socket accepted, the news that the bytes went), as in
-- asyncio. Parked, a cancel comes either before the completion, which
-- the core then never makes (nothing is taken from the socket), or
-- after the task has the results: at its next wait.

-- The completion of a call a task is parked on: resumes it with (err,
-- ...). One nobody waits for frees what it brought (release): when
-- loop:close ended the call (ECANCELED: the task stays parked, as one
-- awaiting a future stays pending, asyncio's close leaving it so), or
-- when the task left its park (cancelled, the core calls nobody: never).
local function answer(loop, task, park, release, ...)
  if loop:is_closed() or not unpark(task, park, pack(...)) then
    if release then
      release(...)
    end
  end
end

local function close_accepted(err, fd)
  if err == nil then
    core.close_fd(fd)
  end
end

local function parked_call(c_call, self, task, release, ...)
  local park = {}
  local pending, err = begin(c_call, self, function(...)
    answer(self, task, park, release, ...)
  end, ...)
  if pending == nil then
    error(err, 2) -- (tail-called: the method's caller's line)
  elseif not pending then
    error(err, 0)
  end
  park._on_cancel = function()
    self:_cancel(pending)
  end
  if task._must_cancel then -- it cancelled itself before: the park ends at
    self:_cancel(pending) -- once (tapio.task), the call with it, untried
  end
  local r = yield(PARK, park)
  if r == CANCEL then
    cancelled()
  end
  if r[1] ~= nil then
    error(r[1], 0)
  end
  return unpack(r, 2, r.n)
end

-- The async rule for a sock_* call (c_call, named name): parked on in a
-- task of its loop, else a future (completing's). release: what frees
-- its results when nobody takes them.
local function sock_call(c_call, name, release)
  local in_future = completing(c_call, name)
  return function(self, ...)
    local task = current_task()
    if not task or task._loop ~= self then
      return in_future(self, ...)
    end
    return parked_call(c_call, self, task, release, ...)
  end
end

--- loop:sock_recv(fd, n) -> data ("" at the end of a stream)
Loop.sock_recv = sock_call(Loop._sock_recv, "sock_recv")

--- loop:sock_recvfrom(fd, n) -> data, address
Loop.sock_recvfrom = sock_call(Loop._sock_recvfrom, "sock_recvfrom")

--- loop:sock_recv_into(fd, buf) -> count: at most #buf bytes into buf (a
-- tapio.buffer) from its first byte (0 at the end of a stream)
Loop.sock_recv_into = sock_call(Loop._sock_recv_into, "sock_recv_into")

--- loop:sock_recvfrom_into(fd, buf, nbytes) -> count, address: one
-- datagram into buf, at most nbytes of it (nil or 0: #buf; more than #buf
-- is an error)
Loop.sock_recvfrom_into =
  sock_call(Loop._sock_recvfrom_into, "sock_recvfrom_into")

--- loop:sock_sendall(fd, data): every byte, or the error (with .count,
-- the bytes sent before it)
Loop.sock_sendall = sock_call(Loop._sock_sendall, "sock_sendall")

--- loop:sock_sendto(fd, data, addr) -> bytes sent
Loop.sock_sendto = sock_call(Loop._sock_sendto, "sock_sendto")

--- loop:sock_connect(fd, addr): addr numeric ({host, port}, an address
-- value, a Unix path)
Loop.sock_connect = sock_call(Loop._sock_connect, "sock_connect")

--- loop:sock_accept(fd) -> new fd (non-blocking, close-on-exec), address
Loop.sock_accept = sock_call(Loop._sock_accept, "sock_accept",
  close_accepted)

--- loop:create_server(factory, host, port, opts) -> server
-- host: nil (every interface), a string, or a list of strings.
Loop.create_server = making(Loop._create_server, "create_server")

--- loop:create_unix_server(factory, path, opts) -> server
Loop.create_unix_server =
  making(Loop._create_unix_server, "create_unix_server")

--- loop:connect_read_pipe(factory, fd) -> transport, protocol
Loop.connect_read_pipe =
  making(Loop._connect_read_pipe, "connect_read_pipe")

--- loop:connect_write_pipe(factory, fd) -> transport, protocol
Loop.connect_write_pipe =
  making(Loop._connect_write_pipe, "connect_write_pipe")

--- loop:subprocess_exec(factory, program, {args...}, opts)
-- -> transport, protocol
Loop.subprocess_exec = making(Loop._subprocess_exec, "subprocess_exec")

--- loop:subprocess_shell(factory, cmd, opts) -> transport, protocol
Loop.subprocess_shell = making(Loop._subprocess_shell, "subprocess_shell")

--- loop:start_tls(transport, protocol, sslcontext, opts, buffered)
-- -> transport: upgrades the connection in place; buffered (a string) is
-- what a reader took off the connection already, fed to the handshake.
-- The transport only, not the protocol after it; no wrapper around it, so
-- that an argument error names the caller's line.
Loop.start_tls = making(Loop._start_tls, "start_tls", true)

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
    local ok, err = pcall(self.start_serving, self)
    if not ok then -- its reason (closed), as ours, at the caller's line
      error("tapio: server:serve_forever: "
            .. tostring(err):match("start_serving: (.*)$"), 2)
    end
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

--- `local server <close> = tapio.start_server(...)` (Lua 5.4) is
-- asyncio's `async with server`: at the block's end, however it ends, the
-- server is closed and, in a task, waited closed (its __aexit__; Lua 5.4
-- lets a __close yield in a coroutine). Outside a task nothing can wait:
-- closed only. (LuaJIT has no <close>: the field is not looked at.)
server_mt.__close = function(self)
  self:close()
  if current_task() then
    self:wait_closed()
  end
end

-- ---- Blocking work off the loop --------------------------------------------

-- A job for the loop's worker pool (lua/work.c): fn, whose position in
-- the caller's arguments is fnpos, runs on a pool thread in a Lua state
-- of its own, as its bytecode; its arguments and results are copied. The
-- async rule: in a task, its results (or its error, raised); elsewhere a
-- future. Cancelling drops a job not started; a running one finishes
-- and its results are dropped. The job's completion is cb(arg, job),
-- where core.work_results(job) gives fn's results or raises its error.
local run_job, job_results = Loop._run_in_executor, core.work_results

local function settle(fut, ok, ...)
  if ok then
    fut:set_result(...)
  else
    fail(fut, (...))
  end
end

local function job_to_future(fut, job)
  fut._cancel_hook = nil
  if not fut:done() then -- else done meanwhile: nobody wants the results
    settle(fut, pcall(job_results, job))
  end
end

local function queue_work(loop, name, fnpos, fn, ...)
  local fut = new_future(loop)
  local job, err = run_job(loop, job_to_future, fut, name, fnpos, fn, ...)
  if not job then
    fut:set_exception(err)
  else
    cancels(fut, loop, job)
  end
  return fut
end

-- The same in a task: the task parks on the job, and the job's
-- completion is tapio.task's unpark(task, job), which resumes it there
-- and then, with no future, closure or scheduled call between (as a
-- stream's read wakes its task); back in the task, work_results(job) gives
-- the results. The core runs the completions of the jobs a wakeup brought
-- behind the timers due then (src/loop.c's run_jobs_done), where asyncio
-- runs the step of a task whose to_thread future was set. task:cancel
-- calls job:_on_cancel(), which drops the job at once (before a pool
-- thread can take it), or its results once it runs. Both are tail-called
-- by the methods, and the C side's errors of their arguments name the
-- line of the methods' caller (lua/work.c's CALLER).
local function work_in_task(loop, task, name, fnpos, fn, ...)
  local job, err = run_job(loop, unpark, task, name, fnpos, fn, ...)
  if not job then
    error(err, 0)
  end
  if yield(PARK, job) == CANCEL then -- task:cancel dropped the job first
    cancelled()
  end
  return job_results(job)
end

--- loop:run_in_executor(executor, fn, ...) -> fn's results
-- executor must be nil: jobs run on the loop's own pool (its size:
-- TAPIO_THREADPOOL_SIZE, default 4).
function Loop:run_in_executor(executor, fn, ...)
  if executor ~= nil then
    error("tapio: loop:run_in_executor: bad argument #1 'executor' (nil "
      .. "expected: jobs run on the loop's own pool)", 2)
  end
  local task = current_task()
  if task and task._loop ~= self then -- nothing of its loop would end it
    error("tapio: loop:run_in_executor: the loop is another loop than the "
      .. "task's (its job's end would never resume the task)", 2)
  elseif task then
    return work_in_task(self, task, "loop:run_in_executor", 2, fn, ...)
  end
  return queue_work(self, "loop:run_in_executor", 2, fn, ...)
end

M.api = {}

--- tapio.to_thread(fn, ...) -> fn's results: asyncio's to_thread, on the
-- running loop's pool.
function M.api.to_thread(fn, ...)
  local co = running()
  local task = co and tasks[co]
  if task then -- a task runs from its own loop
    return work_in_task(task._loop, task, "tapio.to_thread", 1, fn, ...)
  end
  local loop = get_running_loop() or U.running_loop("to_thread")
  return queue_work(loop, "tapio.to_thread", 1, fn, ...)
end

return M
