-- tapio.Runner against asyncio.Runner: spec/support/runner_parity.py runs
-- each scenario on asyncio and prints its events in order; the same
-- scenarios run here must print the same (the recording stands in where
-- no Python 3.12 or later is found: seqs.asyncio_output). Then what
-- tapio adds: argument checks, the errors' lines, the first ContextVar
-- made in a run, tapio.run on a Runner.
local helper = require "spec.helper"
local tapio = helper.tapio
local seqs = require "spec.support.sequences"

local raised = helper.fails
local var = tapio.ContextVar("request")

local EVENTS, log = seqs.event_log()

local function get()
  return var:get("unset")
end

local function never()
  tapio.get_running_loop():create_future():await()
end

-- The scenarios, as runner_parity.py writes them.
local S = {}

function S.runs()
  local r = tapio.Runner()
  local loop = r:get_loop()
  local gate = tapio.Event()
  local left = r:run(function()
    log("first run, same loop:", tapio.get_running_loop() == loop)
    return tapio.create_task(function()
      gate:wait()
      log("left task resumed")
      return "left"
    end)
  end)
  log("between runs, left done:", left:done())
  log("second run got", r:run(function()
    gate:set()
    return left:await()
  end))
  log("loop open:", not r:get_loop():is_closed())
  r:close()
  log("loop closed:", loop:is_closed())
end

function S.contexts()
  var:set("top")
  local r = tapio.Runner()
  local function sets(value)
    log("run sees", get())
    var:set(value)
  end
  r:run(sets, "run 1")
  r:run(sets, "run 2")
  local ctx = tapio.copy_context()
  r:run_in(ctx, sets, "in ctx")
  log("ctx has", ctx:get(var))
  r:run(sets, "run 3")
  log("top sees", get())
  r:close()
  var:set("unset")
end

function S.closing()
  local r = tapio.Runner()
  r:run(function(loop)
    loop:set_exception_handler(function() end) -- runner:close() says what
    -- it ended: asyncio does not
    tapio.create_task(function()
      local ok, err = pcall(never)
      if not ok and tapio.is_cancelled(err) then
        log("left task cancelled")
      end
      error(err, 0)
    end)
    tapio.sleep(0)
  end, r:get_loop())
  local loop = r:get_loop()
  r:close()
  log("closed, loop closed:", loop:is_closed())
  if not pcall(r.get_loop, r) then
    log("get_loop after close: RuntimeError")
  end
  if not pcall(r.run, r, print) then
    log("run after close: RuntimeError")
  end
  r:close()
  log("closed twice")
end

function S.unused_close()
  local r = tapio.Runner()
  r:close()
  log("run after an early close:", r:run(function() return 42 end))
  r:close()
end

function S.nested()
  local r, other = tapio.Runner(), tapio.Runner()
  log(r:run(function()
    for _, each in ipairs { { r, "its own" }, { other, "another" } } do
      if not pcall(each[1].run, each[1], function() return 1 end) then
        log("run inside a run,", each[2] .. ": RuntimeError")
      end
    end
    return "outer done"
  end))
  other:close()
  r:close()
end

