-- Arguments as a Lua user writes them: integers that Lua 5.4 holds as
-- floats, errors reported at the caller's line, a wrong self, optional
-- arguments left out.
local helper = require "spec.helper"
local tapio = helper.tapio

local run, pair = helper.run, helper.pair

-- The integer n as Lua 5.4 makes it from a float: 2^16, 1e6, 10 / 2.
local function float(n)
  return n + 0.0
end

describe("an integer argument", function()
  it("may be a float with an integral value, as Lua's own take it",
    function()
    local buf = tapio.buffer(2 ^ 4)
    assert.are.equal(16, #buf)
    buf:set(float(1), "abcdefgh")
    assert.are.equal("bc", buf:sub(float(2), 6 / 2))
    assert.are.equal(("h"):byte(), buf:byte(float(8)))
    assert.are.equal(tapio.ECONNREFUSED, tapio.error(float(-34)).code)
    local a, b = tapio.socketpair()
    assert.are.equal(2, tapio.send(float(a), "hi"))
    assert.is_true(tapio.close_fd(float(a)))
    tapio.close_fd(b)
  end)

  it("may be a float for ports, limits, descriptors and options",
    function()
    run(function(loop)
      -- a BufferedProtocol whose get_buffer gives its position as a float
      local sp = helper.recorder(loop)
      local buf = tapio.buffer(8)
      function sp.get_buffer() return buf, float(3) end
      function sp:buffer_updated(n)
        self.received = self.received .. buf:sub(3, 2 + n)
        self:check_waiters()
      end
      local server = loop:create_server(function() return sp end,
        "127.0.0.1", 0 / 1, { backlog = 1e2 })
      local port = helper.port(server)
      local t, p = loop:create_connection(function()
        return helper.recorder(loop)
      end, "127.0.0.1", port * 2 / 2, { local_port = float(0) })
      t:write("at 3")
      assert.are.equal("at 3", sp:bytes(4):await())
      t:set_write_buffer_limits(1e6)
      assert.are.same({ 250000, 1000000 }, { t:get_write_buffer_limits() })
      t:set_write_buffer_limits(2 ^ 17, 2 ^ 15)
      assert.are.same({ 32768, 131072 }, { t:get_write_buffer_limits() })
      local x, y = tapio.socketpair()
      local t2, p2 = loop:connect_accepted_socket(function()
        return helper.recorder(loop)
      end, float(x))
      tapio.send(y, "accepted")
      assert.are.equal("accepted", p2:bytes(8):await())
      t2:close()
      tapio.close_fd(y)
      t:close()
      p.lost:await()
      server:close()
    end)
  end)

  it("refuses a fraction, naming function and argument", function()
    assert.has_error(function() tapio.buffer(1.5) end,
      "tapio: buffer: bad argument #1 'size' "
      .. "(number has no integer representation)")
    assert.has_error(function() tapio.buffer(2 ^ 70) end,
      "tapio: buffer: bad argument #1 'size' "
      .. "(number has no integer representation)")
    assert.has_error(function() tapio.buffer(0 / 0) end,
      "tapio: buffer: bad argument #1 'size' "
      .. "(number has no integer representation)")
    run(function(loop)
      local server, t = pair(loop)
      assert.has_error(function() t:set_write_buffer_limits(1e6 + 0.5) end,
        "tapio: transport:set_write_buffer_limits: bad argument #1 'high' "
        .. "(number has no integer representation)")
      assert.has_error(function()
        loop:create_connection(function() end, "127.0.0.1", 80.5)
      end, "tapio: loop:create_connection: bad argument #3 'port' "
        .. "(number has no integer representation)")
      t:close()
      server:close()
    end)
  end)
end)

describe("a port", function()
  it("may be a string of digits or a service's name, as asyncio's",
     function()
    run(function(loop)
      local server = tapio.start_server(function(reader, writer)
        writer:write(reader:readline())
        writer:close()
      end, "127.0.0.1", "0")
      local port = helper.port(server)
      local reader, writer = tapio.open_connection("127.0.0.1",
        tostring(port))
      writer:write("by name\n")
      assert.equal("by name\n", reader:readline())
      writer:close()
      server:close()
      local http = io.open("/etc/services") and "http" -- netbase's file
      if http then -- port 80 by its name: nothing listens there
        local err = helper.fails(loop.create_connection, loop,
          function() return {} end, "127.0.0.1", http)
        assert.matches("%('127%.0%.0%.1', 80%)", err.message)
      end
      assert.has_error(function()
        loop:create_connection(function() end, "127.0.0.1", "no-such-svc")
      end, "tapio: loop:create_connection: bad argument #3 'port' "
        .. "(unknown service 'no-such-svc')")
      assert.has_error(function()
        loop:create_server(function() end, "127.0.0.1", "65536")
      end, "tapio: loop:create_server: bad argument #3 'port' "
        .. "(out of range 0..65535)")
      assert.has_error(function()
        loop:create_server(function() end, "127.0.0.1", true)
      end, "tapio: loop:create_server: bad argument #3 'port' "
        .. "(integer or string expected, got boolean)")
    end)
  end)
end)

describe("a host name or a service", function()
  it("with a NUL inside is refused, not cut there (Python's ValueError)",
     function()
    -- "evil.test\0.good.test" must not become "evil.test": a proxy that
    -- checks the name it was given would connect elsewhere
    local NUL = "bad argument #%d '%s' (string with a NUL byte inside)"
    local unpack = table.unpack or unpack
    local function refused(fn, n, name, f, ...)
      local args = { n = select("#", ...), ... }
      assert.has_error(function() f(unpack(args, 1, args.n)) end,
        ("tapio: %s: " .. NUL):format(fn, n, name))
    end
    local host = "127.0.0.1\0.example.org"
    run(function(loop)
      local f = function() return {} end
      refused("loop:create_connection", 2, "host", loop.create_connection,
              loop, f, host, 80)
      refused("loop:create_connection", 3, "port", loop.create_connection,
              loop, f, "127.0.0.1", "80\0x")
      refused("open_connection", 1, "host", tapio.open_connection, host, 80)
      refused("loop:getaddrinfo", 1, "host", loop.getaddrinfo, loop, host,
              80)
      refused("loop:getaddrinfo", 2, "port", loop.getaddrinfo, loop,
              "127.0.0.1", "http\0x")
      refused("loop:create_server", 2, "host", loop.create_server, loop, f,
              host, 0)
      refused("loop:create_server", 2, "host", loop.create_server, loop, f,
              { "127.0.0.1", host }, 0)
      refused("start_server", 2, "host", tapio.start_server, f, host, 0)
      assert.has_error(function() tapio.address(host, 80) end,
        "tapio: address: bad argument #1 'addr' (string with a NUL byte "
        .. "inside)")
      -- and in an option (asyncio's local_addr is local_host here)
      assert.has_error(function()
        loop:create_connection(f, "127.0.0.1", 80, { local_host = host })
      end, "tapio: loop:create_connection: bad option 'local_host' (string "
        .. "with a NUL byte inside)")
      assert.has_error(function()
        tapio.open_connection("127.0.0.1", 80, { local_addr = { host, 0 } })
      end, "tapio: open_connection: bad option 'local_host' (string with a "
        .. "NUL byte inside)")
      -- a datagram endpoint's addresses: host, and a port given by name
      local DG = "tapio: loop:create_datagram_endpoint: bad argument #2 "
        .. "'opts' (%s_addr: a NUL byte inside the host or port)"
      assert.has_error(function()
        loop:create_datagram_endpoint(f, { local_addr = { host, 0 } })
      end, DG:format("local"))
      assert.has_error(function()
        loop:create_datagram_endpoint(f,
          { remote_addr = { "127.0.0.1", "53\0x" } })
      end, DG:format("remote"))
    end)
  end)
end)

describe("tapio.error", function()
  it("takes a code or a name, and an optional message", function()
    local e = tapio.error(tapio.ECONNREFUSED)
    assert.are.equal(tapio.ECONNREFUSED, e.code)
    assert.are.equal("ECONNREFUSED", e.name)
    assert.are.equal(tapio.strerror(tapio.ECONNREFUSED), e.message)
    assert.are.equal("connection refused (ECONNREFUSED)", tostring(e))
    e = tapio.error("EPIPE")
    assert.are.equal(tapio.EPIPE, e.code)
    assert.are.equal(tapio.strerror(tapio.EPIPE), e.message)
    e = tapio.error("ETIMEDOUT", nil)
    assert.are.equal(tapio.strerror(tapio.ETIMEDOUT), e.message)
    e = tapio.error(tapio.EINVAL, "bad thing")
    assert.are.equal("bad thing (EINVAL)", tostring(e))
    assert.has_error(function() tapio.error("ENOPE") end,
      "tapio: error: bad argument #1 'code' (unknown error name)")
    assert.has_error(function() tapio.error(-1, 42) end,
      "tapio: error: bad argument #2 'message' "
      .. "(string or nil expected, got number)")
  end)
end)

-- Calls f, a function making one call on the line it is defined on, and
-- returns its error and that line as an error position ("file:line").
local function raised_at(f)
  local info = debug.getinfo(f, "S")
  local ok, err = pcall(f)
  assert.is_false(ok)
  return err, ("%s:%d"):format(info.short_src, info.linedefined)
end

-- The calls that complete later, each with an unknown option (each call
-- on the line its function is defined on).
local function creates(loop)
  local f, o = function() return {} end, { backlgo = 1 }
  return {
    { "create_connection",
      function() loop:create_connection(f, "h", 1, o) end },
    { "create_connection",
      function() loop:create_connection(f, { sock = 0, backlgo = 1 }) end },
    { "create_unix_connection",
      function() loop:create_unix_connection(f, "p", o) end },
    { "connect_accepted_socket",
      function() loop:connect_accepted_socket(f, 0, o) end },
    { "create_server",
      function() loop:create_server(f, nil, 0, o) end },
    { "create_unix_server",
      function() loop:create_unix_server(f, "p", o) end },
    { "getaddrinfo",
      function() loop:getaddrinfo("h", 1, o) end },
  }
end

describe("an argument error of a call that completes later", function()
  local function at_the_callers_line(loop)
    for _, case in ipairs(creates(loop)) do
      local err, where = raised_at(case[2])
      assert.are.equal(("%s: tapio: loop:%s: unknown option 'backlgo'")
        :format(where, case[1]), err)
    end
    local function bad_host() loop:create_server(print, 42, 0) end
    local err, where = raised_at(bad_host)
    assert.are.equal(where .. ": tapio: loop:create_server: bad argument #2 "
      .. "'host' (string, list or nil expected, got number)", err)
  end

  it("is raised at the caller's line, inside a task", function()
    run(at_the_callers_line)
  end)

  it("is raised at the caller's line, outside a task", function()
    local loop = tapio.new_loop()
    at_the_callers_line(loop)
    loop:close()
    local function closed() loop:create_server(print, nil, 0) end
    local err, where = raised_at(closed)
    assert.are.equal(where .. ": tapio: loop:create_server: the loop is closed",
      err)
  end)
end)

describe("a method given the wrong self", function()
  it("says bad self at the caller's line", function()
    run(function(loop)
      local server = loop:create_server(function() return {} end,
        "127.0.0.1", 0)
      local t = loop:create_connection(function() return {} end,
        "127.0.0.1", helper.port(server))
      local f, L = function() return {} end, loop
      local cases = {
        { "loop:create_connection", "tapio.transport",
          function() L.create_connection(t, f, "h", 1) end },
        { "loop:create_unix_connection", "number",
          function() L.create_unix_connection(42, f, "p") end },
        { "loop:connect_accepted_socket", "table",
          function() L.connect_accepted_socket({}, f, 0) end },
        { "loop:create_server", "tapio.server",
          function() L.create_server(server, f, nil, 0) end },
        { "loop:create_unix_server", "nil",
          function() L.create_unix_server(nil, f, "p") end },
        { "loop:create_future", "tapio.server",
          function() L.create_future(server) end },
        { "loop:create_task", "number",
          function() L.create_task(42, f) end },
        { "loop:run_until_complete", "table",
          function() L.run_until_complete({}, f) end },
        { "server:serve_forever", "tapio.loop",
          function() server.serve_forever(L) end },
        { "server:wait_closed", "tapio.transport",
          function() server.wait_closed(t) end },
      }
      for _, case in ipairs(cases) do
        local err, where = raised_at(case[3])
        assert.are.equal(("%s: tapio: %s: bad self (%s expected, got %s)")
          :format(where, case[1], case[1]:match("^loop") and "tapio.loop"
                  or "tapio.server", case[2]), err)
      end
      t:close()
      server:close()
    end)
  end)
end)
