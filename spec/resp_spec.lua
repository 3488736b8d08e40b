-- examples/resp_server.lua, a Redis-protocol server in Lua, driven by
-- Debian's redis-tools (redis-cli, redis-benchmark) as a program on
-- 127.0.0.1, by Lua peers writing raw RESP, and on tapio.testing's
-- virtual network and clock (the server's parts, required); its request
-- parser (examples/resp_wire.lua) fed bytes.
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"
package.path = "examples/?.lua;" .. package.path
local resp = require "resp_server"

local run = helper.run
local CLI, BENCH = "/usr/bin/redis-cli", "/usr/bin/redis-benchmark"

-- Inside a task: the server as a program with args; its process and port.
local function server(args)
  return helper.start_server_program("examples/resp_server.lua", args)
end

-- Inside a task: SIGTERM to the server; the lines it printed after the
-- first, once it exited with 0.
local stop = helper.stop_server_program

-- Inside a task: redis-cli's output for the commands of input (one a
-- line, quoted as redis-cli takes them), its formatted output forced.
local function cli(port, input, ...)
  local p = tapio.create_subprocess_exec(CLI, { "-h", "127.0.0.1", "-p",
    tostring(port), "--no-raw", ... },
    { stdin = tapio.PIPE, stdout = tapio.PIPE, stderr = tapio.STDOUT })
  local out = p:communicate(input)
  assert.are.equal(0, p:wait(), out)
  return out
end

local function lines(t)
  return table.concat(t, "\n") .. "\n"
end

