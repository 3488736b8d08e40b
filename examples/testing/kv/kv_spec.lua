-- The spec of kv.lua: its server and client on tapio.testing's virtual
-- network and clock (the calls they make on real sockets, in memory),
-- then once on 127.0.0.1.
-- Run: busted examples/testing/kv/kv_spec.lua (make test: example_kv).
local tapio = require "tapio"
local testing = require "tapio.testing"
local kv = require "examples.testing.kv.kv"

local HOST, PORT = "127.0.0.1", 7000

-- A server that misbehaves: it reads a request, answers with reply(writer),
-- then reads nothing more until the client goes away.
local function bad_server(reply)
  return tapio.start_server(function(reader, writer)
    reader:readline()
    reply(writer)
    pcall(reader.read, reader)
    writer:close()
  end, HOST, PORT)
end

describe("the kv client, on the virtual network", function()
  it("answers requests sent together in order", testing.run(function(clock)
    local server = kv.serve(HOST, PORT, { store = { a = "1", b = "2" } })
    local c = kv.client(HOST, PORT)
    local got = tapio.gather({
      function() return c:get("a") end,
      function() return c:set("c", "3") end,
      function() return c:get("b") end,
      function() return c:get("c") end,
    })
    assert.same({ n = 4, "1", true, "2", "3" }, got)
    assert.equal(0, clock:time())
    c:close()
    server:close()
  end))

  it("sends requests without waiting for the replies", testing.run(
    function(clock)
    -- a server that answers only once it holds three requests
    local server = tapio.start_server(function(reader, writer)
      local keys = {}
      for i = 1, 3 do
        keys[i] = reader:readline():match("^GET (%S+)")
      end
      for i = 1, 3 do
        writer:write("VALUE " .. keys[i] .. "!\n")
      end
      pcall(reader.read, reader)
      writer:close()
    end, HOST, PORT)
    local c = kv.client(HOST, PORT)
    local got = tapio.gather({
      function() return c:get("x") end,
      function() return c:get("y") end,
      function() return c:get("z") end,
    })
    assert.same({ n = 3, "x!", "y!", "z!" }, got)
    assert.equal(0, clock:time())
    c:close()
    server:close()
  end))

  it("times a request out at exactly its deadline", testing.run(
    function(clock)
    local server = bad_server(function() end)
    local c = kv.client(HOST, PORT, { timeout = 2.5 })
    local ok, err = pcall(c.get, c, "a")
    assert.is_false(ok)
    assert.equal("ETIMEDOUT", err.name)
    assert.equal(2.5, clock:time())
    c:close()
    server:close()
  end, { autojump = true }))

  it("times out a server that stalls mid-reply, and reconnects at once",
     testing.run(function(clock)
    local server = bad_server(function(writer)
      writer:write("VAL")
    end)
    local c = kv.client(HOST, PORT, { timeout = 5 })
    local ok, err = pcall(c.get, c, "a")
    assert.is_false(ok)
    assert.equal("ETIMEDOUT", err.name)
    c.up:wait()
    assert.same({ 0, 5 }, c.attempts)
    c:close()
    server:close()
  end, { autojump = true }))

  it("backs off 1, 2, 4, 4 s while the server is gone", testing.run(
    function(clock)
    local server = kv.serve(HOST, PORT)
    local c = kv.client(HOST, PORT)
    assert.is_true(c:set("k", "v"))
    server:close()
    server:close_clients() -- gone at 0: refused at 0, 1, 3, 7, 11
    tapio.sleep(12)
    server = kv.serve(HOST, PORT)
    assert.is_nil(c:get("k")) -- a new server, an empty store
    assert.same({ 0, 0, 1, 3, 7, 11, 15 }, c.attempts)
    assert.equal(15, clock:time())
    c:close()
    server:close()
  end, { autojump = true }))

  it("fails the request a reset cuts, then reconnects", testing.run(
    function(clock)
    local server = kv.serve(HOST, PORT, { store = { a = "hello" } })
    local c = kv.client(HOST, PORT)
    c.up:wait()
    testing.fault(c.writer.transport, { reset_after = 3 }) -- mid-reply
    local ok, err = pcall(c.get, c, "a")
    assert.is_false(ok)
    assert.equal("ECONNRESET", err.name)
    assert.equal("hello", c:get("a"))
    assert.same({ 0, 0 }, c.attempts)
    assert.equal(0, clock:time())
    c:close()
    server:close()
  end))

  it("is hung up on by the server after 60 s of silence", testing.run(
    function(clock)
    local server = kv.serve(HOST, PORT)
    local reader, writer = tapio.open_connection(HOST, PORT)
    writer:write("SET a 1\n")
    assert.equal("OK\n", reader:readline())
    clock:advance(59.999)
    assert.is_false(reader:at_eof())
    assert.equal("", reader:read()) -- the end, at 60 s
    assert.equal(60, clock:time())
    writer:close()
    server:close()
  end, { autojump = true }))
end)

describe("the kv client, on 127.0.0.1", function()
  it("sets and gets", testing.run(function()
    local server = kv.serve(HOST, 0)
    local c = kv.client(HOST, server:addresses()[1][2])
    assert.is_true(c:set("k", "v w"))
    assert.equal("v w", c:get("k"))
    assert.is_nil(c:get("none"))
    c:close()
    server:close()
  end, { real = true }))
end)
