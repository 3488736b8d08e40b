-- A caching DNS forwarder: answers queries over UDP and TCP on one address,
-- asks an upstream server over UDP (once more after a timeout, then
-- SERVFAIL; again over TCP when its answer comes truncated), and keeps the
-- answers for their TTL. RFC 1035's wire format, by hand.
-- Usage: tapio examples/dns_forwarder.lua [--timeout S] [--cache N]
--          HOST PORT UPSTREAM_HOST:PORT       (PORT 0: a free one)
-- Prints one line per query; stops on SIGINT or SIGTERM (status 0).
local tapio = require "tapio"

if ... ~= "dns_forwarder" then -- a program: dns_wire.lua is beside it
  package.path = (arg[0]:match("^(.*/)") or "./") .. "?.lua;" .. package.path
end
local wire = require "dns_wire"

local M = {}
local u16, p16, has = wire.u16, wire.p16, wire.has
local QR, TC, SERVFAIL = wire.QR, wire.TC, wire.SERVFAIL

local Forwarder = {}
Forwarder.__index = Forwarder

-- Answers msg (a query, over via "udp" or "tcp", from client: a string
-- for the log) through reply(answer).
function Forwarder:query(msg, client, via, reply)
  local q = wire.parse_query(msg)
  local p = { q = q, client = client, via = via, reply = reply,
              started = self.loop:time(), tries = 0 }
  if not q then -- a query we cannot read gets FORMERR; a response, or
    if #msg < 12 or has(msg:byte(3), QR) then -- less than a header: none
      return self:log(p, "ignored")
    end
    reply(wire.error_answer(msg, nil, wire.FORMERR))
    return self:log(p, "formerr")
  end
  local hit = self:cached(q)
  if hit then
    reply(self:fit(hit, via, q))
    return self:log(p, "hit")
  end
  repeat -- the upstream id: two clients may both use the same one
    p.id = math.random(0, 0xFFFF)
  until not self.pending[p.id]
  self.pending[p.id] = p
  p.query = p16(p.id) .. msg:sub(3)
  self:send(p)
end

-- Sends p's query upstream, and again after a timeout; then SERVFAIL.
function Forwarder:send(p)
  p.tries = p.tries + 1
  self.upstream:sendto(p.query)
  p.timer = self.loop:call_later(self.timeout, function()
    if p.tries < 2 then
      self:send(p)
    else
      self:answer(p, wire.error_answer(p.q.msg, p.q, SERVFAIL))
    end
  end)
end

-- The upstream's datagram: the answer to a query in flight, or ignored.
function Forwarder:from_upstream(msg)
  local p = #msg >= 12 and self.pending[u16(msg, 1)]
  if not p or p.tcp or not wire.answers(msg, p.id, p.q.question) then
    return -- one too late, or for no query of ours
  end
  p.timer:cancel()
  if has(msg:byte(3), TC) then
    p.tcp = self.loop:create_task(self.ask_tcp, self, p)
    return
  end
  self:answer(p, msg)
end

-- A message with its 2-byte length from reader; nil at the end.
local function read_message(reader)
  local ok, msg = pcall(function()
    return reader:readexactly(u16(reader:readexactly(2), 1))
  end)
  if not ok and tapio.is_cancelled(msg) then
    error(msg, 0)
  end
  return ok and msg or nil
end