describe("examples/resp_server.lua with redis-cli", function()
  if not helper.exists(CLI) then
    return
  end

  -- Commands as redis-cli reads them from its input, and what it prints
  -- for each (--no-raw: quoted strings with \x escapes, typed values).
  local SESSION = {
    { 'PING', 'PONG' },
    { 'PING "hi there"', '"hi there"' },
    { 'ECHO hello', '"hello"' },
    { 'SET bin "a\\x00b\\r\\nc\\xff"', 'OK' },
    { 'GET bin', '"a\\x00b\\r\\nc\\xff"' },
    { 'GET nosuch', '(nil)' },
    { 'SET n 41', 'OK' },
    { 'INCR n', '(integer) 42' },
    { 'INCRBY n -50', '(integer) -8' },
    { 'INCR bin', '(error) ERR value is not an integer or out of range' },
    { 'SET big 9223372036854775807', 'OK' },
    { 'INCR big', '(error) ERR increment or decrement would overflow' },
    { 'MGET n nosuch bin', '1) "-8"\n2) (nil)\n3) "a\\x00b\\r\\nc\\xff"' },
    { 'RPUSH list a b', '(integer) 2' },
    { 'LPUSH list z', '(integer) 3' },
    { 'LRANGE list 0 -1', '1) "z"\n2) "a"\n3) "b"' },
    { 'GET list', '(error) WRONGTYPE Operation against a key holding the '
                  .. 'wrong kind of value' },
    { 'TYPE list', 'list' },
    { 'EXISTS n n nosuch', '(integer) 2' },
    { 'KEYS *i[n]', '1) "bin"' },
    { 'KEYS nomatch*', '(empty array)' },
    { 'DBSIZE', '(integer) 4' },
    { 'DEL n nosuch list', '(integer) 2' },
    { 'DBSIZE', '(integer) 2' },
    -- (the 400 ms over the whole seconds: TTL rounds, and may read them
    -- up to 900 ms later)
    { 'SET t v PX 100400', 'OK' },
    { 'TTL t', '(integer) 100' },
    { 'TTL bin', '(integer) -1' },
    { 'TTL nosuch', '(integer) -2' },
    { 'EXPIRE bin ten', '(error) ERR value is not an integer or out of '
                        .. 'range' },
    { 'EXPIRE nosuch 10', '(integer) 0' },
    { 'PEXPIRE bin 50400', '(integer) 1' },
    { 'TTL bin', '(integer) 50' },
    { 'PERSIST bin', '(integer) 1' },
    { 'DECRBY big -9223372036854775808', '(error) ERR decrement would '
                                         .. 'overflow' },
    { 'SET t v', 'OK' },
    { 'TTL t', '(integer) -1' },
    { 'SET t v EX 0', "(error) ERR invalid expire time in 'set' command" },
    { 'SET t v EX ten', '(error) ERR value is not an integer or out of '
                        .. 'range' },
    { 'SET t v EX ten BAD', '(error) ERR syntax error' },
    { 'SET t v NX', '(nil)' },
    { 'SET t w XX GET', '"v"' },
    { 'SET t v PX 5 KEEPTTL', '(error) ERR syntax error' },
    { 'GET', "(error) ERR wrong number of arguments for 'get' command" },
    { 'NOSUCH "a b" c', "(error) ERR unknown command 'NOSUCH', with args "
                        .. "beginning with: 'a b' 'c' " },
    { 'CONFIG GET save', '1) "save"\n2) ""' },
    { 'CONFIG GET append*', '1) "appendonly"\n2) "no"' },
    { 'CONFIG SET save 1', "(error) ERR unknown subcommand 'SET'. Try "
                           .. "CONFIG HELP." },
    { 'FLUSHALL', 'OK' },
    { 'DBSIZE', '(integer) 0' },
  }

  it("answers strings, nil, integers, arrays, binary values and errors "
     .. "as Redis does", function()
    run(function()
      local p, port = server { "127.0.0.1", "0" }
      local input, expected = {}, {}
      for i, pair in ipairs(SESSION) do
        input[i], expected[i] = pair[1], pair[2]
      end
      assert.are.equal(lines(expected), cli(port, lines(input)))
      stop(p)
    end)
  end)

  it("serves a Unix socket", function()
    run(function()
      local path = os.tmpname() -- a name of our own, the server's socket
      os.remove(path)
      local p = server { "--unix", path }
      assert.are.equal("PONG\n", cli("0", "PING\n", "-s", path))
      stop(p)
      assert.is_false(helper.exists(path))
    end)
  end)

  it("passes a message from PUBLISH to a SUBSCRIBE", function()
    run(function()
      local p, port = server { "127.0.0.1", "0" }
      local sub = tapio.create_subprocess_exec(CLI, { "-h", "127.0.0.1", "-p",
        tostring(port), "--no-raw", "SUBSCRIBE", "news", "other" },
        { stdout = tapio.PIPE })
      assert.are.equal(lines { 'Reading messages... (press Ctrl-C to quit)',
        '1) "subscribe"', '2) "news"', '3) (integer) 1',
        '1) "subscribe"', '2) "other"', '3) (integer) 2' },
        sub.stdout:readuntil('3) (integer) 2\n'))
      assert.are.equal("(integer) 1\n",
                       cli(port, 'PUBLISH news "hello there"\n'))
      assert.are.equal("(integer) 0\n", cli(port, "PUBLISH nobody x\n"))
      assert.are.equal(lines { '1) "message"', '2) "news"',
                               '3) "hello there"' },
                       sub.stdout:readuntil('"hello there"\n'))
      sub:terminate()
      sub:wait()
      stop(p)
    end)
  end)
end)

