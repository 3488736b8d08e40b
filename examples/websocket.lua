-- A small RFC 6455 WebSocket library on tapio's streams, for
-- ws_echo_server.lua and ws_client.lua: the opening handshake (both
-- sides), frames (masked from client to server only), the three length
-- forms, fragmented messages with control frames between the fragments,
-- ping answered by pong, text checked as UTF-8, the closing handshake
-- with a bounded wait, a maximum message size, flow control with drain.
-- SHA-1 and base64 are written here (the key's answer needs them, once
-- per connection). Runs on Lua 5.4 and LuaJIT.
--
--   local ws = require "websocket"
--   local conn = ws.connect("ws://127.0.0.1:8765/", opts)   -- in a task
--   conn:send("hello")                  -- text; conn:send(s, "binary")
--   local msg, kind = conn:receive()    -- nil, code, reason at the end
--   conn:close(1000, "bye")
--   -- a server: inside start_server's client_connected_cb
--   local conn = ws.accept(reader, writer, opts)
--
-- opts: max_size (bytes of one message, default 16 MiB: more closes with
-- 1009), close_timeout (seconds to wait for the peer's close frame and
-- then for the end of the connection, default 10), open_timeout (accept:
-- seconds a client has to send its request, default 10), ssl (connect:
-- a client tls_context).
local tapio = require "tapio"

local M = {}
M.GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
M.defaults = { max_size = 16 * 1024 * 1024, close_timeout = 10,
               open_timeout = 10 }

local CONT, TEXT, BINARY, CLOSE, PING, PONG = 0, 1, 2, 8, 9, 10
local unpack = table.unpack or unpack

-- ---- 32-bit words, on Lua 5.4's operators or LuaJIT's bit library ------

local band, bor, bxor, bnot, rol, add32
if rawget(_G, "jit") then
  local bit = require "bit"
  local W = 4294967296
  band = function(a, b) return bit.band(a, b) % W end
  bor = function(a, b) return bit.bor(a, b) % W end
  bxor = function(a, b) return bit.bxor(a, b) % W end
  bnot = function(a) return bit.bnot(a) % W end
  rol = function(a, n) return bit.rol(a, n) % W end
  add32 = function(a, b) return (a + b) % W end
else -- a chunk, so that LuaJIT never parses the operators
  band, bor, bxor, bnot, rol, add32 = load [[
    return function(a, b) return a & b end,
      function(a, b) return a | b end,
      function(a, b) return a ~ b end,
      function(a) return ~a & 0xffffffff end,
      function(a, n) return ((a << n) | (a >> (32 - n))) & 0xffffffff end,
      function(a, b) return (a + b) & 0xffffffff end]]()
end

-- n as `bytes` big-endian bytes
local function be(n, bytes)
  local t = {}
  for i = bytes, 1, -1 do
    t[i] = n % 256
    n = math.floor(n / 256)
  end
  return string.char(unpack(t))
end

local function u16(s, i)
  local a, b = s:byte(i, i + 1)
  return a * 256 + b
end