-- p's query over a TCP connection of its own: the answer, or nil.
function Forwarder:exchange_tcp(p)
  local reader, writer = tapio.open_connection(self.up_host, self.up_port)
  self.connections[writer] = true
  writer:write(p16(#p.query) .. p.query)
  local ok, msg = pcall(read_message, reader)
  self.connections[writer] = nil
  writer:close()
  if not ok then
    error(msg, 0) -- cancelled
  end
  return msg
end

-- Asks p's query again over TCP (its answer was truncated), then answers.
function Forwarder:ask_tcp(p)
  local ok, msg = pcall(tapio.timeout, 2 * self.timeout, self.exchange_tcp,
                        self, p)
  if not ok and tapio.is_cancelled(msg) then
    error(msg, 0) -- by stop(): nobody to answer
  end
  if not (ok and msg and wire.answers(msg, p.id, p.q.question)) then
    msg = wire.error_answer(p.q.msg, p.q, SERVFAIL)
  end
  self:answer(p, msg)
end

-- Answers p's client with msg (its id restored), keeps it, logs it.
function Forwarder:answer(p, msg)
  self.pending[p.id] = nil
  msg = p.q.id .. msg:sub(3)
  local rcode = msg:byte(4) % 16
  if rcode == wire.NOERROR or rcode == wire.NXDOMAIN then
    self:store(p.q, msg)
  end
  p.reply(self:fit(msg, p.via, p.q))
  self:log(p, rcode == SERVFAIL and "servfail" or "miss")
end

-- msg as it may go to a client over via: a UDP answer over 512 bytes is
-- cut short, TC set (the client asks again over TCP).
function Forwarder:fit(msg, via, q)
  if via ~= "udp" or #msg <= wire.UDP_MAX then
    return msg
  end
  return wire.truncated(msg, #q.question, wire.UDP_MAX)
end

-- Keeps msg for its smallest TTL (an answer with none is not kept).
function Forwarder:store(q, msg)
  local list = wire.records(msg, #q.question)
  local ttl
  for _, r in ipairs(list or {}) do
    if r.type ~= wire.OPT then
      ttl = math.min(ttl or math.huge, wire.u32(msg, r.ttl_at))
    end
  end
  if not ttl or ttl == 0 then
    return
  end
  if not self.cache[q.key] and self.size >= self.max_entries then
    self:evict()
  end
  if not self.cache[q.key] then
    self.size = self.size + 1
  end
  self.cache[q.key] = { msg = msg, records = list, stored = self.loop:time(),
                        expires = self.loop:time() + ttl }
end

-- Drops the entry that expires first (the expired ones first of all).
function Forwarder:evict()
  local first
  for key, e in pairs(self.cache) do
    if not first or e.expires < self.cache[first].expires then
      first = key
    end
  end
  self.cache[first] = nil
  self.size = self.size - 1
end

-- The cached answer to q (with q's id, q's question as q spells it and
-- the TTLs aged), or nil.
function Forwarder:cached(q)
  local e = self.cache[q.key]
  local now = self.loop:time()
  if e and now >= e.expires then
    self.cache[q.key], self.size = nil, self.size - 1
    e = nil
  end
  if not e then
    return nil
  end
  local msg = q.id .. e.msg:sub(3, 12) .. q.question
    .. e.msg:sub(13 + #q.question)
  return wire.aged(msg, e.records, math.floor(now - e.stored))
end

function Forwarder:log(p, how)
  local q = p.q or { name = "-", type = "-" }
  self.print(("%s %s %s %s %s %.1f ms"):format(p.client, p.via, q.name,
    q.type, how, (self.loop:time() - p.started) * 1000))
end

-- The endpoint's protocols.
local Listener, Upstream = {}, {}
Listener.__index, Upstream.__index = Listener, Upstream

function Listener:connection_made(transport)
  self.transport = transport
end

function Listener:datagram_received(data, addr)
  self.forwarder:query(data, addr.host .. ":" .. addr.port, "udp",
    function(answer)
      if not self.transport:is_closing() then
        self.transport:sendto(answer, addr)
      end
    end)
end

function Upstream:datagram_received(data)
  self.forwarder:from_upstream(data)
end

function Upstream:error_received(err) -- e.g. nothing listens upstream
  self.forwarder.print("upstream: " .. tostring(err))
end

-- One TCP client: its queries, each with its 2-byte length, answered in
-- the order the answers come; closed once it ends and all are answered.
function Forwarder:serve_tcp(reader, writer)
  local peer = writer:get_extra_info("peername")
  local client, waiting, ended = peer.host .. ":" .. peer.port, 0, false
  local function reply(answer)
    if not writer:is_closing() then
      writer:write(p16(#answer) .. answer)
    end
    waiting = waiting - 1
    if ended and waiting == 0 then
      writer:close()
    end
  end
  for msg in read_message, reader do
    waiting = waiting + 1
    self:query(msg, client, "tcp", reply)
  end
  ended = true
  if waiting == 0 then
    writer:close()
  end
end

--- M.start(cfg) (in a task): serves on cfg.host, cfg.port (0: a free
-- port, the same for UDP and TCP), forwarding to cfg.upstream
-- ("host:port"); cfg.timeout (seconds, 1), cfg.cache (entries, 1000),
-- cfg.print (print). Returns the forwarder: fwd.port, fwd:stop().
function M.start(cfg)
  local host, port = cfg.upstream:match("^%[?(.-)%]?:(%d+)$")
  assert(host, "upstream: HOST:PORT expected")
  local fwd = setmetatable({ loop = tapio.get_running_loop(),
    up_host = host, up_port = tonumber(port), timeout = cfg.timeout or 1,
    max_entries = cfg.cache or 1000, print = cfg.print or print,
    pending = {}, cache = {}, size = 0, connections = {} }, Forwarder)
  fwd.upstream = fwd.loop:create_datagram_endpoint(function()
    return setmetatable({ forwarder = fwd }, Upstream)
  end, { remote_addr = { fwd.up_host, fwd.up_port } })
  repeat -- port 0: UDP's free port may be taken for TCP; then another
    fwd.udp = fwd.loop:create_datagram_endpoint(function()
      return setmetatable({ forwarder = fwd }, Listener)
    end, { local_addr = { cfg.host, cfg.port } })
    fwd.port = fwd.udp:get_extra_info("sockname").port
    local ok, server = pcall(tapio.start_server, function(reader, writer)
      fwd:serve_tcp(reader, writer)
    end, cfg.host, fwd.port)
    if not ok and (cfg.port ~= 0 or server.code ~= tapio.EADDRINUSE) then
      error(server, 0)
    end
    fwd.tcp = ok and server or fwd.udp:close()
  until fwd.tcp
  return fwd
end

-- Closes both endpoints, the upstream's, the TCP clients and every
-- upstream connection; queries in flight are dropped.
function Forwarder:stop()
  self.stopping = true
  self.tcp:close()
  self.tcp:close_clients()
  for _, p in pairs(self.pending) do
    if p.timer then p.timer:cancel() end
    if p.tcp then p.tcp:cancel() end
  end
  for writer in pairs(self.connections) do
    writer:close()
  end
  self.udp:close()
  self.upstream:close()
  self.tcp:wait_closed()
end

if ... == "dns_forwarder" then
  return M
end

local cfg, rest = { print = print }, {}
local i = 1
while arg[i] do
  if arg[i] == "--timeout" or arg[i] == "--cache" then
    cfg[arg[i]:sub(3)] = assert(tonumber(arg[i + 1]), arg[i] .. " N")
    i = i + 2
  else
    rest[#rest + 1], i = arg[i], i + 1
  end
end
cfg.host, cfg.port, cfg.upstream = rest[1], tonumber(rest[2]), rest[3]
if not (cfg.port and (cfg.upstream or ""):match(":%d+$")) then
  io.stderr:write("usage: dns_forwarder.lua [--timeout S] [--cache N] "
                  .. "HOST PORT UPSTREAM_HOST:PORT\n")
  os.exit(2)
end

tapio.run(function()
  local fwd = M.start(cfg)
  local stop = tapio.Event()
  local loop = tapio.get_running_loop()
  loop:add_signal_handler("SIGTERM", stop.set, stop)
  loop:add_signal_handler("SIGINT", stop.set, stop)
  local up = fwd.upstream:get_extra_info("sockname")
  print(("listening on %s:%d (udp, tcp); upstream %s:%d from port %d")
    :format(cfg.host, fwd.port, fwd.up_host, fwd.up_port, up.port))
  stop:wait()
  fwd:stop()
  print("stopped")
end)
