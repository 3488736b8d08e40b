-- A syslog collector: receives RFC 5424 and RFC 3164 messages over UDP on
-- 127.0.0.1 and over a Unix datagram socket (as /dev/log takes them), and
-- prints one line per message on stdout:
--   FROM FORMAT FACILITY.SEVERITY TIMESTAMP HOST APP PROCID MSGID SD: MESSAGE
--   127.0.0.1:41234 rfc5424 local3.warning 2024-05-01T10:00:00Z vm app -
--     ID47 -: hi   (on one line)
-- each absent field "-", an RFC 3164 time as ISO 8601 without the year
-- ("--10-01T22:14:15"), the message's control bytes escaped (\n, \xNN)
-- so that a message is one line; one that does not parse is printed as
--   FROM malformed (WHY): ITS BYTES ESCAPED
-- stdout is a tapio write pipe: when what is printed backs up (a reader
-- that does not keep up), pause_writing pauses reading on both sockets
-- and resume_writing resumes it, so the collector holds no more than the
-- pipe's buffer; meanwhile the kernel keeps what fits in the sockets'
-- receive buffers and drops the rest of what comes over UDP (a Unix
-- socket's senders wait instead). The drops are reported on stderr
-- (get_stats().datagrams_dropped): after each pause, every --report
-- seconds and at the end. Where stdout is a file, it is written with
-- io.stdout, which blocks instead.
-- Usage: tapio examples/syslog_collector.lua [--report S] PORT [PATH]
--   (PORT 0: a free one; PATH: the Unix datagram socket, made anew)
-- On stderr: "listening on udp 127.0.0.1:PORT[ and unix PATH]", "reading
-- paused (output backed up)", "reading resumed", "dropped N datagrams on
-- udp 127.0.0.1:PORT (its receive buffer was full)", and at SIGINT or
-- SIGTERM "stopped: N messages (M malformed), D datagrams dropped" (exit
-- status 0).
local tapio = require "tapio"

if ... ~= "syslog_collector" then -- a program: syslog_wire.lua is beside it
  package.path = (arg[0]:match("^(.*/)") or "./") .. "?.lua;" .. package.path
end
local wire = require "syslog_wire"

local M = {}

local ESCAPES = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
                  ["\\"] = "\\\\" }

--- M.escape(s): s on one line, its control bytes written out.
function M.escape(s)
  return (s:gsub("[%c\\]", function(c)
    return ESCAPES[c] or ("\\x%02X"):format(c:byte())
  end))
end

local function dash(v)
  return v and M.escape(v) or "-"
end

--- M.format(from, datagram): the line printed for one datagram.
function M.format(from, datagram)
  local m, why = wire.parse(datagram)
  if not m then
    return ("%s malformed (%s): %s"):format(from, why, M.escape(datagram)),
           false
  end
  return ("%s %s %s.%s %s %s %s %s %s %s: %s"):format(from, m.format,
    m.facility_name, m.severity_name, dash(wire.iso_time(m)), dash(m.host),
    dash(m.app), dash(m.procid), dash(m.msgid), M.escape(wire.sd_text(m.sd)),
    M.escape(m.message)), true
end

local Collector = {}
Collector.__index = Collector

-- Where a datagram came from, as printed.
local function source(kind, addr)
  if kind == "unix" then
    return addr and "unix:" .. addr or "unix"
  end
  return addr.host .. ":" .. addr.port
end

-- The protocol of one socket (kind "udp" or "unix"): known to the
-- collector from connection_made on, so that a pause reaches it.
local function listener(collector, kind)
  local p = {}
  function p.connection_made(_, transport)
    local name = transport:get_extra_info("sockname")
    collector.inputs[#collector.inputs + 1] = { transport = transport,
      dropped = 0, name = kind == "udp" and "udp " .. source(kind, name)
                          or "unix " .. name }
    if collector.paused then
      transport:pause_reading()
    end
  end
  function p.datagram_received(_, data, addr)
    collector:received(source(kind, addr), data)
  end
  function p.error_received(_, err)
    collector.say("error on " .. kind .. ": " .. tostring(err))
  end
  return p
end

function Collector:received(from, data)
  local line, ok = M.format(from, data)
  self.messages = self.messages + 1
  if not ok then
    self.malformed = self.malformed + 1
  end
  self.write(line .. "\n")
