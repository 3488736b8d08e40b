-- Fake programs of tapio.testing: on a virtual loop, the code under test
-- starts children with its usual calls (create_subprocess_exec and
-- _shell, loop:subprocess_exec) and gets the Process and transport of a
-- real child, while a Lua function plays the child on the virtual clock.
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"

local PIPES = { stdin = "pipe", stdout = "pipe", stderr = "pipe" }
local MIB = 1024 * 1024

-- A `sort`: its input's lines, sorted.
local function sort(child)
  local lines = {}
  while true do
    local line = child.stdin:readline()
    if line == "" then
      break
    end
    lines[#lines + 1] = line
  end
  table.sort(lines)
  child.stdout:write(table.concat(lines))
  return 0
end

-- A `cat` that writes what it reads, draining as it goes.
local function cat(child)
  while true do
    local chunk = child.stdin:read(262144)
    if chunk == "" then
      return 0
    end
    child.stdout:write(chunk)
    child.stdout:drain()
  end
end

local function pattern(n)
  local t = {}
  for i = 1, math.floor(n / 64) do
    t[i] = ("%063d\n"):format(i)
  end
  return table.concat(t)
end

describe("a fake program", function()
  it("is a filter fed and read with communicate", testing.run(
    function(_, loop)
      testing.fake_program(loop, "sort", sort)
      local p = tapio.create_subprocess_exec("sort", nil, PIPES)
      assert.is_true(p.pid > 4194304) -- never a real process's
      local out, err = p:communicate("pear\napple\nfig\n")
      assert.are.equal("apple\nfig\npear\n", out)
      assert.are.equal("", err)
      assert.are.equal(0, p.returncode)
      assert.are.equal(0, loop:time()) -- nothing waited
    end))

  it("moves 1 MiB each way through communicate, with flow control",
    testing.run(function(_, loop)
      -- Whether a writer was paused (held back) when drain was called.
      local held = {}
      local function watch(writer, key)
        local drain = writer.drain
        writer.drain = function(w)
          held[key] = held[key] or w._paused
          return drain(w)
        end
      end
      testing.fake_program(loop, "rev", function(child)
        local input = child.stdin:read() -- all of it, as sort does
        watch(child.stdout, "child")
        child.stdout:write(input:reverse())
        child.stdout:drain()
      end)
      local data = pattern(MIB)
      local p = tapio.create_subprocess_exec("rev", nil, PIPES)
      watch(p.stdin, "parent")
      local out = p:communicate(data)
      assert.are.equal(#data, #out)
      assert.is_true(out == data:reverse())
      assert.is_true(held.parent) -- the child reads 64 KiB at a time
      assert.is_true(held.child) -- the pipe holds 64 KiB of its output
      assert.are.equal(0, p.returncode)
    end))

  it("is killed by the parent's timeout at t=5, not at its 30 s",
    testing.run(function(clock, loop)
      local reached = false
      testing.fake_program(loop, "slow", function(child)
        child.stdout:write("working\n")
        tapio.sleep(30)
        reached = true
        return 0
      end)
      local p = tapio.create_subprocess_exec("slow", nil,
        { stdout = "pipe" })
      assert.are.equal("working\n", p.stdout:readline())
      local ok, err = pcall(tapio.wait_for, function()
        return p:wait()
      end, 5)
      assert.is_false(ok)
      assert.are.equal("ETIMEDOUT", err.name)
      p:kill()
      assert.are.equal(-9, p:wait())
      assert.are.equal(5, clock:time())
      assert.is_false(reached)
      assert.are.equal("", p.stdout:read()) -- end of file after the kill
    end, { autojump = true }))

  it("dies mid-output: the parent reads what it wrote, EOF, the status",
    testing.run(function(_, loop)
      testing.fake_program(loop, "crash", function(child)
        child.stdout:write("partial line")
        child.stdout:drain()
        child:exit(3)
        error("not reached")
      end)
      local p = tapio.create_subprocess_exec("crash", nil,
        { stdout = "pipe" })
      assert.are.equal("partial line", p.stdout:read())
      assert.are.equal(3, p:wait())
    end))

  it("floods stdout while the parent reads slowly: held back, nothing lost",
    testing.run(function(clock, loop)
      local written, waits = 0, 0
      testing.fake_program(loop, "yes", function(child)
        local chunk = ("y\n"):rep(8192)
        while written < MIB do
          child.stdout:write(chunk)
          written = written + #chunk
          if child.stdout._paused then
            waits = waits + 1
          end
          child.stdout:drain()
        end
      end)
      local p = tapio.create_subprocess_exec("yes", nil,
        { stdout = "pipe" })
      local got, ahead = 0, 0
      while true do
        local s = p.stdout:read(4096)
        if s == "" then
          break
        end
        assert.is_true(s:match("^[y\n]+$") ~= nil)
        got = got + #s
        tapio.sleep(0.001)
        ahead = math.max(ahead, written - got)
      end
      assert.are.equal(MIB, got)
      assert.is_true(waits > 0)
      -- never further ahead than what the pipes hold: the reader's
      -- buffer (twice its limit, then a read), the pipe's 64 KiB, the
      -- child's write buffer over its mark (64 KiB and a write)
      assert.is_true(ahead <= 2 * 65536 + 65536 + 65536 + 65536 + 16384)
      assert.are.equal(0, p:wait())
      assert.is_true(clock:time() > 0.2)
    end, { autojump = true }))

  it("catches SIGTERM, or dies of it", testing.run(function(_, loop)
    testing.fake_program(loop, "daemon", function(child)
      if child.args[1] == "--catch" then
        child:on_signal("SIGTERM", function()
          child.stdout:write("bye\n")
          child:exit(0)
        end)
      end
      child.stdout:write("ready\n")
      tapio.sleep(3600)
    end)
    local p = tapio.create_subprocess_exec("daemon", { "--catch" },
      { stdout = "pipe" })
    assert.are.equal("ready\n", p.stdout:readline())
    p:terminate()
    assert.are.equal("bye\n", p.stdout:readline())
    assert.are.equal(0, p:wait())
    p = tapio.create_subprocess_exec("daemon", nil, { stdout = "pipe" })
    assert.are.equal("ready\n", p.stdout:readline())
    p:terminate()
    assert.are.equal(-15, p:wait())
    assert.are.equal("", p.stdout:read())
  end))

  it("dies of SIGKILL, which it cannot catch", testing.run(function(_, loop)
    testing.fake_program(loop, "stubborn", function(child)
      assert.has_error(function()
        child:on_signal(tapio.signals.SIGKILL, function() end)
      end, "tapio: child:on_signal: SIGKILL cannot be caught")
      child:on_signal("INT", function() end) -- caught, runs on
      child.stdout:write("ready\n")
      tapio.sleep(3600)
    end)
    local p = tapio.create_subprocess_exec("stubborn", nil,
      { stdout = "pipe" })
    assert.are.equal("ready\n", p.stdout:readline())
    p:send_signal(tapio.signals.SIGINT)
    tapio.sleep(1)
    assert.is_nil(p.returncode)
    p:kill()
    assert.are.equal(-9, p:wait())
  end, { autojump = true }))

  it("killed, an error its function raises after is nobody's: neither " ..
     "reported nor left never retrieved", testing.run(function(clock, loop)
    testing.fake_program(loop, "sloppy", function()
      pcall(tapio.sleep, 3600) -- the kill cancels it here
      error("cleaning up")
    end)
    local p = tapio.create_subprocess_exec("sloppy")
    tapio.sleep(1)
    p:kill()
    assert.are.equal(-9, p:wait())
    tapio.sleep(0)
    p = nil
    helper.collect()
    tapio.sleep(0) -- a report would go to the handler: testing.run fails
    assert.are.same({}, clock.errors)
  end, { autojump = true }))

  it("is killed by close() of its transport", testing.run(function(_, loop)
    local events = {}
    testing.fake_program(loop, "sleep", function()
      tapio.sleep(3600)
    end)
    local rec = testing.recorder({
      pipe_data_received = function() end,
      pipe_connection_lost = function() end,
      process_exited = function() end })
    local t = loop:subprocess_exec(function() return rec end, "sleep",
      { "inf" })
    t:close()
    rec:wait("connection_lost")
    for _, e in ipairs(rec.events) do
      events[#events + 1] = e
    end
    assert.are.same({ "connection_made", "pipe_connection_lost:0:nil",
      "pipe_connection_lost:1:nil", "pipe_connection_lost:2:nil",
      "process_exited", "connection_lost:nil" }, events)
    assert.are.equal(-9, t:get_returncode())
  end))

  it("keeps the subprocess protocol's order", testing.run(function(_, loop)
    testing.fake_program(loop, "talk", function(child)
      child.stdout:write("out")
      child.stderr:write("err")
      return 7
    end)
    local rec = testing.recorder({
      pipe_data_received = function() end,
      pipe_connection_lost = function() end,
      process_exited = function() end })
    local t = loop:subprocess_exec(function() return rec end, "talk")
    assert.are.equal("tapio.subprocess_transport",
      getmetatable(t).__name)
    assert.are.equal("tapio.write_transport",
      getmetatable(t:get_pipe_transport(0)).__name)
    assert.are.equal("tapio.read_transport",
      getmetatable(t:get_pipe_transport(1)).__name)
    rec:wait("connection_lost")
    assert.are.same({ "connection_made", "pipe_data_received:1:out",
      "pipe_data_received:2:err", "process_exited",
      "pipe_connection_lost:0:EPIPE", "pipe_connection_lost:1:nil",
      "pipe_connection_lost:2:nil", "connection_lost:nil" }, rec.events)
    assert.are.equal(7, t:get_returncode())
  end))

  it("raising exits 1 with the message on stderr, and is reported",
    testing.run(function(clock, loop)
      testing.fake_program(loop, "buggy", function()
        error("boom")
      end)
      local p = tapio.create_subprocess_exec("buggy", nil, PIPES)
      local _, err = p:communicate()
      assert.are.equal(1, p.returncode)
      assert.is_truthy(err:find("boom", 1, true))
      assert.are.equal(1, #clock.errors)
      assert.are.equal("error in fake program 'buggy'",
        clock.errors[1].message)
    end, { errors_ok = true }))

  it("an error in a signal handler is the program's: exits 1 with the " ..
     "message on stderr, and is reported", testing.run(function(clock, loop)
    testing.fake_program(loop, "fragile", function(child)
      child:on_signal("SIGHUP", function()
        error("reload failed")
      end)
      child.stdout:write("ready\n")
      tapio.sleep(3600)
    end)
    local p = tapio.create_subprocess_exec("fragile", nil, PIPES)
    assert.are.equal("ready\n", p.stdout:readline())
    p:send_signal(tapio.signals.SIGHUP)
    local _, err = p:communicate()
    assert.are.equal(1, p.returncode)
    assert.is_truthy(err:find("reload failed", 1, true))
    assert.are.equal(1, #clock.errors)
    assert.are.equal("error in fake program 'fragile'",
      clock.errors[1].message)
  end, { errors_ok = true, autojump = true }))

  it("sees args, env, cwd and stdio as given", testing.run(function(_, loop)
    local seen
    testing.fake_program(loop, "tool", function(child)
      seen = child
      child.stderr:write("to stdout")
    end)
    local p = tapio.create_subprocess_exec("/usr/local/bin/tool",
      { "-v", "x" }, { stdin = "devnull", stdout = "pipe",
        stderr = tapio.STDOUT, cwd = "/srv", env = { LANG = "C" } })
    assert.are.equal("to stdout", p.stdout:read())
    assert.are.equal(0, p:wait())
    assert.are.equal("/usr/local/bin/tool", seen.program)
    assert.are.same({ "-v", "x" }, seen.args)
    assert.are.same({ LANG = "C" }, seen.env)
    assert.are.equal("/srv", seen.cwd)
    assert.are.equal("", seen.stdin:read()) -- devnull: at its end
  end))

  it("runs a shell command as 'sh' or as the command", testing.run(
    function(_, loop)
      testing.fake_program(loop, "sh", function(child)
        child.stdout:write(table.concat(child.args, " "))
      end)
      local p = tapio.create_subprocess_shell("ls | wc", { stdout = "pipe" })
      assert.are.equal("-c ls | wc", p.stdout:read())
      p:wait()
      testing.fake_program(loop, "make all", function(child)
        child.stdout:write(child.program)
      end)
      p = tapio.create_subprocess_shell("make all", { stdout = "pipe" })
      assert.are.equal("make all", p.stdout:read())
      p:wait()
    end))

  it("refuses a program nobody registered, saying how to register one",
    testing.run(function(_, loop)
      local ok, err = pcall(tapio.create_subprocess_exec, "frobnicate")
      assert.is_false(ok)
      assert.are.equal("tapio: create_subprocess_exec: no fake program "
        .. "'frobnicate' on this virtual loop, which starts no real child: "
        .. "register one with tapio_loop_add_fake_program (Lua: "
        .. "testing.fake_program)", err)
      testing.fake_program(loop, "gone", function() end)
      testing.fake_program(loop, "gone", nil)
      assert.has_error(function()
        tapio.create_subprocess_exec("gone")
      end)
      assert.has_error(function()
        testing.fake_program(tapio.new_loop(), "x", function() end)
      end, "tapio: testing.fake_program: the loop has no virtual clock "
        .. "(testing.new_loop makes one)")
    end))

  it("left running, fails testing.run", function()
    local body = testing.run(function(_, loop)
      testing.fake_program(loop, "daemon", function()
        tapio.sleep(3600)
      end)
      tapio.create_subprocess_exec("daemon")
    end)
    local ok, err = pcall(body)
    assert.is_false(ok)
    assert.matches("the test body left %d+ task%(s%) pending", tostring(err))
    body = testing.run(function(_, loop)
      testing.fake_program(loop, "daemon", function()
        tapio.sleep(3600)
      end)
      tapio.create_subprocess_exec("daemon")
    end, { tasks_ok = true })
    ok, err = pcall(body)
    assert.is_false(ok)
    assert.matches("the test body left %d+ transport%(s%) open",
      tostring(err))
  end)

  it("leaves nothing behind when the loop is closed with it running",
    function()
      local loop = testing.new_loop()
      local ended = false
      testing.fake_program(loop, "forever", function()
        local ok = pcall(tapio.sleep, 3600)
        ended = not ok
        error("cancelled", 0)
      end)
      loop:run_until_complete(loop:create_task(function()
        local p = tapio.create_subprocess_exec("forever", nil, PIPES)
        assert.is_number(p.pid)
      end))
      assert.is_true(testing.transport_count(loop) > 0)
      loop:close()
      assert.are.equal(0, testing.transport_count(loop))
    end)

  it("killed by the loop's close, is no task destroyed while pending (a "
     .. "real child is no task)", function()
    -- the program's function and a signal handler wait when the close
    -- kills the child: their tasks can never run again, and the close
    -- ended them; the default handler (the loop is closed) says nothing
    local out, status = helper.run_script([[
local tapio = require "tapio"
local testing = require "tapio.testing"
local loop = testing.new_loop()
testing.fake_program(loop, "forever", function(child)
  child:on_signal("USR1", function() tapio.sleep(3600) end)
  child.stdout:write("ready\n")
  tapio.sleep(3600)
end)
loop:run_until_complete(function()
  local p = tapio.create_subprocess_exec("forever", nil, { stdout = "pipe" })
  assert(p.stdout:readline() == "ready\n")
  p:send_signal("SIGUSR1")
  tapio.sleep(0)
end)
loop:close()
collectgarbage("collect")
collectgarbage("collect")
print("collected")
]])
    assert.are.equal(0, status)
    assert.are.equal("collected\n", out)
  end)
end)

-- A case of process_streams_spec.lua ("writes stdin through cat and reads
-- it back, line by line"), the very same code (helper.cat_lines), on the
-- virtual loop with a fake cat registered: the parent cannot tell.
describe("a real subprocess spec on a fake child", function()
  it("writes stdin through cat and reads it back, line by line",
    testing.run(function(_, loop)
      testing.fake_program(loop, "cat", cat)
      helper.cat_lines()
    end))
end)
