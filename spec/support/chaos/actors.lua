-- Setting the chaos spec's protocol actors up: their factories, servers
-- and connects (each in a task others may cancel), stream pairs over TCP,
-- Unix, TLS and STARTTLS, pipes, datagram endpoints, a subprocess, and
-- timers.
local helper = require "spec.helper"
local round = require "spec.support.chaos.round"
local protocol = require "spec.support.chaos.protocol"
local tapio = helper.tapio
local Round = round.Round
local server_ctx, client_ctx = round.server_ctx, round.client_ctx
local STREAM, DATAGRAM = protocol.STREAM, protocol.DATAGRAM
local PROCESS = protocol.PROCESS
local make_proto = protocol.make_proto

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

-- A server every round has, whose connections are mute actors, for the
-- connects a callback makes and cancels (at once, soon, or never).
local function sink(R)
  R.sink = R.loop:create_server(function()
    local a = stream_actor(R, "sink")
    a.mute, a.server_side = true, true
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

return { sink = sink, stream_pair = stream_pair, pipe_pair = pipe_pair,
         dgram_pair = dgram_pair, process = process, timer = timer }
