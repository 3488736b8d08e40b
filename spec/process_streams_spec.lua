-- create_subprocess_exec and create_subprocess_shell with real children:
-- the Process's streams, wait, communicate (64 MiB both ways), signals,
-- the readers' limits over pipes, and the errors.
local helper = require "spec.helper"
local tapio = helper.tapio

local run, fails, gone, started = helper.run, helper.fails, helper.gone,
  helper.started

local PIPES = { stdin = "pipe", stdout = "pipe", stderr = "pipe" }

describe("a subprocess with streams", function()
  it("reads a line from stdout and waits for the exit", function()
    run(function()
      local p = tapio.create_subprocess_exec("sh",
        { "-c", "echo one; echo two; exit 3" }, { stdout = "pipe" })
      assert.are.equal("tapio.Process", getmetatable(p).__name)
      assert.is_number(p.pid)
      assert.is_nil(p.stdin) -- the parent's, as asyncio's default
      assert.is_nil(p.stderr)
      assert.are.equal("tapio.StreamReader", getmetatable(p.stdout).__name)
      assert.are.equal("one\n", p.stdout:readline())
      assert.are.equal("two\n", p.stdout:readline())
      assert.are.equal("", p.stdout:readline())
      assert.are.equal(3, p:wait())
      assert.are.equal(3, p.returncode)
      assert.are.equal(("tapio.Process (pid %d, returncode 3)")
        :format(p.pid), tostring(p))
      assert.is_true(gone(p.pid))
    end)
  end)

  it("writes stdin through cat and reads it back, line by line", function()
    run(helper.cat_lines) -- testing_subprocess_spec.lua runs it on a fake
  end)

  it("runs a shell command", function()
    run(function()
      local p = tapio.create_subprocess_shell("echo $((6 * 7)) >&2",
        { stderr = tapio.PIPE })
      assert.are.equal("42\n", p.stderr:read())
      assert.are.equal(0, p:wait())
    end)
  end)

  it("communicates 64 MiB in and out at once, without deadlock", function()
    run(function()
      local input = ("0123456789abcdef"):rep(4 * 1024 * 1024)
      local p = tapio.create_subprocess_exec("sh",
        { "-c", "cat; echo done >&2" }, PIPES)
      local out, err = p:communicate(input)
      assert.are.equal(#input, #out)
      assert.is_true(out == input)
      assert.are.equal("done\n", err)
      assert.are.equal(0, p.returncode)
    end, { deadline = 60 })
  end)

  it("communicates the pipe-buffer edges through a child that copies a "
     .. "byte at a time (uvloop 5, uvloop#363)", function()
    run(function()
      for _, n in ipairs({ 65536, 65537 }) do
        local input = ("0123456789abcdef"):rep(math.floor(n / 16) + 1):sub(1, n)
        local p = tapio.create_subprocess_exec("dd",
          { "bs=1", "status=none" }, PIPES)
        local out, err = p:communicate(input)
        assert.are.equal(n, #out)
        assert.is_true(out == input)
        assert.are.equal("", err)
        assert.are.equal(0, p.returncode)
      end
    end)
  end)

  it("drains stdin writes at the pipe-buffer edges, then waits, the child "
     .. "reading up to a last line (uvloop 5)", function()
    run(function()
      for _, n in ipairs({ 8192, 8193, 219263, 219264 }) do
        local p = tapio.create_subprocess_shell(
          "sed -n '/^END$/q;p' | wc -l", { stdin = "pipe", stdout = "pipe" })
        p.stdin:write(("\n"):rep(n - 4) .. "END\n") -- n bytes
        tapio.wait_for(function() p.stdin:drain() end, 5)
        assert.are.equal(0, tapio.wait_for(function() return p:wait() end, 5))
        assert.are.equal(tostring(n - 4), p.stdout:read():match("%d+"))
      end
    end)
  end)

  it("communicates with no input, '' and devnull (P6)", function()
    run(function()
      local p = tapio.create_subprocess_exec("sh", { "-c", "wc -c" }, PIPES)
      local out, err = p:communicate("")
      assert.are.equal("0", out:match("%d+"))
      assert.are.equal("", err)
      p = tapio.create_subprocess_exec("sh", { "-c", "wc -c" },
        { stdin = "devnull", stdout = "pipe" })
      assert.is_nil(p.stdin)
      out, err = p:communicate()
      assert.are.equal("0", out:match("%d+"))
      assert.is_nil(err)
      p = tapio.create_subprocess_exec("true", nil, { stdin = "pipe",
        stdout = "devnull", stderr = "devnull" })
      assert.is_nil(p.stdout)
      assert.is_nil(p.stderr)
      out, err = p:communicate("ignored")
      assert.is_nil(out)
      assert.is_nil(err)
      assert.are.equal(0, p.returncode)
    end)
  end)

  it("raises EPIPE from drain when the child exits without reading (P2)",
     function()
    run(function()
      local p = tapio.create_subprocess_exec("true", nil,
        { stdin = "pipe" })
      assert.are.equal(0, p:wait())
      local err = helper.write_until_error(p.stdin, ("x"):rep(65536), 100)
      assert.are.equal("EPIPE", err and err.name)
      assert.are.equal(err, fails(p.stdin.wait_closed, p.stdin))
    end)
  end)

  it("ignores the broken pipe in communicate (P3)", function()
    run(function()
      -- it reads a little, then exits while the rest is being written
      local p = tapio.create_subprocess_exec("sh",
        { "-c", "head -c 1000 >/dev/null; exit 5" }, PIPES)
      local out, err = p:communicate(("y"):rep(4 * 1024 * 1024))
      assert.are.equal("", out)
      assert.are.equal("", err)
      assert.are.equal(5, p.returncode)
    end)
  end)

  it("pauses a child's stdout over twice the limit (P4)", function()
    run(function()
      local limit = 8192
      local p = tapio.create_subprocess_shell(
        "head -c 1048576 /dev/zero", { stdout = "pipe", limit = limit })
      local pipe = p.stdout._transport
      while pipe:is_reading() do
        tapio.sleep(0)
      end
      local held = p.stdout:get_buffer_size()
      assert.is_true(held > 2 * limit and held <= 2 * limit + 256 * 1024,
        held)
      local total = 0
      while true do
        local data = p.stdout:read(4096)
        if data == "" then
          break
        end
        total = total + #data
        assert.is_true(p.stdout:get_buffer_size() <= 2 * limit + 256 * 1024)
      end
      assert.are.equal(1048576, total)
      assert.are.equal(0, p:wait())
    end)
  end)

  it("reads everything with a limit of 1 (R17)", function()
    run(function()
      local p = tapio.create_subprocess_exec("sh",
        { "-c", "printf 'abc\\ndef'" }, { stdout = "pipe", limit = 1 })
      assert.are.equal("abc\ndef", p.stdout:read())
      assert.are.equal(0, p:wait())
    end)
  end)

  it("reads 256 KiB slowly after the child has exited (P11)", function()
    run(function()
      -- a limit the output fits in twice: the child writes it all and
      -- exits before anything is read
      local p = tapio.create_subprocess_shell(
        "head -c 262144 /dev/zero; exit 1",
        { stdout = "pipe", limit = 262144 })
      assert.are.equal(1, p:wait())
      local total = 0
      while true do
        local data = p.stdout:read(16384)
        if data == "" then
          break
        end
        total = total + #data
        for _ = 1, 5 do
          tapio.sleep(0)
        end
      end
      assert.are.equal(262144, total)
    end)
  end)

  it("lets ten tasks wait, returning the returncode to each (P12)",
     function()
    run(function(loop)
      local p = tapio.create_subprocess_exec("sh", { "-c", "read x; exit 9" },
        { stdin = "pipe" })
      local waiters = {}
      for i = 1, 10 do
        waiters[i] = loop:create_task(p.wait, p)
      end
      tapio.sleep(0)
      p.stdin:write("go\n")
      for i = 1, 10 do
        assert.are.equal(9, waiters[i]:await())
      end
    end)
  end)

  it("survives a cancelled wait: kill, then wait again (P7)", function()
    run(function(loop)
      local p = tapio.create_subprocess_exec("sleep", { "30" })
      local t = started(loop, p.wait, p)
      assert.is_true(t:cancel())
      assert.is_true(tapio.is_cancelled(select(2, pcall(t.await, t))))
      assert.is_true(p:kill())
      assert.are.equal(-9, p:wait())
      local ok, err = p:kill()
      assert.is_nil(ok)
      assert.are.equal("ESRCH", err.name)
    end)
  end)

  it("kills the child of a create_subprocess_exec cancelled once it was "
     .. "made, before the task resumed (P8)", function()
    run(function(loop)
      local transport = helper.cancel_when_made(loop,
        tapio.create_subprocess_exec, "sleep", { "30" }, { stdout = "pipe" })
      assert.is_true(transport:is_closing())
      local pid = transport:get_pid()
      helper.until_true(function() return gone(pid) end) -- and reaped
    end)
  end)

  it("sends signals: terminate, send_signal by name", function()
    run(function()
      local p = tapio.create_subprocess_exec("sleep", { "30" })
      assert.is_true(p:terminate())
      assert.are.equal(-15, p:wait())
      p = tapio.create_subprocess_exec("sleep", { "30" })
      assert.is_true(p:send_signal("HUP"))
      assert.are.equal(-1, p:wait())
    end)
  end)

  it("returns from wait at the exit or the kill while a grandchild holds " ..
     "the pipe (cpython#119710)", function()
    run(function()
      local p = tapio.create_subprocess_shell(
        "sleep 30 & echo $!; exit 4", { stdout = "pipe" })
      local grandchild = tonumber(p.stdout:readline())
      assert.are.equal(4, p:wait())
      assert.is_false(p.stdout:at_eof()) -- the grandchild holds it
      os.execute("kill " .. grandchild)
      assert.are.equal("", p.stdout:read())
      -- the same when the child is killed (the issue's own case)
      p = tapio.create_subprocess_shell(
        "sleep 30 & echo $!; exec sleep 30", { stdout = "pipe" })
      grandchild = tonumber(p.stdout:readline())
      assert.is_true(p:kill())
      assert.are.equal(-9, p:wait())
      assert.is_false(p.stdout:at_eof())
      os.execute("kill " .. grandchild)
      assert.are.equal("", p.stdout:read())
    end)
  end)

  it("gives ten short-lived children each its own output (P14)", function()
    run(function(loop)
      local tasks = {}
      for i = 1, 10 do
        tasks[i] = loop:create_task(function()
          local p = tapio.create_subprocess_exec("sh",
            { "-c", "echo child " .. i }, { stdout = "pipe" })
          local out = p:communicate()
          return out
        end)
      end
      for i = 1, 10 do
        assert.are.equal("child " .. i .. "\n", tasks[i]:await())
      end
    end)
  end)

  it("cancels communicate and its parts with the task", function()
    run(function(loop)
      local p = tapio.create_subprocess_exec("cat", nil, PIPES)
      local t = loop:create_task(p.communicate, p)
      tapio.sleep(0)
      tapio.sleep(0)
      assert.is_true(t:cancel())
      assert.is_true(tapio.is_cancelled(select(2, pcall(t.await, t))))
      p.stdin:close() -- cat ends; its pipes are readable again
      assert.are.equal("", p.stdout:read())
      assert.are.equal(0, p:wait())
    end)
  end)

  it("keeps what a cancelled communicate read for the next one, which "
     .. "refuses input for the stdin it closed (cpython gh-139373)",
     function()
    run(function()
      local p = tapio.create_subprocess_exec("sh", { "-c",
        "read line; echo \"got $line\"; echo err >&2; exec sleep 30" },
        PIPES)
      local err = fails(tapio.wait_for, function()
        return p:communicate("hello\n")
      end, 0.5)
      assert.are.equal("ETIMEDOUT", err.name)
      assert.is_true(p.stdin:is_closing()) -- the input went, then the end
      assert.has_error(function() p:communicate("more") end,
        "tapio: process:communicate: bad argument #1 'input' (stdin is "
        .. "closed: an earlier communicate or stdin:close() closed it)")
      p:kill()
      local out, errs = p:communicate() -- what the first one had read
      assert.are.equal("got hello\n", out)
      assert.are.equal("err\n", errs)
      assert.are.equal(-9, p.returncode)
    end)
  end)

  it("closes stdin in communicate without input, and stdin:wait_closed "
     .. "returns once it is closed (cpython bpo-39744, bpo-36801)",
     function()
    run(function()
      local p = tapio.create_subprocess_exec("cat", nil, PIPES)
      assert.are.same({ "", "" }, { p:communicate() }) -- cat saw the end
      assert.are.equal(0, p.returncode)
      p = tapio.create_subprocess_exec("cat", nil, PIPES)
      p.stdin:write("abc")
      p.stdin:close()
      p.stdin:wait_closed() -- 3.7 waited here for ever (bpo-36801)
      assert.are.equal("abc", p.stdout:read())
      assert.are.equal(0, p:wait())
    end)
  end)

  it("raises what cannot start, and checks its arguments", function()
    run(function()
      local err = fails(tapio.create_subprocess_exec, "/nonexistent/prog")
      assert.are.equal("ENOENT", err.name)
      assert.matches("cannot run '/nonexistent/prog'", err.message)
      assert.matches("process_streams_spec.lua:%d+: tapio: " ..
        "create_subprocess_exec: bad argument #1 'program' %(string " ..
        "expected, got number%)", fails(function()
          tapio.create_subprocess_exec(5)
        end))
      assert.matches("create_subprocess_exec: bad argument #2 'args'",
        fails(tapio.create_subprocess_exec, "true", "x"))
      -- asyncio's create_subprocess_exec("sh", "-c", cmd), ported as is
      assert.matches("process_streams_spec.lua:%d+: tapio: " ..
        "create_subprocess_exec: bad argument #2 'args' %(list of " ..
        "strings or nil expected, got string: the arguments are one " ..
        "list, as in create_subprocess_exec%(\"sh\", { \"%-c\", cmd }%)%)",
        fails(function()
          tapio.create_subprocess_exec("sh", "-c", "echo hi")
        end))
      assert.matches("create_subprocess_exec: unknown option 'shell'",
        fails(tapio.create_subprocess_exec, "true", nil, { shell = true }))
      assert.matches("create_subprocess_exec: bad option 'limit'",
        fails(tapio.create_subprocess_exec, "true", nil, { limit = -1 }))
      assert.matches("create_subprocess_shell: bad argument #1 'cmd' " ..
        "%(string expected, got table%)",
        fails(tapio.create_subprocess_shell, { "ls" }))
      assert.matches("create_subprocess_shell: bad option 'stdout'",
        fails(tapio.create_subprocess_shell, "true", { stdout = "nope" }))
      local p = tapio.create_subprocess_exec("true")
      assert.matches("process:communicate: bad argument #1 'input' " ..
        "%(string or nil expected, got number%)",
        fails(p.communicate, p, 5))
      assert.matches("process:wait: bad self", fails(p.wait, {}))
      -- the signal is checked before anything is sent, named as called
      assert.matches("process_streams_spec.lua:%d+: tapio: " ..
        "process:send_signal: bad argument #1 'signal' %(unknown signal " ..
        "name 'SIGFOO'%)", fails(function() p:send_signal("SIGFOO") end))
      assert.matches("process_streams_spec.lua:%d+: tapio: " ..
        "process:send_signal: bad argument #1 'signal' %(integer " ..
        "expected, got nil%)", fails(function() p:send_signal() end))
      assert.are.equal(0, p:wait())
      assert.matches("process:send_signal: bad argument #1 'signal' " ..
        "%(99999 is out of range", fails(p.send_signal, p, 99999))
    end)
  end)

  it("follows the async rule outside a task", function()
    assert.are.equal("hi\n", helper.in_callback(function(_, finish)
      tapio.create_subprocess_exec("sh", { "-c", "echo hi" },
        { stdout = "pipe" }):add_done_callback(function(f)
          f:result():communicate():add_done_callback(function(c)
            finish(c:result())
          end)
        end)
    end))
  end)
end)
