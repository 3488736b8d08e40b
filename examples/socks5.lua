-- A SOCKS5 proxy (RFC 1928) on streams: CONNECT to IPv4, IPv6 and
-- domain-name targets, the names resolved by tapio's resolver and the
-- addresses raced (Happy Eyeballs); no authentication, or RFC 1929's
-- username/password with --user. Drive it with curl:
--   curl --socks5-hostname 127.0.0.1:1080 http://example.org/
--
-- Usage: tapio examples/socks5.lua [--user U:P] [--timeout S] [HOST] PORT
--        (HOST 127.0.0.1; port 0 picks a free one; prints "listening on
--        HOST:PORT" once it listens, then a line per request and one
--        per relay ended; SIGTERM stops it, leaving the relays under way
--        --timeout seconds to end; Ctrl-C at once.) --timeout: the
--        seconds a client has for its whole handshake, a connect for
--        its target (10).
-- Spec: spec/socks5_spec.lua (curl, Python's http.server and raw
-- SOCKS5 clients). The wire format is in socks5_wire.lua.
--
-- Choices:
-- - The reply carries the address the proxy's own end of the target
--   connection is bound to (its sockname), as RFC 1928 asks.
-- - A failed connect is answered with the code its error maps to
--   (socks5_wire.reply_for), then the connection is closed.
-- - Relaying: a task each way reads at most 64 KiB, writes it and
--   drains (a slow receiver slows the sender: its reader stops being
--   read); each way's end is passed on with write_eof, and both
--   connections are closed once both ways have ended.
local tapio = require "tapio"

package.path = (arg[0]:match("^(.*/)") or "./") .. "?.lua;" .. package.path
local wire = require "socks5_wire"

-- The command line: [--user U:P] [--timeout S] [HOST] PORT.
local function parse_args(args)
  local cfg, rest, i = { timeout = 10, host = "127.0.0.1" }, {}, 1
  while args[i] do
    if args[i] == "--user" then
      cfg.user, cfg.password = (args[i + 1] or ""):match("^([^:]*):(.*)$")
      assert(cfg.user, "--user U:P")
      i = i + 1
    elseif args[i] == "--timeout" then
      cfg.timeout = assert(tonumber(args[i + 1]), "--timeout SECONDS")
      i = i + 1
    else
      rest[#rest + 1] = args[i]
    end
    i = i + 1
  end
  assert(#rest == 1 or #rest == 2, "usage: tapio examples/socks5.lua "
         .. "[--user U:P] [--timeout S] [HOST] PORT")
  cfg.host = rest[2] and rest[1] or cfg.host
  cfg.port = assert(tonumber(rest[#rest]), "PORT")
  return cfg
end

local cfg = parse_args(arg)
io.stdout:setvbuf("line") -- as the tapio program has it: a log, at once

-- The method negotiation, the credentials and the request: the request,
-- or nil and why (the client has had its answer where one is due).
local function handshake(reader, writer)
  local methods, why = wire.read_greeting(reader)
  if not methods then
    return nil, why
  end
  local method = cfg.user and wire.USERPASS or wire.NO_AUTH
  if not methods[method] then
    writer:write(wire.method_reply(wire.NO_ACCEPTABLE))
    return nil, "no acceptable method"
  end
  writer:write(wire.method_reply(method))
  if cfg.user then
    local user, password = wire.read_userpass(reader)
    if not user then
      return nil, password
    end
    local ok = user == cfg.user and password == cfg.password
    writer:write(wire.userpass_reply(ok))
    if not ok then
      return nil, "bad credentials for user " .. tapio.repr(user)
    end
  end
  local req
  req, why = wire.read_request(reader)
  if not req then
    return nil, why
  elseif req.cmd ~= wire.CONNECT then
    writer:write(wire.reply(wire.COMMAND_NOT_SUPPORTED))
    return nil, "command " .. req.cmd .. " not supported"
  elseif not req.host then
    writer:write(wire.reply(wire.ADDRESS_TYPE_NOT_SUPPORTED))
    return nil, "address type " .. req.atyp .. " not supported"
  end
  return req
end

-- pcall's results, but a cancellation (Ctrl-C) goes on up: it is not
-- the client's nor the target's failure.
local function unless_cancelled(ok, ...)
  if not ok and tapio.is_cancelled((...)) then
    error((...), 0)
  end
  return ok, ...
end

-- Bytes one way, until the end, which is passed on; how many.
local function pipe(reader, writer)
  local count = 0
  while true do
    local data = reader:read(65536)
    if data == "" then
      break
    end
    writer:write(data)
    count = count + #data
    writer:drain()
  end
  writer:write_eof()
  return count
end

-- Both ways; then what went through and the most either transport held
-- at once (what a slow receiver costs: about its high-water mark and a
-- read), or the error that ended it.
local function relay(reader, writer, up_reader, up_writer)
  local up, down
  local ok, err = pcall(tapio.TaskGroup, function(tg)
    up = tg:create_task(pipe, reader, up_writer)
    down = tg:create_task(pipe, up_reader, writer)
  end)
  if not ok then -- one way failed (a reset): the other cannot go on
    writer.transport:abort()
    up_writer.transport:abort()
    unless_cancelled(ok, err)
    return tostring(err.exceptions and err.exceptions[1] or err)
  end
  writer:close()
  up_writer:close()
  local peak = math.max(writer.transport:get_stats().write_buffer_peak,
                        up_writer.transport:get_stats().write_buffer_peak)
  return ("%d bytes up, %d down, at most %d buffered"):format(up:result(),
    down:result(), peak)
end

local function connect(req)
  return tapio.timeout(cfg.timeout, tapio.open_connection, req.host,
                       req.port, { happy_eyeballs_delay = 0.25 })
end

local function handle_client(reader, writer)
  local peer = tostring(writer:get_extra_info("peername"))
  local ok, req, why = unless_cancelled(pcall(tapio.timeout, cfg.timeout,
                                              handshake, reader, writer))
  if not ok or not req then
    print(("%s: handshake failed: %s"):format(peer, tostring(why or req)))
    writer:close()
    return
  end
  local target = ("%s port %d"):format(req.host, req.port)
  local up_reader, up_writer
  ok, up_reader, up_writer = unless_cancelled(pcall(connect, req))
  if not ok then
    local code = wire.reply_for(up_reader)
    print(("%s: CONNECT %s: reply %d (%s)"):format(peer, target, code,
                                                  tostring(up_reader)))
    writer:write(wire.reply(code))
    writer:close()
    return
  end
  local bound = up_writer:get_extra_info("sockname")
  print(("%s: CONNECT %s: reply 0 via %s"):format(peer, target,
    tostring(up_writer:get_extra_info("peername"))))
  writer:write(wire.reply(wire.SUCCEEDED, bound.host, bound.port))
  print(("%s: %s: %s"):format(peer, target,
    relay(reader, writer, up_reader, up_writer)))
end

tapio.run(function()
  local loop = tapio.get_running_loop()
  local server = tapio.start_server(handle_client, cfg.host, cfg.port)
  local addr = server:addresses()[1]
  print(("listening on %s:%d"):format(addr.family == 6 and
    "[" .. addr.host .. "]" or addr.host, addr.port))
  loop:add_signal_handler("SIGTERM", server.close, server)
  server:serve_forever()
  -- stopped: the relays under way have cfg.timeout seconds to end
  if not pcall(tapio.wait_for, function() server:wait_closed() end,
               cfg.timeout) then
    server:abort_clients()
  end
end)
