-- A line chat with streams, ported from python/chat.py: the first line a
-- client sends is its name, each line after it goes to every other
-- client, "/quit" leaves. Each client has a reader task and a writer task
-- in a TaskGroup; what is broadcast goes through the client's bounded
-- Queue, so a client that stops reading is dropped once its queue is
-- full, and one that says nothing for IDLE seconds is dropped too.
-- Run: tapio examples/chat.lua [port [idle]]; then nc 127.0.0.1 8888
local tapio = require "tapio"

local PORT = tonumber(arg[1]) or 8888
local IDLE = tonumber(arg[2]) or 300
local QUEUE_SIZE = 100
local clients = {} -- name -> { queue = ..., writer = ... }

local function broadcast(text, sender)
  for name, client in pairs(clients) do
    if name ~= sender then
      local ok, err = pcall(client.queue.put_nowait, client.queue, text)
      if not ok and err.name == "QueueFull" then -- it stopped reading
        print(name .. " is too slow: dropped")
        client.queue:shutdown(true)
        client.writer.transport:abort()
      elseif not ok and err.name ~= "QueueShutDown" then -- not leaving
        error(err, 0)
      end
    end
  end
end

-- asyncio's ConnectionError: the peer went away.
local function connection_error(err)
  return type(err) == "table" and (err.code == tapio.ECONNRESET
    or err.code == tapio.EPIPE or err.code == tapio.ECONNABORTED)
end

local function send_lines(queue, writer)
  local ok, err = pcall(function()
    while true do
      writer:write(queue:get())
      writer:drain()
    end
  end)
  writer:close() -- the reader sees the end
  if not ok and err.name ~= "QueueShutDown" and not connection_error(err) then
    error(err, 0) -- a cancellation goes on
  end
end

local function read_lines(name, reader, queue)
  local ok, err = pcall(function()
    while true do
      local line = tapio.timeout(IDLE, reader.readline, reader)
      if line == "" or line == "/quit\n" then
        break
      end
      broadcast(name .. ": " .. line, name)
    end
  end)
  if not ok and err.code == tapio.ETIMEDOUT then
    queue:put_nowait(("idle for %g s: bye\n"):format(IDLE))
  end
  queue:shutdown() -- the writer sends what is queued, then ends
  if not ok and err.code ~= tapio.ETIMEDOUT and not connection_error(err) then
    error(err, 0)
  end
end

local function handle_client(reader, writer)
  local name = reader:readline():match("^%s*(.-)%s*$")
  if name == "" or clients[name] then
    writer:write("that name is taken\n")
    writer:close()
    return
  end
  local queue = tapio.Queue(QUEUE_SIZE)
  clients[name] = { queue = queue, writer = writer }
  queue:put_nowait("welcome, " .. name .. "\n")
  broadcast("* " .. name .. " joined\n", name)
  local ok, err = pcall(tapio.TaskGroup, function(tg)
    tg:create_task(send_lines, queue, writer)
    tg:create_task(read_lines, name, reader, queue)
  end)
  clients[name] = nil
  broadcast("* " .. name .. " left\n")
  print(name .. " left")
  if not ok then
    error(err, 0)
  end
end

tapio.run(function()
  local server = tapio.start_server(handle_client, "127.0.0.1", PORT)
  print("Serving on " .. tostring(server:addresses()[1]))
  server:serve_forever()
end)
