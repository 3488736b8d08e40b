-- TLS through the testing kit: a memory pair upgraded with start_tls on
-- a virtual clock (the handshake, records cut byte by byte, close_notify),
-- and TLS's own timers, the handshake's and the shutdown's, firing at
-- their virtual times. The certificates are spec/tls/make_certs.sh's.
local helper = require "spec.helper"
local tapio = helper.tapio
local testing = require "tapio.testing"

local cert = helper.cert

local server_ctx = tapio.tls_context({ side = "server",
  cert_file = cert("server.pem"), key_file = cert("server.key") })
local client_ctx = tapio.tls_context({ cafile = cert("ca.pem") })

-- Inside testing.run: a memory pair whose sides both start TLS; returns
-- the transports and recorders once the handshake is done.
local function tls_pair(loop, opts, copts)
  local a = testing.recorder(nil, { merge = true })
  local b = testing.recorder(nil, { merge = true })
  local ta, tb = testing.pipe_pair(a, b, opts)
  copts = copts or {}
  copts.server_hostname = "localhost"
  local server = tapio.create_task(function()
    return loop:start_tls(tb, b, server_ctx)
  end)
  loop:start_tls(ta, a, client_ctx, copts)
  server:await()
  return ta, tb, a, b
end

describe("TLS on memory pairs", function()
  it("handshakes, carries bytes and ends with close_notify",
     testing.run(function(clock, loop)
    local ta, tb, a, b = tls_pair(loop)
    assert.equal("TLSv1.3", ta:get_extra_info("tls_version"))
    assert.equal("localhost", ta:get_extra_info("peercert").subject[1][2])
    ta:write("secret")
    tb:write("reply")
    clock:run_until_idle()
    ta:close()
    b:wait("connection_lost")
    a:wait("connection_lost")
    assert.same({ "connection_made", "data_received:reply",
                  "connection_lost:nil" }, a.events)
    assert.same({ "connection_made", "data_received:secret",
                  "eof_received", "connection_lost:nil" }, b.events)
    assert.equal(0, clock:time()) -- no time passed: nothing waited
  end))

  it("holds with every wire byte on its own", testing.run(function(clock, loop)
    local ta, tb, _, b = tls_pair(loop, { chunk = 1 })
    ta:write(("m"):rep(100))
    clock:run_until_idle()
    assert.equal("data_received:" .. ("m"):rep(100), b.events[2])
    assert.is_true(ta:get_stats().tls_wire_bytes_sent > 100)
    ta:close()
    tb:close()
  end))

  it("times the handshake out on the virtual clock",
     testing.run(function(clock, loop)
    local a, b = testing.recorder(), testing.recorder()
    local ta, tb = testing.pipe_pair(a, b)
    local hs = tapio.create_task(function()
      return loop:start_tls(ta, a, client_ctx, {
        server_hostname = "localhost", ssl_handshake_timeout = 7 })
    end)
    clock:advance(6.999) -- the peer never answers the ClientHello
    assert.is_false(hs:done())
    assert.matches("^data_received:\22\3", b.events[2]) -- a TLS record
    clock:advance(0.001)
    assert.is_true(hs:done())
    assert.equal("ETIMEDOUT", hs:exception().name)
    assert.equal(7, clock:time())
    tb:close()
  end))

  it("times the shutdown out on the virtual clock",
     testing.run(function(clock, loop)
    local ta, tb, a = tls_pair(loop, nil, { ssl_shutdown_timeout = 3 })
    tb:pause_reading() -- the peer's close_notify never comes
    ta:close()
    clock:advance(2.999)
    assert.same({ "connection_made" }, a.events)
    clock:advance(0.001)
    assert.equal("connection_lost:ETIMEDOUT", a.events[2])
    tb:abort()
  end))

  it("ends a close that stop_writing holds at ssl_shutdown_timeout",
     testing.run(function(clock, loop)
    -- counted from the close: the held flush cannot outlast it
    local ta, tb, a, b = tls_pair(loop, nil, { ssl_shutdown_timeout = 3 })
    testing.fault(ta, { stop_writing = true })
    ta:write("held")
    ta:close()
    clock:advance(2.999)
    assert.same({ "connection_made" }, a.events)
    assert.equal(4, ta:get_write_buffer_size())
    clock:advance(0.001)
    assert.same({ "connection_made", "connection_lost:ETIMEDOUT" }, a.events)
    b:wait("connection_lost") -- an end with no close_notify (truncation)
    assert.same({ "connection_made", "eof_received", "connection_lost:nil" },
                b.events)
  end))

  it("faults set before start_tls count plaintext after it",
     testing.run(function(clock, loop)
    local a = testing.recorder(nil, { merge = true })
    local b = testing.recorder(nil, { merge = true })
    local ta, tb = testing.pipe_pair(a, b)
    testing.fault(tb, { eof_after = 8 }) -- the handshake is not counted
    local server = tapio.create_task(function()
      return loop:start_tls(tb, b, server_ctx)
    end)
    loop:start_tls(ta, a, client_ctx, { server_hostname = "localhost" })
    server:await()
    ta:write("0123456789")
    b:wait("connection_lost")
    a:wait("connection_lost")
    assert.same({ "connection_made", "data_received:01234567",
                  "eof_received", "connection_lost:nil" }, b.events)
    -- b's close sent close_notify: a sees a clean end
    assert.same({ "connection_made", "eof_received", "connection_lost:nil" },
                a.events)
    assert.equal(0, clock:time())
  end))

  it("resets a TLS side on a memory pair after n plaintext bytes",
     testing.run(function(_, loop)
    local ta, tb, a, b = tls_pair(loop)
    testing.fault(tb, { reset_after = 3 })
    ta:write("abcdef")
    b:wait("connection_lost")
    a:wait("connection_lost")
    assert.same({ "connection_made", "data_received:abc",
                  "connection_lost:ECONNRESET" }, b.events)
    assert.same({ "connection_made", "connection_lost:ECONNRESET" },
                a.events)
  end))

  it("drips plaintext in pieces of at most n bytes",
     testing.run(function(clock, loop)
    local ta, tb = tls_pair(loop)
    local pieces = testing.recorder()
    tb:set_protocol(pieces)
    testing.fault(tb, { drip = 4, drip_interval = 1 })
    ta:write("0123456789")
    clock:run_until_idle()
    assert.same({ "data_received:0123" }, pieces.events)
    clock:advance(2)
    assert.same({ "data_received:0123", "data_received:4567",
                  "data_received:89" }, pieces.events)
    testing.clear_faults(tb) -- a held read holds TLS's close_notify too
    ta:close()
    tb:close()
    clock:run_until_idle()
  end))
end)
