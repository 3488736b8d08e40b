-- Closing a transport, or raising an error, from inside every callback of
-- the other transport kinds (reentry_spec.lua does TCP): TLS, datagram
-- endpoints, read and write pipes, subprocesses. Each scenario drives one
-- protocol through all its callbacks with real peers; the first call of
-- the target callback closes (or aborts, or kills) its own transport there
-- and then, or raises. Whatever the target, the protocol then gets
-- connection_lost once, as its last callback, the exception handler hears
-- only of an error raised, and the closed loop holds nothing; a TLS
-- session closed there ends with the close_notify exchange done. A datagram
-- endpoint whose datagram_received or error_received raises reads on. The
-- asan.lua5.4 run of this spec is the one that finds a use after free.
local helper = require "spec.helper"
local tapio = helper.tapio

-- A protocol with the given methods that records their names, wakes its
-- waiters at each call, and runs action(self) in the first call of target.
local function probe(loop, methods, target, action)
  local p = { events = {}, changed = loop:create_future() }
  for _, name in ipairs(methods) do
    p[name] = function(self, a)
      local event = name
      if name == "connection_made" then
        self.transport = a
      elseif name == "connection_lost" then
        self.lost = (self.lost or 0) + 1
        self.lost_with = a
        self.tls_end = self.transport:get_extra_info("tls_end")
      elseif name == "pause_writing" then
        self.paused = true
      elseif name == "resume_writing" then
        self.paused = false
      elseif name == "pipe_connection_lost" or name == "pipe_data_received" then
        event = name .. ":" .. a
      end
      self.events[#self.events + 1] = event
      local changed = self.changed
      self.changed = loop:create_future()
      changed:set_result(true)
      if name == target and not self.acted then
        self.acted = #self.events
        action(self)
      end
    end
  end
  --- Waits (in a task) until pred(self) or connection_lost.
  function p:until_(pred)
    while not (pred(self) or self.lost) do
      self.changed:await()
    end
  end
  --- Waits until connection_lost.
  function p:ended()
    self:until_(function() return false end)
  end
  --- Waits until the callback name has run once (or connection_lost).
  function p:saw(name)
    self:until_(function()
      for _, e in ipairs(self.events) do
        if e == name then return true end
      end
    end)
  end
  --- Whether its transport still takes calls.
  function p:open()
    return self.transport and not self.transport:is_closing()
  end
  return p
end

-- Each kind: its protocol's methods, its actions, and drive(loop, p),
-- which makes every callback happen in turn (run in a task), skipping what
-- needs p's transport once it is closing, and ends the peers.
local kinds = {}

kinds.tls = {
  methods = { "connection_made", "data_received", "eof_received",
              "pause_writing", "resume_writing", "connection_lost" },
  drive = function(loop, p)
    local server = loop:create_server(function() return p end, "127.0.0.1",
      0, { ssl = helper.server_ctx() })
    local ct, cp = loop:create_connection(function()
      return helper.recorder(loop)
    end, "127.0.0.1", helper.port(server),
      { ssl = helper.client_ctx(), server_hostname = "localhost" })
    p:saw("connection_made")
    ct:write("ping")
    p:saw("data_received")
    if p:open() then
      ct:pause_reading()
      p.transport:set_write_buffer_limits(1, 0)
      local chunk = ("w"):rep(64 * 1024)
      while p:open() and not p.paused do
        p.transport:write(chunk)
        tapio.sleep(0)
      end
      ct:resume_reading()
      p:saw("resume_writing")
    end
    ct:close() -- close_notify: eof_received, then connection_lost
    p:ended()
    cp.lost:await()
    server:close()
  end,
}

-- A UDP port of 127.0.0.1 bound, then released (its endpoint closed).
local function released_udp_port(loop)
  local lost = loop:create_future()
  local gone = loop:create_datagram_endpoint(function()
    return { connection_lost = function() lost:set_result(true) end }
  end, { local_addr = { "127.0.0.1", 0 } })
  local port = gone:get_extra_info("sockname").port
  gone:close()
  lost:await()
  return port
end

kinds.datagram = {
  methods = { "connection_made", "datagram_received", "error_received",
              "connection_lost" },
  drive = function(loop, p)
    local t = loop:create_datagram_endpoint(function() return p end,
      { local_addr = { "127.0.0.1", 0 } })
    p:saw("connection_made")
    if not p:open() then -- closed in connection_made: a shell once lost
      return p:ended()
    end
    local port = t:get_extra_info("sockname").port
    local peer = loop:create_datagram_endpoint(function() return {} end,
      { remote_addr = { "127.0.0.1", port } })
    peer:sendto("x")
    peer:sendto("x") -- waiting still when the first closes p
    p:saw("datagram_received")
    -- to a port nobody has: the ICMP refusal reaches error_received (after
    -- close the datagram is dropped, and nothing comes). The port is
    -- released only now: one released before t and peer bound could be
    -- given to either, and then no refusal comes (likely the hang this
    -- spec had once in CI).
    t:sendto("y", { "127.0.0.1", released_udp_port(loop) })
    p:saw("error_received")
    t:close()
    p:ended()
    peer:close()
  end,
}

kinds.read_pipe = {
  methods = { "connection_made", "data_received", "eof_received",
              "connection_lost" },
  drive = function(loop, p)
    local r, w = tapio.pipe()
    loop:connect_read_pipe(function() return p end, r)
    p:saw("connection_made")
    local wt = loop:connect_write_pipe(function()
      return helper.recorder(loop)
    end, w)
    wt:write("x")
    p:saw("data_received")
    wt:close() -- end of file: eof_received, then connection_lost
    p:ended()
  end,
}

kinds.write_pipe = {
  methods = { "connection_made", "pause_writing", "resume_writing",
              "connection_lost" },
  drive = function(loop, p)
    local r, w = tapio.pipe()
    loop:connect_write_pipe(function() return p end, w)
    p:saw("connection_made")
    local reader = helper.recorder(loop)
    local chunk = ("w"):rep(256 * 1024)
    if p:open() then
      p.transport:write(chunk) -- more than the pipe holds: pause_writing
    end
    local rt = loop:connect_read_pipe(function() return reader end, r)
    p:saw("resume_writing")
    rt:close() -- the reader goes: EPIPE, connection_lost
    p:ended()
  end,
}

kinds.subprocess = {
  methods = { "connection_made", "pipe_data_received", "pipe_connection_lost",
              "process_exited", "connection_lost" },
  drive = function(loop, p)
    loop:subprocess_exec(function() return p end, "sh",
      { "-c", "echo out; cat >/dev/null; echo err >&2" })
    p:saw("connection_made")
    p:saw("pipe_data_received:1")
    if p:open() then
      p.transport:get_pipe_transport(0):close() -- cat ends, then sh
    end
    p:ended()
  end,
}

local actions = {
  close = function(p) p.transport:close() end,
  abort = function(p) p.transport:abort() end,
  kill = function(p)
    p.transport:kill()
    p.transport:close()
  end,
  raise = function(p)
    p.boom = setmetatable({}, { __tostring = function() return "boom" end })
    error(p.boom)
  end,
}
-- What may still come after the action: the end (a subprocess's end is
-- its pipes' ends, its exit, then connection_lost); and after close,
-- resume_writing as what it flushes drains, as asyncio's transports do.
local function the_end(event, action)
  return event == "connection_lost"
    or (action == "close" and event == "resume_writing")
end
for _, kind in pairs(kinds) do
  kind.after_close = the_end
end
function kinds.subprocess.after_close(event)
  return event == "connection_lost" or event == "process_exited"
    or event:match("^pipe_connection_lost:%d$") ~= nil
end
-- Where an error raised leaves the transport open, as asyncio's: a
-- datagram endpoint reads on.
kinds.datagram.reads_on = { datagram_received = true, error_received = true }
kinds.tls.actions = { "close", "abort", "raise" }
kinds.tls.ends_clean = true
kinds.datagram.actions = { "close", "abort", "raise" }
kinds.read_pipe.actions = { "close", "raise" }
kinds.write_pipe.actions = { "close", "abort", "raise" }
kinds.subprocess.actions = { "close", "kill", "raise" }

local order = { "tls", "datagram", "read_pipe", "write_pipe", "subprocess" }

-- What a case asserts once its loop is closed.
local function check(k, action, target, p, errors, loop)
  local seen = table.concat(p.events, " ")
  assert.are.equal(1, p.lost, seen)
  assert.are.equal("connection_lost", p.events[#p.events])
  assert.is_number(p.acted, seen)
  local reads_on = action == "raise" and (k.reads_on or {})[target]
  -- after the action nothing more comes but the end
  for i = p.acted + 1, #p.events do
    assert.is_true(reads_on or k.after_close(p.events[i], action), seen)
  end
  assert.are.equal(0, loop:_debug().refs)
  if k.ends_clean and action == "close" then -- the close_notify exchange
    assert.are.equal("clean", p.tls_end, seen) -- ran to its end
  end
  if action == "raise" then -- reported; the transport aborted, or reading on
    assert.are.equal(1, #errors, seen)
    assert.are.equal(("error in protocol.%s()"):format(target),
      errors[1].message)
    assert.are.equal(p.boom, errors[1].exception)
    if reads_on then -- and ended by the driver's close, cleanly
      assert.is_nil(p.lost_with, seen)
    elseif target ~= "connection_lost" then
      assert.are.equal(p.boom, p.lost_with, seen)
    end
  end
end

describe("closing a transport from inside a callback", function()
  for _, kind in ipairs(order) do
    local k = kinds[kind]
    for _, target in ipairs(k.methods) do
      for _, action in ipairs(k.actions) do
        it(("%s: %s in %s"):format(kind, action, target), function()
          local p, errors
          local loop = select(-1, helper.run(function(loop, errs)
            errors = errs
            p = probe(loop, k.methods, target, actions[action])
            k.drive(loop, p)
          end, { keep_open = true, errors_ok = action == "raise" }))
          loop:close()
          check(k, action, target, p, errors, loop)
        end)
      end
    end
  end
end)
