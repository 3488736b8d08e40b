-- examples/socks5.lua as a program, driven by curl (--socks5,
-- --socks5-hostname, --proxy-user) and by raw SOCKS5 clients in Python
-- (spec/support/socks5_peer.py), in front of Python origins: http.server
-- on 127.0.0.1 and ::1, a server that answers only once the client's end
-- has come, a port that refuses, one whose backlog is full (a connect
-- that times out), and ::1 and 127.0.0.1 at one port for a name of the
-- tests' DNS server (spec/support/dns_server.py) with both (Happy
-- Eyeballs). The reply codes, the bound address, backpressure against a
-- client that reads nothing, half-closes both ways, the handshake
-- deadline. Its wire module (examples/socks5_wire.lua) fed bytes.
local helper = require "spec.helper"
local tapio = helper.tapio

package.path = "examples/?.lua;" .. package.path
local wire = require "socks5_wire"

local run = helper.run
local PYTHON, CURL = "/usr/bin/python3", "/usr/bin/curl"
local PEER = "spec/support/socks5_peer.py"

-- Every byte value, and 4 MiB of a pattern that does not repeat at any
-- power of two.
local SMALL = {}
for i = 0, 255 do
  SMALL[#SMALL + 1] = string.char(i)
end
SMALL = table.concat(SMALL)
local MIB = 1024 * 1024
local BIG = ("0123456789abcdefghijklmnopqrstuvwxyz!")
  :rep(math.floor(4 * MIB / 37) + 1):sub(1, 4 * MIB)

local root
local function files()
  root = root or helper.files_dir({ small = SMALL, big = BIG })
  return root
end

teardown(function()
  if root then
    helper.remove_dir(root)
  end
end)

-- Inside a task: the proxy as a program with args and environment env
-- (added to ours); its process and port.
local function start_proxy(args, env)
  local argv = { "examples/socks5.lua", "--timeout", "2" }
  for _, a in ipairs(args) do
    argv[#argv + 1] = a
  end
  argv[#argv + 1] = "0"
  local p = tapio.create_subprocess_exec(helper.HOST, argv,
    { stdout = tapio.PIPE, env = env, extend_env = env and true })
  local line = p.stdout:readline()
  return p, tonumber(line:match("^listening on 127%.0%.0%.1:(%d+)\n$"))
end

-- Inside a task: fn(ports, proxy_port) with the origins and the proxy
-- (started with args and env) running; then both are stopped, also when
-- fn failed. Returns the lines the proxy printed after "listening on".
local function world(args, fn, env)
  local origins = tapio.create_subprocess_exec(PYTHON,
    { PEER, "origins", files() }, { stdin = tapio.PIPE, stdout = tapio.PIPE })
  local ports = {}
  for _ = 1, 6 do
    local name, port = origins.stdout:readline():match("^(%w+) (%d+)\n$")
    ports[name] = tonumber(port)
  end
  local proxy, port = start_proxy(args, env)
  local ok, err = pcall(fn, ports, port)
  local log = helper.stop_server_program(proxy)
  origins.stdin:close()
  assert.are.equal(0, origins:wait())
  if not ok then
    error(err, 0)
  end
  return log
end

-- Inside a task: curl's output, exit status and error output.
local function curl(args)
  local argv = { "-sS", "--max-time", "10" }
  for _, a in ipairs(args) do
    argv[#argv + 1] = a
  end
  local p = tapio.create_subprocess_exec(CURL, argv,
    { stdout = tapio.PIPE, stderr = tapio.PIPE })
  local out, err = p:communicate()
  return out, p:wait(), err
end

-- Inside a task: the lines a raw client printed (it must succeed).
local function peer(...)
  local argv = { PEER }
  for i = 1, select("#", ...) do
    argv[#argv + 1] = tostring((select(i, ...)))
  end
  return helper.output_lines(tapio.create_subprocess_exec(PYTHON, argv,
    { stdout = tapio.PIPE }))
end

local function via(port)
  return "127.0.0.1:" .. port
end

-- The log's lines of requests and handshakes, in order, without the
-- client's address, which the kernel picked; or, with ended, the lines
-- of relays that ended (each comes when its relay ends, perhaps after
-- the next request's).
local function requests(log, ended)
  local out = {}
  for _, line in ipairs(log) do
    line = line:gsub("^%('127%.0%.0%.1', %d+%): ", "")
    local request = line:find("^CONNECT ") or line:find("^handshake ")
    if (request and not ended) or (ended and not request) then
      out[#out + 1] = line
    end
  end
  return out
end

describe("examples/socks5.lua with curl", function()
  if not (helper.exists(PYTHON) and helper.exists(CURL)) then
    return
  end

  it("relays --socks5 to an IPv4 and an IPv6 origin, every byte value",
     function()
    run(function()
      local log = world({}, function(ports, port)
        for _, url in ipairs({ "http://127.0.0.1:" .. ports.HTTP4,
                               "http://[::1]:" .. ports.HTTP6 }) do
          local out, status, err = curl { "--socks5", via(port),
                                          url .. "/small" }
          assert.are.equal(0, status, err)
          assert.is_true(SMALL == out, "the body differs")
        end
      end)
      assert.are.equal(2, #requests(log))
      assert.matches("^CONNECT 127%.0%.0%.1 port %d+: reply 0 via "
                     .. "%('127%.0%.0%.1', %d+%)$", requests(log)[1])
      assert.matches("^CONNECT ::1 port %d+: reply 0 via %('::1', %d+, 0, "
                     .. "0%)$", requests(log)[2])
    end)
  end)

  it("resolves --socks5-hostname's name itself and relays 4 MiB exactly, "
     .. "and its IPv6 literal", function()
    run(function()
      local log = world({}, function(ports, port)
        local out, status, err = curl { "--socks5-hostname", via(port),
          "http://localhost:" .. ports.HTTP4 .. "/big" }
        assert.are.equal(0, status, err)
        assert.are.equal(#BIG, #out)
        assert.is_true(BIG == out, "the body differs")
        out, status, err = curl { "--socks5-hostname", via(port),
          "http://[::1]:" .. ports.HTTP6 .. "/small" }
        assert.are.equal(0, status, err)
        assert.is_true(SMALL == out, "the body differs")
      end)
      assert.matches("^CONNECT localhost port %d+: reply 0 via "
                     .. "%('127%.0%.0%.1', %d+%)$", requests(log)[1])
      assert.matches("^CONNECT ::1 port %d+: reply 0 via %('::1', %d+, 0, "
                     .. "0%)$", requests(log)[2])
    end)
  end)

  it("with --user, serves --proxy-user's right credentials and refuses "
     .. "wrong ones and none", function()
    run(function()
      local log = world({ "--user", "alice:s3:cret" }, function(ports, port)
        local url = "http://127.0.0.1:" .. ports.HTTP4 .. "/small"
        local out, status, err = curl { "--socks5", via(port),
          "--proxy-user", "alice:s3:cret", url }
        assert.are.equal(0, status, err)
        assert.is_true(SMALL == out, "the body differs")
        out, status, err = curl { "--socks5", via(port),
          "--proxy-user", "alice:secret", url }
        assert.are.equal(97, status) -- CURLE_PROXY
        assert.are.equal("", out)
        assert.matches("User was rejected by the SOCKS5 server", err)
        out, status, err = curl { "--socks5", via(port), url }
        assert.are.equal(97, status)
        assert.matches("No authentication method was acceptable", err)
      end)
      assert.are.same({ "handshake failed: bad credentials for user "
                        .. "'alice'",
                        "handshake failed: no acceptable method" },
                      { requests(log)[2], requests(log)[3] })
    end)
  end)

  it("answers a refused port with 0x05 and a name that does not exist "
     .. "with 0x04", function()
    run(function()
      local log = world({}, function(ports, port)
        local out, status, err = curl { "--socks5", via(port),
          "http://127.0.0.1:" .. ports.REFUSED .. "/" }
        assert.are.equal(97, status)
        assert.are.equal("", out)
        assert.matches("Can't complete SOCKS5 connection to 127.0.0.1. (5)",
                       err, 1, true)
        out, status, err = curl { "--socks5-hostname", via(port),
          "http://nonexistent.invalid/" }
        assert.are.equal(97, status)
        assert.matches("connection to nonexistent.invalid. (4)", err, 1,
                       true)
        assert.are.same({ "REPLY 5 0.0.0.0 0", "THEN end" },
          peer("request", port, "1", "1", "127.0.0.1", ports.REFUSED))
      end)
      assert.matches("^CONNECT 127%.0%.0%.1 port %d+: reply 5 %(.*"
                     .. "%(ECONNREFUSED%)%)$", requests(log)[1])
      assert.matches("^CONNECT nonexistent%.invalid port 80: reply 4 %(.*"
                     .. "%(EAI_NONAME%)%)$", requests(log)[2])
    end)
  end)
end)

describe("examples/socks5.lua with the tests' DNS server", function()
  if not (helper.exists(PYTHON) and helper.exists(CURL)) then
    return
  end

  it("races a name's addresses (Happy Eyeballs): ::1 does not answer, "
     .. "127.0.0.1 does", function()
    run(function()
      local dns = tapio.create_subprocess_exec(PYTHON,
        { "spec/support/dns_server.py" },
        { stdin = tapio.PIPE, stdout = tapio.PIPE })
      local dns_port = dns.stdout:readline():match("^PORT (%d+)\n$")
      local env = { TAPIO_DNS_SERVERS = "127.0.0.1:" .. dns_port }
      local log = world({}, function(ports, port)
        local out, status, err = curl { "--socks5-hostname", via(port),
          "http://six4.tapio.test:" .. ports.RACE .. "/small" }
        assert.are.equal(0, status, err)
        assert.is_true(SMALL == out, "the body differs")
      end, env)
      dns.stdin:close()
      dns:wait()
      assert.matches("^CONNECT six4%.tapio%.test port %d+: reply 0 via "
                     .. "%('127%.0%.0%.1', %d+%)$", requests(log)[1])
    end)
  end)
end)

describe("examples/socks5.lua with raw clients", function()
  if not helper.exists(PYTHON) then
    return
  end

  it("replies with the bound address of an IPv6 target, 0x03 where no "
     .. "route goes, 0x07 to BIND and 0x08 to an unknown address type",
     function()
    run(function()
      world({}, function(ports, port)
        assert.are.same({ "REPLY 0 ::1 port" },
          peer("request", port, "1", "4", "::1", ports.HTTP6))
        -- (a TCP connect to a broadcast address: ENETUNREACH)
        assert.are.same({ "REPLY 3 0.0.0.0 0", "THEN end" },
          peer("request", port, "1", "1", "255.255.255.255", "80"))
        assert.are.same({ "REPLY 7 0.0.0.0 0", "THEN end" },
          peer("request", port, "2", "1", "127.0.0.1", ports.HTTP4))
        assert.are.same({ "REPLY 8 0.0.0.0 0", "THEN end" },
          peer("request", port, "1", "9", "127.0.0.1", ports.HTTP4))
      end)
    end)
  end)

  it("does not take a name with a NUL inside for the name before it",
     function()
    run(function()
      local log = world({}, function(ports, port)
        assert.are.same({ "REPLY 1 0.0.0.0 0", "THEN end" },
          peer("request", port, "1", "3", "127.0.0.1\\x00.example.org",
               ports.HTTP4))
      end)
      assert.matches("^CONNECT 127%.0%.0%.1%z%.example%.org port %d+: "
                     .. "reply 1 %(.*string with a NUL byte inside%)%)$",
                     requests(log)[1])
    end)
  end)

  it("answers 0x06 when the target's connect times out", function()
    run(function()
      local log = world({}, function(ports, port)
        assert.are.same({ "REPLY 6 0.0.0.0 0", "THEN end" },
          peer("request", port, "1", "1", "127.0.0.1", ports.FULL))
      end)
      assert.matches("^CONNECT 127%.0%.0%.1 port %d+: reply 6 %(timeout: "
                     .. "timed out after 2 s %(ETIMEDOUT%)%)$",
                     requests(log)[1])
    end)
  end)

  it("holds what a client does not read yet to a transport's high-water "
     .. "mark and a read, and stops reading the origin", function()
    run(function()
      local log = world({}, function(_, port)
        assert.are.same({ "ORIGIN held", "READ 67108615 same" },
                        peer("slowreader", port))
      end)
      local ended = requests(log, true)
      assert.are.equal(1, #ended)
      local buffered = tonumber(ended[1]:match(
        "^127%.0%.0%.1 port %d+: 0 bytes up, 67108615 down, at most (%d+) "
        .. "buffered$"))
      assert(buffered and buffered <= 128 * 1024, ended[1])
    end, { deadline = 60 }) -- 64 MiB through Python: slow on a loaded machine
  end)

  it("passes each direction's end on: the origin answers after the "
     .. "client's, and the client reads to the origin's", function()
    run(function()
      world({}, function(ports, port)
        local lines = peer("halfclose", port, ports.ANSWER, "hello, origin")
        assert.are.equal("REPLY 0", lines[1])
        assert.matches("^from 127%.0%.0%.1 %d+ got hello, origin$", lines[2])
        assert.are.equal("BOUND matches", lines[3])
      end)
    end)
  end)

  it("drops a client that stalls in the handshake at the deadline, "
     .. "serving another meanwhile", function()
    run(function()
      local log = world({}, function(ports, port)
        local stalled = tapio.create_subprocess_exec(PYTHON,
          { PEER, "stall", tostring(port) }, { stdout = tapio.PIPE })
        assert.are.equal("CONNECTED\n", stalled.stdout:readline())
        local out, status, err = curl { "--socks5", via(port),
          "http://127.0.0.1:" .. ports.HTTP4 .. "/small" }
        assert.are.equal(0, status, err)
        assert.is_true(SMALL == out, "the body differs")
        assert.is_nil(stalled.returncode) -- still waiting
        local line = helper.output_lines(stalled)[1]
        local after = tonumber(line:match(
          "^DROPPED after ([%d.]+) s with 0 bytes$"))
        assert(after and after >= 1.5 and after < 4, line)
      end)
      assert.are.equal("handshake failed: timeout: timed out after 2 s "
                       .. "(ETIMEDOUT)",
                       requests(log)[2])
    end, { deadline = 15 })
  end)
end)

describe("examples/socks5_wire.lua", function()
  it("writes IPv6 addresses as RFC 5952 does and reads them back",
     function()
    for text, hex in pairs({
      ["::1"] = "00000000000000000000000000000001",
      ["::"] = "00000000000000000000000000000000",
      ["2001:db8::1:0:0:1"] = "20010db8000000000001000000000001",
      ["2001:db8:0:1:1:1:1:1"] = "20010db8000000010001000100010001",
      ["fe80::"] = "fe800000000000000000000000000000",
      ["::ffff:7f00:1"] = "00000000000000000000ffff7f000001",
    }) do
      local bytes = hex:gsub("%x%x", function(h)
        return string.char(tonumber(h, 16))
      end)
      assert.are.equal(text, wire.ntop6(bytes))
      assert.are.equal(bytes, wire.pton6(text))
    end
    assert.are.equal(wire.pton6("::ffff:7f00:1"),
                     wire.pton6("::ffff:127.0.0.1"))
    for _, bad in ipairs({ "1::2::3", "12345::", "1:2:3:4:5:6:7",
                           "1:2:3:4:5:6:7:8:9", "::1.2.3.4.5", "g::" }) do
      assert.is_nil(wire.pton6(bad), bad)
    end
  end)

  it("reads a request split anywhere, and makes replies", function()
    local msg = "\5\1\0\3\9localhost\1\187"
    for cut = 1, #msg - 1 do
      local reader = tapio.StreamReader()
      reader:feed_data(msg:sub(1, cut))
      reader:feed_data(msg:sub(cut + 1))
      local req = run(function()
        return wire.read_request(reader)
      end)
      assert.are.same({ cmd = 1, atyp = 3, host = "localhost", port = 443 },
                      req)
    end
    assert.are.equal("\5\0\0\4" .. ("\0"):rep(15) .. "\1\4\210",
                     wire.reply(0, "::1", 1234))
    assert.are.equal("\5\5\0\1\0\0\0\0\0\0", wire.reply(5))
  end)
end)
