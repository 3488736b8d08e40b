-- The addresses a transport keeps: what connection_made learned is still
-- there inside connection_lost after the peer reset the connection (the
-- socket itself no longer knows its peer then), as asyncio keeps them.
local helper = require "spec.helper"
local tapio = helper.tapio

describe("a transport reset by its peer", function()
  it("still answers peername and sockname inside connection_lost",
     function()
    helper.run(function(loop)
      local seen = loop:create_future()
      local server_proto = helper.recorder(loop, {
        connection_lost = function(self, err)
          seen:set_result({
            err = err,
            peer = self.transport:get_extra_info("peername"),
            sock = self.transport:get_extra_info("sockname"),
          })
        end,
      })
      local server, t, _, sp = helper.pair(loop, server_proto)
      local client_addr = t:get_extra_info("sockname")
      local server_addr = t:get_extra_info("peername")
      -- bytes left unread when the client closes make its kernel send a
      -- reset instead of a FIN
      t:pause_reading()
      sp.transport:write("never read")
      t:abort()
      local got = seen:await()
      assert.are.equal("ECONNRESET", got.err and got.err.name)
      assert.are.equal(client_addr, got.peer)
      assert.are.equal(server_addr, got.sock)
      server:close()
    end)
  end)
end)

-- The loopback interface's index: a scope id the kernel knows.
local function lo_index()
  local f = assert(io.open("/sys/class/net/lo/ifindex"))
  local n = tonumber(f:read("*l"))
  f:close()
  return n
end

