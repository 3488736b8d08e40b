-- An HTTP/1.1 client with streams: fetches each URL given, over one
-- kept-alive connection while the scheme, host and port stay the same
-- (a new one when they change or the server closes, and the GET sent
-- again when the server had closed it while it idled), http or https,
-- bodies by Content-Length, chunked, or to the end. Each body goes to
-- standard output, its status line to standard error.
-- Usage: tapio examples/http_get.lua URL...
-- (https trusts the system's CAs; SSL_CERT_FILE=ca.pem names others.
-- require "http_get" gives the module: spec/http_spec.lua uses it)
local tapio = require "tapio"

local M = {}

-- scheme://host[:port]/path?query -> its parts (an IPv6 host in brackets).
function M.urlsplit(url)
  local scheme, netloc, target = url:match("^(https?)://([^/?#]*)([^#]*)")
  assert(scheme, "not an http or https URL: " .. url)
  local host, port = netloc:match("^%[(.+)%]:?(%d*)$")
  if not host then
    host, port = netloc:match("^([^:]+):?(%d*)$")
  end
  assert(host, "no host in " .. url)
  return { scheme = scheme, host = host,
           port = tonumber(port) or (scheme == "https" and 443 or 80),
           target = target:find("^/") and target or "/" .. target }
end

--- M.connect(u [, ssl]): a connection to u's host (ssl: a tls_context for
-- https; nil: the system's CAs).
function M.connect(u, ssl)
  local reader, writer = tapio.open_connection(u.host, u.port,
    { ssl = u.scheme == "https" and (ssl or true) or nil })
  return { reader = reader, writer = writer, scheme = u.scheme,
           host = u.host, port = u.port, open = true }
end

local function read_chunked(reader)
  local parts = {}
  while true do
    local n = tonumber(reader:readline():match("^%s*(%x+)"), 16)
    assert(n, "bad chunk size")
    if n == 0 then
      break
    end
    parts[#parts + 1] = reader:readexactly(n)
    reader:readexactly(2) -- CRLF
  end
  repeat -- trailers, unused
    local line = reader:readline()
  until line == "\r\n" or line == "\n" or line == ""
  return table.concat(parts)
end

local function read_response(conn, method)
  local reader = conn.reader
  local head
  repeat -- 1xx answers ("100 Continue") come before the real one
    head = reader:readuntil("\r\n\r\n")
  until not head:match("^HTTP/%d%.%d 1%d%d ")
  local version, status, reason =
    head:match("^HTTP/(%d%.%d) (%d%d%d) ?([^\r]*)")
  assert(version, "not an HTTP response")
  local headers = {}
  for name, value in head:gmatch("\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
    headers[name:lower()] = value:gsub("[ \t]+$", "")
  end
  local body, length = "", tonumber(headers["content-length"])
  if method == "HEAD" or status == "204" or status == "304" then
    length = 0
  elseif (headers["transfer-encoding"] or ""):lower():find("chunked") then
    body = read_chunked(reader)
  elseif length then
    body = reader:readexactly(length)
  else
    body = reader:read() -- to the end
    conn.open = false
  end
  local connection = (headers.connection or ""):lower()
  if connection == "close" or (version == "1.0" and connection ~= "keep-alive")
  then
    conn.open = false
  end
  return { status = tonumber(status), reason = reason, headers = headers,
           body = body }
end

--- M.request(conn, method, target [, body [, headers]]) -> the response:
-- { status, reason, headers (lower-case names), body }.
function M.request(conn, method, target, body, headers)
  local lines = { ("%s %s HTTP/1.1\r\nHost: %s\r\n"):format(method, target,
                  conn.host) }
  for name, value in pairs(headers or {}) do
    lines[#lines + 1] = name .. ": " .. value .. "\r\n"
  end
  if body then
    lines[#lines + 1] = ("Content-Length: %d\r\n"):format(#body)
  end
  lines[#lines + 1] = "\r\n"
  conn.writer:write(table.concat(lines))
  if body then
    conn.writer:write(body)
  end
  conn.writer:drain()
  return read_response(conn, method)
end

function M.close(conn)
  conn.writer:close()
  pcall(conn.writer.wait_closed, conn.writer) -- the end was the server's
end

-- A kept-alive connection the server closed while it idled (its idle
-- timeout) fails the next request before any answer: that request was
-- not seen, and a GET may be sent again on a new connection.
local function stale(err)
  return type(err) == "table" and (err.code == tapio.ECONNRESET
    or err.code == tapio.EPIPE
    or err.name == "IncompleteReadError" and err.partial == "")
end

--- M.get(state, url [, ssl]) -> the response: GETs url on state.conn
-- while its scheme, host and port fit and it is open (else on a new one,
-- kept in state.conn), once more on a new one if the server had closed
-- a kept-alive connection meanwhile.
function M.get(state, url, ssl)
  local u, conn = M.urlsplit(url), state.conn
  if conn and not (conn.open and conn.scheme == u.scheme
                   and conn.host == u.host and conn.port == u.port) then
    M.close(conn)
    conn = nil
  end
  if conn then
    local ok, r = pcall(M.request, conn, "GET", u.target)
    if ok or not stale(r) then
      return ok and r or error(r, 0)
    end
    M.close(conn)
  end
  state.conn = M.connect(u, ssl)
  return M.request(state.conn, "GET", u.target)
end

--- M.get_all(urls [, ssl]): GETs each URL, reusing the connection while
-- it can; returns the responses.
function M.get_all(urls, ssl)
  local state, responses = {}, {}
  for i, url in ipairs(urls) do
    responses[i] = M.get(state, url, ssl)
  end
  if state.conn then
    M.close(state.conn)
  end
  return responses
end

if ... == "http_get" then
  return M
end

tapio.run(function(...)
  local urls = { ... }
  assert(#urls > 0, "usage: http_get.lua URL...")
  for i, r in ipairs(M.get_all(urls)) do
    io.stderr:write(("%s: %d %s (%d bytes)\n"):format(urls[i], r.status,
      r.reason, #r.body))
    io.stdout:write(r.body)
  end
end, ...)
