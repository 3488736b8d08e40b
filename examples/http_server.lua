-- A small HTTP/1.1 server with streams: GET and HEAD of the files under
-- ROOT (streamed with drain, so a slow client never makes the server hold
-- a whole file), POST or PUT to /echo sends the body back. Keep-alive and
-- pipelined requests (answered in order), bodies by Content-Length or
-- chunked, "Expect: 100-continue", 431 for a head over the reader's limit,
-- 413 for a body over MAX_BODY, an idle timeout between requests, 408 for
-- a body slower than its timeout, HTTPS
-- with a certificate and its key, and a graceful stop on SIGTERM: stop
-- accepting, let requests under way finish, close the rest after GRACE s.
-- Usage: tapio examples/http_server.lua [ROOT [PORT [CERT KEY]]]
-- (require "http_server" gives the module: spec/http_spec.lua uses it)
local tapio = require "tapio"

local M = {}
M.defaults = {
  host = "127.0.0.1", port = 8080, root = ".",
  max_head = 8192,            -- the reader's limit: request line + headers
  max_body = 64 * 1024 * 1024,
  idle = 15,                  -- seconds a kept-alive connection may idle
  body_timeout = 60,          -- seconds a request's body may take to come
  handshake_timeout = 10,     -- TLS
  grace = 5,                  -- seconds in-flight requests get at a stop
  chunk = 65536,              -- file bytes per write
  log = print,
}

local REASONS = {
  [100] = "Continue", [200] = "OK", [400] = "Bad Request",
  [404] = "Not Found", [405] = "Method Not Allowed", [408] = "Request Timeout",
  [413] = "Content Too Large", [431] = "Request Header Fields Too Large",
  [501] = "Not Implemented", [505] = "HTTP Version Not Supported",
}

-- A request the server refuses: caught in serve_connection, answered with
-- status, and the connection closed (what follows cannot be trusted).
local function refuse(status)
  error({ status = status }, 0)
end

