-- The chaos spec's protocol actors: their protocols, made by `method`
-- (each call is checked and noted, then the actor acts), and what each
-- callback checks against the rules of DESIGN.md and lua/README.md.
-- Replacing a method (or the protocol) makes new closures; a call of one
-- replaced is a broken rule.
local helper = require "spec.helper"
local round = require "spec.support.chaos.round"
local closed = require "spec.support.chaos.closed"
local tapio = helper.tapio
local Round, check, act = round.Round, round.check, round.act
local server_ctx, client_ctx = round.server_ctx, round.client_ctx
local poke_closed, late_writes = closed.poke_closed, closed.late_writes

local STREAM = { "connection_made", "data_received", "eof_received",
                 "connection_lost", "pause_writing", "resume_writing" }
local DATAGRAM = { "connection_made", "datagram_received", "error_received",
                   "connection_lost", "pause_writing", "resume_writing" }
local PROCESS = { "connection_made", "pipe_data_received",
                  "pipe_connection_lost", "process_exited", "connection_lost",
                  "pause_writing", "resume_writing" }

local function method(R, a, name)
  local id = R:id()
  a.current[name] = id
  return function(self, ...)
    if R.failure then
      return
    end
    if self ~= a.proto then
      R:fail(a, name .. " called on a protocol set_protocol replaced")
    elseif a.current[name] ~= id then
      R:fail(a, "a replaced " .. name .. " was called")
    elseif a.lost then
      R:fail(a, name .. " called after connection_lost")
    elseif name ~= "connection_made" and not a.made then
      R:fail(a, name .. " called before connection_made")
    end
    R:count("cb:" .. name)
    return check[name](R, a, self, name, ...)
  end
end

-- A new protocol for actor a: a table of its methods, or (one time in
-- four) a table that inherits them through its metatable. A stream's is a
-- BufferedProtocol one time in three.
local function make_proto(R, a)
  local p = {}
  for _, name in ipairs(a.methods) do
    p[name] = method(R, a, name)
  end
  if a.methods == STREAM and R:chance(3) then
    p.get_buffer = method(R, a, "get_buffer")
    p.buffer_updated = method(R, a, "buffer_updated")
  end
  if R:chance(4) then
    p = setmetatable({}, { __index = p })
  end
  a.proto = p
  return p
end

-- The transport, if the actor has it or it is still alive (an open
-- transport is anchored: the weak table holds it until connection_lost).
local function transport_of(R, a)
  local t = a.transport or R.weak[a.id]
  if not t and a.made and not a.lost then
    R:fail(a, "the transport was collected while open")
  end
  return t
end

