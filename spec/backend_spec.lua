-- The pollable loop from Lua: loop:backend_fd() and loop:backend_timeout(),
-- as a host that owns its main loop uses them (capi/tapio.h has the
-- details; spec/c/test_backend.c the three traps with a real poll()).
local helper = require "spec.helper"
local tapio = helper.tapio

describe("a pollable loop", function()
  local loop
  before_each(function()
    loop = tapio.new_loop()
  end)
  after_each(function()
    loop:close()
  end)

  it("has one descriptor for its life", function()
    local fd = loop:backend_fd()
    assert.is_true(math.type == nil or math.type(fd) == "integer")
    assert.is_true(fd >= 0)
    assert.are.equal(fd, loop:backend_fd())
  end)

  it("says how long a host may sleep", function()
    assert.are.equal(-1, loop:backend_timeout()) -- nothing scheduled
    local h = loop:call_later(0.5, function() end)
    local ms = loop:backend_timeout()
    assert.is_true(ms > 0 and ms <= 500, tostring(ms))
    local ran = false
    loop:call_soon(function() ran = true end)
    assert.are.equal(0, loop:backend_timeout()) -- work is ready
    loop:run_once()
    assert.is_true(ran)
    assert.is_true(loop:backend_timeout() > 0)
    h:cancel()
    assert.are.equal(-1, loop:backend_timeout())
  end)

  it("answers 0 while a callback waits to run, from inside a task too",
     function()
    helper.run(function(lp)
      local server = lp:create_server(function()
        return {}
      end, "127.0.0.1", 0)
      local t = lp:create_connection(function()
        return {}
      end, "127.0.0.1", server:addresses()[1].port)
      t:close() -- connection_lost is queued: work is ready
      assert.are.equal(0, lp:backend_timeout())
      server:close()
    end)
  end)

  it("raises once closed, naming the method", function()
    local other = tapio.new_loop()
    other:close()
    assert.has_error(function() other:backend_fd() end,
                     "tapio: loop:backend_fd: the loop is closed")
    assert.has_error(function() other:backend_timeout() end,
                     "tapio: loop:backend_timeout: the loop is closed")
  end)
end)
