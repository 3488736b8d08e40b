-- The SOCKS5 wire format for examples/socks5.lua: the client's messages
-- read from a tapio.StreamReader (RFC 1928's greeting and request, RFC
-- 1929's username/password), the server's answers as strings, and the
-- binary forms of IPv4 and IPv6 addresses, which tapio has no function
-- for (its address values give the host as text).
-- Written for Lua 5.1 too (no string.pack, no bitwise operators): the
-- spec reads it under LuaJIT as well.
local wire = {}

wire.VERSION = 5
wire.NO_AUTH, wire.USERPASS, wire.NO_ACCEPTABLE = 0x00, 0x02, 0xFF
wire.CONNECT, wire.BIND, wire.UDP_ASSOCIATE = 1, 2, 3
wire.IPV4, wire.DOMAIN, wire.IPV6 = 1, 3, 4

-- The reply codes (RFC 1928, section 6).
wire.SUCCEEDED = 0x00
wire.GENERAL_FAILURE = 0x01
wire.NOT_ALLOWED = 0x02
wire.NETWORK_UNREACHABLE = 0x03
wire.HOST_UNREACHABLE = 0x04
wire.CONNECTION_REFUSED = 0x05
wire.TTL_EXPIRED = 0x06
wire.COMMAND_NOT_SUPPORTED = 0x07
wire.ADDRESS_TYPE_NOT_SUPPORTED = 0x08

-- The reply for a failed connect, by the error value's name; any other
-- error is a general failure. A name that does not resolve is an
-- unreachable host (RFC 1928 has no code of its own for it).
local REPLY_FOR = {
  ECONNREFUSED = wire.CONNECTION_REFUSED,
  ENETUNREACH = wire.NETWORK_UNREACHABLE,
  ENETDOWN = wire.NETWORK_UNREACHABLE,
  EHOSTUNREACH = wire.HOST_UNREACHABLE,
  EAI_NONAME = wire.HOST_UNREACHABLE,
  EAI_AGAIN = wire.HOST_UNREACHABLE,
  EAI_FAIL = wire.HOST_UNREACHABLE,
  ETIMEDOUT = wire.TTL_EXPIRED,
  EACCES = wire.NOT_ALLOWED,
  EPERM = wire.NOT_ALLOWED,
  EAFNOSUPPORT = wire.ADDRESS_TYPE_NOT_SUPPORTED,
}

function wire.reply_for(err)
  return type(err) == "table" and REPLY_FOR[err.name]
    or wire.GENERAL_FAILURE
end

-- ---- Addresses -----------------------------------------------------------

local function u16(s, i)
  local hi, lo = s:byte(i, i + 1)
  return hi * 256 + lo
end

local function pack_u16(n)
  return string.char(math.floor(n / 256), n % 256)
end

-- "1.2.3.4" as 4 bytes, or nil.
local function pton4(host)
  local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  local bytes = { tonumber(a), tonumber(b), tonumber(c), tonumber(d) }
  if not a or bytes[1] > 255 or bytes[2] > 255 or bytes[3] > 255
     or bytes[4] > 255 then
    return nil
  end
  return string.char(bytes[1], bytes[2], bytes[3], bytes[4])
end

-- The groups of one side of "::" ("" is none), each as two bytes; a
-- dotted IPv4 tail counts as two groups. nil when malformed.
local function groups(part, tail_ok)
  local out = {}
  if part == "" then
    return out
  end
  local fields = {}
  for f in (part .. ":"):gmatch("([^:]*):") do
    fields[#fields + 1] = f
  end
  for i, f in ipairs(fields) do
    local v4 = tail_ok and i == #fields and f:find(".", 1, true)
      and pton4(f)
    if v4 then
      out[#out + 1] = v4:sub(1, 2)
      out[#out + 1] = v4:sub(3, 4)
    elseif f:match("^%x%x?%x?%x?$") then
      out[#out + 1] = pack_u16(tonumber(f, 16))
    else
      return nil
    end
  end
  return out
end

-- "2001:db8::1" (with "::" and a dotted IPv4 tail as RFC 4291 writes
-- them) as 16 bytes, or nil.
function wire.pton6(host)
  local head, rest = host:match("^(.-)::(.*)$")
  local left, right
  if head then
    left, right = groups(head, false), groups(rest, true)
  else
    left, right = groups(host, true), {}
  end
  if not left or not right then
    return nil
  end
  local missing = 8 - #left - #right
  if (head and missing < 1) or (not head and missing ~= 0) then
    return nil
  end
  return table.concat(left) .. ("\0\0"):rep(missing) .. table.concat(right)
end

-- 16 bytes as RFC 5952 text: lower case, no leading zeros, the longest
-- run of two or more zero groups (the first of equal ones) as "::".
function wire.ntop6(b)
  local g = {}
  for i = 1, 8 do
    g[i] = u16(b, 2 * i - 1)
  end
  local best, best_len, i = nil, 1, 1
  while i <= 8 do
    local j = i
    while j <= 8 and g[j] == 0 do
      j = j + 1
    end
    if j - i > best_len then
      best, best_len = i, j - i
    end
    i = j + 1
  end
  local parts = {}
  for k = 1, 8 do
    parts[k] = ("%x"):format(g[k])
  end
  if not best then
    return table.concat(parts, ":")
  end
  return table.concat(parts, ":", 1, best - 1) .. "::"
    .. table.concat(parts, ":", best + best_len, 8)
end

-- ATYP and address bytes for a host given as text (an IP address, else
-- a name).
local function pack_host(host)
  local v4 = pton4(host)
  if v4 then
    return string.char(wire.IPV4) .. v4
  end
  local v6 = host:find(":", 1, true) and wire.pton6(host)
  if v6 then
    return string.char(wire.IPV6) .. v6
  end
  return string.char(wire.DOMAIN, #host) .. host
end

-- ---- The client's messages ---------------------------------------------
-- Each reads what it needs with readexactly (an IncompleteReadError when
-- the client goes first) and returns nil and why for what is not SOCKS5.

-- The greeting: a set of the methods offered.
function wire.read_greeting(reader)
  local ver, n = reader:readexactly(2):byte(1, 2)
  if ver ~= wire.VERSION then
    return nil, ("not SOCKS5 (version %d)"):format(ver)
  end
  local methods = {}
  for _, m in ipairs({ reader:readexactly(n):byte(1, -1) }) do
    methods[m] = true
  end
  return methods
end

-- RFC 1929's request: user, password.
function wire.read_userpass(reader)
  local ver, n = reader:readexactly(2):byte(1, 2)
  if ver ~= 1 then
    return nil, ("bad username/password version %d"):format(ver)
  end
  local user = reader:readexactly(n)
  local password = reader:readexactly(reader:readexactly(1):byte())
  return user, password
end

-- The request: { cmd =, atyp =, host =, port = }; host is text (dotted
-- IPv4, RFC 5952 IPv6 or the name as sent), nil for an unknown address
-- type, whose length cannot be known (the caller answers 0x08 and
-- closes).
function wire.read_request(reader)
  local ver, cmd, _, atyp = reader:readexactly(4):byte(1, 4)
  if ver ~= wire.VERSION then
    return nil, ("not SOCKS5 (version %d)"):format(ver)
  end
  local req = { cmd = cmd, atyp = atyp }
  if atyp == wire.IPV4 then
    req.host = ("%d.%d.%d.%d"):format(reader:readexactly(4):byte(1, 4))
  elseif atyp == wire.IPV6 then
    req.host = wire.ntop6(reader:readexactly(16))
  elseif atyp == wire.DOMAIN then
    req.host = reader:readexactly(reader:readexactly(1):byte())
    if req.host == "" then
      return nil, "empty domain name"
    end
  else
    return req
  end
  req.port = u16(reader:readexactly(2), 1)
  return req
end

-- ---- The server's answers ----------------------------------------------

function wire.method_reply(method)
  return string.char(wire.VERSION, method)
end

function wire.userpass_reply(ok)
  return string.char(1, ok and 0 or 1)
end

-- A reply: code and the bound address (its host as text and port);
-- without one, 0.0.0.0:0, as a failure carries.
function wire.reply(code, host, port)
  return string.char(wire.VERSION, code, 0)
    .. pack_host(host or "0.0.0.0") .. pack_u16(port or 0)
end

return wire
