-- Name lookups that never block the loop: loop:getaddrinfo and
-- getnameinfo, names in create_connection and create_server, Happy
-- Eyeballs, and cancelling a pending lookup or connection by cancelling
-- its task. Real lookups against the tests' own DNS server
-- (spec/support/dns_server.py); a stalled connect is a server that never
-- accepts, with its backlog full.
local helper = require "spec.helper"
local dns = require "spec.support.dns"
local tapio = helper.tapio

local server

setup(function()
  server = dns.start({ log = true })
end)

teardown(function()
  server.stop()
end)

local function run(fn, opts)
  return helper.run(function(loop, errors)
    dns.use(loop, server, 0.5)
    return fn(loop, errors)
  end, opts)
end

local function addrs_of(list)
  local out = {}
  for _, e in ipairs(list) do
    out[#out + 1] = ("%s/%d/%d"):format(tostring(e.addr), e.type, e.proto)
  end
  return table.concat(out, " ")
end

describe("loop:getaddrinfo", function()
  it("answers a literal address without any lookup", function()
    local before = server.queries()
    run(function(loop)
      local list = loop:getaddrinfo("127.0.0.1", 80)
      assert.are.equal("('127.0.0.1', 80)/1/6 ('127.0.0.1', 80)/2/17",
                       addrs_of(list))
      local e = list[1]
      assert.are.equal(tapio.AF_INET, e.family)
      assert.are.equal(e.family, e[1])
      assert.are.equal(tapio.SOCK_STREAM, e.type)
      assert.are.equal(e.addr, e[5])
      list = loop:getaddrinfo("::1", "domain", { type = tapio.SOCK_DGRAM })
      assert.are.equal("('::1', 53, 0, 0)/2/17", addrs_of(list))
    end)
    assert.are.equal(before, server.queries())
  end)

  it("looks names up on the server, IPv6 first as RFC 6724 sorts",
     function()
    run(function(loop)
      local list = loop:getaddrinfo("both.tapio.test", 5,
                                    { type = tapio.SOCK_STREAM })
      assert.are.equal("('::1', 5, 0, 0)/1/6 ('127.0.0.1', 5)/1/6",
                       addrs_of(list))
      list = loop:getaddrinfo("v4.tapio.test", 5,
        { family = tapio.AF_INET, type = tapio.SOCK_STREAM,
          flags = tapio.AI_CANONNAME })
      assert.are.equal("v4.tapio.test", list[1].canonname)
    end)
    assert.truthy(server.queries():find("QUERY A both.tapio.test", 1, true))
  end)

  it("fails with an error value for no such name", function()
    run(function(loop)
      local ok, err = pcall(loop.getaddrinfo, loop, "nosuch.tapio.test", 1)
      assert.is_false(ok)
      assert.are.equal("EAI_NONAME", err.name)
      ok, err = pcall(loop.getaddrinfo, loop, "silent.v4.tapio.test", 1)
      assert.is_false(ok)
      assert.are.equal("EAI_AGAIN", err.name)
    end)
  end)

  it("names the name that failed, for every kind of endpoint", function()
    run(function(loop)
      local P = {}
      local function factory() return P end
      local made = {
        connection = function(host)
          return loop:create_connection(factory, host, 9)
        end,
        server = function(host)
          return loop:create_server(factory, host, 9)
        end,
        ["datagram remote"] = function(host)
          return loop:create_datagram_endpoint(factory,
            { remote_addr = { host, 9 } })
        end,
        ["datagram local"] = function(host)
          return loop:create_datagram_endpoint(factory,
            { local_addr = { host, 9 }, remote_addr = { "127.0.0.1", 9 } })
        end,
      }
      for what, make in pairs(made) do
        local ok, err = pcall(make, "nosuch.tapio.test")
        assert.is_false(ok, what)
        assert.are.equal("EAI_NONAME", err.name, what)
        assert.matches("^could not resolve 'nosuch%.tapio%.test': unknown",
          err.message, nil, nil, what)
      end
    end)
  end)

  it("keeps the loop running while an answer is slow", function()
    run(function(loop)
      local ticks = 0
      for i = 1, 4 do
        loop:call_later(0.05 * i, function() ticks = ticks + 1 end)
      end
      local fut = loop:create_task(loop.getaddrinfo, loop,
                                   "slow400.v4.tapio.test", 1)
      tapio.sleep(0.25)
      assert.are.equal(4, ticks)
      assert.is_false(fut:done())
      assert.are.equal("('127.0.0.1', 1)", tostring(fut:await()[1].addr))
    end)
  end)

  it("is cancelled with its task: nothing comes back, nothing is kept",
     function()
    run(function(loop)
      local refs = loop:_debug().refs
      local called = false
      local task = loop:create_task(function()
        loop:getaddrinfo("silent.v4.tapio.test", 1)
        called = true
      end)
      tapio.sleep(0.05)
      task:cancel()
      tapio.sleep(0.6) -- past the resolver's timeout
      assert.is_true(task:cancelled())
      assert.is_false(called)
      assert.are.equal(refs, loop:_debug().refs)
    end)
  end)

  it("leaves set_resolver free once its task is cancelled", function()
    run(function(loop)
      local task = loop:create_task(function()
        loop:getaddrinfo("silent.v4.tapio.test", 1)
      end)
      tapio.sleep(0.05)
      task:cancel()
      tapio.sleep(0) -- the cancel reaches the lookup
      dns.use(loop, server, 0.5) -- c-ares still holds the dead query
      assert.are.equal("('127.0.0.1', 1)",
        tostring(loop:getaddrinfo("v4.tapio.test", 1)[1].addr))
    end)
  end)

  it("raises for bad arguments", function()
    run(function(loop)
      assert.has_error(function() loop:getaddrinfo(nil, nil) end,
        "tapio: loop:getaddrinfo: bad argument #1 'host' (host and port "
        .. "are both nil)")
      assert.has_error(function() loop:getaddrinfo("x", 70000) end,
        "tapio: loop:getaddrinfo: bad argument #2 'port' (70000 is out of "
        .. "range 0..65535)")
      assert.has_error(function() loop:getaddrinfo("x", 1, { family = 5 }) end,
        "tapio: loop:getaddrinfo: bad argument #3 'opts.family' (0, 4 or 6 "
        .. "expected)")
      assert.has_error(function()
        loop:set_resolver { servers = "not a server" }
      end)
      assert.has_error(function() loop:getaddrinfo("x", 1, { famly = 4 }) end,
        "tapio: loop:getaddrinfo: unknown option 'famly'")
      assert.has_error(function()
        loop:set_resolver { server = "127.0.0.1" }
      end, "tapio: loop:set_resolver: unknown option 'server'")
    end)
  end)
end)

describe("loop:getnameinfo", function()
  it("gives host and service, from /etc/hosts or as numbers", function()
    run(function(loop)
      assert.are.same({ "localhost", "http" },
                      { loop:getnameinfo({ "127.0.0.1", 80 }) })
      assert.are.same({ "127.0.0.1", "80" },
        { loop:getnameinfo(tapio.address("127.0.0.1", 80),
                           tapio.NI_NUMERICHOST + tapio.NI_NUMERICSERV) })
    end)
  end)
end)

-- A server on ::1 (or host) that never accepts and whose backlog is full,
-- and a serving one on 127.0.0.1 at the same port.
local function split(loop, stall_host)
  for _ = 1, 20 do
    local stall = loop:create_server(function() return {} end, stall_host, 0,
                                     { backlog = 0, start_serving = false })
    local port = stall:addresses()[1].port
    loop:create_connection(function() return {} end, stall_host, port)
    local ok, good = pcall(loop.create_server, loop, function()
      return helper.recorder(loop)
    end, "127.0.0.1", port)
    if ok then
      return port, stall, good
    end
    stall:close()
  end
  error("no port free on both addresses")
end

describe("create_connection to a name", function()
  it("connects by name, and says what each address answered when all fail",
     function()
    run(function(loop)
      local s = loop:create_server(function() return {} end, "127.0.0.1", 0)
      local port = s:addresses()[1].port
      local t = loop:create_connection(function() return {} end,
                                       "v4.tapio.test", port)
      assert.are.equal("('127.0.0.1', " .. port .. ")",
                       tostring(t:get_extra_info("peername")))
      t:close()
      s:close()
      local ok, err = pcall(loop.create_connection, loop,
                            function() return {} end, "both.tapio.test", port)
      assert.is_false(ok)
      assert.are.equal("ECONNREFUSED", err.name)
      assert.are.equal(("Multiple exceptions: connect call failed ('::1', "
        .. "%d, 0, 0): connection refused (ECONNREFUSED), connect call "
        .. "failed ('127.0.0.1', %d): connection refused (ECONNREFUSED)")
        :format(port, port), err.message)
    end)
  end)

  it("races the addresses with happy_eyeballs_delay: the stalled one loses",
     function()
    run(function(loop)
      local port, stall, good = split(loop, "::1")
      local t0 = loop:time()
      local t = loop:create_connection(function() return {} end,
        "six4.tapio.test", port, { happy_eyeballs_delay = 0.1 })
      assert.is_true(loop:time() - t0 >= 0.09)
      assert.are.equal("127.0.0.1", t:get_extra_info("peername").host)
      t:close()
      stall:close()
      good:close()
    end)
  end)

  it("is cancelled with its task while it connects: no protocol is made",
     function()
    run(function(loop)
      local port, stall, good = split(loop, "::1")
      local made = false
      local refs = loop:_debug().refs
      local task = loop:create_task(loop.create_connection, loop, function()
        made = true
        return {}
      end, "six4.tapio.test", port)
      tapio.sleep(0.2)
      assert.is_false(task:done()) -- stalled on ::1, no delay set
      task:cancel()
      tapio.sleep(0.05)
      assert.is_true(task:cancelled())
      assert.is_false(made)
      assert.are.equal(refs, loop:_debug().refs)
      stall:close()
      good:close()
    end)
  end)

  it("fails when the name has no address of the family asked for "
     .. "(asyncio's empty getaddrinfo)", function()
    run(function(loop)
      local made = false
      local ok, err = pcall(loop.create_connection, loop, function()
        made = true
        return {}
      end, "v6.tapio.test", 9, { family = tapio.AF_INET })
      assert.is_false(ok)
      assert.are.equal("EAI_NONAME", err.name)
      assert.matches("^could not resolve 'v6%.tapio%.test'", err.message)
      assert.is_false(made)
    end)
  end)

  it("closes the connecting socket when wait_for times it out (asyncio's "
     .. "test_create_connection_timeout)", function()
    run(function(loop)
      local port, stall, good = split(loop, "::1")
      local before = helper.open_sockets()
      local ok, err = pcall(tapio.wait_for, function()
        return loop:create_connection(function() return {} end, "::1", port)
      end, 0.05)
      assert.is_false(ok)
      assert.are.equal("ETIMEDOUT", err.name)
      -- the attempt's socket is gone: no socket made since is open
      assert.are.same({}, helper.new_sockets(before))
      stall:close()
      good:close()
    end)
  end)

  it("takes a server's host as a name", function()
    run(function(loop)
      local s = loop:create_server(function() return {} end,
                                   "v4.tapio.test", 0)
      assert.are.equal("127.0.0.1", s:addresses()[1].host)
      s:close()
    end)
  end)
end)

describe("proto and flags", function()
  it("getaddrinfo's proto: every entry carries it, with no type it picks "
     .. "the type, and one of the other type fails as getaddrinfo's",
     function()
    run(function(loop)
      local list = loop:getaddrinfo("127.0.0.1", 7,
                                    { proto = tapio.IPPROTO_UDP })
      assert.are.equal("('127.0.0.1', 7)/2/17", addrs_of(list))
      list = loop:getaddrinfo("v4.tapio.test", 7,
                              { type = tapio.SOCK_STREAM,
                                proto = tapio.IPPROTO_TCP })
      assert.are.equal("('127.0.0.1', 7)/1/6", addrs_of(list))
      local ok, err = pcall(loop.getaddrinfo, loop, "127.0.0.1", 7,
                            { type = tapio.SOCK_STREAM,
                              proto = tapio.IPPROTO_UDP })
      assert.is_false(ok)
      assert.are.equal("EAI_SOCKTYPE", err.name)
      assert.has_error(function()
        loop:getaddrinfo("x", 1, { proto = 256 })
      end, "tapio: loop:getaddrinfo: bad argument #3 'opts.proto' (256 is "
        .. "out of range 0..255)")
    end)
  end)

  it("flags = AI_NUMERICHOST: a name fails with the resolver's error, no "
     .. "query sent, and a literal connects", function()
    local before = server.queries()
    run(function(loop)
      local srv = loop:create_server(function() return {} end,
                                     "127.0.0.1", 0)
      local port = srv:addresses()[1].port
      local numeric = { flags = tapio.AI_NUMERICHOST }
      local function factory() return {} end
      for _, name in ipairs({ "localhost", "v4.tapio.test" }) do
        local ok, err = pcall(loop.create_connection, loop, factory, name,
                              port, numeric)
        assert.is_false(ok, name)
        assert.are.equal("EAI_NONAME", err.name, name)
      end
      local t = loop:create_connection(factory, "127.0.0.1", port, numeric)
      t:close()
      local ok, err = pcall(loop.create_datagram_endpoint, loop, factory,
        { remote_addr = { "localhost", 9 }, flags = tapio.AI_NUMERICHOST })
      assert.is_false(ok)
      assert.are.equal("EAI_NONAME", err.name)
      ok, err = pcall(loop.create_server, loop, factory, "localhost", 0,
                      numeric)
      assert.is_false(ok)
      assert.are.equal("EAI_NONAME", err.name)
      srv:close()
    end)
    assert.are.equal(before, server.queries())
  end)

  it("flags = AI_V4MAPPED (| AI_ALL) with family 6: IPv4 as "
     .. "::ffff:a.b.c.d, as glibc's getaddrinfo; a connection reaches the "
     .. "IPv4 server", function()
    run(function(loop)
      local stream = { type = tapio.SOCK_STREAM, family = 6,
                       flags = tapio.AI_V4MAPPED }
      assert.are.equal("('::ffff:127.0.0.1', 5, 0, 0)/1/6",
                       addrs_of(loop:getaddrinfo("v4.tapio.test", 5, stream)))
      assert.are.equal("('::1', 5, 0, 0)/1/6",
                       addrs_of(loop:getaddrinfo("both.tapio.test", 5,
                                                 stream)))
      stream.flags = tapio.AI_V4MAPPED + tapio.AI_ALL -- LuaJIT: no |
      assert.are.equal("('::1', 5, 0, 0)/1/6 "
                       .. "('::ffff:127.0.0.1', 5, 0, 0)/1/6",
                       addrs_of(loop:getaddrinfo("both.tapio.test", 5,
                                                 stream)))
      local function factory() return {} end
      local srv = loop:create_server(factory, "127.0.0.1", 0)
      local t = loop:create_connection(factory, "v4.tapio.test",
        srv:addresses()[1].port, { family = 6, flags = tapio.AI_V4MAPPED })
      assert.are.equal("::ffff:127.0.0.1",
                       t:get_extra_info("peername").host)
      t:close()
      srv:close()
    end)
  end)

  it("flags = AI_NUMERICSERV: a service's name fails as getaddrinfo's "
     .. "(EAI_NONAME), for every call that takes a port", function()
    run(function(loop)
      local ns = { flags = tapio.AI_NUMERICSERV }
      local function factory() return {} end
      local calls = {
        function() return loop:getaddrinfo("127.0.0.1", "echo", ns) end,
        function()
          return loop:create_connection(factory, "127.0.0.1", "echo", ns)
        end,
        function()
          return loop:create_server(factory, "127.0.0.1", "echo", ns)
        end,
        function()
          return loop:create_datagram_endpoint(factory,
            { remote_addr = { "127.0.0.1", "echo" },
              flags = tapio.AI_NUMERICSERV })
        end,
      }
      for i, call in ipairs(calls) do
        local ok, err = pcall(call)
        assert.is_false(ok, i)
        assert.are.equal("EAI_NONAME", err.name, i)
      end
      local list = loop:getaddrinfo("127.0.0.1", "7",
                                    { flags = tapio.AI_NUMERICSERV,
                                      type = tapio.SOCK_STREAM })
      assert.are.equal("('127.0.0.1', 7)/1/6", addrs_of(list))
    end)
  end)

  it("a server's flags: AI_PASSIVE by default (no host is every "
     .. "interface), 0 makes it loopback", function()
    run(function(loop)
      local function factory() return {} end
      local all = loop:create_server(factory, nil, 0, { family = 4 })
      local lo = loop:create_server(factory, nil, 0,
                                    { family = 4, flags = 0 })
      assert.are.equal("0.0.0.0", all:addresses()[1].host)
      assert.are.equal("127.0.0.1", lo:addresses()[1].host)
      all:close()
      lo:close()
    end)
  end)

  it("proto of the other type is refused with getaddrinfo's error; a "
     .. "wrong type is an argument error naming the call and option",
     function()
    run(function(loop)
      local function factory() return {} end
      local ok, err = pcall(loop.create_connection, loop, factory,
                            "127.0.0.1", 9, { proto = tapio.IPPROTO_UDP })
      assert.is_false(ok)
      assert.are.equal("EAI_SOCKTYPE", err.name)
      assert.are.equal("create_connection: option 'proto' 17 is no stream "
        .. "socket's protocol (getaddrinfo: ai_socktype not supported)",
        err.message)
      ok, err = pcall(loop.create_datagram_endpoint, loop, factory,
        { local_addr = { "127.0.0.1", 0 }, proto = tapio.IPPROTO_TCP })
      assert.is_false(ok)
      assert.are.equal("EAI_SOCKTYPE", err.name)
      local t = loop:create_datagram_endpoint(factory,
        { local_addr = { "127.0.0.1", 0 }, proto = tapio.IPPROTO_UDP })
      t:close()
      assert.has_error(function()
        loop:create_connection(factory, "127.0.0.1", 9, { proto = "udp" })
      end, "tapio: loop:create_connection: bad option 'proto' (integer "
        .. "0..255 expected)")
      assert.has_error(function()
        loop:create_server(factory, "127.0.0.1", 0, { flags = 64 })
      end, "tapio: loop:create_server: bad option 'flags' (AI_* flags "
        .. "expected)")
      assert.has_error(function()
        loop:getaddrinfo("x", 1, { flags = 64 })
      end, "tapio: loop:getaddrinfo: bad argument #3 'opts.flags' "
        .. "(tapio.AI_* flags expected)")
      assert.has_error(function()
        loop:create_unix_server(factory, "/tmp/x", { flags = 1 })
      end, "tapio: loop:create_unix_server: unknown option 'flags'")
    end)
  end)
end)
