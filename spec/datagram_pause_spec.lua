-- A datagram endpoint's reading pauses from Lua: pause_reading inside
-- datagram_received stops the delivery at once, also of a batch already
-- read, whose rest comes first after resume_reading, in order, and never
-- from inside it; sending goes on while paused; a paused endpoint's full
-- socket drops, and get_stats().datagrams_dropped counts it (nil where
-- nothing can be dropped: a stream); the same on a virtual loop.
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"

-- helper.dgram_recorder's endpoint that pauses its reading in the n-th
-- datagram_received (n in pause_at) and notes any datagram that comes
-- while the spec is inside resume_reading (p.inside).
local function pausing(loop, opts, pause_at)
  local t, p
  t, p = helper.dgram_endpoint(loop, opts, {
    show = function(data) return data end,
    echo = false })
  local received = p.datagram_received
  function p:datagram_received(data, addr)
    if self.inside then
      self.bad = "a datagram inside resume_reading"
    end
    received(self, data, addr)
    if (pause_at or {})[#self.datagrams] then
      self.transport:pause_reading()
    end
  end
  return t, p
end

-- resume_reading, delivering nothing inside it.
local function resume(t, p)
  local before = #p.datagrams
  p.inside = true
  t:resume_reading()
  p.inside = false
  assert.are.equal(before, #p.datagrams)
  assert.is_true(t:is_reading())
end

-- p got "1".."n", in order.
local function in_order(p, n)
  local want, got = {}, {}
  for i = 1, n do
    want[i] = tostring(i)
  end
  for i, d in ipairs(p.datagrams) do
    got[i] = d.data
  end
  assert.are.same(want, got)
  assert.is_nil(p.bad)
end

-- An endpoint of pausing's on 127.0.0.1 and a plain one sending to it.
local function receiver_and_sender(loop, pause_at)
  local st, sp = pausing(loop, { local_addr = { "127.0.0.1", 0 } }, pause_at)
  local ct = loop:create_datagram_endpoint(function() return {} end,
    { remote_addr = st:get_extra_info("sockname") })
  return st, sp, ct
end

-- A few turns of the loop: what was going to come has come.
local function turns(n)
  for _ = 1, n do
    tapio.sleep(0)
  end
end

describe("a datagram endpoint's reading pauses", function()
  it("stop the delivery inside a batch; the rest comes after resume, "
     .. "in order", function()
    helper.run(function(loop)
      -- 40 waiting: read 8 one by one, then 4, then 8 (the 13th to the
      -- 20th) at once: the pause at the 14th holds 6 of them
      local st, sp, ct = receiver_and_sender(loop,
                                             { [14] = true, [17] = true })
      for i = 1, 40 do
        ct:sendto(tostring(i))
      end
      sp:got(14)
      turns(5)
      assert.are.equal(14, #sp.datagrams)
      assert.is_false(st:is_reading())
      st:pause_reading() -- twice: harmless
      resume(st, sp)
      st:resume_reading() -- not paused: harmless
      sp:got(17) -- paused again while the held ones came
      turns(5)
      assert.are.equal(17, #sp.datagrams)
      resume(st, sp)
      sp:got(40)
      in_order(sp, 40)
      assert.is_true(st:get_stats().read_paused_usec > 0)
      ct:close()
      st:close()
      st:resume_reading() -- closing: harmless
      assert.is_false(st:is_reading())
    end)
  end)

  it("hold from a pause in connection_made (cpython gh-103607)", function()
    helper.run(function(loop)
      local st, sp = helper.dgram_endpoint(loop,
        { local_addr = { "127.0.0.1", 0 } }, {
          show = function(data) return data end,
          connection_made = function(self, transport)
            self.events[#self.events + 1] = "made"
            self.transport = transport
            transport:pause_reading() -- asyncio began reading after it
          end })
      assert.is_false(st:is_reading())
      local ct = loop:create_datagram_endpoint(function() return {} end,
        { remote_addr = st:get_extra_info("sockname") })
      for i = 1, 3 do
        ct:sendto(tostring(i))
      end
      turns(5)
      assert.are.same({ "made" }, sp.events)
      resume(st, sp)
      sp:got(3)
      in_order(sp, 3)
      ct:close()
      st:close()
    end)
  end)

  it("drop what is held at close", function()
    helper.run(function(loop)
      local st, sp, ct = receiver_and_sender(loop, { [14] = true })
      for i = 1, 40 do
        ct:sendto(tostring(i))
      end
      sp:got(14)
      st:close()
      assert.is_false(sp.lost:await())
      turns(3)
      in_order(sp, 14)
      ct:close()
    end)
  end)

  it("leave sending alone", function()
    helper.run(function(loop)
      local at, ap = pausing(loop, { local_addr = { "127.0.0.1", 0 } })
      local bt, bp = pausing(loop, { remote_addr =
        at:get_extra_info("sockname") })
      at:pause_reading()
      bt:pause_reading()
      bt:sendto("1")
      at:sendto("1", bt:get_extra_info("sockname"))
      turns(3)
      assert.are.same({}, ap.datagrams)
      assert.are.same({}, bp.datagrams)
      assert.are.equal(1, at:get_stats().bytes_sent)
      resume(at, ap)
      resume(bt, bp)
      ap:got(1)
      bp:got(1)
      at:close()
      bt:close()
    end)
  end)

  it("let the kernel drop what a full socket cannot hold; "
     .. "datagrams_dropped counts it", function()
    helper.run(function(loop)
      local st, sp, ct = receiver_and_sender(loop)
      st:pause_reading()
      assert.are.equal(0, st:get_stats().datagrams_dropped)
      local sent, pad = 0, (" "):rep(300)
      repeat -- on loopback, sendto puts it in the socket at once
        sent = sent + 1
        ct:sendto(tostring(sent) .. pad)
        assert(sent < 100000, "nothing was dropped")
      until st:get_stats().datagrams_dropped > 0
      assert.are.equal(0, ct:get_write_buffer_size())
      resume(st, sp)
      -- the last one sent was dropped (a few more, where the kernel put
      -- the delivery off to its softirq thread)
      local dropped
      repeat
        dropped = st:get_stats().datagrams_dropped
        turns(1)
      until #sp.datagrams + dropped == sent
      for i, d in ipairs(sp.datagrams) do
        assert.are.equal(tostring(i) .. pad, d.data)
      end
      ct:close()
      st:close()
      sp.lost:await()
      assert.are.equal(dropped, st:get_stats().datagrams_dropped) -- kept
    end)
  end)

  it("datagrams_dropped: 0 on a Unix datagram socket, nil on a stream",
     function()
    helper.run(function(loop)
      local path = os.tmpname()
      os.remove(path)
      local ut = pausing(loop, { local_addr = path })
      assert.are.equal(0, ut:get_stats().datagrams_dropped)
      ut:close()
      os.remove(path)
      local server, t = helper.pair(loop)
      assert.is_nil(t:get_stats().datagrams_dropped)
      assert.is_number(t:get_stats().bytes_sent)
      t:close()
      server:close()
    end)
  end)

  it("hold a virtual endpoint's arrivals, up to its receive buffer",
     testing.run(function(clock, loop)
    local st, sp, ct = receiver_and_sender(loop, { [3] = true })
    for i = 1, 10 do
      ct:sendto(tostring(i))
    end
    clock:run_until_idle()
    assert.are.equal(3, #sp.datagrams)
    resume(st, sp)
    clock:run_until_idle()
    in_order(sp, 10)
    st:pause_reading()
    local pad = ("x"):rep(1000)
    for i = 11, 310 do
      ct:sendto(tostring(i) .. pad)
    end
    clock:run_until_idle()
    local dropped = st:get_stats().datagrams_dropped
    assert.is_true(dropped > 0 and dropped < 300)
    resume(st, sp)
    clock:run_until_idle()
    assert.are.equal(10 + 300 - dropped, #sp.datagrams)
    for i = 11, #sp.datagrams do
      assert.are.equal(tostring(i) .. pad, sp.datagrams[i].data)
    end
    assert.are.equal(0, ct:get_stats().datagrams_dropped)
    ct:close()
    st:close()
  end))
end)
