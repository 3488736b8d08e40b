-- Every transport method seen from Lua, on real TCP and Unix sockets.
local helper = require "spec.helper"
local tapio = helper.tapio

local run, pair, recorder = helper.run, helper.pair, helper.recorder

describe("a transport", function()
  it("carries bytes both ways, as Lua strings", function()
    run(function(loop)
      local server, t, p, sp = pair(loop)
      local binary = "\0\1\2\255 and text"
      t:write(binary)
      assert.are.equal(binary, sp:bytes(#binary):await())
      sp.transport:write("reply")
      assert.are.equal("reply", p:bytes(5):await())
      t:close()
      sp.lost:await()
      server:close()
    end)
  end)

  it("writes a list with writelines, in order, as one write", function()
    run(function(loop)
      local server, t, _, sp = pair(loop)
      local list = {}
      for i = 1, 150 do -- more than one writev's worth of buffers
        list[i] = ("%03d,"):format(i)
      end
      t:writelines(list)
      t:writelines({})
      local expected = table.concat(list)
      assert.are.equal(expected, sp:bytes(#expected):await())
      t:close()
      server:close()
    end)
  end)

  it("reports names and the socket through get_extra_info", function()
    run(function(loop)
      local server, t, _, sp = pair(loop)
      local port = helper.port(server)
      local peer = t:get_extra_info("peername")
      assert.are.equal("127.0.0.1", peer[1])
      assert.are.equal(port, peer[2])
      assert.are.equal("127.0.0.1", peer.host)
      assert.are.equal(port, peer.port)
      assert.are.equal(tapio.AF_INET, peer.family)
      assert.are.equal(("('127.0.0.1', %d)"):format(port), tostring(peer))
      local mine = t:get_extra_info("sockname")
      assert.are.equal(mine, sp.transport:get_extra_info("peername"))
      assert.are.equal(peer, sp.transport:get_extra_info("sockname"))
      assert.is_true(math.type == nil or
        math.type(t:get_extra_info("socket")) == "integer")
      assert.is_true(t:get_extra_info("socket") > 2)
      assert.is_nil(t:get_extra_info("cipher"))
      assert.are.equal("dflt", t:get_extra_info("cipher", "dflt"))
      t:close()
      server:close()
    end)
  end)

  it("closes after flushing: the peer gets all, then eof", function()
    run(function(loop)
      local server, t, p, sp = pair(loop)
      local big = ("x"):rep(1024 * 1024)
      t:write(big)
      t:close()
      assert.is_true(t:is_closing())
      t:write("dropped") -- closing: asyncio drops it too
      assert.are.equal(false, p.lost:await())
      assert.are.equal(#big, #sp:bytes(#big):await())
      sp.eof_fut:await()
      assert.are.equal(false, sp.lost:await()) -- eof closes by default
      assert.are.same({ "made", "lost" }, p.events)
      server:close()
    end)
  end)

  it("aborts: buffered data is dropped, connection_lost(nil)", function()
    run(function(loop)
      local server, t, p, sp = pair(loop)
      sp.transport:pause_reading()
      t:write(("y"):rep(4 * 1024 * 1024))
      assert.is_true(t:get_write_buffer_size() > 0)
      t:abort()
      assert.are.equal(false, p.lost:await())
      sp.transport:resume_reading()
      sp.lost:await()
      assert.is_true(#sp.received < 4 * 1024 * 1024)
      server:close()
    end)
  end)

  it("half-closes with write_eof; the peer may keep writing", function()
    run(function(loop)
      local server, t, p, sp = pair(loop)
      sp.keep_open = true -- eof_received returns true
      assert.is_true(t:can_write_eof())
      t:write("last words")
      t:write_eof()
      t:write_eof() -- idempotent
      sp.eof_fut:await()
      assert.are.equal("last words", sp.received)
      assert.is_false(sp.transport:is_closing())
      sp.transport:write("answer after eof")
      assert.are.equal("answer after eof", p:bytes(16):await())
      assert.has_error(function() t:write("more") end,
        "tapio: transport:write: cannot write after write_eof()")
      assert.has_error(function() t:writelines({ "more" }) end,
        "tapio: transport:writelines: cannot write after write_eof()")
      assert.has_error(function() t:write("") end, -- nothing, all the same
        "tapio: transport:write: cannot write after write_eof()")
      assert.has_error(function() t:writelines({}) end,
        "tapio: transport:writelines: cannot write after write_eof()")
      sp.transport:close()
      p.eof_fut:await()
      assert.are.equal(false, p.lost:await())
      assert.are.same({ "made", "data", "eof", "lost" }, p.events)
      server:close()
    end)
  end)

  it("pauses and resumes reading, idempotently", function()
    run(function(loop)
      local server, t, _, sp = pair(loop)
      local st = sp.transport
      assert.is_true(st:is_reading())
      st:pause_reading()
      st:pause_reading()
      assert.is_false(st:is_reading())
      t:write("held back")
      tapio.sleep(0.05) -- a window in which nothing may arrive
      assert.are.equal("", sp.received)
      st:resume_reading()
      st:resume_reading()
      assert.is_true(st:is_reading())
      assert.are.equal("held back", sp:bytes(9):await())
      t:close()
      sp.lost:await()
      st:pause_reading() -- closed: harmless
      st:resume_reading()
      assert.is_false(st:is_reading())
      server:close()
    end)
  end)

  it("calls pause_writing over the high mark, resume_writing at the low",
    function()
    run(function(loop)
      local server, t, p, sp = pair(loop)
      local low, high = t:get_write_buffer_limits()
      assert.are.equal(16384, low)
      assert.are.equal(65536, high)
      t:set_write_buffer_limits(2000, 1000)
      low, high = t:get_write_buffer_limits()
      assert.are.same({ 1000, 2000 }, { low, high })
      sp.transport:pause_reading()
      local resumed = loop:create_future()
      p.resume_writing = function(self)
        self.events[#self.events + 1] = "resume"
        resumed:set_result(true)
      end
      local chunk = ("z"):rep(64 * 1024)
      local sent = 0
      while #p.events < 2 do -- "made", then "pause" from inside write
        t:write(chunk)
        sent = sent + #chunk
      end
      assert.are.same({ "made", "pause" }, p.events)
      assert.is_true(t:get_write_buffer_size() > 2000)
      local stats = t:get_stats()
      assert.are.equal(1, stats.write_pauses)
      assert.is_true(stats.write_buffer_peak > 2000)
      sp.transport:resume_reading()
      resumed:await()
      assert.is_true(t:get_write_buffer_size() <= 1000)
      assert.are.same({ "made", "pause", "resume" }, p.events)
      assert.are.equal(sent, #sp:bytes(sent):await())
      t:close()
      server:close()
    end)
  end)

  it("writes to another transport from inside resume_writing (uvloop 14)",
     function()
    run(function(loop)
      local server, t, p, sp = pair(loop)
      local server2, t2, _, sp2 = pair(loop)
      t:set_write_buffer_limits(2000, 1000)
      p.resume_writing = function() t2:write("hello") end
      sp.transport:pause_reading()
      local chunk = ("w"):rep(64 * 1024)
      while t:get_write_buffer_size() <= 2000 do
        t:write(chunk)
      end
      sp.transport:resume_reading() -- the flush calls resume_writing
      assert.are.equal("hello", sp2:bytes(5):await())
      t:close()
      t2:close()
      server:close()
      server2:close()
    end)
  end)

  it("keeps the stream whole through 10,000 writes, each followed by one "
     .. "refused (uvloop 14)", function()
    run(function(loop)
      local server, t, _, sp = pair(loop)
      for i = 1, 10000 do
        t:write(i % 2 == 0 and "b" or "a")
        assert.is_false(pcall(t.write, t, 42))
      end
      local got = sp:bytes(20000 / 2):await()
      assert.are.equal(("ab"):rep(5000), got)
      t:write_eof()
      t:write_eof() -- twice: nothing more to do (uvloop 14)
      sp.eof_fut:await()
      t:close()
      server:close()
    end)
  end)

  it("returns from create_connection though connection_made aborted or "
     .. "raised (uvloop 14)", function()
    local _, errors = run(function(loop, errors)
      local server = tapio.start_server(function(reader, writer)
        reader:read()
        writer:close()
      end, "127.0.0.1", 0)
      for _, what in ipairs({ "abort", "raise" }) do
        local lost = loop:create_future()
        local P = {}
        function P:connection_made(t)
          if what == "abort" then t:abort() else error("made failed", 0) end
        end
        function P:connection_lost(err) lost:set_result(err) end
        local t = loop:create_connection(function() return P end,
                                         "127.0.0.1", helper.port(server))
        assert.is_true(t:is_closing())
        -- an abort ends cleanly; an error fails the transport with it
        -- (asyncio lets it go on: lua/README.md "Differences")
        local err = lost:await()
        if what == "abort" then
          assert.is_nil(err)
        else
          assert.are.equal("made failed", err)
        end
      end
      server:close()
      return nil, errors
    end, { errors_ok = true })
    assert.are.equal(1, #errors)
    assert.are.equal("error in protocol.connection_made()", errors[1].message)
  end)

  it("calls pause_writing at once when the high mark is lowered", function()
    run(function(loop)
      local server, t, p, sp = pair(loop)
      sp.transport:pause_reading()
      t:set_write_buffer_limits(1024 * 1024 * 1024)
      while t:get_write_buffer_size() == 0 do
        t:write(("w"):rep(256 * 1024))
      end
      assert.are.same({ "made" }, p.events)
      t:set_write_buffer_limits(0) -- low becomes 0 too
      assert.are.same({ "made", "pause" }, p.events)
      assert.are.same({ 0, 0 }, { t:get_write_buffer_limits() })
      t:abort()
      server:close()
    end)
  end)

  it("derives the limit not given as asyncio does", function()
    run(function(loop)
      local server, t = pair(loop)
      t:set_write_buffer_limits(nil, 1000)
      assert.are.same({ 1000, 4000 }, { t:get_write_buffer_limits() })
      t:set_write_buffer_limits(8000)
      assert.are.same({ 2000, 8000 }, { t:get_write_buffer_limits() })
      t:set_write_buffer_limits()
      assert.are.same({ 16384, 65536 }, { t:get_write_buffer_limits() })
      t:close()
      server:close()
    end)
  end)

  it("counts bytes in its stats", function()
    run(function(loop)
      local server, t, p, sp = pair(loop)
      t:write("12345")
      sp:bytes(5):await()
      sp.transport:write("123")
      p:bytes(3):await()
      local stats = t:get_stats()
      assert.are.equal(5, stats.bytes_sent)
      assert.are.equal(3, stats.bytes_received)
      assert.are.equal(0, stats.write_buffer_size)
      for _, k in ipairs({ "write_buffer_peak", "write_paused_usec",
                           "read_paused_usec", "write_pauses" }) do
        assert.is_number(stats[k])
      end
      t:close()
      server:close()
    end)
  end)

  it("swaps its protocol: the next callback goes to the new one",
    function()
    run(function(loop)
      local server, t, p, sp = pair(loop)
      local second = recorder(loop)
      assert.are.equal(p, t:get_protocol())
      t:set_protocol(second)
      assert.are.equal(second, t:get_protocol())
      sp.transport:write("to the second")
      assert.are.equal("to the second", second:bytes(13):await())
      assert.are.equal("", p.received)
      sp.transport:close()
      assert.are.equal(false, second.lost:await())
      assert.is_false(p.lost:done())
      server:close()
    end)
  end)

  it("looks methods up when it calls them", function()
    run(function(loop)
      local server, t, p, sp = pair(loop)
      local got = loop:create_future()
      p.data_received = function(_, data) got:set_result("swapped " .. data) end
      sp.transport:write("x")
      assert.are.equal("swapped x", got:await())
      t:close()
      server:close()
    end)
  end)

  it("works with protocols made by metatables and inheritance", function()
    local Base = {}
    Base.__index = Base
    function Base:connection_made(transport) self.transport = transport end
    function Base:data_received(data)
      self.transport:write(self:transform(data))
    end
    function Base:transform(data) return data end
    local Upper = setmetatable({}, { __index = Base })
    Upper.__index = Upper
    function Upper:transform(data) return data:upper() end
    run(function(loop)
      local server = loop:create_server(function()
        return setmetatable({}, Upper)
      end, "127.0.0.1", 0)
      local t, p = loop:create_connection(function() return recorder(loop) end,
        "127.0.0.1", helper.port(server))
      t:write("shout")
      assert.are.equal("SHOUT", p:bytes(5):await())
      t:close()
      server:close()
    end)
  end)

  it("gives its loop", function()
    run(function(loop)
      local server, t = pair(loop)
      assert.are.equal(loop, t:get_loop())
      assert.matches("^tapio.transport %(fd %d+%)$", tostring(t))
      t:close()
      assert.matches(", closing%)$", tostring(t))
      server:close()
    end)
  end)

  it("is a closed shell after connection_lost", function()
    run(function(loop)
      local server, t, p, sp = pair(loop)
      t:set_write_buffer_limits(1000)
      local peer = sp.transport:get_extra_info("sockname")
      local me = t:get_extra_info("sockname")
      local sent = t:get_stats().bytes_sent
      t:close()
      p.lost:await()
      assert.are.equal("tapio.transport (closed)", tostring(t))
      -- harmless
      t:close()
      t:abort()
      t:pause_reading()
      t:resume_reading()
      assert.is_true(t:is_closing())
      assert.is_false(t:is_reading())
      -- writes are dropped, as asyncio drops them; the exception handler
      -- hears of it at the fifth, once
      local told = {}
      loop:set_exception_handler(function(_, ctx)
        told[#told + 1] = ctx
      end)
      for _ = 1, 3 do
        t:write("x")
        t:writelines({ "y" })
      end
      assert.are.equal(1, #told)
      assert.are.equal("transport:write after connection_lost: data is "
        .. "dropped", told[1].message)
      assert.are.equal(t, told[1].transport)
      loop:set_exception_handler(nil)
      -- and the rest answers as asyncio's closed transport does: the
      -- buffer is gone, the limits and can_write_eof are the last ones,
      -- write_eof has nothing to do
      assert.are.equal(0, t:get_write_buffer_size())
      assert.are.same({ 250, 1000 }, { t:get_write_buffer_limits() })
      t:set_write_buffer_limits(400, 100) -- checked and kept
      assert.are.same({ 100, 400 }, { t:get_write_buffer_limits() })
      t:set_write_buffer_limits(nil, 1000)
      assert.are.same({ 1000, 4000 }, { t:get_write_buffer_limits() })
      t:set_write_buffer_limits()
      assert.are.same({ 16384, 65536 }, { t:get_write_buffer_limits() })
      assert.has_error(function() t:set_write_buffer_limits(10, 20) end,
        "tapio: transport:set_write_buffer_limits: bad argument #2 'low' "
        .. "(must not be greater than high)")
      assert.has_error(function() t:set_write_buffer_limits(-1) end,
        "tapio: transport:set_write_buffer_limits: bad argument #1 'high' "
        .. "(-1 is out of range 0..4503599627370496)")
      assert.is_true(t:can_write_eof())
      t:write_eof()
      -- the extra info it had, but the descriptor, which is gone
      assert.are.equal(peer, t:get_extra_info("peername"))
      assert.are.equal(me, t:get_extra_info("sockname"))
      assert.is_nil(t:get_extra_info("socket"))
      assert.are.equal("gone", t:get_extra_info("socket", "gone"))
      assert.are.equal("none", t:get_extra_info("cipher", "none"))
      assert.has_error(function() t:get_extra_info(1) end,
        "tapio: transport:get_extra_info: bad argument #1 'name' "
        .. "(string expected, got number)")
      -- the protocol is let go, as asyncio lets it go; one set after the
      -- end is kept (nothing calls it)
      assert.is_nil(t:get_protocol())
      local other = {}
      t:set_protocol(other)
      assert.are.equal(other, t:get_protocol())
      assert.are.equal(loop, t:get_loop())
      -- tapio's figures at the end (a copy each time)
      local stats = t:get_stats()
      assert.are.equal(sent, stats.bytes_sent)
      assert.are.equal(0, stats.write_buffer_size)
      stats.bytes_sent = -1
      assert.are.equal(sent, t:get_stats().bytes_sent)
      server:close()
    end)
  end)

  -- At lua_close the loop's __gc ends its transports without calling
  -- anybody; a finalizer that runs after it (its object made before the
  -- loop) meets the same closed shells as after loop:close(). They were
  -- empty: get_loop nil, the limits 0, 0, no names and no figures.
  it("is the same closed shell when the loop goes at lua_close", function()
    local script = [[
      local tapio = require "tapio"
      local how, certs = ...
      local kept, state = {}, {}
      local function show()
        for _, k in ipairs(kept) do
          local t = k[2]
          local row = { k[1], tostring(t),
                        tostring(t:get_loop() == state.loop) }
          if t.get_write_buffer_limits then
            row[#row + 1] = table.concat({ t:get_write_buffer_limits() }, "/")
          end
          if t.can_write_eof then
            row[#row + 1] = tostring(t:can_write_eof())
          end
          for _, key in ipairs({ "sockname", "peername", "cipher",
                                 "subprocess" }) do
            if t:get_extra_info(key) ~= nil then row[#row + 1] = key end
          end
          if t.get_stats then row[#row + 1] = t:get_stats().bytes_sent end
          print(table.concat(row, " "))
        end
      end
      -- made before the loop, so finalized after it
      local function finalize()
        if how == "gc" then show() end
      end
      local observer = newproxy and newproxy(true)
        or setmetatable({}, { __gc = finalize })
      getmetatable(observer).__gc = finalize
      local loop = tapio.new_loop()
      state.loop = loop
      local function keep(k, t) kept[#kept + 1] = { k, t } end
      local function factory() return {} end
      loop:run_until_complete(function()
        local srv = loop:create_server(factory, "127.0.0.1", 0)
        local t = loop:create_connection(factory, "127.0.0.1",
          srv:addresses()[1][2])
        t:write("abc")
        keep("stream", t)
        srv = loop:create_server(factory, "127.0.0.1", 0, { ssl =
          tapio.tls_context { side = "server", cert_file = certs
            .. "/server.pem", key_file = certs .. "/server.key" } })
        keep("tls", (loop:create_connection(factory, "127.0.0.1",
          srv:addresses()[1][2], { ssl = tapio.tls_context { cafile = certs
            .. "/ca.pem" }, server_hostname = "localhost" })))
        local r, w = tapio.pipe()
        keep("read_pipe", (loop:connect_read_pipe(factory, r)))
        keep("write_pipe", (loop:connect_write_pipe(factory, w)))
        keep("datagram", (loop:create_datagram_endpoint(factory,
          { local_addr = { "127.0.0.1", 0 } })))
        t = loop:subprocess_exec(factory, "sleep", { "sleep", "30" },
          { stdin = tapio.PIPE })
        keep("subprocess", t)
        keep("stdin", t:get_pipe_transport(0))
      end)
      if how == "close" then
        loop:close()
        show()
      end
    ]]
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local function answers(how)
      local out, status = helper.execute(("timeout 20 %s %s %s %s"):format(
        jit and "luajit" or "lua5.4", path, how,
        helper.shell_quote(helper.certs())))
      assert.are.equal(0, status, out)
      return out
    end
    local closed, collected = answers("close"), answers("gc")
    os.remove(path)
    local sent, none = "3", "0" -- get_stats' figures are integers
    assert.are.equal(table.concat({
      "stream tapio.transport (closed) true 16384/65536 true sockname "
        .. "peername " .. sent,
      "tls tapio.transport (closed) true 16384/65536 false sockname peername "
        .. "cipher " .. none,
      "read_pipe tapio.read_transport (closed) true " .. none,
      "write_pipe tapio.write_transport (closed) true 16384/65536 true "
        .. none,
      "datagram tapio.datagram_transport (closed) true 16384/65536 sockname "
        .. none,
      "subprocess tapio.subprocess_transport (closed) true subprocess",
      "stdin tapio.write_transport (closed) true 16384/65536 true " .. none,
      "" }, "\n"), closed)
    assert.are.equal(closed, collected)
  end)

  it("answers peername in a done callback after the end", function()
    run(function(loop)
      local server, t, p, sp = pair(loop)
      local peer = sp.transport:get_extra_info("sockname")
      local seen = loop:create_future()
      p.lost:add_done_callback(function()
        loop:call_soon(function()
          seen:set_result(t:get_extra_info("peername"))
        end)
      end)
      sp.transport:close()
      assert.are.equal(peer, seen:await())
      assert.are.equal("tapio.transport (closed)", tostring(t))
      server:close()
    end)
  end)

  it("raises on bad arguments, naming function and argument", function()
    run(function(loop)
      local server, t = pair(loop)
      assert.has_error(function() t:write(42) end,
        "tapio: transport:write: bad argument #1 'data' "
        .. "(string expected, got number)")
      assert.has_error(function() t:write() end,
        "tapio: transport:write: bad argument #1 'data' "
        .. "(string expected, got no value)")
      assert.has_error(function() t:writelines("abc") end,
        "tapio: transport:writelines: bad argument #1 'list_of_data' "
        .. "(table expected, got string)")
      assert.has_error(function() t:writelines({ "a", 2 }) end,
        "tapio: transport:writelines: bad argument #1 'list_of_data' "
        .. "(string expected at index 2, got number)")
      assert.has_error(function() t:writelines({ a = "x" }) end,
        "tapio: transport:writelines: bad argument #1 'list_of_data' "
        .. "(list expected, got a table with key 'a')")
      -- # of a list with a hole is either border: the words say which
      local ok, err = pcall(t.writelines, t, { "a", nil, "c" })
      assert.is_false(ok)
      assert.matches("'list_of_data' %(list expected, got a [%a ]+%d%)",
        err)
      assert.has_error(function() t:set_write_buffer_limits(-1) end,
        "tapio: transport:set_write_buffer_limits: bad argument #1 'high' "
        .. "(-1 is out of range 0..4503599627370496)")
      assert.has_error(function() t:set_write_buffer_limits(10, 20) end,
        "tapio: transport:set_write_buffer_limits: bad argument #2 'low' "
        .. "(must not be greater than high)")
      assert.has_error(function() t:set_write_buffer_limits("1") end,
        "tapio: transport:set_write_buffer_limits: bad argument #1 'high' "
        .. "(integer expected, got string)")
      assert.has_error(function() t:get_extra_info(1) end,
        "tapio: transport:get_extra_info: bad argument #1 'name' "
        .. "(string expected, got number)")
      assert.has_error(function() t:set_protocol("p") end,
        "tapio: transport:set_protocol: bad argument #1 'protocol' "
        .. "(table expected, got string)")
      -- a method called on the wrong kind of object
      assert.has_error(function() t.write(server, "x") end,
        "tapio: transport:write: bad self "
        .. "(tapio.transport expected, got tapio.server)")
      assert.has_error(function() t.close({}) end,
        "tapio: transport:close: bad self "
        .. "(tapio.transport expected, got table)")
      assert.are.equal(nil, server.write)
      t:close()
      server:close()
    end)
  end)
end)

describe("creating transports", function()
  it("fails with an error value when the connection is refused", function()
    run(function(loop)
      local server = loop:create_server(function() return {} end,
        "127.0.0.1", 0)
      local port = helper.port(server)
      server:close()
      local made = false
      local ok, err = pcall(loop.create_connection, loop, function()
        made = true
        return {}
      end, "127.0.0.1", port)
      assert.is_false(ok)
      assert.are.equal(tapio.ECONNREFUSED, err.code)
      assert.are.equal("ECONNREFUSED", err.name)
      assert.is_string(err.message)
      assert.matches("ECONNREFUSED", tostring(err))
      assert.is_false(made) -- the factory runs once connected, as asyncio's
    end)
  end)

  it("closes what a create call made when its task is cancelled once it "
     .. "was made, before the task resumed", function()
    run(function(loop)
      local server = loop:create_server(function() return {} end,
        "127.0.0.1", 0)
      local p = recorder(loop)
      local t = helper.cancel_when_made(loop, loop.create_connection, loop,
        function() return p end, "127.0.0.1", helper.port(server))
      assert.is_true(t:is_closing())
      assert.is_false(p.lost:await()) -- connection_lost(nil): closed
      server:close()
      local made = helper.cancel_when_made(loop, loop.create_server, loop,
        function() return {} end, "localhost", 0) -- looked up: done later
      assert.is_false(made:is_serving())
      t = helper.cancel_when_made(loop, loop.subprocess_exec, loop,
        function() return {} end, "sleep", { "30" })
      assert.is_true(t:is_closing()) -- the child killed
    end)
  end)

  it("fails with an error value when the name does not resolve", function()
    run(function(loop)
      -- an IPv6 literal asked for as IPv4: fails without asking DNS
      local ok, err = pcall(loop.create_connection, loop, function()
        return {}
      end, "::1", 80, { family = 4 })
      assert.is_false(ok)
      assert.matches("^EAI_", err.name)
    end)
  end)

  it("binds the local side given in the options", function()
    run(function(loop)
      local server = loop:create_server(function() return recorder(loop) end,
        "127.0.0.1", 0)
      local t = loop:create_connection(function() return recorder(loop) end,
        "127.0.0.1", helper.port(server),
        { local_host = "127.0.0.1", local_port = 0, family = 4,
          nodelay = false })
      assert.are.equal("127.0.0.1", t:get_extra_info("sockname")[1])
      t:close()
      server:close()
    end)
  end)

  it("takes asyncio's local_addr = {host, port}, as open_connection does",
    function()
    run(function(loop)
      local server = loop:create_server(function() return recorder(loop) end,
        "127.0.0.1", 0)
      local opts = { local_addr = { "127.0.0.2", 0 } }
      local t = loop:create_connection(function() return recorder(loop) end,
        "127.0.0.1", helper.port(server), opts)
      assert.are.equal("127.0.0.2", t:get_extra_info("sockname")[1])
      assert.are.same({ local_addr = { "127.0.0.2", 0 } }, opts) -- not
      t:close()                                                 -- changed
      server:close()
      -- errors name the caller's line, the wrapper's own as the core's
      local function fails(...)
        local ok, err = pcall(loop.create_connection, loop, ...)
        assert.is_false(ok)
        return err
      end
      local f = function() return {} end
      assert.matches("^tapio: loop:create_connection: bad option "
        .. "'local_addr' %({host, port} expected%)$",
        fails(f, "127.0.0.1", 1, { local_addr = "127.0.0.1" }))
      local ok, err = pcall(function()
        loop:create_connection(f, "127.0.0.1", 1, { local_addr = 1 })
      end)
      assert.is_false(ok)
      assert.matches("transport_spec.lua:%d+: tapio: loop:create_connection: "
        .. "bad option 'local_addr'", err)
      ok, err = pcall(function()
        loop:create_connection(f, "127.0.0.1", 1, { local_addr = { "x", 0 },
          backlog = 1 })
      end)
      assert.is_false(ok)
      assert.matches("transport_spec.lua:%d+: tapio: loop:create_connection: "
        .. "unknown option 'backlog'", err)
    end)
  end)

  it("checks arguments and options", function()
    run(function(loop)
      local f = function() return {} end
      assert.has_error(function() loop:create_connection(42, "h", 1) end,
        "tapio: loop:create_connection: bad argument #1 'protocol_factory' "
        .. "(function expected, got number)")
      assert.has_error(function() loop:create_connection(f, "h", 70000) end,
        "tapio: loop:create_connection: bad argument #3 'port' "
        .. "(70000 is out of range 0..65535)")
      assert.has_error(function() loop:create_connection(f, "h", 1.5) end,
        "tapio: loop:create_connection: bad argument #3 'port' "
        .. "(number has no integer representation)")
      assert.has_error(function() loop:create_connection(f, nil, 80) end,
        "tapio: loop:create_connection: bad argument #2 'host' "
        .. "(host and port are required unless opts.sock is given)")
      assert.has_error(function()
        loop:create_connection(f, "h", 1, { backlog = 1 })
      end, "tapio: loop:create_connection: unknown option 'backlog'")
      assert.has_error(function()
        loop:create_connection(f, "h", 1, { famly = 4 })
      end, "tapio: loop:create_connection: unknown option 'famly'")
      assert.has_error(function()
        loop:create_connection(f, "h", 1, { family = 5 })
      end, "tapio: loop:create_connection: bad option 'family' "
        .. "(0, 4 or 6 expected)")
      assert.has_error(function()
        loop:create_connection(f, "h", 1, { nodelay = "yes" })
      end, "tapio: loop:create_connection: bad option 'nodelay' "
        .. "(boolean expected)")
      assert.has_error(function()
        loop:create_connection(f, "h", 1, { local_host = 1 })
      end, "tapio: loop:create_connection: bad option 'local_host' "
        .. "(string expected)")
      assert.has_error(function()
        loop:create_connection(f, "h", 1, "opts")
      end, "tapio: loop:create_connection: bad argument #4 'opts' "
        .. "(table or nil expected, got string)")
    end)
  end)

  it("wraps a connected socket: the sock option and socketpair", function()
    run(function(loop)
      local a, b = tapio.socketpair()
      assert.is_number(a)
      local t, p = loop:create_connection(function() return recorder(loop) end,
        { sock = a })
      assert.are.same({ "made" }, p.events)
      assert.are.equal(3, tapio.send(b, "abc"))
      assert.are.equal("abc", p:bytes(3):await())
      assert.is_string(t:get_extra_info("peername")) -- Unix: a path, ""
      assert.is_true(tapio.close_fd(b))
      p.eof_fut:await()
      assert.are.equal(false, p.lost:await())
      local ok, err = tapio.close_fd(b)
      assert.is_nil(ok)
      assert.are.equal("EBADF", err.name)
    end)
  end)

  it("hands data_received what one read got: up to 261,932 bytes, 120 KiB "
     .. "under LuaJIT", function()
    -- LuaJIT's allocator maps strings of 128 KiB or more from the system
    -- one by one, so its reads stop short of that
    run(function(loop)
      local a, b = tapio.socketpair()
      local t, p = loop:create_connection(function() return recorder(loop) end,
        { sock = a })
      t:pause_reading()
      local data = ("0123456789abcdef"):rep(130 * 64) -- 130 KiB
      assert.are.equal(#data, tapio.send(b, data)) -- all in the socket now
      t:resume_reading()
      assert.are.equal(data, p:bytes(#data):await())
      local sizes = {}
      for i, chunk in ipairs(p.chunks) do sizes[i] = #chunk end
      if jit then
        assert.are.same({ 120 * 1024, 10 * 1024 }, sizes)
      else
        assert.are.same({ 130 * 1024 }, sizes)
      end
      t:close()
      assert.is_true(tapio.close_fd(b))
    end)
  end)

  -- 130 KiB in the socket before reading starts: one read under Lua 5.4,
  -- more than one data_received under LuaJIT (above), so what the first
  -- data_received does must hold for the rest of what the socket had.
  -- Returns the transport, its recorder, the peer's descriptor and the
  -- bytes sent; `first` runs inside the first data_received.
  local function big_read(loop, first, eof_behind)
    local a, b = tapio.socketpair()
    local t, p = loop:create_connection(function()
      return recorder(loop)
    end, { sock = a })
    local record = p.data_received
    function p:data_received(data)
      record(self, data)
      if #self.chunks == 1 then first(self) end
    end
    t:pause_reading()
    local data = ("0123456789abcdef"):rep(130 * 64 - 1) .. "the end of it.."
    assert.are.equal(#data, tapio.send(b, data)) -- all in the socket now
    if eof_behind then assert.is_true(tapio.close_fd(b)) end
    t:resume_reading()
    return t, p, b, data
  end

  -- what the first data_received gets of it
  local function first_size(data) return jit and 120 * 1024 or #data end

  for _, eof_behind in ipairs({ false, true }) do
    it(("keeps the rest of a big read while data_received pauses reading "
        .. "in its first part%s"):format(eof_behind and ", eof behind" or ""),
       function()
      run(function(loop)
        local reading
        local t, p, b, data = big_read(loop, function(self)
          self.transport:pause_reading()
          reading = self.transport:is_reading()
        end, eof_behind)
        p:bytes(1):await()
        for _ = 1, 3 do tapio.sleep(0) end -- loop iterations
        assert.are.same({ "made", "data" }, p.events)
        assert.are.equal(first_size(data), #p.received)
        assert.is_false(reading)
        assert.is_false(t:is_reading())
        t:resume_reading()
        assert.is_true(t:is_reading() or eof_behind and t:is_closing())
        if eof_behind then
          p.lost:await()
          assert.are.equal("eof", p.events[#p.events - 1])
        else
          assert.are.equal(5, tapio.send(b, "after")) -- behind the rest
          p:bytes(#data + 5):await()
          t:close()
          assert.is_true(tapio.close_fd(b))
        end
        assert.are.equal(data .. (eof_behind and "" or "after"), p.received)
      end)
    end)
  end

  for _, how in ipairs({ "close", "abort" }) do
    it(("drops the rest of a big read when data_received calls %s in its "
        .. "first part"):format(how), function()
      run(function(loop)
        local t, p, b, data = big_read(loop, function(self)
          self.transport[how](self.transport)
        end)
        assert.are.equal(false, p.lost:await())
        for _ = 1, 3 do tapio.sleep(0) end -- loop iterations
        assert.are.same({ "made", "data", "lost" }, p.events)
        assert.are.equal(first_size(data), #p.received)
        assert.is_true(t:is_closing())
        assert.is_true(tapio.close_fd(b))
      end)
    end)
  end

  it("leaves a stopped collector stopped while big reads come in",
     function()
    -- under Lua 5.4, after each read of 64 KiB or more the binding may run
    -- the collection the next read would; never when the program stopped
    -- the collector, so the strings data_received dropped all stay
    collectgarbage("stop")
    finally(function() collectgarbage("restart") end)
    run(function(loop)
      local a, b = tapio.socketpair()
      local got, want = 0, 0
      local fut
      local proto = { data_received = function(_, data)
        got = got + #data
        if got == want then fut:set_result(true) end
      end }
      local t = loop:create_connection(function() return proto end,
        { sock = a })
      local before = collectgarbage("count")
      local block = ("0123456789abcdef"):rep(100 * 64 - 1) -- 100 KiB
      for i = 1, 4 do -- one read each: all of it is in the socket first
        -- each different, as LuaJIT makes one string of equal ones
        local data = block .. ("%016d"):format(i)
        t:pause_reading()
        fut, want = loop:create_future(), want + #data
        assert.are.equal(#data, tapio.send(b, data))
        t:resume_reading()
        fut:await()
      end
      assert.is_true(collectgarbage("count") - before >= 4 * 100)
      t:close()
      assert.is_true(tapio.close_fd(b))
    end)
  end)

  it("wraps an accepted socket with connect_accepted_socket", function()
    run(function(loop)
      local a, b = tapio.socketpair()
      local t, p = loop:connect_accepted_socket(function()
        return recorder(loop)
      end, a)
      t:write("out")
      local other = loop:connect_accepted_socket(function()
        return recorder(loop)
      end, b, { nodelay = true })
      local _, q = other, other:get_protocol()
      assert.are.equal("out", q:bytes(3):await())
      t:close()
      q.lost:await()
      p.lost:await()
    end)
  end)

  it("refuses sock with a host or port as an argument error, leaving the "
     .. "descriptor open (asyncio's ValueError)", function()
    run(function(loop)
      local a, b = tapio.socketpair()
      local f = function() return recorder(loop) end
      assert.has_error(function()
        loop:create_connection(f, "127.0.0.1", 80, { sock = a })
      end, "tapio: loop:create_connection: bad argument #2 'host' "
        .. "(host/port and opts.sock cannot be given together)")
      assert.has_error(function()
        loop:create_server(f, nil, 8080, { sock = a })
      end, "tapio: loop:create_server: bad argument #3 'port' "
        .. "(host/port and opts.sock cannot be given together)")
      local t, p = loop:create_connection(f, { sock = a }) -- still open
      assert.are.equal(2, tapio.send(b, "ok"))
      assert.are.equal("ok", p:bytes(2):await())
      t:close()
      tapio.close_fd(b)
      p.lost:await()
    end)
  end)

  it("refuses a datagram socket or a pipe as sock before the call, "
     .. "leaving it open (asyncio's 'A Stream Socket was expected')",
     function()
    run(function(loop)
      local a, b = tapio.socketpair("dgram")
      local r, w = tapio.pipe()
      local f = function() return recorder(loop) end
      local dgram = "(a stream socket expected, got a datagram socket)"
      local calls = {
        { "loop:create_connection: bad option 'sock' ",
          function(fd) loop:create_connection(f, { sock = fd }) end },
        { "loop:connect_accepted_socket: bad argument #2 'sock' ",
          function(fd) loop:connect_accepted_socket(f, fd) end },
        { "loop:create_server: bad option 'sock' ",
          function(fd) loop:create_server(f, nil, nil, { sock = fd }) end },
        { "open_connection: bad option 'sock' ",
          function(fd) tapio.open_connection({ sock = fd }) end },
        { "start_server: bad option 'sock' ",
          function(fd) tapio.start_server(f, nil, nil, { sock = fd }) end },
      }
      for _, c in ipairs(calls) do
        assert.has_error(function() c[2](a) end, "tapio: " .. c[1] .. dgram)
        assert.has_error(function() c[2](r) end, "tapio: " .. c[1]
          .. "(a stream socket expected, got no socket)")
      end
      assert.are.equal(2, tapio.send(a, "ok"))
      for _, fd in ipairs({ a, b, r, w }) do
        assert.is_true(tapio.close_fd(fd)) -- each still the caller's
      end
    end)
  end)

  it("fails on a descriptor that is not a stream socket", function()
    run(function(loop)
      local ok, err = pcall(loop.connect_accepted_socket, loop, function()
        return {}
      end, 0x7ffff000)
      assert.is_false(ok)
      assert.are.equal("EBADF", err.name)
    end)
  end)

  it("refuses as 'sock' a descriptor a transport or server of the loop "
     .. "owns, leaving it open", function()
    run(function(loop)
      local server = loop:create_server(function() return {} end,
        "127.0.0.1", 0)
      local t, p = loop:create_connection(function()
        return helper.recorder(loop)
      end, "127.0.0.1", helper.port(server))
      local fd, lfd = t:get_extra_info("socket"), server:sockets()[1]
      local function refused(fn, ...)
        local ok, err = pcall(fn, loop, ...)
        assert.is_false(ok)
        assert.are.equal("EBUSY", err.name)
        assert.matches("'sock' is in use by a transport or server of the "
          .. "loop", err.message, 1, true)
      end
      local factory = function() return {} end
      refused(loop.create_connection, factory, nil, nil, { sock = fd })
      refused(loop.connect_accepted_socket, factory, fd)
      refused(loop.create_server, factory, nil, nil, { sock = lfd })
      local path = os.tmpname()
      os.remove(path)
      local userver = loop:create_unix_server(factory, path)
      local ut = loop:create_unix_connection(factory, path)
      refused(loop.create_unix_connection, factory,
        { sock = ut:get_extra_info("socket") })
      refused(loop.create_unix_server, factory,
        { sock = userver:sockets()[1] })
      ut:close()
      userver:close()
      -- both still theirs: open and working
      t:write("ping")
      assert.are.equal(lfd, server:sockets()[1])
      local t2, p2 = loop:create_connection(function()
        return helper.recorder(loop)
      end, "127.0.0.1", helper.port(server))
      assert.is_false(t:is_closing())
      t:close()
      t2:close()
      assert.is_false(p.lost:await())
      assert.is_false(p2.lost:await())
      server:close()
    end)
  end)
end)

describe("a Unix socket transport", function()
  it("connects to a Unix server and reports the path", function()
    local path = os.tmpname()
    os.remove(path)
    run(function(loop)
      local accepted = loop:create_future()
      local server = loop:create_unix_server(function()
        local p = recorder(loop)
        accepted:set_result(p)
        return p
      end, path)
      assert.are.same({ path }, server:addresses())
      assert.is_true(helper.exists(path))
      local t, p = loop:create_unix_connection(function()
        return recorder(loop)
      end, path)
      assert.are.equal(path, t:get_extra_info("peername"))
      t:write("over unix")
      local sp = accepted:await()
      assert.are.equal("over unix", sp:bytes(9):await())
      assert.are.equal(path, sp.transport:get_extra_info("sockname"))
      t:close()
      p.lost:await()
      server:close()
      server:wait_closed()
    end)
    assert.is_false(helper.exists(path)) -- cleanup_socket removed it
  end)

  it("takes a Unix socket as opts.sock, as asyncio's sock: a listening "
     .. "one serves, a connected one talks to it", function()
    local path = os.tmpname()
    os.remove(path)
    run(function(loop)
      local l = helper.unix_listener(path)
      local accepted = loop:create_future()
      local server = loop:create_unix_server(function()
        local p = recorder(loop)
        accepted:set_result(p)
        return p
      end, nil, { sock = l })
      local c = assert(tapio.socket(tapio.AF_UNIX, tapio.SOCK_STREAM))
      loop:sock_connect(c, path)
      local t, p = loop:create_unix_connection(function()
        return recorder(loop)
      end, { sock = c })
      assert.are.equal(path, t:get_extra_info("peername"))
      t:write("by sock")
      local sp = accepted:await()
      assert.are.equal("by sock", sp:bytes(7):await())
      t:close()
      p.lost:await()
      server:close()
      server:wait_closed()
    end)
    assert.is_true(helper.exists(path)) -- the caller's file: it stays
    os.remove(path)
  end)

  it("listens on a bound socket given as opts.sock, as asyncio's server "
     .. "does (Unix and TCP)", function()
    local path = os.tmpname()
    os.remove(path)
    run(function(loop)
      local u = assert(tapio.socket(tapio.AF_UNIX, tapio.SOCK_STREAM))
      assert(tapio.bind(u, path)) -- bound, not listening
      local ip = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
      assert(tapio.bind(ip, { "127.0.0.1", 0 }))
      local s1 = loop:create_unix_server(function() return {} end,
        { sock = u })
      local s2 = loop:create_server(function() return {} end, nil, nil,
        { sock = ip })
      local t1 = loop:create_unix_connection(function() return {} end, path)
      local t2 = loop:create_connection(function() return {} end,
        "127.0.0.1", tapio.getsockname(ip)[2])
      t1:close()
      t2:close()
      s1:close()
      s2:close()
      local a, b = tapio.socketpair() -- connected: no listening on it
      local ok, err = pcall(loop.create_unix_server, loop,
        function() return {} end, { sock = a })
      assert.is_false(ok)
      assert.matches("create_unix_server: cannot listen on the socket given "
        .. "as 'sock': invalid argument", tostring(err))
      tapio.close_fd(b) -- a is tapio's from the call on: closed
    end)
    os.remove(path)
  end)

  it("refuses a sock that is no Unix socket, or one given with a path",
     function()
    run(function(loop)
      local f = function() return {} end
      local ip = assert(tapio.socket(tapio.AF_INET, tapio.SOCK_STREAM))
      local u = assert(tapio.socket(tapio.AF_UNIX, tapio.SOCK_STREAM))
      assert.has_error(function()
        loop:create_unix_connection(f, nil, { sock = ip })
      end, "tapio: loop:create_unix_connection: bad option 'sock' (a Unix "
        .. "stream socket expected, got an IP one)")
      assert.has_error(function()
        loop:create_unix_server(f, { sock = ip })
      end, "tapio: loop:create_unix_server: bad option 'sock' (a Unix "
        .. "stream socket expected, got an IP one)")
      assert.has_error(function()
        loop:create_unix_connection(f, "/tmp/x", { sock = u })
      end, "tapio: loop:create_unix_connection: bad argument #2 'path' "
        .. "(path and opts.sock cannot be given together)")
      for _, fd in ipairs({ ip, u }) do
        assert.is_true(tapio.close_fd(fd)) -- refused first: the caller's
      end
    end)
  end)

  it("fails with an error value when nobody listens", function()
    run(function(loop)
      local ok, err = pcall(loop.create_unix_connection, loop, function()
        return {}
      end, "/nonexistent/tapio.sock")
      assert.is_false(ok)
      assert.are.equal("ENOENT", err.name)
      assert.has_error(function()
        loop:create_unix_connection(function() end, 42)
      end, "tapio: loop:create_unix_connection: bad argument #2 'path' "
        .. "(string expected, got number)")
      assert.has_error(function()
        loop:create_unix_connection(function() end, "/x", { nodelay = 1 })
      end, "tapio: loop:create_unix_connection: unknown option 'nodelay'")
    end)
  end)
end)
