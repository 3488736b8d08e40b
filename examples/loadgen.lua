-- A load generator: N workers (tasks of a TaskGroup), each keeping one
-- connection to HOST:PORT and making requests one after another, each
-- answer awaited under a deadline (wait_for); a worker whose connection
-- was reset, ended or timed out closes it, waits for its end, and
-- connects again. At the end (every request made, --seconds passed, or
-- Ctrl-C) every worker is cancelled and the report printed: what became
-- of the requests, and the latency of those answered.
--
-- The protocol: a request is a message of --size bytes (its number,
-- padded with dots) after its length (4 bytes, big-endian); the server
-- sends it back the same way (an echo). With --line the request is the
-- message and "\n", answered by the same line.
--
-- Usage: tapio examples/loadgen.lua HOST PORT [--conns N]
--          [--requests M | --seconds S] [--timeout T] [--tls CAFILE]
--          [--line] [--size BYTES]
--   --conns N      workers, one connection each (default 10)
--   --requests M   requests in all (default 1000), or
--   --seconds S    requests until S seconds have passed
--   --timeout T    seconds a connect, or an answer, may take (default 1)
--   --tls CAFILE   over TLS, trusting the certificates of CAFILE
--
-- Each request ends one way: ok (its answer came, and was right),
-- timeout, reset (ECONNRESET, EPIPE), eof (the server closed first),
-- refused (ECONNREFUSED), other (a wrong answer, a TLS error...). A
-- request whose connect failed counts as that failure; one in flight
-- when the run was cut short counts as none.
local tapio = require "tapio"

local M = {}

-- ---- The wire --------------------------------------------------------------

local function be32(n) -- n as 4 bytes, big-endian
  return string.char(math.floor(n / 16777216) % 256,
                     math.floor(n / 65536) % 256, math.floor(n / 256) % 256,
                     n % 256)
end

local function from_be32(s)
  local a, b, c, d = s:byte(1, 4)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

