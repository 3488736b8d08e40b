-- The spec of heartbeat.lua: two nodes on tapio.testing's virtual
-- network and clock, with datagrams lost, duplicated and reordered.
-- Run: busted examples/testing/heartbeat/heartbeat_spec.lua
-- (make test: example_heartbeat).
local tapio = require "tapio"
local testing = require "tapio.testing"
local heartbeat = require "examples.testing.heartbeat.heartbeat"

local A, B = { "127.0.0.1", 5001 }, { "127.0.0.1", 5002 }

-- A node at `addr` beating to `peer`; its log lists what it saw, as
-- "<time> <peer> up|down".
local function node(name, addr, peer)
  local loop = tapio.get_running_loop()
  local log = {}
  local proto = heartbeat.new(name, { peer }, {
    on_change = function(who, state)
      log[#log + 1] = ("%g %s %s"):format(loop:time(), who, state)
    end,
  })
  local t = loop:create_datagram_endpoint(function() return proto end,
    { local_addr = addr })
  return t, log
end

describe("the heartbeat", function()
  it("declares a silent peer down after 3 missed beats, up at the next",
     testing.run(function(clock)
    local a, log = node("a", A, B)
    local b = node("b", B, A)
    clock:advance(10.5)
    b:close() -- its last beat was at 10
    clock:advance(13.499 - 10.5)
    assert.same({ "0 b up" }, log)
    clock:advance(0.001)
    assert.same({ "0 b up", "13.5 b down" }, log)
    clock:advance(20 - 13.5)
    b = node("b", B, A)
    clock:run_until_idle()
    assert.same({ "0 b up", "13.5 b down", "20 b up" }, log)
    a:close()
    b:close()
  end))

  it("rides out two lost beats, not three", testing.run(function(clock)
    local a, log = node("a", A, B)
    local b = node("b", B, A)
    testing.datagram_faults(b, { drop = { 2, 3 } }) -- the beats at 1, 2
    clock:advance(10)
    assert.same({ "0 b up" }, log)
    testing.datagram_faults(b, { drop = { 1, 2, 3 } }) -- at 11, 12, 13
    clock:advance(10)
    assert.same({ "0 b up", "13.5 b down", "14 b up" }, log)
    a:close()
    b:close()
  end))

  it("is not fooled by duplicated, late or reordered beats", function()
    for seed = 1, 20 do
      testing.run(function(clock)
        local a, log = node("a", A, B)
        local b = node("b", B, A)
        testing.datagram_faults(b, { duplicate = 0.5, reorder = 2,
                                     delay = 0.2, jitter = 1.2 })
        clock:advance(60)
        assert.equal(1, #log, table.concat(log, ", "))
        assert.matches("^[%d.]+ b up$", log[1])
        a:close()
        b:close()
      end, { seed = seed })()
    end
  end)
end)