function S.options()
  for _, debug in ipairs { true, false } do
    local r = tapio.Runner { debug = debug }
    log("debug", debug, "loop debug:", (r:get_loop():get_debug()))
    r:close()
  end
  local made = {}
  local r = tapio.Runner { loop_factory = function()
    made[#made + 1] = tapio.new_loop()
    return made[#made]
  end }
  local function running()
    return tapio.get_running_loop()
  end
  local first, second = r:run(running), r:run(running)
  log("factory calls:", #made, "its loop:", first == made[1],
      second == made[1], r:get_loop() == made[1])
  r:close()
end

function S.errors()
  local r = tapio.Runner()
  local ok, err = pcall(r.run, r, function() error("boom", 0) end)
  if not ok then
    log("run raised", err)
  end
  log(r:run(function()
    tapio.get_running_loop():set_exception_handler(function(_, context)
      if context.exception then
        log("handler got", tostring(context.exception))
      end
    end)
    tapio.create_task(function()
      pcall(never)
      error("cleanup failed", 0)
    end)
    tapio.sleep(0)
    return "next run ok"
  end))
  r:close()
  log("closed")
end

local ORDER = { "runs", "contexts", "closing", "unused_close", "nested",
                "options", "errors" }

describe("tapio.Runner against asyncio.Runner", function()
  local expected = {}
  local out = seqs.asyncio_output("runner_parity.py", "runner_parity.out")
  for name, event in out:gmatch("([^|\n]+)|([^\n]*)\n") do
    expected[name] = expected[name] or {}
    table.insert(expected[name], event)
  end

  it("asyncio ran every scenario, and no other", function()
    local names = {}
    for _, name in ipairs(ORDER) do
      names[name] = true
      assert(expected[name], "asyncio printed nothing for " .. name)
    end
    for name in pairs(expected) do
      assert(names[name], "no such scenario here: " .. name)
    end
  end)

  for _, name in ipairs(ORDER) do
    it(name, function()
      for i = #EVENTS, 1, -1 do
        EVENTS[i] = nil
      end
      S[name]()
      assert.are.same(expected[name], EVENTS)
    end)
  end
end)

describe("tapio.Runner", function()
  it("checks its options and arguments at the caller's line", function()
    assert.matches("runner_spec.lua:%d+: tapio: Runner: bad argument #1 "
      .. "'options' %(table expected, got number%)",
      raised(function() tapio.Runner(1) end))
    assert.matches("runner_spec.lua:%d+: tapio: Runner: bad argument #1 "
      .. "'options.debug' %(boolean expected, got string%)",
      raised(function() tapio.Runner { debug = "yes" } end))
    assert.matches("runner_spec.lua:%d+: tapio: Runner: bad argument #1 "
      .. "'options.loop_factory' %(function expected, got number%)",
      raised(function() tapio.Runner { loop_factory = 1 } end))
    assert.matches("runner_spec.lua:%d+: tapio: Runner: unknown option "
      .. "'debgu'", raised(function() tapio.Runner { debgu = true } end))
    local r = tapio.Runner { loop_factory = function() return {} end }
    assert.matches("runner_spec.lua:%d+: tapio: runner:get_loop: the "
      .. "loop_factory returned table %(a tapio.loop expected%)",
      raised(function() r:get_loop() end))
    r = tapio.Runner { loop_factory = function() end }
    assert.matches("tapio: runner:run: the loop_factory returned nil",
      raised(r.run, r, print)) -- not a loop of its own instead
    r = tapio.Runner()
    assert.matches("runner_spec.lua:%d+: tapio: runner:run: bad argument "
      .. "#1 'fn' %(function expected, got nil%)",
      raised(function() r:run() end))
    assert.matches("runner_spec.lua:%d+: tapio: runner:run_in: bad "
      .. "argument #1 'ctx' %(tapio.Context expected, got string%)",
      raised(function() r:run_in("ctx", print) end))
    assert.matches("tapio: runner:run: bad self", raised(r.run, {}, print))
    r:close()
  end)

  it("raises the misuses asyncio raises, at the caller's line", function()
    local r = tapio.Runner()
    local err = r:run(function()
      return raised(function() r:run(print) end)
    end)
    assert.matches("runner_spec.lua:%d+: tapio: runner:run: cannot be "
      .. "called from a running event loop", err)
    err = r:run(function()
      return raised(function() r:close() end)
    end)
    assert.matches("runner_spec.lua:%d+: tapio: runner:close: cannot be "
      .. "called from a running event loop", err)
    r:close()
    assert.matches("runner_spec.lua:%d+: tapio: runner:run: the Runner "
      .. "is closed", raised(function() r:run(print) end))
    assert.matches("runner_spec.lua:%d+: tapio: runner:get_loop: the "
      .. "Runner is closed", raised(function() r:get_loop() end))
    assert.are.equal("tapio.Runner (closed)", tostring(r))
  end)

  it("is closed at the end of a <close> variable's block (Lua 5.4)",
     function()
    if _VERSION ~= "Lua 5.4" then
      return -- no to-be-closed variables
    end
    local block = assert(load([[
      local tapio = ...
      local loop
      do
        local runner <close> = tapio.Runner()
        loop = runner:get_loop()
        runner:run(function()
          tapio.get_running_loop():set_exception_handler(function() end)
          tapio.create_task(tapio.sleep, 60) -- (close says it ended it)
        end)
      end
      return loop
    ]]))
    local loop = block(tapio)
    assert.is_true(loop:is_closed())
  end)

  it("closes what the runs left open, and says so, as tapio.run",
     function()
    local r = tapio.Runner()
    local reports = {}
    local server = r:run(function(loop)
      loop:set_exception_handler(function(_, context)
        reports[#reports + 1] = context.message
      end)
      return tapio.start_server(function() end, "127.0.0.1", 0)
    end, r:get_loop())
    assert.is_true(server:is_serving())
    r:close()
    assert.is_false(server:is_serving())
    assert.are.same({ "runner:close() ended what the runs left running: "
      .. "closed 1 server" }, reports)
  end)
end)

describe("tapio.Runner in a fresh Lua state", function()
  it("the first ContextVar, made in a run, is in the next run's context",
     function()
    local out, status = helper.run_script([[
      local tapio = require "tapio"
      local runner = tapio.Runner()
      local v
      runner:run(function()
        v = tapio.ContextVar("late")
        v:set("run 1")
      end)
      print(runner:run(function() return v:get("unset") end),
            v:get("unset"))
      runner:close()
    ]])
    assert.are.equal(0, status, out)
    assert.are.equal("run 1\tunset\n", out)
  end)
end)
