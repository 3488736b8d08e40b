-- Context variables (tapio.ContextVar, tapio.copy_context, a task's
-- context): asyncio's contextvars semantics. The scenarios of
-- spec/support/context_parity.py run here on tapio, and what each saw
-- must be what asyncio saw (python3.13, else its recording); the behaviours
-- asyncio documents are asserted one by one after.
local helper = require "spec.helper"
local seqs = require "spec.support.sequences"
local tapio = require "tapio"

local var = tapio.ContextVar("request")
local other = tapio.ContextVar("other", "dflt")

local function get()
  return var:get("unset")
end

local function is_lookup_error(err)
  return type(err) == "table" and err.name == "LookupError"
end

-- ---- The parity scenarios (same names, same lines as the .py) ------------

local out = {}
local function say(...)
  local words = {}
  for i = 1, select("#", ...) do
    words[i] = tostring((select(i, ...)))
  end
  out[#out + 1] = table.concat(words, " ")
end

local function inherit()
  var:set("a")
  local t = tapio.create_task(function()
    say("inherit child sees", get())
    tapio.sleep(0)
    say("inherit child later sees", get())
    var:set("c")
    say("inherit child set", get())
  end)
  var:set("b")
  t:await()
  say("inherit creator sees", get())
end

local function callbacks()
  local loop = tapio.get_running_loop()
  local done = loop:create_future()
  var:set("x")
  loop:call_soon(function() say("call_soon sees", get()) end)
  loop:call_later(0, function() say("call_later sees", get()) end)
  loop:call_at(loop:time(), function() say("call_at sees", get()) end)
  local fut = loop:create_future()
  fut:add_done_callback(function() say("done callback sees", get()) end)
  loop:call_soon(function()
    var:set("in callback")
    say("callback set", get())
  end)
  var:set("y")
  fut:set_result(1)
  loop:call_later(0.01, function() done:set_result() end)
  done:await()
  say("callbacks task sees", get())
end

local function fails(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  return tostring(err)
end

local function tokens()
  local t = var:set("t1")
  var:reset(t)
  say("reset gives", get())
  if fails(var.reset, var, t):match("has already been used once") then
    say("reset twice: RuntimeError")
  end
  local t2 = other:set("o")
  if fails(var.reset, var, t2):match("made by another ContextVar") then
    say("reset other var: ValueError")
  end
  local ctx = tapio.copy_context()
  local t3 = var:set("t3")
  if fails(ctx.run, ctx, var.reset, var, t3)
       :match("made in another context") then
    say("reset other context: ValueError")
  end
  var:reset(t3)
  t2.var:reset(t2)
  if fails(var.reset, var, t2):match("has already been used once") then
    say("used and other var: RuntimeError")
  end
  say("old_value", t3.old_value == tapio.Token.MISSING and "True" or "False")
  say("default", other:get(), other:get("given"))
  local nothing = tapio.ContextVar("nothing")
  local ok, err = pcall(nothing.get, nothing)
  if not ok and is_lookup_error(err) then
    say("unset get: LookupError")
  end
end

local function contexts()
  var:set("outer")
  local ctx = tapio.copy_context()
  local ctx2 = tapio.copy_context()
  ctx:run(function()
    var:set("inner1")
    ctx2:run(function()
      var:set("inner2")
      say("nested run sees", get())
    end)
    say("back in ctx sees", get())
    if fails(ctx.run, ctx, function() end):match("already entered") then
      say("entered twice: RuntimeError")
    end
  end)
  say("after run sees", get(), ctx:get(var), ctx2:get(var))
end

local function group()
  var:set("g")
  local seen = {}
  tapio.TaskGroup(function(tg)
    for i = 0, 1 do
      tg:create_task(function()
        tapio.sleep(0)
        seen[#seen + 1] = get()
        var:set(i)
      end)
    end
  end)
  say("group children see", table.concat(seen, " "))
  say("group parent sees", get())
end

local function given_context()
  local ctx = tapio.copy_context()
  tapio.create_task_in(ctx, function()
    var:set("from task")
  end):await()
  say("task context", ctx:get(var), get())
end

local function py(b) -- a boolean as Python prints it
  return b and "True" or "False"
end

local function given_callbacks()
  local loop = tapio.get_running_loop()
  var:set("current")
  local ctx = tapio.copy_context()
  ctx:run(var.set, var, "in ctx")
  local h1 = loop:call_soon_in(ctx, function()
    say("call_soon context= sees", get())
  end)
  local h2 = loop:call_later_in(ctx, 0, function()
    say("call_later context= sees", get())
  end)
  local h3 = loop:call_at_in(ctx, loop:time(), function()
    say("call_at context= sees", get())
  end)
  say("handles give it", py(h1:get_context() == ctx),
      py(h2:get_context() == ctx), py(h3:get_context() == ctx))
  local h4 = loop:call_soon(function() end)
  var:set("after")
  say("plain handle's context", h4:get_context():get(var),
      py(h4:get_context() == h4:get_context()),
      py(h4:get_context() == tapio.current_task():get_context()))
  tapio.sleep(0.01)
  local done = loop:create_future()
  loop:call_soon_in(ctx, var.set, var, "set in ctx")
  loop:call_soon(done.set_result, done)
  done:await()
  say("after the callbacks", ctx:get(var), get())
  local t
  tapio.TaskGroup(function(tg)
    t = tg:create_task_in(ctx, function()
      say("group task in ctx sees", get())
      var:set("group task")
    end)
  end)
  say("group task's context is it", py(t:get_context() == ctx),
      ctx:get(var))
end

local function streams()
  var:set("at start_server")
  local server = tapio.start_server(function(reader, writer)
    say("server handler sees", get())
    var:set("handler")
    writer:write(reader:readline())
    writer:close()
  end, "127.0.0.1", 0)
  var:set("after start_server")
  local reader, writer = tapio.open_connection("127.0.0.1",
                                               helper.port(server))
  writer:write("hi\n")
  reader:readline()
  writer:close()
  server:close()
  say("streams main sees", get())
end

local function protocols()
  local loop = tapio.get_running_loop()
  var:set("server start")
  local servers = {}

  local function server_protocol()
    local p = { name = "server " .. (#servers + 1),
                lost = loop:create_future() }
    servers[#servers + 1] = p
    say(p.name, "factory sees", get())
    var:set(p.name .. " factory")
    function p:connection_made(transport)
      self.transport = transport
      say(self.name, "made sees", get())
      var:set(self.name .. " made")
    end
    function p:data_received(data)
      say(self.name, "data sees", get())
      var:set(self.name .. " " .. data)
      self.transport:write(data)
    end
    function p:eof_received()
      say(self.name, "eof sees", get())
    end
    function p:connection_lost()
      say(self.name, "lost sees", get())
      self.lost:set_result(nil)
    end
    return p
  end

  local function client_protocol(name)
    say(name, "factory sees", get())
    var:set(name .. " factory")
    local p = { name = name }
    function p:connection_made()
      say(self.name, "made sees", get())
      var:set(self.name .. " made")
    end
    function p:data_received(data)
      say(self.name, "data sees", get())
      self.echo:set_result(data)
    end
    return p
  end

  local server = loop:create_server(server_protocol, "127.0.0.1", 0)
  var:set("after create_server")
  local port = helper.port(server)
  local t1, c1 = loop:create_connection(function()
    return client_protocol("client 1")
  end, "127.0.0.1", port)
  say("create_connection's caller sees", get())
  var:set("main")
  local t2, c2 = loop:create_connection(function()
    return client_protocol("client 2")
  end, "127.0.0.1", port)
  local steps = { { t1, c1, "a" }, { t2, c2, "b" }, { t1, c1, "c" } }
  for _, step in ipairs(steps) do
    step[2].echo = loop:create_future()
    step[1]:write(step[3])
    step[2].echo:await()
  end
  t1:write_eof()
  t2:write_eof()
  for _, s in ipairs(servers) do
    s.lost:await()
  end
  t1:close()
  t2:close()
  server:close()
  say("protocols main sees", get())
end

local function sorted(lines)
  table.sort(lines)
  return lines
end

describe("context variables", function()
  it("see what asyncio's contextvars see, scenario by scenario", function()
    local text = seqs.asyncio_output("context_parity.py",
                                     "context_parity.out")
    local expected = {}
    for line in text:gmatch("[^\n]+") do
      expected[#expected + 1] = line
    end
    helper.run(function()
      inherit()
      callbacks()
      tokens()
      contexts()
      group()
      given_context()
      given_callbacks()
      streams()
      protocols()
    end)
    -- the order of callbacks of one turn is not the point here
    assert.are.same(sorted(expected), sorted(out))
  end)

  it("a task inherits its creator's context at creation only", function()
    helper.run(function()
      var:set("before")
      local t = tapio.create_task(function()
        tapio.sleep(0)
        return get()
      end)
      var:set("after")
      assert.are.equal("before", t:await())
      assert.are.equal("after", get())
    end)
  end)

  it("a task's sets are not seen by its creator, nor by its siblings",
     function()
    helper.run(function()
      var:set("creator")
      local a = tapio.create_task(function()
        var:set("a")
        tapio.sleep(0)
        return get()
      end)
      local b = tapio.create_task(function()
        tapio.sleep(0)
        return get()
      end)
      assert.are.equal("a", a:await())
      assert.are.equal("creator", b:await())
      assert.are.equal("creator", get())
      assert.are.equal("a", a:get_context():get(var))
    end)
  end)

  it("a callback runs in a copy of the context of its scheduling",
     function()
    helper.run(function(loop)
      var:set("scheduled")
      local f = loop:create_future()
      loop:call_soon(function()
        local was = get()
        var:set("set in the callback")
        f:set_result(was)
      end)
      var:set("later")
      assert.are.equal("scheduled", f:await())
      assert.are.equal("later", get())
    end)
  end)

  it("a done callback runs in the context of its add_done_callback",
     function()
    helper.run(function(loop)
      local fut, seen = loop:create_future(), loop:create_future()
      var:set("added")
      fut:add_done_callback(function() seen:set_result(get()) end)
      var:set("completed")
      fut:set_result()
      assert.are.equal("added", seen:await())
    end)
  end)

  it("a task resumed from a protocol callback runs in its own context",
     function()
    helper.run(function(loop)
      var:set("reader")
      local got = loop:create_future()
      local server = tapio.start_server(function(reader, writer)
        var:set("server connection")
        local line = reader:readline()
        got:set_result(line, get())
        writer:close()
      end, "127.0.0.1", 0)
      local reader, writer = tapio.open_connection("127.0.0.1",
                                                   helper.port(server))
      writer:write("hi\n")
      local line, seen = got:await()
      assert.are.equal("hi\n", line)
      assert.are.equal("server connection", seen)
      assert.are.equal("", reader:read())
      assert.are.equal("reader", get())
      writer:close()
      server:close()
    end)
  end)

  it("start_server's tasks run in a copy of its caller's context",
     function()
    helper.run(function()
      var:set("at start_server")
      local seen = {}
      local server = tapio.start_server(function(reader, writer)
        seen[#seen + 1] = get()
        var:set("connection " .. #seen)
        writer:write(reader:readline())
        writer:close()
      end, "127.0.0.1", 0)
      var:set("later")
      for _ = 1, 2 do
        local reader, writer = tapio.open_connection("127.0.0.1",
                                                     helper.port(server))
        writer:write("hi\n")
        assert.are.equal("hi\n", reader:readline())
        writer:close()
      end
      server:close()
      assert.are.same({ "at start_server", "at start_server" }, seen)
      assert.are.equal("later", get())
    end)
  end)

  it("reset checks its token as Python does", function()
    helper.run(function()
      local t = var:set(1)
      assert.are.equal(var, t.var)
      assert.are.equal(tapio.Token.MISSING, t.old_value)
      var:reset(t)
      assert.are.equal("unset", get())
      assert.matches("contextvar:reset: the token has already been used once",
                     fails(var.reset, var, t))
      assert.matches("contextvar:reset: the token was made by another "
        .. "ContextVar", fails(var.reset, var, other:set(2)))
      local t3 = var:set(3)
      assert.matches("the token was made in another context",
        fails(tapio.copy_context().run, tapio.copy_context(), var.reset,
              var, t3))
      assert.matches("bad argument #1 'token' %(tapio.Token expected, got "
        .. "nil%)", fails(var.reset, var))
      var:reset(t3)
      assert.are.equal("unset", get())
    end)
  end)

  it("a var set to nil has a value: nil", function()
    helper.run(function()
      local v = tapio.ContextVar("maybe", "dflt")
      v:set(nil)
      assert.is_nil(v:get())
      assert.is_nil(v:get("given"))
      assert.is_true(tapio.copy_context():has(v))
      local unset = tapio.ContextVar("unset")
      local ok, err = pcall(unset.get, unset)
      assert.is_false(ok)
      assert.is_true(is_lookup_error(err))
    end)
  end)

  it("a context runs one fn at a time, also a task's own", function()
    helper.run(function()
      local ctx = tapio.current_task():get_context()
      assert.matches("cannot enter the context: it is already entered",
                     fails(ctx.run, ctx, function() end))
      local copy = tapio.copy_context()
      assert.are.equal("ran", copy:run(function() return "ran" end))
      assert.matches("context:run: bad argument #1 'fn'",
                     fails(copy.run, copy, 42))
    end)
  end)

  it("a task waiting inside ctx:run is resumed in ctx", function()
    helper.run(function()
      var:set("task")
      local ctx = tapio.copy_context()
      ctx:run(function()
        var:set("ctx")
        tapio.sleep(0)
        assert.are.equal("ctx", get())
      end)
      assert.are.equal("task", get())
      assert.are.equal("ctx", ctx:get(var))
    end)
  end)

  it("ctx:run gives its context back when fn raises", function()
    helper.run(function()
      var:set("task")
      local ctx = tapio.copy_context()
      local ok, err = pcall(ctx.run, ctx, function()
        var:set("ctx")
        error("boom")
      end)
      assert.is_false(ok)
      assert.matches("boom", err)
      assert.are.equal("task", get())
      assert.are.equal("ran", ctx:run(function() return "ran" end))
    end)
  end)

  it("a callback's error reaches the handler as raised, its context left",
     function()
    helper.run(function(loop, errors)
      var:set("task")
      local function deep()
        var:set("callback")
        error("boom")
      end
      local ran = loop:create_future()
      loop:call_soon(function() deep() end)
      loop:call_soon(function() ran:set_result(get()) end)
      assert.are.equal("task", ran:await())
      assert.are.equal(1, #errors)
      assert.matches("context_spec.lua:%d+: boom",
                     tostring(errors[1].exception))
      if not jit then -- LuaJIT: a pcall in between, the traceback is cut
        assert.matches("in %a+ 'deep'", errors[1].traceback)
      end
      assert.are.equal("task", get())
    end, { errors_ok = true })
  end)

  it("a TaskGroup's children inherit its task's context", function()
    helper.run(function()
      var:set("parent")
      local results = {}
      tapio.TaskGroup(function(tg)
        for i = 1, 3 do
          tg:create_task(function()
            results[i] = get()
            var:set(i)
          end)
        end
      end)
      assert.are.same({ "parent", "parent", "parent" }, results)
      assert.are.equal("parent", get())
    end)
  end)

  it("to_thread carries nothing to the worker's Lua state", function()
    helper.run(function()
      var:set("task")
      local loaded = tapio.to_thread(function()
        return package.loaded["tapio.context"] ~= nil
      end)
      assert.is_false(loaded)
      assert.are.equal("task", get())
    end)
  end)

  it("create_task_in runs the task in that context itself", function()
    helper.run(function(loop)
      local ctx = tapio.copy_context()
      local t = loop:create_task_in(ctx, function() var:set("in ctx") end)
      assert.are.equal(ctx, t:get_context())
      t:await()
      assert.are.equal("in ctx", ctx:get(var))
      assert.are.equal("unset", get())
      assert.matches("bad argument #1 'ctx' %(tapio.Context expected",
                     fails(loop.create_task_in, loop, {}, print))
    end)
  end)

  it("call_soon_in and the like check their arguments", function()
    helper.run(function(loop)
      local ctx = tapio.copy_context()
      assert.matches("context_spec.lua:%d+: tapio: loop:call_soon_in: bad "
        .. "argument #1 'ctx' %(tapio.Context expected, got table%)",
        fails(function() loop:call_soon_in({}, print) end))
      assert.matches("context_spec.lua:%d+: tapio: loop:call_later_in: bad "
        .. "argument #2 'delay' %(number expected, got string%)",
        fails(function() loop:call_later_in(ctx, "1", print) end))
      assert.matches("tapio: loop:call_at_in: bad argument #3 'callback' "
        .. "%(function expected, got nil%)",
        fails(loop.call_at_in, loop, ctx, 1))
      assert.matches("context_spec.lua:%d+: tapio: taskgroup:create_task_in: "
        .. "bad argument #1 'ctx' %(tapio.Context expected, got nil%)",
        fails(tapio.TaskGroup, function(tg) tg:create_task_in(nil, print) end))
      assert.matches("tapio: loop:call_soon_in: bad self %(tapio.loop "
        .. "expected, got table%)", fails(loop.call_soon_in, {}, ctx, print))
      local closed = tapio.new_loop()
      closed:close()
      assert.matches("context_spec.lua:%d+: tapio: loop:call_later_in: the "
        .. "loop is closed",
        fails(function() closed:call_later_in(ctx, 1, print) end))
      assert.matches("handle:get_context: bad self %(tapio.handle expected, "
        .. "got table%)", fails(loop:call_soon(print).get_context, {}))
    end)
  end)

  it("a callback given a context that is entered fails, reported; the "
     .. "others run", function()
    helper.run(function(loop, errors)
      local ctx = tapio.copy_context()
      local ran = loop:create_future()
      ctx:run(function()
        loop:call_soon_in(ctx, function() var:set("never") end)
        loop:call_soon(function() ran:set_result(get()) end)
        tapio.sleep(0) -- the task waits inside ctx:run: ctx is entered
      end)
      assert.are.equal("unset", ran:await())
      assert.are.equal(1, #errors)
      assert.matches("tapio: loop:call_soon_in: cannot enter the context "
        .. "given to the callback: it is already entered",
        tostring(errors[1].exception))
      assert.are.equal("unset", ctx:get(var, "unset"))
    end, { errors_ok = true })
  end)

  it("iterates a context's vars", function()
    local ctx = tapio.copy_context()
    ctx:run(function()
      var:set("v")
      other:set("o")
    end)
    local seen = {}
    for v, value in ctx:items() do
      seen[v.name] = value
    end
    assert.are.same({ request = "v", other = "o" }, seen)
  end)
end)

describe("context variables in a fresh Lua state", function()
  it("call_soon_in and a handle's context, before any ContextVar",
     function()
    local text, status = helper.run_script([[
      local tapio = require "tapio"
      local loop = tapio.new_loop()
      local ctx = tapio.copy_context()
      local seen
      local h = loop:call_soon_in(ctx, function()
        seen = true
      end)
      local plain = loop:call_soon(function() loop:stop() end)
      loop:run_forever()
      local pc = plain:get_context()
      print(h:get_context() == ctx, seen, pc == plain:get_context(),
            tostring(pc), tapio.ContextVar ~= nil)
      loop:close()
    ]])
    assert.are.equal(0, status, text)
    assert.are.equal("true\ttrue\ttrue\ttapio.Context (0 set)\ttrue\n",
                     text)
  end)

  it("the first ContextVar, made in a task, switches that task's context",
     function()
    local text, status = helper.run_script([[
      local tapio = require "tapio"
      tapio.run(function()
        local early = tapio.create_task(function()
          tapio.sleep(0)
          tapio.sleep(0)
          return tapio.copy_context():has(next(_G.vars))
        end)
        local v = tapio.ContextVar("late")
        _G.vars = { [v] = true }
        v:set("main")
        tapio.sleep(0)
        print(v:get(), early:await(), tapio.copy_context():get(v))
      end)
      local v = next(_G.vars)
      print(v:get("outside unset"))
    ]])
    assert.are.equal(0, status, text)
    assert.are.equal("main\tfalse\tmain\noutside unset\n", text)
  end)
end)

-- A protocol's callbacks run in its transport's context, as asyncio's
-- (the parity scenario above compares them): each connection its own.
describe("a protocol's callbacks", function()
  -- A server whose connections each set the var in data_received, say
  -- what they saw (seen[i]) and echo; n: connections to make.
  local function echo_server(loop, seen)
    return loop:create_server(function()
      local p = {}
      function p:connection_made(transport)
        self.transport = transport
      end
      function p:data_received(data)
        seen[#seen + 1] = data .. " sees " .. get()
        var:set(data)
        self.transport:write(data)
      end
      return p
    end, "127.0.0.1", 0)
  end

  local function client(loop, port)
    local p = {}
    function p:data_received(data)
      self.echo:set_result(data)
    end
    local t = loop:create_connection(function() return p end, "127.0.0.1",
                                     port)
    return function(data)
      p.echo = loop:create_future()
      t:write(data)
      return p.echo:await()
    end, t
  end

  it("see their server's start context; a connection's sets are its own",
     function()
    helper.run(function(loop)
      local seen = {}
      var:set("at create_server")
      local server = echo_server(loop, seen)
      var:set("main")
      local send1, t1 = client(loop, helper.port(server))
      local send2, t2 = client(loop, helper.port(server))
      send1("one")
      send2("two")
      send1("three")
      send2("four")
      t1:close()
      t2:close()
      server:close()
      assert.are.same({ "one sees at create_server",
        "two sees at create_server", "three sees one", "four sees two" },
        seen)
      assert.are.equal("main", get())
    end)
  end)

  it("see the context start_serving was called in, when it was",
     function()
    helper.run(function(loop)
      local got = loop:create_future()
      var:set("at create_server")
      local server = loop:create_server(function()
        return { data_received = function()
          got:set_result(get())
        end }
      end, "127.0.0.1", 0, { start_serving = false })
      var:set("at start_serving")
      server:start_serving()
      var:set("again")
      server:start_serving() -- serving already: nothing changes
      var:set("main")
      local _, t = client(loop, helper.port(server))
      t:write("x")
      assert.are.equal("at start_serving", got:await())
      t:close()
      server:close()
    end)
  end)

  it("connection_made runs in a copy: what it sets is its own", function()
    helper.run(function(loop)
      var:set("made with")
      local got = loop:create_future()
      local server = loop:create_server(function()
        return {
          connection_made = function()
            var:set("in connection_made")
          end,
          data_received = function()
            got:set_result(get())
          end,
        }
      end, "127.0.0.1", 0)
      local _, t = client(loop, helper.port(server))
      t:write("x")
      assert.are.equal("made with", got:await())
      t:close()
      server:close()
    end)
  end)

  it("an error in a callback leaves its context: the next callback of "
     .. "another transport sees its own", function()
    local before = get() -- where the loop runs: the error leaves it as it was
    helper.run(function(loop, errors)
      var:set("server")
      local seen = {}
      local server = loop:create_server(function()
        return {
          connection_made = function(self, transport)
            self.transport = transport
          end,
          data_received = function(self, data)
            seen[#seen + 1] = data .. " sees " .. get()
            var:set(data)
            if data == "fail" then
              error("boom")
            end
            self.transport:write(data)
          end,
        }
      end, "127.0.0.1", 0)
      var:set("main")
      local lost = loop:create_future()
      local failing = loop:create_connection(function()
        return { connection_lost = function() lost:set_result(true) end }
      end, "127.0.0.1", helper.port(server))
      local send, t = client(loop, helper.port(server))
      failing:write("fail")
      lost:await()
      assert.are.equal("main", get())
      send("other")
      t:close()
      server:close()
      assert.are.same({ "fail sees server", "other sees server" }, seen)
      assert.are.equal(1, #errors)
      assert.are.equal("main", get())
    end, { errors_ok = true })
    assert.are.equal(before, get())
  end)

  it("datagram_received runs in its endpoint's context", function()
    helper.run(function(loop)
      var:set("at the endpoint")
      local seen, got = {}, nil
      local t = loop:create_datagram_endpoint(function()
        return {
          datagram_received = function(_, data)
            seen[#seen + 1] = data .. " sees " .. get()
            var:set(data)
            got:set_result(true)
          end,
        }
      end, { local_addr = { "127.0.0.1", 0 } })
      var:set("main")
      local addr = t:get_extra_info("sockname")
      for _, data in ipairs({ "one", "two" }) do
        got = loop:create_future()
        t:sendto(data, addr)
        got:await()
      end
      t:close()
      assert.are.same({ "one sees at the endpoint", "two sees one" }, seen)
      assert.are.equal("main", get())
    end)
  end)

  it("a subprocess's callbacks run in the context of its caller",
     function()
    helper.run(function(loop)
      var:set("at subprocess_exec")
      local seen = {}
      local lost = loop:create_future()
      loop:subprocess_exec(function()
        return {
          pipe_data_received = function(_, _, data)
            seen.data = get()
            var:set(data)
          end,
          process_exited = function()
            seen.exited = get() -- before or after the data
          end,
          connection_lost = function()
            lost:set_result(get())
          end,
        }
      end, "printf", { "out" })
      var:set("main")
      assert.are.equal("out", lost:await())
      assert.are.equal("at subprocess_exec", seen.data)
      assert.truthy(seen.exited == "at subprocess_exec"
        or seen.exited == "out", seen.exited)
      assert.are.equal("main", get())
    end)
  end)

  it("of a transport made before the first ContextVar run where the "
     .. "loop runs", function()
    local text, status = helper.run_script([[
      local tapio = require "tapio"
      tapio.run(function()
        local loop = tapio.get_running_loop()
        local got = loop:create_future()
        local server = loop:create_server(function()
          return { data_received = function()
            got:set_result(_G.v:get("unset"))
            _G.v:set("set by data_received")
          end }
        end, "127.0.0.1", 0)
        _G.v = tapio.ContextVar("v")
        local t = loop:create_connection(function() return {} end,
          "127.0.0.1", server:addresses()[1][2])
        t:write("x")
        print(got:await())
        t:close()
        server:close()
      end)
      print(_G.v:get("unset"))
    ]])
    assert.are.equal(0, status, text)
    -- (the server's end may still be open as tapio.run ends: it says so)
    assert.truthy(text:match("^unset\n"), text)
    assert.truthy(text:match("\nset by data_received\n$"), text)
  end)
end)
