-- A key-value server speaking Redis's wire protocol (RESP2), so that
-- redis-cli, redis-benchmark and any Redis client library can drive it.
-- Strings and lists, expiry, pub/sub; one database, nothing saved.
--
-- Usage: tapio examples/resp_server.lua [--pubsub-limit BYTES]
--                                       [--unix PATH | [HOST] PORT]
--        (127.0.0.1 6379; prints "Serving on ..." once it listens;
--        SIGTERM or Ctrl-C closes it). Then: redis-cli -p 6379 PING.
-- Spec: spec/resp_spec.lua (redis-cli, redis-benchmark, a Lua peer and
-- the virtual clock of tapio.testing).
--
-- Beside it: resp_wire.lua (the replies, the request parser),
-- resp_store.lua (the keyspace, expiry on the loop's timers) and
-- resp_commands.lua (what each command does). Here: a client's
-- connection (flow control, pub/sub delivery), the server, the program.
--
-- Choices:
-- - A plain Protocol, not a BufferedProtocol: every key, value and
--   argument must become a Lua string anyway, and data_received's string
--   goes to the parser without another copy (a tapio.buffer would be
--   copied out with buf:sub just the same). A request may be split at
--   any byte (see resp_wire.lua).
-- - Replies to everything one read brought (pipelining: redis-benchmark
--   -P 16 sends 16 requests a read) go out in one write, or one per
--   64 KiB of replies.
-- - A client that sends requests but does not read the replies: once its
--   write buffer passes the high-water mark (pause_writing), the server
--   stops reading its requests, and running those it has read, until the
--   buffer drains (resume_writing), so what waits for it stays under
--   the mark plus 64 KiB or one reply.
-- - A subscriber that does not read cannot be slowed down that way: the
--   publishers are other clients. As Redis's client-output-buffer-limit
--   for pubsub (32mb 8mb 60), it is disconnected once more than
--   --pubsub-limit bytes (32 MiB) wait for it, or once more than 8 MiB
--   have waited for 60 seconds on end: while subscribed, 8 MiB is its
--   transport's high-water mark and low one, so pause_writing starts
--   that timer and resume_writing stops it. Each drop is printed.
-- - Not there: SCAN (KEYS is), PSUBSCRIBE, SELECT (one database), INFO,
--   transactions, RESP3 (see resp_commands.lua).
local tapio = require "tapio"

if ... ~= "resp_server" then -- a program: its modules are beside it
  package.path = (arg[0]:match("^(.*/)") or "./") .. "?.lua;" .. package.path
end
local wire = require "resp_wire"
local resp_store = require "resp_store"
local commands = require "resp_commands"

local concat = table.concat
local err = wire.err

local FLUSH_AT = 64 * 1024         -- replies written before the read's end
local PUBSUB_HARD = 32 * 1024 * 1024
local PUBSUB_SOFT = 8 * 1024 * 1024
local PUBSUB_SOFT_SECONDS = 60

-- A client ----------------------------------------------------------------

local Client = {}
Client.__index = Client

function Client:connection_made(transport)
  self.transport = transport
end

function Client:connection_lost()
  self:unsubscribe_all()
end

function Client:data_received(data)
  self.requests:feed(data)
  self:run_requests()
end

-- Runs the whole requests that came, until none is left, or it pauses
-- (the replies wait: resume_writing goes on), or QUIT; then writes the
-- replies.
function Client:run_requests()
  while not (self.quitting or self.paused) do
    local argv, e = self.requests:next()
    if not argv then
      if e then -- its reply, then the connection closes, as Redis's
        self.quitting = true
        self:reply(err("ERR Protocol error: " .. e))
      end
      break
    end
    self:reply(commands.run(self, argv))
  end
  self:flush()
end

function Client:flush()
  local out = self.out
  if #out > 0 then
    self.out, self.out_size = {}, 0
    self.transport:write(concat(out)) -- may pause_writing
  end
  if self.quitting then
    self.transport:close()
  end
end

-- Queues a reply; written with the others at the read's end, or once
-- they come to FLUSH_AT.
function Client:reply(reply)
  local out = self.out
  out[#out + 1] = reply
  self.out_size = self.out_size + #reply
  if self.out_size >= FLUSH_AT then
    self:flush()
  end
end

-- Flow control: stop taking requests while the replies wait; a
-- subscriber may wait over its soft limit only so long.
function Client:pause_writing()
  self.paused = true
  self.transport:pause_reading()
  if self.nsubs > 0 and not self.soft_timer then
    self.soft_timer = self.transport:get_loop():call_later(
      self.server.soft_seconds, self.drop, self,
      ("over %d bytes for %g s"):format(self.server.soft_limit,
                                        self.server.soft_seconds))
  end
end

function Client:resume_writing()
  self.paused = false
  self.transport:resume_reading()
  self:cancel_soft_timer()
  self:run_requests() -- those left when it paused
end

function Client:cancel_soft_timer()
  if self.soft_timer then
    self.soft_timer:cancel()
    self.soft_timer = nil
  end
end

function Client:subscribe(name)
  if self.subs[name] then
    return
  end
  local subs = self.server.channels[name] or {}
  self.server.channels[name] = subs
  subs[self] = true
  self.subs[name] = true
  self.nsubs = self.nsubs + 1
  if self.nsubs == 1 then -- paused over the soft limit, resumed under it
    local soft = self.server.soft_limit
    self.transport:set_write_buffer_limits(soft, soft)
  end
end

function Client:unsubscribe(name)
  if not self.subs[name] then
    return
  end
  local channels = self.server.channels
  channels[name][self] = nil
  if next(channels[name]) == nil then
    channels[name] = nil
  end
  self.subs[name] = nil
  self.nsubs = self.nsubs - 1
  if self.nsubs == 0 then -- an ordinary client again
    self:cancel_soft_timer()
    if not self.transport:is_closing() then
      self.transport:set_write_buffer_limits()
    end
  end
end

function Client:unsubscribe_all()
  for name in pairs(self.subs) do
    self:unsubscribe(name)
  end
  self:cancel_soft_timer()
end

-- Disconnects a subscriber that does not keep up.
function Client:drop(why)
  self.server.log(("dropped subscriber %s: %s (%d bytes waiting)"):format(
    tostring(self.transport:get_extra_info("peername")), why,
    self.transport:get_write_buffer_size()))
  self:unsubscribe_all()
  self.transport:abort()
end

function Client:deliver(message)
  self.transport:write(message)
  if self.transport:get_write_buffer_size() > self.server.hard_limit then
    self:drop(("over %d bytes"):format(self.server.hard_limit))
    return false
  end
  return true
end

-- The server ----------------------------------------------------------------

local Server = {}
Server.__index = Server

-- opts: pubsub_limit, pubsub_soft_limit, pubsub_soft_seconds (bytes,
-- bytes, seconds), log (a function of a line; print).
local function new_server(loop, opts)
  opts = opts or {}
  return setmetatable({
    store = resp_store.new(loop), channels = {},
    hard_limit = opts.pubsub_limit or PUBSUB_HARD,
    soft_limit = opts.pubsub_soft_limit or PUBSUB_SOFT,
    soft_seconds = opts.pubsub_soft_seconds or PUBSUB_SOFT_SECONDS,
    log = opts.log or print,
  }, Server)
end

-- A protocol for one connection.
function Server:client()
  return setmetatable({ server = self, store = self.store, subs = {},
                        nsubs = 0, requests = wire.parser(), out = {},
                        out_size = 0 }, Client)
end

-- Sends message to channel's subscribers; returns how many got it.
function Server:publish(channel, message)
  local subs = self.channels[channel]
  if not subs then
    return 0
  end
  local push = wire.push3("message", channel, message)
  local count = 0
  for c in pairs(subs) do -- a drop removes c: allowed while traversing
    if c:deliver(push) then
      count = count + 1
    end
  end
  return count
end

-- Inside a task: listens (at path, or host and port), serves until the
-- task is cancelled or SIGTERM, then closes every client (after what
-- waits for it, for up to 5 seconds).
local function main(opts)
  local loop = tapio.get_running_loop()
  local state = new_server(loop, opts)
  local factory = function() return state:client() end
  local server
  if opts.unix then
    server = loop:create_unix_server(factory, opts.unix)
  else
    server = loop:create_server(factory, opts.host or "127.0.0.1",
                                opts.port or 6379)
  end
  print("Serving on " .. tostring(server:addresses()[1]))
  loop:add_signal_handler("SIGTERM", server.close, server)
  local ok, e = pcall(server.serve_forever, server)
  server:close()
  server:close_clients()
  if not pcall(tapio.wait_for, function() server:wait_closed() end, 5) then
    server:abort_clients() -- one that does not read holds its close
  end
  if not ok then
    error(e, 0)
  end
end

-- The command line: [--pubsub-limit BYTES] [--unix PATH | [HOST] PORT].
local function parse_args(args)
  local opts, rest, i = {}, {}, 1
  while args[i] do
    if args[i] == "--pubsub-limit" then
      opts.pubsub_limit = assert(tonumber(args[i + 1]),
                                 "--pubsub-limit BYTES")
      i = i + 1
    elseif args[i] == "--unix" then
      opts.unix = assert(args[i + 1], "--unix PATH")
      i = i + 1
    else
      rest[#rest + 1] = args[i]
    end
    i = i + 1
  end
  if #rest == 2 then
    opts.host = rest[1]
  end
  opts.port = tonumber(rest[#rest])
  return opts
end

-- require "resp_server" (its spec, with examples/ on package.path) gets
-- the parts; run as a program, it serves.
if ... == "resp_server" then
  return { main = main, new_server = new_server,
           glob_pattern = commands.glob_pattern, parse_args = parse_args }
end

tapio.run(function()
  main(parse_args(arg))
end)
