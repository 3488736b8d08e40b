--- tapio.streams (internal): StreamWriter (start_tls too), the protocol
-- that joins a connection to a StreamReader and a StreamWriter,
-- open_connection, start_server and their Unix twins: asyncio's streams
-- page.
--
-- A task reads and writes a connection in straight-line code:
--
--   local reader, writer = tapio.open_connection("127.0.0.1", 8888)
--   writer:write("hello")
--   writer:drain()
--   local data = reader:read(100)
--
-- Flow control: drain() suspends while the transport is paused for
-- writing (any number of tasks may wait in it: all wake on resume), and
-- raises the connection's error once it is lost. A cancelled drain leaves
-- the writer usable.
local core = require "tapio.core"
local U = require "tapio.util"
local F = require "tapio.future"
local T = require "tapio.task"
local L = require "tapio.loop"
local R = require "tapio.reader"

local M = { api = {} } -- api: what `tapio` holds too (see tapio.util)
-- debug.getmetatable: no __metatable lookup (half the cost of getmetatable)
local getmt = debug and debug.getmetatable or getmetatable
local api = M.api
local current_task, await, park = F.api.current_task, F.await, F.park
local tasks, running = F.tasks, coroutine.running
local async, new_reader = R.async, R.new_reader
local Loop = core.loop_methods

-- ---- StreamWriter ----------------------------------------------------------

-- check_writer raises for a bad self; the methods call it only when the
-- metatable is not StreamWriter's, so the good path makes no call.
local StreamWriter, check_writer = U.class("tapio.StreamWriter")
M.StreamWriter = StreamWriter
-- The writers made here, each with the task that drained it last (see
-- future.lua's owners): write checks self with one lookup in it, drain
-- self and that a task runs it.
local writers = F.owners()
-- A connection's transport -> its writer (weak both ways), for
-- flush_batched.
local writer_of = setmetatable({}, { __mode = "kv" })

-- A writer on transport (a stream or a write pipe), reading the
-- connection's errors from reader (nil for a pipe).
function M.new_writer(transport, reader, loop)
  local writer = setmetatable({
    transport = transport, _reader = reader, _loop = loop,
    -- The transport's _stream_write, looked up once: a transport keeps
    -- its class (no metatable lookup on the userdata per write).
    _send = transport._stream_write,
    _paused = false,    -- the transport asked us to stop writing
    _drains = {},       -- the tasks waiting in drain
    _ends = {},         -- ... in wait_closed, or in drain while closing
    _closing = false,   -- close() was called
    _eof = false,       -- write_eof() was called
    _shut = false,      -- _eof or _lost: write's usual case tests this
    _pending = {}, _pending_size = 0, -- writes batched (see write)
    _queued = false,    -- a flush is deferred to the task's stop
    _lost = false, _error = nil,
    _ending = false,    -- the transport is closing (see ending)
    _busy = false,      -- _paused, _closing, _ending or _lost: drain's test
    _protocol = nil,    -- a connection's StreamProtocol (not a pipe's)
  }, StreamWriter)
  writers[writer] = F.NOBODY
  if reader then
    writer_of[transport] = writer
    transport:_batched(M.flush_batched)
  end
  return writer
end