describe("examples/resp_server.lua with redis-benchmark", function()
  if not helper.exists(BENCH) then
    return
  end

  it("completes 20,000 pipelined requests of each test from 50 clients; "
     .. "the keys hold what they imply", function()
    run(function()
      local p, port = server { "127.0.0.1", "0" }
      local b = tapio.create_subprocess_exec(BENCH, { "-h", "127.0.0.1",
        "-p", tostring(port), "-q", "-n", "20000", "-c", "50", "-P", "16",
        "-t", "set,get,incr,lpush" },
        { stdout = tapio.PIPE, stderr = tapio.PIPE })
      local out, err = b:communicate()
      assert.are.equal(0, b:wait(), out .. err)
      assert.are.equal("", err)
      local done = {}
      for name in out:gmatch("([A-Z]+): [%d.]+ requests per second") do
        done[#done + 1] = name
      end
      assert.are.same({ "SET", "GET", "INCR", "LPUSH" }, done, out)
      assert.are.equal(lines { '"20000"', '(integer) 20000', '"VXK"',
                               '(integer) 3' },
        cli(port, lines { "GET counter:__rand_int__", "LLEN mylist",
                          "GET key:__rand_int__", "DBSIZE" }))
      stop(p)
    end, { deadline = 30 })
  end)
end)

-- A RESP array of the strings.
local function request(...)
  local out = { "*" .. select("#", ...) .. "\r\n" }
  for _, s in ipairs({ ... }) do
    out[#out + 1] = "$" .. #s .. "\r\n" .. s .. "\r\n"
  end
  return table.concat(out)
end

describe("examples/resp_server.lua and a subscriber that stops reading",
         function()
  it("disconnects it past --pubsub-limit; the server goes on answering",
     function()
    run(function()
      local limit = 1024 * 1024
      local p, port = server { "--pubsub-limit", tostring(limit),
                               "127.0.0.1", "0" }
      local sr, sw = tapio.open_connection("127.0.0.1", port)
      sw:write(request("SUBSCRIBE", "firehose"))
      local confirmed = "*3\r\n$9\r\nsubscribe\r\n$8\r\nfirehose\r\n:1\r\n"
      assert.are.equal(confirmed, sr:readexactly(#confirmed))
      -- from now on nobody reads sr: its transport stops reading
      local pr, pw = tapio.open_connection("127.0.0.1", port)
      local message = ("x"):rep(65536)
      local published = 0
      repeat
        pw:write(request("PUBLISH", "firehose", message))
        local answer = pr:readline()
        published = published + 1
        assert.is_true(published < 2000, "never dropped")
      until answer == ":0\r\n"
      assert.are.equal("PONG\n", tapio.wait_for(function()
        return cli(port, "PING\n")
      end, 5))
      -- what had reached it, then the end
      local ok, e = pcall(function()
        while sr:read(65536) ~= "" do end
      end)
      assert.is_true(ok or e.code == tapio.ECONNRESET, tostring(e))
      sw:close()
      pw:close()
      local log = stop(p)
      assert.are.equal(1, #log, table.concat(log, "\n"))
      local waiting = tonumber(log[1]:match(
        "^dropped subscriber %('127.0.0.1', %d+%): over 1048576 bytes "
        .. "%((%d+) bytes waiting%)$"))
      assert.is_true(waiting > limit, log[1])
      assert.is_true(waiting <= limit + #message + 64, log[1])
    end, { deadline = 20 })
  end)
end)

-- On the virtual network: a server of resp.new_server's parts at
-- 127.0.0.1:6379; returns the server and the list of the protocols it
-- made (its clients).
local function virtual_server(opts)
  local loop = tapio.get_running_loop()
  local state, clients = resp.new_server(loop, opts), {}
  local server = loop:create_server(function()
    clients[#clients + 1] = state:client()
    return clients[#clients]
  end, "127.0.0.1", 6379)
  return server, clients
end

-- Inside a task: writes req, returns what came back (n bytes).
local function exchange(r, w, req, n)
  w:write(req)
  return r:readexactly(n)
end

describe("examples/resp_server.lua on tapio.testing's virtual clock",
         function()
  it("lets a key with EX 10 live 10 seconds, by a timer", testing.run(
     function(clock)
    local server = virtual_server()
    local r, w = tapio.open_connection("127.0.0.1", 6379)
    assert.are.equal("+OK\r\n", exchange(r, w, "SET k v EX 10\r\n", 5))
    assert.are.equal("+OK\r\n", exchange(r, w, "SET kept v EX 1\r\n", 5))
    assert.are.equal(":1\r\n", exchange(r, w, "PERSIST kept\r\n", 4))
    clock:advance(9.9)
    assert.are.equal("$1\r\nv\r\n", exchange(r, w, "GET k\r\n", 7))
    assert.are.equal(":100\r\n", exchange(r, w, "PTTL k\r\n", 6))
    clock:advance(0.2)
    -- gone by its timer: DBSIZE reads no key
    assert.are.equal(":1\r\n", exchange(r, w, "DBSIZE\r\n", 4))
    assert.are.equal("$-1\r\n", exchange(r, w, "GET k\r\n", 5))
    assert.are.equal(":-1\r\n", exchange(r, w, "TTL kept\r\n", 5))
    w:close()
    server:close()
  end))

  it("gives a pipelined request split at any byte the same replies",
     testing.run(function(clock)
    local server = virtual_server()
    local req = request("SET", "k\r\n", "a\0b\r\n") .. "PING\r\n"
      .. request("GET", "k\r\n") .. request("INCR", "n")
      .. "ECHO  inline\n" .. request("MGET", "k\r\n", "none")
      .. request("NOSUCH", "x") .. "*0\r\n" .. request("DEL", "k\r\n", "n")
    local replies = "+OK\r\n+PONG\r\n$5\r\na\0b\r\n\r\n:1\r\n"
      .. "$6\r\ninline\r\n*2\r\n$5\r\na\0b\r\n\r\n$-1\r\n"
      .. "-ERR unknown command 'NOSUCH', with args beginning with: 'x' \r\n"
      .. ":2\r\n"
    local function replay(cuts)
      local r, w = tapio.open_connection("127.0.0.1", 6379)
      local at = 1
      for _, cut in ipairs(cuts) do
        w:write(req:sub(at, cut))
        clock:run_until_idle() -- the server has read it
        at = cut + 1
      end
      w:write(req:sub(at))
      local got = r:readexactly(#replies)
      w:close()
      return got
    end
    assert.are.equal(replies, replay {})
    local every = {}
    for cut = 1, #req - 1 do
      assert.are.equal(replies, replay { cut }, "split after byte " .. cut)
      every[cut] = cut
    end
    assert.are.equal(replies, replay(every))
    server:close()
  end))

  it("answers QUIT, and a protocol error as Redis words it, then closes",
     testing.run(function()
    local server = virtual_server()
    for req, reply in pairs {
      ["PING\r\nQUIT\r\nPING\r\n"] = "+PONG\r\n+OK\r\n",
      ["*1\r\n$4\r\nPING\r\n*1\r\n+PING\r\nPING\r\n"] =
        "+PONG\r\n-ERR Protocol error: expected '$', got '+'\r\n",
      ["*1\r\n$-2\r\n"] = "-ERR Protocol error: invalid bulk length\r\n",
      ["*x\r\n"] = "-ERR Protocol error: invalid multibulk length\r\n",
      [("x"):rep(65537)] = "-ERR Protocol error: too big inline request\r\n",
    } do
      local r, w = tapio.open_connection("127.0.0.1", 6379)
      w:write(req)
      assert.are.equal(reply, r:read())
      assert.are.equal("", r:read())
      w:close()
    end
    server:close()
  end))

  it("lets a subscribed client run only (UN)SUBSCRIBE, PING and QUIT, "
     .. "until it has unsubscribed from all", testing.run(function()
    local server = virtual_server()
    local r, w = tapio.open_connection("127.0.0.1", 6379)
    local function push(kind, channel, n)
      return "*3\r\n$" .. #kind .. "\r\n" .. kind .. "\r\n"
        .. (channel and "$" .. #channel .. "\r\n" .. channel .. "\r\n"
            or "$-1\r\n") .. ":" .. n .. "\r\n"
    end
    for _, case in ipairs {
      { "SUBSCRIBE a b\r\n", push("subscribe", "a", 1)
                                .. push("subscribe", "b", 2) },
      { "GET k\r\n", "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / "
        .. "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this "
        .. "context\r\n" },
      { "PING\r\n", "*2\r\n$4\r\npong\r\n$0\r\n\r\n" },
      { "UNSUBSCRIBE a\r\n", push("unsubscribe", "a", 1) },
      { "UNSUBSCRIBE\r\n", push("unsubscribe", "b", 0) },
      { "UNSUBSCRIBE\r\n", push("unsubscribe", nil, 0) },
      { "GET k\r\n", "$-1\r\n" },
    } do
      assert.are.equal(case[2], exchange(r, w, case[1], #case[2]))
    end
    w:close()
    server:close()
  end))

  it("stops reading and running a client's requests while their replies "
     .. "wait", testing.run(function(clock)
    local server, clients = virtual_server()
    local r, w = tapio.open_connection("127.0.0.1", 6379)
    local value = ("v"):rep(100000)
    assert.are.equal("+OK\r\n", exchange(r, w, request("SET", "big", value),
                                         5))
    -- 20 MB of replies asked for, none read: in one write, then in many
    w:write(("GET big\r\n"):rep(100))
    clock:run_until_idle()
    local c = clients[1]
    local _, high = c.transport:get_write_buffer_limits()
    local waiting = c.transport:get_write_buffer_size()
    assert.is_true(waiting > 0 and waiting <= high + #value + 16, waiting)
    for _ = 1, 100 do
      w:write("GET big\r\n")
      clock:run_until_idle()
    end
    assert.are.equal(waiting, c.transport:get_write_buffer_size())
    local reply = "$100000\r\n" .. value .. "\r\n"
    for i = 1, 200 do
      assert.are.equal(reply, r:readexactly(#reply), "reply " .. i)
    end
    w:close()
    server:close()
  end))

  it("drops a subscriber over the soft limit for its seconds on end, not "
     .. "one that catches up", testing.run(function(clock)
    local log = {}
    local server = virtual_server { pubsub_soft_limit = 65536,
      pubsub_soft_seconds = 60,
      log = function(line) log[#log + 1] = line end }
    local confirmed = "*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"
    local slow_r, slow_w = tapio.open_connection("127.0.0.1", 6379)
    local late_r, late_w = tapio.open_connection("127.0.0.1", 6379)
    for _, r_w in ipairs { { slow_r, slow_w }, { late_r, late_w } } do
      assert.are.equal(confirmed, exchange(r_w[1], r_w[2], "SUBSCRIBE c\r\n",
                                           #confirmed))
    end
    local pr, pw = tapio.open_connection("127.0.0.1", 6379)
    local push = "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1048576\r\n"
    local message = ("x"):rep(1024 * 1024)
    assert.are.equal(":2\r\n", exchange(pr, pw, request("PUBLISH", "c",
                                                        message), 4))
    clock:advance(59)
    -- one reads its megabyte at 59 s; the other never
    assert.are.equal(push .. message .. "\r\n",
                     late_r:readexactly(#push + #message + 2))
    clock:advance(0.9)
    assert.are.equal(":2\r\n", exchange(pr, pw, "PUBLISH c x\r\n", 4))
    assert.are.same({}, log)
    clock:advance(0.2)
    assert.are.equal(":1\r\n", exchange(pr, pw, "PUBLISH c x\r\n", 4))
    assert.are.equal(1, #log)
    assert.matches("^dropped subscriber %('127.0.0.1', %d+%): over 65536 "
                   .. "bytes for 60 s %(%d+ bytes waiting%)$", log[1])
    clock:advance(120)
    assert.are.equal(":1\r\n", exchange(pr, pw, "PUBLISH c x\r\n", 4))
    assert.are.equal(1, #log)
    for _, w in ipairs { pw, slow_w, late_w } do
      w:close()
    end
    server:close()
  end))
end)

describe("examples/resp_wire.lua's request parser, fed bytes", function()
  local wire = require "resp_wire"

  -- The requests parser p gives after each byte of s: { argv, the
  -- number of bytes fed when it came }.
  local function byte_by_byte(p, s)
    local got = {}
    for i = 1, #s do
      p:feed(s:sub(i, i))
      for argv in function() return p:next() end do
        got[#got + 1] = { argv, i }
      end
    end
    return got
  end

  it("gives a request once its last byte is there, not before",
     function()
    local set = request("SET", "k", ("v\r\n"):rep(100))
    local got = byte_by_byte(wire.parser(), set .. "*0\r\n PING  x\r\n")
    assert.are.same({ { { "SET", "k", ("v\r\n"):rep(100) }, #set },
                      { { "PING", "x" }, #set + 14 } }, got)
  end)

  it("gives Redis's words for a protocol error, then at every call",
     function()
    local p = wire.parser()
    p:feed(request("PING") .. ("x"):rep(65537))
    assert.are.same({ "PING" }, p:next())
    for _, more in ipairs { "", "\n" } do -- the line's end, too late
      p:feed(more)
      local argv, e = p:next()
      assert.is_nil(argv)
      assert.are.equal("too big inline request", e)
    end
  end)
end)
