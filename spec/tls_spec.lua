-- TLS from Lua: contexts, the ssl options, what a TLS transport tells,
-- handshakes that fail with error values that say why, start_tls (with a
-- reader's buffered bytes), close_notify and its timeout, and Python's
-- ssl + asyncio as a real peer both ways. The certificates are made by
-- spec/tls/make_certs.sh with the openssl command.
local helper = require "spec.helper"
local tapio = helper.tapio

local run, recorder, port_of = helper.run, helper.recorder, helper.port

local certs = helper.certs()
local cert, server_ctx, client_ctx = helper.cert, helper.server_ctx,
  helper.client_ctx

-- Inside a task: a TLS server and a client connected to it.
local function tls_pair(loop, sctx, cctx, sproto, cproto, copts)
  local accepted = loop:create_future()
  local server = loop:create_server(function()
    local p = sproto or recorder(loop)
    accepted:set_result(p)
    return p
  end, "127.0.0.1", 0, { ssl = sctx or server_ctx() })
  local opts = { ssl = cctx or client_ctx(), server_hostname = "localhost" }
  for k, v in pairs(copts or {}) do opts[k] = v end
  local t, p = loop:create_connection(function()
    return cproto or recorder(loop)
  end, "127.0.0.1", port_of(server), opts)
  local sp = accepted:await()
  sp.made:await()
  return server, t, p, sp
end

describe("tapio.tls_context", function()
  it("is made from a table and knows its side", function()
    assert.are.equal("client", client_ctx():side())
    assert.are.equal("server", server_ctx():side())
    assert.matches("^tapio.tls_context %(client%)$", tostring(client_ctx()))
    -- nil as none (opts from a variable): a client context, no crash
    assert.are.equal("client", tapio.tls_context(nil):side())
    assert.are.equal("client", tapio.tls_context():side())
  end)

  it("raises an error value that says why a file is wrong", function()
    local ok, err = pcall(tapio.tls_context, { side = "server",
      cert_file = cert("nothere.pem") })
    assert.is_false(ok)
    assert.are.equal("ENOENT", err.name)
    assert.matches("nothere.pem", err.message)
    ok, err = pcall(tapio.tls_context, { side = "server",
      cert_file = cert("server.pem"), key_file = cert("client.key") })
    assert.is_false(ok)
    assert.are.equal("ETLS", err.name)
    assert.matches("key values mismatch", err.message)
    assert.matches("client.key: ", err.message, 1, true) -- which file
    ok, err = pcall(tapio.tls_context, { side = "server",
      cert_pem = "not PEM", key_pem = "nor this" })
    assert.is_false(ok)
    assert.are.equal("tapio: tls_context: the certificate chain: no "
                     .. "certificate in the PEM text", err.message)
  end)

  it("raises at once on bad options", function()
    assert.has_error(function() tapio.tls_context({ side = "both" }) end,
      "tapio: tls_context: bad option 'side' ('both': \"client\" or "
      .. "\"server\" expected)")
    assert.has_error(function() tapio.tls_context({ verify = "x" }) end,
      "tapio: tls_context: bad option 'verify' ('x': \"none\", "
      .. "\"optional\" or \"required\" expected)")
    assert.has_error(function() tapio.tls_context({ cafile = 5 }) end,
      "tapio: tls_context: bad option 'cafile' (string expected, got "
      .. "number)")
    assert.has_error(function() tapio.tls_context({ verify = false }) end,
      "tapio: tls_context: bad option 'verify' (string expected, got "
      .. "boolean)")
    assert.has_error(function()
      tapio.tls_context({ check_hostname = "no" })
    end, "tapio: tls_context: bad option 'check_hostname' (boolean "
      .. "expected, got string)")
    -- both at once: a name check that checks nothing (Python refuses it)
    assert.has_error(function()
      tapio.tls_context({ verify = "none", check_hostname = true })
    end, "tapio: tls_context: check_hostname = true with verify = 'none' "
      .. "(nothing verified, no name checked): set one or the other")
    assert.is_truthy(tapio.tls_context({ verify = "none",
      check_hostname = false }))
    -- a misspelt option (Python's certfile) is not a context without it
    assert.has_error(function()
      tapio.tls_context({ side = "server", certfile = cert("server.pem") })
    end, "tapio: tls_context: unknown option 'certfile'")
    assert.has_error(function() tapio.tls_context({ "client" }) end,
      "tapio: tls_context: unknown option '1'")
    -- a server context without a certificate would fail every handshake
    assert.has_error(function() tapio.tls_context({ side = "server" }) end,
      "tapio: tls_context: a server context needs a certificate "
      .. "(cert_file or cert_pem), or sni")
    assert.are.equal("server", tapio.tls_context({ side = "server",
      sni = { ["a.example"] = server_ctx() } }):side())
    -- a setting the core refuses is named
    local ok, err = pcall(tapio.tls_context, { side = "client",
      ciphers = "NOPE" })
    assert.is_false(ok)
    assert.matches("^tapio: tls_context: ciphers/ciphersuites: ", err.message)
    ok, err = pcall(tapio.tls_context, { alpn = { "h2", "" } })
    assert.is_false(ok)
    assert.are.equal("tapio: tls_context: alpn: a protocol name is 1 to 255 "
                     .. "bytes", err.message)
    assert.has_error(function() tapio.tls_context({ alpn = "h2" }) end,
      "tapio: tls_context: option 'alpn' must be a list of at most 64 "
      .. "strings")
    assert.has_error(function()
      tapio.tls_context({ min_version = "TLSv1.0" })
    end, "tapio: tls_context: bad option 'min_version' ('TLSv1.0': "
      .. "\"TLSv1.2\" or \"TLSv1.3\" expected)")
  end)

  it("checks the ssl options of the create calls (S1)", function()
    run(function(loop)
      local f = function() return {} end
      assert.has_error(function()
        loop:create_connection(f, "127.0.0.1", 1, { ssl = client_ctx(),
          ssl_handshake_timeout = 0 })
      end, "tapio: loop:create_connection: bad option "
           .. "'ssl_handshake_timeout' (number of seconds > 0 expected)")
      assert.has_error(function()
        loop:create_connection(f, "127.0.0.1", 1, { ssl = client_ctx(),
          ssl_shutdown_timeout = -1 })
      end, "tapio: loop:create_connection: bad option "
           .. "'ssl_shutdown_timeout' (number of seconds > 0 expected)")
      assert.has_error(function()
        loop:create_connection(f, "127.0.0.1", 1, { ssl = "yes" })
      end, "tapio: loop:create_connection: bad option 'ssl' "
           .. "(TLS context expected)")
      -- without ssl, or with a context of the wrong side: error values
      -- whose words say which option and why
      local ok, err = pcall(loop.create_connection, loop, f, "127.0.0.1", 1,
                            { server_hostname = "x" })
      assert.is_false(ok)
      assert.are.equal("EINVAL", err.name)
      assert.are.equal("create_connection: option 'server_hostname' is "
        .. "for TLS: give 'ssl' too", err.message)
      ok, err = pcall(loop.create_server, loop, f, "127.0.0.1", 0,
                      { ssl = client_ctx() })
      assert.is_false(ok)
      assert.are.equal("EINVAL", err.name)
      assert.are.equal("create_server: option 'ssl' is a client TLS "
        .. "context; this call needs a server one", err.message)
      -- ssl = true is a default client context (asyncio's ssl=True): no
      -- server takes one; ssl = false is none
      ok, err = pcall(loop.create_server, loop, f, "127.0.0.1", 0,
                      { ssl = true })
      assert.is_false(ok)
      assert.are.equal("EINVAL", err.name)
      ok, err = pcall(loop.create_connection, loop, f, "127.0.0.1", 1,
                      { ssl = false, server_hostname = "x" })
      assert.is_false(ok)
      assert.are.equal("EINVAL", err.name)
    end)
  end)

  it("takes ssl = true as a client context trusting the system's CAs",
    function()
    run(function(loop)
      -- the tests' CA is not the system's: verification is on, and says so
      local server = loop:create_server(function() return {} end,
        "127.0.0.1", 0, { ssl = server_ctx() })
      local ok, err = pcall(loop.create_connection, loop, function()
        return {}
      end, "127.0.0.1", port_of(server), { ssl = true,
        server_hostname = "localhost" })
      assert.is_false(ok)
      assert.are.equal("ETLS_UNKNOWN_CA", err.name)
      server:close()
    end)
  end)
end)

describe("a TLS connection", function()
  it("tells a peer certificate's long subjectAltName whole, and the "
     .. "entries after it", function()
    -- 1,158 bytes: more than the first room the binding asks with
    local long = ("a"):rep(60) .. ("." .. ("b"):rep(60)):rep(18)
    local dir = helper.files_dir({})
    assert(os.execute(("openssl req -x509 -newkey ec -pkeyopt "
      .. "ec_paramgen_curve:P-256 -nodes -keyout %s/k.pem -out %s/c.pem "
      .. "-days 2 -subj /CN=long -addext "
      .. "'subjectAltName=DNS:%s,DNS:after.test' 2>/dev/null")
      :format(dir, dir, long)))
    run(function(loop)
      local sctx = tapio.tls_context({ side = "server",
        cert_file = dir .. "/c.pem", key_file = dir .. "/k.pem" })
      local cctx = tapio.tls_context({ verify = "none" })
      local server, t = tls_pair(loop, sctx, cctx)
      assert.are.same({ { "DNS", long }, { "DNS", "after.test" } },
        t:get_extra_info("peercert").subjectAltName)
      t:close()
      server:close()
    end)
    helper.remove_dir(dir)
  end)

  it("tells a peer certificate of more than 8 KiB, DER and names whole",
     function()
    local names = {}
    for i = 1, 200 do
      names[i] = ("DNS:n%d.%s.test"):format(i, ("b"):rep(60))
    end
    local dir = helper.files_dir({})
    assert(os.execute(("openssl req -x509 -newkey ec -pkeyopt "
      .. "ec_paramgen_curve:P-256 -nodes -keyout %s/k.pem -out %s/c.pem "
      .. "-days 2 -subj /CN=big -addext 'subjectAltName=%s' 2>/dev/null")
      :format(dir, dir, table.concat(names, ","))))
    run(function(loop)
      local sctx = tapio.tls_context({ side = "server",
        cert_file = dir .. "/c.pem", key_file = dir .. "/k.pem" })
      local cctx = tapio.tls_context({ verify = "none" })
      local server, t = tls_pair(loop, sctx, cctx)
      local pc = t:get_extra_info("peercert")
      assert.is_table(pc)
      assert.is_true(#pc.der > 8192)
      assert.are.equal(200, #pc.subjectAltName)
      assert.are.same({ "DNS", "n200." .. ("b"):rep(60) .. ".test" },
        pc.subjectAltName[200])
      t:close()
      server:close()
    end)
    helper.remove_dir(dir)
  end)

  it("carries data both ways and tells what was agreed", function()
    run(function(loop)
      local sctx = server_ctx(nil, { alpn = { "http/1.1" } })
      local cctx = client_ctx({ alpn = { "h2", "http/1.1" } })
      local server, t, p, sp = tls_pair(loop, sctx, cctx)
      t:write("ping")
      assert.are.equal("ping", sp:bytes(4):await())
      sp.transport:write("pong")
      assert.are.equal("pong", p:bytes(4):await())
      local cert = t:get_extra_info("peercert")
      assert.are.same({ { "commonName", "localhost" } }, cert.subject)
      assert.are.same({ { "commonName", "tapio test CA" } }, cert.issuer)
      assert.are.same({ { "DNS", "localhost" }, { "IP Address", "127.0.0.1" },
                        { "IP Address", "0:0:0:0:0:0:0:1" } },
                      cert.subjectAltName)
      assert.are.equal("Dec 31 00:00:00 2099 GMT", cert.notAfter)
      assert.are.equal(0x30, cert.der:byte(1))
      local cipher = t:get_extra_info("cipher")
      assert.matches("^TLS_AES_", cipher[1])
      assert.are.equal("TLSv1.3", cipher[2])
      assert.is_true(cipher[3] >= 128)
      assert.are.equal("TLSv1.3", t:get_extra_info("tls_version"))
      assert.are.equal("http/1.1", t:get_extra_info("alpn_protocol"))
      assert.are.equal("http/1.1",
                       sp.transport:get_extra_info("alpn_protocol"))
      assert.are.equal("localhost", t:get_extra_info("server_hostname"))
      assert.are.equal("localhost",
                       sp.transport:get_extra_info("server_hostname"))
      assert.are.equal(cctx, t:get_extra_info("sslcontext"))
      assert.are.equal("userdata", type(t:get_extra_info("ssl_object")))
      assert.is_false(t:get_extra_info("session_reused"))
      assert.is_nil(t:get_extra_info("compression"))
      assert.is_nil(sp.transport:get_extra_info("peercert"))
      assert.is_false(t:can_write_eof())
      -- no half-close: it raises (asyncio's NotImplementedError) rather
      -- than leave a peer waiting for an end that never comes
      assert.has_error(function() t:write_eof() end,
        "tapio: transport:write_eof: TLS has no half-close "
        .. "(can_write_eof() is false)")
      local stats = t:get_stats()
      assert.are.equal(4, stats.bytes_sent)
      assert.is_true(stats.tls_wire_bytes_sent > 4)
      assert.is_true(stats.tls_handshake_usec > 0)
      for name, n in pairs(math.type and stats or {}) do -- counts (5.4)
        assert.are.equal("integer", math.type(n), name)
      end
      local peer = t:get_extra_info("peername")
      assert.are.equal("number", type(t:get_extra_info("socket")))
      t:close()
      assert.is_false(p.lost:await())
      assert.is_false(sp.lost:await())
      assert.are.same({ "made", "data", "lost" }, p.events)
      -- after the end: what asyncio's SSL transport keeps (peercert,
      -- cipher, compression, the context), tapio's other TLS keys, and
      -- the addresses (asyncio's forgets them with the socket)
      assert.are.same(cert, t:get_extra_info("peercert"))
      assert.are.same(cipher, t:get_extra_info("cipher"))
      assert.is_nil(t:get_extra_info("compression"))
      assert.are.equal(cctx, t:get_extra_info("sslcontext"))
      assert.are.equal("TLSv1.3", t:get_extra_info("tls_version"))
      assert.are.equal("http/1.1", t:get_extra_info("alpn_protocol"))
      assert.are.equal("localhost", t:get_extra_info("server_hostname"))
      assert.is_false(t:get_extra_info("session_reused"))
      assert.are.equal("clean", t:get_extra_info("tls_end"))
      assert.are.equal(peer, t:get_extra_info("peername"))
      assert.is_nil(t:get_extra_info("ssl_object")) -- gone with it
      -- S6: no socket after connection_lost: the default
      assert.is_nil(t:get_extra_info("socket"))
      assert.are.equal("none", t:get_extra_info("socket", "none"))
      assert.is_false(t:can_write_eof())
      assert.has_error(function() t:write_eof() end,
        "tapio: transport:write_eof: TLS has no half-close "
        .. "(can_write_eof() is false)")
      assert.are.equal(4, t:get_stats().bytes_sent)
      assert.is_true(t:get_stats().tls_wire_bytes_sent > 4)
      server:close()
    end)
  end)

  it("fails with an error value that says why, and calls no factory",
     function()
    run(function(loop)
      for _, case in ipairs({
        { "expired", "ETLS_EXPIRED", "certificate has expired" },
        { "other", "ETLS_HOSTNAME", "hostname mismatch" },
        { "self", "ETLS_SELF_SIGNED", "self%-signed certificate" },
      }) do
        local made = 0
        local server = loop:create_server(function()
          made = made + 1
          return {}
        end, "127.0.0.1", 0, { ssl = server_ctx(case[1]) })
        local ok, err = pcall(loop.create_connection, loop, function()
          made = made + 1
          return {}
        end, "127.0.0.1", port_of(server), { ssl = client_ctx(),
          server_hostname = "localhost" })
        assert.is_false(ok)
        assert.are.equal(case[2], err.name)
        assert.are.equal(tapio[case[2]], err.code)
        assert.matches(case[3], err.message)
        assert.are.equal(0, made)
        server:close()
      end
    end)
  end)

  it("leaves no reference behind after failures and closes (S22)",
     function()
    run(function(loop)
      local base = loop:_debug().refs
      local server = loop:create_server(function()
        return recorder(loop)
      end, "127.0.0.1", 0, { ssl = server_ctx("expired") })
      for _ = 1, 3 do
        local ok = pcall(loop.create_connection, loop, function()
          return {}
        end, "127.0.0.1", port_of(server), { ssl = client_ctx(),
          server_hostname = "localhost" })
        assert.is_false(ok)
      end
      server:close()
      server:wait_closed()
      -- a handshake timed out, and one cancelled while it runs (S13,
      -- S24): the peer sees each connection go, nothing is reported
      local peers = {}
      local silent = loop:create_server(function()
        peers[#peers + 1] = recorder(loop)
        return peers[#peers]
      end, "127.0.0.1", 0)
      local opts = { ssl = client_ctx(), server_hostname = "localhost",
                     ssl_handshake_timeout = 0.1 }
      assert.are.equal("ETIMEDOUT", helper.fails(loop.create_connection,
        loop, function() return {} end, "127.0.0.1", port_of(silent),
        opts).name)
      assert.is_false(peers[1].lost:await())
      opts.ssl_handshake_timeout = 10
      local connecting = helper.started(loop, loop.create_connection, loop,
        function() return {} end, "127.0.0.1", port_of(silent), opts)
      helper.until_true(function()
        return peers[2] and #peers[2].received > 0 -- the ClientHello
      end)
      connecting:cancel()
      assert.is_true(tapio.is_cancelled(helper.fails(connecting.await,
                                                     connecting)))
      assert.is_false(peers[2].lost:await())
      silent:close()
      silent:wait_closed()
      local other, t, p, sp = tls_pair(loop)
      t:close()
      p.lost:await()
      sp.lost:await()
      other:close()
      other:wait_closed()
      tapio.sleep(0) -- the servers' last callbacks
      assert.are.equal(base, loop:_debug().refs)
    end)
  end)

  it("tells the exception handler of a failed incoming handshake in "
     .. "debug mode only", function()
    run(function(loop)
      local heard, first = {}, loop:create_future()
      loop:set_exception_handler(function(_, ctx)
        heard[#heard + 1] = ctx
        if not first:done() then first:set_result(ctx) end
      end)
      local server = loop:create_server(function() return {} end,
        "127.0.0.1", 0, { ssl = server_ctx() })
      local function scanner() -- plain bytes where a ClientHello belongs
        local t, p = loop:create_connection(function()
          return recorder(loop)
        end, "127.0.0.1", port_of(server))
        local name = tostring(t:get_extra_info("sockname"))
        t:write("GET / HTTP/1.0\r\n\r\n")
        p.lost:await() -- the server's alert, then its close
        return name
      end
      scanner()
      tapio.sleep(0)
      assert.are.same({}, heard) -- asyncio logs these in debug mode only
      loop:set_debug(true, 60)
      local name = scanner()
      local ctx = tapio.wait_for(first, 10)
      assert.matches("^TLS handshake failed on a connection the server "
                     .. "accepted: .+", ctx.message)
      assert.are.equal("ETLS", ctx.exception.name)
      assert.are.equal(name, tostring(ctx.peername))
      assert.are.equal(server, ctx.server)
      assert.are.equal(1, #heard)
      loop:set_debug(false)
      server:close()
    end)
  end)

  it("times out a handshake that stalls (S14)", function()
    run(function(loop)
      local silent = loop:create_server(function() return {} end,
                                        "127.0.0.1", 0)
      local ok, err = pcall(loop.create_connection, loop, function()
        return {}
      end, "127.0.0.1", port_of(silent), { ssl = client_ctx(),
        server_hostname = "localhost", ssl_handshake_timeout = 0.2 })
      assert.is_false(ok)
      assert.are.equal("ETIMEDOUT", err.name)
      assert.are.equal("TLS handshake is taking longer than 0.2 seconds: "
                       .. "aborting the connection", err.message)
      silent:close()
    end)
  end)

  it("serves a connection accepted before server:close() whose "
     .. "handshake ends after it, the server collected meanwhile",
     function()
    run(function(loop)
      local sp = recorder(loop)
      local server = loop:create_server(function() return sp end,
        "127.0.0.1", 0, { ssl = server_ctx() })
      local t = loop:create_connection(function() return {} end,
        "127.0.0.1", port_of(server)) -- TCP only: the server's TLS waits
      helper.until_true(function() return server:client_count() == 1 end)
      server:close() -- connections stay open, as asyncio's
      server = nil
      helper.collect() -- a freed server was called then (valgrind saw it)
      loop:start_tls(t, {}, client_ctx(), { server_hostname = "localhost" })
      t:write("late")
      sp.made:await() -- the factory was refused before: closed server
      assert.are.equal("late", sp:bytes(4):await())
      t:close()
      sp.lost:await()
    end)
  end)

  it("ends a close that the peer never answers (ssl_shutdown_timeout)",
     function()
    run(function(loop)
      local server, t, p, sp = tls_pair(loop, nil, nil, nil, nil,
                                        { ssl_shutdown_timeout = 0.2 })
      sp.transport:pause_reading() -- never reads close_notify
      t:close()
      local err = p.lost:await()
      assert.are.equal("ETIMEDOUT", err.name)
      assert.matches("TLS shutdown timed out", err.message)
      server:close()
    end)
  end)

  it("closes with reading paused: close_notify both ways, then "
     .. "connection_lost (uvloop 13)", function()
    run(function(loop)
      local server, t, p, sp = tls_pair(loop)
      t:pause_reading()
      t:close()
      assert.is_false(p.lost:await()) -- the peer's close_notify was read
      assert.are.equal("clean", t:get_extra_info("tls_end"))
      -- no eof_received after close (lua/README.md, "Differences")
      assert.are.same({ "made", "lost" }, p.events)
      assert.is_false(sp.lost:await())
      assert.are.same({ "made", "eof", "lost" }, sp.events)
      server:close()
    end)
  end)

  it("closes cleanly when closed in the resume_writing of the flush that "
     .. "emptied the buffer", function()
    run(function(loop)
      local sp = recorder(loop, {
        resume_writing = function(self)
          self.events[#self.events + 1] = "resume"
          self.transport:close() -- the buffer is empty: low-water mark 0
        end,
        connection_lost = function(self, err)
          self.tls_end = self.transport:get_extra_info("tls_end")
          self.lost:set_result(err or false)
        end,
      })
      local server, _, p = tls_pair(loop, nil, nil, sp)
      local size = 4 * 1024 * 1024
      sp.transport:set_write_buffer_limits(65536, 0)
      sp.transport:write(string.rep("x", size))
      assert.are.equal(size, #p:bytes(size):await())
      assert.is_false(sp.lost:await())
      assert.are.same({ "made", "pause", "resume" }, sp.events)
      -- the close_notify exchange ran to its end; before, the flush's
      -- own end of buffer closed a second time: "aborted", and the
      -- ciphertext not yet sent was dropped
      assert.are.equal("clean", sp.tls_end)
      assert.is_false(p.lost:await())
      server:close()
    end)
  end)

  -- Turns of the loop in which bytes sent would have come.
  local function turns(n)
    for _ = 1, n do
      tapio.sleep(0)
    end
  end

  it("pauses reading as it says in is_reading: nothing comes until "
     .. "resume_reading, also after a pause inside data_received (cpython "
     .. "bpo-32356, bpo-45159)", function()
    run(function(loop)
      local calls, paused_calls, pause_in_data = 0, 0, false
      local sp = recorder(loop, { data_received = function(self, data)
        calls = calls + 1
        if not self.transport:is_reading() then
          paused_calls = paused_calls + 1
        end
        self.received = self.received .. data
        self:check_waiters()
        if pause_in_data then
          self.transport:pause_reading()
        end
      end })
      local server, t, _, _ = tls_pair(loop, nil, nil, sp)
      local st = sp.transport
      assert.is_true(st:is_reading())
      st:pause_reading()
      st:pause_reading() -- idempotent
      assert.is_false(st:is_reading())
      t:write(string.rep("x", 100000))
      helper.until_true(function() return t:get_write_buffer_size() == 0 end)
      turns(10)
      assert.are.equal(0, calls)
      st:resume_reading()
      assert.is_true(st:is_reading())
      sp:bytes(100000):await()
      -- asyncio's TLS transport went on delivering what it had decrypted
      -- after a pause inside data_received (bpo-45159): one call per resume
      pause_in_data = true
      calls = 0
      local total = 100000 + 1024 * 1024
      t:write(string.rep("y", 1024 * 1024))
      local resumes = 0
      while #sp.received < total do
        helper.until_true(function()
          return not st:is_reading() or #sp.received == total
        end)
        turns(3)
        assert.is_true(calls <= resumes + 1)
        resumes = resumes + 1
        st:resume_reading()
      end
      assert.are.equal(0, paused_calls)
      assert.are.equal(total, #sp.received)
      t:close()
      st:close()
      server:close()
    end)
  end)

  it("closed inside data_received, calls nothing after it but "
     .. "connection_lost, and ends cleanly (cpython bpo-33037)", function()
    run(function(loop)
      local calls = 0
      local sp = recorder(loop, { data_received = function(self, data)
        calls = calls + 1
        self.events[#self.events + 1] = "data"
        self.received = self.received .. data
        self.transport:close()
      end })
      local server, t, p = tls_pair(loop, nil, nil, sp)
      for _ = 1, 20 do -- many records, most read after the close
        t:write(string.rep("r", 100000))
      end
      assert.is_false(sp.lost:await())
      assert.are.equal(1, calls)
      assert.are.same({ "made", "data", "lost" }, sp.events)
      assert.is_false(p.lost:await()) -- its close_notify came
      assert.are.same({ "made", "eof", "lost" }, p.events)
      server:close()
    end)
  end)

  it("closes after eof_received though it returns true: TLS has no "
     .. "half-close (cpython bpo-38737)", function()
    run(function(loop)
      local sp = recorder(loop)
      sp.keep_open = true
      local server, t, p = tls_pair(loop, nil, nil, sp)
      t:close()
      assert.is_false(sp.lost:await())
      assert.are.same({ "made", "eof", "lost" }, sp.events)
      assert.is_false(p.lost:await())
      assert.are.equal("clean", t:get_extra_info("tls_end"))
      server:close()
    end)
  end)

  it("answers get_write_buffer_limits, and set_write_buffer_limits "
     .. "derives low as asyncio does (cpython bpo-46487)", function()
    run(function(loop)
      local server, t, p = tls_pair(loop)
      assert.are.same({ 16384, 65536 }, { t:get_write_buffer_limits() })
      t:set_write_buffer_limits(1000)
      assert.are.same({ 250, 1000 }, { t:get_write_buffer_limits() })
      t:set_write_buffer_limits(1000, 10)
      assert.are.same({ 10, 1000 }, { t:get_write_buffer_limits() })
      t:close()
      p.lost:await()
      server:close()
    end)
  end)

  it("fills a 1-byte BufferedProtocol buffer byte by byte (S9)", function()
    run(function(loop)
      local p = recorder(loop)
      p.buf = tapio.buffer(1)
      p.got = {}
      function p:get_buffer() return self.buf end
      function p:buffer_updated(n)
        self.got[#self.got + 1] = self.buf:sub(1, n)
      end
      local server, t, _, sp = tls_pair(loop, nil, nil, nil, p)
      local text = ("0123456789"):rep(1000)
      sp.transport:write(text)
      sp.transport:close()
      p.lost:await()
      assert.are.equal(text, table.concat(p.got))
      assert.are.equal(#text, #p.got)
      server:close()
    end)
  end)

  -- A get_buffer that sets another protocol each time reads nothing (the
  -- bytes are the new protocol's), and TLS still holds what its last
  -- read left (a 1-byte buffer): the read went round without bound,
  -- starving every other callback. A call posted and a peer's bytes sent
  -- at the first swap now come after a few swaps, as every read path
  -- gives up its turn after a fixed budget.
  it("lets timers and other connections run while get_buffer swaps "
    .. "protocols", function()
    run(function(loop)
      local LIMIT = 20000 -- swaps before it reads on (a bound on the old
                          -- loop, so that this fails rather than hangs)
      local swaps, got, at_call, at_other = 0, "", nil, nil
      local all, other_got = loop:create_future(), loop:create_future()
      local plain_server, other, _, other_sp = helper.pair(loop)
      function other_sp.data_received()
        at_other = swaps
        other_got:set_result(true)
      end
      local function swapper()
        local p = recorder(loop)
        p.buf = tapio.buffer(1)
        function p:get_buffer()
          if got == "" or swaps >= LIMIT then return self.buf end
          swaps = swaps + 1
          if swaps == 1 then
            loop:call_soon(function() at_call = swaps end)
            other:write("ping")
          end
          local next_one = swapper()
          next_one.transport = self.transport
          self.transport:set_protocol(next_one)
          return self.buf
        end
        function p:buffer_updated(n)
          got = got .. self.buf:sub(1, n)
          if #got == 5 then all:set_result(got) end
        end
        return p
      end
      local cp = swapper()
      local server, t, _, sp = tls_pair(loop, nil, nil, nil, cp)
      cp.transport = t
      sp.transport:write("hello")
      assert.are.equal("hello", all:await())
      assert.is_true(at_call < 100, "the call ran after " .. at_call
        .. " swaps")
      other_got:await()
      assert.is_true(at_other < 1000, "the peer's bytes came after "
        .. at_other .. " swaps")
      t:close()
      other:close()
      server:close()
      plain_server:close()
    end)
  end)
end)

describe("loop:start_tls", function()
  -- A server that upgrades on "STARTTLS\n", feeding what followed the line
  -- in the same read to the handshake.
  local function starttls_server(loop, upgraded)
    local p = recorder(loop)
    local buf = ""
    function p:data_received(data)
      if upgraded:done() then
        self.transport:write(data) -- echo, over TLS now
        return
      end
      buf = buf .. data
      local line_end = buf:find("\n", 1, true)
      if line_end then
        self.extra = #buf - line_end
        loop:start_tls(self.transport, self, server_ctx(), nil,
                       buf:sub(line_end + 1)):add_done_callback(function(f)
          upgraded:set_result(f:result())
        end)
      end
    end
    return p
  end

  it("upgrades both sides with the ClientHello right behind the line "
     .. "(R19)", function()
    run(function(loop)
      local upgraded = loop:create_future()
      local sp = starttls_server(loop, upgraded)
      local server = loop:create_server(function() return sp end,
                                        "127.0.0.1", 0)
      local t, p = loop:create_connection(function()
        return recorder(loop)
      end, "127.0.0.1", port_of(server))
      sp.made:await()
      sp.transport:pause_reading() -- the line and the hello arrive together
      t:write("STARTTLS\n")
      -- a task of it, which has sent the ClientHello once it waits
      local upgrading = helper.started(loop, loop.start_tls, loop, t, p,
        client_ctx(), { server_hostname = "localhost" })
      sp.transport:resume_reading()
      assert.are.equal(t, upgrading:await())
      upgraded:await()
      assert.is_true(sp.extra > 100)
      t:write("over tls")
      assert.are.equal("over tls", p:bytes(8):await())
      assert.are.equal("TLSv1.3", t:get_extra_info("tls_version"))
      t:close()
      p.lost:await()
      assert.are.same({ "made", "data", "lost" }, p.events)
      server:close()
    end)
  end)

  -- Found by the chaos spec (seed 1): start_tls took the slot of the
  -- connect's completion, so create_connection never returned and the
  -- handshake's end called a released callback.
  it("upgrades from inside connection_made, both sides", function()
    run(function(loop)
      local function upgrading(ctx, opts)
        local p = recorder(loop)
        p.tls = loop:create_future()
        function p:connection_made(t)
          self.transport = t
          loop:start_tls(t, self, ctx, opts):add_done_callback(function(f)
            self.tls:set_result(f:result())
          end)
        end
        return p
      end
      local sp = upgrading(server_ctx())
      local server = loop:create_server(function() return sp end,
                                        "127.0.0.1", 0)
      local t, p = loop:create_connection(function()
        return upgrading(client_ctx(), { server_hostname = "localhost" })
      end, "127.0.0.1", port_of(server))
      assert.are.equal(t, p.tls:await())
      assert.are.equal(sp.transport, sp.tls:await())
      t:write("over tls")
      assert.are.equal("over tls", sp:bytes(8):await())
      assert.are.equal("TLSv1.3", t:get_extra_info("tls_version"))
      t:close()
      sp.lost:await()
      server:close()
    end, { deadline = 5 })
  end)

  -- The cancellation went nowhere: the handshake ran on (asyncio closes
  -- the connection, as writer:start_tls does).
  it("closes the connection when cancelled", function()
    run(function(loop)
      local server, t, p, sp = helper.pair(loop) -- the server never upgrades
      local upgrading = helper.started(loop, function()
        return loop:start_tls(t, p, client_ctx(), {
          server_hostname = "localhost" })
      end)
      upgrading:cancel()
      assert.is_false(pcall(upgrading.await, upgrading))
      assert.is_true(t:is_closing())
      assert.is_false(p.lost:await())
      sp.lost:await()
      server:close()
    end, { deadline = 5 })
  end)

  it("checks its arguments (S12)", function()
    run(function(loop)
      local server, t, p = helper.pair(loop)
      assert.has_error(function() loop:start_tls(t, p, "ctx") end,
        "tapio: loop:start_tls: bad argument #3 'sslcontext' "
        .. "(tapio.tls_context expected, got string)")
      assert.has_error(function() loop:start_tls({}, p, client_ctx()) end,
        "tapio: loop:start_tls: bad argument #1 'transport' "
        .. "(tapio.transport expected, got table)")
      assert.has_error(function()
        loop:start_tls(t, p, client_ctx(), { ssl = client_ctx() })
      end, "tapio: loop:start_tls: unknown option 'ssl'")
      -- at the caller's line, not inside tapio's Lua
      local line = debug.getinfo(1, "l").currentline + 1
      local ok, msg = pcall(function() loop:start_tls({}, p, client_ctx()) end)
      assert.is_false(ok)
      assert.matches("tls_spec%.lua:" .. line .. ": tapio: loop:start_tls: ",
                     msg)
      local err
      ok, err = pcall(loop.start_tls, loop, t, p, client_ctx())
      assert.is_false(ok) -- a client that checks names needs one
      assert.are.equal("EINVAL", err.name)
      assert.matches("^no server_hostname to check", err.message)
      local other = tapio.new_loop() -- t is open, but not other's: in
      -- a task of loop, the loop is refused first (a transport of
      -- another loop: sendfile_spec, which shares that check)
      ok, err = pcall(other.start_tls, other, t, p, client_ctx())
      assert.is_false(ok)
      assert.matches("^tapio: loop:start_tls: the loop is another loop "
                     .. "than the task's", err)
      other:close()
      -- a second start_tls while the first's handshake runs (the server
      -- never answers) says why
      local opts = { server_hostname = "localhost" }
      local first = helper.started(loop, loop.start_tls, loop, t, p,
                                   client_ctx(), opts)
      ok, err = pcall(loop.start_tls, loop, t, p, client_ctx(), opts)
      assert.is_false(ok)
      assert.are.equal("EBUSY", err.name)
      assert.are.equal("start_tls: the transport's TLS handshake is still "
                       .. "under way", err.message)
      t:close() -- aborts the first
      assert.are.equal("ECANCELED", helper.fails(first.await, first).name)
      ok, err = pcall(loop.start_tls, loop, t, p, client_ctx(), opts)
      assert.is_false(ok) -- closed: its handle is gone
      assert.matches("transport is closed", tostring(err))
      server:close()
    end)
  end)
end)

describe("TLS with Python's ssl and asyncio", function()
  local python = "/usr/bin/python3"
  local function have_python()
    return helper.exists(python)
  end

  -- Runs peer.py in mode in the background; its output file.
  local function python_peer(mode, port)
    local out = os.tmpname()
    os.execute(("%s spec/tls/peer.py %s %s %s > %s 2>&1 &"):format(python,
      mode, helper.shell_quote(certs), port or "", out))
    return out
  end

  -- Runs the loop until the file holds text; the file's text.
  local function wait_for(out, text)
    local deadline = tapio.get_running_loop():time() + 10
    while true do
      local f = io.open(out)
      local s = f and f:read("*a") or ""
      if f then f:close() end
      if s:find(text, 1, true) then return s end
      assert(tapio.get_running_loop():time() < deadline,
             "the peer never printed " .. text .. ":\n" .. s)
      tapio.sleep(0.02) -- polls the file: another process writes it
    end
  end

  it("connects to an asyncio TLS server", function()
    if not have_python() then return end
    run(function(loop)
      local out = python_peer("echo-server")
      local port = tonumber(wait_for(out, "\n"):match("PORT (%d+)"))
      local t, p = loop:create_connection(function() return recorder(loop) end,
        "127.0.0.1", port, { ssl = client_ctx(),
        server_hostname = "localhost" })
      t:write("ping\n")
      assert.are.equal("ping\n", p:bytes(5):await())
      t:close()
      p.lost:await()
      wait_for(out, "LOST None")
      os.remove(out)
    end)
  end)

  it("gives a start_tls server the first data the client sent with its "
     .. "last handshake flight (uvloop 13)", function()
    if not have_python() then return end
    run(function(loop)
      local Upgrading = {}
      function Upgrading:connection_made(t)
        self.t = t
        loop:start_tls(t, self, server_ctx()) -- the server side: ctx says
      end
      function Upgrading:data_received(d) self.t:write(d) end
      local server = loop:create_server(function()
        return setmetatable({}, { __index = Upgrading })
      end, "127.0.0.1", 0)
      local peer = tapio.create_subprocess_exec(python, { "spec/tls/peer.py",
        "first-data-client", certs, tostring(port_of(server)) },
        { stdout = tapio.PIPE })
      assert.are.equal("GOT hello\n", peer.stdout:readline())
      assert.are.equal(0, peer:wait())
      server:close()
    end)
  end)

  it("serves an asyncio TLS client", function()
    if not have_python() then return end
    run(function(loop)
      local Echo = {}
      function Echo:connection_made(t) self.t = t end
      function Echo:data_received(d) self.t:write(d) end
      local server = loop:create_server(function()
        return setmetatable({}, { __index = Echo })
      end, "127.0.0.1", 0, { ssl = server_ctx() })
      local out = python_peer("echo-client", port_of(server))
      wait_for(out, "GOT hello from python")
      wait_for(out, "CLOSED")
      server:close()
      os.remove(out)
    end)
  end)
end)
