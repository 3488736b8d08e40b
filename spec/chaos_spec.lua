-- A seeded chaos test of the binding's lifetime rules, tasks and streams.
-- Each round runs one loop with many actors at once: protocol-API
-- connections (TCP, Unix, TLS), a pipe, datagram endpoints, a `sh -c cat`
-- subprocess, streams-API tasks (TCP, Unix, TLS, STARTTLS), timers and
-- cancelled connects. At every callback or await point an actor draws from
-- a seeded PRNG what to do: write, pause, resume, close, abort, raise,
-- replace its method or its whole protocol, drop its transport and collect,
-- cancel a task, stop the loop (the round runs it again), call methods of a
-- closed transport. Every event is checked against the rules of DESIGN.md
-- and lua/README.md (see `check`); a broken rule fails the round with its
-- seed and the actor's history. A round ends when every actor reached its
-- end; when nothing happens for QUIET seconds the round closes, then
-- aborts, what is left (that is the actors' end, not a sleep), and a round
-- where nothing happens any more (STUCK quiet times) fails.
--
-- TAPIO_CHAOS_SEED=n replays one seed; TAPIO_CHAOS_ROUNDS=n runs n seeds
-- from TAPIO_CHAOS_SEED (or 1) on, for a longer run; TAPIO_CHAOS_STATS=1
-- prints how often each action and callback ran; TAPIO_CHAOS_VERBOSE=1
-- prints each round's actors and their histories.
local helper = require "spec.helper"
local tapio = helper.tapio

helper.certs()
local server_ctx, client_ctx = helper.server_ctx(), helper.client_ctx()

local QUIET = 0.05          -- seconds without an event before finishing
local STUCK = 40            -- quiet times before a round fails
local ROUND_DEADLINE = 8    -- seconds one round may take at most
local SEEDS = 50            -- the default run: seeds 1 to 50 (~7 s)

-- ---- The PRNG: Park and Miller's, exact in doubles and in integers, so a
-- seed draws the same on Lua 5.4 and LuaJIT.
local function prng(seed)
  local x = seed % 2147483646 + 1
  return function(n)
    x = x * 16807 % 2147483647
    return x % n + 1
  end
end

-- ---- A round: its loop, PRNG, actors and what was raised ---------------
local Round = {}
Round.__index = Round

local function new_round(seed, loop)
  return setmetatable({ seed = seed, loop = loop, rand = prng(seed),
    actors = {}, weak = setmetatable({}, { __mode = "v" }),
    raised = {}, late = {}, ids = 0, tags = 0, servers = {},
    tasks = {} }, Round)
end

function Round:id()
  self.ids = self.ids + 1
  return self.ids
end

function Round:chance(n)
  return self.rand(n) == 1
end

function Round:pick(list)
  return list[self.rand(#list)]
end

-- Random bytes: lowercase letters with a newline now and then.
function Round:bytes(n)
  local t = {}
  for i = 1, n do
    t[i] = self.rand(12) == 1 and "\n" or string.char(96 + self.rand(26))
  end
  return table.concat(t)
end

function Round:chunk()
  local r = self.rand(20)
  if r <= 2 then
    return string.rep(self:bytes(64), self.rand(4096)) -- up to 256 KiB
  end
  return self:bytes(self.rand(r < 5 and 2000 or 40))
end

function Round:describe(a)
  return ("actor %d (%s): %s"):format(a.id, a.kind, table.concat(a.hist, " "))
end

-- The first broken rule ends the round: it stops the loop, and the runner
-- fails with the seed and the actor's history.
function Round:fail(a, msg)
  if not self.failure then
    self.failure = ("seed %d: %s\n%s"):format(self.seed, msg,
      a and self:describe(a) or "")
    if not self.loop:is_closed() then
      self.loop:stop()
    end
  end
end

-- How often each action ran, over all rounds (TAPIO_CHAOS_STATS=1 prints
-- them).
local stats = {}

function Round:count(what)
  stats[what] = (stats[what] or 0) + 1
end

function Round:note(a, what)
  a.hist[#a.hist + 1] = what
  if self.changed and not self.changed:done() then
    self.changed:set_result(true)
  end
end

function Round:new_actor(kind)
  local a = { id = self:id(), kind = kind, hist = {}, steps = 4 + self.rand(40),
              current = {} }
  self.actors[#self.actors + 1] = a
  return a
end

-- An error value a callback raises: the exception handler must hear of
-- each exactly once.
function Round:new_error(a)
  self.tags = self.tags + 1
  local tag = setmetatable({ chaos_tag = self.tags },
    { __tostring = function(e) return "chaos error " .. e.chaos_tag end })
  self.raised[tag.chaos_tag] = { heard = 0, actor = a }
  self:note(a, "raise#" .. tag.chaos_tag)
  return tag
end

-- A create call raised err: a factory's error, if it is a chaos error.
function Round:caller_heard(err)
  if type(err) == "table" and err.chaos_tag then
    local r = self.raised[err.chaos_tag]
    r.caller = (r.caller or 0) + 1
  end
end

function Round:raise(a)
  error(self:new_error(a), 0)
end

-- Contexts of the exception handler that are not a raised error: the
-- reports the README documents.
local EXPECTED = {
  "^transport:write%a* after connection_lost: data is dropped",
  "^sendto on a closed datagram transport: datagrams are dropped",
}

function Round:hear(ctx)
  local e = ctx.exception
  if type(e) == "table" and e.chaos_tag then
    local r = self.raised[e.chaos_tag]
    r.heard = r.heard + 1
    return
  end
  local text = tostring(ctx.message)
  self:count("heard:" .. text)
  local late = ctx.transport and self.late[ctx.transport]
  if late then
    late.heard = late.heard + 1
  end
  for _, pat in ipairs(EXPECTED) do
    if text:find(pat) then
      return
    end
  end
  self:fail(nil, "unexpected call of the exception handler: "
    .. helper.describe_context(ctx))
end

-- ---- Protocol actors --------------------------------------------------
-- A protocol's methods are made by `method`: each call is checked and
-- noted, then the actor acts. Replacing a method (or the protocol) makes
-- new closures; a call of one replaced is a broken rule.

local STREAM = { "connection_made", "data_received", "eof_received",
                 "connection_lost", "pause_writing", "resume_writing" }
local DATAGRAM = { "connection_made", "datagram_received", "error_received",
                   "connection_lost", "pause_writing", "resume_writing" }
local PROCESS = { "connection_made", "pipe_data_received",
                  "pipe_connection_lost", "process_exited", "connection_lost",
                  "pause_writing", "resume_writing" }

local check, act = {}, {}

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
  a.received = a.received .. data
  if a.peer then -- (a sink's client is not known)
    check_prefix(R, a, a.received, sent_of(a.peer))
  end
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

-- Methods of a closed transport: the harmless ones never raise (a write is
-- dropped); the others answer as asyncio's closed transports do, but TLS's
-- write_eof, which raises as asyncio's always does. (Inside
-- connection_lost the transport is still open: any tapio error.)
local HARMLESS = { "close", "abort", "is_closing", "is_reading",
                   "pause_reading", "resume_reading", "write", "writelines",
                   "get_pid", "get_returncode", "get_pipe_transport", "kill",
                   "terminate" }
local CLOSED = { "get_write_buffer_size", "get_extra_info", "write_eof",
                 "get_protocol", "set_write_buffer_limits", "get_stats",
                 "sendto", "can_write_eof", "get_write_buffer_limits" }
local NO_HALF_CLOSE = "^tapio: transport:write_eof: TLS has no half%-close"
local ARGS = { write = "late", writelines = { "late" }, sendto = "late",
               get_extra_info = "socket", get_pipe_transport = 0 }

local function member(list, x)
  for _, y in ipairs(list) do
    if x == y then
      return true
    end
  end
  return false
end

local function poke_closed(R, a, t, inside)
  if not t then
    return
  end
  local name = R:chance(2) and R:pick(HARMLESS) or R:pick(CLOSED)
  if not t[name] or (a.eof_written and name:find("^write")) then
    return
  end
  R:note(a, "closed:" .. name)
  local ok, err = pcall(t[name], t, ARGS[name])
  local allowed = inside and "^tapio: "
                  or name == "write_eof" and NO_HALF_CLOSE
  if not ok and (member(HARMLESS, name) or not allowed
                 or not tostring(err):find(allowed)) then
    R:fail(a, "closed transport:" .. name .. " raised " .. tostring(err))
  end
  if t.is_closing and not t:is_closing() then
    R:fail(a, "a closed transport is not closing")
  end
end

-- Six writes after connection_lost: dropped, and the exception handler
-- hears of it once, at the fifth (checked at the round's end).
local function late_writes(R, a, t)
  R:note(a, "late writes")
  R.late[t] = { heard = 0, actor = a }
  for _ = 1, 6 do
    t:write("late")
  end
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

-- ---- What a protocol actor does in a callback --------------------------

local function write(R, a, t, data)
  if a.kind:find("^dgram") then
    local ok = pcall(t.sendto, t, data, a.peer_addr)
    if ok and not t:is_closing() then
      a.dgrams[data] = (a.dgrams[data] or 0) + 1
    end
    return
  end
  local w = t
  if a.kind:find("^proc") then
    w = t:get_pipe_transport(0)
    if not w then
      return
    end
  end
  if not w.write or a.eof_written or a.mute then
    return
  end
  if not w:is_closing() then
    record_sent(a, data)
  end
  w:write(data)
end

-- Each action with its weight: mostly writes and flow control, so that
-- data flows and buffers fill between the blows.
local WEIGHTS = {
  write = 16, pause = 4, resume = 4, writelines = 2, limits = 2, close = 1,
  abort = 1, write_eof = 1, raise = 1, replace = 2, replace_other = 1,
  set_protocol = 2, drop = 2, stop = 1, soon = 2, cancel = 1, collect = 1,
  kill = 1, close_stdin = 1, connect = 1, cross = 2, nest = 1, server = 1,
  pipe = 2, bad_sendto = 1,
}
local ACTIONS = {}
for what, n in pairs(WEIGHTS) do
  for _ = 1, n do
    ACTIONS[#ACTIONS + 1] = what
  end
end
table.sort(ACTIONS) -- pairs' order is not the same on every Lua

-- What each action does, in a callback named name of actor a (or "soon":
-- a timer's, "cross": another actor's) on its transport t.
local DO = {}

function DO.write(R, a, t)
  write(R, a, t, R:chunk())
end

function DO.writelines(R, a, t)
  if t.writelines and not a.eof_written and not a.mute then
    local list = { R:chunk(), R:chunk(), R:chunk() }
    if not t:is_closing() then
      record_sent(a, table.concat(list))
    end
    t:writelines(list)
  end
end

function DO.pause(R, a, t)
  if t.pause_reading then
    t:pause_reading()
    if t:is_reading() then
      R:fail(a, "is_reading() after pause_reading()")
    end
  end
end

function DO.resume(_, _, t)
  if t.resume_reading then
    t:resume_reading()
  end
end

local function ending(what)
  return function(R, a, t)
    if t[what] then
      t[what](t)
      if not t:is_closing() then
        R:fail(a, "is_closing() false after " .. what .. "()")
      end
    end
  end
end
DO.close, DO.abort = ending("close"), ending("abort")

function DO.write_eof(_, a, t)
  if t.can_write_eof and t:can_write_eof() and not t:is_closing() then
    a.eof_written = true
    t:write_eof()
  end
end

-- The transport is aborted (a stream's protocol then loses it with this
-- error); a datagram endpoint reads on. Raised in connection_lost it only
-- goes to the handler.
function DO.raise(R, a, t, _, name)
  if name == "connection_lost" then
    return
  end
  local err = R:new_error(a)
  if name == "datagram_received" or name == "error_received" then
    a.read_on = a.read_on or {}
    a.read_on[err] = true
  end
  if not a.kind:find("^dgram") and name ~= "soon" and name ~= "cross"
      and not t:is_closing() then
    a.must_lose_with = a.must_lose_with or err
  end
  error(err, 0)
end

function DO.replace(R, a, _, self, name)
  if a.current[name] then
    self[name] = method(R, a, name)
  end
end

function DO.replace_other(R, a)
  local other = R:pick(a.methods)
  a.proto[other] = method(R, a, other)
end

function DO.set_protocol(R, a, t)
  t:set_protocol(make_proto(R, a))
end

-- Every Lua reference to the transport goes (but the weak table's): an
-- open one must live on, anchored.
function DO.drop(R, a, t)
  a.transport = nil
  t = nil -- luacheck: ignore
  collectgarbage("collect")
  transport_of(R, a)
end

function DO.stop(R)
  R.loop:stop()
end

function DO.soon(R, a)
  R.loop:call_soon(function()
    if not a.lost and not R.failure then
      act.transport(R, a, a.proto, "soon")
    end
  end)
end

function DO.cancel(R, a)
  R:cancel_something(a)
end

function DO.collect()
  collectgarbage("collect")
end

function DO.limits(R, _, t)
  if t.set_write_buffer_limits then
    t:set_write_buffer_limits(R.rand(R:chance(2) and 4096 or 65536), 0)
  end
end

function DO.kill(R, _, t)
  if t.kill then
    t[R:pick({ "kill", "terminate", "close" })](t)
  end
end

-- Another actor acts from inside this callback (its raise then fails
-- this transport).
function DO.cross(R, a)
  local b = R:pick(R.actors)
  if b.proto and b ~= a and not b.lost and b.methods then
    R:note(a, "cross:" .. b.id)
    R:note(b, "crossed-by:" .. a.id)
    act.transport(R, b, b.proto, "cross")
  end
end

function DO.connect(R)
  R:connect_and_cancel()
end

-- A running loop can be neither run nor closed from inside.
function DO.nest(R, a)
  local f = R:pick({ "run_once", "close", "run_forever" })
  local ok, err = pcall(R.loop[f], R.loop)
  if ok or not tostring(err):find("^tapio: loop:") then
    R:fail(a, "loop:" .. f .. " inside a callback: " .. tostring(err))
  end
end

-- A server closes, closes or aborts its clients, or is dropped (it serves
-- on, anchored). One whose client has not connected yet is left alone:
-- closed, its port could be another's by the time the client connects.
function DO.server(R, a)
  local rec = R:pick(R.servers)
  local server = rec.server or R.weak[rec.key]
  if not server or not (rec.accepted or rec == R.sink_rec) then
    return
  end
  local op = R:pick({ "close", "close_clients", "abort_clients", "drop" })
  rec.closed = rec.closed or op == "close"
  if op ~= "drop" then
    return server[op](server)
  end
  rec.server = nil
  server = nil -- luacheck: ignore
  collectgarbage("collect")
  if not R.weak[rec.key] and not rec.closed then
    R:fail(a, "an open server was collected")
  end
end

-- The subprocess's own pipes.
function DO.pipe(R, a, t)
  local p = t.get_pipe_transport and t:get_pipe_transport(R.rand(3) - 1)
  if p then
    local op = R:pick(p.write and { "write_eof", "abort", "close" }
      or { "pause_reading", "resume_reading", "close" })
    R:note(a, "pipe:" .. op)
    p[op](p)
    a.eof_written = a.eof_written or op == "write_eof"
  end
end

function DO.close_stdin(_, _, t)
  local w = t.get_pipe_transport and t:get_pipe_transport(0)
  if w then
    w:close()
  end
end

-- Nobody listens there (the discard port, never an ephemeral one):
-- error_received (ECONNREFUSED) comes back.
function DO.bad_sendto(_, _, t)
  if t.sendto then
    pcall(t.sendto, t, "nobody", { "127.0.0.1", 9 })
  end
end

function act.transport(R, a, self, name)
  if R.finishing or a.steps < 0 then
    return
  end
  a.steps = a.steps - 1
  local t = transport_of(R, a)
  if not t or a.lost then
    return
  end
  if a.steps < 0 then -- its part is played: it ends
    R:note(a, "!end")
    return t:close()
  end
  local what = R:pick(ACTIONS)
  R:note(a, "!" .. what)
  R:count(what)
  return DO[what](R, a, t, self, name) -- (a tail call: "drop" holds the
end                                    -- only reference on the stack)

-- Cancels a random task or pending connect of the round.
function Round:cancel_something(a)
  local list = {}
  for _, task in ipairs(self.tasks) do
    if not task:done() then
      list[#list + 1] = task
    end
  end
  if #list > 0 then
    local task = self:pick(list)
    self:note(a, "cancel:" .. tostring(task.chaos_name))
    task:cancel("chaos")
  end
end

-- ---- Setting actors up --------------------------------------------------

local function stream_actor(R, kind)
  local a = R:new_actor(kind)
  a.methods, a.received, a.sent = STREAM, "", {}
  a.bufs = setmetatable({}, { __mode = "k" })
  return a
end

-- The factory of actor a: one protocol, once.
local function factory(R, a)
  return function()
    if a.factory_called then
      R:fail(a, "the factory was called twice")
    end
    a.factory_called = true
    R:note(a, "factory")
    if a.cancelled_connect then
      R:fail(a, "the factory was called after its connect was cancelled")
    end
    if R:chance(15) then
      -- a server's rejects the connection and goes to the handler; a
      -- client's is what its create call raises
      a.done = true
      local err = R:new_error(a)
      R.raised[err.chaos_tag].by_caller = not a.server_side
      a.factory_error = R.raised[err.chaos_tag]
      error(err, 0)
    end
    return make_proto(R, a)
  end
end

-- A task of the round, that its actors may cancel. The actors it makes
-- (a list) end with it if it ended before their connection_made; one
-- cancelled must never see its factory called.
function Round:task(name, actors, fn, ...)
  local task = self.loop:create_task(fn, ...)
  task.chaos_name = name
  self.tasks[#self.tasks + 1] = task
  task:add_done_callback(function()
    self:caller_heard(not task:cancelled() and task:exception())
    for _, a in ipairs(actors) do
      if a.factory_error and task:cancelled() then
        a.factory_error.given_up = true -- as asyncio: cancel() retrieves
      end
      if not a.made then
        a.done = true
        a.cancelled_connect = task:cancelled()
        self:note(a, "not made: " .. (task:cancelled() and "cancelled"
          or tostring(task:exception())))
      end
    end
  end)
  return task
end

-- The client's connect, in a task of its own that others may cancel.
local function connect(R, a, server_rec, make)
  R:task("connect" .. a.id, { a }, function()
    local ok, err = pcall(make)
    if not ok then
      R:note(a, "connect failed:" .. tostring(err and err.name or err))
      if type(err) ~= "table" then
        R:fail(a, "connect raised " .. tostring(err))
      elseif not server_rec.closed and err.name == "ECONNREFUSED" then
        R:fail(a, "connection refused by a server not closed")
      end
      error(err, 0)
    end
  end)
end

-- A server of one connection: its actor's protocol; it closes once it
-- accepted, or drops every reference and is collected meanwhile.
local function one_server(R, sa, create)
  local rec = {}
  local server
  server = create(function()
    if rec.accepted then
      R:fail(sa, "the server accepted twice")
    end
    rec.accepted = true
    if R:chance(2) and rec.server then
      rec.closed = true
      rec.server:close()
    end
    return factory(R, sa)()
  end)
  return R:add_server(server, rec)
end

-- A server of the round: rec.server, until an actor drops it (the weak
-- table holds it while it is open: anchored).
function Round:add_server(server, rec)
  rec = rec or {}
  rec.server, rec.key = server, "server" .. self:id()
  self.servers[#self.servers + 1] = rec
  self.weak[rec.key] = server
  return rec
end

-- A server every round has, whose connections are mute actors, for the
-- connects a callback makes and cancels (at once, soon, or never).
local function sink(R)
  R.sink = R.loop:create_server(function()
    local a = R:new_actor("sink")
    a.methods, a.received, a.mute, a.server_side = STREAM, "", true, true
    a.bufs = setmetatable({}, { __mode = "k" })
    return factory(R, a)()
  end, "127.0.0.1", 0)
  R.sink_port = helper.port(R.sink)
  R.sink_rec = R:add_server(R.sink)
end

function Round:connect_and_cancel()
  -- (once the sink is closed, its port may be another server's)
  if self.finishing or self.sink_rec.closed then
    return
  end
  local c = stream_actor(self, "connect")
  c.peer = { sent = "" } -- the sink writes nothing
  local fut = self.loop:create_connection(factory(self, c), "127.0.0.1",
    self.sink_port)
  local function cancel()
    if c.factory_error then
      c.factory_error.given_up = true
    end
    if fut:cancel() then
      c.cancelled_connect, c.done = true, true
      self:note(c, "cancelled")
    end
  end
  fut:add_done_callback(function()
    self:caller_heard(not fut:cancelled() and fut:exception())
    if not fut:cancelled() and fut:exception() then
      c.done = true
      self:note(c, "failed: " .. tostring(fut:exception()))
    end
  end)
  local when = self.rand(3)
  if when == 1 then
    cancel()
  elseif when == 2 then
    self.loop:call_soon(cancel)
  end
end

local function drop_server(R, rec)
  if R:chance(3) then
    rec.server = nil
    collectgarbage("collect")
  end
end

local function stream_pair(R, kind)
  local ca, sa = stream_actor(R, kind .. "/client"),
    stream_actor(R, kind .. "/server")
  sa.server_side = true
  ca.peer, sa.peer = sa, ca
  local loop = R.loop
  if kind == "starttls" then
    ca.starttls, sa.starttls = "client", "server"
  end
  if kind == "tcp" or kind == "tls" or kind == "starttls" then
    local sopts = kind == "tls" and { ssl = server_ctx } or nil
    local rec = one_server(R, sa, function(f)
      return loop:create_server(f, "127.0.0.1", 0, sopts)
    end)
    local port = helper.port(rec.server)
    drop_server(R, rec)
    local copts = kind == "tls" and { ssl = client_ctx,
      server_hostname = "localhost" } or nil
    connect(R, ca, rec, function()
      return loop:create_connection(factory(R, ca), "127.0.0.1", port, copts)
    end)
  else
    local path = R:unix_path()
    local rec = one_server(R, sa, function(f)
      return loop:create_unix_server(f, path)
    end)
    drop_server(R, rec)
    connect(R, ca, rec, function()
      return loop:create_unix_connection(factory(R, ca), path)
    end)
  end
  sa.done_unless_made = ca
end

-- An abstract name no other process (another flavour's run) takes.
local PID
do
  local f = assert(io.open("/proc/self/stat"))
  PID = f:read("*n")
  f:close()
end

function Round:unix_path()
  return ("@tapio-chaos-%d-%d-%d"):format(PID, self.seed, self:id())
end

local function pipe_pair(R)
  local ra, wa = stream_actor(R, "pipe/read"), stream_actor(R, "pipe/write")
  ra.peer, wa.peer = wa, ra
  local rfd, wfd = tapio.pipe()
  R:task("pipe" .. ra.id, { ra }, function()
    R.loop:connect_read_pipe(factory(R, ra), rfd)
  end)
  R:task("pipe" .. wa.id, { wa }, function()
    R.loop:connect_write_pipe(factory(R, wa), wfd)
  end)
end

local function dgram_pair(R)
  local a, b = R:new_actor("dgram/a"), R:new_actor("dgram/b")
  a.peer, b.peer = b, a
  a.methods, b.methods = DATAGRAM, DATAGRAM
  a.dgrams, b.dgrams = {}, {}
  local loop = R.loop
  R:task("dgram" .. a.id, { a, b }, function()
    local ta = loop:create_datagram_endpoint(factory(R, a),
      { local_addr = { "127.0.0.1", 0 } })
    if a.lost then -- closed already, in its connection_made: b has no peer
      b.done = true
      return
    end
    local addr = ta:get_extra_info("sockname")
    local tb = loop:create_datagram_endpoint(factory(R, b),
      { remote_addr = { addr.host, addr.port } })
    if not b.lost then
      a.peer_addr = tb:get_extra_info("sockname")
    end
  end)
end

local function process(R)
  local a = R:new_actor("proc")
  a.methods, a.received, a.sent = PROCESS, "", {}
  a.pipes = { [0] = "open", "open", "open" }
  connect(R, a, {}, function()
    return R.loop:subprocess_exec(factory(R, a), "sh", { "-c", "cat" })
  end)
end

-- ---- Streams-API actors: one task each side -----------------------------

-- What a stream read returned or raised: bytes go to received (checked),
-- an IncompleteReadError's partial too (it was consumed); the end, an
-- error of the connection or a cancellation end the reading.
local function took(R, a, ok, res)
  if ok then
    R:note(a, "read:" .. #res)
    a.received = a.received .. res
    check_prefix(R, a, a.received, sent_of(a.peer))
    return res ~= ""
  end
  if type(res) ~= "table" then
    if not tostring(res):find("tapio: ") then -- a documented error
      R:fail(a, "a stream call raised " .. tostring(res))
    end
    R:note(a, "raised:" .. tostring(res))
    return false
  end
  R:note(a, "err:" .. tostring(res.name))
  if res.partial then
    a.received = a.received .. res.partial
    check_prefix(R, a, a.received, sent_of(a.peer))
  end
  if tapio.is_cancelled(res) then
    a.cancels = (a.cancels or 0) + 1
    if a.cancels <= 3 and not R:chance(4) then
      R:count("streams:read on after cancel")
      tapio.current_task():uncancel()
      return true -- the stream stays usable: read on
    end
    error(res, 0)
  end
  return res.name == "EMSGSIZE" -- a limit overrun leaves the buffer
end

local STREAM_STEPS = {
  "write", "write", "write", "drain", "read", "read", "readexactly",
  "readuntil", "readline", "readall", "cancel", "cancel_self", "close",
  "cancel_peer", "cancel_peer",
  "abort", "write_eof", "collect", "raise", "stop",
}

local function stream_step(R, a, reader, writer)
  local what = R:pick(STREAM_STEPS)
  R:note(a, "!" .. what)
  R:count("streams:" .. what)
  if what == "write" then
    if not writer:is_closing() and not a.eof_written then
      local data = R:chunk()
      record_sent(a, data)
      writer:write(data)
    end
  elseif what == "drain" then
    local ok, err = pcall(writer.drain, writer)
    if not ok then
      return took(R, a, ok, err)
    end
  elseif what == "read" then
    return took(R, a, pcall(reader.read, reader, R.rand(5000)))
  elseif what == "readexactly" then
    return took(R, a, pcall(reader.readexactly, reader, R.rand(3000)))
  elseif what == "readuntil" then
    return took(R, a, pcall(reader.readuntil, reader,
      R:chance(2) and "\n" or { "ab", "\n" }))
  elseif what == "readline" and not a.small_limit then
    return took(R, a, pcall(reader.readline, reader))
  elseif what == "readall" then
    return took(R, a, pcall(reader.read, reader))
  elseif what == "cancel" then
    R:cancel_something(a)
  elseif what == "cancel_peer" then
    -- the peer most likely waits in a read or a drain
    local task = a.peer.task
    if task and not task:done() then
      task:cancel("chaos peer")
    end
  elseif what == "cancel_self" then
    tapio.current_task():cancel("chaos self")
  elseif what == "close" then
    writer:close()
    local ok, err = pcall(writer.wait_closed, writer)
    if not ok then
      took(R, a, ok, err)
    end
    return false
  elseif what == "abort" then
    writer.transport:abort()
    return false
  elseif what == "write_eof" then
    if not writer:is_closing() and writer:can_write_eof() then
      a.eof_written = true
      writer:write_eof()
    end
  elseif what == "collect" then
    collectgarbage("collect")
  elseif what == "raise" and a.may_raise then
    R:raise(a)
  elseif what == "stop" then
    R.loop:stop()
  end
  return true
end

local function stream_body(R, a, reader, writer)
  a.made = true
  a.reader, a.writer = reader, writer
  if a.starttls then
    if a.kind:find("client") then
      record_sent(a, "STARTTLS\n")
      writer:write("STARTTLS\n")
      writer:start_tls(client_ctx, { server_hostname = "localhost" })
    else
      if not took(R, a, pcall(reader.readline, reader)) then
        return
      end
      writer:start_tls(server_ctx)
    end
    R:note(a, "tls")
  end
  for _ = 1, a.steps do
    if R.failure or R.finishing or not stream_step(R, a, reader, writer) then
      break
    end
  end
  writer:close()
end

-- Runs a stream actor's body in its task and marks its end.
local function stream_task(R, a, fn, ...)
  local task = tapio.current_task()
  task.chaos_name = task.chaos_name or ("stream" .. a.id)
  a.task = task
  R.tasks[#R.tasks + 1] = task
  local ok, err = pcall(fn, ...)
  a.done = true
  R:note(a, "end")
  if not ok then
    if type(err) == "table" and err.chaos_tag then
      error(err, 0) -- the server's callback raised: the handler's
    end
    if type(err) ~= "table" then
      R:fail(a, "a stream task raised " .. tostring(err))
    elseif not tapio.is_cancelled(err) then
      R:note(a, "ended with " .. tostring(err.name))
    end
  end
end

local function streams_pair(R, kind)
  local ca = R:new_actor("streams-" .. kind .. "/client")
  local sa = R:new_actor("streams-" .. kind .. "/server")
  ca.peer, sa.peer = sa, ca
  ca.received, sa.received, ca.sent, sa.sent = "", "", {}, {}
  sa.may_raise = true
  ca.starttls, sa.starttls = kind == "starttls", kind == "starttls"
  -- a small limit makes readuntil overrun it (readline would drop bytes)
  local limit = R:chance(3) and 16 + R.rand(500) or nil
  ca.small_limit, sa.small_limit = limit, limit
  local sopts = { ssl = kind == "tls" and server_ctx or nil, limit = limit }
  local copts = { ssl = kind == "tls" and client_ctx or nil, limit = limit,
    server_hostname = kind == "tls" and "localhost" or nil }
  local rec
  local function serve(reader, writer)
    rec.accepted = true
    stream_task(R, sa, stream_body, R, sa, reader, writer)
  end
  local server, path, port
  if kind == "unix" then
    path = R:unix_path()
    server = tapio.start_unix_server(serve, path, { limit = limit })
  else
    server = tapio.start_server(serve, "127.0.0.1", 0, sopts)
    port = helper.port(server)
  end
  rec = R:add_server(server)
  sa.done_unless_made = ca
  R:task("streams" .. ca.id, { ca }, function()
    stream_task(R, ca, function()
      local reader, writer
      if path then
        reader, writer = tapio.open_unix_connection(path, { limit = limit })
      else
        reader, writer = tapio.open_connection("127.0.0.1", port, copts)
      end
      stream_body(R, ca, reader, writer)
    end)
  end)
end

-- ---- Timers ---------------------------------------------------------------

local function timer(R)
  local a = R:new_actor("timer")
  local h
  h = R.loop:call_later(R.rand(30) / 1000, function()
    R:note(a, "fired")
    if a.cancelled then
      R:fail(a, "a cancelled timer fired")
    end
    a.done = true
    local what = R.rand(6)
    if what == 1 then
      R:cancel_something(a)
    elseif what == 2 then
      R.loop:stop()
    elseif what == 3 then
      collectgarbage("collect")
    elseif what == 4 then
      R:raise(a)
    elseif what == 5 and R.timers[1] then
      local other = R:pick(R.timers)
      if not other.a.done then
        other.a.cancelled = true
        other.a.done = true
        R:note(other.a, "cancelled by " .. a.id)
        other.h:cancel()
      end
    end
  end)
  R.timers = R.timers or {}
  R.timers[#R.timers + 1] = { a = a, h = h }
end

-- ---- The round ------------------------------------------------------------

local function all_done(R)
  for _, a in ipairs(R.actors) do
    if not a.done then
      -- a server side never made whose client ended (a connection still in
      -- the backlog of a closed server never reaches the factory)
      local c = a.done_unless_made
      if not (c and c.done and not a.made) then
        return false
      end
    end
  end
  return true
end

-- Nothing happened for QUIET seconds: the first time close what is open,
-- then abort it and cancel the tasks (again each time: a child's exit may
-- be slow on a loaded machine); after STUCK times the round fails.
local function finish(R, pass)
  R.finishing = true
  for _, a in ipairs(R.actors) do
    if not a.done then
      R:note(a, "finish" .. pass)
      local t = a.transport or R.weak[a.id]
      if t and not a.lost then
        if pass == 1 or not t.abort then
          t:close()
        else
          t:abort()
        end
      end
      if a.writer then
        if pass == 1 then a.writer:close() else a.writer.transport:abort() end
      end
    end
  end
  for _, task in ipairs(R.tasks) do
    if pass > 1 and not task:done() then
      task:cancel("finish")
    end
  end
  for _, rec in ipairs(R.servers) do
    local s = rec.server or R.weak[rec.key]
    if s then
      s:close()
    end
  end
end

local KINDS = { "tcp", "tcp", "unix", "tls", "starttls", "pipe", "dgram",
                "proc",
                "streams-tcp", "streams-unix", "streams-tls",
                "streams-starttls", "timer", "timer" }

local function round_main(R)
  sink(R)
  local n = 3 + R.rand(8)
  for _ = 1, n do
    local kind = R:pick(KINDS)
    if kind == "tcp" or kind == "unix" or kind == "tls"
        or kind == "starttls" then
      stream_pair(R, kind)
    elseif kind == "pipe" then
      pipe_pair(R)
    elseif kind == "dgram" then
      dgram_pair(R)
    elseif kind == "proc" then
      process(R)
    elseif kind == "timer" then
      timer(R)
    else
      streams_pair(R, kind:match("streams%-(.*)"))
    end
  end
  local pass = 0
  while not all_done(R) and not R.failure do
    R.changed = R.loop:create_future()
    if not pcall(tapio.wait_for, R.changed, QUIET) then
      if R.close_early then
        return -- loop:close() ends what is open
      end
      pass = pass + 1
      if pass > STUCK then
        R.stuck = true
        return
      end
      finish(R, pass)
    end
  end
  R.finishing = true
  for _, rec in ipairs(R.servers) do
    local server = rec.server or R.weak[rec.key]
    if server then
      server:close()
      server:close() -- idempotent
      if server:is_serving() then
        R:fail(nil, "a closed server is serving")
      end
    end
  end
  for _ = 1, 3 do
    tapio.sleep(0) -- the reports of the tasks that just ended
    helper.collect() -- and of errors never retrieved
  end
end

local function stuck_report(R)
  local lines = {}
  for _, a in ipairs(R.actors) do
    if not a.done then
      lines[#lines + 1] = R:describe(a)
    end
  end
  return table.concat(lines, "\n")
end

-- After loop:close(): every protocol that had connection_made had its
-- connection_lost (close ends what the round left open: R.close_early),
-- and what is left answers as closed.
local function after_close(R)
  for _, a in ipairs(R.actors) do
    if a.methods and a.made and not a.lost then
      R:fail(a, "loop:close() left it without connection_lost")
    end
    local t = R.weak[a.id]
    if t and R:chance(2) then
      poke_closed(R, a, t)
    end
  end
  local ok, err = pcall(R.loop.call_soon, R.loop, print)
  if not ok and not tostring(err):find("^tapio: ") then
    R:fail(nil, "call_soon on a closed loop raised " .. tostring(err))
  end
end

local function run_round(seed)
  local loop = tapio.new_loop()
  local R = new_round(seed, loop)
  R.close_early = R:chance(6)
  loop:set_exception_handler(function(_, ctx)
    R:hear(ctx)
  end)
  local main = loop:create_task(round_main, R)
  local deadline = loop:call_later(ROUND_DEADLINE, function()
    R.timed_out = true
    loop:stop()
  end)
  while true do
    local ok, err = pcall(loop.run_until_complete, loop, main)
    if ok or R.failure or R.timed_out then
      break
    end
    if not tostring(err):find("stopped before the future completed") then
      R.failure = ("seed %d: the round's main task failed: %s\n%s"):format(
        seed, tostring(err), main:get_traceback() or "")
      break
    end
    R:count("loop run again")
    for _ = 1, R.rand(4) - 1 do
      loop:run_once(false) -- as a host steps it, in between
    end
  end
  deadline:cancel()
  R.finishing = true
  if R.failure then
    loop:close()
    error(R.failure, 0)
  end
  if R.timed_out or R.stuck then
    local report = stuck_report(R)
    loop:close()
    error(("seed %d: the round did not end:\n%s"):format(seed, report), 0)
  end
  loop:close()
  after_close(R)
  if R.failure then
    error(R.failure, 0)
  end
  for _, late in pairs(R.late) do
    if late.heard ~= 1 then
      error(("seed %d: six writes after connection_lost, the exception "
        .. "handler heard of %d\n%s"):format(seed, late.heard,
        R:describe(late.actor)), 0)
    end
  end
  for tag, r in pairs(R.raised) do
    local heard, caller = r.heard, r.caller or 0
    -- (a client factory's error whose task or future was cancelled
    -- meanwhile is given up: cancel() retrieves it, as asyncio's does)
    if (r.by_caller and heard + caller ~= (r.given_up and caller or 1))
        or (not r.by_caller and (heard ~= 1 or caller ~= 0)) then
      error(("seed %d: error %d raised in a callback reached the exception "
        .. "handler %d times, the caller %d times\n%s"):format(seed, tag,
        heard, caller, R:describe(r.actor)), 0)
    end
  end
  if os.getenv("TAPIO_CHAOS_VERBOSE") then
    for _, a in ipairs(R.actors) do
      io.stdout:write(("seed %d: %s\n"):format(seed, R:describe(a)))
    end
  end
  return R
end

-- The seeds to run: TAPIO_CHAOS_ROUNDS of them from TAPIO_CHAOS_SEED (1
-- and SEEDS by default; TAPIO_CHAOS_SEED alone: that one).
local function seeds()
  local first = tonumber(os.getenv("TAPIO_CHAOS_SEED"))
  local rounds = tonumber(os.getenv("TAPIO_CHAOS_ROUNDS"))
    or (first and 1 or SEEDS)
  local list = {}
  for i = 0, rounds - 1 do
    list[#list + 1] = (first or 1) + i
  end
  return list
end

describe("chaos", function()
  it("keeps every rule under seeded random actors", function()
    for _, seed in ipairs(seeds()) do
      run_round(seed)
    end
    if os.getenv("TAPIO_CHAOS_STATS") then
      local names = {}
      for k in pairs(stats) do
        names[#names + 1] = k
      end
      table.sort(names)
      for _, k in ipairs(names) do
        io.stderr:write(("%-24s %d\n"):format(k, stats[k]))
      end
    end
  end)
end)
