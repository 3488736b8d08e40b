-- task:get_stack and task:print_stack (asyncio's): a waiting task's
-- frames where it waits, a failed task's where it raised, none
-- otherwise; each frame { source, line, name }, oldest first, tapio's
-- own and C's left out.
local helper = require "spec.helper"
local tapio = helper.tapio

local raised = helper.fails
local SOURCE = debug.getinfo(1, "S").source:sub(2)

local function line()
  return debug.getinfo(2, "l").currentline
end

-- A file for print_stack's file option: what was written.
local function sink()
  local parts = {}
  return { write = function(_, ...)
    for i = 1, select("#", ...) do
      parts[#parts + 1] = select(i, ...)
    end
  end, text = function() return table.concat(parts) end }
end

-- The frames as "name:line", to compare at a glance.
local function shown(frames)
  local list = {}
  for i, f in ipairs(frames) do
    assert.are.equal(SOURCE, f.source)
    list[i] = f.name .. ":" .. f.line
  end
  return list
end

local lines = {}

local function inner(gate)
  lines.inner = line() + 1
  local v = gate:wait()
  return v
end

local function outer(gate)
  lines.outer = line() + 1
  local v = inner(gate)
  return v
end

local function fails_deep()
  lines.deep = line() + 1
  error("deep boom")
end

local function fails(how)
  lines.fails = line() + 1
  fails_deep(how)
end

-- A task's own function: tapio called it, so it has no name of its own.
local function unnamed(fn)
  return ("function <%s:%d>"):format(SOURCE,
    debug.getinfo(fn, "S").linedefined)
end
local OUTER, FAILS = unnamed(outer), unnamed(fails)

describe("task:get_stack", function()
  it("a waiting task: its frames where it waits, oldest first; limit "
     .. "keeps the newest", function()
    helper.run(function()
      local gate = tapio.Event()
      local t = tapio.create_task(outer, gate)
      tapio.sleep(0)
      assert.are.same({ OUTER .. ":" .. lines.outer,
                        "inner:" .. lines.inner },
                      shown(t:get_stack()))
      assert.are.same({ "inner:" .. lines.inner },
                      shown(t:get_stack { limit = 1 }))
      assert.are.same({}, t:get_stack { limit = 0 })
      gate:set()
      t:await()
      assert.are.same({}, t:get_stack()) -- done: none
    end)
  end)

  it("a failed task: its frames where it raised; limit keeps the oldest",
     function()
    helper.run(function()
      local t = tapio.create_task(fails)
      tapio.sleep(0)
      assert.is_true(t:done())
      assert.are.same({ FAILS .. ":" .. lines.fails,
                        "fails_deep:" .. lines.deep },
                      shown(t:get_stack()))
      assert.are.same({ FAILS .. ":" .. lines.fails },
                      shown(t:get_stack { limit = 1 }))
      assert.matches("deep boom", tostring(t:exception()))
    end)
  end)

  it("none for a task not started, nor a cancelled one", function()
    helper.run(function(loop)
      local t = tapio.create_task(outer, tapio.Event())
      assert.are.same({}, t:get_stack())
      tapio.sleep(0)
      t:cancel()
      assert.is_false(pcall(t.await, t))
      assert.are.same({}, t:get_stack())
      local out = sink()
      t:print_stack { file = out }
      assert.are.equal("No stack for " .. tostring(t) .. "\n", out.text())
      assert.is_not_nil(loop)
    end)
  end)

  it("the running task's own: where it is", function()
    helper.run(function()
      local here = line() + 1
      local frames = tapio.current_task():get_stack()
      assert.are.equal(here, frames[#frames].line)
      assert.are.equal(SOURCE, frames[#frames].source)
    end)
  end)

  it("checks its options", function()
    helper.run(function()
      local t = tapio.current_task()
      assert.matches("task_stack_spec.lua:%d+: tapio: task:get_stack: bad "
        .. "argument #1 'options.limit' %(number expected, got string%)",
        raised(function() t:get_stack { limit = "2" } end))
      assert.matches("task_stack_spec.lua:%d+: tapio: task:print_stack: "
        .. "bad argument #1 'options' %(table expected, got number%)",
        raised(function() t:print_stack(1) end))
      assert.matches("task:print_stack: bad argument #1 'options.file' "
        .. "%(file expected, got number%)",
        raised(function() t:print_stack { file = 1 } end))
      -- a table or userdata with no write method: said before writing
      assert.matches("task_stack_spec.lua:%d+: tapio: task:print_stack: "
        .. "bad argument #1 'options.file' %(file expected, got table%)",
        raised(function() t:print_stack { file = {} } end))
      assert.matches("task:print_stack: bad argument #1 'options.file' "
        .. "%(file expected, got tapio.buffer%)",
        raised(function() t:print_stack { file = tapio.buffer(1) } end))
      assert.matches("tapio: task:get_stack: bad self",
        raised(t.get_stack, {}))
    end)
  end)
end)

describe("task:print_stack", function()
  it("writes the frames as asyncio does, each with its line of source",
     function()
    helper.run(function()
      local gate = tapio.Event()
      local t = tapio.create_task(outer, gate)
      tapio.sleep(0)
      local out = sink()
      t:print_stack { file = out }
      assert.are.equal(table.concat({
        "Stack for " .. tostring(t) .. " (most recent call last):",
        ('  File "%s", line %d, in %s'):format(SOURCE, lines.outer,
                                                OUTER),
        "    local v = inner(gate)",
        ('  File "%s", line %d, in inner'):format(SOURCE, lines.inner),
        "    local v = gate:wait()", "" }, "\n"), out.text())
      gate:set()
      t:await()
    end)
  end)

  it("a failed task's: Traceback, its frames, then its error", function()
    helper.run(function()
      local t = tapio.create_task(fails)
      tapio.sleep(0)
      local out = sink()
      t:print_stack { file = out, limit = 1 }
      assert.are.equal(table.concat({
        "Traceback for " .. tostring(t) .. " (most recent call last):",
        ('  File "%s", line %d, in %s'):format(SOURCE, lines.fails,
                                                FAILS),
        "    fails_deep(how)",
        tostring(t:exception()), "" }, "\n"), out.text())
    end)
  end)
end)
