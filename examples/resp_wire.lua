-- RESP2, Redis's wire protocol, as examples/resp_server.lua needs it: the
-- replies it writes, and a parser of the requests it reads that knows no
-- transport, so a test can feed it bytes.
--
-- - The parser takes bytes in pieces cut anywhere and keeps its state
--   between them (the arguments so far of the array under way), so a
--   request may be split at any byte. It knows how many bytes must be
--   there before parsing can go on, so a large value arriving over many
--   pieces is joined once, when all of it is there, not once per piece.
--   Strings are cut with string.find and string.sub: every key, value
--   and argument must become a Lua string anyway.
-- - Inline requests (nc, telnet) are split at spaces and tabs; quotes are
--   not parsed (redis-cli and client libraries send arrays).
-- - Integers are Lua integers (64 bits) under Lua 5.4; under LuaJIT,
--   whose numbers are doubles, they stop at 2^53.
local byte, find, sub = string.byte, string.find, string.sub
local concat = table.concat

local MAX_BULK = 512 * 1024 * 1024 -- Redis's proto-max-bulk-len
local MAX_ARGS = 1024 * 1024       -- Redis's multibulk limit
local MAX_INLINE = 64 * 1024       -- Redis's inline request limit
-- Integers held exactly: Lua 5.4's 64 bits, LuaJIT's doubles.
local MAX_INT = math.maxinteger or 2 ^ 53
local MIN_INT = math.mininteger or -2 ^ 53

-- Replies ----------------------------------------------------------------

local OK, NIL = "+OK\r\n", "$-1\r\n"

local function bulk(s)
  return "$" .. #s .. "\r\n" .. s .. "\r\n"
end

local function int(n)
  return (":%d\r\n"):format(n)
end

-- An error reply; like Redis, CR and LF in it become spaces, so that a
-- name a client sent cannot end the line early.
local function err(msg)
  return "-" .. msg:gsub("[\r\n]", " ") .. "\r\n"
end

-- An array of n elements (#list if not given): strings as bulk strings,
-- numbers as integers, false as a nil element.
local function array(list, n)
  n = n or #list
  local out = { "*" .. n .. "\r\n" }
  for i = 1, n do
    local v = list[i]
    out[i + 1] = type(v) == "number" and int(v) or v and bulk(v) or NIL
  end
  return concat(out)
end

-- The three-element push of subscribe, unsubscribe and message.
local function push3(kind, channel, last)
  return array({ kind, channel or false, last }, 3)
end

-- A decimal integer as Redis's string2ll takes it: no sign but "-", no
-- leading zeros or spaces, within range; nil otherwise.
local function to_int(s)
  if #s > 20 or not (s == "0" or find(s, "^%-?[1-9]%d*$")) then
    return nil
  end
  local n = tonumber(s)
  if math.tointeger then
    n = math.tointeger(n) -- a 19-digit string past the range is a float
  end
  if not n or n > MAX_INT or n < MIN_INT then
    return nil
  end
  return n
end

-- Requests ---------------------------------------------------------------

-- s: the bytes being parsed, from pos on; more: pieces fed since;
-- have: how many bytes s and more hold, need: how many must be there
-- (counted from s's start) before parsing goes on; argv and size: the
-- array under way; error: the protocol error, once there was one.
local Parser = {}
Parser.__index = Parser

local function parser()
  return setmetatable({ s = "", pos = 1, more = {}, have = 0, need = 0 },
                      Parser)
end

-- Adds the bytes that came after those fed before.
function Parser:feed(data)
  local more = self.more
  more[#more + 1] = data
  self.have = self.have + #data
end

-- The next whole request: its arguments (strings); nil while it has not
-- all come; nil and what is wrong after a protocol error (Redis's words,
-- to follow "Protocol error: "), then at every call.
function Parser:next()
  if self.error or self.have < self.need then
    return nil, self.error
  end
  local s = self:joined()
  local pos = self.pos
  while pos <= #s do
    local argv
    if self.argv then
      pos, argv = self:bulk(s, pos)
    elseif byte(s, pos) == 42 then -- "*"
      pos = self:count(s, pos)
    else
      pos, argv = self:inline(s, pos)
    end
    if not pos then
      return nil, self.error -- waits for self.need bytes, or failed
    end
    self.pos = pos
    if argv then
      return argv
    end
  end
  self.need = #s + 1
  return nil
end

-- What is left of s and the pieces fed since, as one string.
function Parser:joined()
  local more = self.more
  if #more > 0 then
    local s, pos = self.s, self.pos
    local tail = #more == 1 and more[1] or concat(more)
    self.s = pos <= #s and sub(s, pos) .. tail or tail
    self.pos, self.more, self.have, self.need = 1, {}, #self.s, 0
  end
  return self.s
end

-- Records a protocol error; returns nil, where parsing stops.
function Parser:fail(what)
  self.error = what
  return nil
end

-- Each of the following returns the position after what it took, or
-- nil to stop: to wait for self.need bytes, or after self:fail.

-- Where the line at pos ends (the position of sep).
function Parser:line_end(s, pos, sep, what)
  local eol = find(s, sep, pos, true)
  if eol then
    return eol
  elseif #s - pos >= MAX_INLINE then -- longer than Redis takes
    return self:fail(what)
  end
  self.need = #s + 1
  return nil
end

-- A line of words: "\n" ends it, a "\r" before is dropped. Also returns
-- the words, if there are any.
function Parser:inline(s, pos)
  local eol = self:line_end(s, pos, "\n", "too big inline request")
  if not eol then
    return nil
  end
  local argv = {}
  local line = sub(s, pos, byte(s, eol - 1) == 13 and eol - 2 or eol - 1)
  for word in line:gmatch("[^ \t]+") do
    argv[#argv + 1] = word
  end
  return eol + 1, argv[1] and argv
end

-- The number of the "*count" or "$len" line at pos, at most max; then
-- the position after the line.
function Parser:header(s, pos, what, max)
  local eol = self:line_end(s, pos, "\r\n",
                            "too big " .. what .. " count string")
  if not eol then
    return nil
  end
  local n = to_int(sub(s, pos + 1, eol - 1))
  if not n or n > max or (n < 0 and what == "bulk") then
    return self:fail(("invalid %s length"):format(
      what == "bulk" and "bulk" or "multibulk"))
  end
  return n, eol + 2
end

-- An array's "*count\r\n": its bulk strings follow (none: no request).
function Parser:count(s, pos)
  local count, at = self:header(s, pos, "mbulk", MAX_ARGS)
  if count and count > 0 then
    self.argv, self.size = {}, count
  end
  return at
end

-- A bulk string of the array under way ("$len\r\nvalue\r\n"). Also
-- returns the array's strings, if it was the last.
function Parser:bulk(s, pos)
  if byte(s, pos) ~= 36 then -- "$"
    return self:fail(("expected '$', got '%s'"):format(sub(s, pos, pos)))
  end
  local len, at = self:header(s, pos, "bulk", MAX_BULK)
  if not len then
    return nil
  end
  local stop = at + len - 1 -- the value's last byte
  if stop + 2 > #s then
    self.need = stop + 2 -- its CRLF
    return nil
  end
  local argv = self.argv
  argv[#argv + 1] = sub(s, at, stop)
  if #argv < self.size then
    return stop + 3
  end
  self.argv = nil
  return stop + 3, argv
end

return { OK = OK, NIL = NIL, MAX_INT = MAX_INT, MIN_INT = MIN_INT,
         bulk = bulk, int = int, err = err, array = array, push3 = push3,
         to_int = to_int, parser = parser }