-- The error of a create call that fails, as a string.
local function create_error(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return tostring(type(err) == "table" and err.message or err)
end

describe("an IPv6 address's flowinfo and scope id", function()
  it("are taken by tapio.address, checked, and shown", function()
    local lo = lo_index()
    local a = tapio.address("::1", 9, 5, lo)
    assert.are.equal(("('::1%%%d', 9, 5, %d)"):format(lo, lo), tostring(a))
    assert.are.same({ 5, lo }, { a.flowinfo, a.scope_id })
    assert.are.equal("('::1', 9, 7, 0)", tostring(tapio.address("::1", 9, 7)))
    assert.are.equal("('127.0.0.1', 9)",
                     tostring(tapio.address("127.0.0.1", 9, 5, lo)))
    assert.matches("address: bad argument #3 'flowinfo'",
                   helper.fails(tapio.address, "::1", 9, 1048576))
    assert.matches("address: bad argument #4 'scope_id'",
                   helper.fails(tapio.address, "::1", 9, 0, -1))
  end)

  it("are kept from remote_addr and local_addr of a datagram endpoint, "
     .. "a table's [3] and [4] or an address value's", function()
    helper.run(function(loop)
      local lo = lo_index()
      local st, sp = helper.dgram_endpoint(loop, { local_addr = { "::1", 0 } })
      local port = st:get_extra_info("sockname").port
      local want = ("('::1%%%d', %d, 5, %d)"):format(lo, port, lo)
      for _, remote in ipairs({ { "::1", port, 5, lo },
                                tapio.address("::1", port, 5, lo) }) do
        local ct = helper.dgram_endpoint(loop, { remote_addr = remote })
        assert.are.equal(want, tostring(ct:get_extra_info("peername")))
        ct:sendto("x")
        assert.are.equal("x", (sp:got(1)))
        sp.datagrams, sp.dwaiters = {}, {}
        ct:close()
      end
      -- a bind that fails names the local address as it was given
      local msg = create_error(helper.dgram_endpoint, loop,
                               { local_addr = { "::1", port, 5, lo } })
      assert.matches(("bind on address ('::1%%%d', %d, 5, %d)")
        :format(lo, port, lo), msg, 1, true)
      assert.matches("remote_addr: {host, port, flowinfo, scope_id} "
        .. "expected", create_error(helper.dgram_endpoint, loop,
                                    { remote_addr = { "::1", port, -1 } }),
        1, true)
      assert.matches("remote_addr: 'localhost' is not a numeric address",
        create_error(helper.dgram_endpoint, loop,
                     { remote_addr = { "localhost", port, 0, 0 } }), 1, true)
      st:close()
    end)
  end)

  it("are kept from create_connection's local_addr, which takes an address "
     .. "value (a sockname) too", function()
    helper.run(function(loop)
      local lo = lo_index()
      local s6 = loop:create_server(function()
        return helper.recorder(loop) end, "::1", 0)
      local addr = s6:addresses()[1]
      local port = addr.port
      local function refused(local_addr)
        return create_error(loop.create_connection, loop, function()
          return {} end, "::1", port, { local_addr = local_addr })
      end
      -- the listener's own address: the bind fails, and says what it was
      local want = ("bind on address ('::1%%%d', %d, 5, %d)")
        :format(lo, port, lo)
      assert.matches(want, refused({ "::1", port, 5, lo }), 1, true)
      assert.matches(want, refused(tapio.address("::1", port, 5, lo)), 1,
                     true)
      assert.matches(("bind on address ('::1', %d, 0, 0)"):format(port),
                     refused(addr), 1, true)
      assert.matches("bad option 'local_addr' ({host, port, flowinfo, "
        .. "scope_id} expected", refused({ "::1", 0, 0, -1 }), 1, true)
      -- a sockname goes back as local_addr: bound there once it is free
      local c1 = loop:create_connection(function() return {} end, "::1", port)
      local mine = c1:get_extra_info("sockname")
      c1:abort()
      local c2 = loop:create_connection(function() return {} end, "::1", port,
        { local_addr = tapio.address("::1", 0) })
      assert.are.equal("::1", c2:get_extra_info("sockname").host)
      assert.are.equal("::1", mine.host)
      c2:close()
      s6:close()
    end)
  end)
end)

describe("create_connection's and open_connection's local_addr", function()
  it("names its port by number or by service (asyncio's getaddrinfo takes "
     .. "both), and says what is wrong with it", function()
    helper.run(function(loop)
      local server = loop:create_server(function()
        return helper.recorder(loop) end, "127.0.0.1", 0)
      local port = helper.port(server)
      local f = function() return {} end
      local function connect(local_addr)
        return loop:create_connection(f, "127.0.0.1", port,
                                      { local_addr = local_addr })
      end
      local function open(local_addr)
        local _, writer = tapio.open_connection("127.0.0.1", port,
                                                { local_addr = local_addr })
        return writer.transport
      end
      for _, make in ipairs({ connect, open }) do
        -- "http" is port 80: bound there (root), or refused saying so
        local ok, t = pcall(make, { "127.0.0.1", "http" })
        if ok then
          assert.are.equal(80, t:get_extra_info("sockname").port)
          t:abort() -- no TIME_WAIT left on port 80
        else
          assert.matches("('127.0.0.1', 80)",
                         tostring(type(t) == "table" and t.message or t), 1,
                         true)
        end
      end
      local C = "tapio: loop:create_connection: bad option 'local_addr' (%s)"
      local O = "tapio: open_connection: bad option 'local_addr' (%s)"
      for _, case in ipairs({
        { "nosuchservice", "unknown service 'nosuchservice'" },
        { "99999", "port out of range 0..65535" },
        { true, "{host, port} expected, port 0..65535" },
        { 1.5, "{host, port} expected, port 0..65535" },
      }) do
        local addr = { "127.0.0.1", case[1] }
        assert.matches(C:format(case[2]), create_error(connect, addr), 1, true)
        assert.matches(O:format(case[2]), create_error(open, addr), 1, true)
      end
      assert.matches(C:format("{host, port} expected"),
                     create_error(connect, { [2] = 0 }), 1, true)
      server:close()
    end)
  end)
end)

describe("an address tapio gives", function()
  it("goes back unchanged wherever an address goes: a sockname, a "
     .. "peername, a datagram's sender, a getaddrinfo entry", function()
    helper.run(function(loop)
      for _, host in ipairs({ "127.0.0.1", "::1" }) do
        local st, sp = helper.dgram_endpoint(loop, { local_addr = { host, 0 } })
        local sa = st:get_extra_info("sockname")
        local ct, cp = helper.dgram_endpoint(loop, { remote_addr = sa })
        ct:sendto("x")
        local _, from = sp:got(1)
        local entry = loop:getaddrinfo(host, sa.port,
                                       { type = tapio.SOCK_DGRAM })[1]
        local given = { sockname = ct:get_extra_info("sockname"),
                        peername = ct:get_extra_info("peername"),
                        sender = from, getaddrinfo = entry.addr }
        if host == "::1" then -- one with a flowinfo and a scope id
          local t = helper.dgram_endpoint(loop, { remote_addr = {
            host, sa.port, 5, lo_index() } })
          given.extras = t:get_extra_info("peername")
          assert.are.same({ 5, lo_index() }, { given.extras[3],
                                               given.extras[4] })
          t:close()
        end
        for what, a in pairs(given) do
          local label = host .. " " .. what
          local same = tostring(a)
          assert.are.equal(same, tostring(tapio.address(a[1], a[2], a[3],
                                                        a[4])), label)
          for _, form in ipairs({ a, { a[1], a[2], a[3], a[4] } }) do
            local t = helper.dgram_endpoint(loop, { remote_addr = form })
            assert.are.equal(same, tostring(t:get_extra_info("peername")),
                             label)
            t:close()
          end
          local host2 = loop:getnameinfo(a, tapio.NI_NUMERICHOST)
          assert.are.equal(a.host, host2, label)
        end
        -- the sender's and the peer's values reach the other side
        st:sendto("to sender", from)
        st:sendto("as a table", { from[1], from[2], from[3], from[4] })
        assert.are.equal("to sender", (cp:got(1)))
        assert.are.equal("as a table", (cp:got(2)))
        assert.are.equal(tostring(ct:get_extra_info("peername")),
                         tostring(cp.datagrams[1].addr))
        ct:close()
        st:close()
      end
    end)
  end)
end)
