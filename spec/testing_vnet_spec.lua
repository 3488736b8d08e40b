-- The virtual network of tapio.testing's loops: a client and a server
-- written with their usual calls (start_server and open_connection,
-- create_server and create_connection, with TLS or not) meet through
-- memory on the virtual clock, with the refusals, waits and resets of
-- real sockets. The certificates are spec/tls/make_certs.sh's.
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"

local cert = helper.cert

-- An address value as a plain {host, port} table.
local function hp(addr)
  return { addr[1], addr[2] }
end

-- A streams echo server of the usual kind: each line back, upper-cased.
local function upper_server(host, port, opts)
  return tapio.start_server(function(reader, writer)
    while true do
      local line = reader:readline()
      if line == "" then
        break
      end
      writer:write(line:upper())
      writer:drain()
    end
    writer:close()
  end, host, port, opts)
end

describe("the virtual network", function()
  it("joins open_connection to start_server, with real-looking addresses",
     testing.run(function()
    local server = upper_server("127.0.0.1", 0)
    local port = server:addresses()[1][2]
    assert.same({ "127.0.0.1", 32768 }, hp(server:addresses()[1]))
    local reader, writer = tapio.open_connection("localhost", port)
    writer:write("hello\n")
    assert.equal("HELLO\n", reader:readline())
    assert.same({ "127.0.0.1", port }, hp(writer:get_extra_info("peername")))
    local mine = writer:get_extra_info("sockname")
    assert.equal("127.0.0.1", mine[1])
    assert.is_true(mine[2] > port)
    assert.is_nil(writer:get_extra_info("socket")) -- there is none
    assert.same({}, server:sockets())
    writer:close()
    writer:wait_closed()
    server:close()
    server:wait_closed()
  end))

  it("connects from 127.0.0.1 to another loopback address, as Linux",
     testing.run(function()
    local peer
    local server = tapio.start_server(function(_, writer)
      peer = writer:get_extra_info("peername")
      writer:close()
    end, "127.0.0.2", 0)
    local port = server:addresses()[1][2]
    local reader, writer = tapio.open_connection("127.0.0.2", port)
    assert.equal("", reader:read())
    local mine = writer:get_extra_info("sockname")
    assert.equal("127.0.0.1", mine[1])
    assert.same({ "127.0.0.1", mine[2] }, hp(peer))
    assert.same({ "127.0.0.2", port }, hp(writer:get_extra_info("peername")))
    writer:close()
    server:close()
    server:wait_closed()
  end))

  it("refuses a port where nothing listens and names it",
     testing.run(function()
    local ok, err = pcall(tapio.open_connection, "127.0.0.1", 9)
    assert.is_false(ok)
    assert.equal("ECONNREFUSED", err.name)
    assert.matches("connect call failed ('127.0.0.1', 9)", err.message, 1,
      true)
    ok, err = pcall(tapio.open_connection, "db.example", 5432)
    assert.is_false(ok)
    assert.matches("could not resolve 'db.example'", err.message, 1, true)
  end))

  it("answers getaddrinfo with its own names", testing.run(function(_, loop)
    local list = loop:getaddrinfo("localhost", 80,
      { type = tapio.SOCK_STREAM, flags = tapio.AI_CANONNAME })
    assert.equal(1, #list)
    assert.same({ "127.0.0.1", 80 }, hp(list[1].addr))
    assert.equal("localhost", list[1].canonname)
    list = loop:getaddrinfo("localhost", 80,
      { family = tapio.AF_INET6, type = tapio.SOCK_STREAM })
    assert.same({ "::1", 80 }, hp(list[1].addr))
    local ok, err = pcall(loop.getaddrinfo, loop, "db.example", 80)
    assert.is_false(ok)
    assert.equal("EAI_NONAME", err.name)
  end))

  it("times a connect out on the virtual clock while the server is not "
     .. "accepting", testing.run(function(clock, loop)
    local server = upper_server("127.0.0.1", 0,
      { start_serving = false, backlog = 0 })
    local port = server:addresses()[1][2]
    -- Backlog 0 holds one connection, as Linux's queue holds backlog + 1.
    local _, filler = tapio.open_connection("127.0.0.1", port)
    local ok, err = pcall(tapio.wait_for, function()
      return tapio.open_connection("127.0.0.1", port)
    end, 5)
    assert.is_false(ok)
    assert.equal(tapio.ETIMEDOUT, err.code)
    assert.equal(5, loop:time())
    assert.equal(2, testing.transport_count(loop)) -- the connect is gone
    filler:close()
    server:close()
    server:wait_closed()
  end, { autojump = true }))

  it("fails a Unix connect to a full backlog at once, as Linux",
     testing.run(function()
    local server = tapio.start_unix_server(function(_, writer)
      writer:close()
    end, "/vnet/full.sock", { start_serving = false, backlog = 0 })
    local _, filler = tapio.open_unix_connection("/vnet/full.sock")
    local ok, err = pcall(tapio.open_unix_connection, "/vnet/full.sock")
    assert.is_false(ok)
    assert.equal("EAGAIN", err.name)
    assert.equal("connect call failed '/vnet/full.sock': resource "
                 .. "temporarily unavailable", err.message)
    filler:close()
    server:close()
    server:wait_closed()
  end))

  it("lets a client retry until its server comes up, in virtual seconds",
     testing.run(function(clock, loop)
    local attempts = 0
    local client = tapio.create_task(function()
      local delay = 1
      while true do
        attempts = attempts + 1
        local ok, reader, writer = pcall(tapio.open_connection,
          "127.0.0.1", 7000)
        if ok then
          return reader, writer
        end
        assert.equal("ECONNREFUSED", reader.name)
        tapio.sleep(delay)
        delay = delay * 2
      end
    end)
    tapio.sleep(6) -- tries at 0, 1, 3, then waits until 7
    local server = upper_server("127.0.0.1", 7000)
    local reader, writer = client:await()
    assert.equal(4, attempts)
    assert.equal(7, loop:time())
    writer:write("late\n")
    assert.equal("LATE\n", reader:readline())
    writer:close()
    writer:wait_closed()
    server:close()
    server:wait_closed()
  end, { autojump = true }))

  it("carries a protocol pair made with create_server and "
     .. "create_connection", testing.run(function(clock, loop)
    local accepted = testing.recorder(nil, { merge = true })
    local server = loop:create_server(function()
      return accepted
    end, "::1", 8080)
    local client = testing.recorder(nil, { merge = true })
    local t = loop:create_connection(function()
      return client
    end, "::1", 8080)
    t:write("ping")
    clock:run_until_idle()
    assert.same({ "connection_made", "data_received:ping" },
      accepted.events)
    assert.same({ "::1", 8080 },
      hp(accepted.transport:get_extra_info("sockname")))
    t:close()
    clock:run_until_idle()
    server:close()
    server:wait_closed()
  end))

  it("runs TLS over it, the handshake on the virtual clock",
     testing.run(function()
    local server_ctx = tapio.tls_context({ side = "server",
      cert_file = cert("server.pem"), key_file = cert("server.key") })
    local client_ctx = tapio.tls_context({ cafile = cert("ca.pem") })
    local server = upper_server("127.0.0.1", 4433, { ssl = server_ctx })
    local reader, writer = tapio.open_connection("localhost", 4433,
      { ssl = client_ctx })
    assert.equal("localhost",
      writer:get_extra_info("peercert").subject[1][2])
    writer:write("secret\n")
    assert.equal("SECRET\n", reader:readline())
    writer:close()
    writer:wait_closed()
    server:close()
    server:wait_closed()
  end))

  it("resets the connections a closing server never accepted",
     testing.run(function(clock)
    local server = upper_server("127.0.0.1", 0, { start_serving = false })
    local reader, writer = tapio.open_connection("127.0.0.1",
      server:addresses()[1][2])
    writer:write("queued\n")
    server:close()
    local ok, err = pcall(reader.read, reader, 10)
    assert.is_false(ok)
    assert.equal("ECONNRESET", err.name)
    writer:close()
  end))
end)

describe("testing.run with the virtual network", function()
  it("fails a body that leaves a server open, unless allowed", function()
    local ok, err = pcall(testing.run(function()
      upper_server("127.0.0.1", 8000)
    end))
    assert.is_false(ok)
    assert.matches("the test body left 1 server%(s%) open %(close them, or "
      .. "opts.servers_ok%)", err)
    testing.run(function(clock, loop)
      upper_server("127.0.0.1", 8000)
      assert.equal(1, testing.server_count(loop))
    end, { servers_ok = true })()
  end)
end)
