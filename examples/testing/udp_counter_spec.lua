-- The spec of examples/udp_counter.lua: its server and client on
-- tapio.testing's virtual network and clock, with datagrams lost and
-- doubled.
-- Run: busted examples/testing/udp_counter_spec.lua
-- (make test: example_udp_counter).
local tapio = require "tapio"
local testing = require "tapio.testing"
local counter = require "examples.udp_counter"

local ADDR = { "127.0.0.1", 9000 }

-- What the example prints, kept instead of printed.
local printed
local real_print = print

local function quiet(body)
  return function(...)
    printed = {}
    _G.print = function(s) printed[#printed + 1] = s end
    local ok, err = pcall(body, ...)
    _G.print = real_print
    if not ok then
      error(err, 0) -- a failed expectation stays one
    end
  end
end

-- The server; its log lists the requests it got, as "<time> <request>".
local function server()
  local loop = tapio.get_running_loop()
  local log = {}
  local proto = counter.CounterServer.new()
  local received = proto.datagram_received
  function proto:datagram_received(data, addr)
    log[#log + 1] = ("%g %s"):format(loop:time(), data)
    return received(self, data, addr)
  end
  local t = loop:create_datagram_endpoint(function() return proto end,
    { local_addr = ADDR })
  return t, log
end

local function client()
  return tapio.get_running_loop():create_datagram_endpoint(
    counter.CounterClient.new, { remote_addr = ADDR })
end

describe("the UDP counter", function()
  it("resends a request its TIMEOUT after, and counts it once",
     testing.run(quiet(function()
    local st, log = server()
    local ct, cp = client()
    assert.equal("a=1", counter.request(cp, 1, "INC a"))
    -- the server drops the first copy of an even request: one resend
    assert.equal("a=2", counter.request(cp, 2, "INC a"))
    assert.equal("a=3", counter.request(cp, 3, "INC a"))
    local t = counter.TIMEOUT
    assert.same({ "0 1 INC a", "0 2 INC a", ("%g 2 INC a"):format(t),
                  ("%g 3 INC a"):format(t) }, log)
    assert.same({ "dropped request 2 (INC a)" }, printed)
    ct:close()
    st:close()
  end), { autojump = true }))

  it("hears in error_received that nothing listens yet, and tries again",
     testing.run(quiet(function(clock)
    local ct, cp = client()
    local st, log
    local up = tapio.create_task(function()
      tapio.sleep(0.5)
      st, log = server()
    end)
    assert.equal("a=1", counter.request(cp, 1, "INC a"))
    -- refused at 0, 0.2, 0.4 (each a TIMEOUT's sleep after), heard at 0.6
    assert.equal("0.6", ("%g"):format(clock:time())) -- 3 * 0.2 is not 0.6
    assert.same({ "0.6 1 INC a" }, log)
    assert.same({ "the server is not up yet: trying again" }, printed)
    up:await()
    ct:close()
    st:close()
  end), { autojump = true }))

  it("rides out lost requests and answers, counting each request once",
     testing.run(quiet(function()
    local st, log = server()
    local ct, cp = client()
    testing.datagram_faults(ct, { drop = { 1, 2 } }) -- request 1, twice
    testing.datagram_faults(st, { drop = { 1 } }) -- the first answer
    assert.equal("a=1", counter.request(cp, 1, "INC a"))
    local t = counter.TIMEOUT
    -- sent at 0 and t (lost), 2t (answer lost), 3t (answered again)
    assert.same({ ("%g 1 INC a"):format(2 * t), ("%g 1 INC a"):format(3 * t) },
      log)
    assert.same({ sent = 4, lost = 0, dropped = 2, duplicated = 0,
                  reordered = 0, delayed = 0 },
      testing.datagram_fault_counts(ct))
    assert.equal(1, testing.datagram_fault_counts(st).dropped)
    ct:close()
    st:close()
  end), { autojump = true }))

  it("counts a doubled request once, and takes a doubled answer once",
     testing.run(quiet(function()
    local st, log = server()
    local ct, cp = client()
    testing.datagram_faults(ct, { duplicate = 1 })
    testing.datagram_faults(st, { duplicate = 1 })
    assert.equal("a=1", counter.request(cp, 1, "INC a"))
    assert.equal("a=2", counter.request(cp, 3, "INC a"))
    assert.same({ "0 1 INC a", "0 1 INC a", "0 3 INC a", "0 3 INC a" }, log)
    assert.equal(4, testing.datagram_fault_counts(st).duplicated)
    ct:close()
    st:close()
  end), { autojump = true }))
end)
