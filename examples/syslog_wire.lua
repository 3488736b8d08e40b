-- Syslog messages as they come in datagrams, parsed in plain Lua (5.1
-- to 5.4): RFC 5424's (the syslog protocol: "<PRI>1 TIMESTAMP HOST APP
-- PROCID MSGID [SD] MSG") and RFC 3164's (BSD syslog: "<PRI>Mmm dd
-- hh:mm:ss HOST TAG[PID]: MSG", as logger and the C library send it, and
-- Python's SysLogHandler's bare "<PRI>MSG\0"). No byte of input makes it
-- raise: what does not parse is an error value.
--   local msg, err = wire.parse(datagram)
-- msg: format ("rfc5424" or "rfc3164"), pri, facility, severity (numbers),
-- facility_name, severity_name, version (5424), and, each nil when the
-- message has none (RFC 5424's "-"): timestamp (as written), host, app,
-- procid, msgid, sd (a list of { id = SD-ID, params = { {name, value},
-- ... } }, the values unescaped); and message, a string ("" for none; a
-- trailing NUL or newline and RFC 5424's UTF-8 BOM taken off, utf8 = true
-- after a BOM).
-- err: why it is no syslog message ("PRI out of range 0..191", ...).
local M = {}

M.FACILITIES = { [0] = "kern", "user", "mail", "daemon", "auth", "syslog",
  "lpr", "news", "uucp", "cron", "authpriv", "ftp", "ntp", "audit", "alert",
  "clock", "local0", "local1", "local2", "local3", "local4", "local5",
  "local6", "local7" }
M.SEVERITIES = { [0] = "emerg", "alert", "crit", "err", "warning", "notice",
  "info", "debug" }

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6,
  Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }
local BOM = "\239\187\191"

-- "<PRI>": the value and where the rest starts, or nil and why. No
-- leading zeros (RFC 3164 4.1.1), at most 3 digits, 0..191.
local function pri(s)
  if s == "" then
    return nil, "empty datagram"
  end
  local digits = s:match("^<(%d%d?%d?)>")
  if not digits then
    return nil, s:sub(1, 1) == "<" and "bad PRI: <1 to 3 digits> expected"
                or "no PRI: a syslog message begins with <"
  end
  if #digits > 1 and digits:sub(1, 1) == "0" then
    return nil, "bad PRI: leading zero"
  end
  local value = tonumber(digits)
  if value > 191 then
    return nil, "PRI out of range 0..191"
  end
  return value, #digits + 3
end

local function in_range(v, lo, hi)
  v = tonumber(v)
  return v ~= nil and v >= lo and v <= hi
end

