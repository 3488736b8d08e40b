-- Watching descriptors and signals: loop:add_reader, remove_reader,
-- add_writer, remove_writer, add_signal_handler, remove_signal_handler,
-- on real socket pairs and with real signals sent to this process.
local helper = require "spec.helper"
local tapio = helper.tapio

-- A socket pair: the watched end, the other end, and a closer.
local function pair()
  local a, b = tapio.socketpair()
  return a, b, function()
    tapio.close_fd(a)
    tapio.close_fd(b)
  end
end

describe("loop:add_reader", function()
  it("runs the reference's example: read, remove, done", function()
    helper.run(function(loop)
      local rsock, wsock, close = pair()
      local got = loop:create_future()
      loop:add_reader(rsock, function(fut)
        local data = tapio.recv(rsock, 100)
        assert.is_true(loop:remove_reader(rsock))
        fut:set_result(data)
      end, got)
      loop:call_soon(tapio.send, wsock, "abc")
      assert.are.equal("abc", got:await())
      -- removed: more data calls nobody
      tapio.send(wsock, "more")
      tapio.sleep(0.01)
      assert.is_false(loop:remove_reader(rsock))
      close()
    end)
  end)

  it("passes the arguments given and is level-triggered", function()
    helper.run(function(loop)
      local rsock, wsock, close = pair()
      local calls, bytes = {}, ""
      local done = loop:create_future()
      loop:add_reader(rsock, function(a, b)
        calls[#calls + 1] = a .. b
        bytes = bytes .. tapio.recv(rsock, 1) -- one byte per call
        if #bytes == 3 then
          done:set_result()
        end
      end, "x", 1)
      tapio.send(wsock, "xyz")
      done:await()
      assert.are.same({ "x1", "x1", "x1" }, calls)
      assert.are.equal("xyz", bytes)
      assert.is_true(loop:remove_reader(rsock))
      close()
    end)
  end)

  it("replaces the callback when added again", function()
    helper.run(function(loop)
      local rsock, wsock, close = pair()
      local first, second = 0, loop:create_future()
      loop:add_reader(rsock, function() first = first + 1 end)
      loop:add_reader(rsock, function()
        second:set_result(tapio.recv(rsock, 10))
      end)
      tapio.send(wsock, "q")
      assert.are.equal("q", second:await())
      assert.are.equal(0, first)
      assert.is_true(loop:remove_reader(rsock))
      assert.is_false(loop:remove_reader(rsock))
      close()
    end)
  end)

  it("may be replaced from inside its own callback", function()
    helper.run(function(loop)
      local rsock, wsock, close = pair()
      local log = {}
      local done = loop:create_future()
      local function second(tag)
        log[#log + 1] = tag .. tapio.recv(rsock, 1)
        done:set_result()
      end
      loop:add_reader(rsock, function()
        log[#log + 1] = "first" .. tapio.recv(rsock, 1)
        loop:add_reader(rsock, second, "second") -- replaces this one
        collectgarbage() -- the replaced watch is no longer anchored
      end)
      tapio.send(wsock, "ab")
      done:await()
      assert.are.same({ "firsta", "secondb" }, log)
      assert.is_true(loop:remove_reader(rsock))
      close()
    end)
  end)

  it("sends a callback's error to the exception handler and goes on",
    function()
    local errors = helper.run(function(loop, errors)
      local rsock, wsock, close = pair()
      local calls = 0
      local second = loop:create_future()
      loop:add_reader(rsock, function()
        calls = calls + 1
        tapio.recv(rsock, 1)
        if calls == 1 then
          error("reader broke")
        end
        second:set_result()
      end)
      tapio.send(wsock, "ab")
      second:await()
      loop:remove_reader(rsock)
      close()
      return errors
    end, { errors_ok = true })
    assert.are.equal(1, #errors)
    assert.are.equal("error in a reader callback", errors[1].message)
    assert.matches("reader broke", tostring(errors[1].exception))
    assert.matches("stack traceback", errors[1].traceback)
  end)

  it("has tapio.recv answer EAGAIN when nothing is there, never waiting",
     function()
    -- in a child with a deadline: a recv that waited would hang this spec
    local host = os.getenv("TAPIO_HOST") or "build/tapio"
    local out, status = helper.execute("timeout 10 " .. helper.shell_quote(host)
      .. [[ -e 'local tapio = require "tapio"
        local a, b = tapio.socketpair()
        local data, err = tapio.recv(a, 10)
        print(data, err.name)
        tapio.send(b, "x")
        print(tapio.recv(a, 10))']])
    assert.are.equal(0, status)
    assert.are.equal("nil\tEAGAIN\nx\n", out)
  end)

  it("survives its descriptor closed before the loop polled: the handler "
     .. "is told, the watch stays to be removed", function()
    local errors = helper.run(function(loop, errors)
      local rsock, wsock = tapio.socketpair()
      loop:add_reader(rsock, function() error("never called") end)
      tapio.close_fd(rsock)
      tapio.close_fd(wsock)
      helper.until_true(function() return #errors > 0 end) -- told
      assert.is_true(loop:remove_reader(rsock))
      return errors
    end, { errors_ok = true })
    assert.are.equal(1, #errors)
    assert.are.equal("EBADF", errors[1].exception.name)
    assert.matches("^descriptor %d+ was closed while watched",
                   errors[1].message)
  end)

  it("never calls a watch closed in its callback for a new descriptor "
     .. "of its number; adding one there watches the new one", function()
    local errors = helper.run(function(loop, errors)
      local a, b = tapio.socketpair()
      local old_calls, first = 0, loop:create_future()
      loop:add_reader(a, function()
        old_calls = old_calls + 1
        tapio.close_fd(a) -- no remove_reader
        if not first:done() then first:set_result(true) end
      end)
      tapio.send(b, "x")
      first:await()
      tapio.close_fd(b)
      local c, d = tapio.socketpair()
      assert.are.equal(a, c)
      tapio.send(d, "new") -- readable when the writer's poll comes
      local wrote = loop:create_future()
      loop:add_writer(c, function()
        assert.is_true(loop:remove_writer(c))
        wrote:set_result(true)
      end)
      wrote:await()
      local got = loop:create_future()
      loop:add_reader(c, function()
        assert.is_true(loop:remove_reader(c))
        got:set_result(tapio.recv(c, 10))
      end)
      assert.are.equal("new", got:await())
      assert.are.equal(1, old_calls)
      tapio.close_fd(c)
      tapio.close_fd(d)
      return errors
    end, { errors_ok = true })
    assert.are.equal(1, #errors)
    assert.are.equal("EBADF", errors[1].exception.name)
    assert.matches("^descriptor %d+ was closed while watched",
                   errors[1].message)
  end)

  it("refuses bad descriptors with clear errors", function()
    helper.run(function(loop)
      local rsock, _, close = pair()
      local function cb() end
      assert.has_error(function() loop:add_reader("x", cb) end,
        "tapio: loop:add_reader: bad argument #1 'fd' (integer expected, "
        .. "got string)")
      assert.has_error(function() loop:add_reader(-1, cb) end,
        "tapio: loop:add_reader: bad argument #1 'fd' (-1 is out of range "
        .. "0..2147483647)")
      assert.has_error(function() loop:add_reader(rsock, 42) end,
        "tapio: loop:add_reader: bad argument #2 'callback' (function "
        .. "expected, got number)")
      local r, w = tapio.pipe()
      tapio.close_fd(r)
      assert.has_error(function() loop:add_writer(r, cb) end,
        "tapio: loop:add_writer: bad argument #1 'fd' (not an open "
        .. "descriptor)")
      tapio.close_fd(w)
      close()
    end)
  end)

  it("refuses a transport's or a server's descriptor", function()
    helper.run(function(loop)
      local server = loop:create_server(function()
        return helper.recorder(loop)
      end, "127.0.0.1", 0)
      local fd = server:sockets()[1]
      assert.has_error(function() loop:add_reader(fd, print) end,
        "tapio: loop:add_reader: bad argument #1 'fd' (used by a transport "
        .. "or server of the loop)")
      local t = loop:create_connection(function()
        return helper.recorder(loop)
      end, "127.0.0.1", helper.port(server))
      assert.has_error(function()
        loop:add_writer(t:get_extra_info("socket"), print)
      end, "tapio: loop:add_writer: bad argument #1 'fd' (used by a "
        .. "transport or server of the loop)")
      t:close()
      server:close()
    end)
  end)

  it("refuses a regular file (epoll cannot watch one)", function()
    helper.run(function(loop)
      -- the descriptor of a file Lua opened, found in /proc/<pid>/fd
      local path = os.tmpname()
      local file = assert(io.open(path, "r"))
      local fd
      local ls = io.popen("ls -l /proc/" .. helper.pid() .. "/fd")
      for line in ls:lines() do
        local n, target = line:match("(%d+) %-> (.*)$")
        if target == path then
          fd = tonumber(n)
        end
      end
      ls:close()
      assert.is_number(fd)
      assert.has_error(function() loop:add_reader(fd, print) end,
        "tapio: loop:add_reader: bad argument #1 'fd' (a regular file, a "
        .. "directory or a device that cannot poll: epoll cannot watch it)")
      file:close()
      os.remove(path)
    end)
  end)

  it("keeps anchors only while watching; a closed loop refuses", function()
    local loop = tapio.new_loop()
    local rsock, wsock, close = pair()
    local refs = loop:_debug().refs
    loop:add_reader(rsock, function() end)
    loop:add_writer(rsock, function() end)
    assert.is_true(loop:_debug().refs > refs)
    assert.is_true(loop:remove_writer(rsock))
    assert.is_true(loop:remove_reader(rsock))
    assert.are.equal(refs, loop:_debug().refs)
    loop:add_reader(rsock, function() end) -- still watched at close
    loop:close()
    assert.is_false(loop:remove_reader(rsock))
    assert.has_error(function() loop:add_reader(rsock, print) end,
      "tapio: loop:add_reader: the loop is closed")
    close()
    tapio.send(wsock, "") -- closed: an error value, no crash
  end)
end)

describe("loop:add_writer", function()
  it("is called while writable, until removed", function()
    helper.run(function(loop)
      local a, _, close = pair()
      local calls = 0
      local done = loop:create_future()
      loop:add_writer(a, function()
        calls = calls + 1
        if calls == 3 then
          assert.is_true(loop:remove_writer(a))
          done:set_result()
        end
      end)
      done:await()
      tapio.sleep(0.01)
      assert.are.equal(3, calls)
      assert.is_false(loop:remove_writer(a))
      close()
    end)
  end)

  it("and a reader on one descriptor are two watches", function()
    helper.run(function(loop)
      local a, b, close = pair()
      local writable = loop:create_future()
      local readable = loop:create_future()
      loop:add_writer(a, function()
        loop:remove_writer(a)
        writable:set_result()
      end)
      loop:add_reader(a, function()
        readable:set_result(tapio.recv(a, 10))
      end)
      writable:await()
      tapio.send(b, "hi")
      assert.are.equal("hi", readable:await())
      assert.is_true(loop:remove_reader(a))
      close()
    end)
  end)
end)

describe("loop:add_signal_handler", function()
  it("calls the handler, with its arguments, for a signal sent to the "
    .. "process", function()
    helper.run(function(loop)
      local got = loop:create_future()
      loop:add_signal_handler("SIGUSR1", function(a, b)
        if not got:done() then
          got:set_result(a, b)
        end
      end, "usr", 1)
      helper.kill(loop, "USR1")
      local a, b = got:await()
      assert.are.same({ "usr", 1 }, { a, b })
      assert.is_true(loop:remove_signal_handler("USR1"))
      assert.is_false(loop:remove_signal_handler(tapio.signals.SIGUSR1))
    end)
  end)

  it("reaches every loop that watches the signal", function()
    local other = tapio.new_loop()
    local other_calls = 0
    other:add_signal_handler("USR2", function()
      other_calls = other_calls + 1
    end)
    helper.run(function(loop)
      local got = loop:create_future()
      loop:add_signal_handler(tapio.signals.SIGUSR2, function()
        got:set_result()
      end)
      helper.kill(loop, "USR2")
      got:await()
      loop:remove_signal_handler("USR2")
    end)
    helper.wait_until(other, function() return other_calls == 1 end)
    other:close() -- removes its handler too
  end)

  it("may remove itself from its callback", function()
    helper.run(function(loop)
      local calls, removed = 0, nil
      local got = loop:create_future()
      loop:add_signal_handler("HUP", function()
        calls = calls + 1
        removed = loop:remove_signal_handler("HUP")
        got:set_result()
      end)
      helper.kill(loop, "HUP")
      got:await()
      assert.are.equal(1, calls)
      assert.is_true(removed)
    end)
  end)

  it("sends a handler's error to the exception handler", function()
    local errors = helper.run(function(loop, errors)
      local got = loop:create_future()
      loop:add_signal_handler("USR1", function()
        loop:call_soon(function() got:set_result() end)
        error("handler broke")
      end)
      helper.kill(loop, "USR1")
      got:await()
      loop:remove_signal_handler("USR1")
      return errors
    end, { errors_ok = true })
    assert.are.equal(1, #errors)
    assert.are.equal("error in a signal handler", errors[1].message)
    assert.matches("handler broke", tostring(errors[1].exception))
  end)

  it("refuses signals it cannot watch, with clear errors", function()
    helper.run(function(loop)
      local fn = "tapio: loop:add_signal_handler: bad argument #1 'signal' "
      local function refuses(sig, why)
        assert.has_error(function()
          loop:add_signal_handler(sig, print)
        end, fn .. "(" .. why .. ")")
      end
      -- the core's words (tapio_loop_error_message)
      refuses("SIGCHLD", "signal 17 is the subprocess watcher's (SIGCHLD)")
      refuses("KILL", "signal 9 cannot be caught (SIGKILL, SIGSTOP)")
      refuses("SIGSTOP", "signal 19 cannot be caught (SIGKILL, SIGSTOP)")
      refuses("SIGSEGV", "signal 11 is a fault: it would happen again as "
        .. "soon as a handler returned")
      refuses(0, "signal 0 is not a signal number (1..64)")
      refuses(32, "signal 32 is the C library's, for its threads")
      refuses(65, "65 is out of range 0..64")
      refuses("SIGFOO", "unknown signal name 'SIGFOO'")
      refuses(1.5, "number has no integer representation")
      assert.has_error(function()
        loop:add_signal_handler("USR1", "not a function")
      end, "tapio: loop:add_signal_handler: bad argument #2 'callback' "
        .. "(function expected, got string)")
      assert.has_error(function() loop:remove_signal_handler(0) end,
        "tapio: loop:remove_signal_handler: bad argument #1 'signal' (signal "
        .. "0 is not a signal number (1..64))")
      assert.is_false(loop:remove_signal_handler("SIGCHLD"))
    end)
  end)
end)

describe("closing from inside a watch's callback", function()
  -- A reader's and a signal handler's callback each try loop:close (refused:
  -- the loop is running), close a transport and a server, and remove their
  -- own watch; the loop goes on, the transport's connection_lost comes.
  it("is safe for the loop, a transport, a server and the watch itself",
    function()
    helper.run(function(loop)
      local server, t, p = helper.pair(loop)
      local s2, t2, p2 = helper.pair(loop)
      local rsock, wsock, close = pair()
      local seen, done = {}, loop:create_future()
      local function act(what, transport, srv, remove)
        local ok, err = pcall(loop.close, loop)
        seen[what] = { ok, err }
        transport:close()
        srv:close()
        seen[what .. " removed"] = remove()
        if seen.reader and seen.signal and not done:done() then
          done:set_result()
        end
      end
      loop:add_reader(rsock, function()
        act("reader", t, server, function()
          return loop:remove_reader(rsock)
        end)
      end)
      loop:add_signal_handler("USR1", function()
        act("signal", t2, s2, function()
          return loop:remove_signal_handler("USR1")
        end)
      end)
      tapio.send(wsock, "x")
      helper.kill(loop, "USR1")
      done:await()
      p.lost:await()
      p2.lost:await()
      local refused = "tapio: loop:close: cannot close a running loop"
      assert.are.same({ false, refused }, seen.reader)
      assert.are.same({ false, refused }, seen.signal)
      assert.is_true(seen["reader removed"])
      assert.is_true(seen["signal removed"])
      assert.is_false(server:is_serving())
      assert.is_false(s2:is_serving())
      assert.is_false(loop:is_closed())
      close()
    end)
  end)
end)
