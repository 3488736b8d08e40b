-- An inetd-style super-server: each connection to 127.0.0.1:PORT (and to
-- a Unix socket with --unix PATH) gets a child running PROGRAM ARGS...,
-- the connection's bytes as its stdin and its stdout as the reply.
-- Usage: tapio examples/superserver.lua [--max N] [--timeout S]
--          [--grace S] [--unix PATH] PORT -- PROGRAM [ARGS...]
-- (port 0 picks a free one; prints "listening on 127.0.0.1:PORT").
--
-- Both ways wait for the other end to take what was sent (drain; the
-- child's stdout reader stops reading its pipe while it holds twice its
-- limit), so a slow client holds up the child, not the server's memory.
-- Each end is passed on: the client's EOF closes the child's stdin, the
-- end of the child's stdout is a write_eof on the connection. The child's
-- stderr comes out on ours as "[pid] line". With --max N (unlimited by
-- default), a connection over N children running is refused: closed at
-- once, unread, with a line on stderr (inetd's "wait" would hold it in
-- the backlog; refusing tells the client now). After --timeout S seconds
-- (60 by default) with no byte either way, the child gets SIGTERM, and
-- after --grace S more seconds (2 by default) SIGKILL if it still runs
-- and an abort of the connection if a client that reads nothing holds it
-- up; so it goes when the client goes away with an error (a reset).
-- SIGTERM or SIGINT stops: no more connections, each child stopped so,
-- and once all are reaped the server exits with 0. Every child's exit is
-- logged on stderr with its pid, with the bytes each way and the most the
-- server held for the client at once.
local tapio = require "tapio"

local CHUNK = 65536

local function log(text)
  io.stderr:write("superserver: " .. text .. "\n")
end

local function describe(returncode)
  if returncode < 0 then
    return "killed by " .. (tapio.signal_name(-returncode) or -returncode)
  end
  return "exited with " .. returncode
end

-- One connection and its child.
local Session = {}
Session.__index = Session

function Session.new(server, peer)
  return setmetatable({ server = server, cfg = server.cfg,
                        loop = server.loop, peer = peer, up = 0, down = 0,
                        held = 0, done = server.loop:create_future() },
                      Session)
end

-- SIGTERM now; after the grace, SIGKILL if the child still runs, and
-- the connection aborted if it still holds what a client does not read.
function Session:stop()
  if self.stopping then
    return
  end
  self.stopping = true
  self.proc:terminate()
  self.loop:call_later(self.cfg.grace, function()
    if self.proc.returncode == nil then
      self.proc:kill()
    end
    if not self.ended then
      self.writer.transport:abort()
    end
  end)
end

-- (Re)starts the idle timer: a byte moved.
function Session:touch()
  if self.timer then
    self.timer:cancel()
  end
  self.timer = self.loop:call_later(self.cfg.timeout, function()
    log(("%d: idle for %g s: stopping"):format(self.proc.pid,
                                               self.cfg.timeout))
    self:stop()
  end)
end

-- Copies reader to writer to the end; returns nil, or the error and
-- where it happened ("read" or "write").
function Session:copy(reader, writer, count)
  while true do
    local ok, data = pcall(reader.read, reader, CHUNK)
    if not ok then
      return data, "read"
    elseif data == "" then
      return nil
    end
    self:touch()
    self[count] = self[count] + #data
    writer:write(data)
    self.held = math.max(self.held, writer:get_write_buffer_size())
    local err
    ok, err = pcall(writer.drain, writer)
    if not ok then
      return err, "write"
    end
  end
end

-- client -> child's stdin, whose end (or the client's error) closes it
function Session:upstream(reader)
  local err, where = self:copy(reader, self.proc.stdin, "up")
  if where == "read" then
    log(("%d: client: %s"):format(self.proc.pid, tostring(err)))
    self:stop()
  end
  self.proc.stdin:close()
end

-- child's stdout -> client, then the end passed on
function Session:downstream(writer)
  local err, where = self:copy(self.proc.stdout, writer, "down")
  if where == "write" then
    log(("%d: client: %s"):format(self.proc.pid, tostring(err)))
    self:stop()
  elseif not err then
    writer:write_eof()
  end
end

