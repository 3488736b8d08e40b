-- The commands of examples/resp_server.lua, as Redis answers them: each
-- a function of the client and the request's arguments that returns the
-- reply (resp_wire.lua's encoding).
--
-- What they use of a client c: c.store (resp_store.lua's), c.subs and
-- c.nsubs (its channels and how many), c.quitting (set by QUIT),
-- c:subscribe(name), c:unsubscribe(name), c.server:publish(channel,
-- message) (how many got it).
--
-- Integers: INCR stops at 2^53 under LuaJIT, whose numbers are doubles.
-- Not there: SCAN (KEYS is), PSUBSCRIBE, SELECT (one database), INFO,
-- transactions, RESP3 (HELLO is an unknown command, so clients that try
-- it fall back to RESP2).
local wire = require "resp_wire"

local find, sub, lower, upper = string.find, string.sub, string.lower,
  string.upper
local concat = table.concat
local OK, NIL, bulk, int, err, array = wire.OK, wire.NIL, wire.bulk,
  wire.int, wire.err, wire.array
local push3, to_int = wire.push3, wire.to_int
local MAX_INT, MIN_INT = wire.MAX_INT, wire.MIN_INT

local PONG = "+PONG\r\n"
local E_INT = "-ERR value is not an integer or out of range\r\n"
local E_SYNTAX = "-ERR syntax error\r\n"
local E_TYPE =
  "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"

-- A glob of Redis's (KEYS, CONFIG GET): * ? [abc] [^a-z] and \x, as a
-- Lua pattern anchored at both ends; nil for one that matches nothing
-- (an empty set).
local function glob_pattern(glob)
  local out, i, n = { "^" }, 1, #glob
  local function literal(c)
    return (c:gsub("%W", "%%%0"))
  end
  while i <= n do
    local c = sub(glob, i, i)
    if c == "\\" and i < n then
      i = i + 1
      out[#out + 1] = literal(sub(glob, i, i))
    elseif c == "*" then
      out[#out + 1] = ".*"
    elseif c == "?" then
      out[#out + 1] = "."
    elseif c == "[" then
      local set = {}
      i = i + 1
      if sub(glob, i, i) == "^" then
        set[1] = "^"
        i = i + 1
      end
      while i <= n and sub(glob, i, i) ~= "]" do
        c = sub(glob, i, i)
        if c == "\\" and i < n then
          i = i + 1
          c = sub(glob, i, i)
        end
        set[#set + 1] = c == "-" and c or literal(c)
        i = i + 1
      end
      if #set == 0 or (#set == 1 and set[1] == "^") then
        return nil
      end
      out[#out + 1] = "[" .. concat(set) .. "]"
    else
      out[#out + 1] = literal(c)
    end
    i = i + 1
  end
  out[#out + 1] = "$"
  return concat(out)
end

-- Commands ---------------------------------------------------------------

-- commands[name] = { fn(client, argv) -> reply, arity }: arity as Redis
-- counts it (the name included; negative: at least that many).
local commands = {}

local function command(name, arity, fn)
  commands[name] = { fn = fn, arity = arity }
end

-- The reply to a command given too many or too few arguments.
local function wrong_args(name)
  return err(("ERR wrong number of arguments for '%s' command")
    :format(name))
end

-- The string at key: value, or nil, or false with the WRONGTYPE reply.
local function get_string(store, key)
  local v = store:get(key)
  if type(v) == "table" then
    return false, E_TYPE
  end
  return v
end

command("ping", -1, function(c, argv)
  if #argv > 2 then
    return wrong_args("ping")
  end
  if c.nsubs > 0 then -- RESP2 in subscribed mode: an array
    return array({ "pong", argv[2] or "" })
  end
  return argv[2] and bulk(argv[2]) or PONG
end)

command("echo", 2, function(_, argv)
  return bulk(argv[2])
end)

command("quit", -1, function(c)
  c.quitting = true
  return OK
end)

command("get", 2, function(c, argv)
  local v, e = get_string(c.store, argv[2])
  return e or (v and bulk(v) or NIL)
end)

-- SET's options after the key and the value, as Redis checks them
-- (each may repeat; the conflicting ones not): a table, or nil and the
-- error reply.
local function set_options(argv)
  local opt, i = {}, 4
  while argv[i] do
    local o = upper(argv[i])
    local unit = o == "EX" and 1000 or o == "PX" and 1
    if unit and argv[i + 1] and not opt.KEEPTTL
       and (opt.unit or unit) == unit then
      opt.ttl, opt.unit = argv[i + 1], unit
      i = i + 1
    elseif (o == "NX" or o == "XX") and (opt.cond or o) == o then
      opt.cond = o
    elseif o == "GET" or (o == "KEEPTTL" and not opt.ttl) then
      opt[o] = true
    else
      return nil, E_SYNTAX
    end
    i = i + 1
  end
  if opt.ttl then
    local n = to_int(opt.ttl)
    if not n then
      return nil, E_INT
    elseif n <= 0 then
      return nil, err("ERR invalid expire time in 'set' command")
    end
    opt.ms = n * opt.unit
  end
  return opt
end

local NO_OPTIONS = {}

-- SET key value [NX|XX] [GET] [EX s|PX ms|KEEPTTL]
command("set", -3, function(c, argv)
  local opt, e = NO_OPTIONS, nil
  if argv[4] then
    opt, e = set_options(argv)
    if not opt then
      return e
    end
  end
  local store, key = c.store, argv[2]
  local old = store:get(key)
  if opt.GET and type(old) == "table" then
    return E_TYPE
  end
  local reply = opt.GET and (old and bulk(old) or NIL) or OK
  if (opt.cond == "NX" and old ~= nil) or (opt.cond == "XX" and old == nil)
  then
    return opt.GET and reply or NIL
  end
  store:set(key, argv[3], opt.KEEPTTL)
  if opt.ms then
    store:expire(key, opt.ms)
  end
  return reply
end)

local function count_keys(c, argv, fn)
  local n = 0
  for i = 2, #argv do
    if fn(c.store, argv[i]) then
      n = n + 1
    end
  end
  return int(n)
end

command("del", -2, function(c, argv)
  return count_keys(c, argv, function(store, key)
    return store:delete(key)
  end)
end)

command("exists", -2, function(c, argv)
  return count_keys(c, argv, function(store, key)
    return store:get(key) ~= nil
  end)
end)

command("mget", -2, function(c, argv)
  local values = {}
  for i = 2, #argv do
    local v = c.store:get(argv[i])
    values[i - 1] = type(v) == "string" and v
  end
  return array(values, #argv - 1)
end)

-- INCR, DECR, INCRBY, DECRBY: the value at key plus by.
local function add(c, key, by)
  local v, e = get_string(c.store, key)
  if e then
    return e
  end
  local n = to_int(v or "0")
  if not n then
    return E_INT
  end
  if (by > 0 and n > MAX_INT - by) or (by < 0 and n < MIN_INT - by) then
    return err("ERR increment or decrement would overflow")
  end
  n = n + by
  c.store:set(key, ("%d"):format(n), true)
  return int(n)
end

command("incr", 2, function(c, argv) return add(c, argv[2], 1) end)
command("decr", 2, function(c, argv) return add(c, argv[2], -1) end)

-- A command of a key and an integer: fn(c, key, n), or E_INT.
local function with_int(fn)
  return function(c, argv)
    local n = to_int(argv[3])
    if not n then
      return E_INT
    end
    return fn(c, argv[2], n)
  end
end

command("incrby", 3, with_int(add))
command("decrby", 3, with_int(function(c, key, n)
  if n == MIN_INT then -- its negation does not exist
    return err("ERR decrement would overflow")
  end
  return add(c, key, -n)
end))

command("keys", 2, function(c, argv)
  local pattern = glob_pattern(argv[2])
  return array(pattern and c.store:keys(pattern) or {})
end)

command("dbsize", 1, function(c)
  return int(c.store.size)
end)

command("type", 2, function(c, argv)
  local v = c.store:get(argv[2])
  return v == nil and "+none\r\n"
    or type(v) == "table" and "+list\r\n" or "+string\r\n"
end)

local function flush(c, argv)
  local how = argv[2] and upper(argv[2])
  if #argv > 2 or (how and how ~= "ASYNC" and how ~= "SYNC") then
    return E_SYNTAX
  end
  c.store:flush()
  return OK
end
command("flushall", -1, flush)
command("flushdb", -1, flush)

local function expire_in(unit)
  return with_int(function(c, key, n)
    if c.store:get(key) == nil then
      return int(0)
    end
    c.store:expire(key, n * unit)
    return int(1)
  end)
end
command("expire", 3, expire_in(1000))
command("pexpire", 3, expire_in(1))

command("pttl", 2, function(c, argv)
  return int(c.store:pttl(argv[2]))
end)

command("ttl", 2, function(c, argv)
  local ms = c.store:pttl(argv[2])
  return int(ms < 0 and ms or math.floor((ms + 500) / 1000))
end)

command("persist", 2, function(c, argv)
  return int(c.store:get(argv[2]) ~= nil and c.store:persist(argv[2])
    and 1 or 0)
end)

-- Lists: { first =, last =, [first..last] = values }.

-- The list at key (made if create), or nil, or false and WRONGTYPE.
local function get_list(store, key, create)
  local v = store:get(key)
  if type(v) == "string" then
    return false, E_TYPE
  end
  if not v and create then
    v = { first = 1, last = 0 }
    store:set(key, v)
  end
  return v
end

local function push(left)
  return function(c, argv)
    local list, e = get_list(c.store, argv[2], true)
    if e then
      return e
    end
    for i = 3, #argv do
      if left then
        list.first = list.first - 1
        list[list.first] = argv[i]
      else
        list.last = list.last + 1
        list[list.last] = argv[i]
      end
    end
    return int(list.last - list.first + 1)
  end
end
command("lpush", -3, push(true))
command("rpush", -3, push(false))

local function pop(left)
  return function(c, argv)
    local list, e = get_list(c.store, argv[2])
    if not list then
      return e or NIL
    end
    local at = left and list.first or list.last
    local v = list[at]
    list[at] = nil
    if left then
      list.first = at + 1
    else
      list.last = at - 1
    end
    if list.first > list.last then
      c.store:delete(argv[2])
    end
    return bulk(v)
  end
end
command("lpop", 2, pop(true))
command("rpop", 2, pop(false))

command("llen", 2, function(c, argv)
  local list, e = get_list(c.store, argv[2])
  return e or int(list and list.last - list.first + 1 or 0)
end)

command("lrange", 4, function(c, argv)
  local from, to = to_int(argv[3]), to_int(argv[4])
  if not from or not to then
    return E_INT
  end
  local list, e = get_list(c.store, argv[2])
  if not list then
    return e or "*0\r\n"
  end
  local len = list.last - list.first + 1
  from = from < 0 and math.max(len + from, 0) or from
  to = math.min(to < 0 and len + to or to, len - 1)
  local out = {}
  for i = from, to do
    out[#out + 1] = list[list.first + i]
  end
  return array(out)
end)

-- What CONFIG GET answers: this server saves nothing, as a Redis set
-- with `save ""` and `appendonly no` (redis-benchmark asks for both).
local CONFIG = { save = "", appendonly = "no", databases = "1" }

command("config", -2, function(_, argv)
  if lower(argv[2]) ~= "get" then
    return err("ERR unknown subcommand '" .. sub(argv[2], 1, 128)
      .. "'. Try CONFIG HELP.")
  elseif #argv < 3 then
    return wrong_args("config|get")
  end
  local out = {}
  for name, value in pairs(CONFIG) do
    for i = 3, #argv do
      local pattern = glob_pattern(lower(argv[i]))
      if pattern and find(name, pattern) then
        out[#out + 1] = name
        out[#out + 1] = value
        break
      end
    end
  end
  return array(out)
end)

-- redis-cli's interactive mode asks for COMMAND DOCS: no hints.
command("command", -1, function()
  return "*0\r\n"
end)

-- Pub/sub ----------------------------------------------------------------

command("subscribe", -2, function(c, argv)
  local out = {}
  for i = 2, #argv do
    c:subscribe(argv[i])
    out[#out + 1] = push3("subscribe", argv[i], c.nsubs)
  end
  return concat(out)
end)

command("unsubscribe", -1, function(c, argv)
  local names = {}
  if #argv > 1 then
    for i = 2, #argv do
      names[#names + 1] = argv[i]
    end
  else
    for name in pairs(c.subs) do
      names[#names + 1] = name
    end
    if #names == 0 then
      return push3("unsubscribe", nil, 0)
    end
  end
  local out = {}
  for i, name in ipairs(names) do
    c:unsubscribe(name)
    out[i] = push3("unsubscribe", name, c.nsubs)
  end
  return concat(out)
end)

command("publish", 3, function(c, argv)
  return int(c.server:publish(argv[2], argv[3]))
end)

-- What a subscribed client may still run (RESP2).
local IN_SUBSCRIBED = { subscribe = true, unsubscribe = true, ping = true,
                        quit = true }

-- The reply to the request argv of the client c: the command's, or
-- Redis's error for an unknown command, wrong arguments or a command a
-- subscribed client may not run.
local function run(c, argv)
  local name = lower(argv[1])
  local cmd = commands[name]
  if not cmd then -- Redis quotes the arguments' first 128 bytes
    local args = ""
    for i = 2, #argv do
      if #args >= 128 then break end
      args = args .. "'" .. sub(argv[i], 1, 128 - #args) .. "' "
    end
    return err("ERR unknown command '" .. sub(argv[1], 1, 128)
      .. "', with args beginning with: " .. args)
  elseif (cmd.arity > 0 and #argv ~= cmd.arity) or #argv < -cmd.arity then
    return wrong_args(name)
  elseif c.nsubs > 0 and not IN_SUBSCRIBED[name] then
    return err(("ERR Can't execute '%s': only (P|S)SUBSCRIBE / "
      .. "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
      :format(name))
  end
  return cmd.fn(c, argv)
end

return { run = run, glob_pattern = glob_pattern }
