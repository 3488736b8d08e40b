-- The `tapio` host program: arguments, exit statuses, error messages with
-- tracebacks, and the default exception handler's output.
local helper = require "spec.helper"

local HOST = helper.HOST
local q = helper.shell_quote
local tapio = helper.tapio
local run_script = helper.run_script

describe("the tapio host program", function()
  it("runs a script with arg set as the standalone lua sets it", function()
    local out, status = run_script([[
      local a, b = ...
      print(arg[0]:match("lua_") and "script" or arg[0], arg[1], arg[2],
            a, b, select("#", ...), arg[-1] ~= nil)
      local tapio = require "tapio"
      print(type(tapio.run), tapio.version)
    ]], "one two")
    assert.are.equal(0, status)
    assert.matches("script\tone\ttwo\tone\ttwo\t2\ttrue\n", out)
    assert.matches("function\t%d+%.%d+%.%d+", out)
  end)

  it("says why standard input from a file is no read pipe", function()
    local input = os.tmpname()
    local out, status = run_script([[
      local tapio = require "tapio"
      tapio.run(function()
        local loop = tapio.get_running_loop()
        local ok, err = pcall(loop.connect_read_pipe, loop, function()
          return {}
        end, 0)
        print(ok, err.name, err.message)
      end)
    ]], "< " .. q(input))
    os.remove(input)
    assert.are.equal(0, status)
    assert.are.equal("false\tEINVAL\tloop:connect_read_pipe: descriptor 0 "
      .. "is not a pipe, a socket or a character device (a regular file is "
      .. "always ready: asyncio refuses it too)\n", out)
  end)

  it("prints an error with its traceback and exits 1", function()
    local out, status = run_script([[
      local function inner() error("boom") end
      inner()
    ]])
    assert.are.equal(1, status)
    assert.matches("tapio: SCRIPT:1: boom\nstack traceback:\n", out)
    assert.matches("in local 'inner'", out)
  end)

  it("prints error objects with __tostring, and others by type", function()
    local out, status = run_script([[
      error(setmetatable({}, { __tostring = function() return "custom" end }))
    ]])
    assert.are.equal(1, status)
    assert.matches("tapio: custom\nstack traceback", out)
    out, status = run_script("error({})")
    assert.are.equal(1, status)
    assert.matches("%(error object is a table value%)", out)
  end)

  it("prints the task's traceback for an error out of tapio.run", function()
    local out, status = run_script([[
      local tapio = require "tapio"
      local function deep() error("in the task") end
      tapio.run(function()
        tapio.sleep(0)
        deep()
      end)
    ]])
    assert.are.equal(1, status)
    assert.matches("tapio: SCRIPT:2: in the task\nstack traceback:\n", out)
    assert.matches("in upvalue 'deep'", out)
    assert.matches("%(raised again by tapio.run%)\nstack traceback:", out)
    -- Lua 5.4 names the function after the first module that holds it
    -- (package.loaded's order, which changes from run to run): tapio.run
    -- is also tapio.task.run
    assert.is_truthy(out:find("in function 'tapio.run'", 1, true) or
      out:find("in function 'tapio.task.run'", 1, true))
  end)

  it("collects in generational mode, as the standalone lua5.4 does", function()
    -- collectgarbage(mode) returns the mode it replaces
    local out, status = run_script([[print(collectgarbage("incremental"))]])
    assert.are.equal(0, status)
    assert.are.equal("generational\n", out)
  end)

  it("keeps strings and tables whole through its allocator's size classes",
     function()
    -- medium blocks (1 KiB to 512 KiB) are rounded to size classes and
    -- reused; strings across them, and a table's array grown and shrunk
    -- through them, must keep every byte
    local out, status = run_script([[
      local t = {}
      for n = 1000, 140000, 997 do
        t[#t + 1] = string.rep(string.char(n % 251), n)
      end
      local big = {}
      for i = 1, 100000 do big[i] = i end
      for i = 100000, 1, -1 do big[i] = nil end
      for i = 1, 3000 do
        local n = 1025 + (i * 131) % 600000
        local s = string.rep("a", n - 1) .. "b"
        assert(#s == n and s:byte(n) == 98)
      end
      collectgarbage()
      for i, s in ipairs(t) do
        local n = 1000 + (i - 1) * 997
        assert(#s == n and s:byte(1) == n % 251 and s:byte(n) == n % 251)
        assert(s == string.rep(string.char(n % 251), n))
      end
      print("ok")
    ]])
    assert.are.equal(0, status)
    assert.are.equal("ok\n", out)
  end)

  it("shows warnings once they are on, as lua5.4 does", function()
    local out, status = run_script([[
      warn("hidden")
      warn("@on")
      warn("one ", "two")
      warn("@off")
      warn("hidden")
    ]])
    assert.are.equal(0, status)
    assert.are.equal("Lua warning: one two\n", out)
  end)

  it("exits with os.exit's status", function()
    local _, status = run_script("os.exit(3)")
    assert.are.equal(3, status)
  end)

  it("reports syntax errors and missing scripts", function()
    local out, status = run_script("this is not lua")
    assert.are.equal(1, status)
    assert.matches("tapio: SCRIPT:1: syntax error", out)
    out, status = helper.execute(q(HOST) .. " /nonexistent/script.lua")
    assert.are.equal(1, status)
    assert.matches("cannot open /nonexistent/script.lua", out)
  end)

  it("runs -e chunks and standard input, prints versions and usage",
    function()
    local out, status = helper.execute(q(HOST)
      .. [[ -e 'print(select("#", ...), arg[1], require("tapio").version)' x]])
    assert.are.equal(0, status)
    assert.matches("^1\tx\t%d", out)
    out, status = helper.execute("echo 'print(\"from stdin\", ...)' | "
      .. q(HOST) .. " - y")
    assert.are.equal(0, status)
    assert.are.equal("from stdin\ty\n", out)
    out, status = helper.execute(q(HOST) .. " -v")
    assert.are.equal(0, status)
    assert.matches("^tapio %d+%.%d+%.%d+, Lua 5%.4", out)
    out, status = helper.execute(q(HOST))
    assert.are.equal(2, status)
    assert.matches("usage:", out)
    out, status = helper.execute(q(HOST) .. " -e") -- no chunk: a usage error
    assert.are.equal(2, status)
    assert.matches("usage:", out)
  end)

  it("prints callback errors through the default handler and goes on",
    function()
    local out, status = run_script([[
      local tapio = require "tapio"
      tapio.run(function()
        local loop = tapio.get_running_loop()
        loop:call_soon(function() error("in a callback") end)
        tapio.sleep(0)
        print("still running")
      end)
    ]])
    assert.are.equal(0, status)
    assert.matches("tapio: error in a scheduled callback\n"
      .. "SCRIPT:4: in a callback\nstack traceback:\n", out)
    assert.matches("still running\n", out)
  end)

  it("prints a protocol error with its transport", function()
    local out, status = run_script([[
      local tapio = require "tapio"
      tapio.run(function()
        local loop = tapio.get_running_loop()
        local lost = loop:create_future()
        local server = loop:create_server(function()
          return { data_received = function() error("bad data") end }
        end, "127.0.0.1", 0)
        local t = loop:create_connection(function()
          return { connection_lost = function() lost:set_result() end }
        end, "127.0.0.1", server:addresses()[1][2])
        t:write("x")
        lost:await()
        print("client saw the abort")
      end)
    ]])
    assert.are.equal(0, status)
    assert.matches("tapio: error in protocol.data_received%(%)\n"
      .. "SCRIPT:6: bad data\nstack traceback:", out)
    assert.matches("  transport: tapio.transport %(", out)
    assert.matches("client saw the abort", out)
  end)

  it("survives an exception handler that fails", function()
    local out, status = run_script([[
      local tapio = require "tapio"
      tapio.run(function()
        local loop = tapio.get_running_loop()
        loop:set_exception_handler(function() error("handler broke") end)
        loop:call_soon(function() error("first") end)
        tapio.sleep(0)
        print("after")
      end)
    ]])
    assert.are.equal(0, status)
    assert.matches("the exception handler failed: SCRIPT:4: handler broke",
      out)
    assert.matches("SCRIPT:5: first", out)
    assert.matches("after\n", out)
  end)

  it("cleans up a loop left open when the script ends", function()
    local out, status = run_script([[
      local tapio = require "tapio"
      local loop = tapio.new_loop()
      loop:run_until_complete(loop:create_server(function() return {} end,
        "127.0.0.1", 0))
      loop:call_later(10, print)
      print("leaving")
    ]])
    assert.are.equal(0, status)
    assert.are.equal("leaving\n", out)
  end)

  -- Ctrl-C, as a terminal sends it: SIGINT to a host started by tapio's
  -- subprocess_exec (which gives the child SIGINT's default disposition,
  -- as a shell's foreground job has it).
  local function interrupt(script, after_first)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local code, out, err = helper.run(function(loop)
      local said, proto = {}, nil
      local function check()
        for text, fut in pairs(said) do
          if proto:output(1):find(text, 1, true) and not fut:done() then
            fut:set_result()
          end
        end
      end
      -- a future done once the host printed text
      local function waiter(text)
        said[text] = said[text] or loop:create_future()
        check()
        return said[text]
      end
      loop:subprocess_exec(function()
        proto = helper.sub_recorder(loop)
        local record = proto.pipe_data_received
        function proto:pipe_data_received(fd, data)
          record(self, fd, data)
          check()
        end
        return proto
      end, HOST, { path }, { stdin = tapio.DEVNULL })
      waiter("serving"):await()
      assert(proto.transport:send_signal("INT"))
      if after_first then
        waiter(after_first):await()
        assert(proto.transport:send_signal("INT"))
      end
      proto.lost:await()
      return proto.exited:result(), proto:output(1), proto:output(2)
    end)
    os.remove(path)
    return code, out, err:gsub(path:gsub("%p", "%%%0"), "SCRIPT")
  end

  local SERVE = [[
    local tapio = require "tapio"
    tapio.run(function()
      local loop = tapio.get_running_loop()
      local server = loop:create_server(function() return {} end,
        "127.0.0.1", 0)
      print("serving", tapio.handle_sigint)
      local ok, err = pcall(server.serve_forever, server)
      print("cleanup ran", ok, tostring(err), server:is_serving())
      %s
      error(err, 0)
    end)
  ]]

  it("turns Ctrl-C into cancelling the main task: cleanup, traceback, 130",
    function()
    local code, out, err = interrupt(SERVE:format(""))
    assert.are.equal(130, code)
    assert.are.equal("serving\ttrue\ncleanup ran\tfalse\t"
      .. "interrupted (SIGINT) (ECANCELED)\tfalse\n", out)
    assert.matches("^[^\n]*tapio: interrupted %(SIGINT%)\n"
      .. "stack traceback:\n", err)
    assert.matches("SCRIPT:7: in ", err) -- where main waited
    assert.matches("%(raised again by tapio.run%)", err)
  end)

  it("turns Ctrl-C into cancelling a Runner's run, as tapio.run's main",
    function()
    local code, out = interrupt([[
      local tapio = require "tapio"
      local runner = tapio.Runner()
      print("first run", runner:run(function() return "ok" end))
      local ok, err = pcall(runner.run, runner, function()
        local loop = tapio.get_running_loop()
        local server = loop:create_server(function() return {} end,
          "127.0.0.1", 0)
        print("serving")
        local ok, err = pcall(server.serve_forever, server)
        print("cleanup ran", ok, tostring(err))
        error(err, 0)
      end)
      runner:close()
      print("closed", tostring(runner))
      error(err, 0)
    ]])
    assert.are.equal(130, code)
    assert.are.equal("first run\tok\nserving\ncleanup ran\tfalse\t"
      .. "interrupted (SIGINT) (ECANCELED)\nclosed\ttapio.Runner (closed)\n",
      out)
  end)

  it("ends at once at a second Ctrl-C", function()
    local code, out = interrupt(SERVE:format([[
      print("cleaning up slowly")
      tapio.sleep(60)]]), "cleaning up slowly")
    assert.are.equal(-2, code) -- SIGINT's default action: killed by it
    assert.matches("cleaning up slowly\n$", out)
  end)

  it("leaves SIGINT alone when it was ignored at start", function()
    local out, status = helper.execute("trap '' INT; " .. q(HOST)
      .. [[ -e 'print(require("tapio").handle_sigint)']])
    assert.are.equal(0, status)
    assert.are.equal("false\n", out)
  end)
end)

