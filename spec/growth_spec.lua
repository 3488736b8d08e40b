-- Steady state: every kind of operation, in its normal and its failing or
-- cancelled variants, leaves the loop and the process where it found
-- them. A long-running server leaks if any per-operation state outlives
-- the operation (a registry reference, an entry of a loop's list, a
-- descriptor, memory of the core freed only at the loop's close), and
-- neither ASan nor valgrind sees that: everything is freed at the end.
-- Each kind runs a few times (buffers and tables settle), is measured
-- (helper.measure), runs n times more and is measured again: references,
-- anchors, the core's memory and descriptors the same, Lua's memory
-- within 64 KiB: its count moves by some 30 KiB from one measure to the
-- next (table sizes, interned strings; LuaJIT's traces), and a leak is
-- caught by the exact figures first (whatever anchors a Lua object).
-- gc_spec.lua proves the same of 10,000 TCP connections.
local helper = require "spec.helper"
local dns = require "spec.support.dns"
local tapio = helper.tapio

local WARM = 20   -- cycles before the first measure
local LUA_KIB = 64 -- what Lua's own count may move (as gc_spec's)

-- A few turns of the loop: what ends a turn after its last callback
-- (a transport freed once connection_lost returned) is gone.
local function settle()
  for _ = 1, 3 do
    tapio.sleep(0)
  end
end

-- Inside a task: cycle(i) n times; then, when given, until done() holds
-- (what ends after the last cycle's own wait: the server's end of a
-- connection, a query the resolver gives up on), for 5 s at most (then
-- the figures say what stayed); what loop and the process hold then.
local function round(loop, n, cycle, done)
  for i = 1, n do
    cycle(i)
  end
  if done then
    pcall(tapio.timeout, 5, helper.until_true, done)
  end
  settle()
  return helper.measure(loop)
end

-- Inside a task: a round of WARM cycles (n if fewer), then one of n:
-- asserts that the loop and the process hold what they held before.
-- Lua's memory grown past the bound gets one more round of n, which must
-- stay within it: a leak grows with every round, a table's new size
-- (LuaJIT's string table, say) once.
local function steady(loop, what, n, cycle, done)
  local before = round(loop, math.min(WARM, n), cycle, done)
  local after = round(loop, n, cycle, done)
  what = ("%s, %d times"):format(what, n)
  if after.lua - before.lua > LUA_KIB then
    before, after = after, round(loop, n, cycle, done)
    what = what .. " (a second round)"
  end
  helper.assert_steady(before, after, what, LUA_KIB)
end

local function run(fn)
  return helper.run(fn, { deadline = 60 })
end

local function tmp_path()
  local path = os.tmpname()
  os.remove(path)
  return path
end

-- A server's protocol: echoes what it gets; counts its ends in lost.
local function echo_server(loop, counts)
  return function()
    return {
      connection_made = function(self, t) self.t = t end,
      data_received = function(self, d) self.t:write(d) end,
      connection_lost = function() counts.lost = counts.lost + 1 end,
    }
  end
end

-- Inside a task: a connection made by connect() (a create call's
-- arguments after the factory), "ping" echoed, closed, lost.
local function exchange(loop, connect)
  local t, p = connect(function() return helper.recorder(loop) end)
  t:write("ping")
  assert.are.equal("ping", p:bytes(4):await())
  t:close()
  assert.is_false(p.lost:await())
end

-- Inside a task: the error a create call (fn(...)) raises.
local function create_error(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return err
end

-- Inside a task: fn(...) as a task, let run until it waits, cancelled;
-- asserts it ended cancelled.
local function cancel_waiting(loop, fn, ...)
  local task = helper.started(loop, fn, ...)
  assert.is_false(task:done())
  task:cancel()
  local ok, err = pcall(task.await, task)
  assert.is_false(ok)
  assert.is_true(tapio.is_cancelled(err), tostring(err))
end

describe("TLS connections", function()
  local sctx, cctx

  setup(function()
    sctx = helper.server_ctx()
    cctx = helper.client_ctx()
  end)

  teardown(function()
    sctx:close()
    cctx:close()
  end)

  it("made, echoed, closed on both ends", function()
    run(function(loop)
      local counts = { lost = 0 }
      local server = loop:create_server(echo_server(loop, counts),
        "127.0.0.1", 0, { ssl = sctx })
      local port = helper.port(server)
      steady(loop, "TLS connections", 100, function()
        exchange(loop, function(f)
          return loop:create_connection(f, "127.0.0.1", port, { ssl = cctx })
        end)
      end, function() return server:client_count() == 0 end)
      server:close()
    end)
  end)

  it("whose handshake fails: the server's CA is not the client's", function()
    run(function(loop)
      local other = helper.client_ctx { cafile = helper.cert("ca2.pem") }
      local made = 0
      local server = loop:create_server(function()
        made = made + 1
        return {}
      end, "127.0.0.1", 0, { ssl = sctx })
      local port = helper.port(server)
      steady(loop, "TLS handshakes failed", 100, function()
        local err = create_error(loop.create_connection, loop,
          function() return {} end, "127.0.0.1", port, { ssl = other })
        assert.are.equal("ETLS_UNKNOWN_CA", err.name)
      end, function() return server:client_count() == 0 end)
      assert.are.equal(0, made)
      server:close()
      other:close()
    end)
  end)

  -- A peer that accepts and never answers the ClientHello.
  local function mute_server(loop, counts)
    return loop:create_server(function()
      counts.accepted = counts.accepted + 1
      return { connection_lost = function()
        counts.lost = counts.lost + 1
      end }
    end, "127.0.0.1", 0)
  end

  it("whose handshake is cancelled with its task", function()
    run(function(loop)
      local counts = { accepted = 0, lost = 0 }
      local server = mute_server(loop, counts)
      local port = helper.port(server)
      steady(loop, "TLS handshakes cancelled", 100, function()
        local accepted = counts.accepted + 1
        local task = loop:create_task(loop.create_connection, loop,
          function() return {} end, "127.0.0.1", port, { ssl = cctx })
        helper.until_true(function() return counts.accepted == accepted end)
        task:cancel() -- in its handshake
        assert.is_true(tapio.is_cancelled(select(2, pcall(task.await, task))))
      end, function() return server:client_count() == 0 end)
      server:close()
    end)
  end)

  it("whose handshake times out, 100 at a time", function()
    run(function(loop)
      local counts = { accepted = 0, lost = 0 }
      local server = mute_server(loop, counts)
      local port = helper.port(server)
      steady(loop, "TLS handshakes timed out (100 a time)", 2, function()
        local tasks = {}
        for i = 1, 100 do
          tasks[i] = loop:create_task(loop.create_connection, loop,
            function() return {} end, "127.0.0.1", port,
            { ssl = cctx, ssl_handshake_timeout = 0.05 })
        end
        for _, task in ipairs(tasks) do
          local ok, err = pcall(task.await, task)
          assert.is_false(ok)
          assert.are.equal("ETIMEDOUT", err.name)
        end
      end, function() return server:client_count() == 0 end)
      server:close()
    end)
  end)

  it("upgraded with start_tls on both ends", function()
    run(function(loop)
      local served, made = 0, 0
      local server = tapio.start_server(function(reader, writer)
        writer:start_tls(sctx)
        writer:write(reader:readexactly(4))
        writer:close()
        writer:wait_closed()
        served = served + 1
      end, "127.0.0.1", 0)
      local port = helper.port(server)
      steady(loop, "start_tls upgrades", 100, function()
        made = made + 1
        local reader, writer = tapio.open_connection("127.0.0.1", port)
        writer:start_tls(cctx, { server_hostname = "localhost" })
        writer:write("ping")
        assert.are.equal("ping", reader:readexactly(4))
        writer:close()
        writer:wait_closed()
      end, function()
        return served == made and server:client_count() == 0
      end)
      server:close()
      server:wait_closed()
    end)
  end)
end)

describe("connections", function()
  it("over Unix sockets", function()
    run(function(loop)
      local counts = { lost = 0 }
      local path = tmp_path()
      local server = loop:create_unix_server(echo_server(loop, counts), path)
      steady(loop, "Unix connections", 500, function()
        exchange(loop, function(f)
          return loop:create_unix_connection(f, path)
        end)
      end, function() return server:client_count() == 0 end)
      server:close()
    end)
  end)

  it("refused, TCP and Unix", function()
    run(function(loop)
      local gone = loop:create_server(function() return {} end,
                                      "127.0.0.1", 0)
      local port = helper.port(gone)
      gone:close()
      local path = tmp_path()
      local unbound = assert(tapio.socket(tapio.AF_UNIX, tapio.SOCK_STREAM))
      assert(tapio.bind(unbound, path)) -- bound, not listening: refused
      steady(loop, "refused connects", 500, function()
        local err = create_error(loop.create_connection, loop,
          function() return {} end, "127.0.0.1", port)
        assert.are.equal("ECONNREFUSED", err.name)
        err = create_error(loop.create_unix_connection, loop,
          function() return {} end, path)
        assert.are.equal("ECONNREFUSED", err.name)
      end)
      tapio.close_fd(unbound)
      os.remove(path)
    end)
  end)

  it("cancelled while they connect to a listener that never accepts",
     function()
    run(function(loop)
      -- backlog 0, full with one connection: the next SYNs go unanswered
      local stall = loop:create_server(function() return {} end,
        "127.0.0.1", 0, { backlog = 0, start_serving = false })
      local port = helper.port(stall)
      local filler = loop:create_connection(function() return {} end,
                                            "127.0.0.1", port)
      steady(loop, "connects cancelled", 1000, function()
        cancel_waiting(loop, loop.create_connection, loop,
          function() return {} end, "127.0.0.1", port)
      end)
      filler:close()
      stall:close()
    end)
  end)

  it("raced by Happy Eyeballs, the first address refused", function()
    local server = dns.start()
    finally(server.stop)
    run(function(loop)
      dns.use(loop, server, 0.5)
      local counts = { lost = 0 }
      local echo = loop:create_server(echo_server(loop, counts),
                                      "127.0.0.1", 0)
      local port = helper.port(echo)
      -- two4's addresses: 127.0.0.2 (no listener: refused), 127.0.0.1
      steady(loop, "Happy Eyeballs connections", 100, function()
        exchange(loop, function(f)
          return loop:create_connection(f, "two4.tapio.test", port,
                                        { happy_eyeballs_delay = 0.25 })
        end)
      end, function() return echo:client_count() == 0 end)
      echo:close()
    end)
  end)
end)

describe("servers", function()
  it("created and closed, TCP and Unix", function()
    run(function(loop)
      local path = tmp_path()
      steady(loop, "servers", 500, function()
        local s = loop:create_server(function() return {} end,
                                     "127.0.0.1", 0)
        s:close()
        s:wait_closed()
        s = loop:create_unix_server(function() return {} end, path)
        s:close()
        s:wait_closed()
      end)
    end)
  end)

  it("whose serve_forever is cancelled", function()
    run(function(loop)
      steady(loop, "serve_forever cancelled", 500, function()
        local s = loop:create_server(function() return {} end,
          "127.0.0.1", 0, { start_serving = false })
        cancel_waiting(loop, s.serve_forever, s)
        assert.is_false(s:is_serving())
        s:wait_closed()
      end)
    end)
  end)
end)

describe("datagram endpoints", function()
  it("opened, used and closed", function()
    run(function(loop)
      -- The datagrams come from one sender: the loop keeps the address
      -- values of up to 1,024 senders (lua/address.c's cache), some 48
      -- KiB once full, which a new sender a cycle would fill.
      local sender = loop:create_datagram_endpoint(function() return {} end,
        { local_addr = { "127.0.0.1", 0 } })
      steady(loop, "datagram endpoints", 1000, function()
        local t, p = helper.dgram_endpoint(loop,
          { local_addr = { "127.0.0.1", 0 } })
        sender:sendto("x", t:get_extra_info("sockname"))
        assert.are.equal("x", (p:got(1)))
        t:close()
        assert.is_false(p.lost:await())
      end)
      sender:close()
    end)
  end)

  it("whose sends are refused, then closed", function()
    run(function(loop)
      local gone = loop:create_datagram_endpoint(function() return {} end,
        { local_addr = { "127.0.0.1", 0 } })
      local addr = gone:get_extra_info("sockname")
      gone:close()
      steady(loop, "datagrams refused", 1000, function()
        local t, p = helper.dgram_endpoint(loop, { remote_addr = addr })
        while #p.errors == 0 do
          t:sendto("x")
          tapio.sleep(0)
        end
        assert.are.equal("ECONNREFUSED", p.errors[1].name)
        t:close()
        assert.is_false(p.lost:await())
      end)
    end)
  end)

  it("aborted with datagrams queued", function()
    run(function(loop)
      -- a Unix datagram socket nobody reads: once full, sends queue
      local path = tmp_path()
      local sink = assert(tapio.socket(tapio.AF_UNIX, tapio.SOCK_DGRAM))
      assert(tapio.bind(sink, path))
      steady(loop, "datagram endpoints aborted", 1000, function()
        local t, p = helper.dgram_endpoint(loop, { remote_addr = path })
        repeat
          t:sendto(("q"):rep(512))
        until t:get_write_buffer_size() > 2048
        t:abort()
        assert.is_false(p.lost:await())
      end)
      tapio.close_fd(sink)
      os.remove(path)
    end)
  end)
end)

describe("subprocesses", function()
  it("run to their end with pipes", function()
    run(function(loop)
      steady(loop, "subprocesses", 50, function()
        local status, p = helper.run_child(loop, "sh",
          { "-c", "echo out; echo err >&2" })
        assert.are.equal(0, status)
        assert.are.equal("out\n", p:output(1))
      end)
    end)
  end)

  it("killed", function()
    run(function(loop)
      steady(loop, "subprocesses killed", 50, function()
        local t, p = loop:subprocess_exec(function()
          return helper.sub_recorder(loop)
        end, "sleep", { "60" })
        assert.is_true(t:kill())
        p.lost:await()
        assert.are.equal(-9, p.exited:result())
      end)
    end)
  end)

  it("whose pipes are closed before it ends", function()
    run(function(loop)
      steady(loop, "subprocesses' pipes closed early", 50, function()
        local t, p = loop:subprocess_exec(function()
          return helper.sub_recorder(loop)
        end, "cat")
        t:get_pipe_transport(1):close()
        t:get_pipe_transport(2):close()
        t:get_pipe_transport(0):close() -- cat sees its end and exits
        p.lost:await()
        assert.are.equal(0, p.exited:result())
      end)
    end)
  end)

  it("with streams: communicate", function()
    run(function()
      local loop = tapio.get_running_loop()
      steady(loop, "create_subprocess_exec and communicate", 50, function()
        local p = tapio.create_subprocess_exec("cat", nil,
          { stdin = "pipe", stdout = "pipe" })
        assert.are.equal("hello", (p:communicate("hello")))
        assert.are.equal(0, p.returncode)
      end)
    end)
  end)
end)

describe("pipes", function()
  it("read and written to their end", function()
    run(function(loop)
      steady(loop, "pipes", 1000, function()
        local r, w = tapio.pipe()
        local _, rp = loop:connect_read_pipe(function()
          return helper.recorder(loop)
        end, r)
        local wt, wp = loop:connect_write_pipe(function()
          return helper.recorder(loop)
        end, w)
        wt:write("ping")
        wt:close()
        assert.is_false(wp.lost:await())
        assert.is_false(rp.lost:await())
        assert.are.equal("ping", rp.received)
      end)
    end)
  end)
end)

describe("the resolver", function()
  local server

  setup(function()
    server = dns.start()
  end)

  teardown(function()
    server.stop()
  end)

  local function run_dns(fn)
    run(function(loop)
      dns.use(loop, server, 0.5)
      fn(loop)
    end)
  end

  it("answers names and numbers, getaddrinfo and getnameinfo", function()
    run_dns(function(loop)
      steady(loop, "lookups", 500, function()
        assert.are.equal("127.0.0.1",
          loop:getaddrinfo("v4.tapio.test", 80)[1].addr.host)
        assert.are.equal("127.0.0.1",
          loop:getaddrinfo("127.0.0.1", 80)[1].addr.host)
        assert.are.equal("localhost", (loop:getnameinfo({ "127.0.0.1", 80 })))
        assert.are.equal("127.0.0.1", (loop:getnameinfo({ "127.0.0.1", 80 },
          tapio.NI_NUMERICHOST)))
      end)
    end)
  end)

  it("fails lookups: no such name, a server failure", function()
    run_dns(function(loop)
      steady(loop, "failed lookups", 500, function()
        local err = create_error(loop.getaddrinfo, loop, "nx.tapio.test", 80)
        assert.are.equal("EAI_NONAME", err.name)
        err = create_error(loop.getaddrinfo, loop, "fail.v4.tapio.test", 80)
        assert.are.equal("EAI_AGAIN", err.name)
      end)
    end)
  end)

  it("drops lookups cancelled in flight", function()
    run_dns(function(loop)
      loop:getaddrinfo("v4.tapio.test", 80) -- the resolver made
      settle()
      local core = loop:memory()
      steady(loop, "lookups cancelled", 300, function()
        cancel_waiting(loop, loop.getaddrinfo, loop,
                       "silent.v4.tapio.test", 80)
      end, function()
        -- once the resolver gave up on the queries (its timeout)
        return loop:memory() == core
      end)
    end)
  end)
end)

describe("to_thread", function()
  local function twice(x)
    return 2 * x
  end

  it("runs jobs", function()
    run(function(loop)
      steady(loop, "to_thread jobs", 1000, function(i)
        assert.are.equal(2 * i, tapio.to_thread(twice, i))
        assert.are.equal(2 * i, loop:run_in_executor(nil, twice, i))
      end, function() return loop:_debug().jobs == 0 end)
    end)
  end)

  it("drops the jobs cancelled, started or not", function()
    run(function(loop)
      -- 70 jobs at once: the pool keeps up to 64 jobs' memory for the
      -- next ones (src/work.c), as many as were in flight at once
      local all = {}
      for k = 1, 70 do
        all[k] = loop:create_task(tapio.to_thread, twice, k)
      end
      tapio.wait(all)
      steady(loop, "to_thread jobs cancelled", 100, function(i)
        local tasks = {}
        for k = 1, 10 do
          tasks[k] = loop:create_task(tapio.to_thread, twice, i)
        end
        tapio.sleep(0)
        for _, task in ipairs(tasks) do
          task:cancel()
          pcall(task.await, task)
        end
      end, function() return loop:_debug().jobs == 0 end)
    end)
  end)
end)

describe("scheduled calls", function()
  it("run or cancelled: call_soon, call_later, call_at", function()
    run(function(loop)
      steady(loop, "scheduled calls", 2000, function()
        local fut = loop:create_future()
        loop:call_soon(print):cancel()
        loop:call_later(3600, print):cancel()
        loop:call_at(loop:time() + 3600, print):cancel()
        loop:call_later(0, fut.set_result, fut, 1)
        loop:call_at(loop:time(), function() end)
        loop:call_soon(function() end)
        fut:await()
      end)
    end)
  end)
end)

describe("tasks", function()
  it("cancelled while they await a future", function()
    run(function(loop)
      local fut = loop:create_future()
      steady(loop, "tasks cancelled", 2000, function()
        cancel_waiting(loop, fut.await, fut)
        assert.is_true(fut:cancelled()) -- with its task, as asyncio's
        fut = loop:create_future()
      end)
    end)
  end)

  it("cancelled while parked in a stream's read and drain", function()
    run(function(loop)
      local held = loop:create_future()
      local server = tapio.start_server(function(reader, writer)
        held:set_result(reader, writer) -- reads nothing
      end, "127.0.0.1", 0)
      local reader, writer = tapio.open_connection("127.0.0.1",
                                                   helper.port(server))
      local _, peer = held:await()
      -- The peer reads nothing: the writer pauses, and resumes only once
      -- all is sent (low-water mark 0), which the full socket never takes.
      writer.transport:set_write_buffer_limits(65536, 0)
      repeat
        writer:write(("d"):rep(65536))
        tapio.sleep(0)
      until writer.transport:get_write_buffer_size() > 4 * 65536
      steady(loop, "stream reads and drains cancelled", 1000, function()
        cancel_waiting(loop, reader.read, reader, 10)
        cancel_waiting(loop, writer.drain, writer)
      end)
      writer.transport:abort()
      peer:close()
      server:close()
    end)
  end)

  it("wait_for timing out, TaskGroup with a failing child, gather",
     function()
    run(function(loop)
      steady(loop, "wait_for, TaskGroup, gather", 200, function()
        local never = loop:create_future()
        local err = create_error(tapio.wait_for, never, 0.0001)
        assert.are.equal("ETIMEDOUT", err.name)
        assert.is_true(never:cancelled())
        err = create_error(tapio.TaskGroup, function(tg)
          tg:create_task(function() loop:create_future():await() end)
          tg:create_task(function() error("child") end)
        end)
        assert.is_not_nil(tostring(err):find("child", 1, true))
        local all = tapio.gather({ function() return 1 end,
                                   function() return 2 end })
        assert.are.same({ n = 2, 1, 2 }, all)
        err = create_error(tapio.gather, { function() error("one") end,
          function() tapio.sleep(0) end })
        assert.is_not_nil(tostring(err):find("one", 1, true))
      end)
    end)
  end)

  it("cancelled in Queue:get, Event:wait, Lock:acquire, Semaphore:acquire",
     function()
    run(function(loop)
      local q, ev, lock, sem = tapio.Queue(), tapio.Event(), tapio.Lock(),
                               tapio.Semaphore(0)
      lock:acquire()
      steady(loop, "queue and sync waits cancelled", 1000, function()
        cancel_waiting(loop, q.get, q)
        cancel_waiting(loop, ev.wait, ev)
        cancel_waiting(loop, lock.acquire, lock)
        cancel_waiting(loop, sem.acquire, sem)
      end)
      lock:release()
    end)
  end)
end)

describe("streams", function()
  it("open_connection and start_server, closed on both ends", function()
    run(function(loop)
      local server = tapio.start_server(function(reader, writer)
        writer:write(reader:readline())
        writer:close()
        writer:wait_closed()
      end, "127.0.0.1", 0)
      local port = helper.port(server)
      steady(loop, "stream connections", 500, function()
        local reader, writer = tapio.open_connection("127.0.0.1", port)
        writer:write("ping\n")
        assert.are.equal("ping\n", reader:readline())
        assert.are.equal("", reader:read())
        writer:close()
        writer:wait_closed()
      end, function() return server:client_count() == 0 end)
      server:close()
      server:wait_closed()
    end)
  end)

  it("whose readuntil fails: the limit, the end", function()
    run(function(loop)
      local server = tapio.start_server(function(_, writer)
        writer:write(("x"):rep(64) .. "\nabc")
        writer:close()
        writer:wait_closed()
      end, "127.0.0.1", 0)
      local port = helper.port(server)
      steady(loop, "readuntil errors", 300, function()
        local reader, writer = tapio.open_connection("127.0.0.1", port,
                                                     { limit = 16 })
        local err = create_error(reader.readuntil, reader, "\n")
        assert.are.equal(tapio.EMSGSIZE, err.code) -- LimitOverrunError
        reader:readexactly(65)
        err = create_error(reader.readuntil, reader, "\n")
        assert.are.equal(tapio.EOF, err.code) -- IncompleteReadError
        writer:close()
        writer:wait_closed()
      end, function() return server:client_count() == 0 end)
      server:close()
      server:wait_closed()
    end)
  end)
end)

describe("watches", function()
  it("add_reader and remove_reader", function()
    run(function(loop)
      local a, b = tapio.socketpair()
      steady(loop, "readers", 2000, function()
        local fut = loop:create_future()
        loop:add_reader(a, function()
          fut:set_result(tapio.recv(a, 10))
          loop:remove_reader(a)
        end)
        tapio.send(b, "x")
        assert.are.equal("x", fut:await())
        assert.is_false(loop:remove_reader(a))
      end)
      tapio.close_fd(a)
      tapio.close_fd(b)
    end)
  end)

  it("add_signal_handler and remove_signal_handler", function()
    run(function(loop)
      steady(loop, "signal handlers", 2000, function()
        loop:add_signal_handler("USR2", print)
        assert.is_true(loop:remove_signal_handler("USR2"))
      end)
    end)
  end)
end)

describe("sock_* operations", function()
  it("sock_connect, sock_accept, sock_recv", function()
    run(function(loop)
      local l = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
      assert(tapio.bind(l, { "127.0.0.1", 0 }))
      assert(tapio.listen(l))
      local addr = tapio.getsockname(l)
      steady(loop, "sock_* operations", 300, function()
        local c = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
        local accepting = loop:create_task(loop.sock_accept, loop, l)
        loop:sock_connect(c, addr)
        local fd = accepting:await()
        loop:sock_sendall(c, "ping")
        assert.are.equal("ping", loop:sock_recv(fd, 10))
        tapio.close_fd(c)
        assert.are.equal("", loop:sock_recv(fd, 10))
        tapio.close_fd(fd)
      end)
      tapio.close_fd(l)
    end)
  end)

  it("cancelled: sock_recv, sock_accept, sock_connect", function()
    run(function(loop)
      local l = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
      assert(tapio.bind(l, { "127.0.0.1", 0 }))
      assert(tapio.listen(l, 0))
      local addr = tapio.getsockname(l)
      local filler = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
      loop:sock_connect(filler, addr) -- the backlog is full
      local a, b = tapio.socketpair()
      local quiet = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
      assert(tapio.bind(quiet, { "127.0.0.1", 0 }))
      assert(tapio.listen(quiet))
      steady(loop, "sock_* operations cancelled", 300, function()
        cancel_waiting(loop, loop.sock_recv, loop, a, 10)
        cancel_waiting(loop, loop.sock_accept, loop, quiet)
        local c = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
        cancel_waiting(loop, loop.sock_connect, loop, c, addr)
        tapio.close_fd(c)
      end)
      for _, fd in ipairs { l, filler, a, b, quiet } do
        tapio.close_fd(fd)
      end
    end)
  end)
end)
