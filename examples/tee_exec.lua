-- tee for a command, on the protocol API, ported from python/tee_exec.py:
--   tapio examples/tee_exec.lua [--bytes N] [--sink-delay S] FILE 'command'
-- runs the command with sh -c (loop:subprocess_exec), writes N bytes
-- (10 MiB by default: bytes 0, 1, ..., 250 over and over, made as the
-- pipe takes them) to its stdin, and copies its stdout both to our stdout
-- and to FILE. FILE is written by a child of its own (cat > FILE, after
-- --sink-delay seconds, to make it lag): while it or our stdout cannot
-- take more, the command's stdout is not read. Its stderr goes to ours.
-- The SubprocessProtocol events are printed to stderr as they come, then
-- how often each side paused; the exit status is the command's.
local tapio = require "tapio"

local CHUNK = 65536
local PATTERN = {}
for i = 0, CHUNK + 250 do
  PATTERN[#PATTERN + 1] = string.char(i % 251)
end
PATTERN = table.concat(PATTERN)

local function say(text)
  io.stderr:write("tee_exec: " .. text .. "\n")
end

-- n bytes of the input from offset
local function input_chunk(offset, n)
  local start = offset % 251
  return PATTERN:sub(start + 1, start + n)
end

local function describe(err)
  return err == nil and "ok" or err.name
end

-- Where the copy goes: our stdout's write pipe, or FILE's child (its
-- stdin's pipe); main sets self.pipe.
local Sink = {}
Sink.__index = Sink

function Sink.new(command, loop)
  return setmetatable({ command = command, paused = false,
                        done = loop:create_future() }, Sink)
end

function Sink:write(data)
  if self.pipe then
    self.pipe:write(data)
  end
end

function Sink:close()
  if self.pipe then
    self.pipe:close()
  end
end

function Sink:pause_writing()
  self.paused = true
  self.command:sink_paused(1)
end

function Sink:resume_writing()
  self.paused = false
  self.command:sink_paused(-1)
end

-- Its reader went away: it takes no more, and holds the others back no
-- more (no resume_writing comes after the end).
function Sink:ended()
  if self.paused then
    self:resume_writing()
  end
  self.pipe = nil
end

function Sink:pipe_connection_lost()
  self:ended() -- FILE's child's stdin
end

function Sink:connection_lost(err)
  self:ended()
  self.done:set_result(err)
end

local Command = {}
Command.__index = Command

function Command.new(size, loop)
  return setmetatable({ size = size, sent = 0, sinks = {},
    writing_paused = false, sinks_paused = 0, received = 0,
    pauses = { stdin = 0, stdout = 0 }, done = loop:create_future() },
    Command)
end

function Command:connection_made(transport)
  say("connection_made")
  self.transport = transport
  self.stdin = transport:get_pipe_transport(0)
  self.stdout = transport:get_pipe_transport(1)
  self:feed()
end

function Command:feed()
  while not self.writing_paused and self.sent < self.size do
    local n = math.min(CHUNK, self.size - self.sent)
    local data = input_chunk(self.sent, n)
    self.sent = self.sent + n
    self.stdin:write(data) -- may call pause_writing
  end
  if self.sent == self.size and not self.stdin:is_closing() then
    self.stdin:close()
  end
end

function Command:pause_writing()
  self.writing_paused = true
  self.pauses.stdin = self.pauses.stdin + 1
end

function Command:resume_writing()
  self.writing_paused = false
  self:feed()
end

function Command:pipe_data_received(fd, data)
  if fd == 2 then
    io.stderr:write(data)
    return
  end
  self.received = self.received + #data
  for _, sink in ipairs(self.sinks) do
    sink:write(data)
  end
end

-- stdout is read while every sink takes more
function Command:sink_paused(delta)
  self.sinks_paused = self.sinks_paused + delta
  if self.sinks_paused == 1 and delta == 1 then
    self.pauses.stdout = self.pauses.stdout + 1
    self.stdout:pause_reading()
  elseif self.sinks_paused == 0 then
    self.stdout:resume_reading()
  end
end

function Command:pipe_connection_lost(fd, err)
  if fd == 0 then
    self.sent = self.size -- the child will read no more
    say("pipe_connection_lost 0: " .. describe(err))
  elseif fd == 1 then
    say(("pipe_connection_lost 1 after %d bytes: %s")
        :format(self.received, describe(err)))
    for _, sink in ipairs(self.sinks) do
      sink:close()
    end
  else
    say("pipe_connection_lost 2: " .. describe(err))
  end
end

function Command:process_exited()
  say("process_exited " .. self.transport:get_returncode())
end

function Command:connection_lost(err)
  say("connection_lost: " .. describe(err))
  self.done:set_result(self.transport:get_returncode())
end

local function main(size, delay, path, command)
  local loop = tapio.get_running_loop()
  -- the command's protocol and its two sinks refer to each other
  local command_proto = Command.new(size, loop)
  local out_proto = Sink.new(command_proto, loop)
  local file_proto = Sink.new(command_proto, loop)
  local out = loop:connect_write_pipe(function() return out_proto end, 1)
  local file_proc = loop:subprocess_exec(function() return file_proto end,
    "sh", { "-c", 'sleep "$0"; exec cat > "$1"', tostring(delay), path },
    { stdout = "inherit", stderr = "inherit" })
  out_proto.pipe = out
  file_proto.pipe = file_proc:get_pipe_transport(0)
  command_proto.sinks = { out_proto, file_proto }
  local transport = loop:subprocess_exec(
    function() return command_proto end, "sh", { "-c", command })
  local status = command_proto.done:await()
  out_proto.done:await()
  file_proto.done:await()
  transport:close()
  file_proc:close()
  say(("stdin paused %d times, stdout %d times")
      :format(command_proto.pauses.stdin, command_proto.pauses.stdout))
  return status < 0 and 128 - status or status
end

local function parse(argv)
  local size, delay, i = 10 * 1024 * 1024, 0, 1
  while #argv - i + 1 > 2 do
    local name, value = argv[i], tonumber(argv[i + 1])
    if name == "--bytes" and value then
      size = value
    elseif name == "--sink-delay" and value then
      delay = value
    else
      break
    end
    i = i + 2
  end
  if #argv - i + 1 ~= 2 then
    io.stderr:write("usage: tee_exec.lua [--bytes N] [--sink-delay S] "
                    .. "FILE 'command'\n")
    os.exit(1)
  end
  return size, delay, argv[i], argv[i + 1]
end

os.exit(tapio.run(main, parse(arg)))