end

-- The output's flow control: reading follows it.
function Collector:pause_writing()
  self.paused = true
  for _, input in ipairs(self.inputs) do
    input.transport:pause_reading()
  end
  self.say("reading paused (output backed up)")
end

function Collector:resume_writing()
  self.paused = false
  for _, input in ipairs(self.inputs) do
    input.transport:resume_reading()
  end
  self.say("reading resumed")
  self:report_drops()
end

function Collector:report_drops()
  for _, input in ipairs(self.inputs) do
    local now = input.transport:get_stats().datagrams_dropped or 0
    if now > input.dropped then
      self.say(("dropped %d datagrams on %s (its receive buffer was full)")
        :format(now - input.dropped, input.name))
      self.dropped = self.dropped + now - input.dropped
      input.dropped = now
    end
  end
end

-- stdout as a write pipe whose protocol is the collector's flow control;
-- a file (it seeks; connect_write_pipe refuses one, and would close the
-- descriptor as it fails): io.stdout, blocking.
function Collector:open_output(loop)
  if io.stdout:seek("cur") then
    self.write = function(s) io.stdout:write(s) end
    return
  end
  self.out = loop:connect_write_pipe(function()
    return { pause_writing = function() self:pause_writing() end,
             resume_writing = function() self:resume_writing() end,
             connection_lost = function() self.out_done:set() end }
  end, 1)
  self.write = function(s) self.out:write(s) end
end

--- M.start(cfg) (in a task): listens on 127.0.0.1:cfg.port (0: a free
-- one) and, with cfg.path, on that Unix datagram socket; cfg.report
-- (seconds between drop reports, 10), cfg.say (a status line: stderr).
-- Returns the collector: c.port, c:stop().
function M.start(cfg)
  local loop = tapio.get_running_loop()
  local c = setmetatable({ inputs = {}, messages = 0, malformed = 0,
    dropped = 0, out_done = tapio.Event(), say = cfg.say or function(s)
      io.stderr:write(s, "\n")
    end }, Collector)
  c:open_output(loop)
  local udp = loop:create_datagram_endpoint(function()
    return listener(c, "udp")
  end, { local_addr = { "127.0.0.1", cfg.port } })
  c.port = udp:get_extra_info("sockname").port
  if cfg.path then
    loop:create_datagram_endpoint(function()
      return listener(c, "unix")
    end, { local_addr = cfg.path })
    c.path = cfg.path
  end
  local function tick()
    c:report_drops()
    c.timer = loop:call_later(cfg.report or 10, tick)
  end
  c.timer = loop:call_later(cfg.report or 10, tick)
  return c
end

--- c:stop() (in a task): closes the sockets (the Unix one's file goes),
-- reports the last drops and the totals, flushes stdout.
function Collector:stop()
  self.timer:cancel()
  self:report_drops()
  for _, input in ipairs(self.inputs) do
    input.transport:close()
  end
  if self.path then
    os.remove(self.path)
  end
  self.say(("stopped: %d messages (%d malformed), %d datagrams dropped")
    :format(self.messages, self.malformed, self.dropped))
  if self.out then
    self.out:close()
    self.out_done:wait()
  else
    io.stdout:flush()
  end
end

if ... == "syslog_collector" then
  return M
end

local cfg, rest, i = {}, {}, 1
while arg[i] do
  if arg[i] == "--report" then
    cfg.report = tonumber(arg[i + 1])
    i = i + 2
  else
    rest[#rest + 1], i = arg[i], i + 1
  end
end
cfg.port, cfg.path = tonumber(rest[1]), rest[2]
if not cfg.port or #rest > 2 or (cfg.report or 1) <= 0 then
  io.stderr:write("usage: syslog_collector.lua [--report S] PORT [PATH]\n")
  os.exit(2)
end

tapio.run(function()
  local c = M.start(cfg)
  local stop = tapio.Event()
  local loop = tapio.get_running_loop()
  loop:add_signal_handler("SIGTERM", stop.set, stop)
  loop:add_signal_handler("SIGINT", stop.set, stop)
  c.say(("listening on udp 127.0.0.1:%d%s"):format(c.port,
    cfg.path and " and unix " .. cfg.path or ""))
  stop:wait()
  c:stop()
end)
