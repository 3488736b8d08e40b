-- The WebSocket examples against Python's websockets (10.4, Debian 12):
-- examples/ws_echo_server.lua run as a program with websockets clients and
-- raw sockets (spec/support/ws_peer.py) as its clients, ws:// and wss://;
-- examples/ws_client.lua run as a program against a websockets server.
-- And examples/websocket.lua's own pieces (SHA-1, base64, masking, UTF-8)
-- in this interpreter.
local helper = require "spec.helper"
local tapio = helper.tapio

package.path = "examples/?.lua;" .. package.path
local ws = require "websocket"

local run = helper.run
local python = "/usr/bin/python3"

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

describe("examples/websocket.lua", function()
  it("answers RFC 6455's sample key; SHA-1 and base64 as the RFCs' samples",
     function()
    assert.are.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                     ws.accept_key("dGhlIHNhbXBsZSBub25jZQ=="))
    assert.are.equal("a9993e364706816aba3e25717850c26c9cd0d89d",
                     hex(ws.sha1("abc")))
    assert.are.equal("84983e441c3bd26ebaae4aa1f95129e5e54670f1", hex(ws.sha1(
      "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))
    assert.are.same({ "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==" },
      { ws.base64(""), ws.base64("f"), ws.base64("fo"), ws.base64("foo"),
        ws.base64("foob") })
  end)

  it("masks with the key repeated, and unmasks back", function()
    local t = {}
    for i = 1, 1029 do
      t[i] = string.char(i % 256)
    end
    local data = table.concat(t)
    local masked = ws.mask(data, "\1\2\3\250")
    assert.are.equal(#data, #masked)
    assert.are.same({ 0, 0, 0, 254, 4 }, { masked:byte(1, 5) })
    assert.are.equal(4, masked:byte(1029)) -- past the 8-byte blocks
    assert.are.equal(data, ws.mask(masked, "\1\2\3\250"))
  end)

  it("tells well-formed UTF-8 from overlong forms, surrogates and more",
     function()
    assert.is_true(ws.valid_utf8("h\195\169llo \226\152\131 \240\159\152\128"))
    assert.is_false(ws.valid_utf8("\192\175"))          -- overlong "/"
    assert.is_false(ws.valid_utf8("\237\160\128"))      -- U+D800
    assert.is_false(ws.valid_utf8("\244\144\128\128"))  -- past U+10FFFF
    assert.is_false(ws.valid_utf8("\195"))              -- cut short
  end)
end)

-- Inside a task: the echo server as a program with args; its process and
-- port.
local function server(args)
  local argv = {}
  for _, a in ipairs(args or {}) do
    argv[#argv + 1] = a
  end
  argv[#argv + 1] = "127.0.0.1"
  argv[#argv + 1] = "0"
  return helper.start_server_program("examples/ws_echo_server.lua", argv)
end

-- Inside a task: SIGTERM to the server; the lines it logged, once it
-- exited with 0.
local stop = helper.stop_server_program

-- Inside a task: what ws_peer.py's scenario printed against port.
local function peer(scenario, port, tls, ...)
  return helper.output_lines(tapio.create_subprocess_exec(python, {
    "spec/support/ws_peer.py", scenario, tostring(port),
    tls and helper.certs() or "-", ... }, { stdout = tapio.PIPE }))
end

-- The server's log lines for connections that ended with code.
local function ended(log, code)
  local found = {}
  for _, line in ipairs(log) do
    if line:match("^closed .*: " .. code .. " ") then
      found[#found + 1] = line
    end
  end
  return found
end

local ECHOED = { "BINARY 0 True", "BINARY 125 True", "BINARY 126 True",
  "BINARY 65535 True", "BINARY 65536 True", "BINARY 8388608 True",
  "TEXT str True", "FRAGMENTS fragmented \195\169",
  "BINARY FRAGMENTS True", "PONG", "CLOSED 1000" }

describe("examples/ws_echo_server.lua", function()
  if not helper.exists(python) then
    return
  end

  for _, tls in ipairs { false, true } do
    it(("echoes websockets' messages byte for byte over %s: 0 to 8 MiB, "
        .. "text, fragments; answers a ping"):format(tls and "wss" or "ws"),
       function()
      run(function()
        local p, port = server(tls and { "--tls", helper.cert("server.pem"),
                                         helper.cert("server.key") })
        assert.are.same(ECHOED, peer("echo", port, tls))
        local log = stop(p)
        assert.are.equal(1, #ended(log, 1000))
        assert.is_truthy(ended(log, 1000)[1]:find(", clean,", 1, true))
      end, { deadline = 20 })
    end)
  end

  it("answers a ping sent between the fragments of a message, then the "
     .. "message", function()
    run(function()
      local p, port = server()
      assert.are.same({ "FRAME 10 b'ping!'", "FRAME 1 b'first half'",
                        "CLOSE 1000 ", "EOF True" },
                      peer("interleaved", port)) -- the code, echoed
      stop(p)
    end)
  end)

  it("closes with 1007 on invalid UTF-8, 1002 on an unmasked frame, 1009 "
     .. "on a message over --max-size", function()
    run(function()
      local p, port = server { "--max-size", "65536" }
      assert.are.same({ "CLOSE 1007 invalid UTF-8 in a text message",
                        "EOF True" }, peer("bad_utf8", port))
      assert.are.same({ "CLOSE 1002 unmasked frame from the client",
                        "EOF True" }, peer("unmasked", port))
      assert.are.same({ "CLOSED 1009" }, peer("toobig", port))
      local log = stop(p)
      assert.are.equal(1, #ended(log, 1007))
      assert.are.equal(1, #ended(log, 1002))
      assert.are.equal(1, #ended(log, 1009))
    end)
  end)

  it("ends the connection of a peer that never answers its close frame",
     function()
    run(function()
      local p, port = server { "--close-timeout", "0.5" }
      -- the peer reads until the end, for at most 10 s: the end came
      assert.are.same({ "CLOSE 1002 unmasked frame from the client",
                        "EOF True" }, peer("noanswer", port))
      local log = stop(p)
      assert.is_truthy(ended(log, 1002)[1]:find(", unclean,", 1, true))
    end)
  end)

  it("serves 50 clients at once", function()
    run(function()
      local p, port = server()
      assert.are.same({ "CODES [1000] 50" }, peer("many", port, false, "50"))
      assert.are.equal(50, #ended(stop(p), 1000))
    end, { deadline = 20 })
  end)

  it("closes every client with 1001 'going away' on SIGTERM", function()
    run(function()
      local p, port = server()
      local clients = tapio.create_subprocess_exec(python, {
        "spec/support/ws_peer.py", "held", tostring(port), "-", "10" },
        { stdout = tapio.PIPE })
      assert.are.equal("READY\n", clients.stdout:readline())
      -- and one that never sends its request
      local silent, w = tapio.open_connection("127.0.0.1", port)
      local log = stop(p)
      assert.are.equal("", silent:read()) -- closed, not left to hang
      w:close()
      assert.are.same({ "CLOSED 1001 going away" },
                      helper.output_lines(clients))
      assert.are.equal(10, #ended(log, 1001))
      assert.are.equal("stopped", log[#log])
    end)
  end)

  it("keeps what it buffers for a slow reader bounded: drain", function()
    run(function()
      local p, port = server()
      assert.are.same({ "ECHOED True", "CLOSE 1000 ", "EOF True" },
                      peer("slow", port))
      local line = ended(stop(p), 1000)[1]
      local peak = tonumber(line:match("peak buffer (%d+) bytes"))
      -- 32 MiB went through; at most the 256 KiB a StreamWriter batches
      -- and the transport's high-water mark of 64 KiB, plus a message or
      -- two, waited in the server
      assert.is_true(peak < 512 * 1024, line)
    end)
  end)

  it("drops a client that sends no request within --open-timeout",
     function()
    run(function()
      local p, port = server { "--open-timeout", "0.2" }
      local reader, writer = tapio.open_connection("127.0.0.1", port)
      assert.are.equal("", reader:read())
      writer:close()
      local log = stop(p)
      assert.is_truthy(log[1]:find("no request: timeout: timed out after "
                                   .. "0.2 s", 1, true), log[1])
    end)
  end)

  it("refuses a request that is no WebSocket handshake with 400", function()
    run(function()
      local p, port = server()
      local reader, writer = tapio.open_connection("127.0.0.1", port)
      writer:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      local answer = reader:read()
      assert.is_truthy(answer:find("^HTTP/1.1 400 Bad Request\r\n"), answer)
      writer:close()
      local log = stop(p)
      assert.is_truthy(log[1]:find("no 'Upgrade: websocket'", 1, true))
    end)
  end)
end)

-- Inside a task: websockets' echo server (spec/support/ws_peer.py server);
-- its process and port. Its stdin's end stops it.
local function python_server(tls)
  local p = tapio.create_subprocess_exec(python, { "spec/support/ws_peer.py",
    "server", tls and helper.certs() or "-" },
    { stdin = tapio.PIPE, stdout = tapio.PIPE })
  return p, tonumber(p.stdout:readline())
end

-- Inside a task: ws_client.lua with args, its stdin and stdout piped.
local function client(args)
  local argv = { "examples/ws_client.lua" }
  for _, a in ipairs(args) do
    argv[#argv + 1] = a
  end
  return tapio.create_subprocess_exec(helper.HOST, argv,
    { stdin = tapio.PIPE, stdout = tapio.PIPE, stderr = tapio.PIPE,
      limit = 1024 * 1024 })
end

-- Inside a task: writes line to the client, returns the line it printed.
local function say(c, line)
  c.stdin:write(line .. "\n")
  c.stdin:drain()
  return (c.stdout:readline():gsub("\n$", ""))
end

describe("examples/ws_client.lua", function()
  if not helper.exists(python) then
    return
  end

  for _, tls in ipairs { false, true } do
    it(("talks to a websockets server over %s and closes with 1000 at "
        .. "the end of its input"):format(tls and "wss" or "ws"), function()
      run(function()
        local s, port = python_server(tls)
        local c = client(tls and { "--cafile", helper.cert("ca.pem"),
          "wss://localhost:" .. port .. "/chat" } or
          { "ws://127.0.0.1:" .. port .. "/chat" })
        assert.are.equal("hello", say(c, "hello"))
        assert.are.equal("", say(c, ""))
        assert.are.equal("fragmented", say(c, "frag"))   -- 3 fragments
        assert.are.equal("pong came", say(c, "ping"))    -- the server pinged
        local long = ("\195\169"):rep(40000)              -- 80,000 bytes
        assert.are.equal(long, say(c, long))
        c.stdin:close()
        assert.are.equal("", c.stdout:read())
        assert.are.equal("", c.stderr:read())
        assert.are.equal(0, c:wait())
        assert.are.equal("CLOSED 1000 \n", s.stdout:readline())
        s.stdin:close()
        assert.are.equal(0, s:wait())
      end)
    end)
  end

  it("exits 1 saying why when the server closes first", function()
    run(function()
      local s, port = python_server(false)
      local c = client { "ws://127.0.0.1:" .. port .. "/" }
      c.stdin:write("bye\n")
      assert.are.equal("", c.stdout:read())
      assert.are.equal("closed: 1001 server going away\n", c.stderr:read())
      assert.are.equal(1, c:wait())
      assert.are.equal("CLOSED 1001 \n", s.stdout:readline()) -- our echo:
      -- the code alone
      c.stdin:close()
      s.stdin:close()
      assert.are.equal(0, s:wait())
    end)
  end)

  it("closes with 1001 'going away' on Ctrl-C, then exits 130", function()
    run(function()
      local s, port = python_server(false)
      local c = client { "ws://127.0.0.1:" .. port .. "/" }
      assert.are.equal("hello", say(c, "hello"))
      c:send_signal("SIGINT")
      assert.are.equal("", c.stdout:read())
      assert.are.equal(130, c:wait())
      assert.are.equal("CLOSED 1001 going away\n", s.stdout:readline())
      c.stdin:close()
      s.stdin:close()
      assert.are.equal(0, s:wait())
    end)
  end)

  it("closes with 1002 when the server masks a frame", function()
    run(function()
      local s = tapio.create_subprocess_exec(python, {
        "spec/support/ws_peer.py", "masked_server" }, { stdout = tapio.PIPE })
      local port = tonumber(s.stdout:readline())
      local c = client { "ws://127.0.0.1:" .. port .. "/" }
      assert.are.equal("", c.stdout:read())
      assert.are.equal("closed: 1002 masked frame from the server\n",
                       c.stderr:read())
      assert.are.equal(1, c:wait())
      assert.are.same({ "CLOSE 1002 masked frame from the server" },
                      helper.output_lines(s))
      c.stdin:close()
    end)
  end)

  it("exits 1 with one line saying why it could not connect", function()
    run(function()
      local server = tapio.start_server(function() end, "127.0.0.1", 0)
      local port = helper.port(server)
      server:close()
      server:wait_closed() -- nothing listens there now
      local c = client { "ws://127.0.0.1:" .. port .. "/" }
      assert.are.equal(("ws_client: connect call failed ('127.0.0.1', %d): "
        .. "connection refused (ECONNREFUSED)\n"):format(port),
        c.stderr:read())
      assert.are.equal(1, c:wait())
      c.stdin:close()
    end)
  end)
end)
