-- Running a loop: what stop() applies to, loops that do not nest, and a
-- loop that cannot be made because descriptors ran out.
local helper = require "spec.helper"
local tapio = helper.tapio

describe("running a loop", function()
  local loop
  before_each(function()
    loop = tapio.new_loop()
  end)
  after_each(function()
    loop:close()
  end)

  it("spends a stop made inside run_once with that run_once", function()
    loop:call_soon(loop.stop, loop)
    loop:run_once()
    local fut = loop:create_future()
    loop:call_later(0.02, function() fut:set_result("done") end)
    -- the stop does not cut this run short
    assert.are.equal("done", loop:run_until_complete(fut))
  end)

  it("applies a stop made before a run to that run, as asyncio", function()
    local calls = {}
    loop:call_soon(function()
      calls[#calls + 1] = "ready"
      loop:call_soon(function() calls[#calls + 1] = "next" end)
    end)
    loop:stop()
    loop:run_forever() -- one iteration without waiting
    assert.are.same({ "ready" }, calls)
    loop:run_once()
    assert.are.same({ "ready", "next" }, calls)
  end)

  it("refuses to run another loop inside a callback, saying so", function()
    local other = tapio.new_loop()
    local fut = other:create_future()
    other:call_soon(function() fut:set_result(true) end)
    local errors = {}
    loop:call_soon(function()
      for _, run in ipairs({
        function() other:run_until_complete(fut) end,
        function() other:run_forever() end,
        function() other:run_once() end,
      }) do
        other:call_soon(other.stop, other) -- were it allowed, this ends it
        local ok, err = pcall(run)
        errors[#errors + 1] = ok and "ran" or tostring(err)
      end
    end)
    loop:run_once()
    assert.are.equal(3, #errors)
    assert.matches("running_spec%.lua:%d+: tapio: loop:run_until_complete: ",
      errors[1])
    for _, err in ipairs(errors) do
      assert.matches("another loop is running on this thread %(loops do "
        .. "not nest%)", err)
    end
    assert.is_false(fut:done()) -- nothing of the other loop ran
    assert.is_true(other:run_until_complete(fut))
    other:run_once() -- the stops queued above, spent
    other:close()
  end)

  it("still says so when the loop itself is already running", function()
    local err, err2, ran
    loop:call_soon(function()
      err = select(2, pcall(loop.run_once, loop))
      err2 = select(2, pcall(loop.run_until_complete, loop, function()
        ran = true
      end))
    end)
    loop:run_once()
    assert.matches("tapio: loop:run_once: the loop is already running", err)
    -- named for the call made, and the function never became a task
    assert.matches("tapio: loop:run_until_complete: the loop is already "
      .. "running", err2)
    loop:run_once()
    assert.is_nil(ran)
    assert.are.equal(0, #tapio.all_tasks(loop))
  end)
end)

describe("tapio.new_loop", function()
  it("raises EMFILE when descriptors run out, and the script goes on",
     function()
    local interp = jit and "luajit" or "lua5.4"
    local script = [[
      local tapio = require "tapio"
      local files = {}
      repeat
        local f = io.open("/dev/null")
        files[#files + 1] = f
      until not f
      for free = 0, 2 do
        local ok, err = pcall(tapio.new_loop)
        if ok then
          err:close()
          print(free, "made")
        else
          print(free, err.name, tostring(err))
        end
        table.remove(files):close()
      end
    ]]
    local out, status = helper.execute(("ulimit -n 40; timeout 20 %s -e %s")
      :format(interp, helper.shell_quote(script)))
    assert.are.equal(0, status, out)
    assert.are.equal(table.concat({
      "0\tEMFILE\ttapio: new_loop: too many open files (EMFILE)",
      "1\tEMFILE\ttapio: new_loop: too many open files (EMFILE)",
      "2\tmade", "" }, "\n"), out)
  end)
end)
