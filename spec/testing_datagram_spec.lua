-- tapio.testing's datagrams: on a virtual loop, create_datagram_endpoint
-- makes endpoints of a virtual network that exchange datagrams in memory
-- on the loop's clock. The reference's UDP echo client and server, a
-- request/retry client whose 3-second timer runs on the virtual clock,
-- loss, duplication, reordering and delay replayed from their seeds, the
-- connected endpoint's rules, ECONNREFUSED, EADDRINUSE, ephemeral ports,
-- close, abort, flow control, and testing.run catching one left open.
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"

-- helper.dgram_recorder's endpoint, its events "data:<the bytes>"; with
-- p.echo, each datagram goes back as it came.
local function show(data)
  return data
end

local function endpoint(loop, opts, methods)
  local m = { show = show, echo_prefix = "" }
  for k, v in pairs(methods or {}) do
    m[k] = v
  end
  return helper.dgram_endpoint(loop, opts, m)
end

local function bound(loop, port, methods)
  return endpoint(loop, { local_addr = { "127.0.0.1", port or 0 } },
    methods)
end

-- The reference's protocols (examples/udp_echo_server.lua and
-- udp_echo_client.lua), printing into a log instead.
local function echo_server(log)
  local P = {}
  P.__index = P
  function P:connection_made(transport)
    self.transport = transport
  end
  function P:datagram_received(data, addr)
    log[#log + 1] = ("Received %s from %s"):format(tapio.repr(data),
      tostring(addr))
    self.transport:sendto(data, addr)
  end
  return setmetatable({}, P)
end