function Session:stderr()
  for line in self.proc.stderr:lines() do
    io.stderr:write(("[%d] %s\n"):format(self.proc.pid,
                                          (line:gsub("\n$", ""))))
  end
end

function Session:run(reader, writer)
  local cfg = self.cfg
  self.proc = tapio.create_subprocess_exec(cfg.program, cfg.args,
    { stdin = "pipe", stdout = "pipe", stderr = "pipe" })
  local pid = self.proc.pid
  self.writer = writer
  log(("%d: started for %s"):format(pid, self.peer))
  if self.server.stopping then -- it came while the child was starting
    self:stop()
  end
  self:touch()
  local up = tapio.create_task(self.upstream, self, reader)
  -- (runs to the end of the pipe, which a process the child started
  -- may hold after the child's exit)
  tapio.create_task(self.stderr, self)
  self:downstream(writer)
  local status = self.proc:wait()
  self.timer:cancel()
  up:cancel() -- a client still sending to a child that has gone
  self.ended = true
  writer:close()
  log(("%d: %s; %d bytes up, %d down, at most %d held")
    :format(pid, describe(status), self.up, self.down, self.held))
end

local Server = {}
Server.__index = Server

function Server.new(cfg)
  return setmetatable({ cfg = cfg, sessions = {}, count = 0,
                        loop = tapio.get_running_loop() }, Server)
end

function Server:handle(reader, writer)
  local peer = tostring(writer:get_extra_info("peername"))
  if peer == "" then -- an unnamed Unix socket
    peer = self.cfg.unix
  end
  if self.count >= self.cfg.max or self.stopping then
    log(("refused %s: %d children running"):format(peer, self.count))
    writer:close()
    return
  end
  local session = Session.new(self, peer)
  self.sessions[session] = true
  self.count = self.count + 1
  local ok, err = pcall(session.run, session, reader, writer)
  self.sessions[session] = nil
  self.count = self.count - 1
  session.done:set_result(true)
  if not ok then
    writer:close()
    log(("%s: %s"):format(peer, tostring(err)))
  end
end

-- SIGTERM to every child, SIGKILL after the grace; returns once all
-- their sessions ended.
function Server:stop()
  self.stopping = true
  local done = {}
  for session in pairs(self.sessions) do
    if session.proc then
      session:stop()
    end
    done[#done + 1] = session.done
  end
  tapio.gather(done)
end

local function usage()
  io.stderr:write("usage: superserver.lua [--max N] [--timeout S] "
    .. "[--grace S] [--unix PATH] PORT -- PROGRAM [ARGS...]\n")
  os.exit(2)
end

local function parse(argv)
  local cfg = { max = math.huge, timeout = 60, grace = 2, args = {} }
  local i = 1
  while argv[i] and argv[i]:match("^%-%-%a") do
    local name, value = argv[i]:sub(3), argv[i + 1]
    if name == "unix" and value then
      cfg.unix = value
    elseif cfg[name] and tonumber(value) and name ~= "args" then
      cfg[name] = tonumber(value)
    else
      usage()
    end
    i = i + 2
  end
  cfg.port = tonumber(argv[i])
  if not cfg.port or argv[i + 1] ~= "--" or not argv[i + 2] then
    usage()
  end
  cfg.program = argv[i + 2]
  table.move(argv, i + 3, #argv, 1, cfg.args)
  return cfg
end

local cfg = parse(arg)

tapio.run(function()
  local server = Server.new(cfg)
  local function handle(reader, writer)
    server:handle(reader, writer)
  end
  local listeners = { tapio.start_server(handle, "127.0.0.1", cfg.port) }
  if cfg.unix then
    listeners[2] = tapio.start_unix_server(handle, cfg.unix)
  end
  local stop = tapio.Event()
  local loop = server.loop
  loop:add_signal_handler("SIGTERM", stop.set, stop)
  loop:add_signal_handler("SIGINT", stop.set, stop)
  print(("listening on 127.0.0.1:%d"):format(
    listeners[1]:addresses()[1].port))
  io.stdout:flush()
  stop:wait()
  for _, listener in ipairs(listeners) do
    listener:close()
  end
  log("stopping") -- (the spec connects once it reads this)
  server:stop()
  log("stopped")
end)