-- RFC 5424 6.2.3's TIMESTAMP: FULL-DATE "T" FULL-TIME, the time's
-- fraction of 1 to 6 digits, "Z" or an offset.
local function valid_5424_time(t)
  local y, mo, d, h, mi, sec, rest = t:match(
    "^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)(.*)$")
  if not y or not (in_range(mo, 1, 12) and in_range(d, 1, 31)
      and in_range(h, 0, 23) and in_range(mi, 0, 59)
      and in_range(sec, 0, 59)) then
    return false
  end
  local frac = rest:match("^%.(%d+)")
  if frac then
    if #frac > 6 then
      return false
    end
    rest = rest:sub(#frac + 2)
  end
  if rest == "Z" then
    return true
  end
  local oh, om = rest:match("^[+-](%d%d):(%d%d)$")
  return oh ~= nil and in_range(oh, 0, 23) and in_range(om, 0, 59)
end

-- A header field of at most max printable US-ASCII characters, or "-".
local function field(value, name, max)
  if value == "-" then
    return true, nil
  end
  if #value > max then
    return false, ("%s longer than %d characters"):format(name, max)
  end
  if value:find("[^\33-\126]") then
    return false, name .. " not printable US-ASCII"
  end
  return true, value
end

-- RFC 5424's SD-NAME: 1 to 32 printable characters but = ] " and space.
local function sd_name(s, i)
  local name = s:match('^[^%c =%]"\128-\255]+', i)
  if not name or #name > 32 then
    return nil
  end
  return name
end

-- A PARAM-VALUE from just after its opening quote at i: the value
-- (\" \\ \] unescaped; a backslash before anything else stays) and the
-- index after the closing quote, or nil.
local function param_value(s, i)
  local out = {}
  while i <= #s do
    local c = s:sub(i, i)
    if c == '"' then
      return table.concat(out), i + 1
    elseif c == "\\" and s:sub(i + 1, i + 1):find('^["\\%]]') then
      out[#out + 1] = s:sub(i + 1, i + 1)
      i = i + 2
    else
      out[#out + 1] = c
      i = i + 1
    end
  end
  return nil
end

-- One SD-ELEMENT at i ("[ID name="value" ...]"): the element and the
-- index after it, or nil and why.
local function sd_element(s, i)
  local id = sd_name(s, i + 1)
  if not id then
    return nil, "bad SD-ID"
  end
  local elem = { id = id, params = {} }
  i = i + 1 + #id
  while s:sub(i, i) == " " do
    local name = sd_name(s, i + 1)
    if not name or s:sub(i + 1 + #name, i + 2 + #name) ~= '="' then
      return nil, "bad SD-PARAM in [" .. id .. "]"
    end
    local value, after = param_value(s, i + 3 + #name)
    if not value then
      return nil, "unterminated PARAM-VALUE in [" .. id .. "]"
    end
    elem.params[#elem.params + 1] = { name, value }
    i = after
  end
  if s:sub(i, i) ~= "]" then
    return nil, "unterminated SD-ELEMENT [" .. id .. "]"
  end
  return elem, i + 1
end

-- STRUCTURED-DATA at i: the list (nil for "-") and the index after it, or
-- nil, nil and why.
local function structured_data(s, i)
  if s:sub(i, i) == "-" then
    return nil, i + 1
  end
  if s:sub(i, i) ~= "[" then
    return nil, nil, "STRUCTURED-DATA: [ or - expected"
  end
  local list = {}
  while s:sub(i, i) == "[" do
    local elem, after = sd_element(s, i)
    if not elem then
      return nil, nil, after
    end
    list[#list + 1] = elem
    i = after
  end
  return list, i
end

-- The MSG part: the BOM off (UTF-8 then), and a trailing NUL or newline.
local function message(msg, text)
  if text:sub(1, 3) == BOM then
    msg.utf8 = true
    text = text:sub(4)
  end
  msg.message = text:gsub("%z$", ""):gsub("\r?\n$", "")
  return msg
end

local function parse_5424(msg, s, i)
  local version, header = s:match("^(%d+) ()", i)
  msg.format, msg.version = "rfc5424", tonumber(version)
  if version ~= "1" then
    return nil, "unknown syslog VERSION " .. version
  end
  local t, host, app, procid, msgid, at = s:match(
    "^(%S+) (%S+) (%S+) (%S+) (%S+) ()", header)
  if not t then
    return nil, "RFC 5424 header: TIMESTAMP HOSTNAME APP-NAME PROCID MSGID "
                .. "expected"
  end
  if t ~= "-" and not valid_5424_time(t) then
    return nil, "bad TIMESTAMP " .. t
  end
  msg.timestamp = t ~= "-" and t or nil
  local ok, v
  for _, f in ipairs({ { "host", host, "HOSTNAME", 255 },
                       { "app", app, "APP-NAME", 48 },
                       { "procid", procid, "PROCID", 128 },
                       { "msgid", msgid, "MSGID", 32 } }) do
    ok, v = field(f[2], f[3], f[4])
    if not ok then
      return nil, v
    end
    msg[f[1]] = v
  end
  local sd, after, why = structured_data(s, at)
  if not after then
    return nil, why
  end
  msg.sd = sd
  if after <= #s and s:sub(after, after) ~= " " then
    return nil, "STRUCTURED-DATA: a space expected before MSG"
  end
  return message(msg, s:sub(after + 1))
end

-- RFC 3164's TIMESTAMP "Mmm dd hh:mm:ss" (the day padded with a space).
local function valid_3164_time(t)
  local mon, d, h, mi, sec = t:match(
    "^(%a%a%a) ([ %d]%d) (%d%d):(%d%d):(%d%d)$")
  return mon ~= nil and MONTHS[mon] ~= nil and in_range(d, 1, 31)
    and in_range(h, 0, 23) and in_range(mi, 0, 59) and in_range(sec, 0, 59)
end

-- A TAG ("app[pid]: " or "app: ") at the start of content, taken into
-- msg; the rest is the message.
local function tag(msg, content)
  local app, procid, rest = content:match("^([%w._/-]+)%[([^%]%s]+)%]: ?(.*)$")
  if not app then
    app, rest = content:match("^([%w._/-]+): ?(.*)$")
  end
  if app and #app <= 48 then
    msg.app, msg.procid, content = app, procid, rest
  end
  return message(msg, content)
end

local function parse_3164(msg, s, i)
  msg.format = "rfc3164"
  local t = s:sub(i, i + 14)
  if not (valid_3164_time(t) and s:sub(i + 15, i + 15) == " ") then
    return tag(msg, s:sub(i)) -- no timestamp: all of it is content
  end
  msg.timestamp = t
  local content = s:sub(i + 16)
  local host, rest = content:match("^(%S+) (.*)$")
  -- a host unless it is the tag already (logger's local form has none)
  if host and not host:find("[:%[]") then
    msg.host, content = host, rest
  end
  return tag(msg, content)
end

--- wire.parse(datagram): the message (a table, see above), or nil and
-- why it is none.
function M.parse(s)
  if type(s) ~= "string" then
    return nil, "a string expected"
  end
  local value, i = pri(s)
  if not value then
    return nil, i
  end
  local msg = { pri = value, facility = math.floor(value / 8),
                severity = value % 8 }
  msg.facility_name = M.FACILITIES[msg.facility]
  msg.severity_name = M.SEVERITIES[msg.severity]
  if s:find("^[1-9]%d?%d? ", i) then
    return parse_5424(msg, s, i)
  end
  return parse_3164(msg, s, i)
end

--- wire.iso_time(msg): the message's timestamp as ISO 8601 writes it, one
-- word: RFC 5424's as it is, RFC 3164's "Oct  1 22:14:15" (no year) as
-- "--10-01T22:14:15"; nil for none.
function M.iso_time(msg)
  local t = msg.timestamp
  if not t or msg.format == "rfc5424" then
    return t
  end
  local mon, d, time = t:match("^(%a%a%a) +(%d+) (.*)$")
  return ("--%02d-%02dT%s"):format(MONTHS[mon], tonumber(d), time)
end

--- wire.sd_text(sd): structured data written back as RFC 5424 has it
-- ("-" for none), its values escaped again.
function M.sd_text(sd)
  if not sd then
    return "-"
  end
  local out = {}
  for _, elem in ipairs(sd) do
    local parts = { "[" .. elem.id }
    for _, p in ipairs(elem.params) do
      parts[#parts + 1] = ('%s="%s"'):format(p[1],
        (p[2]:gsub('["\\%]]', "\\%0")))
    end
    out[#out + 1] = table.concat(parts, " ") .. "]"
  end
  return table.concat(out)
end

return M
