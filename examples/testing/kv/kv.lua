-- A key-value server and its client over TCP, with streams, one request
-- per line:
--   SET key value  ->  OK
--   GET key        ->  VALUE value   or   NIL
--   anything else  ->  ERR unknown command
-- Replies come in the order of the requests, so a client may send
-- several before the first reply (pipelining).
--
-- The server hangs up on a client silent for idle_timeout seconds. The
-- client gives each request timeout seconds; one that times out drops
-- the connection (a server that does not answer one request will not
-- answer those behind it). A lost connection is made again at once, then
-- after 1, 2, 4, 4... seconds while it is refused (backoff, capped).
--
-- Nothing here knows about tests: the timers are tapio.sleep and
-- tapio.timeout, which follow tapio.testing's virtual clock.
local tapio = require "tapio"

local M = {}

---------------------------------------------------------------- server

local function answer(store, line)
  local cmd, key, value = line:match("^(%u+) (%S+) ?(.*)$")
  if cmd == "SET" and value ~= "" then
    store[key] = value
    return "OK"
  elseif cmd == "GET" and value == "" then
    local v = store[key]
    return v and "VALUE " .. v or "NIL"
  end
  return "ERR unknown command"
end

-- One client: answers its lines until it goes away or stays silent.
local function serve_client(store, idle, reader, writer)
  while true do
    local ok, line = pcall(tapio.timeout, idle, reader.readline, reader)
    if not ok or line == "" then
      break -- idle (a timeout), the end, or a reset
    end
    writer:write(answer(store, line:gsub("\n$", "")) .. "\n")
  end
  writer:close()
end

--- kv.serve(host, port [, opts]): starts a server (a task's call).
-- opts.idle_timeout: seconds of silence before it hangs up (60).
-- opts.store: the table it keeps the values in ({}).
function M.serve(host, port, opts)
  opts = opts or {}
  local store, idle = opts.store or {}, opts.idle_timeout or 60
  return tapio.start_server(function(reader, writer)
    serve_client(store, idle, reader, writer)
  end, host, port)
end

---------------------------------------------------------------- client

local Client = {}
Client.__index = Client

M.BACKOFF = { 1, 2, 4 } -- seconds between refused connects; the last repeats

--- kv.client(host, port [, opts]): a client that keeps one connection up
-- (a task's call: it starts a task that connects).
-- opts.timeout: seconds a request may take, connecting included (5).
-- opts.backoff: the delays between refused connects (kv.BACKOFF).
function M.client(host, port, opts)
  opts = opts or {}
  local self = setmetatable({
    host = host, port = port,
    timeout = opts.timeout or 5,
    backoff = opts.backoff or M.BACKOFF,
    up = tapio.Event(), -- set while connected
    pending = {},       -- futures of the requests sent, in order
    attempts = {},      -- loop times of the connects tried (for a log)
  }, Client)
  self.task = tapio.create_task(self.keep_connected, self)
  return self
end

-- Connects, retrying after each delay of the backoff while refused.
function Client:connect()
  local loop, step = tapio.get_running_loop(), 0
  while true do
    self.attempts[#self.attempts + 1] = loop:time()
    local ok, reader, writer = pcall(tapio.open_connection, self.host,
                                     self.port)
    if ok then
      return reader, writer
    elseif tapio.is_cancelled(reader) then
      error(reader, 0) -- close() cancelled us: no retry
    end
    step = math.min(step + 1, #self.backoff)
    tapio.sleep(self.backoff[step])
  end
end

-- Fails every request waiting for a reply on the lost connection.
function Client:fail_pending(err)
  for _, fut in ipairs(self.pending) do
    if not fut:done() then
      fut:set_exception(err)
    end
  end
  self.pending = {}
end

-- Hands each reply to the oldest request, until the connection ends.
function Client:read_replies(reader)
  local ok, err = pcall(function()
    for line in reader:lines() do
      local fut = table.remove(self.pending, 1)
      if fut and not fut:done() then
        fut:set_result((line:gsub("\n$", "")))
      end
    end
  end)
  if tapio.is_cancelled(err) then
    error(err, 0)
  end
  return ok and tapio.error("ECONNRESET", "the server closed") or err
end

function Client:keep_connected()
  while true do
    local reader, writer = self:connect()
    self.writer = writer
    self.up:set()
    local err = self:read_replies(reader)
    self.up:clear()
    self.writer = nil
    writer:close()
    self:fail_pending(err)
  end
end

-- Sends one request line and waits for its reply, all within timeout.
function Client:request(line)
  local fut
  local ok, reply = pcall(tapio.timeout, self.timeout, function()
    self.up:wait()
    fut = tapio.get_running_loop():create_future()
    self.pending[#self.pending + 1] = fut
    self.writer:write(line .. "\n")
    return fut:await()
  end)
  if ok then
    return reply
  end
  if fut and self.writer and reply.code == tapio.ETIMEDOUT then
    self.up:clear()
    self.writer.transport:abort() -- replies behind it would be late too
  end
  error(reply, 0)
end

function Client:get(key)
  local reply = self:request("GET " .. key)
  return reply:match("^VALUE (.*)$")
end

function Client:set(key, value)
  return self:request("SET " .. key .. " " .. value) == "OK"
end

function Client:close()
  self.task:cancel()
  if self.writer then
    self.writer:close()
  end
  pcall(tapio.await, self.task)
end

return M
