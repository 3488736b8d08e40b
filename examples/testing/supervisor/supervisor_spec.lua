-- The spec of supervisor.lua: its children are tapio.testing's fake
-- programs on a virtual clock (no process is started), then one real
-- `sh -c`.
-- Run: busted examples/testing/supervisor/supervisor_spec.lua
-- (make test: example_supervisor).
local tapio = require "tapio"
local testing = require "tapio.testing"
local supervisor = require "examples.testing.supervisor.supervisor"

describe("the supervisor, with fake programs", function()
  it("restarts a child that fails until it succeeds", testing.run(
    function(clock, loop)
    local runs = 0
    testing.fake_program(loop, "worker", function()
      runs = runs + 1
      tapio.sleep(10)
      return runs < 3 and 1 or 0 -- fails twice
    end)
    local sup = supervisor.new("worker")
    assert.equal(0, sup:run())
    assert.same({ 0, 10, 20 }, sup.starts)
    assert.equal(30, clock:time())
  end, { autojump = true }))

  it("gives up after 3 restarts within a minute", testing.run(
    function(clock, loop)
    testing.fake_program(loop, "worker", function()
      tapio.sleep(10)
      return 2
    end)
    local sup = supervisor.new("worker", nil, { max_restarts = 3 })
    assert.same({ nil, "restart limit reached", 2 }, { sup:run() })
    assert.same({ 0, 10, 20, 30 }, sup.starts)
    assert.equal(40, clock:time())
  end, { autojump = true }))

  it("keeps restarting a child that fails less often", testing.run(
    function(clock, loop)
    testing.fake_program(loop, "worker", function()
      tapio.sleep(21)
      return 1
    end)
    local sup = supervisor.new("worker", nil, { max_restarts = 3 })
    local run = tapio.create_task(sup.run, sup)
    tapio.sleep(600)
    assert.equal(29, #sup.starts) -- at 0, 21, ... 588
    assert.equal(-15, sup:stop())
    assert.same({ -15 }, { run:await() })
  end, { autojump = true }))

  it("forwards SIGTERM on stop, and does not restart", testing.run(
    function(clock, loop)
    local got = {}
    testing.fake_program(loop, "worker", function(child)
      child:on_signal("TERM", function(sig)
        got[#got + 1] = sig
        child:exit(1) -- a non-zero status: still no restart
      end)
      tapio.sleep(3600)
    end)
    local sup = supervisor.new("worker", { "--serve" })
    local run = tapio.create_task(sup.run, sup)
    tapio.sleep(5)
    assert.equal(1, sup:stop())
    assert.equal(1, run:await())
    assert.equal(1, #got)
    assert.same({ 0 }, sup.starts)
    assert.equal(5, clock:time())
  end, { autojump = true }))

  it("kills a child that ignores SIGTERM after the grace", testing.run(
    function(clock, loop)
    testing.fake_program(loop, "worker", function(child)
      child:on_signal("TERM", function() end) -- ignored
      tapio.sleep(3600)
    end)
    local sup = supervisor.new("worker", nil, { grace = 2 })
    local run = tapio.create_task(sup.run, sup)
    tapio.sleep(1)
    assert.equal(-9, sup:stop())
    assert.equal(3, clock:time())
    assert.equal(-9, run:await())
  end, { autojump = true }))
end)

describe("the supervisor, with a real child", function()
  it("restarts sh -c 'exit 3' up to its limit", testing.run(function()
    local sup = supervisor.new("sh", { "-c", "exit 3" },
      { max_restarts = 2 })
    assert.same({ nil, "restart limit reached", 3 }, { sup:run() })
    assert.equal(3, #sup.starts)
  end, { real = true }))
end)
