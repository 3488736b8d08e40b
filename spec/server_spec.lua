-- Servers: listening, serving, closing, their clients, serve_forever and
-- wait_closed, errors.
local helper = require "spec.helper"
local tapio = helper.tapio

local run, recorder = helper.run, helper.recorder

local function connect(loop, port, host)
  return loop:create_connection(function() return recorder(loop) end,
    host or "127.0.0.1", port)
end

-- A server whose accepted protocols are appended to `accepted`.
local function serve(loop, host, port, opts)
  local accepted = {}
  local server = loop:create_server(function()
    local p = recorder(loop)
    accepted[#accepted + 1] = p
    return p
  end, host, port, opts)
  return server, accepted
end

describe("a server", function()
  it("listens on the hosts it is given, with ephemeral ports", function()
    run(function(loop)
      local server = serve(loop, { "127.0.0.1", "127.0.0.2" }, 0)
      local addrs, fds = server:addresses(), server:sockets()
      assert.are.equal(2, #addrs)
      assert.are.equal(2, #fds)
      assert.are_not.equal(addrs[1][2], addrs[2][2])
      assert.are_not.equal(fds[1], fds[2])
      for i = 1, 2 do
        local t, p = connect(loop, addrs[i][2], addrs[i][1])
        t:close()
        p.lost:await()
      end
      server:close()
    end)
  end)

  it("binds an address given twice once: a host repeated, a name and its "
     .. "address (cpython bpo-26338, python/asyncio#315)", function()
    run(function(loop)
      local server = serve(loop, { "127.0.0.1", "127.0.0.1" }, 0)
      assert.are.equal(1, #server:addresses()) -- not two ephemeral ports
      server:close()
      -- at a fixed port: one a listener of reuse_port holds meanwhile (a
      -- port freed by a close may be another program's before it is bound
      -- again). With reuse_port a second bind of an address does not fail
      -- but listens twice, which addresses() shows.
      local holder = serve(loop, "127.0.0.1", 0, { reuse_port = true })
      local port = helper.port(holder)
      server = serve(loop, { "localhost", "127.0.0.1", "localhost" }, port,
                     { reuse_port = true, family = tapio.AF_INET })
      holder:close() -- the connect below comes to server
      local seen = {}
      for _, a in ipairs(server:addresses()) do
        assert.are.equal(port, a[2])
        assert.is_nil(seen[a[1]], "bound twice: " .. a[1])
        seen[a[1]] = true
      end
      assert.is_true(seen["127.0.0.1"])
      local t, p = connect(loop, port)
      t:close()
      p.lost:await()
      server:close()
    end)
  end)

  it("listens on every interface without a host", function()
    run(function(loop)
      local server = serve(loop, nil, 0)
      local families = {}
      for _, a in ipairs(server:addresses()) do
        families[a.family] = true
      end
      assert.is_true(families[tapio.AF_INET])
      local t = connect(loop, server:addresses()[1][2])
      t:close()
      server:close()
    end)
  end)

  it("listens on IPv6 and reports Python's 4-tuple", function()
    run(function(loop)
      local ok, server = pcall(serve, loop, "::1", 0)
      if not ok and (server.name == "EADDRNOTAVAIL"
                     or server.name == "EAFNOSUPPORT") then
        io.stderr:write("(no IPv6 loopback here: IPv6 spec skipped)\n")
        return
      end
      assert(ok, server)
      local a = server:addresses()[1]
      assert.are.equal("::1", a[1])
      assert.are.equal(tapio.AF_INET6, a.family)
      assert.are.equal(("('::1', %d, 0, 0)"):format(a[2]), tostring(a))
      local t, p = connect(loop, a[2], "::1")
      assert.are.equal("::1", t:get_extra_info("peername").host)
      t:close()
      p.lost:await()
      server:close()
    end)
  end)

  it("serves, stops serving on close, and keeps its connections",
    function()
    run(function(loop)
      local server, accepted = serve(loop, "127.0.0.1", 0)
      local port = helper.port(server)
      assert.is_true(server:is_serving())
      assert.are.equal(loop, server:get_loop())
      local t, p = connect(loop, port)
      accepted[1].made:await()
      assert.are.equal(1, server:client_count())
      server:close()
      server:close() -- idempotent
      assert.is_false(server:is_serving())
      assert.are.same({}, server:sockets())
      assert.are.equal("tapio.server (closed)", tostring(server))
      local ok, err = pcall(connect, loop, port)
      assert.is_false(ok)
      assert.are.equal("ECONNREFUSED", err.name)
      -- the accepted connection still works
      t:write("still")
      assert.are.equal("still", accepted[1]:bytes(5):await())
      t:close()
      p.lost:await()
      accepted[1].lost:await()
      assert.are.equal(0, server:client_count())
      assert.has_error(function() server:start_serving() end,
        "tapio: server:start_serving: the server is closed")
    end)
  end)

  it("accepts only after start_serving when made with start_serving false",
    function()
    run(function(loop)
      local server, accepted = serve(loop, "127.0.0.1", 0,
        { start_serving = false, backlog = 10, reuse_address = true })
      assert.is_false(server:is_serving())
      assert.are.equal("tapio.server (not serving)", tostring(server))
      local t = connect(loop, helper.port(server)) -- the kernel's backlog
      tapio.sleep(0.02) -- a window in which nothing may be accepted
      assert.are.equal(0, #accepted)
      server:start_serving()
      server:start_serving() -- idempotent
      assert.is_true(server:is_serving())
      while #accepted == 0 do
        tapio.sleep(0)
      end
      accepted[1].made:await()
      t:close()
      server:close()
    end)
  end)

  it("closes or aborts the connections it accepted", function()
    run(function(loop)
      local server, accepted = serve(loop, "127.0.0.1", 0)
      local port = helper.port(server)
      local t1, p1 = connect(loop, port)
      local t2, p2 = connect(loop, port)
      while #accepted < 2 do
        tapio.sleep(0)
      end
      accepted[1].made:await()
      accepted[2].made:await()
      -- t1's peer by its address: the kernel does not promise to hand the
      -- connections to accept in the order they were made
      local mine = t1:get_extra_info("sockname").port
      local peer1 = accepted[1]
      if peer1.transport:get_extra_info("peername").port ~= mine then
        peer1 = accepted[2]
      end
      assert.are.equal(mine, peer1.transport:get_extra_info("peername").port)
      peer1.transport:write("flushed first")
      server:close_clients()
      assert.are.equal("flushed first", p1:bytes(13):await())
      p1.lost:await()
      p2.lost:await()
      local t3, p3 = connect(loop, port)
      while #accepted < 3 do
        tapio.sleep(0)
      end
      accepted[3].made:await()
      server:abort_clients()
      assert.are.equal(false, accepted[3].lost:await())
      p3.lost:await()
      server:close()
      for _, t in ipairs({ t1, t2, t3 }) do
        t:close()
      end
    end)
  end)

  it("wait_closed waits for the close and for its connections", function()
    run(function(loop)
      local server, accepted = serve(loop, "127.0.0.1", 0)
      local t, p = connect(loop, helper.port(server))
      while #accepted == 0 do
        tapio.sleep(0)
      end
      local done = false
      local waiter = loop:create_task(function()
        server:wait_closed()
        done = true
      end)
      server:close()
      tapio.sleep(0.02) -- a window in which the waiter may not finish
      assert.is_false(done) -- a connection is still open
      t:close()
      p.lost:await()
      waiter:await()
      assert.is_true(done)
      server:wait_closed() -- already so: returns
    end)
  end)

  it("wait_closed waits for the connection its factory gave after "
     .. "closing the server", function()
    run(function(loop)
      local server
      local sp = recorder(loop, { connection_made = function(self, tr)
        self.transport = tr
        tr:write("hi")
        self.made:set_result(tr)
      end })
      server = loop:create_server(function()
        server:close()
        return sp
      end, "127.0.0.1", 0)
      local done = false
      local waiter = loop:create_task(function()
        server:wait_closed()
        done = true
      end)
      local t, p = connect(loop, helper.port(server))
      p:bytes(2):await() -- turns of the loop since the close
      assert.are.equal(1, server:client_count())
      assert.is_false(done)
      t:close()
      sp.lost:await()
      waiter:await()
      assert.is_true(done)
    end)
  end)

  it("wait_closed gives a future outside a task", function()
    local loop = tapio.new_loop()
    local server = loop:run_until_complete(loop:create_server(function()
      return {}
    end, "127.0.0.1", 0))
    local fut = server:wait_closed()
    assert.is_true(tapio.is_future(fut))
    server:close()
    loop:run_until_complete(fut)
    assert.is_true(fut:done())
    loop:close()
    assert.is_nil(server:wait_closed()) -- the loop is closed
  end)

  it("serve_forever returns when the server is closed", function()
    run(function(loop)
      local server = serve(loop, "127.0.0.1", 0, { start_serving = false })
      loop:call_later(0.01, function()
        assert.is_true(server:is_serving()) -- serve_forever started it
        server:close()
      end)
      server:serve_forever()
      assert.is_false(server:is_serving())
      local line = debug.getinfo(1, "l").currentline + 1
      local ok, err = pcall(function() server:serve_forever() end)
      assert.is_false(ok) -- closed: raised as its own, at the caller's line
      assert.are.equal(("%s:%d: tapio: server:serve_forever: the server is "
        .. "closed"):format(debug.getinfo(1, "S").short_src, line), err)
    end)
  end)

  it("serve_forever, cancelled, closes the server and raises", function()
    run(function(loop)
      local server = serve(loop, "127.0.0.1", 0)
      local task = loop:create_task(function() server:serve_forever() end)
      tapio.sleep(0)
      assert.has_error(function() server:serve_forever() end,
        "tapio: server:serve_forever: already serving forever")
      task:cancel()
      local ok, err = pcall(task.await, task)
      assert.is_false(ok)
      assert.is_true(tapio.is_cancelled(err))
      assert.is_false(server:is_serving())
    end)
  end)

  it("serve_forever, cancelled with a client connected, raises at once "
     .. "and leaves the connection open (asyncio's waits for it to end: "
     .. "cpython#123720)", function()
    run(function(loop)
      local server, accepted = serve(loop, "127.0.0.1", 0)
      local task = loop:create_task(function() server:serve_forever() end)
      tapio.sleep(0)
      local t, p = connect(loop, helper.port(server))
      helper.wait_until(loop, function() return accepted[1] end)
      accepted[1].made:await()
      task:cancel()
      local ok, err = pcall(task.await, task)
      assert.is_false(ok)
      assert.is_true(tapio.is_cancelled(err))
      accepted[1].transport:write("still here")
      assert.are.equal("still here", p:bytes(10):await())
      t:close()
    end)
  end)

  it("serve_forever outside a task gives a future", function()
    run(function(loop)
      local server = serve(loop, "127.0.0.1", 0)
      local fut
      loop:call_soon(function() fut = server:serve_forever() end)
      tapio.sleep(0)
      assert.is_true(tapio.is_future(fut))
      server:close()
      fut:await()
    end)
  end)

  it("fails with EADDRINUSE on a port in use, unless reuse_port",
    function()
    run(function(loop)
      local first = serve(loop, "127.0.0.1", 0)
      local port = helper.port(first)
      local ok, err = pcall(serve, loop, "127.0.0.1", port)
      assert.is_false(ok)
      assert.are.equal(tapio.EADDRINUSE, err.code)
      assert.are.equal("error while attempting to bind on address "
        .. "('127.0.0.1', " .. port .. "): address already in use",
        err.message)
      first:close()
      local a = serve(loop, "127.0.0.1", 0, { reuse_port = true })
      local b = serve(loop, "127.0.0.1", helper.port(a), { reuse_port = true })
      assert.are.equal(helper.port(a), helper.port(b))
      a:close()
      b:close()
    end)
  end)

  -- SO_KEEPALIVE itself is read back by spec/c/test_server.c.
  it("takes keep_alive (asyncio 3.13), as start_server does; a Unix "
    .. "server does not", function()
    run(function(loop)
      local server = serve(loop, "127.0.0.1", 0, { keep_alive = true })
      local t, p = connect(loop, helper.port(server))
      t:close()
      p.lost:await()
      server:close()
      server = tapio.start_server(function(_, writer) writer:close() end,
        "127.0.0.1", 0, { keep_alive = true })
      local reader = tapio.open_connection("127.0.0.1", helper.port(server))
      assert.are.equal("", reader:read())
      server:close()
      assert.has_error(function()
        serve(loop, "127.0.0.1", 0, { keep_alive = "yes" })
      end, "tapio: loop:create_server: bad option 'keep_alive' (boolean "
        .. "expected)")
      assert.has_error(function()
        loop:create_unix_server(function() end, "/x", { keep_alive = true })
      end, "tapio: loop:create_unix_server: unknown option 'keep_alive'")
    end)
  end)

  it("serves on with no reference left to it (uvloop#261)", function()
    run(function(loop)
      local port
      do
        local server = serve(loop, "127.0.0.1", 0)
        port = helper.port(server)
      end
      helper.collect()
      local t, p = connect(loop, port)
      t:write("still served")
      t:close()
      assert.is_false(p.lost:await())
      assert.are.equal(1, loop:_debug().servers) -- held until closed
    end)
  end)

  it("closes the sockets it bound when a later address fails "
     .. "(as asyncio's create_server)", function()
    run(function(loop)
      -- a port taken on 127.0.0.2 and free on 127.0.0.1 (another program
      -- may hold it there: then another port)
      local taken, port, err, before
      for _ = 1, 20 do
        taken = serve(loop, "127.0.0.2", 0)
        port = helper.port(taken)
        before = helper.open_sockets()
        err = helper.fails(serve, loop, { "127.0.0.1", "127.0.0.2" }, port)
        if err.message:find("'127.0.0.2'", 1, true) then break end
        taken:close()
      end
      assert.are.equal("EADDRINUSE", err.name)
      assert.are.equal("error while attempting to bind on address "
        .. "('127.0.0.2', " .. port .. "): address already in use",
        err.message)
      -- 127.0.0.1's listener went with the failure (binding its port again
      -- would race other programs for it)
      assert.are.same({}, helper.new_sockets(before))
      taken:close()
    end)
  end)

  it("checks its arguments and options", function()
    run(function(loop)
      local f = function() return {} end
      assert.has_error(function() loop:create_server(f, "127.0.0.1") end,
        "tapio: loop:create_server: bad argument #3 'port' "
        .. "(a port is required unless opts.sock is given)")
      assert.has_error(function() loop:create_server(f, 42, 0) end,
        "tapio: loop:create_server: bad argument #2 'host' "
        .. "(string, list or nil expected, got number)")
      assert.has_error(function() loop:create_server(f, { "a", 1 }, 0) end,
        "tapio: loop:create_server: bad argument #2 'host' "
        .. "(list of strings expected)")
      assert.has_error(function()
        loop:create_server(f, nil, 0, { local_port = 1 })
      end, "tapio: loop:create_server: unknown option 'local_port'")
      assert.has_error(function()
        loop:create_server(f, nil, 0, { backlog = -1 })
      end, "tapio: loop:create_server: bad option 'backlog' "
        .. "(integer 0..2147483647 expected)")
      assert.has_error(function()
        loop:create_server(f, nil, 0, { [1] = true })
      end, "tapio: loop:create_server: unknown option '1'")
      assert.has_error(function() loop:create_server(nil, nil, 0) end,
        "tapio: loop:create_server: bad argument #1 'protocol_factory' "
        .. "(function expected, got nil)")
      -- sock excludes a port, before the call: the descriptor stays open
      assert.has_error(function()
        loop:create_server(f, nil, 1, { sock = 0 })
      end, "tapio: loop:create_server: bad argument #3 'port' "
        .. "(host/port and opts.sock cannot be given together)")
      local server = serve(loop, "127.0.0.1", 0)
      assert.has_error(function() server.close(42) end,
        "tapio: server:close: bad self (tapio.server expected, got number)")
      server:close()
    end)
  end)

  -- asyncio's `async with server`, with Lua 5.4's to-be-closed variables
  -- (the chunk is loaded: LuaJIT cannot parse one).
  it("is closed at the end of a <close> variable's block, and in a task "
     .. "waited closed, its connections gone (Lua 5.4)", function()
    if _VERSION ~= "Lua 5.4" then
      return -- no to-be-closed variables
    end
    local log = {}
    local in_task, outside = assert(load([[
      local tapio, helper, log = ...
      return function(loop)
        local server
        do
          local s <close> = tapio.start_server(function(reader, writer)
            reader:read() -- to the end: the client closes soon
            writer:close()
            log[#log + 1] = "connection ended"
          end, "127.0.0.1", 0)
          server = s
          local _, writer = tapio.open_connection("127.0.0.1",
                                                  helper.port(s))
          loop:call_soon(writer.close, writer)
        end -- its __close waits here until the connection is gone
        log[#log + 1] = "block left"
        return server
      end, function(loop)
        local server
        do
          local s <close> = loop:run_until_complete(loop:create_server(
            function() return {} end, "127.0.0.1", 0))
          server = s
        end -- closed: nothing to wait in
        return server
      end
    ]]))(tapio, helper, log)
    local server = run(in_task)
    assert.are.same({ "connection ended", "block left" }, log)
    assert.is_false(server:is_serving())
    local loop = tapio.new_loop()
    server = outside(loop)
    assert.is_false(server:is_serving())
    assert.are.same({}, server:sockets())
    loop:close()
  end)
end)

describe("a Unix server", function()
  it("leaves its socket file when cleanup_socket is false", function()
    local path = os.tmpname()
    os.remove(path)
    run(function(loop)
      local server = loop:create_unix_server(function() return {} end, path,
        { cleanup_socket = false, backlog = 5, start_serving = true })
      assert.is_true(server:is_serving())
      server:close()
    end)
    assert.is_true(helper.exists(path))
    os.remove(path)
  end)

  it("listens at a Linux abstract name ('@name', or asyncio's '\\0name'), "
     .. "with no file", function()
    local name = helper.abstract_name("tapio-spec")
    run(function(loop)
      local accepted = loop:create_future()
      local server = loop:create_unix_server(function()
        local p = recorder(loop)
        accepted:set_result(p)
        return p
      end, "\0" .. name)
      assert.are.equal("@" .. name, server:addresses()[1])
      assert.is_false(helper.exists("@" .. name)) -- no file, here or there
      local t = loop:create_unix_connection(function()
        return recorder(loop)
      end, "@" .. name)
      assert.are.equal("@" .. name, t:get_extra_info("peername"))
      t:write("over the abstract name")
      assert.are.equal("over the abstract name",
        accepted:await():bytes(22):await())
      -- the name is taken while the server has it, free after its close
      local ok, err = pcall(loop.create_unix_server, loop, function() end,
        "@" .. name)
      assert.is_false(ok)
      assert.are.equal("EADDRINUSE", err.name)
      t:close()
      server:close()
      server:wait_closed()
      loop:create_unix_server(function() end, "@" .. name):close()
      -- a NUL left inside cannot reach C; "@" alone names nothing
      assert.has_error(function()
        loop:create_unix_connection(function() end, "\0a\0b")
      end, "tapio: loop:create_unix_connection: bad argument #2 'path' (a "
        .. "NUL byte inside the path (an abstract name is \"\\0name\" or "
        .. "\"@name\", with no other NUL))")
      ok, err = pcall(loop.create_unix_server, loop, function() end, "@")
      assert.is_false(ok)
      assert.are.equal("EINVAL", err.name)
    end)
  end)

  it("meets Python's asyncio at an abstract name", function()
    local name = helper.abstract_name("tapio-py")
    run(function(loop)
      local server = tapio.start_unix_server(function(reader, writer)
        writer:write("echo: " .. reader:readline())
        writer:close()
      end, "@" .. name)
      local code = ([[
import asyncio
async def main():
    r, w = await asyncio.open_unix_connection("\0%s")
    w.write(b"from python\n")
    print((await r.read()).decode(), end="")
    w.close()
asyncio.run(main())
]]):format(name)
      local proc = tapio.create_subprocess_exec("/usr/bin/python3",
        { "-c", code }, { stdout = tapio.PIPE })
      local out = proc:communicate()
      assert.are.equal(0, proc.returncode)
      assert.are.equal("echo: from python\n", out)
      server:close()
      server:wait_closed()
    end)
  end)

  it("leaves a file that is not a socket at its path, failing "
     .. "(python/asyncio#425)", function()
    run(function(loop)
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write("someone's data")
      f:close()
      local ok, err = pcall(loop.create_unix_server, loop, function()
        return {}
      end, path)
      assert.is_false(ok)
      assert.are.equal("EADDRINUSE", err.name)
      f = assert(io.open(path))
      assert.are.equal("someone's data", f:read("a"))
      f:close()
      os.remove(path)
    end)
  end)

  it("checks its arguments", function()
    run(function(loop)
      assert.has_error(function()
        loop:create_unix_server(function() end, nil)
      end, "tapio: loop:create_unix_server: bad argument #2 'path' "
        .. "(string expected, got nil)")
      assert.has_error(function()
        loop:create_unix_server(function() end, "/x", { reuse_port = true })
      end, "tapio: loop:create_unix_server: unknown option 'reuse_port'")
      local ok, err = pcall(loop.create_unix_server, loop, function() end,
        ("x"):rep(200))
      assert.is_false(ok)
      assert.are.equal("ENAMETOOLONG", err.name)
      assert.matches("create_unix_server: 'path' is 200 bytes long; a "
        .. "socket's path holds 107", err.message, 1, true)
      for _, path in ipairs { "", "@", "\0" } do
        err = select(2, pcall(loop.create_unix_server, loop,
          function() end, path))
        assert.are.equal("EINVAL", err.name)
        assert.matches("create_unix_server: 'path' ", err.message, 1, true)
      end
      err = select(2, pcall(loop.create_unix_connection, loop,
        function() end, "@" .. ("x"):rep(108)))
      assert.are.equal("ENAMETOOLONG", err.name)
      assert.matches("create_unix_connection: 'path' is an abstract name "
        .. "of 108 bytes; one holds 107", err.message, 1, true)
    end)
  end)
end)

describe("a server whose loop is closed", function()
  it("is closed and harmless", function()
    local loop = tapio.new_loop()
    local server = loop:run_until_complete(loop:create_server(function()
      return {}
    end, "127.0.0.1", 0))
    loop:close()
    assert.is_false(server:is_serving())
    assert.are.same({}, server:sockets())
    assert.are.same({}, server:addresses())
    assert.are.equal(0, server:client_count())
    assert.is_nil(server:get_loop())
    server:close()
    server:close_clients()
    server:abort_clients()
    assert.has_error(function() server:start_serving() end)
    assert.are.equal(0, loop:_debug().refs)
    assert.are.equal(0, loop:_debug().servers)
  end)
end)