local function send_head(writer, status, headers)
  local lines = { ("HTTP/1.1 %d %s\r\n"):format(status, REASONS[status]) }
  for _, h in ipairs(headers) do
    lines[#lines + 1] = h[1] .. ": " .. h[2] .. "\r\n"
  end
  lines[#lines + 1] = "\r\n"
  writer:write(table.concat(lines))
end

local function respond(writer, req, status, body, ctype)
  send_head(writer, status, {
    { "Content-Length", #body },
    { "Content-Type", ctype or "text/plain" },
    { "Connection", req.keep_alive and "keep-alive" or "close" } })
  if req.method ~= "HEAD" then
    writer:write(body)
  end
end

-- "GET /x HTTP/1.1\r\nHost: h\r\n...\r\n\r\n" -> a request table; header
-- names in lower case, repeated ones joined with ", ".
local function parse_head(head)
  local method, target, version = head:match("^(%u+) (%S+) HTTP/(%d%.%d)\r\n")
  if not method then
    refuse(400)
  elseif version ~= "1.1" and version ~= "1.0" then
    refuse(505)
  end
  local headers = {}
  for name, value in head:gmatch("\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
    name, value = name:lower(), value:gsub("[ \t]+$", "")
    headers[name] = headers[name] and headers[name] .. ", " .. value or value
  end
  local connection = (headers.connection or ""):lower()
  return { method = method, path = target:match("^[^?#]*"),
           version = version, headers = headers,
           keep_alive = connection ~= "close" and
             (version == "1.1" or connection == "keep-alive") }
end

-- The body of a chunked request, at most max bytes (else 413).
local function read_chunked(reader, max)
  local parts, size = {}, 0
  while true do
    local n = tonumber(reader:readline():match("^%s*(%x+)"), 16)
    if not n then
      refuse(400)
    elseif n == 0 then
      break
    end
    size = size + n
    if size > max then
      refuse(413)
    end
    parts[#parts + 1] = reader:readexactly(n)
    if reader:readexactly(2) ~= "\r\n" then
      refuse(400)
    end
  end
  repeat -- trailers, unused
    local line = reader:readline()
  until line == "\r\n" or line == "\n"
  return table.concat(parts)
end

local function read_body(reader, writer, req, cfg)
  local te, cl = req.headers["transfer-encoding"], req.headers["content-length"]
  local length = tonumber(cl or "0")
  if te and te:lower() ~= "chunked" then
    refuse(501)
  elseif (te and cl) or not length or length < 0 or length % 1 ~= 0 then
    refuse(400)
  elseif length > cfg.max_body then
    refuse(413) -- before a 100 Continue: the client sends nothing more
  end
  if (req.headers.expect or ""):lower() == "100-continue"
     and req.version == "1.1" then
    writer:write("HTTP/1.1 100 Continue\r\n\r\n")
  end
  -- A client that sends its body slowly, or never, holds the connection
  -- and its buffer: it gets body_timeout seconds for all of it.
  local ok, body = pcall(tapio.timeout, cfg.body_timeout, function()
    if te then
      return read_chunked(reader, cfg.max_body)
    end
    return reader:readexactly(length)
  end)
  if not ok and type(body) == "table" and body.code == tapio.ETIMEDOUT then
    refuse(408)
  elseif not ok then
    error(body, 0)
  end
  return body
end

-- A file, a chunk at a time: drain waits while the client is behind, so
-- the server holds at most about a chunk and the transport's high-water
-- mark of it.
local function send_file(writer, req, file, cfg)
  local size = file:seek("end")
  file:seek("set")
  send_head(writer, 200, {
    { "Content-Length", size },
    { "Content-Type", "application/octet-stream" },
    { "Connection", req.keep_alive and "keep-alive" or "close" } })
  while req.method == "GET" do
    local chunk = file:read(cfg.chunk)
    if not chunk then
      break
    end
    writer:write(chunk)
    cfg.stats.peak_buffer = math.max(cfg.stats.peak_buffer,
      writer.transport:get_write_buffer_size())
    writer:drain()
  end
end

-- The file at root .. path, or nil (none, outside root, a directory).
local function open_file(root, path)
  local file = not path:find("..", 1, true) and io.open(root .. path, "rb")
  if file and select(2, file:read(0)) then -- a directory opens, not reads
    file:close()
    return nil
  end
  return file
end

local function handle_request(reader, writer, req, cfg)
  if req.path == "/echo" then
    if req.method ~= "POST" and req.method ~= "PUT" then
      return respond(writer, req, 405, "POST or PUT\n")
    end
    local body = read_body(reader, writer, req, cfg)
    return respond(writer, req, 200, body, req.headers["content-type"])
  end
  read_body(reader, writer, req, cfg) -- whatever it is, it is not used
  if req.method ~= "GET" and req.method ~= "HEAD" then
    return respond(writer, req, 405, "GET or HEAD\n")
  end
  local file = open_file(cfg.root, req.path)
  if not file then
    return respond(writer, req, 404, "not found\n")
  end
  local ok, err = pcall(send_file, writer, req, file, cfg)
  file:close()
  if not ok then
    error(err, 0)
  end
end

-- The peer went away (asyncio's ConnectionError), or ended mid-request.
local function gone(err)
  return type(err) == "table" and (err.code == tapio.ECONNRESET
    or err.code == tapio.EPIPE or err.code == tapio.ECONNABORTED
    or err.name == "IncompleteReadError")
end

-- One connection: its requests in order until one says close, the client
-- leaves, it idles too long or the server stops.
local function serve_requests(reader, writer, cfg, conn)
  while not cfg.stopping do
    conn.idle = true
    local ok, head = pcall(tapio.timeout, cfg.idle, reader.readuntil,
                           reader, "\r\n\r\n")
    conn.idle = false
    if not ok and head.name == "LimitOverrunError" then
      refuse(431)
    elseif not ok and (head.code == tapio.ETIMEDOUT -- idle too long
           or head.name == "IncompleteReadError" and head.partial == "") then
      return
    elseif not ok then
      error(head, 0)
    end
    local req = parse_head(head)
    req.keep_alive = req.keep_alive and not cfg.stopping
    conn.req = req -- a stop sets keep_alive false: "Connection: close"
    handle_request(reader, writer, req, cfg)
    cfg.log(("%s %s %s"):format(req.method, req.path,
      writer:get_extra_info("peername")))
    if not req.keep_alive then
      return
    end
  end
end

-- After a refusal: our answer, then what the client still sends is read
-- and dropped for a while, since closing with input unread would reset
-- the connection, and a reset can destroy the answer before it is read.
local function linger(reader, writer)
  if writer:can_write_eof() then
    writer:write_eof()
  end
  pcall(tapio.timeout, 2, function()
    repeat until reader:read(65536) == ""
  end)
end

local function serve_connection(reader, writer, cfg)
  local conn = { writer = writer }
  cfg.connections[conn] = true
  local ok, err = pcall(serve_requests, reader, writer, cfg, conn)
  cfg.connections[conn] = nil
  if not ok and type(err) == "table" and err.name == "LimitOverrunError" then
    err = { status = 400 } -- a chunk's size line, a trailer: too long
  end
  if not ok and type(err) == "table" and err.status then
    respond(writer, { method = "GET" }, err.status, REASONS[err.status] .. "\n")
    linger(reader, writer)
  elseif not ok and not gone(err) then
    writer:close()
    error(err, 0) -- a bug: the exception handler shows it
  end
  writer:close()
  pcall(writer.wait_closed, writer) -- a reset here is no news
end

--- M.serve(cfg): starts the server (in a task); cfg's fields override
-- M.defaults. Returns the server and cfg (cfg.stats.peak_buffer: the
-- most a file response had buffered in a transport).
function M.serve(cfg)
  setmetatable(cfg, { __index = M.defaults })
  cfg.connections, cfg.stats = {}, { peak_buffer = 0 }
  local ssl
  if cfg.cert then
    ssl = tapio.tls_context { side = "server", cert_file = cfg.cert,
                              key_file = cfg.key }
  end
  local server = tapio.start_server(function(reader, writer)
    serve_connection(reader, writer, cfg)
  end, cfg.host, cfg.port, { limit = cfg.max_head, ssl = ssl,
    ssl_handshake_timeout = ssl and cfg.handshake_timeout or nil })
  return server, cfg
end

--- M.stop(server, cfg): the graceful stop. No new connections; idle ones
-- are closed, the others end after their request; after cfg.grace
-- seconds the rest are closed, and aborted cfg.grace seconds later (a
-- close waits for what is buffered to go, a client may not read it).
function M.stop(server, cfg)
  cfg.stopping = true
  server:close()
  for conn in pairs(cfg.connections) do
    if conn.idle then
      conn.writer:close()
    else
      conn.req.keep_alive = false
    end
  end
  local ok = pcall(tapio.wait_for, function() server:wait_closed() end,
                   cfg.grace)
  if not ok then
    cfg.log(("closing %d connections"):format(server:client_count()))
    server:close_clients()
    if not pcall(tapio.wait_for, function() server:wait_closed() end,
                 cfg.grace) then
      server:abort_clients()
      server:wait_closed()
    end
  end
end

if ... == "http_server" then
  return M
end

tapio.run(function(root, port, cert, key)
  local server, cfg = M.serve { root = root, port = tonumber(port),
                                cert = cert, key = key }
  local stop = tapio.Event()
  tapio.get_running_loop():add_signal_handler("SIGTERM", stop.set, stop)
  print(("Serving %s on %s://%s:%d"):format(cfg.root, cert and "https" or
    "http", cfg.host, server:addresses()[1].port))
  stop:wait()
  M.stop(server, cfg)
  print(("stopped (at most %d bytes of a file were buffered)")
    :format(cfg.stats.peak_buffer))
end, ...)
