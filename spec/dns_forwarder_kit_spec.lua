-- examples/dns_forwarder.lua's module on tapio.testing's virtual network
-- and clock: the upstream is an endpoint of the test's that answers as
-- each test says, so the TTLs a cached answer is served with, its expiry,
-- the cache's bound, the retry's timing and answers that match no query
-- are asserted to the virtual millisecond.
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"

package.path = "examples/?.lua;" .. package.path
local dns_forwarder = require "dns_forwarder"

local char, floor = string.char, math.floor

local function p16(n)
  return char(floor(n / 256), n % 256)
end

local function u16(s, i)
  return s:byte(i) * 256 + s:byte(i + 1)
end

-- A query of an A record (RD set), id, name "x.test".
local function question(name)
  local q = {}
  for label in name:gmatch("[^.]+") do
    q[#q + 1] = char(#label) .. label
  end
  return table.concat(q) .. "\0\0\1\0\1"
end

local function query(id, name)
  return p16(id) .. "\1\0\0\1\0\0\0\0\0\0" .. question(name)
end

-- The answer to q (a query as the upstream got it): one A record
-- 10.0.0.n with ttl, or with opts.id / opts.name another id / question.
local function answer(q, ttl, n, opts)
  opts = opts or {}
  local qd = opts.name and question(opts.name) or q:sub(13)
  return p16(opts.id or u16(q, 1)) .. "\129\128\0\1\0\1\0\0\0\0" .. qd
    .. "\192\12\0\1\0\1" .. p16(floor(ttl / 65536)) .. p16(ttl % 65536)
    .. "\0\4\10\0\0" .. char(n)
end

-- The TTL of the first record of an answer to name.
local function ttl(msg, name)
  local at = 12 + #question(name) + 7
  return u16(msg, at) * 65536 + u16(msg, at + 2)
end

-- An endpoint at 127.0.0.1:port whose datagrams (data, addr) go into a
-- queue: ep.queue:get() waits for the next.
local function endpoint(loop, opts)
  local ep = { queue = tapio.Queue() }
  ep.t = loop:create_datagram_endpoint(function()
    return { datagram_received = function(_, data, addr)
      ep.queue:put_nowait({ data = data, addr = addr })
    end }
  end, opts)
  return ep
end

-- In a run: the forwarder on 127.0.0.1:53 (timeout 1 s, cfg's other
-- settings), the upstream at 127.0.0.1:5300, a client; their log.
local function setup(loop, cfg)
  local up = endpoint(loop, { local_addr = { "127.0.0.1", 5300 } })
  local log = {}
  cfg = cfg or {}
  cfg.host, cfg.port, cfg.upstream = "127.0.0.1", 53, "127.0.0.1:5300"
  cfg.timeout, cfg.print = 1, function(line)
    log[#log + 1] = line
  end
  local fwd = dns_forwarder.start(cfg)
  local client = endpoint(loop, { remote_addr = { "127.0.0.1", 53 } })
  return fwd, up, client, log
end

local function teardown(fwd, up, client)
  fwd:stop()
  up.t:close()
  client.t:close()
end

describe("examples/dns_forwarder.lua on the virtual clock", function()
  it("serves a cached answer with its TTL lowered by the time it was "
     .. "kept, and asks again once it expired", testing.run(function(clock,
                                                                  loop)
    local fwd, up, client = setup(loop)
    client.t:sendto(query(1, "a.test"))
    local got = up.queue:get()
    local q, fwd_addr = got.data, got.addr
    up.t:sendto(answer(q, 100, 1), fwd_addr)
    assert.are.equal(100, ttl(client.queue:get().data, "a.test"))
    clock:advance(30.5)
    client.t:sendto(query(2, "A.test"))
    local hit = client.queue:get().data
    assert.are.equal(2, u16(hit, 1))
    assert.are.equal(70, ttl(hit, "a.test")) -- 100 - 30 whole seconds
    assert.are.equal(0, up.queue:qsize())
    clock:advance(69.5) -- t = 100: expired
    client.t:sendto(query(3, "a.test"))
    q = up.queue:get().data
    assert.are.equal(question("a.test"), q:sub(13))
    up.t:sendto(answer(q, 50, 2), fwd_addr)
    local fresh = client.queue:get().data
    assert.are.same({ 3, 50, 2 }, { u16(fresh, 1), ttl(fresh, "a.test"),
                                    fresh:byte(#fresh) })
    teardown(fwd, up, client)
  end))

  it("keeps at most its bound of answers, dropping the one that expires "
     .. "first", testing.run(function(_, loop)
    local fwd, up, client = setup(loop, { cache = 2 })
    local function ask(id, name, ttl_up) -- ttl_up: the upstream answers
      client.t:sendto(query(id, name))
      if ttl_up then
        local got = up.queue:get()
        up.t:sendto(answer(got.data, ttl_up, id), got.addr)
      end
      return client.queue:get().data
    end
    ask(1, "a.test", 300)
    ask(2, "b.test", 100) -- expires first
    ask(3, "c.test", 200) -- the bound: b goes
    assert.are.equal(1, ask(4, "a.test"):byte(-1))
    assert.are.equal(3, ask(5, "c.test"):byte(-1))
    assert.are.equal(6, ask(6, "b.test", 100):byte(-1)) -- asked again
    teardown(fwd, up, client)
  end))

  it("ignores answers of another id, another question or another address, "
     .. "asks again at 1 s, answers SERVFAIL at 2 s", testing.run(
       function(clock, loop)
    local fwd, up, client = setup(loop)
    client.t:sendto(query(7, "a.test"))
    local got = up.queue:get()
    local q, id = got.data, u16(got.data, 1)
    up.t:sendto(answer(q, 60, 1, { id = (id + 1) % 65536 }), got.addr)
    up.t:sendto(answer(q, 60, 1, { name = "b.test" }), got.addr)
    local stranger = endpoint(loop, { local_addr = { "127.0.0.1", 0 } })
    stranger.t:sendto(answer(q, 60, 1), got.addr)
    clock:advance(0.999)
    assert.are.equal(0, client.queue:qsize())
    clock:advance(0.001)
    assert.are.equal(q, up.queue:get().data) -- the same query, at 1 s
    clock:advance(0.999)
    assert.are.equal(0, client.queue:qsize())
    clock:advance(0.001)
    local servfail = client.queue:get().data
    assert.are.equal(2, clock:time())
    assert.are.same({ 7, 2, question("a.test") }, { u16(servfail, 1),
      servfail:byte(4) % 16, servfail:sub(13) })
    stranger.t:close()
    teardown(fwd, up, client)
  end))
end)
