-- Streams with TLS: open_connection and start_server with the ssl options
-- (against each other, and against Python's ssl and asyncio as a real
-- peer), writer:start_tls on either side, with the ClientHello already in
-- the reader's buffer (asyncio lost it: cpython#142352, R19), what was
-- batched sent before the upgrade, and start_tls's errors. The
-- certificates are made by spec/tls/make_certs.sh.
local helper = require "spec.helper"
local tapio = helper.tapio

local run, fails, until_true = helper.run, helper.fails, helper.until_true
local cert, server_ctx, client_ctx = helper.cert, helper.server_ctx,
  helper.client_ctx

local python = "/usr/bin/python3"

-- Inside a task: spec/tls/peer.py in mode (a child whose stdout is a
-- stream), and the port it printed (servers) or nil.
local function peer(mode, port)
  local p = tapio.create_subprocess_exec(python, { "spec/tls/peer.py", mode,
    helper.certs(), port and tostring(port) }, { stdout = tapio.PIPE })
  if port then
    return p
  end
  local line = p.stdout:readline()
  return p, assert(tonumber(line:match("^PORT (%d+)")), line)
end

-- Inside a task: the lines a peer printed to its end.
local peer_lines = helper.output_lines

-- A stream server on 127.0.0.1 that echoes lines until the end, or an
-- error of the connection (a client that went: a reset); the server, its
-- port, and the list of its handlers' tasks.
local function echo_server(opts)
  local handlers = {}
  local server = tapio.start_server(function(reader, writer)
    handlers[#handlers + 1] = tapio.current_task()
    pcall(function()
      while true do
        local line = reader:readline()
        if line == "" then
          break
        end
        writer:write(line)
        writer:drain()
      end
    end)
    writer:close()
  end, "127.0.0.1", 0, opts)
  return server, helper.port(server), handlers
end

-- Inside a task: once every handler in the list has ended (one still
-- waiting when the loop closes would be a task destroyed while pending).
local function ended(handlers)
  for _, task in ipairs(handlers) do
    task:await()
  end
end

describe("streams over TLS", function()
  it("carry lines both ways: open_connection and start_server with ssl",
     function()
    run(function()
      local server, port, handlers = echo_server({ ssl = server_ctx() })
      local reader, writer = tapio.open_connection("127.0.0.1", port, {
        ssl = client_ctx(), server_hostname = "localhost",
        ssl_handshake_timeout = 5, limit = 10 })
      assert.are.equal("TLSv1.3", writer:get_extra_info("tls_version"))
      assert.are.equal("localhost", writer:get_extra_info("server_hostname"))
      assert.is_false(writer:can_write_eof())
      assert.has_error(function() writer:write_eof() end,
        "tapio: writer:write_eof: TLS has no half-close "
        .. "(can_write_eof() is false)")
      writer:write("hello\n") -- still open for writing
      assert.are.equal("hello\n", reader:readline())
      writer:write(("x"):rep(20) .. "\n") -- the limit holds over TLS
      assert.are.equal("LimitOverrunError", fails(reader.readline,
                                                 reader).name)
      writer:close()
      writer:wait_closed()
      server:close()
      ended(handlers)
    end)
  end)

  it("drain waits for a slow reader, then raises once the peer reset, " ..
     "closing (cpython#102792, #118950)", function()
    run(function(loop)
      local accepted = loop:create_future()
      local server = tapio.start_server(function(reader, writer)
        accepted:set_result(reader, writer)
      end, "127.0.0.1", 0, { ssl = server_ctx() })
      local reader, writer = tapio.open_connection("127.0.0.1",
        helper.port(server), { ssl = client_ctx(),
        server_hostname = "localhost" })
      local sr, sw = accepted:await()
      local big = 16 * 1024 * 1024 -- more than the sockets hold
      writer:write(("d"):rep(big))
      local drained = loop:create_task(writer.drain, writer)
      for _ = 1, 5 do
        tapio.sleep(0)
      end
      assert.is_false(drained:done()) -- nobody reads: it waits
      assert.are.equal(big, #sr:readexactly(big))
      drained:await() -- and returns once the peer has read
      -- the server aborts with the client's bytes unread: a reset
      sw.transport:pause_reading()
      writer:write(("u"):rep(1000))
      writer:drain() -- on loopback, in the server's socket once written
      sw.transport:abort()
      local err = fails(reader.read, reader)
      assert.are.equal("ECONNRESET", err.name)
      assert.is_true(writer:is_closing())
      assert.is_true(writer.transport:is_closing())
      writer:write("more") -- dropped
      assert.are.equal(err, fails(writer.drain, writer))
      assert.are.equal(0, writer.transport:get_write_buffer_size())
      server:close()
    end)
  end)

  it("drop what is written after the peer went, silently (uvloop 12)",
     function()
    run(function()
      local server = tapio.start_server(function(_, writer)
        writer.transport:abort() -- the TLS session cut, no close_notify
      end, "127.0.0.1", 0, { ssl = server_ctx() })
      local reader, writer = tapio.open_connection("127.0.0.1",
        helper.port(server), { ssl = client_ctx(),
        server_hostname = "localhost" })
      writer:write(("I AM WRITING NOWHERE1"):rep(100))
      local ok, data = pcall(reader.read, reader)
      assert.is_true((ok and data == "") or
                     (not ok and data.name == "ECONNRESET"))
      for _ = 1, 25 do
        writer:write(("I AM WRITING NOWHERE2"):rep(100))
      end
      assert.are.equal(0, writer.transport:get_write_buffer_size())
      assert.are.equal(0, writer:get_write_buffer_size())
      writer:close()
      server:close()
    end)
  end)

  it("raise a failed handshake from open_connection, and its timeout",
     function()
    run(function()
      local server, port = echo_server({ ssl = server_ctx() })
      local err = fails(tapio.open_connection, "127.0.0.1", port,
        { ssl = client_ctx(), server_hostname = "other.example" })
      assert.are.equal("ETLS_HOSTNAME", err.name)
      server:close()
      -- a plain server that never answers the ClientHello (not the line
      -- echo: it would echo the hello's bytes up to a newline byte, and a
      -- hello that ends in one comes back whole, an unexpected message)
      local handlers = {}
      server = tapio.start_server(function(reader, writer)
        handlers[#handlers + 1] = tapio.current_task()
        pcall(reader.read, reader) -- the end, or a reset
        writer:close()
      end, "127.0.0.1", 0)
      port = helper.port(server)
      err = fails(tapio.open_connection, "127.0.0.1", port, {
        ssl = client_ctx(), server_hostname = "localhost",
        ssl_handshake_timeout = 0.2 })
      assert.are.equal("ETIMEDOUT", err.name)
      server:close()
      ended(handlers)
    end)
  end)

  it("talk to Python's asyncio over TLS, as client and as server",
     function()
    if not helper.exists(python) then return end
    run(function()
      local p, port = peer("echo-server")
      local reader, writer = tapio.open_connection("127.0.0.1", port, {
        ssl = client_ctx(), server_hostname = "localhost" })
      writer:write("from lua\n")
      assert.are.equal("from lua\n", reader:readline())
      writer:close()
      assert.are.same({ "GOT from lua", "LOST None" }, peer_lines(p))

      local server, handlers
      server, port, handlers = echo_server({ ssl = server_ctx() })
      p = peer("echo-client", port)
      assert.are.same({ "GOT hello from python", "CLOSED" }, peer_lines(p))
      server:close()
      ended(handlers)
    end)
  end)
end)

describe("streams over TLS, at the end", function()
  it("raise the TLS error of garbage in the stream from readline; close "
     .. "still works (S16)", function()
    if not helper.exists(python) then return end
    run(function()
      local p, port = peer("garbage-server")
      local reader, writer = tapio.open_connection("127.0.0.1", port, {
        ssl = client_ctx(), server_hostname = "localhost" })
      writer:write("hello\n")
      local err = fails(reader.readline, reader)
      assert.are.equal("ETLS", err.name)
      assert.matches("^TLS failed: ", err.message)
      writer:close()
      assert.are.equal(err, fails(writer.wait_closed, writer))
      assert.are.same({ "LINE hello" }, peer_lines(p))
    end)
  end)

  it("drop writes after the peer closed cleanly, raising nothing "
     .. "(uvloop's test_write_to_closed_transport)", function()
    run(function()
      local server = tapio.start_server(function(_, writer)
        writer:close() -- at once: close_notify
      end, "127.0.0.1", 0, { ssl = server_ctx() })
      local reader, writer = tapio.open_connection("127.0.0.1",
        helper.port(server), { ssl = client_ctx(),
        server_hostname = "localhost" })
      writer:write(("I AM WRITING NOWHERE1"):rep(100))
      assert.are.equal("", reader:read())
      assert.is_true(writer:is_closing()) -- TLS has no half-close
      for _ = 1, 25 do
        writer:write(("I AM WRITING NOWHERE2"):rep(100))
      end
      assert.are.equal(0, writer.transport:get_write_buffer_size())
      writer:close()
      writer:wait_closed()
      server:close()
    end)
  end)
end)

describe("streams' TLS options", function()
  it("that do not fit are refused in the words of the function called, "
     .. "not of the loop method under it", function()
    run(function()
      local cb = function() end
      local cases = {
        { "start_server", "ssl_handshake_timeout", function()
          return tapio.start_server(cb, "127.0.0.1", 0,
                                    { ssl_handshake_timeout = 1 }) end },
        { "start_unix_server", "ssl_shutdown_timeout", function()
          return tapio.start_unix_server(cb, os.tmpname(),
                                         { ssl_shutdown_timeout = 1 }) end },
        { "open_connection", "server_hostname", function()
          return tapio.open_connection("127.0.0.1", 1,
                                       { server_hostname = "x" }) end },
        { "open_unix_connection", "ssl_handshake_timeout", function()
          return tapio.open_unix_connection("/nonexistent",
                                            { ssl_handshake_timeout = 1 })
        end },
      }
      for _, case in ipairs(cases) do
        local err = fails(case[3])
        assert.are.equal(tapio.EINVAL, err.code)
        assert.are.equal(("%s: option '%s' is for TLS: give 'ssl' too")
                         :format(case[1], case[2]), err.message)
      end
      local err = fails(function()
        return tapio.start_server(cb, "127.0.0.1", 0, { ssl = client_ctx() })
      end)
      assert.are.equal("start_server: option 'ssl' is a client TLS context; "
                       .. "this call needs a server one", err.message)
    end)
  end)
end)

describe("writer:start_tls", function()
  it("hands the handshake the ClientHello the reader already holds " ..
     "(cpython#142352)", function()
    run(function(loop)
      local buffered = loop:create_future()
      local server = tapio.start_server(function(reader, writer)
        -- the line and the ClientHello behind it both arrived
        until_true(function() return reader:get_buffer_size() > 9 end)
        buffered:set_result(reader:get_buffer_size())
        assert.are.equal("STARTTLS\n", reader:readline())
        writer:start_tls(server_ctx(), { ssl_handshake_timeout = 5 })
        writer:write(reader:readline())
        writer:close()
      end, "127.0.0.1", 0)
      local reader, writer = tapio.open_connection("127.0.0.1",
        helper.port(server))
      writer:write("STARTTLS\n") -- and the ClientHello at once
      writer:start_tls(client_ctx(), { server_hostname = "localhost",
                                       ssl_handshake_timeout = 5 })
      assert.is_true(buffered:await() > 100)
      assert.are.equal("TLSv1.3", writer:get_extra_info("tls_version"))
      writer:write("over tls\n")
      assert.are.equal("over tls\n", reader:readline())
      assert.are.equal("", reader:read())
      writer:close()
      server:close()
    end)
  end)

  it("sends what was batched before the upgrade in plain", function()
    run(function()
      local server = tapio.start_server(function(reader, writer)
        assert.are.equal("STARTTLS\n", reader:readline())
        writer:write("GO\n") -- batched: the reader still holds "x\n"
        assert.are.equal("x\n", reader:readline())
        writer:start_tls(server_ctx())
        writer:write(reader:readline())
        writer:close()
      end, "127.0.0.1", 0)
      local reader, writer = tapio.open_connection("127.0.0.1",
        helper.port(server))
      writer:write("STARTTLS\nx\n")
      assert.are.equal("GO\n", reader:readline())
      writer:start_tls(client_ctx(), { server_hostname = "localhost" })
      writer:write("over tls\n")
      assert.are.equal("over tls\n", reader:readline())
      writer:close()
      server:close()
    end)
  end)

  it("upgrades with Python's asyncio on the other side, both ways",
     function()
    if not helper.exists(python) then return end
    run(function()
      -- a Python client that upgrades after our "GO"
      local server = tapio.start_server(function(reader, writer)
        assert.are.equal("STARTTLS\n", reader:readline())
        writer:write("GO\n")
        writer:start_tls(server_ctx())
        writer:write(reader:readline())
        writer:close()
      end, "127.0.0.1", 0)
      local p = peer("starttls-client", helper.port(server))
      assert.are.same({ "LINE GO", "GOT hello after starttls", "CLOSED" },
                      peer_lines(p))
      server:close()

      -- a Python server that upgrades after its "GO"
      local port
      p, port = peer("starttls-server")
      local reader, writer = tapio.open_connection("127.0.0.1", port)
      writer:write("STARTTLS\n")
      assert.are.equal("GO\n", reader:readline())
      writer:start_tls(client_ctx(), { server_hostname = "localhost" })
      writer:write("hello from lua\n")
      assert.are.equal("hello from lua\n", reader:readline())
      writer:close()
      assert.are.same({ "LINE STARTTLS", "GOT hello from lua" },
                      peer_lines(p))
    end)
  end)

  it("raises a failed handshake, as the reader and drain do then",
     function()
    run(function(loop)
      local ended = loop:create_future()
      local server = tapio.start_server(function(reader, writer)
        assert.are.equal("STARTTLS\n", reader:readline())
        ended:set_result(pcall(writer.start_tls, writer, server_ctx()))
      end, "127.0.0.1", 0)
      local reader, writer = tapio.open_connection("127.0.0.1",
        helper.port(server))
      writer:write("STARTTLS\n")
      local ctx = tapio.tls_context({ cafile = cert("ca2.pem") })
      local err = fails(writer.start_tls, writer, ctx,
                        { server_hostname = "localhost" })
      assert.are.equal("ETLS_UNKNOWN_CA", err.name)
      assert.are.equal("ETLS_UNKNOWN_CA", fails(reader.read, reader).name)
      assert.are.equal("ETLS_UNKNOWN_CA", fails(writer.drain, writer).name)
      assert.is_false(ended:await()) -- the server's upgrade failed too
      server:close()
    end)
  end)

  it("bound a close by ssl_shutdown_timeout when the peer stops reading",
     function()
    -- counted from close(), the flush included, as asyncio counts it: the
    -- server's reader stops taking input, so the 8 MiB never all go out
    run(function(loop)
      local hold = loop:create_future()
      local handlers = {}
      local server = tapio.start_server(function(_, writer)
        handlers[#handlers + 1] = tapio.current_task()
        hold:await() -- never reads
        writer:close()
      end, "127.0.0.1", 0, { ssl = server_ctx() })
      local _, writer = tapio.open_connection("127.0.0.1", helper.port(server),
        { ssl = client_ctx(), server_hostname = "localhost",
          ssl_shutdown_timeout = 0.3 })
      writer:write(("x"):rep(8 * 1024 * 1024))
      assert.is_true(writer.transport:get_write_buffer_size() > 0)
      local t0 = loop:time()
      writer:close()
      local err = fails(writer.wait_closed, writer)
      assert.are.equal("ETIMEDOUT", err.name)
      assert.is_truthy(err.message:find("TLS shutdown timed out", 1, true))
      assert.is_true(loop:time() - t0 >= 0.29)
      hold:set_result(true)
      server:close()
      ended(handlers)
    end)
  end)

  it("leaves what the reader holds to be read when it is refused",
     function()
    run(function()
      local server, port, handlers = echo_server()
      local reader, writer = tapio.open_connection("127.0.0.1", port)
      writer:write("one\ntwo\n")
      until_true(function() return reader:get_buffer_size() == 8 end)
      -- refused before any handshake: a client that checks names needs one
      assert.are.equal("EINVAL",
        fails(writer.start_tls, writer, client_ctx()).name)
      assert.are.equal(8, reader:get_buffer_size())
      assert.are.equal("one\n", reader:readline())
      assert.are.equal("two\n", reader:readline())
      writer:write("three\n") -- still plain both ways
      assert.are.equal("three\n", reader:readline())
      writer:close()
      server:close()
      ended(handlers)
    end)
  end)

  it("closes the connection when cancelled during the handshake",
     function()
    run(function(loop)
      local server, port, handlers = echo_server() -- plain: never
      -- answers the hello
      local reader, writer = tapio.open_connection("127.0.0.1", port)
      local upgrading = helper.started(loop, writer.start_tls, writer,
        client_ctx(), { server_hostname = "localhost" })
      upgrading:cancel("given up")
      local err = fails(upgrading.await, upgrading)
      assert.is_true(tapio.is_cancelled(err))
      writer:wait_closed()
      assert.is_true(writer:is_closing())
      server:close()
      ended(handlers)
    end)
  end)

  it("checks its arguments", function()
    run(function()
      local server, port, handlers = echo_server()
      local _, writer = tapio.open_connection("127.0.0.1", port)
      assert.matches("streams_tls_spec.lua:%d+: tapio: writer:start_tls: " ..
        "bad argument #1 'sslcontext' %(tapio.tls_context expected, got " ..
        "string%)", fails(function() writer:start_tls("ctx") end))
      assert.matches("writer:start_tls: bad argument #2 'opts' %(table or " ..
        "nil expected, got number%)",
        fails(writer.start_tls, writer, client_ctx(), 5))
      assert.matches("streams_tls_spec.lua:%d+: tapio: writer:start_tls: " ..
        "unknown option 'ssl'", fails(function()
          writer:start_tls(client_ctx(), { ssl = client_ctx() })
        end))
      -- a client that checks names needs one: an error value
      assert.are.equal("EINVAL",
        fails(writer.start_tls, writer, client_ctx()).name)
      assert.matches("writer:start_tls: bad self",
        fails(writer.start_tls, tapio.StreamReader(), client_ctx()))
      local p = tapio.create_subprocess_exec("cat", {}, {
        stdin = tapio.PIPE })
      assert.matches("writer:start_tls: not a connection's writer",
        fails(p.stdin.start_tls, p.stdin, client_ctx()))
      p.stdin:close()
      assert.are.equal(0, p:wait())
      writer:close()
      server:close()
      ended(handlers)
    end)
  end)
end)