--- M.sha1(s): the 20-byte SHA-1 digest of s (FIPS 180-4).
function M.sha1(s)
  local h = { 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0 }
  s = s .. "\128" .. ("\0"):rep((55 - #s) % 64) .. be(#s * 8, 8)
  local w = {}
  for chunk = 1, #s, 64 do
    for i = 0, 15 do
      local a, b, c, d = s:byte(chunk + i * 4, chunk + i * 4 + 3)
      w[i] = ((a * 256 + b) * 256 + c) * 256 + d
    end
    for i = 16, 79 do
      w[i] = rol(bxor(bxor(w[i - 3], w[i - 8]), bxor(w[i - 14], w[i - 16])), 1)
    end
    local a, b, c, d, e = h[1], h[2], h[3], h[4], h[5]
    for i = 0, 79 do
      local f, k
      if i < 20 then
        f, k = bor(band(b, c), band(bnot(b), d)), 0x5A827999
      elseif i < 40 then
        f, k = bxor(bxor(b, c), d), 0x6ED9EBA1
      elseif i < 60 then
        f, k = bor(bor(band(b, c), band(b, d)), band(c, d)), 0x8F1BBCDC
      else
        f, k = bxor(bxor(b, c), d), 0xCA62C1D6
      end
      a, b, c, d, e = add32(add32(rol(a, 5), f), add32(add32(e, k), w[i])),
                      a, rol(b, 30), c, d
    end
    h[1], h[2], h[3] = add32(h[1], a), add32(h[2], b), add32(h[3], c)
    h[4], h[5] = add32(h[4], d), add32(h[5], e)
  end
  return be(h[1], 4) .. be(h[2], 4) .. be(h[3], 4) .. be(h[4], 4)
         .. be(h[5], 4)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

--- M.base64(s): s in base64 (RFC 4648, padded).
function M.base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a * 256 + (b or 0)) * 256 + (c or 0)
    local q = {}
    for j = 4, 1, -1 do
      q[j] = n % 64 + 1
      n = math.floor(n / 64)
    end
    out[#out + 1] = B64:sub(q[1], q[1]) .. B64:sub(q[2], q[2])
      .. (b and B64:sub(q[3], q[3]) or "=") .. (c and B64:sub(q[4], q[4])
      or "=")
  end
  return table.concat(out)
end

--- M.accept_key(key): the Sec-WebSocket-Accept answering a client's
-- Sec-WebSocket-Key.
function M.accept_key(key)
  return M.base64(M.sha1(key .. M.GUID))
end

-- ---- masking ---------------------------------------------------------------

--- M.mask(data, key): data XOR the 4-byte key repeated (masking and
-- unmasking are the same).
if string.pack then -- Lua 5.4: eight bytes at a time, 512 per call
  M.mask = load [[
    local pack, unpack, BLOCK = string.pack, string.unpack, ("<i8"):rep(64)
    return function(data, key)
      if key == "\0\0\0\0" then return data end
      local k8 = unpack("<i8", key:rep(2))
      local out, n = {}, #data
      local whole = n - n % 512
      for pos = 1, whole, 512 do
        local t = { unpack(BLOCK, data, pos) }
        for i = 1, 64 do t[i] = t[i] ~ k8 end
        out[#out + 1] = pack(BLOCK, table.unpack(t, 1, 64))
      end
      local k = { key:byte(1, 4) }
      local tail = { data:byte(whole + 1, n) }
      for i = 1, #tail do tail[i] = tail[i] ~ k[(i - 1) % 4 + 1] end
      out[#out + 1] = string.char(table.unpack(tail))
      return table.concat(out)
    end]]()
else -- LuaJIT: byte by byte in an FFI buffer
  local ffi, bit = require "ffi", require "bit"
  M.mask = function(data, key)
    local n = #data
    local buf = ffi.new("uint8_t[?]", n)
    ffi.copy(buf, data, n)
    local k = { [0] = key:byte(1), key:byte(2), key:byte(3), key:byte(4) }
    for i = 0, n - 1 do
      buf[i] = bit.bxor(buf[i], k[i % 4])
    end
    return ffi.string(buf, n)
  end
end

-- ---- UTF-8 -------------------------------------------------------------------

--- M.valid_utf8(s): whether s is well-formed UTF-8 (no overlong forms, no
-- surrogates, nothing past U+10FFFF).
if utf8 then
  M.valid_utf8 = function(s) return utf8.len(s) ~= nil end
else
  M.valid_utf8 = function(s)
    local i, n = 1, #s
    while i <= n do
      local c = s:byte(i)
      if c < 0x80 then
        i = i + 1
      else
        local len, min
        if c >= 0xF0 and c <= 0xF4 then len, min = 4, 0x10000
        elseif c >= 0xE0 and c <= 0xEF then len, min = 3, 0x800
        elseif c >= 0xC2 and c <= 0xDF then len, min = 2, 0x80
        else return false end
        local cp = c % (2 ^ (7 - len))
        for j = i + 1, i + len - 1 do
          local b = s:byte(j)
          if not b or b < 0x80 or b > 0xBF then return false end
          cp = cp * 64 + b % 64
        end
        if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then
          return false
        end
        i = i + len
      end
    end
    return true
  end
end

-- ---- the opening handshake ---------------------------------------------------

-- "...\r\nName: value\r\n..." -> { name = value } (lower-case names,
-- repeated ones joined with ", ")
local function parse_headers(head)
  local headers = {}
  for name, value in head:gmatch("\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
    name, value = name:lower(), value:gsub("[ \t]+$", "")
    headers[name] = headers[name] and headers[name] .. ", " .. value or value
  end
  return headers
end

-- whether the comma-separated header value has token (case-insensitive)
local function has_token(value, token)
  for t in (value or ""):gmatch("[^,%s]+") do
    if t:lower() == token then
      return true
    end
  end
  return false
end

local function refuse(writer, status, why, extra)
  writer:write(("HTTP/1.1 %s\r\nContent-Type: text/plain\r\n%s"
    .. "Content-Length: %d\r\nConnection: close\r\n\r\n%s\n")
    :format(status, extra or "", #why + 1, why))
  writer:close()
  pcall(writer.wait_closed, writer)
  return nil, why
end

-- The request's fault, or nil when it asks for a WebSocket properly.
local function request_fault(head, h)
  if not head:match("^GET %S+ HTTP/1%.1\r\n") then
    return "not a GET request in HTTP/1.1"
  elseif not has_token(h.upgrade, "websocket") then
    return "no 'Upgrade: websocket'"
  elseif not has_token(h.connection, "upgrade") then
    return "no 'Connection: Upgrade'"
  elseif #(h["sec-websocket-key"] or "") ~= 24 then
    return "no Sec-WebSocket-Key of 16 bytes in base64"
  end
end

local Conn = {}
Conn.__index = Conn

local function new_conn(reader, writer, side, opts)
  opts = opts or {}
  return setmetatable({
    reader = reader, writer = writer, side = side,
    max_size = opts.max_size or M.defaults.max_size,
    close_timeout = opts.close_timeout or M.defaults.close_timeout,
    state = "open",       -- "closing" once our close frame went, "closed"
    peak_buffer = 0,      -- the most the writer held after a write
    done = tapio.Event(), -- set when the connection has ended
  }, Conn)
end

--- M.accept(reader, writer [, opts]) -> conn, path: the server's side of
-- the opening handshake on a connection start_server gave. A request
-- that is no WebSocket handshake is answered with 400 (426 for another
-- version than 13) and closed: nil and why; so is a connection that
-- sends no request within open_timeout seconds.
function M.accept(reader, writer, opts)
  local wait = opts and opts.open_timeout or M.defaults.open_timeout
  local ok, head = pcall(tapio.timeout, wait, reader.readuntil, reader,
                         "\r\n\r\n")
  if not ok then
    if tapio.is_cancelled(head) then
      writer:close()
      error(head, 0)
    elseif type(head) == "table" and head.name == "LimitOverrunError" then
      return refuse(writer, "431 Request Header Fields Too Large",
                    "request head too long")
    end
    writer:close()
    return nil, "no request: " .. tostring(head)
  end
  local h = parse_headers(head)
  local fault = request_fault(head, h)
  if fault then
    return refuse(writer, "400 Bad Request", fault)
  elseif h["sec-websocket-version"] ~= "13" then
    return refuse(writer, "426 Upgrade Required", "version 13 only",
                  "Sec-WebSocket-Version: 13\r\n")
  end
  writer:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    .. "Connection: Upgrade\r\nSec-WebSocket-Accept: "
    .. M.accept_key(h["sec-websocket-key"]) .. "\r\n\r\n")
  local sent, err = pcall(writer.drain, writer)
  if not sent then -- the client went away (a cancellation goes on)
    if tapio.is_cancelled(err) then
      error(err, 0)
    end
    return nil, "gone before the handshake's answer: " .. tostring(err)
  end
  return new_conn(reader, writer, "server", opts), head:match("^GET (%S+)")
end

--- M.parse_url("ws://host:port/path") -> { tls, host, port, path }
function M.parse_url(url)
  local scheme, netloc, path = url:match("^(wss?)://([^/?#]+)([^#]*)$")
  if not scheme then
    return nil, "not a ws:// or wss:// URL: " .. url
  end
  local host, port = netloc:match("^%[(.+)%]:?(%d*)$")
  if not host then
    host, port = netloc:match("^([^:]+):?(%d*)$")
  end
  if not host then
    return nil, "no host in " .. url
  end
  return { tls = scheme == "wss", host = host, netloc = netloc,
           port = tonumber(port) or (scheme == "wss" and 443 or 80),
           path = path:find("^/") and path or "/" .. path }
end

if rawget(_G, "jit") then -- LuaJIT's generator starts from the same seed
  local f = io.open("/dev/urandom", "rb")
  local s = f and f:read(4) or tostring(os.time())
  if f then f:close() end
  math.randomseed(s:byte(1) + s:byte(2) * 256 + s:byte(3) * 65536)
end

-- Mask keys and the handshake's nonce. Lua's generator is not a
-- cryptographic one: enough against the proxy-cache confusion masking is
-- there for (RFC 6455 10.3) in an example, not against a determined
-- attacker who sees our traffic.
local function random_bytes(n)
  local t = {}
  for i = 1, n do
    t[i] = math.random(0, 255)
  end
  return string.char(unpack(t))
end

--- M.connect(url [, opts]) -> conn: opens a connection (TLS for wss://,
-- opts.ssl a client tls_context, else the system's CAs) and makes the
-- client's side of the opening handshake. Raises what failed: the
-- connection's error value, or a message for a refused handshake.
function M.connect(url, opts)
  opts = opts or {}
  local u = assert(M.parse_url(url))
  local reader, writer = tapio.open_connection(u.host, u.port,
    { ssl = u.tls and (opts.ssl or true) or nil })
  local key = M.base64(random_bytes(16))
  writer:write(("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
    .. "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
    .. "Sec-WebSocket-Version: 13\r\n\r\n"):format(u.path, u.netloc, key))
  writer:drain()
  local ok, head = pcall(reader.readuntil, reader, "\r\n\r\n")
  local h = ok and parse_headers(head) or {}
  local fault = not ok and "no answer: " .. tostring(head)
    or not head:match("^HTTP/1%.1 101") and "refused: "
       .. head:match("^([^\r\n]*)")
    or not has_token(h.upgrade, "websocket") and "no 'Upgrade: websocket'"
    or h["sec-websocket-accept"] ~= M.accept_key(key)
       and "wrong Sec-WebSocket-Accept"
  if fault then
    writer.transport:abort()
    error("websocket handshake with " .. url .. " failed: " .. fault, 0)
  end
  return new_conn(reader, writer, "client", opts)
end

-- fn(...) within seconds: true if it ended in time without error (an
-- error of the connection's end counts as ended); a cancellation of the
-- calling task goes on.
local function bounded(seconds, fn, ...)
  local ok, err = pcall(tapio.timeout, seconds, fn, ...)
  if not ok and tapio.is_cancelled(err) then
    error(err, 0)
  end
  return ok or type(err) ~= "table" or err.code ~= tapio.ETIMEDOUT
end

-- ---- frames ----------------------------------------------------------------

-- A protocol violation: the connection is failed with code.
local Fault = {}
local function fault(code, reason)
  error(setmetatable({ code = code, reason = reason }, Fault), 0)
end

-- Writes one frame (masked by a client), then waits while the transport
-- is over its high-water mark. Returns true, or nil and the error.
function Conn:write_frame(op, payload, fin)
  local n, b2, ext = #payload, 0, ""
  if n < 126 then
    b2 = n
  elseif n < 65536 then
    b2, ext = 126, be(n, 2)
  else
    b2, ext = 127, be(n, 8)
  end
  local key = ""
  if self.side == "client" then
    key = random_bytes(4)
    b2, payload = b2 + 128, M.mask(payload, key)
  end
  local writer = self.writer
  writer:writelines({ string.char((fin == false and 0 or 128) + op, b2) .. ext
                      .. key, payload })
  local size = writer:get_write_buffer_size() -- with what it batched
  if size > self.peak_buffer then
    self.peak_buffer = size
  end
  -- a close frame waits at most close_timeout: the peer may not read
  local ok, err = pcall(tapio.timeout, op == CLOSE and self.close_timeout
                        or nil, writer.drain, writer)
  if not ok and tapio.is_cancelled(err) then
    error(err, 0)
  end
  return ok or nil, err
end

-- The payload length after the first two bytes (7, 16 or 64 bits).
local function read_length(reader, n)
  if n == 126 then
    return u16(reader:readexactly(2), 1)
  elseif n == 127 then
    local ext = reader:readexactly(8)
    n = 0
    for i = 1, 8 do
      n = n * 256 + ext:byte(i)
    end
    return n, ext:byte(1) >= 128
  end
  return n
end

-- Why a frame's header breaks the protocol (code and reason), or nil.
-- size: the bytes of the message so far.
function Conn:header_fault(b1, op, masked, n, size, top_bit)
  if b1 % 128 >= 16 then
    return 1002, "reserved bits set"
  elseif (op > BINARY and op < CLOSE) or op > PONG then
    return 1002, "unknown opcode " .. op
  elseif masked ~= (self.side == "server") then
    return 1002, masked and "masked frame from the server"
                 or "unmasked frame from the client"
  elseif op >= CLOSE and (b1 < 128 or n > 125) then
    return 1002, "fragmented or long control frame"
  elseif top_bit then
    return 1002, "64-bit length with its top bit set"
  elseif op < CLOSE and size + n > self.max_size then
    return 1009, ("message over %d bytes"):format(self.max_size)
  end
end

-- Reads one frame: fin, opcode, payload (unmasked). A frame that breaks
-- the protocol is not read past its header: its payload is skipped
-- while the connection closes.
function Conn:read_frame(size)
  local reader = self.reader
  local b1, b2 = reader:readexactly(2):byte(1, 2)
  local op, masked = b1 % 16, b2 >= 128
  local n, top_bit = read_length(reader, b2 % 128)
  local key = masked and reader:readexactly(4)
  local code, reason = self:header_fault(b1, op, masked, n, size, top_bit)
  if code then
    self.skip = not top_bit and n or nil
    fault(code, reason)
  end
  local payload = reader:readexactly(n)
  return b1 >= 128, op, key and M.mask(payload, key) or payload
end

local function valid_code(code)
  return (code >= 1000 and code <= 1003) or (code >= 1007 and code <= 1014)
    or (code >= 3000 and code <= 4999)
end

-- A control frame: a ping is answered, a close ends the connection
-- (returns true).
function Conn:control(op, payload)
  if op == PING and self.state == "open" then
    self:write_frame(PONG, payload)
  elseif op == CLOSE then
    local code, reason = 1005, ""
    if #payload == 1 then
      fault(1002, "close frame of 1 byte")
    elseif #payload >= 2 then
      code, reason = u16(payload, 1), payload:sub(3)
      if not valid_code(code) then
        fault(1002, "invalid close code " .. code)
      elseif not M.valid_utf8(reason) then
        fault(1007, "close reason not UTF-8")
      end
    end
    self.close_received = true
    if self.state == "open" then -- answered once, with its code
      self.code, self.reason = code, reason
      self.state = "closing"
      self:write_frame(CLOSE, code == 1005 and "" or be(code, 2))
    end
    self:finish(true)
    return true
  end
end

-- The next message: text or binary, its fragments joined.
function Conn:read_message()
  local parts, size, kind = {}, 0, nil
  while true do
    local fin, op, payload = self:read_frame(size)
    if op >= CLOSE then
      if self:control(op, payload) then
        return nil
      end
    elseif (op == CONT) ~= (kind ~= nil) then
      fault(1002, kind and "a new message before the last one ended"
                  or "a continuation frame with no message to continue")
    else
      kind = kind or (op == TEXT and "text" or "binary")
      parts[#parts + 1] = payload
      size = size + #payload
      if fin then
        local msg = table.concat(parts)
        if kind == "text" and not M.valid_utf8(msg) then
          fault(1007, "invalid UTF-8 in a text message")
        end
        return msg, kind
      end
    end
  end
end

-- After our close frame: reads (and drops) until the peer's close frame
-- or the end, at most close_timeout seconds.
function Conn:await_close()
  bounded(self.close_timeout, function()
    if self.skip then -- the rest of a message too big to take
      while self.skip > 0 do
        self.skip = self.skip - #self.reader:readexactly(
          math.min(self.skip, 65536))
      end
    end
    while not self.close_received do
      self:read_message()
    end
  end)
end

-- The end of the connection: a server closes the TCP connection; a
-- client waits (bounded) for the server to close it first, as RFC 6455
-- 7.1.1 asks, when the close frames were exchanged (wait_eof).
function Conn:finish(wait_eof)
  if self.state == "closed" then
    return
  end
  self.state = "closed"
  self.code = self.code or 1006
  local reader, writer = self.reader, self.writer
  local ended = bounded(self.close_timeout, function()
    if wait_eof and self.side == "client" then
      repeat until reader:read(65536) == ""
    end
    writer:close()
    writer:wait_closed()
  end)
  if not ended then
    writer.transport:abort() -- a peer that holds our close up
  end
  self.done:set()
end

--- conn:receive() -> message, "text" or "binary"; at the end nil, the
-- close code (the peer's, or ours when we closed first or failed the
-- connection; 1006 when it ended with no close frame) and the reason.
-- Pings are answered meanwhile. One task at a time may receive.
function Conn:receive()
  if self.state == "closed" then
    return nil, self.code, self.reason
  end
  self.reading = true
  local ok, msg, kind = pcall(self.read_message, self)
  self.reading = false
  if ok and msg then
    return msg, kind
  elseif not ok and getmetatable(msg) == Fault then
    self:fail(msg.code, msg.reason)
  elseif not ok and tapio.is_cancelled(msg) then
    error(msg, 0)
  elseif not ok then -- the connection itself ended (reset, end of file)
    self.error = msg
    self:finish(false)
  end
  return nil, self.code, self.reason
end

-- Fails the connection: our close frame with code, then the bounded wait
-- for the peer's answer, then the end.
function Conn:fail(code, reason)
  if self.state == "open" then
    self.state, self.code, self.reason = "closing", code, reason
    self:write_frame(CLOSE, be(code, 2) .. reason)
  end
  self:await_close()
  self:finish(false)
end

--- conn:send(data [, kind]) -> true, or nil and why: one message, "text"
-- (the default) or "binary"; waits while the peer reads slower than we
-- send (drain). Once closing, nothing is sent.
function Conn:send(data, kind)
  assert(type(data) == "string", "websocket: send: data must be a string")
  if self.state ~= "open" then
    return nil, "closing"
  end
  return self:write_frame(kind == "binary" and BINARY or TEXT, data)
end

--- conn:ping([payload]): sends a ping (the peer answers with a pong).
function Conn:ping(payload)
  if self.state ~= "open" then
    return nil, "closing"
  end
  return self:write_frame(PING, payload or "")
end

--- conn:close([code [, reason]]): the closing handshake: our close frame
-- (code 1000 by default), the peer's answer awaited at most
-- close_timeout seconds (read by the task in receive() if one is, else
-- here), then the end of the connection. Returns the code it ended with.
function Conn:close(code, reason)
  if self.state == "open" then
    self.state = "closing"
    self.code, self.reason = code or 1000, reason or ""
    self:write_frame(CLOSE, be(self.code, 2) .. self.reason)
  end
  if self.reading then
    bounded(self.close_timeout, self.done.wait, self.done)
  else
    self:await_close()
  end
  self:finish(false)
  return self.code
end

--- conn:clean(): whether the close frames were exchanged both ways.
function Conn:clean()
  return self.close_received == true and self.code ~= 1006
end

return M
