--- tapio.util (internal): what the modules of the Lua layer share:
-- argument checks that raise at the caller's line, as the C methods do,
-- the cancellation error, and pack/unpack for both Lua flavours.
local core = require "tapio.core"

-- Functions the `tapio` table also holds live in M.api, not in M itself:
-- Lua 5.4 names a function in a traceback after the first loaded module
-- that holds it, so each must be in one module's table only ("tapio").
local M = { api = {} }

M.unpack = table.unpack or unpack
M.pack = table.pack or function(...)
  return { n = select("#", ...), ... }
end

local loop_mt = core.loop_metatable
M.loop_mt, M.server_mt = loop_mt, core.server_metatable

-- What tapio's C side calls a value's type in its errors.
function M.typename(v)
  if v ~= v then -- a number that is none: say so (not "got number")
    return "NaN"
  end
  local mt = getmetatable(v)
  local name = type(mt) == "table" and rawget(mt, "__name")
  return type(name) == "string" and name or type(v)
end

-- nil, or words saying why table t is no list: a map, or holes.
M.not_a_list = core._not_a_list

-- The length of the valid UTF-8 sequence that starts at s[i], or nil.
function M.utf8_at(s, i)
  local c = s:byte(i)
  local n, lo, hi -- continuation bytes; the first one's range
  if c >= 0xC2 and c <= 0xDF then n, lo, hi = 1, 0x80, 0xBF
  elseif c == 0xE0 then n, lo, hi = 2, 0xA0, 0xBF
  elseif c == 0xED then n, lo, hi = 2, 0x80, 0x9F -- no surrogates
  elseif c >= 0xE1 and c <= 0xEF then n, lo, hi = 2, 0x80, 0xBF
  elseif c == 0xF0 then n, lo, hi = 3, 0x90, 0xBF
  elseif c >= 0xF1 and c <= 0xF3 then n, lo, hi = 3, 0x80, 0xBF
  elseif c == 0xF4 then n, lo, hi = 3, 0x80, 0x8F
  else return nil end
  for k = 1, n do
    local b = s:byte(i + k)
    if not b or b < lo or b > hi then
      return nil
    end
    lo, hi = 0x80, 0xBF
  end
  return n + 1
end

-- Text a terminal shows as it is: valid UTF-8 without control bytes
-- other than tab, newline and carriage return.
function M.plain_text(s)
  local i = s:find("[%z\1-\8\11\12\14-\31\127-\255]")
  while i do
    local n = s:byte(i) >= 0x80 and M.utf8_at(s, i)
    if not n then
      return false
    end
    i = s:find("[%z\1-\8\11\12\14-\31\127-\255]", i + n)
  end
  return true
end

-- Argument checks of the methods written in Lua raise at the caller of
-- the method (level 3, unless given), as the C methods do.
function M.check_self(v, mt, fn, level)
  if getmetatable(v) ~= mt then
    error(("tapio: %s: bad self (%s expected, got %s)")
      :format(fn, mt.__name, M.typename(v)), level or 3)
  end
end

--- The running loop, for fn (a function of the tapio table, named in
-- the error): none raises at fn's caller (level 3, unless given).
function M.running_loop(fn, level)
  local loop = core.get_running_loop()
  if not loop then
    error(("tapio: %s: no running event loop"):format(fn), level or 3)
  end
  return loop
end

--- A class for objects written in Lua: a metatable that is its own
-- __index, named for error messages, and the check of its methods' self
-- (check(v, fn) raises at the method's caller).
function M.class(name)
  local cls = { __name = name }
  cls.__index = cls
  return cls, function(v, fn)
    M.check_self(v, cls, fn, 4)
  end
end

function M.check_loop(loop, fn)
  M.check_self(loop, loop_mt, fn, 4)
  if loop:is_closed() then
    error(("tapio: %s: the loop is closed"):format(fn), 3)
  end
end

function M.check_callable(f, fn, n, name, level)
  local mt = type(f) ~= "function" and getmetatable(f)
  if type(f) ~= "function" and not (type(mt) == "table" and mt.__call) then
    error(("tapio: %s: bad argument #%d '%s' (function expected, got %s)")
      :format(fn, n, name, type(f)), level or 3)
  end
end

local ECANCELED = core.errors.ECANCELED

--- A cancellation error: what awaiting a cancelled future raises.
function M.api.cancelled_error(message)
  return core.error(ECANCELED, message or "cancelled")
end

function M.api.is_cancelled(err)
  return type(err) == "table" and getmetatable(err) == core.error_metatable
    and err.code == ECANCELED
end
--- "tapio: fn: bad argument #n 'name' (msg)", raised at level (default
-- 4: the user's line, from a check the api function calls; 3 from the
-- api function itself).
function M.argerror(fn, n, name, msg, level)
  error(("tapio: %s: bad argument #%d '%s' (%s)"):format(fn, n, name, msg),
    level or 4)
end

--- An error value (code, name, message, printing as "message (name)")
-- named as asyncio names the exception (QueueFull, IncompleteReadError,
-- ExceptionGroup...), with fields (a table, or nil) copied in.
function M.named_error(code, name, message, fields)
  local e = core.error(code, message)
  e.name = name
  for k, v in pairs(fields or {}) do
    e[k] = v
  end
  return e
end

function M.safe_tostring(v)
  local ok, s = pcall(tostring, v)
  return ok and s or "(error object is a " .. type(v) .. " value)"
end


return M