-- Every byte a reader gets is a prefix of what its peer wrote.
local function check_prefix(R, a, got, sent)
  if got ~= sent:sub(1, #got) then
    local i = 1
    while got:sub(i, i) == sent:sub(i, i) do
      i = i + 1
    end
    R:fail(a, ("byte %d of %d received differs from what the peer wrote "
      .. "(%d bytes)"):format(i, #got, #sent))
  end
end

local function sent_of(a)
  if type(a.sent) == "table" then
    a.sent = { table.concat(a.sent) }
    return a.sent[1]
  end
  return a.sent or ""
end

-- Bytes a reads: a prefix of what its peer wrote (a sink's client is not
-- known).
local function received(R, a, data)
  a.received = a.received .. data
  if a.peer then
    check_prefix(R, a, a.received, sent_of(a.peer))
  end
end

local function record_sent(a, data)
  a.sent[#a.sent + 1] = data
end

local function made(R, a, self, name, t)
  if a.made then
    return R:fail(a, "connection_made called twice")
  end
  if a.cancelled_connect then
    return R:fail(a, "connection_made after its connect was cancelled")
  end
  a.made = true
  a.transport = t
  R.weak[a.id] = t
  R:note(a, "made")
  if a.starttls then
    R:start_tls(a, t)
  end
  R:tick(a)
  return act.transport(R, a, self, name)
end

-- loop:start_tls at once, from connection_made (a future: no task); the
-- chaos goes on meanwhile, and may cancel it.
function Round:start_tls(a, t)
  local ctx = a.starttls == "client" and client_ctx or server_ctx
  local opts = a.starttls == "client" and { server_hostname = "localhost" }
    or nil
  local fut = self.loop:start_tls(t, a.proto, ctx, opts)
  fut.chaos_name = "start_tls" .. a.id
  self.tasks[#self.tasks + 1] = fut
  fut:add_done_callback(function()
    self:note(a, "tls:" .. (fut:cancelled() and "cancelled"
      or tostring(fut:exception() and fut:exception().name or "done")))
  end)
end

function check.connection_made(R, a, self, name, t)
  return made(R, a, self, name, t)
end

function check.data_received(R, a, self, name, data)
  R:note(a, "data:" .. #data)
  if a.eof then
    return R:fail(a, "data_received after eof_received")
  end
  received(R, a, data)
  return act.transport(R, a, self, name)
end

-- BufferedProtocol: a buffer of a random size (the same one now and
-- then), received into from a random position.
function check.get_buffer(R, a, self, name)
  R:note(a, "get_buffer")
  if a.eof then
    return R:fail(a, "get_buffer after eof_received")
  end
  local b = a.bufs[self]
  if not (b and R:chance(2)) then
    b = { buf = tapio.buffer(R.rand(R:chance(4) and 70000 or 64)) }
    a.bufs[self] = b
  end
  b.pos = R.rand(#b.buf)
  act.transport(R, a, self, name)
  return b.buf, b.pos
end

-- The bytes are in the buffer this protocol's get_buffer gave.
function check.buffer_updated(R, a, self, name, n)
  local b = a.bufs[self]
  if not b then
    return R:fail(a, "buffer_updated without get_buffer")
  end
  if n < 1 or b.pos + n - 1 > #b.buf then
    return R:fail(a, ("buffer_updated(%d) past the buffer (%d from %d)")
      :format(n, #b.buf, b.pos))
  end
  return check.data_received(R, a, self, name, b.buf:sub(b.pos, b.pos + n - 1))
end

-- A callback that comes at most once (in a row, for pause_writing): it
-- sets its flag, then the actor acts.
local function once(R, a, self, name, flag)
  R:note(a, name)
  if a[flag] then
    return R:fail(a, name .. " twice")
  end
  a[flag] = true
  return act.transport(R, a, self, name)
end

function check.eof_received(R, a, self, name)
  once(R, a, self, name, "eof")
  a.keep_open = R:chance(2)
  return a.keep_open
end

function check.pause_writing(R, a, self, name)
  return once(R, a, self, name, "paused")
end

function check.resume_writing(R, a, self, name)
  R:note(a, "resume")
  if not a.paused then
    return R:fail(a, "resume_writing without pause_writing")
  end
  a.paused = false
  return act.transport(R, a, self, name)
end

local function lost(R, a, err)
  R:note(a, "lost:" .. tostring(err and (err.name or err.chaos_tag)))
  a.lost, a.lost_with = true, err
  a.done = true
  if a.must_lose_with and err ~= a.must_lose_with then
    R:fail(a, ("connection_lost(%s) after a callback raised %s"):format(
      tostring(err), tostring(a.must_lose_with)))
  end
  if a.read_on and a.read_on[err] then
    R:fail(a, "an endpoint whose datagram_received raised was aborted")
  end
  local t = transport_of(R, a)
  if R:chance(3) then
    poke_closed(R, a, t, true)
  end
  if R:chance(4) then
    R.loop:call_soon(poke_closed, R, a, t)
  end
  if t and t.write and not a.eof_written and R:chance(6) then
    R.loop:call_soon(late_writes, R, a, t)
  end
end

function check.connection_lost(R, a, self, name, err)
  lost(R, a, err)
  if a.kind:find("^proc") then
    if not a.exited then
      R:fail(a, "connection_lost before process_exited")
    end
    for fd = 0, 2 do
      if a.pipes[fd] == "open" then
        R:fail(a, "connection_lost before pipe_connection_lost(" .. fd .. ")")
      end
    end
  end
  if R:chance(8) then
    R:raise(a) -- the handler hears of it; nothing else happens
  end
end

-- Datagrams: each one received is one its peer sent, at most as often.
function check.datagram_received(R, a, self, name, data)
  R:note(a, "dgram:" .. #data)
  local n = a.peer.dgrams and a.peer.dgrams[data] or 0
  a.got = a.got or {}
  a.got[data] = (a.got[data] or 0) + 1
  if a.got[data] > n then
    R:fail(a, "a datagram its peer did not send: " .. data:sub(1, 40))
  end
  return act.transport(R, a, self, name)
end

function check.error_received(R, a, self, name, err)
  R:note(a, "error:" .. tostring(err and err.name))
  return act.transport(R, a, self, name)
end

-- Subprocesses: what `cat` prints is a prefix of what went to its stdin.
function check.pipe_data_received(R, a, self, name, fd, data)
  R:note(a, "pipe" .. fd .. ":" .. #data)
  if a.pipes[fd] ~= "open" then
    return R:fail(a, "pipe_data_received(" .. fd .. ") after its end")
  end
  if fd == 1 then
    a.received = a.received .. data
    check_prefix(R, a, a.received, sent_of(a))
  else
    return R:fail(a, "cat wrote to stderr: " .. data)
  end
  return act.transport(R, a, self, name)
end

function check.pipe_connection_lost(R, a, self, name, fd, err)
  R:note(a, "pipe_lost" .. fd .. ":" .. tostring(err and err.name))
  if a.pipes[fd] ~= "open" then
    return R:fail(a, "pipe_connection_lost(" .. fd .. ") twice or unknown")
  end
  a.pipes[fd] = "lost"
  return act.transport(R, a, self, name)
end

function check.process_exited(R, a, self, name)
  return once(R, a, self, name, "exited")
end

-- An actor also acts from a timer every few milliseconds, until its part
-- is played: so one whose peer went quiet still writes, pauses, closes.
function Round:tick(a)
  self.loop:call_later(self.rand(5) / 1000, function()
    if not (a.lost or self.finishing or self.failure or a.steps < 0) then
      act.transport(self, a, a.proto, "soon")
      self:tick(a)
    end
  end)
end

return { STREAM = STREAM, DATAGRAM = DATAGRAM, PROCESS = PROCESS,
         method = method, make_proto = make_proto,
         transport_of = transport_of, received = received,
         record_sent = record_sent }
