-- A WebSocket echo server (examples/websocket.lua): every message comes
-- back as it came, text as text, binary as binary; one task per client.
-- SIGINT or SIGTERM closes every client with 1001 "going away" (each
-- gets close_timeout seconds to answer), then the program ends (status
-- 0). Prints "listening on ws://HOST:PORT", then one line per connection
-- that ends: its peer, the close code and reason, whether the close
-- frames went both ways, and the most its writer held after a write
-- (drain keeps it near the high-water mark however slowly a client reads).
-- Usage: tapio examples/ws_echo_server.lua [--tls CERT KEY]
--          [--max-size BYTES] [--close-timeout S] [--open-timeout S]
--          HOST PORT   (PORT 0: a free one)
-- (--max-size, --close-timeout: websocket.lua's max_size, close_timeout;
-- --open-timeout S: a client that sends no request within S s is dropped)
local tapio = require "tapio"

package.path = (arg[0]:match("^(.*/)") or "./") .. "?.lua;" .. package.path
local ws = require "websocket"

local USAGE = "usage: ws_echo_server.lua [--tls CERT KEY] [--max-size BYTES]"
  .. " [--close-timeout S] [--open-timeout S] HOST PORT"

local function parse(args)
  local cfg, i = {}, 1
  while args[i] and args[i]:match("^%-%-") do
    local flag = args[i]
    if flag == "--tls" and args[i + 2] then
      cfg.cert, cfg.key, i = args[i + 1], args[i + 2], i + 3
    elseif flag == "--max-size" and tonumber(args[i + 1]) then
      cfg.max_size, i = tonumber(args[i + 1]), i + 2
    elseif flag == "--close-timeout" and tonumber(args[i + 1]) then
      cfg.close_timeout, i = tonumber(args[i + 1]), i + 2
    elseif flag == "--open-timeout" and tonumber(args[i + 1]) then
      cfg.open_timeout, i = tonumber(args[i + 1]), i + 2
    else
      return nil
    end
  end
  cfg.host, cfg.port = args[i], tonumber(args[i + 1])
  if not cfg.port or args[i + 2] then
    return nil
  end
  return cfg
end

local function echo(conn)
  while true do
    local msg, kind = conn:receive()
    if not msg then
      return
    end
    conn:send(msg, kind) -- once closing (a SIGTERM), nothing is sent
  end
end

local function serve(cfg)
  local conns = {}
  local ssl = cfg.cert and tapio.tls_context {
    side = "server", cert_file = cfg.cert, key_file = cfg.key }
  local server = tapio.start_server(function(reader, writer)
    local peer = tostring(writer:get_extra_info("peername"))
    local conn, why = ws.accept(reader, writer, cfg)
    if not conn then
      print(("refused %s: %s"):format(peer, why))
      return
    end
    conns[conn] = true
    echo(conn)
    conns[conn] = nil
    print(("closed %s: %d %q, %s, peak buffer %d bytes"):format(peer,
      conn.code, conn.reason or "", conn:clean() and "clean" or "unclean",
      conn.peak_buffer))
  end, cfg.host, cfg.port, { ssl = ssl })
  print(("listening on %s://%s:%d"):format(ssl and "wss" or "ws", cfg.host,
    server:addresses()[1].port))
  return server, conns
end

-- Every client closed with 1001 at once, each waiting for its answer
-- (bounded by close_timeout); connections still in their opening
-- handshake closed; then the server waits for their ends, aborting what
-- is left after close_timeout (a peer that does not read holds a close).
local function stop(server, conns, cfg)
  server:close()
  local closing = {}
  for conn in pairs(conns) do
    closing[#closing + 1] = function() conn:close(1001, "going away") end
  end
  if #closing > 0 then
    tapio.gather(closing)
  end
  server:close_clients()
  if not pcall(tapio.wait_for, function() server:wait_closed() end,
               cfg.close_timeout or ws.defaults.close_timeout) then
    server:abort_clients()
    server:wait_closed()
  end
end

io.stdout:setvbuf("line") -- as the tapio program has it: a log, at once
local cfg = parse(arg)
if not cfg then
  io.stderr:write(USAGE, "\n")
  os.exit(2)
end

tapio.run(function()
  local server, conns = serve(cfg)
  local stopping = tapio.Event()
  local loop = tapio.get_running_loop()
  loop:add_signal_handler("SIGTERM", stopping.set, stopping)
  loop:add_signal_handler("SIGINT", stopping.set, stopping)
  stopping:wait()
  stop(server, conns, cfg)
  print("stopped")
end)
