-- A line chat server with streams: each line goes to every other client,
-- "/nick name" renames, "/quit" leaves. A client that stops reading is
-- dropped once 1 MiB waits for it (a chat cannot wait for its slowest
-- reader, and what waits for it would grow without bound). Ctrl-C tells
-- the clients and closes the server.
-- Run: tapio examples/chat_server.lua [port]; then nc 127.0.0.1 8888
-- Spec: examples/testing/chat_server_spec.lua.
local tapio = require "tapio"

local MAX_BUFFERED = 1024 * 1024
local clients = {} -- writer -> nick

local function broadcast(from, text)
  for writer in pairs(clients) do
    if writer ~= from and not writer:is_closing() then -- not yet seen gone
      local waiting = writer:get_write_buffer_size() -- batched included
      if waiting > MAX_BUFFERED then
        print(("%s dropped: %d bytes wait for it"):format(clients[writer],
                                                          waiting))
        clients[writer] = nil
        writer.transport:abort() -- its task's read ends with ECONNABORTED
      else
        writer:write(text)
      end
    end
  end
end

local function chat(reader, writer)
  local nick = tostring(writer:get_extra_info("peername"))
  clients[writer] = nick
  writer:write("welcome, " .. nick .. "\n")
  local ok, err = pcall(function()
    for line in function() return reader:readline() end do
      if line == "" or line:match("^/quit") then break end
      local new = line:match("^/nick%s+(%S+)")
      if new then
        broadcast(writer, nick .. " is now " .. new .. "\n")
        nick, clients[writer] = new, new
      else
        broadcast(writer, nick .. ": " .. line)
      end
    end
  end)
  if clients[writer] then
    clients[writer] = nil
    broadcast(writer, nick .. " left\n")
  end
  writer:close()
  if not ok and not tapio.is_cancelled(err) then
    print(nick .. " failed: " .. tostring(err))
  end
end

local function main(port)
  local server = tapio.start_server(chat, "127.0.0.1", port)
  print("Serving on " .. tostring(server:addresses()[1]))
  local ok, err = pcall(server.serve_forever, server) -- Ctrl-C: cancelled
  for writer in pairs(clients) do
    writer:write("server shutting down\n")
    writer:close()
  end
  error(err, 0) -- the cancellation: tapio.run ends with status 130
end

-- require "examples.chat_server" (its spec, examples/testing/) gets the
-- parts; run as a program, it serves.
if ... == "examples.chat_server" then
  return { main = main, MAX_BUFFERED = MAX_BUFFERED }
end

tapio.run(function()
  main(tonumber(arg[1]) or 8888)
end)
