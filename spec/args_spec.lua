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
