-- A WebSocket client (examples/websocket.lua): sends each line of its
-- standard input as a text message (without its newline), prints each
-- message it receives, and at the end of its input closes with 1000.
-- Exits 0 once the server's close frame came back for a 1000; otherwise
-- (the server closed first with another code, the connection ended with
-- no close frame) prints why on stderr and exits 1. Ctrl-C closes with
-- 1001 "going away" (status 130).
-- Usage: tapio examples/ws_client.lua [--cafile F] ws://|wss://HOST:PORT/PATH
-- (wss:// trusts the system's CAs, or those of F)
local tapio = require "tapio"

package.path = (arg[0]:match("^(.*/)") or "./") .. "?.lua;" .. package.path
local ws = require "websocket"

local USAGE = "usage: ws_client.lua [--cafile F] ws://|wss://HOST:PORT/PATH"

local function parse(args)
  local cafile, url
  if args[1] == "--cafile" then
    cafile, url = args[2], args[3]
    if args[4] then return nil end
  else
    url = args[1]
    if args[2] then return nil end
  end
  if not url or not ws.parse_url(url) then
    return nil
  end
  return url, cafile
end

-- Standard input as a StreamReader (lines up to 16 MiB) and its transport.
local function stdin()
  local reader = tapio.StreamReader(16 * 1024 * 1024)
  local transport = tapio.get_running_loop():connect_read_pipe(function()
    return tapio.StreamReaderProtocol(reader)
  end, 0)
  return reader, transport
end

-- Each line of input as a message, then the close. A failure to read the
-- input (a line over the limit) is told, and closes all the same.
local function send_lines(conn, input)
  local ok, err = pcall(function()
    for line in input:lines() do
      if not conn:send((line:gsub("\r?\n$", ""))) then
        return -- the connection is closing: the receiver tells why
      end
    end
  end)
  if not ok and tapio.is_cancelled(err) then
    error(err, 0)
  elseif not ok then
    io.stderr:write("ws_client: reading the input: ", tostring(err), "\n")
    conn.input_failed = true
  end
  conn:close(1000)
end

local url, cafile = parse(arg)
if not url then
  io.stderr:write(USAGE, "\n")
  os.exit(2)
end

os.exit(tapio.run(function()
  local ok, conn = pcall(ws.connect, url, {
    ssl = cafile and tapio.tls_context { cafile = cafile } })
  if not ok then -- refused, a certificate not trusted, no WebSocket there
    io.stderr:write("ws_client: ", tostring(conn), "\n")
    return 1
  end
  local input, pipe = stdin()
  local sender = tapio.create_task(send_lines, conn, input)
  local ok, err = pcall(function()
    for msg in conn.receive, conn do
      print(msg)
    end
  end)
  sender:cancel()
  if not ok then -- Ctrl-C (main cancelled): the server hears of it too
    conn:close(1001, "going away")
    pipe:close()
    error(err, 0) -- status 130
  end
  pipe:close()
  if conn.code == 1000 and conn:clean() and not conn.input_failed then
    return 0
  end
  io.stderr:write(("closed: %d %s%s\n"):format(conn.code, conn.reason or "",
    conn.error and " (" .. tostring(conn.error) .. ")" or ""))
  return 1
end))
