-- loop:subprocess_exec and loop:subprocess_shell with real children (sh,
-- cat, head, yes, env, cut, python3): the SubprocessProtocol's callbacks
-- and their order, the SubprocessTransport's methods, each option, the
-- errors, and closing.
local helper = require "spec.helper"
local tapio = helper.tapio

local run, sub_recorder, run_child = helper.run, helper.sub_recorder,
  helper.run_child

local function spawn(loop, program, args, opts, methods)
  return loop:subprocess_exec(function()
    return sub_recorder(loop, methods)
  end, program, args, opts)
end

local function shell(loop, cmd, opts, methods)
  return loop:subprocess_shell(function()
    return sub_recorder(loop, methods)
  end, cmd, opts)
end

local gone, children = helper.gone, helper.children

local function index(list, v)
  for i, x in ipairs(list) do
    if x == v then
      return i
    end
  end
end

describe("a subprocess", function()
  it("calls its protocol in order: data before each pipe's end, the end " ..
     "last", function()
    run(function(loop)
      local t, p = spawn(loop, "sh", { "-c", "printf hello; printf oops >&2" })
      assert.are.equal("tapio.subprocess_transport", getmetatable(t).__name)
      assert.are.equal(p.pid, t:get_pid())
      assert.are.equal(p.pid, t:get_extra_info("subprocess"))
      assert.is_nil(t:get_extra_info("socket"))
      assert.are.equal(("tapio.subprocess_transport (pid %d)"):format(p.pid),
        tostring(t))
      assert.are.equal(false, p.lost:await())
      assert.are.equal(0, p.exited:result())
      assert.are.equal(0, t:get_returncode())
      assert.are.equal("hello", p:output(1))
      assert.are.equal("oops", p:output(2))
      assert.are.equal("made", p.events[1])
      assert.are.equal("lost", p.events[#p.events])
      assert.is_true(index(p.events, "out") < index(p.events, "lost1"))
      assert.is_true(index(p.events, "err") < index(p.events, "lost2"))
      assert.is_true(p:saw("exited"))
      -- the child never read its stdin: the reader went away
      assert.are.equal("EPIPE", p.pipe_lost[0]:result().name)
      assert.are.equal(false, p.pipe_lost[1]:result())
      assert.is_true(t:is_closing())
      assert.are.equal(p.pid, t:get_pid()) -- kept after the end
      assert.are.equal("tapio.subprocess_transport (closed)", tostring(t))
      -- a closed shell answering as asyncio's after the end
      assert.are.equal(0, t:get_returncode())
      assert.are.equal(p.pid, t:get_extra_info("subprocess"))
      assert.are.equal("x", t:get_extra_info("socket", "x"))
      for fd = 0, 2 do -- the closed pipe transports
        assert.are.equal("tapio." .. (fd == 0 and "write" or "read")
          .. "_transport (closed)", tostring(t:get_pipe_transport(fd)))
      end
      assert.is_nil(t:get_pipe_transport(3))
      assert.is_nil(t:get_pipe_transport(5)) -- (the shell's slots)
      assert.are.equal(loop, t:get_loop())
      assert.is_nil(t:get_protocol()) -- let go, as asyncio's
      t:set_protocol(p)
      assert.are.equal(p, t:get_protocol())
      local ok, err = t:kill() -- asyncio raises ProcessLookupError
      assert.is_nil(ok)
      assert.are.equal("ESRCH", err.name)
      t:close()
    end)
  end)

  it("runs a shell command; no pipes, no pipe transports", function()
    run(function(loop)
      local opts = { stdin = "devnull", stdout = tapio.DEVNULL,
                     stderr = "devnull" }
      local t, p = shell(loop, "exit 7", opts)
      assert.is_nil(t:get_pipe_transport(0))
      assert.is_nil(t:get_pipe_transport(1))
      assert.is_nil(t:get_pipe_transport(2))
      assert.is_nil(t:get_pipe_transport(3))
      p.lost:await()
      assert.are.same({ "made", "exited", "lost" }, p.events)
      assert.are.equal(7, t:get_returncode())
      t:close() -- after the end: harmless
    end)
  end)

  it("streams 64 MiB from stdout, byte for byte, with pause_reading",
     function()
    run(function(loop)
      local line = "abcdefghij\n"
      local pat = line:rep(math.floor(256 * 1024 / #line) + 2)
      local total, pauses, bad = 0, 0, nil
      local t, p
      t, p = shell(loop, "yes abcdefghij | head -c 67108864",
        { stdin = "devnull" }, {
          pipe_data_received = function(self, fd, data)
            local off = total % #line
            if data ~= pat:sub(off + 1, off + #data) then
              bad = bad or total
            end
            local before = total
            total = total + #data
            local mib4 = 4 * 1024 * 1024
            if math.floor(before / mib4) ~= math.floor(total / mib4) then
              local out = self.transport:get_pipe_transport(1)
              out:pause_reading()
              assert(not out:is_reading())
              pauses = pauses + 1
              loop:call_soon(function() out:resume_reading() end)
            end
          end })
      assert.are.equal(false, p.lost:await())
      assert.is_nil(bad)
      assert.are.equal(64 * 1024 * 1024, total)
      assert.is_true(pauses >= 15)
      assert.are.equal(0, t:get_returncode())
    end, { deadline = 60 })
  end)

  it("passes the pipe-buffer edges through cat and back", function()
    run(function(loop)
      for _, n in ipairs({ 65536, 65537, 1000000 }) do
        local data = ("0123456789abcdef"):rep(math.floor(n / 16) + 1)
          :sub(1, n)
        local t, p = spawn(loop, "cat")
        local stdin = t:get_pipe_transport(0)
        assert.are.equal("tapio.write_transport", getmetatable(stdin).__name)
        assert.are.equal(stdin, t:get_pipe_transport(0)) -- the same object
        stdin:write(data)
        stdin:write_eof()
        assert.are.equal(false, p.lost:await())
        assert.are.equal(n, #p:output(1))
        assert.is_true(p:output(1) == data)
        assert.are.equal(false, p.pipe_lost[0]:result())
        -- the pipe transport is a closed shell once its pipe is gone,
        -- still handed out (as asyncio's), answering as asyncio's does
        assert.are.equal(stdin, t:get_pipe_transport(0))
        assert.are.equal("tapio.write_transport (closed)", tostring(stdin))
        assert.is_true(stdin:is_closing())
        stdin:write("x") -- dropped, as asyncio drops it
        stdin:write_eof() -- nothing to do
        assert.are.equal(0, stdin:get_write_buffer_size())
        assert.are.same({ 16384, 65536 },
          { stdin:get_write_buffer_limits() })
        assert.is_true(stdin:can_write_eof())
        assert.is_nil(stdin:get_extra_info("pipe")) -- closed: gone
        assert.is_nil(stdin:get_protocol()) -- the subprocess's, let go
        assert.are.equal(loop, stdin:get_loop())
        assert.are.equal(n, stdin:get_stats().bytes_sent)
      end
    end)
  end)

  it("tells pause_writing and resume_writing of a slow reader's stdin",
     function()
    run(function(loop)
      local data = ("x"):rep(512 * 1024)
      local t, p = shell(loop, "sleep 0.1; exec cat")
      local stdin = t:get_pipe_transport(0)
      stdin:write(data)
      assert.are.equal("pause", p.events[#p.events])
      stdin:write_eof()
      p.lost:await()
      assert.is_true(index(p.events, "pause") < index(p.events, "resume"))
      assert.are.equal(#data, p.bytes[1])
    end)
  end)

  it("sends stderr into stdout", function()
    run(function(loop)
      local t, p = shell(loop, "echo out; echo err >&2",
        { stdin = "devnull", stderr = "stdout" })
      assert.is_nil(t:get_pipe_transport(2))
      p.lost:await()
      assert.are.equal("out\nerr\n", p:output(1))
      assert.is_false(p:saw("err") or p:saw("lost2"))
    end)
  end)

  it("takes descriptors of the caller's as stdin and stdout", function()
    run(function(loop)
      local in_r, in_w = tapio.pipe()
      local out_r, out_w = tapio.pipe()
      local rc, p = nil, nil
      local reader = helper.recorder(loop)
      loop:connect_read_pipe(function() return reader end, out_r)
      local writer = helper.recorder(loop)
      local wt = loop:connect_write_pipe(function() return writer end, in_w)
      local _
      _, p = spawn(loop, "cat", nil, { stdin = in_r, stdout = out_w })
      tapio.close_fd(in_r) -- the child has its copies
      tapio.close_fd(out_w)
      wt:write("given")
      wt:write_eof()
      rc = p.exited:await()
      assert.are.equal(0, rc)
      assert.are.equal("given", reader:bytes(5):await())
      assert.are.equal(false, reader.lost:await())
    end)
  end)

  it("runs in cwd, with env replaced or extended", function()
    run(function(loop)
      local rc, p = run_child(loop, "pwd", nil, { cwd = "/tmp" })
      assert.are.equal(0, rc)
      assert.are.equal("/tmp\n", p:output(1))
      rc, p = run_child(loop, "/usr/bin/env", nil,
        { env = { B = "two words", A = "1" } })
      assert.are.equal("A=1\nB=two words\n", p:output(1))
      rc, p = run_child(loop, "/usr/bin/env", nil, { env = { "C=3" } })
      assert.are.equal("C=3\n", p:output(1))
      rc, p = run_child(loop, "/usr/bin/env", nil, { env = {} })
      assert.are.equal("", p:output(1))
      rc, p = run_child(loop, "sh", { "-c", "echo $TAPIO_X-$HOME" },
        { env = { TAPIO_X = "x" }, extend_env = true })
      assert.are.equal("x-" .. os.getenv("HOME") .. "\n", p:output(1))
    end)
  end)

  it("starts a new session when asked", function()
    run(function(loop)
      local argv = { "-d", " ", "-f", "6", "/proc/self/stat" }
      local _, p = run_child(loop, "cut", argv, { start_new_session = true })
      assert.are.equal(p.pid, tonumber(p:output(1)))
      local _, q = run_child(loop, "cut", argv)
      assert.are_not.equal(q.pid, tonumber(q:output(1)))
    end)
  end)

  it("leads or joins a process group when asked (process_group)", function()
    run(function(loop)
      local argv = { "-d", " ", "-f", "5,6", "/proc/self/stat" }
      local _, p = run_child(loop, "cut", argv, { process_group = 0 })
      local group, session = p:output(1):match("^(%d+) (%d+)")
      assert.are.equal(p.pid, tonumber(group)) -- its own group, which it
      assert.are_not.equal(p.pid, tonumber(session)) -- leads, in our session
      local _, leader = spawn(loop, "sh", { "-c", "read x" },
        { process_group = 0 })
      local _, q = run_child(loop, "cut", argv,
        { process_group = leader.pid })
      assert.are.equal(leader.pid, tonumber(q:output(1):match("^%d+")))
      leader.transport:close()
      assert.are.equal(-9, leader.exited:await())
      -- the group is gone with its last member: joining it is refused
      local ok, err = pcall(run_child, loop, "true", {},
        { process_group = leader.pid })
      assert.is_false(ok)
      assert.are.equal("EPERM", err.name)
      -- the words say what could not be done (sh's EPERM is not sh's)
      assert.are.equal(("cannot run 'true': cannot join process group %d: "
        .. "operation not permitted (no process of it is left, or it is "
        .. "another session's)"):format(leader.pid), err.message)
    end)
  end)

  it("signals a whole group with tapio.killpg", function()
    run(function(loop)
      -- the grandchild holds stdout open: stdout ends only when the
      -- signal reached it too, not only the shell
      local _, p = shell(loop, "sleep 30 & echo $!; wait",
        { process_group = 0 })
      helper.until_true(function() return p:output(1):find("\n") end)
      local grandchild = tonumber(p:output(1):match("^%d+"))
      assert.are.equal(true, tapio.killpg(p.pid, "SIGTERM"))
      assert.are.equal(false, p.pipe_lost[1]:await())
      assert.are.equal(-15, p.exited:await())
      p.lost:await()
      while not gone(grandchild) do -- a zombie until init reaps it, and a
        tapio.sleep(0.01)            -- zombie is still in the group
      end
      local ok, err = tapio.killpg(p.pid, "SIGTERM") -- nobody left
      assert.is_nil(ok)
      assert.are.equal("ESRCH", err.name)
    end)
  end)

  it("refuses bad arguments to killpg and conflicting group options",
     function()
    assert.has_error(function() tapio.killpg(0, "TERM") end,
      "tapio: killpg: bad argument #1 'pgid' (0 is out of range "
      .. "1..2147483647)")
    assert.has_error(function() tapio.killpg(1, "NOPE") end,
      "tapio: killpg: bad argument #2 'signal' (unknown signal name 'NOPE')")
    run(function(loop)
      local ok, err = pcall(spawn, loop, "true", {},
        { process_group = 0, start_new_session = true })
      assert.is_false(ok)
      assert.are.equal("EINVAL", err.name)
      assert.are.equal("subprocess_exec: options 'start_new_session' and "
        .. "'process_group' together: a session leader's group is its own",
        err.message)
    end)
  end)

  it("passes pass_fds and closes the rest", function()
    run(function(loop)
      local r, w = tapio.pipe()
      local reader = helper.recorder(loop)
      loop:connect_read_pipe(function() return reader end, r)
      local script = ("echo passed >&%d"):format(w)
      local rc = run_child(loop, "sh", { "-c", script }, { pass_fds = { w } })
      assert.are.equal(0, rc)
      rc = run_child(loop, "sh", { "-c", script }) -- not passed: closed
      assert.are_not.equal(0, rc)
      tapio.close_fd(w)
      assert.are.equal("passed\n", reader:bytes(7):await())
      assert.are.equal(false, reader.lost:await())
      local test = ("[ -e /proc/$$/fd/%d ] && echo open || echo closed")
      local _, p = run_child(loop, "sh", { "-c", test:format(r) },
        { close_fds = false }) -- r is close-on-exec: not inherited anyway
      assert.are.equal("closed\n", p:output(1))
    end)
  end)

  it("gives minus the signal as returncode: kill, terminate, send_signal",
     function()
    run(function(loop)
      local cases = {
        { function(t) return t:kill() end, -9 },
        { function(t) return t:terminate() end, -15 },
        { function(t) return t:send_signal("SIGHUP") end, -1 },
        { function(t) return t:send_signal("INT") end, -2 },
        { function(t) return t:send_signal(tapio.signals.SIGUSR1) end,
          -tapio.signals.SIGUSR1 },
      }
      for _, case in ipairs(cases) do
        local t, p = spawn(loop, "sleep", { "30" }, { stdin = "devnull" })
        assert.is_true(case[1](t))
        assert.are.equal(case[2], p.exited:await())
        p.lost:await()
        assert.are.equal(case[2], t:get_returncode())
        -- after the exit: ESRCH values, never a signal to another process
        local ok, err = t:kill()
        assert.is_nil(ok)
        assert.are.equal("ESRCH", err.name)
        assert.are.equal("ESRCH", select(2, t:send_signal(0)).name)
      end
    end)
  end)

  it("starts the child with no signal ignored nor blocked, glibc's own "
     .. "32 and 33 too (as Python's subprocess does)", function()
    run(function(loop)
      local rc, p = run_child(loop, "grep", { "-E", "^Sig(Ign|Blk)",
                                              "/proc/self/status" })
      assert.are.equal(0, rc)
      assert.are.equal("SigBlk:\t0000000000000000\n"
                       .. "SigIgn:\t0000000000000000\n", p:output(1))
    end)
  end)

  it("reports a program that cannot start as the error, naming it",
     function()
    run(function(loop)
      local ok, err = pcall(spawn, loop, "tapio-no-such-program")
      assert.is_false(ok)
      assert.are.equal("ENOENT", err.name)
      assert.are.equal("cannot run 'tapio-no-such-program': no such file " ..
        "or directory", err.message)
      ok, err = pcall(spawn, loop, "/etc/passwd")
      assert.are.equal("EACCES", err.name)
      ok, err = pcall(spawn, loop, "true", nil, { cwd = "/nonexistent" })
      assert.are.equal("ENOENT", err.name)
      assert.is_truthy(err.message:find("in '/nonexistent'", 1, true))
      ok, err = pcall(shell, loop, "true", { stdout = 1000 })
      assert.are.equal("EBADF", err.name)
      assert.are.equal("cannot run '/bin/sh': stdout descriptor 1000 is "
        .. "not open", err.message)
      ok, err = pcall(spawn, loop, "true", nil, { pass_fds = { 1001 } })
      assert.are.equal("EBADF", err.name)
      assert.are.equal("cannot run 'true': pass_fds descriptor 1001 is not "
        .. "open", err.message)
    end)
  end)

  it("raises for bad arguments and options", function()
    run(function(loop)
      local f = function() return sub_recorder(loop) end
      assert.has_error(function() loop:subprocess_exec(f, 42) end,
        "tapio: loop:subprocess_exec: bad argument #2 'program' (string " ..
        "expected, got number)")
      assert.has_error(function()
        loop:subprocess_exec(f, "echo", { "a", 1 })
      end, "tapio: loop:subprocess_exec: bad argument #3 'args' (string " ..
        "expected at index 2, got number)")
      assert.has_error(function()
        loop:subprocess_exec(f, "true", nil, { bufsize = 0 })
      end, "tapio: loop:subprocess_exec: unknown option 'bufsize'")
      assert.has_error(function()
        loop:subprocess_exec(f, "true", nil, { universal_newlines = true })
      end, "tapio: loop:subprocess_exec: unknown option 'universal_newlines'")
      assert.has_error(function()
        loop:subprocess_shell(f, { "echo", "a list" })
      end, "tapio: loop:subprocess_shell: bad argument #2 'cmd' (string " ..
        "expected, got table)")
      assert.has_error(function()
        loop:subprocess_shell(f, "true", { stdin = "bogus" })
      end)
      assert.has_error(function()
        loop:subprocess_shell(f, "true", { pass_fds = { "x" } })
      end, "tapio: loop:subprocess_shell: bad option 'pass_fds' (list of " ..
        "descriptors expected)")
      local ok, err = pcall(shell, loop, "true", { stdin = "stdout" })
      assert.are.equal("EINVAL", err.name)
      local t, p = shell(loop, "exit 0", { stdin = "devnull" })
      assert.are.equal("SIGTERM", tapio.signal_name(15))
      assert.are.equal("SIGKILL", tapio.signal_name(tapio.signals.SIGKILL))
      assert.is_nil(tapio.signal_name(0))
      for name, number in pairs(tapio.signals) do
        assert.are.equal(name, tapio.signal_name(number))
      end
      assert.has_error(function() tapio.signal_name("TERM") end,
        "tapio: signal_name: bad argument #1 'signal' (integer expected, "
        .. "got string)")
      assert.has_error(function() t:send_signal("SIGNOPE") end,
        "tapio: transport:send_signal: bad argument #1 'signal' (unknown " ..
        "signal name 'SIGNOPE')")
      assert.has_error(function() t:get_pipe_transport("1") end)
      -- a name is not cut at a NUL ("KILL\0..." is no SIGKILL)
      assert.has_error(function() t:send_signal("KILL\0x") end,
        "tapio: transport:send_signal: bad argument #1 'signal' (string " ..
        "with a NUL byte inside)")
      assert.has_error(function() loop:add_signal_handler("USR1\0x", print)
      end, "tapio: loop:add_signal_handler: bad argument #1 'signal' " ..
        "(string with a NUL byte inside)")
      assert.has_error(function() tapio.killpg(1, "TERM\0x") end,
        "tapio: killpg: bad argument #2 'signal' (string with a NUL byte " ..
        "inside)")
      p.lost:await()
    end)
  end)

  it("refuses a NUL inside the program, an argument, the command or env, " ..
     "and '=' in an env name, as Python's ValueError (not cut there)",
     function()
    -- C reads a string up to its NUL: "echo safe\0; rm x" ran "echo safe",
    -- and env {["A=B"] = "c"} set A to "B=c"
    local NUL = "(string with a NUL byte inside)"
    run(function(loop)
      local f = function() return sub_recorder(loop) end
      local before = children()
      local EXEC = "tapio: loop:subprocess_exec: "
      assert.has_error(function() loop:subprocess_exec(f, "echo\0x") end,
        EXEC .. "bad argument #2 'program' " .. NUL)
      assert.has_error(function()
        loop:subprocess_exec(f, "echo", { "a", "b\0c" })
      end, EXEC .. "bad argument #3 'args' (string with a NUL byte inside " ..
        "at index 2)")
      assert.has_error(function()
        loop:subprocess_shell(f, "echo safe\0; echo injected")
      end, "tapio: loop:subprocess_shell: bad argument #2 'cmd' " .. NUL)
      assert.has_error(function()
        loop:subprocess_exec(f, "true", nil, { env = { ["A\0Z"] = "1" } })
      end, EXEC .. "bad option 'env' (a NUL byte inside the name or value " ..
        "of 'A')")
      assert.has_error(function()
        loop:subprocess_exec(f, "true", nil, { env = { B = "v\0w" } })
      end, EXEC .. "bad option 'env' (a NUL byte inside the name or value " ..
        "of 'B')")
      assert.has_error(function()
        loop:subprocess_exec(f, "true", nil, { env = { ["A=B"] = "c" } })
      end, EXEC .. "bad option 'env' (illegal environment variable name " ..
        "'A=B')")
      assert.are.same(before, children()) -- none was started
    end)
  end)

  it("gives the child pipes it can open again by name, /dev/stdin and "
     .. "/proc/self/fd/1, and tells their descriptors (cpython gh-90522, "
     .. "uvloop#532, uvloop#505, uvloop#595)", function()
    run(function(loop)
      local t, p = shell(loop, "cat /dev/stdin; echo again > /proc/self/fd/1")
      p.made:await()
      local stdin, stdout = t:get_pipe_transport(0), t:get_pipe_transport(1)
      local fd = stdin:get_extra_info("pipe")
      assert.is_true(type(fd) == "number" and fd > 2)
      assert.is_true(stdout:get_extra_info("pipe") > 2)
      -- a pipe, not a socketpair (a socket cannot be opened by its name)
      local link = io.popen("readlink /proc/" .. helper.pid() .. "/fd/"
                            .. fd)
      assert.matches("^pipe:", link:read("l"))
      link:close()
      stdin:write("through stdin\n")
      stdin:close()
      assert.is_false(p.lost:await())
      assert.are.equal(0, t:get_returncode())
      assert.are.equal("through stdin\nagain\n", p:output(1))
      assert.are.equal("", p:output(2))
    end)
  end)

  it("close kills a running child and closes its pipes", function()
    run(function(loop)
      local t, p = spawn(loop, "sleep", { "30" })
      t:close()
      assert.is_true(t:is_closing())
      assert.are.equal(false, p.lost:await())
      assert.are.equal(-9, t:get_returncode())
      for fd = 0, 2 do
        assert.are.equal(false, p.pipe_lost[fd]:result())
      end
      assert.is_true(gone(p.pid))
    end)
  end)

  it("close does not kill a child that has exited", function()
    run(function(loop)
      local t, p = shell(loop, "exit 3", { stdin = "devnull" })
      p.exited:await()
      t:close()
      p.lost:await()
      assert.are.equal(3, t:get_returncode())
    end)
  end)

  it("sees the exit though a grandchild keeps stdout open", function()
    run(function(loop)
      local t, p = shell(loop, "sleep 30 & echo $!", { stdin = "devnull" })
      assert.are.equal(0, p.exited:await())
      assert.is_false(p.lost:done())
      local grandchild = tonumber(p:output(1))
      assert.is_true(grandchild ~= nil)
      os.execute("kill -9 " .. grandchild)
      assert.are.equal(false, p.lost:await())
      assert.are.equal(0, t:get_returncode())
    end)
  end)

  it("fails on an error in a callback: killed, the error everywhere",
     function()
    run(function(loop, errors)
      local boom = setmetatable({},
        { __tostring = function() return "boom" end })
      local t, p = spawn(loop, "sh", { "-c", "echo go; exec sleep 30" }, nil,
        { pipe_data_received = function() error(boom) end })
      assert.are.equal(boom, p.lost:await())
      assert.are.equal(boom, p.pipe_lost[1]:result())
      assert.are.equal(-9, t:get_returncode())
      assert.are.equal(1, #errors)
      assert.are.equal("error in protocol.pipe_data_received()",
        errors[1].message)
      assert.are.equal(t, errors[1].transport)
      assert.is_true(gone(p.pid))
    end, { errors_ok = true })
  end)

  it("kills and reaps the child of a cancelled subprocess_exec at once " ..
     "and calls nobody", function()
    run(function(loop)
      local refs = loop:_debug().refs
      local before, started, after = children()
      local made = false
      local fut
      loop:call_soon(function() -- outside a task: the future comes back
        fut = loop:subprocess_exec(function()
          made = true
          return sub_recorder(loop)
        end, "sleep", { "30" })
        started = children()
        fut:cancel()
        after = children()
      end)
      tapio.sleep(0.05) -- turns of the loop in which nobody may be called
      assert.is_true(fut:cancelled())
      assert.are_not.same(before, started) -- the call started the child
      assert.are.same(before, after)       -- gone with the cancel: no zombie
      assert.is_false(made)
      assert.are.equal(refs, loop:_debug().refs)
    end)
  end)

  it("ten children at once, each with its own output", function()
    run(function(loop)
      local ps = {}
      for i = 1, 10 do
        local _, p = shell(loop, "echo child " .. i, { stdin = "devnull" })
        ps[i] = p
      end
      for i = 1, 10 do
        assert.are.equal(0, ps[i].exited:await())
        ps[i].lost:await()
        assert.are.equal("child " .. i .. "\n", ps[i]:output(1))
      end
    end)
  end)

  it("reads what python3 wrote after it exited", function()
    run(function(loop)
      local code = "import sys; sys.stdout.write('x' * 60000)"
      local t, p = spawn(loop, "/usr/bin/python3", { "-c", code },
        { stdin = "devnull" }, {
          connection_made = function(self, transport)
            self.transport = transport
            self.pid = transport:get_pid()
            transport:get_pipe_transport(1):pause_reading()
            self.made:set_result(transport)
          end })
      assert.are.equal(0, p.exited:await())
      assert.are.equal(0, p.bytes[1])
      t:get_pipe_transport(1):resume_reading()
      p.lost:await()
      assert.are.equal(60000, p.bytes[1])
    end)
  end)

  it("kills and reaps the children of a loop closed under them", function()
    local loop = tapio.new_loop()
    local ps = {}
    for i = 1, 2 do
      ps[i] = sub_recorder(loop)
      loop:subprocess_exec(function() return ps[i] end, "sleep", { "30" })
    end
    helper.wait_until(loop, function()
      return ps[1].made:done() and ps[2].made:done()
    end)
    loop:close()
    for i = 1, 2 do
      assert.are.equal("made", ps[i].events[1])
      assert.are.equal("lost", ps[i].events[#ps[i].events])
      assert.is_true(ps[i]:saw("exited"))
      assert.is_true(gone(ps[i].pid))
    end
  end)
end)

-- Python's executable, pipesize, user, group, extra_groups and umask: the
-- last four start the child with fork (posix_spawn cannot set them), which
-- must start it as posix_spawn does and fail as it does.
describe("a subprocess's executable, pipesize, ids and umask", function()
  local function root()
    local f = assert(io.open("/proc/self/status"))
    local uid = f:read("*a"):match("\nUid:%s+(%d+)")
    f:close()
    return uid == "0"
  end

  it("runs executable as the program, argv[0] left as given (the shell: "
     .. "its $0 too, as Python's)", function()
    run(function(loop)
      local _, p = run_child(loop, "mysh", { "-c", "echo $0" },
        { executable = "/bin/sh" })
      assert.are.equal("mysh\n", p:output(1))
      local sh = tapio.create_subprocess_shell("echo $0",
        { executable = "sh", stdout = "pipe" })
      assert.are.same({ "sh" }, helper.output_lines(sh))
      local ok, err = pcall(spawn, loop, "mysh", nil,
        { executable = "/nonexistent/sh" })
      assert.is_false(ok)
      assert.are.equal("cannot run '/nonexistent/sh': no such file or "
        .. "directory", err.message)
    end)
  end)

  it("gives the child's pipes pipesize bytes", function()
    run(function(loop)
      local script = "import fcntl; print(*(fcntl.fcntl(fd, "
        .. "fcntl.F_GETPIPE_SZ) for fd in (0, 1, 2)))"
      local _, p = spawn(loop, "python3", { "-c", script },
        { pipesize = 262144 })
      p.transport:get_pipe_transport(0):close()
      p.lost:await()
      assert.are.equal("262144 262144 262144\n", p:output(1))
    end)
  end)

  it("runs the child as user, group and extra_groups, by name or number",
     function()
    if not root() then
      pending("not root: the child cannot change its user and groups")
      return
    end
    run(function()
      local proc = tapio.create_subprocess_exec("sh",
        { "-c", "id -u; id -g; id -G" }, { user = "nobody", group = 65534,
          extra_groups = { "nogroup", 4242 }, stdout = "pipe" })
      assert.are.same({ "65534", "65534", "65534 4242" },
        helper.output_lines(proc))
    end)
  end)

  it("sets the child's umask (a number: Lua has no 0o27)", function()
    run(function(loop)
      local _, p = run_child(loop, "sh", { "-c", "umask" },
        { umask = tonumber("027", 8) })
      assert.are.equal("0027\n", p:output(1))
    end)
  end)

  it("refuses a name that does not exist and values of the wrong type",
     function()
    run(function(loop)
      local f = function() return sub_recorder(loop) end
      local ok, err = pcall(spawn, loop, "true", nil,
        { user = "tapio-nosuch" })
      assert.is_false(ok)
      assert.are.equal("EINVAL", err.name)
      assert.are.equal("subprocess_exec: option 'user': no user named "
        .. "'tapio-nosuch'", err.message)
      ok, err = pcall(shell, loop, "true",
        { extra_groups = { 4242, "tapio-nosuch" } })
      assert.are.equal("subprocess_shell: option 'extra_groups': no group "
        .. "named 'tapio-nosuch'", err.message)
      assert.has_error(function()
        loop:subprocess_exec(f, "true", nil, { umask = "022" })
      end, "tapio: loop:subprocess_exec: bad option 'umask' (integer "
        .. "-1..511 (0o777) expected)")
      assert.has_error(function()
        loop:subprocess_exec(f, "true", nil, { group = 1.5 })
      end, "tapio: loop:subprocess_exec: bad option 'group' (group name or "
        .. "gid expected)")
      assert.has_error(function()
        loop:subprocess_shell(f, "true", { extra_groups = { true } })
      end, "tapio: loop:subprocess_shell: bad option 'extra_groups' (list "
        .. "of group names or gids expected)")
    end)
  end)

  it("fails as posix_spawn would for what fails in the forked child: a "
     .. "program only root may run, run as nobody", function()
    if not root() then
      pending("not root: the child cannot change its user")
      return
    end
    run(function(loop)
      local path = os.tmpname() -- 0600, root's
      local f = assert(io.open(path, "w"))
      f:write("#!/bin/sh\necho ran\n")
      f:close()
      assert.are.equal(0, run_child(loop, "chmod", { "700", path }))
      local _, p = run_child(loop, path)
      assert.are.equal("ran\n", p:output(1))
      local ok, err = pcall(spawn, loop, path, nil, { user = "nobody" })
      os.remove(path)
      assert.is_false(ok)
      assert.are.equal("EACCES", err.name)
      assert.are.equal(("cannot run '%s': permission denied"):format(path),
        err.message)
    end)
  end)
end)