-- Parks the task in the list self[key] until wake_all (see future.lua's
-- park); tasks cancelled meanwhile are taken out of it first.
local function wait_in(self, key)
  local list = self[key]
  for i = #list, 1, -1 do
    if list[i]._parked ~= list then
      table.remove(list, i)
    end
  end
  list[#list + 1] = current_task()
  park(list)
end
M.wait_in = wait_in

-- Resumes every task parked in self[key] (all of them: several tasks
-- may wait in drain, cpython#74116) with unpark: T.unpark there and then
-- (drain, on resume_writing), T.unpark_soon (the end).
local function wake_all(self, key, unpark)
  local list = self[key]
  if #list == 0 then
    return
  end
  self[key] = {}
  for i = 1, #list do
    unpark(list[i], list)
  end
end
M.wake_all = wake_all

function M.pause_writing(self)
  self._paused, self._busy = true, true
end

function M.resume_writing(self)
  self._paused, self._busy = false, self._closing or self._lost
                                    or self._ending
  wake_all(self, "_drains", T.unpark)
end

-- The transport is closing, not by this writer's close (a send failed,
-- the transport was closed or aborted itself): what is written is
-- dropped, so drain waits for the end and raises, as asyncio's drain
-- yields for connection_lost then. A write-and-drain loop would
-- otherwise never hear of the end.
local function ending(self)
  self._ending, self._busy = true, true
end

-- The transport has ended, with err (nil: cleanly).
function M.writer_lost(self, err)
  self._lost, self._error = true, err
  self._shut = true
  self._paused, self._busy = false, true
  wake_all(self, "_drains", T.unpark_soon)
  wake_all(self, "_ends", T.unpark_soon)
end

-- Batching: the writes a task makes while its connection's reader still
-- holds input (a reply per line read, say) wait in _pending, and go out
-- in one system call when the reader runs dry, 256 KiB are pending, or
-- the task waits or ends (T.defer): as uvloop sends what one loop
-- iteration wrote at its end. Any other write goes at once.
local BATCH = 262144

-- Sends what is pending, in one write or writev. Run from a task's stop
-- too, so a failure goes to the exception handler, never up.
local function flush(self)
  local pending = self._pending
  local n = #pending
  self._queued = false
  if n == 0 then
    return
  end
  self._pending_size = 0
  if not self._lost then
    local t = self.transport
    local ok, closing
    if n == 1 then
      ok, closing = pcall(self._send, t, pending[1])
    else
      ok, closing = pcall(t._stream_writelines, t, pending)
    end
    if not ok then
      self._loop:call_exception_handler({ message = "error in a write of "
        .. "a StreamWriter", exception = closing, transport = t })
    elseif closing then
      ending(self)
    end
  end
  for i = n, 1, -1 do
    pending[i] = nil
  end
end

-- Called by the transport's own close, abort and write_eof (see
-- transport.c's _batched): what the writer batched goes first.
function M.flush_batched(transport)
  local writer = writer_of[transport]
  if writer and writer._pending_size > 0 then
    flush(writer)
  end
end

local function add(self, data)
  local pending = self._pending
  pending[#pending + 1] = data
  self._pending_size = self._pending_size + #data
end

-- After data was added to _pending: wait for more, or send it all now.
local function settle(self)
  local reader, co = self._reader, running()
  if reader and reader._size > 0 and self._pending_size < BATCH
     and co and tasks[co] then
    if not self._queued then
      self._queued = true
      T.defer(flush, self)
    end
  else
    flush(self)
  end
end

-- Whether a write goes straight to the transport: nothing is pending,
-- and no more input waits to be read.
local function direct(self)
  local reader = self._reader
  return self._pending_size == 0 and not (reader and reader._size > 0)
end

local function check_open(self, fn)
  if self._eof then
    error(("tapio: %s: cannot write after write_eof()"):format(fn), 3)
  end
end

--- writer:write(data): sends data (or buffers it, see above). Dropped
-- once the connection is lost (as asyncio does): drain() raises then.
function StreamWriter:write(data)
  if not writers[self] then
    check_writer(self, "writer:write")
  end
  local reader, pending_size = self._reader, self._pending_size
  if pending_size == 0 and not (self._shut or reader and reader._size > 0)
  then
    -- The usual case: at once (bad data raises there, as below); true
    -- when the transport is closing.
    if self._send(self.transport, data) then
      ending(self)
    end
    return
  end
  if type(data) ~= "string" then
    self._send(self.transport, data) -- raises write's error (one message)
  end
  if self._lost then
    return
  elseif self._eof then
    check_open(self, "writer:write")
  end
  pending_size = pending_size + #data
  if self._queued and reader._size > 0 and pending_size < BATCH then
    -- Batching, the flush deferred already: settle's first case inline.
    local pending = self._pending
    pending[#pending + 1] = data
    self._pending_size = pending_size
    return
  end
  add(self, data)
  settle(self)
end

function StreamWriter:writelines(list)
  if getmt(self) ~= StreamWriter then
    check_writer(self, "writer:writelines")
  end
  if type(list) ~= "table" then
    error("tapio: writer:writelines: bad argument #1 'data' (table "
      .. "expected, got " .. U.typename(list) .. ")", 2)
  end
  local why = U.not_a_list(list)
  if why then
    error("tapio: writer:writelines: bad argument #1 'data' (list "
      .. "expected, " .. why .. ")", 2)
  end
  for i = 1, #list do
    if type(list[i]) ~= "string" then
      error(("tapio: writer:writelines: bad argument #1 'data' (string "
        .. "expected at index %d, got %s)"):format(i, U.typename(list[i])), 2)
    end
  end
  if self._lost then
    return
  end
  check_open(self, "writer:writelines")
  if direct(self) then
    if self.transport:_stream_writelines(list) then
      ending(self)
    end
    return
  end
  for i = 1, #list do
    add(self, list[i])
  end
  settle(self)
end

local function lost_error(self)
  return self._error or core.error(core.errors.ECONNRESET, "connection lost")
end

local function drain(self)
  local reader = self._reader
  if reader and reader._failed then
    error(reader._exception, 0)
  end
  if (self._closing or self._ending) and not self._lost then
    wait_in(self, "_ends") -- closing: wait for the end
  end
  if self._lost then
    error(lost_error(self), 0)
  end
  if not self._paused then
    return
  end
  wait_in(self, "_drains")
  if self._lost then
    error(lost_error(self), 0)
  end
end

--- writer:drain(): returns once it is right to write again (at once
-- unless the transport is paused for writing); raises the connection's
-- error (ECONNRESET when it ended cleanly) once it is lost, or after
-- close() once it is.
function StreamWriter:drain()
  local task = writers[self]
  -- The usual case, in the task that drained last: nothing to wait for,
  -- nothing to raise.
  if task and task._co == running() and not self._busy then
    local reader = self._reader
    if not (reader and reader._failed) then
      return
    end
  end
  if not task then
    check_writer(self, "writer:drain")
  end
  F.bind(writers, self, running(), "writer:drain")
  return async(self, "writer:drain", drain)
end

function StreamWriter:close()
  if getmt(self) ~= StreamWriter then
    check_writer(self, "writer:close")
  end
  self._closing, self._busy = true, true
  flush(self)
  self.transport:close()
end

function StreamWriter:is_closing()
  if getmt(self) ~= StreamWriter then
    check_writer(self, "writer:is_closing")
  end
  return self.transport:is_closing()
end

function StreamWriter:can_write_eof()
  if getmt(self) ~= StreamWriter then
    check_writer(self, "writer:can_write_eof")
  end
  return self.transport:can_write_eof() -- after the end too, as asyncio's
end

--- writer:write_eof(): ends the writing side once the buffer is flushed
-- (harmless once the connection is lost).
function StreamWriter:write_eof()
  if getmt(self) ~= StreamWriter then
    check_writer(self, "writer:write_eof")
  end
  if not self._lost then
    if not self.transport:can_write_eof() then -- TLS: nothing would go
      error("tapio: writer:write_eof: TLS has no half-close "
            .. "(can_write_eof() is false)", 2)
    end
    flush(self)
    self._eof, self._shut = true, true
    self.transport:write_eof()
  end
end

--- writer:get_extra_info(name [, default]): the transport's (after the
-- end too: what the closed transport kept).
function StreamWriter:get_extra_info(name, default)
  if getmt(self) ~= StreamWriter then
    check_writer(self, "writer:get_extra_info")
  end
  return self.transport:get_extra_info(name, default)
end

--- writer:get_write_buffer_size(): the bytes written and not yet sent:
-- what the writer batched (see write) and the transport's buffer; 0 once
-- the connection is lost (tapio's: asyncio's writer batches nothing, and
-- its transport answers after the end too).
function StreamWriter:get_write_buffer_size()
  if getmt(self) ~= StreamWriter then
    check_writer(self, "writer:get_write_buffer_size")
  end
  if self._lost then
    return 0
  end
  return self._pending_size + self.transport:get_write_buffer_size()
end

local function wait_closed(self)
  if not self._lost then
    wait_in(self, "_ends")
  end
  if self._error ~= nil then
    error(self._error, 0)
  end
end

--- writer:wait_closed(): once the connection has ended; raises its error
-- if it ended with one.
function StreamWriter:wait_closed()
  if getmt(self) ~= StreamWriter then
    check_writer(self, "writer:wait_closed")
  end
  F.bind(writers, self, running(), "writer:wait_closed")
  return async(self, "writer:wait_closed", wait_closed)
end

function StreamWriter:__tostring()
  return ("tapio.StreamWriter (%s)"):format(tostring(self.transport))
end

-- ---- The protocol of a stream connection -----------------------------------

-- asyncio's StreamReaderProtocol: feeds the reader, makes the writer, and
-- on a server runs the client's callback as a task of its own.
local StreamProtocol = {}
StreamProtocol.__index = StreamProtocol

local function new_protocol(loop, limit, client_cb)
  return setmetatable({ _loop = loop, _reader = new_reader(limit, loop),
                        _client_cb = client_cb }, StreamProtocol)
end
M.new_protocol = new_protocol -- tapio.testing.open_pair

-- The client's callback ended: an error goes to the exception handler
-- and closes the connection; so does a cancellation.
local function client_done(task, protocol)
  local transport = protocol._transport
  if task:cancelled() then
    transport:close()
    return
  end
  local err = task:exception()
  if err ~= nil then
    protocol._loop:call_exception_handler({
      message = "unhandled error in client_connected_cb", exception = err,
      traceback = task:get_traceback(), transport = transport,
      protocol = protocol })
    transport:close()
  end
end

function StreamProtocol:connection_made(transport)
  self._transport = transport
  self._reader._transport = transport
  if self._reader_only then
    return
  end
  self._writer = M.new_writer(transport, self._reader, self._loop)
  self._writer._protocol = self -- for start_tls
  local cb = self._client_cb
  if cb then
    -- in a copy of the connection's context, where this runs: a copy of
    -- the one start_server was called in (as asyncio's)
    local task = self._loop:create_task(cb, self._reader, self._writer)
    task:add_done_callback(function(t)
      client_done(t, self)
    end)
  end
end

StreamProtocol.data_received = R.data_received

--- Stays open for writing after the peer's end (asyncio does the same).
function StreamProtocol:eof_received()
  self._reader:feed_eof()
  return true
end

function StreamProtocol:connection_lost(err)
  local reader = self._reader
  if err == nil then
    reader:feed_eof()
  else
    reader:set_exception(err)
  end
  if not self._writer then
    return
  end
  M.writer_lost(self._writer, err)
end

function StreamProtocol:pause_writing()
  if self._writer then
    M.pause_writing(self._writer)
  end
end

function StreamProtocol:resume_writing()
  if self._writer then
    M.resume_writing(self._writer)
  end
end

--- tapio.StreamReaderProtocol(reader [, client_connected_cb]): asyncio's,
-- for connect_read_pipe and friends: a protocol that feeds reader (its
-- end, its error) and pauses the transport's reading while reader holds
-- more than twice its limit. With client_connected_cb it also makes a
-- writer and runs client_connected_cb(reader, writer) as a task, as
-- start_server's protocol does (on the running loop: it needs one).
function api.StreamReaderProtocol(reader, client_cb)
  if getmetatable(reader) ~= R.StreamReader then
    error("tapio: StreamReaderProtocol: bad argument #1 'reader' "
      .. "(tapio.StreamReader expected, got " .. U.typename(reader) .. ")", 2)
  end
  if client_cb == nil then
    return setmetatable({ _reader = reader, _reader_only = true },
      StreamProtocol)
  end
  U.check_callable(client_cb, "StreamReaderProtocol", 2,
    "client_connected_cb")
  return setmetatable({ _loop = U.running_loop("StreamReaderProtocol"),
                        _reader = reader, _client_cb = client_cb },
    StreamProtocol)
end

-- ---- Opening and serving ---------------------------------------------------

local running_loop = U.running_loop

-- The options without limit (the create call's), and the limit.
local function split_options(opts, fn, n)
  if opts == nil then
    return nil, R.DEFAULT_LIMIT
  end
  if type(opts) ~= "table" then
    error(("tapio: %s: bad argument #%d 'opts' (table or nil expected, got "
      .. "%s)"):format(fn, n, U.typename(opts)), 3)
  end
  local copy = {}
  for k, v in pairs(opts) do
    copy[k] = v
  end
  copy.limit = nil
  return copy, R.check_limit(opts.limit, fn, "bad option 'limit'", 3)
end
M.split_options = split_options

-- Starts a create call as a future. An argument error is raised at the
-- caller's caller as fn's own, numbered as fn's caller sees it (shift: 1
-- where fn has no protocol factory argument, 0 where a callback takes
-- its place).
local function own_error(fn, shift, msg)
  return (msg:gsub("^tapio: loop:[%w_]+:", "tapio: " .. fn .. ":")
    :gsub("bad argument #(%d+)", function(n)
      return "bad argument #" .. (tonumber(n) - shift)
    end))
end

-- A call refused at once for options that do not fit together fails
-- its future with the core's words, which name the loop method
-- ("create_server: option 'ssl_handshake_timeout' is for TLS"): they
-- name fn instead, the function the user called.
local function own_words(fut, c_create, fn)
  local err = fut._state ~= "pending" and fut._exception
  local prefix = L.method_name(c_create) .. ": "
  if type(err) == "table" and type(err.message) == "string"
     and err.message:sub(1, #prefix) == prefix then
    err.message = fn .. ": " .. err.message:sub(#prefix + 1)
  end
end

local function start(fn, shift, c_create, loop, ...)
  local fut, msg = L.start(c_create, loop, ...)
  if not fut then
    error(own_error(fn, shift, msg), 3)
  end
  own_words(fut, c_create, fn)
  return fut
end
M.start = start

local function opened(protocol, fut)
  L.await_made(fut)
  return protocol._reader, protocol._writer
end

--- tapio.open_connection(host, port, opts) -> reader, writer
-- tapio.open_connection({sock = fd, ...}) -> reader, writer
-- opts: create_connection's (local_addr = {host, port} too), and limit
-- (the reader's, 64 KiB).
function api.open_connection(host, port, opts)
  local fn = "open_connection"
  if type(host) == "table" and port == nil and opts == nil then
    host, opts = nil, host -- ({sock = fd, ...})
  end
  local copts, limit = split_options(opts, fn, 3)
  copts = L.local_addr(copts, fn)
  local loop = running_loop(fn)
  local protocol = new_protocol(loop, limit)
  local fut = start(fn, 1, Loop._create_connection, loop, function()
    return protocol
  end, host, port, copts)
  return async(protocol, fn, opened, fut)
end

--- tapio.open_unix_connection(path, opts) -> reader, writer
-- tapio.open_unix_connection({sock = fd, ...}) -> reader, writer
function api.open_unix_connection(path, opts)
  local fn = "open_unix_connection"
  if type(path) == "table" and opts == nil then
    path, opts = nil, path -- ({sock = fd, ...}): limit is ours, as above
  end
  local copts, limit = split_options(opts, fn, 2)
  local loop = running_loop(fn)
  local protocol = new_protocol(loop, limit)
  local fut = start(fn, 1, Loop._create_unix_connection, loop, function()
    return protocol
  end, path, copts)
  return async(protocol, fn, opened, fut)
end

-- ---- Pipes as streams -------------------------------------------------------

-- The protocol of a lone writer (a write pipe's, a fake child's output):
-- the writer, made at connection_made unless given, hears the
-- transport's flow control and its end.
local WriterProtocol = {}
WriterProtocol.__index = WriterProtocol
M.WriterProtocol = WriterProtocol

function WriterProtocol:connection_made(transport)
  if not self._writer then
    self._writer = M.new_writer(transport, nil, self._loop)
  end
end

function WriterProtocol:pause_writing()
  M.pause_writing(self._writer)
end

function WriterProtocol:resume_writing()
  M.resume_writing(self._writer)
end

function WriterProtocol:connection_lost(err)
  M.writer_lost(self._writer, err)
end

local function opened_reader(protocol, fut)
  L.await_made(fut)
  return protocol._reader, protocol._transport
end

local function opened_writer(protocol, fut)
  L.await_made(fut)
  return protocol._writer
end

--- tapio.open_pipe_reader(fd, opts) -> reader, transport: the read end of
-- a pipe (or a terminal, a character device: connect_read_pipe's) as a
-- StreamReader. opts: limit (64 KiB). The transport closes itself at the
-- end of the input; a program done before closes it.
function api.open_pipe_reader(fd, opts)
  local fn = "open_pipe_reader"
  local _, limit = split_options(opts, fn, 2)
  local loop = running_loop(fn)
  local protocol = api.StreamReaderProtocol(new_reader(limit, loop))
  local fut = start(fn, 1, Loop._connect_read_pipe, loop, function()
    return protocol
  end, fd)
  return async(protocol, fn, opened_reader, fut)
end

--- tapio.open_pipe_writer(fd) -> writer: the write end of a pipe (or a
-- terminal, standard output) as a StreamWriter: write, drain (while the
-- pipe is full), close, wait_closed; write_eof closes.
function api.open_pipe_writer(fd)
  local fn = "open_pipe_writer"
  local loop = running_loop(fn)
  local protocol = setmetatable({ _loop = loop }, WriterProtocol)
  local fut = start(fn, 1, Loop._connect_write_pipe, loop, function()
    return protocol
  end, fd)
  return async(protocol, fn, opened_writer, fut)
end

local function served(_, fut)
  return L.await_made(fut)
end

-- start_server and start_unix_server: where is { host, port } or { path }.
local function serving(fn, c_create, cb, where, opts, n)
  U.check_callable(cb, fn, 1, "client_connected_cb")
  local copts, limit = split_options(opts, fn, n)
  local loop = running_loop(fn)
  local function factory()
    return new_protocol(loop, limit, cb)
  end
  local fut
  if where.n == 2 then
    fut = start(fn, 0, c_create, loop, factory, where[1], where[2], copts)
  else
    fut = start(fn, 0, c_create, loop, factory, where[1], copts)
  end
  return async({ _loop = loop }, fn, served, fut)
end

--- tapio.start_server(client_connected_cb, host, port, opts) -> server
-- client_connected_cb(reader, writer) runs as a task per connection; an
-- error in it goes to the exception handler and closes the connection.
-- opts: create_server's, and limit.
function api.start_server(cb, host, port, opts)
  return serving("start_server", Loop._create_server, cb,
                 { host, port, n = 2 }, opts, 4)
end

--- tapio.start_unix_server(client_connected_cb, path, opts) -> server
-- tapio.start_unix_server(client_connected_cb, {sock = fd, ...}) -> server
function api.start_unix_server(cb, path, opts)
  if type(path) == "table" and opts == nil then
    path, opts = nil, path -- (cb, {sock = fd, ...}): limit is ours
  end
  return serving("start_unix_server", Loop._create_unix_server, cb,
                 { path, n = 1 }, opts, 3)
end

-- ---- TLS on an open connection ---------------------------------------------

-- The metatable of tapio.tls_context values (nil without TLS).
local tls_context_mt = debug.getregistry()["tapio.tls_context"]

local function upgrade(self, ctx, opts)
  local fn = "writer:start_tls"
  flush(self)
  drain(self) -- waits out a paused transport; raises if lost
  local reader = self._reader
  -- What the reader holds came after the peer's last plain bytes that
  -- were read (a ClientHello behind a STARTTLS line): the handshake's.
  local buffered = R.take_all(reader)
  local fut, msg = L.start(Loop._start_tls, self._loop, self.transport,
                           self._protocol, ctx, opts, buffered)
  if not fut or fut:done() then -- refused: no handshake has the bytes
    if buffered then
      R.untake(reader, buffered)
    end
    if not fut then
      error(own_error(fn, 2, msg), 2)
    end
  else
    R.maybe_resume(reader)
  end
  local ok, err = pcall(await, fut)
  if not ok then
    if U.api.is_cancelled(err) then -- given up: so is the connection,
      self.transport:close()        -- as asyncio closes it
    end
    error(err, 0)
  end
end

--- writer:start_tls(sslcontext [, opts]): upgrades the connection to TLS
-- in place (the async rule): what was batched is sent, a paused
-- transport waited out, and every byte the reader holds unread goes to
-- the handshake first. opts: server_hostname, ssl_handshake_timeout,
-- ssl_shutdown_timeout. The reader and writer carry plain bytes after.
-- Cancelled while the handshake runs, it closes the connection.
function StreamWriter:start_tls(ctx, opts)
  local fn = "writer:start_tls"
  if getmt(self) ~= StreamWriter then
    check_writer(self, fn)
  end
  if not self._protocol then
    error("tapio: " .. fn .. ": not a connection's writer", 2)
  end
  if tls_context_mt == nil or getmt(ctx) ~= tls_context_mt then
    error(("tapio: %s: bad argument #1 'sslcontext' (tapio.tls_context "
      .. "expected, got %s)"):format(fn, U.typename(ctx)), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(("tapio: %s: bad argument #2 'opts' (table or nil expected, got "
      .. "%s)"):format(fn, U.typename(opts)), 2)
  end
  return async(self, fn, upgrade, ctx, opts)
end

return M
