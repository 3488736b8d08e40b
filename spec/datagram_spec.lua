-- Datagram endpoints from Lua: the echo round trip (IPv4, IPv6), address
-- values that go back to sendto as they came, empty datagrams, ICMP
-- errors to error_received with the endpoint still receiving, sendto's
-- errors, queueing with the watermarks and close flushing, Unix datagram
-- sockets, an error raised in a callback (the endpoint stays open),
-- asyncio's option checks, and a metatable of the datagram kind's own
-- methods.
local helper = require "spec.helper"
local tapio = helper.tapio

local recorder, endpoint = helper.dgram_recorder, helper.dgram_endpoint

-- An endpoint bound to an ephemeral port of 127.0.0.1.
local function bound(loop, methods)
  return endpoint(loop, { local_addr = { "127.0.0.1", 0 } }, methods)
end

-- An endpoint connected to endpoint t's address.
local function connected_to(loop, t, methods)
  return endpoint(loop, { remote_addr = t:get_extra_info("sockname") },
                  methods)
end

local function round_trip(host)
  helper.run(function(loop)
    local st, sp = endpoint(loop, { local_addr = { host, 0 } }, { echo = true })
    local saddr = st:get_extra_info("sockname")
    assert.are.equal(host, saddr.host)
    local ct, cp = endpoint(loop, { remote_addr = { host, saddr.port } })
    assert.are.equal(saddr, ct:get_extra_info("peername"))
    ct:sendto("xxx")
    local data, addr = cp:got(1)
    assert.are.equal("resp:xxx", data)
    assert.are.equal(saddr, addr)
    assert.are.equal(ct:get_extra_info("sockname"), sp.datagrams[1].addr)
    ct:close()
    st:close()
    assert.is_false(cp.lost:await())
    assert.is_false(sp.lost:await())
    assert.are.same({ "made", "data:3", "lost" }, sp.events)
    assert.are.same({ "made", "data:8", "lost" }, cp.events)
    -- after the end, as asyncio's: the addresses, no buffer, the limits
    assert.are.equal(saddr, ct:get_extra_info("peername"))
    assert.are.equal(saddr, st:get_extra_info("sockname"))
    assert.is_nil(st:get_extra_info("peername"))
    assert.is_nil(st:get_extra_info("socket"))
    assert.are.equal(0, ct:get_write_buffer_size())
    assert.are.same({ 16384, 65536 }, { ct:get_write_buffer_limits() })
    ct:set_write_buffer_limits(8)
    assert.are.same({ 2, 8 }, { ct:get_write_buffer_limits() })
    assert.are.equal(loop, ct:get_loop())
    assert.is_nil(ct:get_protocol())
    assert.are.equal(3, ct:get_stats().bytes_sent)
    ct:sendto("dropped") -- as asyncio drops it
  end)
end

