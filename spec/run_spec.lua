-- tapio.run's clean exit (what main left running is cancelled or closed,
-- and reported) and its SIGINT (tapio.handle_sigint), with a real signal
-- sent to this process.
local helper = require "spec.helper"
local tapio = helper.tapio

-- Runs main under tapio.run with an exception handler that keeps what it
-- gets; returns run's pcall results and the contexts.
local function run(main)
  local contexts = {}
  local r = table.pack and table.pack or function(...)
    return { n = select("#", ...), ... }
  end
  local results = r(pcall(tapio.run, function()
    tapio.get_running_loop():set_exception_handler(function(_, ctx)
      contexts[#contexts + 1] = ctx
    end)
    return main(tapio.get_running_loop())
  end))
  return results, contexts
end

-- A transport on one end of a socket pair whose other end a reader of
-- the loop drains (add_reader: not something tapio.run closes), counting
-- the bytes until the end of the stream.
local function drained_pair(loop, proto)
  local a, b = tapio.socketpair()
  local seen = { bytes = 0, eof = false }
  function seen.read()
    local data = tapio.recv(b, 65536)
    seen.bytes = seen.bytes + #data
    if data == "" then
      seen.eof = true
      loop:remove_reader(b)
      tapio.close_fd(b)
    end
  end
  loop:add_reader(b, seen.read)
  local t = loop:create_connection(function() return proto end, { sock = a })
  return t, seen
end

describe("tapio.run at exit", function()
  it("closes the transports main left open, flushing them, and says so",
    function()
    local seen, proto
    local results, contexts = run(function(loop)
      proto = helper.recorder(loop)
      local t
      t, seen = drained_pair(loop, proto)
      t:write(string.rep("x", 1024 * 1024)) -- more than a socket holds
      assert.is_true(t:get_write_buffer_size() > 0)
      return "done"
    end)
    assert.is_true(results[1], results[2])
    assert.are.equal("done", results[2])
    -- what the kernel still holds for the reader: the loop is gone
    while not seen.eof do
      seen.read()
    end
    assert.are.equal(1024 * 1024, seen.bytes) -- flushed, then closed
    assert.are.same({ "made", "pause", "resume", "lost" }, proto.events)
    assert.is_false(proto.lost:result()) -- a clean close
    assert.are.equal(1, #contexts)
    assert.are.equal("tapio.run() ended what main left running: closed 1 "
      .. "transport", contexts[1].message)
    assert.are.equal(1, #contexts[1].transports)
    assert.are.equal(0, #contexts[1].servers + #contexts[1].tasks)
  end)

  it("aborts what does not flush within tapio.shutdown_timeout", function()
    local proto, b
    local saved = tapio.shutdown_timeout
    tapio.shutdown_timeout = 0.2
    local clock = tapio.new_loop() -- its time() is the monotonic clock
    local t0 = clock:time()
    local results, contexts = run(function(loop)
      local a
      a, b = tapio.socketpair() -- b is never read
      proto = helper.recorder(loop)
      local t = loop:create_connection(function() return proto end,
        { sock = a })
      t:write(string.rep("y", 1024 * 1024))
    end)
    tapio.shutdown_timeout = saved
    tapio.close_fd(b)
    assert.is_true(results[1], results[2])
    local took = clock:time() - t0
    clock:close()
    assert.is_true(took >= 0.2 and took < 2, "took " .. took .. " s")
    assert.are.equal("ECANCELED", proto.lost:result().name)
    assert.are.equal(1, #contexts[1].transports)
  end)

  it("closes servers, cancels tasks, and reports each", function()
    local sleeper, server
    local results, contexts = run(function(loop)
      server = loop:create_server(function()
        return helper.recorder(loop)
      end, "127.0.0.1", 0)
      sleeper = tapio.create_task(function() tapio.sleep(60) end)
      tapio.sleep(0)
    end)
    assert.is_true(results[1], results[2])
    assert.is_true(sleeper:cancelled())
    assert.is_false(server:is_serving())
    assert.are.equal(0, #server:sockets())
    assert.are.equal(1, #contexts)
    assert.are.equal("tapio.run() ended what main left running: cancelled "
      .. "1 task, closed 1 server", contexts[1].message)
    assert.are.equal(sleeper, contexts[1].tasks[1])
    assert.are.equal(server, contexts[1].servers[1])
  end)

  it("reports a task that fails as it is cancelled, naming it", function()
    local task
    local results, contexts = run(function()
      task = tapio.create_task(function()
        pcall(tapio.sleep, 60)
        error("failed in its cleanup")
      end):set_name("cleaner")
      tapio.sleep(0)
    end)
    assert.is_true(results[1], results[2])
    assert.are.equal(2, #contexts)
    local ctx = contexts[1].task and contexts[1] or contexts[2]
    assert.are.equal("unhandled error in a task during tapio.run() shutdown",
      ctx.message)
    assert.matches("failed in its cleanup", ctx.exception, 1, true)
    assert.are.equal(task, ctx.task)
    assert.are.equal(task, ctx.future)
    assert.are.equal("cleaner", ctx.task:get_name())
  end)

  it("ends a child process main left running", function()
    local proto
    local clock = tapio.new_loop()
    local t0 = clock:time()
    local results, contexts = run(function(loop)
      local _
      _, proto = loop:subprocess_exec(function()
        return helper.sub_recorder(loop)
      end, "sleep", { "60" }, { stdin = tapio.DEVNULL })
    end)
    local took = clock:time() - t0
    clock:close()
    assert.is_true(results[1], results[2])
    assert.is_true(took < 30, "took " .. took .. " s")
    assert.are.equal(-tapio.signals.SIGKILL, proto.exited:result())
    assert.are.equal("tapio.run() ended what main left running: closed 1 "
      .. "transport", contexts[1].message)
  end)

  it("ends at once with subprocess tasks cancelled mid-way, every child "
     .. "reaped (cpython#125502)", function()
    local before, made = helper.children(), 0
    local clock = tapio.new_loop()
    local t0 = clock:time()
    local results = run(function(loop)
      local function child()
        local p = tapio.create_subprocess_exec("sleep", { "60" },
          { stdin = tapio.PIPE, stdout = tapio.PIPE })
        made = made + 1
        return p:communicate("")
      end
      local tasks = {}
      for i = 1, 6 do
        tasks[i] = loop:create_task(child)
      end
      tapio.sleep(0)
      tasks[1]:cancel() -- while its child is being made
      tasks[2]:cancel()
      helper.until_true(function() return made >= 4 end)
      tasks[3]:cancel() -- in communicate
      tasks[4]:cancel()
      for i = 1, 4 do -- the last two are tapio.run's to cancel
        assert.is_true(tapio.is_cancelled(select(2, pcall(tasks[i].await,
          tasks[i]))))
      end
    end)
    local took = clock:time() - t0
    clock:close()
    assert.is_true(results[1], results[2])
    assert.is_true(took < 30, "took " .. took .. " s")
    assert.are.same(before, helper.children()) -- none left, not a zombie
  end)

  it("closes without a word the transport of a child that has exited",
    function()
    local proto, transport
    local results, contexts = run(function(loop)
      local _
      transport, proto = loop:subprocess_exec(function()
        return helper.sub_recorder(loop)
      end, "sh", { "-c", "echo hi" }, { stdin = tapio.DEVNULL })
      -- its stdout's end never read: the transport and the pipe's stay
      -- open
      transport:get_pipe_transport(1):pause_reading()
      assert.are.equal(0, proto.exited:await())
    end)
    assert.is_true(results[1], results[2])
    assert.is_true(transport:is_closing())
    assert.is_true(transport:get_pipe_transport(1) == nil
                   or transport:get_pipe_transport(1):is_closing())
    assert.are.same({}, contexts)
  end)

  it("closes without a word the pipe of an exited child a grandchild holds",
    function()
    local results, contexts = run(function()
      local proc = tapio.create_subprocess_exec("sh",
        { "-c", "echo hi; sleep 2 2>/dev/null &" }, { stdout = tapio.PIPE })
      assert.are.equal("hi\n", proc.stdout:readline())
      assert.are.equal(0, proc:wait()) -- at the exit: the pipe stays open
    end)
    assert.is_true(results[1], results[2])
    assert.are.same({}, contexts)
  end)

  it("reports nothing when main ended everything itself", function()
    local results, contexts = run(function(loop)
      local server = loop:create_server(function()
        return helper.recorder(loop)
      end, "127.0.0.1", 0)
      local t, p = loop:create_connection(function()
        return helper.recorder(loop)
      end, "127.0.0.1", helper.port(server))
      t:close()
      p.lost:await()
      server:close()
      server:wait_closed()
    end)
    assert.is_true(results[1], results[2])
    assert.are.same({}, contexts)
  end)

  it("reports a task's error nobody retrieved before it returns, also "
     .. "when os.exit(tapio.run(main)) leaves the state uncollected",
     function()
    local results, contexts = run(function()
      tapio.create_task(function() error("nobody asked") end)
      tapio.sleep(0)
      return 3
    end)
    assert.is_true(results[1], results[2])
    assert.are.equal(3, results[2])
    assert.are.equal(1, #contexts)
    assert.are.equal("task exception was never retrieved",
                     contexts[1].message)
    local out, status = helper.run_script([[
      local tapio = require "tapio"
      os.exit(tapio.run(function()
        tapio.create_task(function() error("nobody asked") end)
        tapio.sleep(0)
        return 3
      end))]])
    assert.are.equal(3, status)
    assert.is_truthy(out:find("task exception was never retrieved\n"
                              .. "SCRIPT:3: nobody asked", 1, true), out)
  end)
end)

describe("tapio.run with tapio.handle_sigint", function()
  local saved
  before_each(function()
    saved = tapio.handle_sigint
    tapio.handle_sigint = true
  end)
  after_each(function()
    tapio.handle_sigint = saved
  end)

  it("cancels main on SIGINT: its cleanup runs, run raises interrupted",
    function()
    local cleaned, server
    local results = run(function(loop)
      server = loop:create_server(function()
        return helper.recorder(loop)
      end, "127.0.0.1", 0)
      loop:create_task(function() helper.kill(loop, "INT") end)
      local ok, err = pcall(server.serve_forever, server)
      cleaned = { ok = ok, cancelled = tapio.is_cancelled(err) }
      error(err, 0)
    end)
    assert.is_false(results[1])
    local err = results[2]
    assert.is_true(tapio._interrupted(err))
    assert.are.equal(tapio.EINTR, err.code)
    assert.are.equal("interrupted (SIGINT)", err.message)
    assert.are.same({ ok = false, cancelled = true }, cleaned)
    assert.is_false(server:is_serving()) -- serve_forever closed it
    -- the traceback shows where main waited
    local tb = tapio._traceback(err)
    assert.matches("^interrupted %(SIGINT%)\nstack traceback:", tb)
    assert.matches("run_spec%.lua:%d+: in function", tb)
  end)

  it("returns main's results when main handles the cancellation",
    function()
    local results = run(function(loop)
      loop:create_task(function() helper.kill(loop, "INT") end)
      local ok, err = pcall(tapio.sleep, 60)
      assert.is_false(ok)
      assert.is_true(tapio.is_cancelled(err))
      return "handled"
    end)
    assert.is_true(results[1], results[2])
    assert.are.equal("handled", results[2])
    assert.is_false(tapio._interrupted(results[2]))
  end)

  it("leaves SIGINT alone when main ends first", function()
    local results = run(function() return 1 end)
    assert.is_true(results[1])
    -- a second run watches SIGINT again (the first gave it back)
    results = run(function(loop)
      loop:create_task(function() helper.kill(loop, "INT") end)
      tapio.sleep(60)
    end)
    assert.is_true(tapio._interrupted(results[2]))
  end)
end)