local function echo_client(message, loop, log)
  local P = {}
  P.__index = P
  function P:connection_made(transport)
    self.transport = transport
    log[#log + 1] = "Send: " .. message
    self.transport:sendto(message)
  end
  function P:datagram_received(data)
    log[#log + 1] = "Received: " .. data
    self.transport:close()
  end
  function P:error_received(exc)
    log[#log + 1] = "Error received: " .. tostring(exc)
  end
  function P:connection_lost()
    log[#log + 1] = "Connection closed"
    self.on_con_lost:set_result(true)
  end
  return setmetatable({ on_con_lost = loop:create_future() }, P)
end

-- The datagrams c sends to s ("1".."n") under spec, as s's events.
local function under_faults(spec, n, wait, seed)
  local events
  testing.run(function(clock, loop)
    local st, sp = bound(loop)
    local ct = endpoint(loop, { remote_addr = st:get_extra_info("sockname") })
    testing.datagram_faults(ct, spec)
    for i = 1, n do
      ct:sendto(tostring(i))
    end
    clock:advance(wait or 0)
    events = table.concat(sp.events, " ")
    ct:close()
    st:close()
  end, { seed = seed })()
  return events
end

local function count(s, word)
  local n = 0
  for _ in s:gmatch(word) do
    n = n + 1
  end
  return n
end

describe("the virtual network's datagrams", function()
  it("runs the reference's UDP echo server and client",
     testing.run(function(clock, loop)
    local slog, clog = {}, {}
    local st = loop:create_datagram_endpoint(function()
      return echo_server(slog)
    end, { local_addr = { "127.0.0.1", 9999 } })
    local ct, cp = loop:create_datagram_endpoint(function()
      return echo_client("Hello World!", loop, clog)
    end, { remote_addr = { "127.0.0.1", 9999 } })
    assert.is_true(cp.on_con_lost:await())
    assert.same({ "Send: Hello World!", "Received: Hello World!",
                  "Connection closed" }, clog)
    assert.same({ "Received 'Hello World!' from ('127.0.0.1', 32768)" },
      slog)
    assert.equal(0, clock:time())
    assert.is_true(ct:is_closing())
    st:close()
  end))

  it("answers the virtual addresses, and no socket", testing.run(
     function(_, loop)
    local st = bound(loop, 0)
    local saddr = st:get_extra_info("sockname")
    assert.equal("127.0.0.1", saddr.host)
    assert.equal(32768, saddr.port)
    local ct = endpoint(loop, { remote_addr = saddr })
    assert.equal(saddr, ct:get_extra_info("peername"))
    assert.equal(32769, ct:get_extra_info("sockname").port)
    assert.is_nil(ct:get_extra_info("socket"))
    assert.equal("none", st:get_extra_info("peername", "none"))
    ct:close()
    st:close()
  end))

  -- Linux's source for a wildcard-bound or connected socket: the route to
  -- any 127.x.y.z, or a broadcast on lo, names 127.0.0.1 (a reply to the
  -- destination's address would go elsewhere, or broadcast).
  it("sends from 127.0.0.1 when not bound at an address", testing.run(
     function(_, loop)
    local seen = {}
    local st = endpoint(loop, { local_addr = { "0.0.0.0", 0 } }, {
      datagram_received = function(_, _, addr) seen[#seen + 1] = addr end })
    local port = st:get_extra_info("sockname").port
    local wild = endpoint(loop, { local_addr = { "0.0.0.0", 0 } })
    wild:sendto("a", { "127.0.0.2", port })
    local bcast = endpoint(loop, { remote_addr = { "255.255.255.255", port },
                                   allow_broadcast = true })
    bcast:sendto("b")
    local conn = endpoint(loop, { remote_addr = { "127.0.0.3", port } })
    assert.equal("127.0.0.1", conn:get_extra_info("sockname").host)
    conn:sendto("c")
    tapio.sleep(0)
    assert.equal(3, #seen)
    for i, t in ipairs({ wild, bcast, conn }) do
      assert.same({ "127.0.0.1", t:get_extra_info("sockname").port },
                  { seen[i].host, seen[i].port })
      t:close()
    end
    st:close()
  end))

  -- As the kernel delivers a broadcast: to every socket at the port's
  -- wildcard (reuse_port's all, where a unicast reaches one), and no
  -- ICMP error when nobody is there.
  it("delivers a broadcast to every endpoint at the port, and nobody "
     .. "there is no error", testing.run(function(_, loop)
    local ts, ps = {}, {}
    local port = 0
    -- the first closes the second when the broadcast reaches it
    local closer = { datagram_received = function(self, data)
      self.events[#self.events + 1] = "data:" .. data
      ts[2]:close()
    end }
    for i = 1, 3 do
      ts[i], ps[i] = endpoint(loop, { local_addr = { "0.0.0.0", port },
                                      reuse_port = true },
                              i == 1 and closer or nil)
      port = ts[i]:get_extra_info("sockname").port
    end
    local near, np = endpoint(loop, { local_addr = { "127.0.0.1", port },
                                      reuse_port = true })
    local bt, bp = endpoint(loop, { remote_addr = { "255.255.255.255", port },
                                    allow_broadcast = true })
    bt:sendto("all")
    bt:sendto("one", { "127.0.0.1", port })
    bt:sendto("none", { "255.255.255.255", 9 })
    tapio.sleep(0)
    tapio.sleep(0)
    assert.same({ "made", "data:all" }, ps[1].events)
    assert.same({ "made", "lost" }, ps[2].events) -- closed first
    assert.same({ "made", "data:all" }, ps[3].events)
    -- bound at an address: no broadcast, the unicast (the closest bind)
    assert.same({ "made", "data:one" }, np.events)
    assert.same({ "made" }, bp.events) -- no ECONNREFUSED for "none"
    for _, t in ipairs({ ts[1], ts[3], near, bt }) do
      t:close()
    end
  end))

  it("retries a lost request on the virtual clock, in no time",
     testing.run(function(clock, loop)
    local st, sp = bound(loop, 5353, { echo = true })
    testing.datagram_faults(st, { drop = { 1 } }) -- the first answer
    local start = os.clock()
    local client = helper.dgram_recorder(loop, {
      connection_made = function(self, t)
        self.t, self.tries = t, 0
        self:try()
      end,
      try = function(self)
        self.tries = self.tries + 1
        self.t:sendto("query")
        self.timer = loop:call_later(3, function() self:try() end)
      end,
      datagram_received = function(self, data)
        self.answer, self.at = data, loop:time()
        self.timer:cancel()
        self.t:close()
      end,
    })
    loop:create_datagram_endpoint(function() return client end,
      { remote_addr = { "127.0.0.1", 5353 } })
    clock:advance(10)
    assert.equal("query", client.answer)
    assert.equal(2, client.tries)
    assert.equal(3, client.at)
    assert.same({ "made", "data:query", "data:query" }, sp.events)
    assert.is_true(os.clock() - start < 5) -- CPU: no blow-up
    st:close()
  end))

  it("loses datagrams, the same ones from the same seed", function()
    local a = under_faults({ loss = 0.3, seed = 7 }, 60)
    assert.equal(a, under_faults({ loss = 0.3, seed = 7 }, 60))
    assert.not_equal(a, under_faults({ loss = 0.3, seed = 8 }, 60))
    local got = count(a, "data:")
    assert.is_true(got > 25 and got < 55, a)
    assert.equal("made data:1 data:3 data:4",
      under_faults({ drop = { 2, 5 } }, 5):gsub(" data:5$", ""))
  end)

  it("duplicates datagrams, the copy right after", function()
    assert.equal("made data:1 data:1 data:2 data:2",
      under_faults({ duplicate = 1 }, 2))
    local a = under_faults({ duplicate = 0.5, seed = 3 }, 20)
    assert.equal(a, under_faults({ duplicate = 0.5, seed = 3 }, 20))
    assert.is_true(count(a, "data:") > 20)
  end)

  it("reorders datagrams within reach, replayed from the seed", function()
    local a = under_faults({ reorder = 2, seed = 3 }, 20)
    assert.equal(a, under_faults({ reorder = 2, seed = 3 }, 20))
    assert.equal(20, count(a, "data:"))
    local ordered = {}
    for i = 1, 20 do
      ordered[i] = "data:" .. i
    end
    assert.not_equal("made " .. table.concat(ordered, " "), a)
    local seen = {}
    for v in a:gmatch("data:(%d+)") do
      local passed = 0 -- later ones that went first: at most 2
      for w in pairs(seen) do
        passed = passed + (w > tonumber(v) and 1 or 0)
      end
      assert.is_true(passed <= 2, a)
      seen[tonumber(v)] = true
    end
  end)

  it("delays datagrams by loop time, with jitter that reorders", function()
    assert.equal("made", under_faults({ delay = 0.05 }, 1, 0.049))
    assert.equal("made data:1", under_faults({ delay = 0.05 }, 1, 0.05))
    local spec = { delay = 0.01, jitter = 0.1, seed = 5 }
    local a = under_faults(spec, 10, 1)
    assert.equal(a, under_faults(spec, 10, 1))
    assert.equal(10, count(a, "data:"))
    assert.not_equal("made data:1 data:2 data:3 data:4 data:5 data:6 "
      .. "data:7 data:8 data:9 data:10", a)
  end)

  it("counts the datagrams each fault hit", testing.run(function(clock, loop)
    local st, sp = bound(loop)
    local ct = endpoint(loop, { remote_addr = st:get_extra_info("sockname") })
    local before = testing.datagram_fault_counts(ct)
    -- what one spec's n datagrams hit: each count's growth
    local function send(spec, n, wait)
      sp.events = {}
      testing.datagram_faults(ct, spec)
      for i = 1, n do
        ct:sendto(tostring(i))
      end
      clock:advance(wait or 0)
      local now, grew = testing.datagram_fault_counts(ct), {}
      for k, v in pairs(now) do
        grew[k] = v - before[k]
      end
      before = now
      return count(table.concat(sp.events, " "), "data:"), grew
    end
    -- a detector would see these losses: 2 listed, the rest drawn
    local got, c = send({ drop = { 2, 5 }, loss = 0.3, seed = 7 }, 40)
    assert.same({ sent = 40, dropped = 2, lost = 40 - 2 - got,
                  duplicated = 0, reordered = 0, delayed = 0 }, c)
    assert.is_true(c.lost > 0)
    got, c = send({ duplicate = 0.5, seed = 3 }, 20)
    assert.equal(20, c.sent)
    assert.equal(got - 20, c.duplicated)
    assert.is_true(c.duplicated > 0 and c.duplicated < 20)
    got, c = send({ delay = 0.5, reorder = 2, seed = 3 }, 10, 1)
    assert.equal(10, got)
    assert.equal(10, c.delayed)
    assert.is_true(c.reordered > 0 and c.reordered < 10, c.reordered)
    local ta, tb = testing.pipe_pair({}, {})
    assert.has_error(function() testing.datagram_fault_counts(ta) end,
      "tapio: testing.datagram_fault_counts: bad argument #1 't' (a "
      .. "datagram endpoint expected)")
    ta:close()
    tb:close()
    ct:close()
    st:close()
  end))

  it("counts for the endpoint's life: past clearing, and after its close",
     testing.run(function(clock, loop)
    local st = bound(loop)
    local ct = endpoint(loop, { remote_addr = st:get_extra_info("sockname") })
    testing.datagram_faults(ct, { loss = 1 })
    ct:sendto("a")
    ct:sendto("b")
    testing.datagram_faults(ct) -- cleared: what they did stays counted
    ct:sendto("c")
    local want = { sent = 3, lost = 2, dropped = 0, duplicated = 0,
                   reordered = 0, delayed = 0 }
    assert.same(want, testing.datagram_fault_counts(ct))
    ct:close()
    st:close()
    clock:run_until_idle() -- connection_lost came: the handle stays
    assert.same(want, testing.datagram_fault_counts(ct))
    assert.same({ sent = 0, lost = 0, dropped = 0, duplicated = 0,
                  reordered = 0, delayed = 0 },
                testing.datagram_fault_counts(st)) -- it sent nothing
    local ta, tb = testing.pipe_pair({}, {})
    ta:close()
    tb:close()
    clock:run_until_idle()
    assert.has_error(function() testing.datagram_fault_counts(ta) end,
      "tapio: testing.datagram_fault_counts: bad argument #1 't' (a "
      .. "datagram endpoint expected)")
  end))

  it("numbers a drop list given anew from its own first datagram",
     testing.run(function(clock, loop)
    local st, sp = bound(loop)
    local ct = endpoint(loop, { remote_addr = st:get_extra_info("sockname") })
    local function send(...)
      for _, v in ipairs({ ... }) do
        ct:sendto(v)
      end
      clock:run_until_idle()
    end
    send("a", "b")
    testing.datagram_faults(ct, { drop = { 1 } })
    send("c", "d")
    testing.datagram_faults(ct, { drop = { 2 } })
    send("e", "f", "g")
    assert.same({ "made", "data:a", "data:b", "data:d", "data:e",
                  "data:g" }, sp.events)
    assert.equal(2, testing.datagram_fault_counts(ct).dropped)
    ct:close()
    st:close()
  end))

  it("draws from the session's seed when none is given", function()
    local a = under_faults({ loss = 0.5 }, 30, 0, 42)
    assert.equal(a, under_faults({ loss = 0.5 }, 30, 0, 42))
    assert.not_equal(a, under_faults({ loss = 0.5 }, 30, 0, 43))
  end)

  it("keeps a connected endpoint to its peer", testing.run(
     function(_, loop)
    local st, sp = bound(loop)
    local ct, cp = endpoint(loop, { remote_addr = st:get_extra_info(
      "sockname") })
    local xt, xp = bound(loop)
    assert.has_error(function() ct:sendto("x", { "127.0.0.1", 1 }) end,
      "tapio: transport:sendto: bad argument #2 'addr' (must be nil or the "
      .. "connected peer's ('127.0.0.1', 32768))")
    xt:sendto("from x", ct:get_extra_info("sockname"))
    st:sendto("from s", ct:get_extra_info("sockname"))
    tapio.sleep(0)
    tapio.sleep(0)
    assert.same({ "made", "data:from s" }, cp.events)
    assert.same({ "made", "err:ECONNREFUSED" }, xp.events)
    assert.same({ "made" }, sp.events)
    ct:close()
    st:close()
    xt:close()
  end))

  it("reports ECONNREFUSED to error_received and keeps receiving",
     testing.run(function(_, loop)
    local ct, cp = endpoint(loop, { remote_addr = { "127.0.0.1", 9 } })
    ct:sendto("ping")
    tapio.sleep(0)
    tapio.sleep(0)
    assert.same({ "made", "err:ECONNREFUSED" }, cp.events)
    assert.equal("sendto ('127.0.0.1', 9): connection refused",
      cp.errors[1].message)
    local st = bound(loop, 9, { echo = true })
    ct:sendto("again")
    tapio.sleep(0)
    tapio.sleep(0)
    assert.same({ "made", "err:ECONNREFUSED", "data:again" }, cp.events)
    ct:close()
    st:close()
  end))

  it("refuses a port bound already, names and real sockets",
     testing.run(function(_, loop)
    local st = bound(loop, 7000)
    local ok, err = pcall(bound, loop, 7000)
    assert.is_false(ok)
    assert.equal("EADDRINUSE", err.name)
    ok, err = pcall(endpoint, loop, { remote_addr = { "example.invalid",
                                                      53 } })
    assert.equal("EAI_NONAME", err.name)
    ok, err = pcall(endpoint, loop, { local_addr = "/tmp/x.sock" })
    assert.is_false(ok)
    assert.matches("real I/O is refused", tostring(err))
    local lt = endpoint(loop, { local_addr = { "localhost", 7001 } })
    assert.equal("127.0.0.1", lt:get_extra_info("sockname").host)
    st:close()
    lt:close()
  end))

  it("closes after sending what waits, aborts dropping it",
     testing.run(function(_, loop)
    local st, sp = bound(loop)
    local addr = st:get_extra_info("sockname")
    local ct, cp = endpoint(loop, { remote_addr = addr })
    testing.datagram_faults(ct, { capacity = 2 })
    for _, d in ipairs({ "a", "b", "c", "d" }) do
      ct:sendto(d)
    end
    assert.equal(2 * 9, ct:get_write_buffer_size())
    assert.equal(2, testing.datagram_in_flight(ct))
    ct:close()
    tapio.sleep(0)
    tapio.sleep(0)
    assert.same({ "made", "data:a", "data:b", "data:c", "data:d" },
      sp.events)
    assert.same({ "made", "lost" }, cp.events)
    assert.is_false(cp.lost:await())
    local at, ap = endpoint(loop, { remote_addr = addr })
    testing.datagram_faults(at, { capacity = 1 })
    at:sendto("x")
    at:sendto("y")
    at:abort()
    tapio.sleep(0)
    tapio.sleep(0)
    assert.same({ "made", "lost" }, ap.events)
    assert.equal("data:x", sp.events[#sp.events])
    st:close()
  end))

  it("closes safely inside datagram_received", testing.run(
     function(_, loop)
    local st, sp = bound(loop, 0, {
      datagram_received = function(self, data)
        self.events[#self.events + 1] = "data:" .. data
        self.transport:close()
      end,
    })
    local ct = endpoint(loop, { remote_addr = st:get_extra_info("sockname") })
    ct:sendto("1")
    ct:sendto("2")
    tapio.sleep(0)
    tapio.sleep(0)
    assert.same({ "made", "data:1", "lost" }, sp.events)
    ct:close()
  end))

  it("pauses writing at the capacity and resumes", testing.run(
     function(_, loop)
    local st, sp = bound(loop)
    local ct, cp = endpoint(loop, { remote_addr = st:get_extra_info(
      "sockname") })
    testing.datagram_faults(ct, { capacity = 100 })
    ct:set_write_buffer_limits(100, 0)
    for _ = 1, 5 do
      ct:sendto(("x"):rep(50))
    end
    assert.same({ "made", "pause" }, cp.events)
    tapio.sleep(0)
    tapio.sleep(0)
    assert.same({ "made", "pause", "resume" }, cp.events)
    assert.equal(6, #sp.events)
    ct:close()
    st:close()
  end))

  it("has a recorder for datagrams with no protocol of the test's",
     testing.run(function(_, loop)
    local rec = testing.recorder(nil, { kind = "datagram" })
    local ct = loop:create_datagram_endpoint(function() return rec end,
      { remote_addr = { "127.0.0.1", 9 } })
    ct:sendto("ping") -- nobody at port 9
    assert.equal("error_received:ECONNREFUSED", rec:wait("error_received"))
    local st = bound(loop, 9, { echo = true })
    ct:sendto("again")
    assert.equal("datagram_received:again", rec:wait("datagram_received"))
    assert.same({ "connection_made", "error_received:ECONNREFUSED",
                  "datagram_received:again" }, rec.events)
    assert.has_error(function()
      testing.recorder(nil, { kind = "stream" })
    end, "tapio: testing.recorder: bad argument #2 'opts.kind' ('datagram' "
      .. "or 'subprocess' expected, got stream)")
    assert.has_error(function() -- a typo would have recorded unmerged
      testing.recorder(nil, { merged = true })
    end, "tapio: testing.recorder: bad argument #2 'opts' (unknown option "
      .. "'merged')")
    ct:close()
    st:close()
  end))

  it("is caught by testing.run when left open", function()
    local ok, err = pcall(testing.run(function(_, loop)
      bound(loop)
    end))
    assert.is_false(ok)
    assert.matches("left 1 transport%(s%) open", tostring(err))
  end)

  it("checks datagram_faults' arguments", testing.run(function(_, loop)
    local st = bound(loop)
    assert.has_error(function()
      testing.datagram_faults(st, { loss = 2 })
    end, "tapio: testing.datagram_faults: bad argument #2 'spec' (loss: a "
      .. "probability 0..1 expected)")
    assert.has_error(function()
      testing.datagram_faults(st, { drop = { 3, 2 } })
    end, "tapio: testing.datagram_faults: bad argument #2 'spec' (drop: "
      .. "ascending datagram numbers >= 1 expected)")
    assert.has_error(function()
      testing.datagram_faults(st, { lose = 1 })
    end, "tapio: testing.datagram_faults: bad argument #2 'spec' (unknown "
      .. "fault 'lose')")
    local seen = testing.datagram_faults(st, { delay = 1, seed = 9 })
    assert.same({ delay = 1, seed = 9 }, seen)
    testing.datagram_faults(st)
    st:close()
  end))
end)

-- ---- Faults on a real endpoint ---------------------------------------------

local python = "/usr/bin/python3"

-- Inside a task: spec/support/udp_echo.py (asyncio) on 127.0.0.1, and a
-- client endpoint of this real loop connected to it.
local function python_echo(loop)
  local p = tapio.create_subprocess_exec(python,
    { "spec/support/udp_echo.py" }, { stdin = tapio.PIPE,
    stdout = tapio.PIPE })
  local line = p.stdout:readline()
  local port = assert(tonumber(line:match("^PORT (%d+)")), line)
  local ct, cp = endpoint(loop, { remote_addr = { "127.0.0.1", port } })
  return p, ct, cp
end

local function python_done(p, ct)
  ct:close()
  p.stdin:close()
  assert.are.equal(0, p:wait())
end

-- The faults cleared, "marker": the next echo to come back.
local function marker_next(ct, cp)
  testing.datagram_faults(ct)
  local n = #cp.datagrams
  ct:sendto("marker")
  assert.are.equal("marker", (cp:got(n + 1)))
end

describe("datagram faults on a real endpoint", function()
  local function real(fn)
    return function()
      if not helper.exists(python) then
        return
      end
      helper.run(fn)
    end
  end

  it("loses and drops what the spec says: the peer never gets it",
     real(function(loop)
    local p, ct, cp = python_echo(loop)
    testing.datagram_faults(ct, { loss = 1 })
    ct:sendto("lost")
    marker_next(ct, cp)
    testing.datagram_faults(ct, { drop = { 2, 3 }, duplicate = 1 })
    for i = 1, 4 do
      ct:sendto(tostring(i))
    end
    assert.are.equal("4", (cp:got(5)))
    marker_next(ct, cp)
    assert.are.same({ "made", "data:marker", "data:1", "data:1", "data:4",
      "data:4", "data:marker" }, cp.events)
    python_done(p, ct)
  end))

  it("reorders as the seed says: the virtual network's order", function()
    local spec = { reorder = 2, seed = 3 }
    local want = under_faults(spec, 12)
    local sorted = { "made" }
    for i = 1, 12 do
      sorted[#sorted + 1] = "data:" .. i
    end
    assert.are_not.equal(table.concat(sorted, " "), want)
    real(function(loop)
      local p, ct, cp = python_echo(loop)
      testing.datagram_faults(ct, spec)
      for i = 1, 12 do
        ct:sendto(tostring(i))
      end
      cp:got(12)
      marker_next(ct, cp)
      table.remove(cp.events)
      assert.are.equal(want, table.concat(cp.events, " "))
      python_done(p, ct)
    end)()
  end)

  it("holds a delayed datagram in tapio until its time; close sends it, "
     .. "then connection_lost", real(function(loop)
    local p, ct, cp = python_echo(loop)
    local seen = testing.datagram_faults(ct, { delay = 0.2 })
    assert.is_number(seen.seed)
    local t0 = loop:time()
    ct:sendto("late")
    assert.are.equal(4, testing.datagram_in_flight(ct))
    assert.are.equal(0, ct:get_write_buffer_size())
    assert.are.equal("late", (cp:got(1)))
    assert.is_true(loop:time() - t0 >= 0.2 - 1e-6)
    python_done(p, ct)
    local st, sp = bound(loop)
    local rt, rp = bound(loop)
    testing.datagram_faults(st, { delay = 0.05 })
    st:sendto("held", rt:get_extra_info("sockname"))
    st:close()
    assert.is_false(sp.lost:await())
    assert.are.equal("held", (rp:got(1)))
    rt:close()
  end))

  it("refuses capacity: the virtual network's", real(function(loop)
    local p, ct = python_echo(loop)
    assert.has_error(function()
      testing.datagram_faults(ct, { capacity = 10 })
    end, "tapio: testing.datagram_faults: capacity: a virtual loop's "
      .. "datagram endpoint expected")
    python_done(p, ct)
  end))
end)
