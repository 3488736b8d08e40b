-- Calling back into tapio from inside its callbacks: closing the loop, the
-- transport and the server from inside every protocol callback, with the
-- call that triggers the callback made inside the running loop and outside
-- it (a host stepping the loop, the main chunk); and which Lua thread the
-- callbacks run on (never a task's).
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"

local run, pair = helper.run, helper.pair

local CHUNK = ("w"):rep(256 * 1024)

-- Runs the loop, as a host does, until cond() or the loop is closed.
local function settle(loop, cond)
  if loop:is_closed() then
    return
  end
  local timed_out = false
  local h = loop:call_later(helper.DEADLINE, function() timed_out = true end)
  while not loop:is_closed() and not cond() and not timed_out do
    loop:run_once(true)
  end
  h:cancel()
  assert(not timed_out, "deadline passed while waiting")
end

-- A protocol recording its callbacks; the first call of `target` runs
-- action(ctx, self) after recording itself.
local function protocol(ctx, target, action, buffered)
  local p = { events = {}, lost = 0 }
  local function on(name, f)
    p[name] = function(self, ...)
      self.events[#self.events + 1] = name
      local r = f and f(self, ...)
      if name == target and not ctx.acted then
        ctx.acted = true
        ctx.was_running = ctx.loop:is_running()
        action(ctx, self)
      end
      return r
    end
  end
  on("connection_made", function(self, t) self.transport = t end)
  on("eof_received")
  on("pause_writing", function(self) self.paused = true end)
  on("resume_writing", function(self) self.paused = false end)
  on("connection_lost", function(self, err)
    self.lost = self.lost + 1
    self.lost_with = err
  end)
  if buffered then
    local buf = tapio.buffer(64)
    on("get_buffer", function() return buf end)
    on("buffer_updated")
  else
    on("data_received")
  end
  return p
end

local actions = {
  ["loop:close"] = function(ctx)
    local ok, err = pcall(ctx.loop.close, ctx.loop)
    ctx.closed = ok or err
  end,
  ["transport:close"] = function(_, p) p.transport:close() end,
  ["transport:abort"] = function(_, p) p.transport:abort() end,
  ["server:close"] = function(ctx) ctx.server:close() end,
}

-- Writes on st until paused() (the client reads nothing meanwhile), with
-- `how`: write, writelines, or set_write_buffer_limits lowering the high
-- mark under what is buffered. The call that crosses the mark calls
-- pause_writing at once.
local function fill_until(st, paused, how)
  if how == "set_write_buffer_limits" then
    st:set_write_buffer_limits(2 ^ 40)
    while st:get_write_buffer_size() == 0 do
      st:write(CHUNK)
    end
    st:set_write_buffer_limits(1, 0)
    return
  end
  st:set_write_buffer_limits(1, 0)
  for _ = 1, 1024 do
    if paused() then
      return
    end
    if how == "write" then
      st:write(CHUNK)
    else
      st:writelines({ CHUNK, "and", CHUNK })
    end
  end
  error("pause_writing was never called")
end

-- The server side fills its buffer.
local function fill(how)
  return function(ctx)
    fill_until(ctx.sp.transport, function() return ctx.sp.paused ~= nil end,
      how)
  end
end

-- Each target callback of the server's protocol, and the call that makes
-- it happen (the peer's, or the server side's own).
local cases = {
  { "the server's factory", function(ctx) ctx.connect() end,
    factory = true },
  { "the client's factory", function(ctx) ctx.connect() end,
    factory = true },
  { "connection_made", function(ctx) ctx.connect() end },
  { "data_received", function(ctx) ctx.t:write("x") end },
  { "get_buffer", function(ctx) ctx.t:write("x") end, buffered = true },
  { "buffer_updated", function(ctx) ctx.t:write("x") end, buffered = true },
  { "eof_received", function(ctx) ctx.t:write_eof() end },
  { "pause_writing", fill("write"), via = "write" },
  { "pause_writing", fill("writelines"), via = "writelines" },
  { "pause_writing", fill("set_write_buffer_limits"),
    via = "set_write_buffer_limits" },
  { "resume_writing", function(ctx) ctx.t:resume_reading() end,
    paused = true },
  { "connection_lost", function(ctx) ctx.t:close() end, via = "peer close" },
  { "connection_lost", function(ctx) ctx.sp.transport:abort() end,
    via = "abort" },
  { "connection_lost", function(ctx) ctx.loop:close() end,
    via = "loop:close", outside_only = true },
}

local function setup(case, action)
  local loop = tapio.new_loop()
  local ctx = { loop = loop, errors = {} }
  loop:set_exception_handler(function(_, c)
    ctx.errors[#ctx.errors + 1] = c
  end)
  ctx.sp = protocol(ctx, case[1], actions[action], case.buffered)
  ctx.p = protocol(ctx, nil)
  -- a factory returns the protocol, after the action when it is the target
  local function factory(name, p)
    return function()
      if case[1] == name and not ctx.acted then
        ctx.acted = true
        ctx.was_running = loop:is_running()
        actions[action](ctx)
      end
      return p
    end
  end
  ctx.server = loop:run_until_complete(loop:create_server(
    factory("the server's factory", ctx.sp), "127.0.0.1", 0))
  function ctx.connect()
    loop:create_connection(factory("the client's factory", ctx.p),
      "127.0.0.1", helper.port(ctx.server))
  end
  if case[1] ~= "connection_made" and not case.factory then
    ctx.connect()
    settle(loop, function() return ctx.sp.transport and ctx.p.transport end)
    ctx.t = ctx.p.transport
  end
  if case.paused then
    ctx.t:pause_reading()
    fill("write")(ctx)
    settle(loop, function() return ctx.sp.paused end)
  end
  return ctx
end

-- Ends what is still open and checks that each side made was lost once.
-- (A server closed before it accepted a connection never makes its side:
-- the kernel resets what waited in the backlog.)
local function finish(ctx)
  local loop = ctx.loop
  settle(loop, function() return ctx.acted end)
  assert.is_true(ctx.acted)
  if not loop:is_closed() then
    if ctx.p.transport then
      ctx.p.transport:resume_reading()
      ctx.p.transport:abort()
    end
    ctx.server:close()
    settle(loop, function()
      return ctx.p.lost > 0 and (ctx.sp.lost > 0 or not ctx.sp.transport)
    end)
    loop:close()
  end
  assert.are.equal(1, ctx.p.lost)
  assert.are.equal(ctx.sp.transport and 1 or 0, ctx.sp.lost)
  assert.are.equal(ctx.sp.transport and "connection_lost",
    ctx.sp.events[#ctx.sp.events])
  assert.are.same({}, ctx.errors)
  assert.are.equal(0, loop:_debug().refs)
end

describe("closing from inside a callback", function()
  for _, case in ipairs(cases) do
    for _, action in ipairs({ "loop:close", "transport:close",
                              "transport:abort", "server:close" }) do
      for _, outside in ipairs({ false, true }) do
        local name = ("%s in %s%s, triggered %s the running loop")
          :format(action, case[1], case.via and " (" .. case.via .. ")" or "",
                  outside and "outside" or "inside")
        -- a factory has no transport yet to close
        if (outside or not case.outside_only)
          and not (case.factory and action:match("^transport")) then
          it(name, function()
            local ctx = setup(case, action)
            if outside then
              case[2](ctx) -- from the main chunk, the loop not running
            else
              ctx.loop:call_soon(case[2], ctx)
            end
            finish(ctx)
            if action == "loop:close" then
              if ctx.was_running then
                assert.are.equal(
                  "tapio: loop:close: cannot close a running loop", ctx.closed)
              else
                assert.is_true(ctx.closed)
                assert.are.equal(tapio.ECANCELED, ctx.sp.lost_with.code)
              end
            end
            if outside and case[1] == "pause_writing" then
              assert.is_false(ctx.was_running) -- the case this is about
            end
          end)
        end
      end
    end
  end
end)

-- A task writes until pause_writing runs, with `how`: the callback must
-- not run on the task's coroutine, so the async rule gives it futures.
local function pause_from_task(how)
  return function()
    run(function(loop)
      local server, t, p, sp = pair(loop)
      local seen = {}
      p.pause_writing = function()
        seen.called = true
        seen.task = tapio.current_task()
        seen.co = coroutine.running()
        seen.sleep = tapio.sleep(0, "slept")
        seen.connect = loop:create_connection(function() return {} end,
          "127.0.0.1", helper.port(server))
      end
      sp.transport:pause_reading()
      fill_until(t, function() return seen.called end, how)
      assert.is_true(seen.called)
      assert.is_nil(seen.task)
      assert.are_not.equal(coroutine.running(), seen.co)
      assert.is_true(tapio.is_future(seen.sleep))
      assert.are.equal("slept", seen.sleep:await())
      seen.connect:await():close()
      t:abort()
      p.lost:await()
      server:close()
    end)
  end
end

describe("a protocol callback", function()
  it("runs outside any task when a task's write calls pause_writing",
    pause_from_task("write"))
  it("runs outside any task when a task's writelines calls pause_writing",
    pause_from_task("writelines"))
  it("runs outside any task when a task's set_write_buffer_limits calls "
    .. "pause_writing", pause_from_task("set_write_buffer_limits"))

  it("that ends the writing side leaves a task's writelines raising into "
    .. "the task's pcall, which goes on", testing.run(function(clock)
    -- pause_writing ran on the loop's thread: see pcall_compiled
    local events = {}
    local p = {}
    function p:connection_made(t)
      self.t = t
    end
    function p:pause_writing()
      events[#events + 1] = "pause_writing"
      self.t:write_eof()
    end
    local ta, tb = testing.pipe_pair(p, {}, { capacity = 10 })
    clock:run_until_idle()
    ta:set_write_buffer_limits(100)
    local list = {}
    for i = 1, 200 do -- 64 to a writev: pause_writing in the first
      list[i] = ("x"):rep(10)
    end
    local ok, err = helper.pcall_compiled(ta.writelines, ta, list)
    assert.is_false(ok)
    assert.equal("tapio: transport:writelines: cannot write after "
      .. "write_eof()", err)
    assert.same({ "pause_writing" }, events)
    ta:abort()
    tb:abort()
  end))
end)