describe("a datagram endpoint", function()
  it("echoes over IPv4 (D17)", function()
    round_trip("127.0.0.1")
  end)

  it("echoes over IPv6 (D17)", function()
    round_trip("::1")
  end)

  it("gives each datagram its sender as an address value that sendto "
     .. "takes back; one value per peer", function()
    helper.run(function(loop)
      local st, sp = bound(loop)
      local port = st:get_extra_info("sockname").port
      local ct, cp = bound(loop)
      ct:sendto("a", { "127.0.0.1", port })
      ct:sendto("b", tapio.address("127.0.0.1", port))
      local _, a1 = sp:got(1)
      local _, a2 = sp:got(2)
      assert.is_true(rawequal(a1, a2))
      assert.are.equal("('127.0.0.1', "
        .. ct:get_extra_info("sockname").port .. ")", tostring(a1))
      assert.are.equal(2, #a1)
      assert.are.equal(a1.host, a1[1])
      assert.are.equal(tapio.AF_INET, a1.family)
      st:sendto("back", a1)
      assert.are.equal("back", (cp:got(1)))
      st:close()
      ct:close()
    end)
  end)

  it("gives each of several peers its own value, equal for all its "
     .. "datagrams, and sendto sends a kept one to its peer", function()
    helper.run(function(loop)
      local st, sp = bound(loop)
      local clients, names = {}, {}
      for i = 1, 6 do
        local ct, cp = connected_to(loop, st)
        clients[i] = { t = ct, p = cp }
        names[i] = tostring(ct:get_extra_info("sockname"))
      end
      for round = 1, 2 do -- interleaved: 1, 2, ..., 6, 1, 2, ..., 6
        for i = 1, 6 do
          clients[i].t:sendto(round .. ":" .. i)
          sp:got((round - 1) * 6 + i) -- one at a time, in this order
        end
      end
      for n, d in ipairs(sp.datagrams) do
        local i = (n - 1) % 6 + 1
        assert.are.equal(math.floor((n - 1) / 6) + 1 .. ":" .. i, d.data)
        assert.are.equal(names[i], tostring(d.addr))
        -- equal to its peer's first value; the very same value unless two
        -- of the six ports share a slot of the loop's cache (1 in 70 runs)
        assert.is_true(d.addr == sp.datagrams[i].addr)
      end
      -- the value delivered last goes back to its sender (sendto's fast
      -- path), and so do the values kept from before, in any order
      st:sendto("to6", sp.datagrams[12].addr)
      for i = 1, 6 do
        st:sendto("to" .. i, sp.datagrams[i].addr)
      end
      for i = 1, 6 do
        assert.are.equal("to" .. i, (clients[i].p:got(i == 6 and 2 or 1)))
      end
      assert.are.equal("to6", (clients[6].p:got(1)))
      st:close()
      for i = 1, 6 do
        clients[i].t:close()
      end
    end)
  end)

  it("gives an address value that cannot be changed, shared by the "
     .. "loop's endpoints", function()
    helper.run(function(loop)
      local s1, p1 = bound(loop)
      local s2, p2 = bound(loop)
      local ct, cp = bound(loop)
      local me = ct:get_extra_info("sockname")
      local tries, record = {}, p1.datagram_received
      p1.datagram_received = function(self, data, addr)
        -- a protocol that tries to change the value it got
        tries[#tries + 1] = { pcall(function() addr.port = 1 end) }
        tries[#tries + 1] = { pcall(function() addr[1] = "10.0.0.1" end) }
        record(self, data, addr)
      end
      ct:sendto("a", s1:get_extra_info("sockname"))
      local _, a1 = p1:got(1)
      ct:sendto("b", s2:get_extra_info("sockname"))
      local _, a2 = p2:got(1)
      ct:sendto("c", s1:get_extra_info("sockname"))
      local _, a3 = p1:got(2)
      assert.are.equal(4, #tries)
      for _, try in ipairs(tries) do
        assert.is_false(try[1])
        assert.matches("attempt to index", try[2])
      end
      assert.is_true(rawequal(a1, a2))
      assert.is_true(rawequal(a1, a3))
      assert.are.equal(me, a3)
      assert.are.equal(me.port, a3.port)
      assert.are.equal("127.0.0.1", a3[1])
      s1:sendto("back", a1)
      assert.are.equal("back", (cp:got(1)))
      s1:close()
      s2:close()
      ct:close()
    end)
  end)

  it("sends and delivers empty datagrams (D10, gh-113812)", function()
    helper.run(function(loop)
      local st, sp = bound(loop, { echo = true })
      local ct, cp = connected_to(loop, st)
      ct:sendto("")
      assert.are.equal("", (sp:got(1)))
      assert.are.equal("resp:", (cp:got(1)))
      ct:close()
      st:close()
    end)
  end)

  it("reports an ICMP error to error_received and keeps receiving (D6, "
     .. "D18)", function()
    helper.run(function(loop)
      local dead = loop:create_datagram_endpoint(function() return {} end,
        { local_addr = { "127.0.0.1", 0 } })
      local dead_addr = dead:get_extra_info("sockname")
      dead:close()
      tapio.sleep(0)
      local st, sp = bound(loop)
      st:sendto("x", dead_addr)
      helper.until_true(function() return #sp.errors > 0 end)
      local err = sp.errors[1]
      assert.are.equal("ECONNREFUSED", err.name)
      assert.are.equal(("sendto ('127.0.0.1', %d): connection refused")
        :format(dead_addr.port), err.message)
      local ct = connected_to(loop, st)
      ct:sendto("later")
      assert.are.equal("later", (sp:got(1)))
      assert.is_false(st:is_closing())
      st:close()
      ct:close()
    end)
  end)

  it("raises for what sendto cannot send (D7, uvloop)", function()
    helper.run(function(loop)
      local st = bound(loop)
      local ct = connected_to(loop, st)
      local port = st:get_extra_info("sockname").port
      local fn = "tapio: transport:sendto: "
      assert.has_error(function() st:sendto("x", { "example.com", 1 }) end,
        fn .. "bad argument #2 'addr' ('example.com' is not a numeric "
        .. "address (no DNS lookup is made here; resolve it with "
        .. "loop:getaddrinfo))")
      assert.has_error(function() st:sendto("x", { "::1", 1 }) end,
        fn .. "bad argument #2 'addr' (socket family mismatch)")
      assert.has_error(function() ct:sendto("x", { "127.0.0.1", 1 }) end,
        fn .. ("bad argument #2 'addr' (must be nil or the connected peer's "
        .. "('127.0.0.1', %d))"):format(port))
      assert.has_error(function() st:sendto("x") end,
        fn .. "bad argument #2 'addr' (an address is required: the endpoint "
        .. "has no remote address)")
      assert.has_error(function() ct:sendto(("x"):rep(70000)) end,
        fn .. "bad argument #1 'data' (a datagram of 70000 bytes is too "
        .. "large (message too long))")
      assert.has_error(function() ct:sendto(42) end,
        fn .. "bad argument #1 'data' (string expected, got number)")
      ct:sendto("fine", { "127.0.0.1", port })
      st:close()
      ct:close()
      ct:sendto("dropped") -- after close: dropped silently (D8)
    end)
  end)

  it("takes '<broadcast>' for 255.255.255.255 in sendto and remote_addr, "
     .. "as Python's sockets do (uvloop 1)", function()
    -- without allow_broadcast the kernel refuses the address before
    -- anything is sent (EACCES): the words show where it went, and the
    -- tests stay on loopback
    helper.run(function(loop)
      local st, sp = endpoint(loop, { local_addr = { "127.0.0.1", 0 } })
      st:sendto("one", { "<broadcast>", 9 })
      helper.until_true(function() return #sp.errors > 0 end)
      assert.are.equal("EACCES", sp.errors[1].name)
      assert.matches("^sendto %('255%.255%.255%.255', 9%)",
                     sp.errors[1].message)
      local ok, err = pcall(loop.create_datagram_endpoint, loop,
        function() return {} end, { remote_addr = { "<broadcast>", 9 } })
      assert.is_false(ok)
      assert.are.equal("EACCES", err.name)
      assert.matches("^connect call failed %('255%.255%.255%.255', 9%)",
                     err.message)
      st:close()
    end)
  end)

  it("has tapio.address name a bad host or port", function()
    assert.has_error(function() tapio.address("127.0.0.1", 70000) end,
      "tapio: address: bad argument #2 'port' (70000 is out of range "
      .. "0..65535)")
    assert.has_error(function() tapio.address(nil, 1) end,
      "tapio: address: bad argument #1 'host' (string expected, got nil)")
    assert.are.equal("('::1', 5, 0, 0)", tostring(tapio.address("::1", 5)))
  end)

  it("queues what the socket refuses, pauses and resumes writing, and "
     .. "flushes on close (D4, D9)", function()
    helper.run(function(loop)
      local a, b = tapio.socketpair("dgram")
      local at, ap = endpoint(loop, { sock = a })
      local bt, bp = endpoint(loop, { sock = b })
      at:set_write_buffer_limits(1000)
      local n = 0
      while at:get_write_buffer_size() <= 1000 do
        n = n + 1
        at:sendto(("%06d"):format(n) .. ("x"):rep(94))
      end
      assert.are.same({ "made", "pause" }, ap.events)
      at:close()
      for i = 1, n do
        assert.are.equal(("%06d"):format(i), (bp:got(i)):sub(1, 6))
      end
      assert.is_false(ap.lost:await())
      assert.are.same({ "made", "pause", "resume", "lost" }, ap.events)
      bt:close()
    end)
  end)

  it("reports a queued datagram the socket refuses while a close flushes, "
     .. "before connection_lost (asyncio's _sendto_ready)", function()
    helper.run(function(loop)
      local a, b = tapio.socketpair("dgram")
      local at, ap = endpoint(loop, { sock = a })
      local bt, bp = endpoint(loop, { sock = b })
      bt:pause_reading()
      local n = 0
      while at:get_write_buffer_size() == 0 do
        n = n + 1
        at:sendto("d" .. n)
      end
      at:sendto(("x"):rep(1024 * 1024)) -- queued; the socket's EMSGSIZE
      at:sendto("last")
      at:close()
      bt:resume_reading()
      assert.are.equal("last", (bp:got(n + 1)))
      assert.is_false(ap.lost:await())
      -- (asyncio reports it between pause and resume: error_received
      -- runs from the loop here, after the flush that resumes)
      assert.are.same({ "made", "pause", "resume", "err:EMSGSIZE", "lost" },
                      ap.events)
      bt:close()
    end)
  end)

  it("reports a send's error before connection_lost when close follows "
     .. "at once (asyncio's sendto calls error_received inside)", function()
    helper.run(function(loop)
      local t, p = bound(loop)
      t:sendto("x", { "127.0.0.1", 0 }) -- the socket refuses: EINVAL
      t:close()
      assert.is_false(p.lost:await())
      assert.are.same({ "made", "err:EINVAL", "lost" }, p.events)
    end)
  end)

  it("works on Unix datagram sockets; an unnamed peer's address is nil "
     .. "(D16)", function()
    helper.run(function(loop)
      local dir = os.tmpname()
      os.remove(dir)
      local path = dir .. ".sock"
      local st, sp = endpoint(loop, { local_addr = path,
                                      family = tapio.AF_UNIX })
      assert.are.equal(path, st:get_extra_info("sockname"))
      local ct, cp = endpoint(loop, { remote_addr = path })
      ct:sendto("hi")
      local _, from = sp:got(1)
      assert.is_nil(from) -- the client's socket has no name
      ct:sendto("", path) -- the peer's own path: taken
      assert.matches("bad argument #2 'addr' %(must be nil or the connected "
        .. "peer's '" .. path:gsub("%p", "%%%0") .. "'%)$",
        helper.fails(ct.sendto, ct, "x", path .. "x"))
      local a, b = tapio.socketpair("dgram")
      local pt, pp = endpoint(loop, { sock = a })
      tapio.send(b, "abc")
      local data, addr = pp:got(1)
      assert.are.equal("abc", data)
      assert.is_nil(addr)
      tapio.close_fd(b)
      st:close()
      ct:close()
      pt:close()
      sp.lost:await()
      assert.is_true(helper.exists(path)) -- left, as asyncio leaves it
      os.remove(path)
    end)
  end)

  it("sends to a path given to sendto, and back to a named sender's path "
     .. "(uvloop#196)", function()
    helper.run(function(loop)
      local base = os.tmpname()
      os.remove(base)
      local a_path, b_path = base .. ".a", base .. ".b"
      local at, ap = endpoint(loop, { local_addr = a_path,
                                      family = tapio.AF_UNIX })
      local bt, bp = endpoint(loop, { local_addr = b_path,
                                      family = tapio.AF_UNIX })
      bt:sendto("to a", a_path) -- a path, no lookup
      local data, from = ap:got(1)
      assert.are.equal("to a", data)
      assert.are.equal(b_path, from)
      at:sendto("to b", from)
      assert.are.equal("to b", bp:got(1))
      at:close()
      bt:close()
      os.remove(a_path)
      os.remove(b_path)
    end)
  end)

  it("works at Linux abstract names, each side named", function()
    helper.run(function(loop)
      local name = helper.abstract_name("tapio-dg")
      local st, sp = endpoint(loop, { local_addr = "\0" .. name,
                                      family = tapio.AF_UNIX })
      assert.are.equal("@" .. name, st:get_extra_info("sockname"))
      local ct, cp = endpoint(loop, { local_addr = "@" .. name .. "-c",
                                      remote_addr = "@" .. name })
      ct:sendto("hi")
      local data, from = sp:got(1)
      assert.are.equal("hi", data)
      assert.are.equal("@" .. name .. "-c", from)
      st:sendto("back", "\0" .. name .. "-c") -- asyncio's spelling
      assert.are.equal("back", (cp:got(1)))
      st:close()
      ct:close()
    end)
  end)

  it("names the bind that failed: an address taken, a path that is a file "
     .. "(D13)", function()
    helper.run(function(loop)
      local st = bound(loop)
      local port = st:get_extra_info("sockname").port
      local f = function() return {} end
      local ok, err = pcall(loop.create_datagram_endpoint, loop, f,
        { local_addr = { "127.0.0.1", port } })
      assert.is_false(ok)
      assert.are.equal(("error while attempting to bind on address "
        .. "('127.0.0.1', %d): address already in use (EADDRINUSE)")
        :format(port), tostring(err))
      local path = os.tmpname() -- a regular file
      ok, err = pcall(loop.create_datagram_endpoint, loop, f,
        { local_addr = path, remote_addr = path .. ".none" })
      os.remove(path)
      assert.is_false(ok)
      assert.are.equal(("error while attempting to bind on address '%s': "
        .. "address already in use (EADDRINUSE)"):format(path), tostring(err))
      st:close()
    end)
  end)

  it("sends an error raised in datagram_received or error_received to "
     .. "the exception handler and keeps the endpoint open, as asyncio's "
     .. "(one bad datagram does not end a server)", function()
    local _, errors = helper.run(function(loop, errors)
      local st, sp = bound(loop, {
        datagram_received = function(self, data, addr)
          if data == "bad" then
            error("bad datagram")
          end
          self.transport:sendto("ok:" .. data, addr)
        end,
        error_received = function() error("bad error_received") end })
      local ct, cp = connected_to(loop, st)
      ct:sendto("bad")
      ct:sendto("good")
      assert.are.equal("ok:good", (cp:got(1)))
      assert.is_false(st:is_closing())
      local dead = loop:create_datagram_endpoint(function() return {} end,
        { local_addr = { "127.0.0.1", 0 } })
      local dead_addr = dead:get_extra_info("sockname")
      dead:close()
      tapio.sleep(0)
      st:sendto("x", dead_addr) -- refused: error_received raises
      helper.until_true(function() return #errors == 2 end)
      ct:sendto("again")
      assert.are.equal("ok:again", (cp:got(2)))
      assert.are.same({ "made" }, sp.events)
      st:close()
      ct:close()
      assert.is_false(sp.lost:await()) -- a clean end: no error kept
      return nil, errors
    end, { errors_ok = true })
    assert.are.equal("error in protocol.datagram_received()",
                     errors[1].message)
    assert.truthy(tostring(errors[1].exception):find("bad datagram", 1, true))
    assert.is_truthy(errors[1].transport)
    assert.is_truthy(errors[1].protocol)
    assert.are.equal("error in protocol.error_received()", errors[2].message)
  end)

  it("checks its options as asyncio does (D13, D14)", function()
    helper.run(function(loop)
      local fn = "tapio: loop:create_datagram_endpoint: bad argument #2 "
        .. "'opts' "
      local f = function() return {} end
      for _, reuse in ipairs({ true, false }) do -- uvloop 4, asyncio 3.11
        assert.has_error(function()
          loop:create_datagram_endpoint(f, { local_addr = { "127.0.0.1", 0 },
                                             reuse_address = reuse })
        end, fn .. "(reuse_address is not supported on UDP: another process "
          .. "could take the port's datagrams (use reuse_port))")
      end
      assert.has_error(function() loop:create_datagram_endpoint(f, {}) end,
        fn .. "(no local or remote address, no family and no sock: nothing "
        .. "to make a socket of (asyncio: unexpected address family))")
      assert.has_error(function()
        loop:create_datagram_endpoint(f, { local_addr = { "::1", 0 },
                                           remote_addr = { "127.0.0.1", 9 } })
      end, fn .. "(the local host '::1' and the remote host '127.0.0.1' are "
        .. "of different families (asyncio: can not get address "
        .. "information))")
      assert.has_error(function()
        loop:create_datagram_endpoint(f, { local_addr = "/tmp/x",
                                           remote_addr = { "127.0.0.1", 9 } })
      end, fn .. "(an IP address (a host or port) and a Unix path given "
        .. "together: the local and remote addresses must be both IP or "
        .. "both Unix paths)")
      assert.has_error(function()
        loop:create_datagram_endpoint(f, { local_addr = "/tmp/x",
                                           family = tapio.AF_INET })
      end, fn .. "('family' given with a Unix path (a path's family is "
        .. "AF_UNIX))")
      assert.has_error(function()
        loop:create_datagram_endpoint(f, { local_addr = { "127.0.0.1", 0 },
                                           family = tapio.AF_UNIX })
      end, fn .. "(family AF_UNIX with a local_addr that is not a path "
        .. "(asyncio: string is expected))")
      assert.has_error(function()
        loop:create_datagram_endpoint(f, { family = tapio.AF_UNIX })
      end, fn .. "(family AF_UNIX with no path: give local_addr or "
        .. "remote_addr as a path, or a socketpair's end as sock (tapio "
        .. "makes no unnamed Unix endpoint))")
      assert.has_error(function()
        loop:create_datagram_endpoint(f, { remote_addr = { nil, 9 } })
      end, fn .. "(the remote address has a port but no host (it is a host "
        .. "and a port))")
      local a, b = tapio.socketpair("dgram")
      local modifiers = " (asyncio: socket modifier keyword arguments can "
        .. "not be used when sock is specified))"
      assert.has_error(function()
        loop:create_datagram_endpoint(f, { sock = a,
                                           local_addr = { "127.0.0.1", 0 } })
      end, fn .. "('sock' cannot be given with 'local_addr'" .. modifiers)
      assert.has_error(function()
        loop:create_datagram_endpoint(f, { sock = a, reuse_port = true,
                                           proto = 17, flags = 0 })
      end, fn .. "('sock' cannot be given with 'reuse_port', 'proto', "
        .. "'flags'" .. modifiers)
      local s1, s2 = tapio.socketpair("stream")
      assert.has_error(function()
        loop:create_datagram_endpoint(f, { sock = s1 })
      end, "tapio: loop:create_datagram_endpoint: bad option 'sock' (a "
        .. "datagram socket expected, got a stream socket)")
      assert.are.equal(1, tapio.send(a, "x")) -- never given: still ours
      assert.are.equal(1, tapio.send(s1, "x"))
      for _, fd in ipairs({ a, b, s1, s2 }) do
        tapio.close_fd(fd)
      end
      assert.has_error(function()
        loop:create_datagram_endpoint(f, { local_addr = 42 })
      end, fn .. "(local_addr: {host, port} or a path expected, got number)")
      assert.has_error(function()
        loop:create_datagram_endpoint(f, { local_addr = { "127.0.0.1", 1e6 } })
      end, fn .. "(local_addr: {host, port} expected, port 0..65535)")
      assert.has_error(function()
        loop:create_datagram_endpoint(f, { remote_addr = { "127.0.0.1",
                                                           "70000" } })
      end, fn .. "(remote_addr: port out of range 0..65535)")
      assert.has_error(function()
        loop:create_datagram_endpoint(f, { local_addr = { "127.0.0.1",
                                                          "no-such" } })
      end, fn .. "(local_addr: unknown service 'no-such')")
    end)
  end)

  it("takes a port of local_addr and remote_addr as digits or a UDP "
     .. "service's name, as asyncio's getaddrinfo does", function()
    helper.run(function(loop)
      local st = loop:create_datagram_endpoint(function() return {} end,
        { local_addr = { "127.0.0.1", "0" } }) -- as it comes from arg
      local port = st:get_extra_info("sockname").port
      assert.is_true(port > 0)
      local ct = loop:create_datagram_endpoint(function() return {} end,
        { remote_addr = { "127.0.0.1", tostring(port) } })
      assert.are.equal(port, ct:get_extra_info("peername").port)
      ct:close()
      -- tftp is a UDP service only (69/udp)
      ct = loop:create_datagram_endpoint(function() return {} end,
        { remote_addr = { "127.0.0.1", "tftp" } })
      assert.are.equal(69, ct:get_extra_info("peername").port)
      ct:close()
      st:close()
    end)
  end)

  it("binds local_addr and connects remote_addr in one endpoint, taking "
     .. "the peer's own address in sendto (uvloop#276)", function()
    helper.run(function(loop)
      local st, sp = bound(loop, { echo = true })
      local saddr = st:get_extra_info("sockname")
      -- from 127.0.0.2: an address the kernel would not pick by itself
      local ct, cp = endpoint(loop, { local_addr = { "127.0.0.2", 0 },
                                      remote_addr = saddr })
      -- returned after connection_made, as asyncio's (python/asyncio#181)
      assert.are.same({ "made" }, cp.events)
      local caddr = ct:get_extra_info("sockname")
      assert.are.equal("127.0.0.2", caddr.host)
      assert.are.equal(saddr, ct:get_extra_info("peername"))
      ct:sendto("a")
      ct:sendto("b", { "127.0.0.1", saddr.port }) -- the peer's: allowed
      assert.are.equal("resp:a", cp:got(1))
      assert.are.equal("resp:b", cp:got(2))
      assert.are.equal(caddr, sp.datagrams[1].addr)
      ct:close()
      st:close()
      assert.is_false(cp.lost:await())
      assert.are.same({ "made", "data:6", "data:6", "lost" }, cp.events)
    end)
  end)

  it("reports a sendto to port 0 to error_received and stays open "
     .. "(uvloop#338)", function()
    helper.run(function(loop)
      local st, sp = bound(loop)
      st:sendto("x", { "127.0.0.1", 0 }) -- Linux: EINVAL at sendto
      helper.until_true(function() return #sp.errors > 0 end)
      assert.are.equal("EINVAL", sp.errors[1].name)
      assert.is_false(st:is_closing())
      local ct = connected_to(loop, st)
      ct:sendto("still here")
      assert.are.equal("still here", sp:got(1))
      ct:close()
      st:close()
      assert.is_false(sp.lost:await())
      assert.are.same({ "made", "err:EINVAL", "data:10", "lost" }, sp.events)
    end)
  end)

  it("names an IPv6 destination in an error with its flowinfo and scope "
     .. "id, as its address value shows it", function()
    helper.run(function(loop)
      local t, p = endpoint(loop, { local_addr = { "::", 0 } })
      local to = tapio.address("fe80::1%1", 0)
      t:sendto("x", to) -- Linux: EINVAL at sendto (port 0)
      helper.until_true(function() return #p.errors > 0 end)
      assert.are.equal("('fe80::1%1', 0, 0, 1)", tostring(to))
      assert.are.equal("sendto ('fe80::1%1', 0, 0, 1): invalid argument",
                       p.errors[1].message)
      -- Python's 4-tuple as a table: its flowinfo and scope id are sent
      t:sendto("x", { "fe80::1", 0, 0, 1 })
      t:sendto("x", { "::1", 0, 5, 0 })
      helper.until_true(function() return #p.errors >= 3 end)
      assert.are.equal("sendto ('fe80::1%1', 0, 0, 1): invalid argument",
                       p.errors[2].message)
      assert.are.equal("sendto ('::1', 0, 5, 0): invalid argument",
                       p.errors[3].message)
      assert.matches("flowinfo 0%.%.1048575", helper.fails(t.sendto, t, "x",
        { "::1", 9, 1048576, 0 }))
      t:close()
    end)
  end)

  it("closes safely from inside datagram_received and error_received",
     function()
    helper.run(function(loop)
      local st, sp = bound(loop, {
        datagram_received = function(self, data, addr)
          self.events[#self.events + 1] = "data:" .. #data
          self.transport:sendto("bye", addr) -- still sent
          self.transport:close()
          self.transport:abort()
        end })
      local ct, cp = connected_to(loop, st, {
        error_received = function(self, err)
          self.events[#self.events + 1] = "err:" .. err.name
          self.transport:close()
        end })
      ct:sendto("a")
      ct:sendto("b")
      assert.are.equal("bye", (cp:got(1)))
      sp.lost:await()
      assert.are.same({ "made", "data:1", "lost" }, sp.events)
      ct:sendto("to a closed port")
      cp.lost:await()
      assert.are.same({ "made", "data:3", "err:ECONNREFUSED", "lost" },
                      cp.events)
    end)
  end)

  it("keeps its loop alive while open, with no reference left", function()
    local weak = setmetatable({}, { __mode = "v" })
    local got = {}
    do
      local loop = tapio.new_loop()
      local P = {}
      function P:connection_made(t) self.t = t end
      function P:datagram_received(data)
        got[#got + 1] = data
        self.t:close()
      end
      function P:connection_lost() self.t:get_loop():stop() end
      local fut = loop:create_datagram_endpoint(function() return P end,
        { local_addr = { "127.0.0.1", 0 } })
      loop:run_until_complete(fut)
      weak.loop, weak.t = loop, fut:result()
    end
    collectgarbage()
    collectgarbage()
    assert.is_not_nil(weak.loop)
    assert.is_not_nil(weak.t)
    local sender = tapio.new_loop()
    local t = sender:run_until_complete(sender:create_datagram_endpoint(
      function() return {} end,
      { remote_addr = weak.t:get_extra_info("sockname") }))
    t:sendto("ping") -- the socket takes it at once
    sender:close()
    weak.loop:run_forever() -- until its connection_lost stops it
    assert.are.same({ "ping" }, got)
    weak.loop:close()
  end)

  it("has the datagram kind's methods, not a stream's", function()
    helper.run(function(loop)
      local st = bound(loop)
      assert.is_nil(st.write)
      assert.is_nil(st.write_eof)
      assert.is_function(st.pause_reading) -- as asyncio's selector one
      assert.is_function(st.sendto)
      assert.is_function(st.get_write_buffer_size)
      assert.truthy(tostring(st):find("^tapio.datagram_transport"))
      local s = loop:create_server(function() return {} end, "127.0.0.1", 0)
      local t = loop:create_connection(function() return {} end, "127.0.0.1",
                                       s:addresses()[1].port)
      assert.is_nil(t.sendto)
      assert.has_error(function() t.get_stats(st) end)
      assert.is_table(st.get_stats(st))
      t:close()
      s:close()
      st:close()
    end)
  end)
end)
