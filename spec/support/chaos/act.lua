-- What a protocol actor of the chaos spec does in a callback: an action
-- drawn by weight (act.transport), each a function of DO.
local round = require "spec.support.chaos.round"
local protocol = require "spec.support.chaos.protocol"
local act = round.act
local method, make_proto = protocol.method, protocol.make_proto
local transport_of, record_sent = protocol.transport_of, protocol.record_sent

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
  local server = R:server_of(rec)
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

return act
