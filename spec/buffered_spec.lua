-- BufferedProtocol (get_buffer/buffer_updated) and tapio.buffer.
local helper = require "spec.helper"
local tapio = helper.tapio

local run, pair, recorder = helper.run, helper.pair, helper.recorder

describe("tapio.buffer", function()
  it("is fixed-size, zeroed memory with a length", function()
    local buf = tapio.buffer(8)
    assert.are.equal(8, #buf)
    assert.are.equal(0, buf:byte(1))
    assert.are.equal(("\0"):rep(8), buf:sub())
    assert.are.equal("tapio.buffer (8 bytes)", tostring(buf))
  end)

  it("slices to strings as string.sub does", function()
    local buf = tapio.buffer(6)
    buf:set(1, "abcdef")
    local s = "abcdef"
    for _, ij in ipairs({ { 1, 6 }, { 2, 3 }, { -2, -1 }, { 4, 2 },
                          { 0, 2 }, { 5, 100 }, { -100, 2 }, { 7, 8 },
                          { 3 }, { -3 } }) do
      assert.are.equal(s:sub(ij[1], ij[2]), buf:sub(ij[1], ij[2]))
    end
    assert.are.equal(("b"):byte(), buf:byte(2))
    assert.are.equal(("f"):byte(), buf:byte(-1))
    assert.is_nil(buf:byte(7))
    buf:set(5, "XY")
    assert.are.equal("abcdXY", buf:sub())
  end)

  it("raises on bad arguments", function()
    local buf = tapio.buffer(4)
    assert.has_error(function() tapio.buffer(0) end,
      "tapio: buffer: bad argument #1 'size' (0 is out of range "
      .. "1..1099511627776)")
    assert.has_error(function() tapio.buffer("4") end,
      "tapio: buffer: bad argument #1 'size' (integer expected, got string)")
    assert.has_error(function() buf:set(3, "abc") end,
      "tapio: buffer:set: bad argument #2 's' (does not fit)")
    assert.has_error(function() buf:set(1, 5) end,
      "tapio: buffer:set: bad argument #2 's' (string expected, got number)")
    assert.has_error(function() buf.sub({}) end,
      "tapio: buffer:sub: bad self (tapio.buffer expected, got table)")
  end)
end)

-- A BufferedProtocol receiving into one reused buffer.
local function buffered(loop, size, extra)
  local p = recorder(loop)
  p.buf = tapio.buffer(size)
  p.hints = {}
  p.data_received = function() error("not for a BufferedProtocol") end
  function p:get_buffer(sizehint)
    self.events[#self.events + 1] = "get"
    self.hints[#self.hints + 1] = sizehint
    return self.buf
  end
  function p:buffer_updated(n)
    self.events[#self.events + 1] = "updated"
    self.received = self.received .. self.buf:sub(1, n)
    self:check_waiters()
  end
  for k, v in pairs(extra or {}) do
    p[k] = v
  end
  return p
end

describe("a BufferedProtocol", function()
  it("receives through get_buffer and buffer_updated", function()
    run(function(loop)
      local bp = buffered(loop, 4)
      local server, t = pair(loop, bp)
      t:write("0123456789")
      assert.are.equal("0123456789", bp:bytes(10):await())
      t:close()
      bp.lost:await()
      assert.are.equal(-1, bp.hints[1])
      -- the state machine: made, (get, updated)*, eof, lost
      -- (the read that finds the end asks for a buffer too)
      local ev = table.concat(bp.events, " "):gsub("get eof", "eof")
      local rest, n = ev:gsub(" get updated", "")
      assert.are.equal("made eof lost", rest)
      assert.is_true(n >= 3) -- 10 bytes into 4-byte buffers
      server:close()
    end)
  end)

  it("receives at the position get_buffer returns", function()
    run(function(loop)
      local p = recorder(loop)
      p.buf, p.pos = tapio.buffer(8), 1
      function p:get_buffer()
        return self.buf, self.pos
      end
      function p:buffer_updated(n)
        self.pos = self.pos + n
        if self.pos > #self.buf then -- full: hand over, start again
          self.received = self.received .. self.buf:sub()
          self.pos = 1
          self:check_waiters()
        end
      end
      local server, t = pair(loop, p)
      for i = 1, 4 do
        t:write(("%d%d%d%d"):format(i, i, i, i))
        tapio.sleep(0)
      end
      assert.are.equal("1111222233334444", p:bytes(16):await())
      t:close()
      server:close()
    end)
  end)

  it("can be switched to from a plain protocol and back", function()
    run(function(loop)
      local server, t, _, sp = pair(loop)
      local bp = buffered(loop, 64)
      sp.transport:set_protocol(bp)
      t:write("buffered")
      assert.are.equal("buffered", bp:bytes(8):await())
      bp.transport = sp.transport
      sp.transport:set_protocol(sp)
      t:write("plain")
      assert.are.equal("plain", sp:bytes(5):await())
      t:close()
      server:close()
    end)
  end)

  -- Found by the chaos spec (seed 5): the read went into the old
  -- protocol's buffer and its bytes were lost, or went to the new one's
  -- buffer_updated (which had given no buffer).
  it("loses no byte when get_buffer sets another protocol", function()
    run(function(loop)
      for _, kind in ipairs({ "plain", "buffered" }) do
        local server, t, _, sp = pair(loop)
        local new = kind == "plain" and recorder(loop) or buffered(loop, 64)
        new.transport = sp.transport
        local old = buffered(loop, 64, { get_buffer = function(self)
          self.transport:set_protocol(new)
          return self.buf
        end })
        old.transport = sp.transport
        sp.transport:set_protocol(old)
        t:write("switched")
        assert.are.equal("switched", new:bytes(8):await())
        assert.are.equal("", old.received)
        t:close()
        server:close()
      end
    end)
  end)

  -- get_buffer's failures: the handler, then connection_lost(err).
  local function failing(get_buffer, message, check)
    return function()
      local _, errors = run(function(loop, errors)
        local bp = buffered(loop, 16, { get_buffer = get_buffer })
        local server, t = pair(loop, bp)
        t:write("data")
        local err = bp.lost:await()
        check(err)
        t:close()
        server:close()
        return nil, errors
      end, { errors_ok = true })
      assert.are.equal(1, #errors)
      assert.matches(message, errors[1].message)
      check(errors[1].exception)
    end
  end

  it("fails when get_buffer raises",
    failing(function() error("no memory today") end,
      "error in protocol.get_buffer%(%)", function(err)
        assert.matches("no memory today", err)
      end))

  it("fails when get_buffer returns no buffer",
    failing(function() return "a string" end,
      "error in protocol.get_buffer%(%)", function(err)
        assert.matches("get_buffer returned string, not a tapio.buffer", err)
      end))

  it("fails when get_buffer's position is outside the buffer",
    failing(function(self) return self.buf, 18 end,
      "error in protocol.get_buffer%(%)", function(err)
        assert.matches("position 18 is outside the buffer %(1..17%)", err)
      end))

  it("fails when get_buffer's position is far outside the buffer, "
     .. "saying which", failing(function(self) return self.buf, 2^32 + 5 end,
      "error in protocol.get_buffer%(%)", function(err)
        assert.matches("position 4294967301 is outside the buffer "
          .. "%(1..17%)", err)
      end))

  it("fails with EBUFFER when the buffer has no room",
    failing(function(self) return self.buf, 17 end,
      "empty buffer", function(err)
        assert.are.equal(tapio.EBUFFER, err.code)
      end))

  it("fails when buffer_updated raises", function()
    local _, errors = run(function(loop, errors)
      local bp = buffered(loop, 16, {
        buffer_updated = function() error("cannot parse") end })
      local server, t = pair(loop, bp)
      t:write("data")
      assert.matches("cannot parse", bp.lost:await())
      t:close()
      server:close()
      return nil, errors
    end, { errors_ok = true })
    assert.are.equal(1, #errors)
    assert.are.equal("error in protocol.buffer_updated()", errors[1].message)
  end)

  it("fails when get_buffer goes missing at run time", function()
    run(function(loop)
      local bp = buffered(loop, 16)
      local server, t = pair(loop, bp)
      bp.get_buffer = nil
      t:write("data")
      assert.matches("the protocol has no get_buffer method",
        bp.lost:await())
      t:close()
      server:close()
    end, { errors_ok = true })
  end)
end)
