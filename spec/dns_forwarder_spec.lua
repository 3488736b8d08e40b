-- examples/dns_forwarder.lua as a program, on 127.0.0.1: the tests' DNS
-- server (spec/support/dns_server.py, UDP and TCP) upstream, Python's
-- sockets (spec/support/dns_client.py) and tapio's own resolver as
-- clients. Every wait is on an event: a line of the upstream's log, a
-- client's answer, the forwarder's exit.
local helper = require "spec.helper"
local tapio = helper.tapio

local run = helper.run
local python = "/usr/bin/python3"
-- The forwarder's timeout per try: an answer due in 200-300 ms must come
-- well within it also on a loaded machine (ASan, two jobs at once).
local TIMEOUT = "1"

-- Inside a task: the tests' DNS server, logging. up.port; up:query() the
-- next query it got ({type, name, id, from}, or {held_closed = true});
-- up:stop() ends it and returns the queries it got since the last
-- up:query() (the others, as {type, name, id, from}).
local function upstream()
  local p = tapio.create_subprocess_exec(python, {
    "spec/support/dns_server.py", "--log", "--tcp" },
    { stdin = tapio.PIPE, stdout = tapio.PIPE })
  local up = { p = p }
  up.port = tonumber(p.stdout:readline():match("^PORT (%d+)"))
  local function parse(line)
    if line == "HELD CLOSED\n" then
      return { held_closed = true }
    end
    local t, name, id, from = line:match("^QUERY (%S+) (%S+) id=(%d+) "
                                         .. "from=(%S+)")
    return { type = t, name = name, id = tonumber(id), from = from }
  end
  function up.query()
    return parse(p.stdout:readline())
  end
  function up.stop()
    p.stdin:close()
    local rest = {}
    for line in p.stdout:read():gmatch("[^\n]+\n") do
      rest[#rest + 1] = parse(line)
    end
    assert.are.equal(0, p:wait())
    return rest
  end
  return up
end

-- Inside a task: the forwarder as a program, forwarding to 127.0.0.1:port,
-- with args (a list) before its own; fwd.port, fwd.upstream_port (its
-- upstream socket's port), fwd.stop([sig]) (SIGTERM, or sig: it must end
-- with 0 and print nothing on stderr) returns the lines it printed.
local function forwarder(port, args)
  local argv = { "examples/dns_forwarder.lua", "--timeout", TIMEOUT }
  for _, a in ipairs(args or {}) do
    argv[#argv + 1] = a
  end
  for _, a in ipairs({ "127.0.0.1", "0", "127.0.0.1:" .. port }) do
    argv[#argv + 1] = a
  end
  local p = tapio.create_subprocess_exec(helper.HOST, argv,
    { stdout = tapio.PIPE, stderr = tapio.PIPE })
  local line = p.stdout:readline()
  local fwd = { p = p }
  fwd.port = tonumber(line:match("127%.0%.0%.1:(%d+) %(udp, tcp%)"))
  fwd.upstream_port = tonumber(line:match("from port (%d+)"))
  assert(fwd.port and fwd.upstream_port, line)
  function fwd.stop(sig)
    p:send_signal(sig or "SIGTERM")
    local out, err = p.stdout:read(), p.stderr:read()
    assert.are.equal("", err)
    assert.are.equal(0, p:wait())
    local lines = {}
    for l in out:gmatch("[^\n]+") do
      lines[#lines + 1] = l
    end
    assert.are.equal("stopped", lines[#lines])
    return lines
  end
  return fwd
end

-- Inside a task: what dns_client.py printed asking port (its arguments
-- after the port: see its header), one string per answer.
local function ask(port, ...)
  return helper.output_lines(tapio.create_subprocess_exec(python, {
    "spec/support/dns_client.py", tostring(port), ... },
    { stdout = tapio.PIPE }))
end

-- The field k of a client's line ("id=7 rcode=0 ...").
local function field(line, k)
  return line:match(" " .. k .. "=(%S*)")
end

describe("examples/dns_forwarder.lua", function()
  if not helper.exists(python) then
    return
  end

  it("answers byte for byte as the upstream does, the client's id "
     .. "restored", function()
    run(function()
      local up = upstream()
      local fwd = forwarder(up.port)
      for _, q in ipairs({ "4660:v4.tapio.test:A", "1:v6.tapio.test:AAAA",
                           "65535:two4.tapio.test:A",
                           "0:nosuch.tapio.test:A",
                           "77:fail.v4.tapio.test:A" }) do
        local straight = ask(up.port, q)
        assert.are.same(straight, ask(fwd.port, q))
        assert.are.equal(q:match("^%d+"), field(straight[1], "id"))
      end
      fwd.stop()
      up.stop()
    end)
  end)

  it("maps ids: two clients using the same id get their own answers",
     function()
    run(function()
      local up = upstream()
      local fwd = forwarder(up.port)
      local lines = ask(fwd.port, "7:slow200.v4.tapio.test:A", "--",
                        "7:slow200.v6.tapio.test:AAAA")
      table.sort(lines)
      assert.are.same({ "1 7 127.0.0.1", "2 7 ::1" }, {
        lines[1]:match("^1") .. " " .. field(lines[1], "id") .. " "
          .. field(lines[1], "data"),
        lines[2]:match("^2") .. " " .. field(lines[2], "id") .. " "
          .. field(lines[2], "data") })
      local a, b = up.query(), up.query()
      assert.are_not.equal(a.id, b.id) -- both in flight at once
      fwd.stop()
      up.stop()
    end)
  end)

  it("asks again after the timeout and takes the late answer; "
     .. "SERVFAIL when the second try times out too", function()
    run(function()
      local up = upstream()
      -- the answer at 1.5 s: half a second after the retry, and before
      -- the second try's end
      local fwd = forwarder(up.port)
      local late = ask(fwd.port, "5:slow1500.v4.tapio.test:A")
      assert.are.equal("0", field(late[1], "rcode"))
      assert.are.equal("127.0.0.1", field(late[1], "data"))
      local first, second = up.query(), up.query()
      assert.are.same(first, second) -- the same query, asked again
      local never = ask(fwd.port, "6:silent.v4.tapio.test:A")
      assert.are.equal("6", field(never[1], "id"))
      assert.are.equal("2", field(never[1], "rcode")) -- SERVFAIL
      assert.are.equal("silent.v4.tapio.test", up.query().name)
      assert.are.equal("silent.v4.tapio.test", up.query().name)
      local log = fwd.stop()
      assert.is_truthy(log[1]:find(" slow1500.v4.tapio.test A miss ", 1,
                                   true), log[1])
      assert.is_truthy(log[2]:find(" silent.v4.tapio.test A servfail ", 1,
                                   true), log[2])
      assert.is_true(tonumber(log[1]:match("([%d.]+) ms$")) >= 1500)
      assert.is_true(tonumber(log[2]:match("([%d.]+) ms$")) >= 2000) -- 2 x
      assert.are.same({}, up.stop())
    end)
  end)

  it("answers SERVFAIL and serves on when nothing listens upstream",
     function()
    run(function(loop)
      -- a port nobody listens on: one just released
      local t = loop:create_datagram_endpoint(function() return {} end,
        { local_addr = { "127.0.0.1", 0 } })
      local port = t:get_extra_info("sockname").port
      t:close()
      local fwd = forwarder(port)
      for id = 1, 2 do
        local a = ask(fwd.port, id .. ":v4.tapio.test:A")
        assert.are.equal(tostring(id), field(a[1], "id"))
        assert.are.equal("2", field(a[1], "rcode"))
      end
      local log = table.concat(fwd.stop(), "\n")
      assert.is_truthy(log:find("upstream: sendto ('127.0.0.1', " .. port
                                .. "): connection refused", 1, true), log)
    end)
  end)

  it("asks over TCP when the answer is truncated: a UDP client gets 512 "
     .. "bytes with TC, a TCP client all of it", function()
    run(function()
      local up = upstream()
      local fwd = forwarder(up.port)
      local udp = ask(fwd.port, "9:tc.many.tapio.test:A")[1]
      assert.are.equal("1", field(udp, "tc"))
      local len, an = tonumber(field(udp, "len")), tonumber(field(udp, "an"))
      assert.is_true(len <= 512 and len + 16 > 512, udp) -- 16: one record
      assert.are.equal(math.floor((512 - 12 - 24) / 16), an)
      local q1, q2 = up.query(), up.query()
      assert.are.same({ "tc.many.tapio.test", tostring(fwd.upstream_port) },
                      { q1.name, q1.from })
      assert.are.same({ "tc.many.tapio.test", "tcp" }, { q2.name, q2.from })
      local tcp = ask(fwd.port, "--tcp", "10:tc.many.tapio.test:A") -- cached
      assert.are.same(ask(up.port, "--tcp", "10:tc.many.tapio.test:A"), tcp)
      assert.are.equal("40", field(tcp[1], "an"))
      fwd.stop()
      assert.are.same({ { type = "A", name = "tc.many.tapio.test", id = 10,
                          from = "tcp" } }, up.stop())
    end)
  end)

  it("serves a second query from its cache, any case, without the "
     .. "upstream", function()
    run(function()
      local up = upstream()
      local fwd = forwarder(up.port)
      local miss = ask(fwd.port, "1:ttl300.v4.tapio.test:A")[1]
      local hit = ask(fwd.port, "2:TTL300.V4.tapio.test:A")[1]
      assert.are.equal("2", field(hit, "id"))
      assert.are.equal(field(miss, "data"), field(hit, "data"))
      assert.is_true(tonumber(field(hit, "ttl")) <= 300)
      -- the question as this client spelt it
      assert.is_truthy(field(hit, "hex"):find("0654544c333030025634", 1,
                                              true))
      local log = fwd.stop()
      assert.is_truthy(log[1]:find(" ttl300.v4.tapio.test A miss ", 1, true))
      assert.is_truthy(log[2]:find(" TTL300.V4.tapio.test A hit ", 1, true))
      local queries = up.stop()
      assert.are.equal(1, #queries)
      assert.are.equal("ttl300.v4.tapio.test", queries[1].name)
    end)
  end)

  it("ignores an answer from another address than the upstream's",
     function()
    run(function(loop)
      local up = upstream()
      local fwd = forwarder(up.port)
      local client = loop:create_task(ask, fwd.port,
                                      "3:slow300.v4.tapio.test:A")
      local q = up.query()
      -- a stranger answers first, with the right id and question
      local stranger = loop:create_datagram_endpoint(function()
        return {}
      end, { local_addr = { "127.0.0.1", 0 } })
      local question = "\7slow300\2v4\5tapio\4test\0\0\1\0\1"
      stranger:sendto(string.char(math.floor(q.id / 256), q.id % 256)
        .. "\129\128\0\1\0\1\0\0\0\0" .. question
        .. "\192\12\0\1\0\1\0\0\0\60\0\4\10\9\9\9",
        { "127.0.0.1", fwd.upstream_port })
      local answer = client:await()[1]
      assert.are.equal("127.0.0.1", field(answer, "data"))
      stranger:close()
      fwd.stop()
      up.stop()
    end)
  end)

  it("drops an empty datagram and a response, answers garbage with "
     .. "FORMERR, and serves on (UDP and TCP)", function()
    run(function()
      local up = upstream()
      local fwd = forwarder(up.port)
      local garbage = {
        "hex:",                                   -- empty
        "hex:0102",                               -- less than a header
        "hex:0003818000010000000000000000010001", -- a response
        "hex:0004010000020000000000000000010001", -- two questions
        "hex:000601000001000000000000ff",         -- a name cut short
        "5:v4.tapio.test:A" }
      for _, via in ipairs({ "udp", "tcp" }) do
        local lines = ask(fwd.port, via == "tcp" and "--tcp" or "hex:",
                          table.unpack(garbage))
        assert.are.same({ "4 1", "6 1", "5 0" }, {
          field(lines[1], "id") .. " " .. field(lines[1], "rcode"),
          field(lines[2], "id") .. " " .. field(lines[2], "rcode"),
          field(lines[3], "id") .. " " .. field(lines[3], "rcode") })
        assert.are.equal(3, #lines)
        -- FORMERR, with the query's id and RD bit
        assert.are.equal("000481810000000000000000", field(lines[1], "hex"))
      end
      local log = fwd.stop()
      assert.are.equal("ignored", log[1]:match(" (%S+) [%d.]+ ms$"))
      up.stop()
    end)
  end)

  it("gives tapio.getaddrinfo what the upstream gives it, also an answer "
     .. "over 512 bytes", function()
    run(function(loop)
      local up = upstream()
      local fwd = forwarder(up.port)
      local function lookup(port, name)
        loop:set_resolver { servers = "127.0.0.1:" .. port, timeout = 2,
                            tries = 1 }
        local list = {}
        for i, e in ipairs(loop:getaddrinfo(name, 80, {
            type = tapio.SOCK_STREAM })) do
          list[i] = tostring(e.addr)
        end
        return table.concat(list, " ")
      end
      for _, name in ipairs({ "both.tapio.test", "many.tapio.test",
                              "mix.tapio.test" }) do
        local straight = lookup(up.port, name)
        assert.are.equal(straight, lookup(fwd.port, name))
        assert.are.equal(straight, lookup(fwd.port, name)) -- cached
      end
      assert.are.equal(40, select(2, lookup(fwd.port, "many.tapio.test")
                                        :gsub("127%.0%.1%.", "")))
      fwd.stop()
      up.stop()
    end)
  end)

  it("ends with status 0 on SIGTERM while queries are in flight over UDP "
     .. "and TCP, closing its upstream connection", function()
    run(function(loop)
      local up = upstream()
      local fwd = forwarder(up.port)
      local client = loop:create_datagram_endpoint(function()
        return {}
      end, { remote_addr = { "127.0.0.1", fwd.port } })
      -- silent over UDP; truncated over UDP, then held over TCP
      client:sendto("\0\1\1\0\0\1\0\0\0\0\0\0"
                    .. "\6silent\2v4\5tapio\4test\0\0\1\0\1")
      client:sendto("\0\2\1\0\0\1\0\0\0\0\0\0"
                    .. "\2tc\4hold\2v4\5tapio\4test\0\0\1\0\1")
      local seen = {}
      for _ = 1, 3 do
        local q = up.query()
        seen[#seen + 1] = q.name .. " " .. (q.from == "tcp" and "tcp" or "udp")
      end
      table.sort(seen)
      assert.are.same({ "silent.v4.tapio.test udp", "tc.hold.v4.tapio.test tcp",
                        "tc.hold.v4.tapio.test udp" }, seen)
      assert.are.same({ "stopped" }, fwd.stop()) -- nothing was answered
      assert.are.same({ held_closed = true }, up.query())
      client:close()
      up.stop()
    end)
  end)

  it("answers SERVFAIL when the upstream holds its TCP connection, and "
     .. "closes it", function()
    run(function()
      local up = upstream()
      local fwd = forwarder(up.port)
      local a = ask(fwd.port, "8:tc.hold.v4.tapio.test:A")[1]
      assert.are.same({ "8", "2" }, { field(a, "id"), field(a, "rcode") })
      assert.are.equal(tostring(fwd.upstream_port), up.query().from)
      assert.are.equal("tcp", up.query().from)
      assert.are.same({ held_closed = true }, up.query())
      fwd.stop()
      up.stop()
    end)
  end)

  it("ends with status 0 on SIGINT too", function()
    run(function()
      local up = upstream()
      local fwd = forwarder(up.port)
      assert.are.equal("0", field(ask(fwd.port, "1:v4.tapio.test:A")[1],
                                  "rcode"))
      assert.are.equal(2, #fwd.stop("SIGINT"))
      up.stop()
    end)
  end)
end)