-- Each protocol frames a message, and reads one back (raising
-- IncompleteReadError, code tapio.EOF, when the server closes first).
M.framed = {
  frame = function(message)
    return be32(#message) .. message
  end,
  read = function(reader)
    return reader:readexactly(from_be32(reader:readexactly(4)))
  end,
}

M.lines = {
  frame = function(message)
    return message .. "\n"
  end,
  read = function(reader)
    return reader:readuntil("\n"):sub(1, -2)
  end,
}

-- Request n's message: its number, padded with dots to cfg.size bytes
-- (the dots are made once: a string.rep of megabytes per request would
-- cost more than sending them).
local function message(n, cfg)
  local s = tostring(n)
  return s .. cfg.padding:sub(#s + 1)
end

-- ---- What became of the requests -------------------------------------------

M.KINDS = { "ok", "timeout", "reset", "eof", "refused", "other" }

local BY_CODE = {
  [tapio.ETIMEDOUT] = "timeout", [tapio.ECONNRESET] = "reset",
  [tapio.EPIPE] = "reset", [tapio.EOF] = "eof",
  [tapio.ECONNREFUSED] = "refused",
}

-- The kind of a failure: an error value's code says it.
function M.kind(err)
  return type(err) == "table" and BY_CODE[err.code] or "other"
end

local Stats = {}
Stats.__index = Stats

--- loadgen.new_stats(cfg): the counts of a run of cfg, all 0.
function M.new_stats(cfg)
  local counts = {}
  for _, kind in ipairs(M.KINDS) do
    counts[kind] = 0
  end
  return setmetatable({ counts = counts, latencies = {}, connects = 0,
                        taken = 0, limit = cfg.requests, elapsed = 0 },
                      Stats)
end

-- The number of the next request to make, or nil once all are taken.
function Stats:take()
  if self.limit and self.taken >= self.limit then
    return nil
  end
  self.taken = self.taken + 1
  return self.taken
end

function Stats:answered(seconds)
  self.counts.ok = self.counts.ok + 1
  self.latencies[#self.latencies + 1] = seconds
end

function Stats:failed(err)
  local kind = M.kind(err)
  self.counts[kind] = self.counts[kind] + 1
  if kind == "other" and not self.other then
    self.other = tostring(err) -- the first one, for the report
  end
end

-- The q-quantile (0 < q <= 1) of a sorted list: its nearest rank.
local function quantile(sorted, q)
  return sorted[math.max(1, math.ceil(q * #sorted))]
end

--- stats:made(): the requests made, whatever became of each.
function Stats:made()
  local n = 0
  for _, kind in ipairs(M.KINDS) do
    n = n + self.counts[kind]
  end
  return n
end

--- loadgen.report(stats): the report, as lines of text.
function M.report(stats)
  local made = stats:made()
  local lines = { ("requests %7d in %.2f s (%.0f a second)"):format(made,
    stats.elapsed, made / math.max(stats.elapsed, 1e-9)) }
  for _, kind in ipairs(M.KINDS) do
    lines[#lines + 1] = ("%-8s %7d"):format(kind, stats.counts[kind])
  end
  if stats.other then
    lines[#lines] = lines[#lines] .. " (the first: " .. stats.other .. ")"
  end
  lines[#lines + 1] = ("connects %7d"):format(stats.connects)
  local sorted = {}
  for i, s in ipairs(stats.latencies) do
    sorted[i] = s
  end
  table.sort(sorted)
  if #sorted > 0 then
    lines[#lines + 1] = ("latency  p50 %.2f ms, p99 %.2f ms"):format(
      quantile(sorted, 0.5) * 1000, quantile(sorted, 0.99) * 1000)
  end
  return table.concat(lines, "\n") .. "\n"
end

-- ---- The workers -----------------------------------------------------------

-- pcall's results, but a cancellation goes on up: a worker counts its
-- failures and carries on, and ends when it is cancelled.
local function unless_cancelled(ok, ...)
  if not ok and tapio.is_cancelled((...)) then
    error((...), 0)
  end
  return ok, ...
end

local function attempt(fn, ...)
  return unless_cancelled(pcall(fn, ...))
end

-- The connect runs in the worker's task (tapio.timeout: no task of its
-- own, as wait_for's function gets); cancelled as it completes, it
-- closes what it made.
local function connect(cfg)
  return tapio.timeout(cfg.timeout, tapio.open_connection, cfg.host,
                       cfg.port, cfg.connect_opts)
end

-- One request: sends it, waits for its answer.
local function exchange(conn, proto, request)
  conn.writer:write(proto.frame(request))
  conn.writer:drain()
  local answer = proto.read(conn.reader)
  if answer ~= request then
    error(("wrong answer to %q: %q"):format(request:sub(1, 20),
                                            answer:sub(1, 20)), 0)
  end
end

-- Aborts a connection (what it holds unsent is dropped) and waits for
-- its end, so that nothing of it is left behind.
local function abort(writer)
  writer.transport:abort()
  pcall(writer.wait_closed, writer) -- raises how it ended: it has
end

-- Closes a connection and waits for its end. The close flushes, which a
-- peer that reads nothing would hold up forever (a TLS shutdown waits
-- for the peer's too): after timeout seconds, or when cancelled
-- meanwhile, it aborts. A cancellation goes on once the connection has
-- ended.
local function hang_up(writer, timeout)
  writer:close()
  local ok, err = pcall(tapio.timeout, timeout, writer.wait_closed, writer)
  if not ok and (M.kind(err) == "timeout" or tapio.is_cancelled(err)) then
    abort(writer)
  end
  unless_cancelled(ok, err)
end

-- The requests of one worker, on conn (conn.reader and conn.writer: the
-- connection, while one is open).
local function requests(cfg, stats, conn)
  local loop = tapio.get_running_loop()
  local n = stats:take()
  while n do
    if not conn.writer then
      local ok, reader, writer = attempt(connect, cfg)
      if ok then
        conn.reader, conn.writer = reader, writer
        stats.connects = stats.connects + 1
      else
        stats:failed(reader)
      end
    end
    if conn.writer then
      local request, started = message(n, cfg), loop:time()
      local ok, err = attempt(tapio.wait_for, function()
        exchange(conn, cfg.protocol, request)
      end, cfg.timeout)
      if ok then
        stats:answered(loop:time() - started)
      else
        stats:failed(err)
        local writer = conn.writer
        conn.reader, conn.writer = nil, nil
        hang_up(writer, cfg.timeout)
      end
    end
    n = stats:take()
  end
end

-- One worker: its requests, then its connection closed; cancelled, it
-- aborts the connection, and the cancellation goes on once it has ended.
local function worker(cfg, stats)
  local conn = {}
  local ok, err = pcall(requests, cfg, stats, conn)
  if conn.writer and ok then
    hang_up(conn.writer, cfg.timeout)
  elseif conn.writer then
    abort(conn.writer)
  end
  if not ok then
    error(err, 0)
  end
end

--- loadgen.run(cfg, stats): in a task, cfg.conns workers until
-- cfg.requests are made or cfg.seconds have passed, counting in stats
-- (loadgen.new_stats(cfg)). Cancelled, it cancels the workers, waits for
-- them, and raises the cancellation; stats hold what was done.
function M.run(cfg, stats)
  local loop = tapio.get_running_loop()
  local started = loop:time()
  local ok, err = pcall(tapio.timeout, cfg.seconds, tapio.TaskGroup,
    function(tg)
      for _ = 1, cfg.conns do
        tg:create_task(worker, cfg, stats)
      end
    end)
  stats.elapsed = loop:time() - started
  if not ok and not (cfg.seconds and M.kind(err) == "timeout") then
    error(err, 0)
  end
  return stats
end

-- ---- The command line ------------------------------------------------------

M.USAGE = "usage: loadgen.lua HOST PORT [--conns N] [--requests M | "
  .. "--seconds S] [--timeout T] [--tls CAFILE] [--line] [--size BYTES]"

-- The options that take a number, and the least each takes.
local NUMBERS = { conns = 1, requests = 1, size = 0, seconds = 0,
                  timeout = 0 }
local INTEGERS = { conns = true, requests = true, size = true }

local function valid(name, n)
  if INTEGERS[name] then
    return n % 1 == 0 and n >= NUMBERS[name]
  end
  return n > NUMBERS[name] -- seconds: more than none
end

--- loadgen.parse(args): the configuration of a list of arguments, or
-- nil and why not.
function M.parse(args)
  local cfg = { conns = 10, timeout = 1, size = 16,
                protocol = M.framed }
  local rest, i = {}, 1
  while args[i] do
    local name = args[i]:match("^%-%-(.+)$")
    if name and NUMBERS[name] then
      local n = tonumber(args[i + 1])
      if not n or not valid(name, n) then
        return nil, ("--%s: bad value %s"):format(name,
                                                  tostring(args[i + 1]))
      end
      cfg[name], i = n, i + 2
    elseif name == "tls" then
      if not args[i + 1] then
        return nil, "--tls: CAFILE expected"
      end
      cfg.cafile, i = args[i + 1], i + 2
    elseif name == "line" then
      cfg.protocol, i = M.lines, i + 1
    elseif name then
      return nil, "unknown option " .. args[i]
    else
      rest[#rest + 1], i = args[i], i + 1
    end
  end
  cfg.host, cfg.port = rest[1], tonumber(rest[2])
  if #rest ~= 2 or not cfg.port then
    return nil, "HOST and PORT expected"
  elseif cfg.requests and cfg.seconds then
    return nil, "--requests or --seconds, not both"
  end
  if not cfg.seconds then
    cfg.requests = cfg.requests or 1000
  end
  cfg.padding = ("."):rep(cfg.size)
  -- The reader's limit is a line's (64 KiB by default): room for one.
  cfg.connect_opts = { limit = math.max(65536, cfg.size + 1) }
  if cfg.cafile then
    cfg.connect_opts.ssl = tapio.tls_context { cafile = cfg.cafile }
    -- A TLS shutdown waits for the server's close_notify at most this.
    cfg.connect_opts.ssl_shutdown_timeout = cfg.timeout
  end
  return cfg
end

if ... == "loadgen" then -- required, as the spec does
  return M
end

local cfg, why = M.parse(arg)
if not cfg then
  io.stderr:write("loadgen.lua: ", why, "\n", M.USAGE, "\n")
  os.exit(2)
end

tapio.handle_sigint = true -- Ctrl-C cancels main (the tapio host's default)
local interrupted = false
tapio.run(function()
  local stats = M.new_stats(cfg)
  local ok, err = pcall(M.run, cfg, stats)
  io.write(M.report(stats))
  if not ok then
    if not tapio.is_cancelled(err) then
      error(err, 0)
    end
    interrupted = true -- the report is out: end as Ctrl-C does
  end
end)
if interrupted then
  os.exit(130)
end
